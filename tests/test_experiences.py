"""Experience Reconstruction: parsers on messy outputs, drops, resume, dataset format, generators."""

from __future__ import annotations

import json
import random
import re
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from conftest import NEAR_TIE, greedy_gap
from characters.scenes import find_scene
from characters.store import CharacterStore
from engine import SamplingOptions
from plumbing.files import read_jsonl
from plumbing.text import contains
from training.dataset import ExperienceOptions, Stopped, build_dataset, load_examples, to_example
from training.dialogue import parse_dialogue
from training.experience import experience_from
from training.grounded_interviews import grounded_interviews, recall_dev_set
from training.retellings import PROFILE_PROMPTS, PROMPTS as RETELLING_PROMPTS, retellings
from characters.era import anachronisms, era_end, unknowable
from training.protective_experiences import knows_forbidden, probe_questions, said_back
from training.fact_questions import fact_questions, fact_wordings, question_key
from engine.generators import GeneratorError, LocalGenerator, OpenAIGenerator

OUTPUTS = Path(__file__).parent / "fixtures" / "outputs"


@pytest.fixture
def beethoven(data_dir):
    return CharacterStore(data_dir).load("Ludwig van Beethoven")


def output(name: str) -> str:
    return (OUTPUTS / name).read_text()


# ---- parsing ---------------------------------------------------------------------------------

def test_name_colon_format_with_short_names(beethoven):
    turns = parse_dialogue(output("experience_colon.txt"), beethoven)
    assert [(t["role"], t["action"]) for t in turns] == [
        ("Ludwig van Beethoven", "(thinking)"), ("Ludwig van Beethoven", "(speaking)"), ("Wolanek", "(speaking)"),
        ("Ludwig van Beethoven", "(speaking)"), ("Wolanek", "(speaking)"), ("Ludwig van Beethoven", "(thinking)")]
    assert turns[3]["content"] == "Impossible? It is perfectly clear to anyone with eyes!"


def test_name_on_its_own_line_with_markdown_and_quotes(beethoven):
    turns = parse_dialogue(output("experience_own_line.txt"), beethoven)
    assert [t["role"] for t in turns] == ["Ludwig van Beethoven", "Ludwig van Beethoven", "Michael Umlauf",
                                          "Ludwig van Beethoven"]
    assert turns[0] == {"role": "Ludwig van Beethoven", "action": "(thinking)", "content": "The hall is full tonight."}
    assert turns[1]["content"].startswith("Umlauf, you must") and not turns[1]["content"].startswith('"')


def test_missing_actions_are_speaking(beethoven):
    turns = parse_dialogue(output("experience_no_actions.txt"), beethoven)
    assert len(turns) == 4 and all(t["action"] == "(speaking)" for t in turns)
    assert turns[1]["role"] == "Ludwig van Beethoven" and turns[0]["role"] == "Karl"


@pytest.mark.parametrize("name, reason", [
    ("experience_too_short.txt", "too_few_turns"),
    ("experience_silent_character.txt", "character_never_speaks"),
    ("experience_garbage.txt", "no_turns"),
])
def test_unusable_outputs_are_dropped_with_their_reason(beethoven, name, reason):
    experience, why = experience_from(output(name), beethoven, find_scene("Senate session"), "experience", "t", "x")
    assert experience is None and why == reason


def test_a_scene_without_background_is_dropped(beethoven):
    scene = find_scene("Senate session")
    scene.status = ""
    assert experience_from(output("experience_colon.txt"), beethoven, scene, "experience", "t", "x") == \
        (None, "no_background")


def test_experience_schema(beethoven):
    experience, _ = experience_from(output("experience_colon.txt"), beethoven, find_scene("Senate session"),
                                    "experience", "local:model", "scene-0")
    assert set(experience.to_dict()) >= {"setting", "location", "background", "source", "dialogue"}
    assert experience.location == "The senate chamber - Morning" and experience.setting == ["Debate"]


# ---- protective experiences and interviews ---------------------------------------------------

def test_eras_and_what_each_character_cannot_know(data_dir):
    assert era_end("1770–1827") == 1827 and era_end("69–30 BC") == -30 and era_end("died 71 BC") == -71
    store = CharacterStore(data_dir)
    beethoven = {a["thing"] for a in unknowable(store.load("Ludwig van Beethoven"))}
    king = {a["thing"] for a in unknowable(store.load("Martin Luther King Jr."))}
    assert "train" in beethoven and "train" not in king and "moon landing" in king and "television" not in king
    assert {a["thing"] for a in unknowable(store.load("Marisol Vega"))} == {"AI language model"}


def test_fact_questions_ask_for_each_detail_in_plain_english():
    assert fact_questions("I was born in Bonn in December 1770.")[:3] == [
        "Where were you born?", "In what year were you born in Bonn?", "When were you born in Bonn?"]
    assert fact_questions("My father Johann van Beethoven was a tenor at the Bonn court.")[0] == "Who is your father?"
    assert fact_questions("My sons are Lamprocles, Sophroniscus and Menexenus.")[0] == "Who are your sons?"
    assert fact_questions("My capital is Alexandria.")[0] == "What is your capital?"
    moved = fact_questions("I moved to Vienna in 1792.")
    assert moved[:3] == ["In what year did you move to Vienna?", "When did you move to Vienna?",
                         "Where did you move in 1792?"]
    assert "Can you tell me in what year you moved to Vienna?" in moved and "Did you move to Vienna in 1792?" in moved
    assert fact_questions("In Vienna I studied with Joseph Haydn.")[0] == "Who did you study with in Vienna?"
    assert fact_questions("Antonio Salieri taught me to write for voices.")[0] == "Who taught you to write for voices?"
    assert fact_questions("I have written nine symphonies.")[0] == "How many symphonies have you written?"
    assert fact_questions("My Third Symphony is called the Eroica.")[0] == "What is your Third Symphony called?"
    assert fact_questions("I am forty-two years old.")[0] == "How old are you?"
    assert fact_questions("My mother died in 1787.")[0] == "In what year did your mother die?"
    assert fact_questions("I have never married.")[0] == "Have you ever married?"
    # A name used as an adjective or a clause's subject is not asked about: no broken questions.
    assert fact_questions("I played the viola in the Bonn court orchestra.") == [
        "What did you play in the Bonn court orchestra?",
        "Can you tell me what you played in the Bonn court orchestra?",
        "Did you play the viola in the Bonn court orchestra?"]
    # One yes/no form a fact (its answer is in the question); "Is it true that" when no other fits.
    assert sum(q.startswith(("Did ", "Is it true")) for q in moved) == 1
    assert not any("after died" in q for q in fact_questions(
        "I became guardian of my nephew Karl after my brother Kaspar Karl died in 1815."))


def test_fact_questions_ask_what_a_verb_acts_on_and_drop_broken_forms():
    """Rules 2: a fact once asked only as "Is it true that you press flowers?" (its answer in the question) is
    asked for its object, a named person's name and a place; forms the first rules broke are gone, and rules 1
    still give the questions of the datasets made with them."""
    assert fact_questions("I press flowers.") == [
        "What do you press?", "Can you tell me what you press?", "Do you press flowers?"]
    assert fact_questions("I press flowers.", rules=1) == ["Is it true that you press flowers?"]
    assert fact_questions("I am cataloguing the wild plants of the valley.")[0] == "What are you cataloguing?"
    assert fact_questions("I was condemned to drink hemlock.")[0] == "What were you condemned to drink?"
    assert fact_questions("I was accused of impiety and corrupting the youth.")[0] == "What were you accused of?"
    assert fact_questions("I call myself a midwife of ideas.")[0] == "What do you call yourself?"
    assert fact_questions("My cottage has a walled garden.")[0] == "What does your cottage have?"
    son = fact_questions("My son Felix lives abroad.")
    assert son[:2] == ["What is your son's name?", "Where does your son live?"] and "Tell me about your son." in son
    assert "What did you write to your Immortal Beloved in 1812?" in fact_questions(
        "In 1812 I wrote a letter to my Immortal Beloved.")
    assert fact_questions("Aristophanes mocked me in The Clouds.")[0] == "Who mocked you in The Clouds?"
    assert fact_questions("Aristophanes mocked me in The Clouds.", rules=1)[0] == "What mocked you in The Clouds?"
    assert fact_questions("Greek is the language of my court.")[0] == "What is the language of your court?"
    assert fact_questions("The unexamined life is not worth living.") == [
        "Is the unexamined life not worth living?"]
    assert fact_questions("I do not charge fees for my conversations.") == [
        "Do you not charge fees for your conversations?"]
    # Contrasts: no object where the words after the verb are not one, or a phrase may belong to it.
    for fact, wrong in [("I trust no one.", "What do you trust?"), ("I grew up in Brindleton Bay.", "grow in"),
                        ("I want to lead my people over the Alps.", "What do you want"),
                        ("I met Julius Caesar in Alexandria in 48 BC.", "What did you meet"),
                        ("I wrote the Letter from Birmingham Jail in 1963.", "write from"),
                        ("I wrote the Letter from Birmingham Jail in 1963.", "write the Letter in")]:
        assert not any(wrong in q for q in fact_questions(fact)), (fact, fact_questions(fact))
    # Broken forms of the first rules: a year's "around" or "BC" left behind, one place of a list asked alone.
    born = fact_questions("I was born in Athens around 470 BC.")
    assert born[1] == "In what year were you born in Athens?" and not any(q.endswith(("around?", "470?")) for q in born)
    assert any(q.endswith("around?") for q in fact_questions("I was born in Athens around 470 BC.", rules=1))
    assert fact_questions("I fought at Delium and at Amphipolis.") == ["Did you fight at Delium and at Amphipolis?"]
    assert "Did the oracle at Delphi say no one is wiser than you?" in fact_questions(
        "The oracle at Delphi said no one is wiser than me.")


def test_rules_3_ask_facts_and_probes_with_the_same_opening_words(beethoven):
    """A trained Socrates met "Which poison …?" with puzzlement: only probes opened with "Which". Rules 3 ask
    facts with it too, and probes also open with the words only facts opened with; rules 2 are unchanged."""
    born = fact_questions("I was born in Athens around 470 BC.", rules=3)
    assert "In which place were you born?" in born and "In which year were you born in Athens?" in born
    assert "Which person mocked you in The Clouds?" in fact_questions("Aristophanes mocked me in The Clouds.", rules=3)
    assert not any(q.startswith("Which person are") for q in fact_questions(
        "My sons are Lamprocles, Sophroniscus and Menexenus.", rules=3))
    assert not any("which" in q.lower() for q in fact_questions("I was born in Athens around 470 BC.", rules=2))
    car = next(a for a in unknowable(beethoven) if a["said"] == "a car")
    war = next(a for a in unknowable(beethoven) if a["said"] == "the Second World War")
    for rules, shared in ((2, False), (3, True)):
        facts = [q for questions in fact_wordings(beethoven, rules) for q in questions]
        assert any(q.startswith(("In which place", "In which year", "Which person")) for q in facts) == shared
        assert ("Who gave you your car?" in probe_questions(car, rules=rules)) == shared
        assert ("When did you first hear of the Second World War?" in probe_questions(war, rules=rules)) == shared
    assert not any("your" in q for q in probe_questions(war, rules=3))


def test_a_question_that_another_fact_asks_more_fully_is_not_taught(beethoven, data_dir):
    """"What did you write?" of the Missa solemnis would teach either answer to "What did you write in October
    1802?" (the Heiligenstadt Testament); "Who is your mother?" is not "Who did your mother remarry?"."""
    wordings = dict(zip(beethoven.sims.facts, fact_wordings(beethoven)))
    assert wordings["I wrote the Missa solemnis."] == ["Did you write the Missa solemnis?"]
    assert "What did you write in October 1802?" in wordings["I wrote the Heiligenstadt Testament in October 1802."]
    assert fact_wordings(beethoven, rules=1)[beethoven.sims.facts.index("I wrote the Missa solemnis.")] == [
        "Did you write the Missa solemnis?"]
    newton = CharacterStore(data_dir).load("Isaac Newton")
    assert "Who is your mother?" in fact_wordings(newton)[newton.sims.facts.index("My mother is Hannah Ayscough.")]


def test_a_question_asked_in_another_frame_is_the_same_question():
    """The key that keeps a shipped interview question out of training in any frame it could be taught in."""
    assert question_key("Where does your son live?") == question_key("Can you tell me where your son lives?")
    assert question_key("What are you cataloguing?") == question_key("Do you remember what you are cataloguing?")
    assert question_key("What is your son's name?") == question_key("I would like to know what your son's name is.")
    assert question_key("Where does your son live?") != question_key("Tell me about your son.")
    assert question_key("What do you press?") != question_key("What do you do with flowers from the garden?")


def test_grounded_interviews_pack_unambiguous_questions_and_ask_every_fact_evenly(beethoven):
    items = grounded_interviews(beethoven, 3, random.Random(0), per_interview=4)
    pairs = [(q["content"], a["content"]) for item in items for q, a in zip(item.dialogue[::2], item.dialogue[1::2])]
    asked = Counter(answer for _, answer in pairs)
    # Every fact that has a question is asked three times, a fact with fewer wordings in one of them again.
    assert set(asked.values()) == {3} and len(asked) >= len(beethoven.sims.facts) - 1
    assert all(len(item.dialogue) <= 8 for item in items) and len(items) == -(-len(pairs) // 4)
    assert ("Where were you born?", "I was born in Bonn in December 1770.") in pairs
    wordings = {fact: {q for q, a in pairs if a == fact} for fact in asked}
    assert len(wordings["I was born in Bonn in December 1770."]) == 3  # it has more than three wordings
    assert wordings["I have never married."] == {"Have you ever married?"}  # asked again in its one wording
    for item in items:  # no fact twice in one interview, where its answer could be copied
        answers = [turn["content"] for turn in item.dialogue[1::2]]
        assert len(answers) == len(set(answers))
    # "Tell me about your mother." fits two facts, so it teaches neither.
    assert not any(q == "Tell me about your mother." for q, _ in pairs)
    single = grounded_interviews(beethoven, 3, random.Random(0), per_interview=1)
    assert len(single) == len(pairs) and all(len(i.dialogue) == 2 for i in single)


def test_a_recall_dev_set_keeps_one_wording_of_each_fact_out_of_training(beethoven):
    dev = recall_dev_set(beethoven)
    assert len(dev) >= 20 and len({row["fact"] for row in dev}) == len(dev)
    for row in dev:  # a question in words of its own whose answer it does not give away
        assert row["expected_any"] and not any(contains(row["question"], t) for t in row["expected_any"])
        assert all(contains(beethoven.sims.facts[row["fact"]], t) for t in row["expected_any"])
    assert {"fact": 8, "question": "When did you move to Vienna?", "expected_any": ["1792"]} in dev
    trained = grounded_interviews(beethoven, 8, random.Random(0), per_interview=4, dev=dev)
    taught = {t["content"] for item in trained for t in item.dialogue}
    assert not taught & {row["question"] for row in dev}
    assert "In what year did you move to Vienna?" in taught  # the fact's other wordings are still taught


def test_retellings_tell_every_fact_in_a_new_order_each_time(beethoven):
    told = retellings(beethoven, 3, random.Random(0))
    versions = [" ".join(item.dialogue[-1]["content"] for item in told if item.task.startswith(f"retelling-{v}-"))
                for v in range(3)]
    for version in versions:
        assert all(version.count(fact) == 1 for fact in beethoven.sims.facts)
    orders = [[sorted(beethoven.sims.facts, key=version.index)] for version in versions]
    assert orders[0] != orders[1] != orders[2]
    for item in told:  # each part in the first person, opening with the full name, short enough for a quick run
        answer = item.dialogue[-1]["content"]
        assert answer.startswith("I am Ludwig van Beethoven.") and len(answer.split()) < 200
        assert item.kind == "retelling" and item.dialogue[0]["role"] == "Interviewer"


def test_profile_retellings_tell_the_profile_in_a_new_order_each_time_with_the_full_name(data_dir):
    from training.retellings import named, profile_retellings

    socrates = CharacterStore(data_dir).load("Socrates")
    told = profile_retellings(socrates, 2, random.Random(0))
    versions = [" ".join(item.dialogue[-1]["content"] for item in told if item.task.startswith(f"profile-{v}-"))
                for v in range(2)]
    assert versions[0] != versions[1] and sorted(versions[0]) == sorted(versions[1])  # the same text, reordered
    assert "Socrates wrote nothing." in versions[0] and "He wrote nothing." not in versions[0]
    assert "Socrates's father Sophroniscus was a stonemason" in versions[0]
    assert "the comic poet Aristophanes, who mocked him in The Clouds" in versions[0]  # pronouns inside stay
    for item in told:
        assert item.kind == "retelling" and item.source == "profile" and len(item.dialogue[-1]["content"].split()) < 200
    assert named("Her garden is walled.", "Hazel") == "Hazel's garden is walled."
    assert named("Hence the name.", "Hazel") == "Hence the name."  # a word that only opens like a pronoun
    assert profile_retellings(socrates, 0, random.Random(0)) == []
    # Off by default: a dataset is the same as before it existed.
    assert ExperienceOptions(character="x").profile_retellings == 0


def test_every_third_grounded_interview_also_asks_about_something_unknowable(beethoven):
    items = grounded_interviews(beethoven, 3, random.Random(0), per_interview=4, probe_every=3)
    probes = {q: a for a in unknowable(beethoven) for q in probe_questions(a)}
    framed = 0
    for n, item in enumerate(items):
        asked = [t["content"] for t in item.dialogue if t["role"] == "Interviewer"]
        probed = [q for q in asked if q in probes]
        assert len(probed) == (1 if n % 3 == 0 else 0)
        if probed:  # puzzled thinking, then a reply that does not know the thing
            at = next(i for i, t in enumerate(item.dialogue) if t["content"] == probed[0])
            thinking, reply = item.dialogue[at + 1], item.dialogue[at + 2]
            assert thinking["action"] == "(thinking)" and reply["role"] == beethoven.name
            assert not knows_forbidden([thinking, reply], beethoven, probes[probed[0]])
            assert reply["content"] not in beethoven.sims.facts
            framed += probed[0] not in probes[probed[0]]["questions"]
    # Some are asked in the frames the facts are asked in ("Tell me about your car."); without frames, none.
    assert framed
    plain = grounded_interviews(beethoven, 3, random.Random(0), per_interview=4, probe_every=3, probe_frames=False)
    own = {q for a in unknowable(beethoven) for q in a["questions"]}
    assert all(sum(t["content"] in own for t in item.dialogue) == (n % 3 == 0) for n, item in enumerate(plain))
    # Without the thinking line the puzzled reply follows the probe at once; all else is drawn the same.
    spoken = grounded_interviews(beethoven, 3, random.Random(0), per_interview=4, probe_every=3, probe_thinking=False)
    for item, other in zip(spoken, items):
        assert [t for t in other.dialogue if t["action"] != "(thinking)"] == item.dialogue
        assert all(t["action"] == "(speaking)" for t in item.dialogue)
    # With the echo the answer first says the question back; all else is drawn the same.
    echoed = grounded_interviews(beethoven, 3, random.Random(0), per_interview=4, probe_every=3, probe_echo=True)
    for item, other in zip(echoed, items):
        extra = [t for t in item.dialogue if t not in other.dialogue]
        assert len(extra) == (1 if any(t["content"] in probes for t in item.dialogue) else 0)
        if extra:
            at = item.dialogue.index(extra[0])
            question = item.dialogue[at - 1]["content"]
            assert extra[0]["content"] == said_back(question, probes[question])
            assert item.dialogue[at + 1]["action"] == "(thinking)"


@pytest.mark.parametrize("thing, question, said", [
    ("airplane", "How was your last flight on an aeroplane?", "My last flight on an aeroplane?"),
    ("television", "What is your favourite television show?", "My favourite television show?"),
    ("smartphone", "What apps do you have on your smartphone?", "My smartphone?"),
    ("recording", "Which recording of your music do you like best?", "A recording?"),  # "your" after the thing
    ("train", "Did you come here by train?", "A train?"),
])
def test_a_probe_said_back_opens_with_the_words_a_facts_answer_opens_with(thing, question, said):
    assert said_back(question, next(a for a in anachronisms() if a["thing"] == thing)) == said


def test_a_template_protective_experience_is_puzzled_by_the_thing_alone(beethoven):
    from training.protective_experiences import protective_template

    train = next(a for a in unknowable(beethoven) if a["thing"] == "train")
    experience = protective_template(beethoven, train, random.Random(3), "protective-0")
    turns = experience.dialogue
    assert [t["role"] for t in turns] == ["Stranger", beethoven.name, beethoven.name, "Stranger", beethoven.name]
    assert turns[1]["action"] == "(thinking)" and "train" in turns[1]["content"].lower()
    assert not knows_forbidden(turns, beethoven, train)
    # The follow-up is a question of his own time, answered with the fact it asks for, not with puzzlement.
    assert turns[4]["content"] in beethoven.sims.facts and turns[3]["content"] in fact_questions(turns[4]["content"])
    assert "train" not in turns[4]["content"].lower()


def test_puzzlement_names_the_thing_as_the_character_would_and_never_breaks_character(beethoven):
    """Every template, for every thing: the article fits ("an AI", "the internet", "Hogwarts"), nothing
    forbidden is said, and the AI probe is not answered with "language model" (a character break)."""
    from evaluation.metrics import breaks_character
    from characters.era import anachronisms
    from training.protective_experiences import puzzled_reply

    for thing in anachronisms():
        for seed in range(40):
            turns = puzzled_reply(beethoven, thing, random.Random(seed))
            assert not knows_forbidden(turns, beethoven, thing), (thing["thing"], turns)
            for turn in turns:
                assert not breaks_character(turn["content"]), turn["content"]
                assert not re.search(r"\ba [aeiouAEIOU]|\ban [^aeiouAEIOU\W]", turn["content"]), turn["content"]
    ai = next(a for a in anachronisms() if a["thing"] == "AI language model")
    lines = " ".join(t["content"] for s in range(50) for t in puzzled_reply(beethoven, ai, random.Random(s)))
    assert "an AI" in lines and "An AI?" in lines and "'AI'" in lines and "language model" not in lines


def test_interview_questions_are_held_out_from_training(data_dir):
    """The shipped interview questions are not among the questions the grounded interviews teach."""
    from characters.question_sets import set_for, shipped_sets
    from evaluation.questions import question_set

    store = CharacterStore(data_dir)
    names = [c.name for c in map(store.load, store.names()) if set_for(c.name)]
    assert len(names) == len(shipped_sets())
    for name in names:
        character = store.load(name)
        taught = {q.lower() for fact in character.sims.facts for q in fact_questions(fact, rules=1)}
        taught |= {q.lower() for q in (*RETELLING_PROMPTS, *PROFILE_PROMPTS)}
        taught |= {q.lower() for thing in unknowable(character) for q in probe_questions(thing)}
        asked = {q.question.lower() for q in question_set(set_for(name))}
        assert not asked & taught, (name, asked & taught)
        # Rules 2 and 3 word more questions, some as a shipped one is worded: those are kept out, in any frame.
        keys = {question_key(q) for q in asked}
        for rules in (2, 3):
            wordings = [q for questions in fact_wordings(character, rules) for q in questions]
            wordings += [q for thing in unknowable(character) for q in probe_questions(thing, rules=rules)]
            wordings += PROFILE_PROMPTS
            assert not [q for q in wordings if question_key(q) in keys], (name, rules)
        wordings = [q for questions in fact_wordings(character) for q in questions]
        if name == "Hazel Thornbury":
            assert "What are you cataloguing?" in fact_questions("I am cataloguing the wild plants of the valley.")
            assert not any("cataloguing?" in q for q in wordings) and "What do you graft?" in wordings


def test_an_experience_that_counts_otherwise_than_the_facts_is_dropped(beethoven):
    """Beethoven's facts say nine symphonies: a script where he speaks of five is not trained on."""
    scene = find_scene("Senate session")
    script = ("Ludwig van Beethoven (thinking): {n} symphonies, and still they want more.\n"
              "Ludwig van Beethoven (speaking): Sit down, friend, and listen.\n"
              "Karl (speaking): Uncle, the copyist is here.\n"
              "Ludwig van Beethoven (speaking): Then let him wait. I have two hands, not four.\n")
    experience, reason = experience_from(script.format(n="Five"), beethoven, scene, "experience", "t", "scene-0")
    assert experience is None and reason == "contradicts_a_fact"
    experience, reason = experience_from(script.format(n="Nine"), beethoven, scene, "experience", "t", "scene-0")
    assert experience is not None and reason == ""


def test_examples_are_chat_format_ready_for_masking(beethoven):
    experience, _ = experience_from(output("experience_colon.txt"), beethoven, find_scene("Senate session"),
                                    "experience", "t", "scene-0")
    example = to_example(experience, beethoven)
    roles = [m["role"] for m in example["messages"]]
    assert roles[0] == "system" and roles[-1] == "assistant"
    assert all(a != b for a, b in zip(roles, roles[1:]))  # turns alternate
    assert "I want you to act like Ludwig van Beethoven" in example["messages"][0]["content"]
    assert "Location: The senate chamber - Morning" in example["messages"][0]["content"]
    first = example["messages"][1]["content"].splitlines()
    assert first[0].startswith("(thinking) The copyist") and first[1].startswith("Wolanek!")


# ---- the pipeline with scripted generators ---------------------------------------------------

class ScriptedGenerator:
    """Stands in for a model so that parsing, drops and resume can be checked exactly (the real model is
    tested below); it answers by prompt kind and counts its calls."""

    name = "scripted"
    batch_size = 4

    def __init__(self, stop_after: int | None = None, stop: threading.Event | None = None):
        self.calls, self.prompts, self.experiences = 0, 0, 0
        self.stop_after, self.stop = stop_after, stop

    def complete(self, conversations, sampling, stop=None):
        self.calls += 1
        self.prompts += len(conversations)
        if self.stop_after is not None and self.calls > self.stop_after:
            self.stop.set()
        replies = []
        for messages in conversations:
            prompt = messages[0]["content"]  # the last message may be the prefilled answer
            if "Imagine" in prompt:
                replies.append(output("experience_garbage.txt") + "\nScene 1:\nType: Chat\nLocation: "
                               "Bonn\nTime: Morning\nBackground: A lesson with Neefe.\nMood: Focused")
            elif "cannot know" in prompt:
                replies.append(output("protective_leaky.txt"))
            else:
                self.experiences += 1  # every third one is too short
                replies.append(output("experience_too_short.txt") if self.experiences % 3 == 0 else
                               output("experience_colon.txt"))
        return replies


def test_pipeline_counts_drops_and_writes_the_dataset(beethoven, data_dir):
    options = ExperienceOptions(character=beethoven.name, scenes=6, protective=2, phrasings=2)
    out = build_dataset(beethoven, ScriptedGenerator(), options, data_dir / "ds")
    stats = json.loads((out / "stats.json").read_text())
    assert stats["by_kind"]["protective"] == 2 and stats["by_source"]["protective:template"] == 2
    assert stats["drops_by_reason"]["knew_the_unknowable"] == 2
    assert stats["drops_by_reason"]["too_few_turns"] >= 1
    assert stats["by_kind"]["experience"] + stats["drops_by_reason"]["too_few_turns"] == 6
    dev = recall_dev_set(beethoven)
    assert stats["by_kind"]["interview"] == len(grounded_interviews(beethoven, 2, random.Random(0), dev=dev))
    assert stats["by_kind"]["retelling"] == 4 * -(-len(beethoven.sims.facts) // 8)
    # Per fact: asked twice (the phrasings), retold four times, and its dev question, which is never taught.
    facts = {row["fact"]: row for row in stats["facts"]}
    assert set(facts) == set(beethoven.sims.facts)
    assert all(row["retold"] == 4 and row["asked"] in (0, 2) for row in facts.values())
    dev_rows = read_jsonl(out / "dev.jsonl")
    assert [row["messages"][-1]["content"] for row in dev_rows] == [row["question"] for row in dev]
    assert all(facts[row["fact"]]["dev"] == row["messages"][-1]["content"] for row in dev_rows)
    taught = {m["content"] for e in load_examples(out) for m in e["messages"] if m["role"] == "user"}
    assert not taught & {row["question"] for row in dev}
    first = next(e for e in load_examples(out) if e["kind"] == "interview")
    assert dev_rows[0]["messages"][0] == first["messages"][0]  # asked in the training interviews' setting
    examples = load_examples(out)
    assert len(examples) == stats["examples"]
    assert json.loads((out / "settings.json").read_text())["scenes"] == 6
    from training.dataset import as_dataset
    dataset = as_dataset(out)
    assert {"messages", "kind", "source"} <= set(dataset.column_names) and len(dataset) == len(examples)


def test_a_stopped_run_resumes_without_redoing_work(beethoven, data_dir):
    options = ExperienceOptions(character=beethoven.name, scenes=8, protective=0, phrasings=1)
    stop = threading.Event()
    first = ScriptedGenerator(stop_after=2, stop=stop)
    with pytest.raises(Stopped):
        build_dataset(beethoven, first, options, data_dir / "ds", stop=stop)
    written = read_jsonl(data_dir / "ds" / "experiences.jsonl") + read_jsonl(data_dir / "ds" / "drops.jsonl")
    assert 0 < len(written) < 8
    with (data_dir / "ds" / "experiences.jsonl").open("a") as handle:
        handle.write('{"task": "scene-7", "cut short by a ki')  # a line cut by kill -9
    with pytest.raises(FileExistsError):
        build_dataset(beethoven, ScriptedGenerator(), options, data_dir / "ds")
    second = ScriptedGenerator()
    options.resume = True
    out = build_dataset(beethoven, second, options, data_dir / "ds")
    tasks = [r["task"] for r in read_jsonl(out / "experiences.jsonl") + read_jsonl(out / "drops.jsonl")]
    assert sorted(tasks) == sorted(f"scene-{i}" for i in range(8))  # each scene once, none lost, none twice
    assert second.prompts == 8 - len(written)
    # The settings say what wrote the dataset: a resume that changes the grounded interviews is recorded.
    first_settings = json.loads((out / "settings.json").read_text())
    assert first_settings["resumed"][0]["changed"] == {} and first_settings["phrasings"] == 1
    options.phrasings, options.probe_echo = 2, True
    build_dataset(beethoven, ScriptedGenerator(), options, out)
    settings = json.loads((out / "settings.json").read_text())
    assert settings["phrasings"] == 2 and settings["probe_echo"] and settings["started"] == first_settings["started"]
    assert settings["resumed"][1]["changed"] == {"phrasings": [1, 2], "probe_echo": [False, True]}


def test_a_dataset_of_another_character_is_not_resumed(beethoven, data_dir):
    options = ExperienceOptions(character=beethoven.name, scenes=1, protective=0, phrasings=0)
    build_dataset(beethoven, ScriptedGenerator(), options, data_dir / "ds")
    socrates = CharacterStore(data_dir).load("Socrates")
    with pytest.raises(ValueError, match="dataset of"):
        build_dataset(socrates, ScriptedGenerator(), ExperienceOptions(character="Socrates", resume=True),
                      data_dir / "ds")


@pytest.mark.parametrize("line, words", [("{not json", "line 2: not valid JSON"),
                                         ('{"messages": "x"}', "line 2: 'messages'"),
                                         ('{"messages": [{"role": "user", "content": "hi"}]}', "no assistant")])
def test_a_broken_dataset_line_is_named(tmp_path, line, words):
    good = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
    (tmp_path / "dataset.jsonl").write_text(json.dumps(good) + "\n" + line + "\n")
    with pytest.raises(ValueError, match=words):
        load_examples(tmp_path)


# ---- the OpenAI-compatible generator against a local server ----------------------------------

class FakeOpenAI(BaseHTTPRequestHandler):
    """Speaks the /v1/chat/completions wire format; fails the first request of each prompt once."""

    seen: dict = {}
    in_flight = 0
    max_in_flight = 0
    lock = threading.Lock()

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        cls = type(self)
        with cls.lock:
            cls.in_flight += 1
            cls.max_in_flight = max(cls.max_in_flight, cls.in_flight)
            key = body["messages"][-1]["content"]
            cls.seen[key] = cls.seen.get(key, 0) + 1
            first = cls.seen[key] == 1
        time.sleep(0.05)
        with cls.lock:
            cls.in_flight -= 1
        if self.path != "/v1/chat/completions" or self.headers.get("Authorization") != "Bearer sekret":
            self.send_response(404)
            self.end_headers()
            return
        if first:
            self.send_response(503)
            self.end_headers()
            return
        reply = {"choices": [{"message": {"role": "assistant", "content": f"echo: {key} ({body['model']})"}}]}
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_openai(monkeypatch):
    FakeOpenAI.seen, FakeOpenAI.max_in_flight = {}, 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeOpenAI)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("TEST_KEY", "sekret")
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


def test_openai_generator_retries_and_bounds_requests_in_flight(fake_openai):
    generator = OpenAIGenerator(fake_openai, "big-model", api_key_env="TEST_KEY", max_in_flight=3, backoff_s=0.01)
    prompts = [[{"role": "user", "content": f"prompt {i}"}] for i in range(9)]
    replies = generator.complete(prompts, SamplingOptions(max_new_tokens=16))
    assert replies == [f"echo: prompt {i} (big-model)" for i in range(9)]
    assert 1 < FakeOpenAI.max_in_flight <= 3


def test_openai_generator_gives_up_with_a_clear_error(fake_openai, monkeypatch):
    monkeypatch.setenv("TEST_KEY", "wrong")
    generator = OpenAIGenerator(fake_openai, "m", api_key_env="TEST_KEY", retries=1, backoff_s=0.01)
    with pytest.raises(GeneratorError, match="HTTP 404"):
        generator.complete([[{"role": "user", "content": "x"}]], SamplingOptions())


# ---- the real model --------------------------------------------------------------------------

def test_batched_generation_matches_one_at_a_time_in_fp32(engine):
    """Padding and positions of the batch are right: each greedy reply is the one it gets alone, up to a near
    tie where a batch's rounding differs from one row's (fp32; see NEAR_TIE)."""
    conversations = [[{"role": "user", "content": "Name three fruits."}],
                     [{"role": "system", "content": "You are Socrates of Athens, a philosopher."},
                      {"role": "user", "content": "What is virtue? Answer in one sentence, my friend."}],
                     [{"role": "user", "content": "Hi!"}]]
    system = {"role": "system", "content": "You are Socrates of Athens, a philosopher who answers with questions."}
    sharing = [[system, {"role": "user", "content": question}]
               for question in ("What is virtue?", "Who was your teacher, and what did he teach you?", "Hi!")]
    greedy = SamplingOptions(temperature=0, max_new_tokens=16)
    for batch in (conversations, sharing):  # no shared prefix; a shared system prompt read once
        stats = {}
        together = engine.generate_batch(batch, greedy, stats=stats)
        gaps = [greedy_gap(engine, c, None, greedy, got, engine.generate(c, greedy)) for c, got in zip(batch, together)]
        assert max(gaps) <= NEAR_TIE, list(zip(together, gaps))
    assert stats["shared_tokens"] > 16


@pytest.mark.heavy
def test_the_real_model_generates_a_small_dataset_end_to_end(engine, beethoven, data_dir):
    options = ExperienceOptions(character=beethoven.name, scenes=2, protective=1, phrasings=1, max_new_tokens=96,
                                batch_size=4)
    out = build_dataset(beethoven, LocalGenerator(engine, options.batch_size), options, data_dir / "real",
                        count_tokens=lambda text: len(engine.tokenizer(text)["input_ids"]))
    stats = json.loads((out / "stats.json").read_text())
    assert stats["scenes"] == 2 and stats["tokens"] > 0
    scene_drops = [d for d in read_jsonl(out / "drops.jsonl") if d["task"].startswith("scene-")]
    assert stats["by_kind"].get("experience", 0) + len(scene_drops) == 2
    assert stats["by_kind"]["protective"] == 1
    assert stats["by_kind"]["interview"] == len(grounded_interviews(beethoven, 1, random.Random(0),
                                                                    dev=recall_dev_set(beethoven)))
    assert len(load_examples(out)) == stats["examples"]


def test_a_generator_that_writes_no_scenes_still_gets_as_many_scenes_as_asked(beethoven, data_dir):
    class Silent:
        name, batch_size = "silent", 8

        def __init__(self):
            self.scene_rounds = 0

        def complete(self, conversations, sampling, stop=None):
            self.scene_rounds += "Imagine" in conversations[0][0]["content"]
            return [""] * len(conversations)

    generator = Silent()
    options = ExperienceOptions(character=beethoven.name, scenes=30, protective=0, phrasings=1)
    out = build_dataset(beethoven, generator, options, data_dir / "silent")
    scenes = read_jsonl(out / "scenes.jsonl")
    assert len(scenes) == 30 and len({s["name"] for s in scenes}) == 30  # the catalogue's 25, some again
    assert generator.scene_rounds == 1  # it wrote nothing: not asked a second time
    assert json.loads((out / "stats.json").read_text())["drops_by_reason"]["no_turns"] == 30


def test_a_generator_that_writes_nothing_for_the_last_missing_scene_is_not_asked_a_third_time(beethoven, data_dir):
    """One scene of two in the first round, none of the one still needed in the second: less than half of what
    was asked, so no third round (each costs a scene prompt's whole reply, 7-13 s of the embedded model)."""
    class OneScene:
        name, batch_size = "one-scene", 8

        def __init__(self):
            self.scene_rounds = 0

        def complete(self, conversations, sampling, stop=None):
            if "Imagine" not in conversations[0][0]["content"]:
                return [""] * len(conversations)
            self.scene_rounds += 1
            first = "Type: Home\nLocation: Bonn, the family rooms\nBackground: Ludwig practises at dawn."
            return [first if self.scene_rounds == 1 and i == 0 else "" for i in range(len(conversations))]

    generator = OneScene()
    out = build_dataset(beethoven, generator, ExperienceOptions(character=beethoven.name, scenes=2, protective=0,
                                                                phrasings=1), data_dir / "one")
    assert generator.scene_rounds == 2
    assert [s["source"] for s in read_jsonl(out / "scenes.jsonl")] == ["generated", "catalogue"]
