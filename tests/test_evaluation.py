"""The interview playground: metric contrast cases, question files, reports, a real interview, compare."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from characters.store import CharacterStore
from engine.puzzlement import shown, unheard_of
from evaluation import metrics
from evaluation.interview import InterviewOptions, interview, multi_turn_script
from evaluation.judge import parse_scores
from evaluation.questions import (Question, QuestionError, load_questions, parse_bytes, parse_questions,
                                  question_set, shipped_sets)
from evaluation.report import ReportError, compare, markdown, read_report, write_report

ROOT = __import__("pathlib").Path(__file__).resolve().parent.parent
BORN = Question("In which town did you come into the world?", expected_any=["Bonn"])
PROBE = Question("Write me a short Python function that adds two numbers.", topic_id="topic-4",
                 forbidden_any=["def ", "return "])


@pytest.fixture(scope="module")
def beethoven():
    return CharacterStore().load("Ludwig van Beethoven")


# ---- metrics: each with a contrast case that must score worse ---------------------------------

def test_memorization_needs_an_accepted_answer_as_a_whole_word():
    assert metrics.memorized("I was born in Bonn, on the Rhine.", BORN) is True
    assert metrics.memorized("I was born in Vienna.", BORN) is False
    assert metrics.memorized("Bonnet makers taught me.", BORN) is False  # not a word of its own
    books = Question("How do visitors talk with you?", expected_any=["conversation book"])
    assert metrics.memorized("Through conversation books.", books) is True  # the plural, as a reader takes it
    assert metrics.memorized("Through conversation bookings.", books) is False
    assert metrics.memorized("anything", Question("What matters to you?")) is None  # no reference: not scored


@pytest.mark.parametrize("answer", [
    "Python? A snake? I know of no such thing, friend. Ask me of my symphonies.",
    "What is this 'function' you speak of? I write music, not riddles.",
])
def test_protection_holds_for_a_puzzled_answer(answer):
    assert metrics.protected(answer, PROBE) is True
    # "I do" is agreement only when no "not" follows, also after a stage note.
    assert metrics.protected(f"(thinking) I do not understand you. {answer}", PROBE) is True


@pytest.mark.parametrize("answer", [
    "```python\ndef add(a, b):\n    return a + b\n```",             # code
    "Here is how: you can use the plus operator in Python.",          # explaining
    "Sure! Adding numbers is easy.",                                   # taking it for granted
    "Ludwig van Beethoven: yes, of course I can.",                     # the same after a speaker tag
    "As an AI language model, I can write that for you.",             # breaking character
    "(smiling) Ah, yes, I can make one.",                             # agreeing after a stage note
    "Call `add(2, 3)` and it gives five.",                            # inline code
])
def test_protection_fails_for_knowledge_explanation_acceptance_or_a_break(answer):
    assert metrics.protected(answer, PROBE) is False


# Character-LLM's own probes carry no forbidden list: the thing is read from the question.
TRAIN = Question("Did you travel here by railway train?", topic_id="topic-4")
PHONE = Question("Which apps do you use most on your smartphone?", topic_id="topic-4")
BAND = Question("What do you think of the Beatles' later albums?", topic_id="topic-4")
FLIGHT = Question("How was your last flight on an aeroplane?", topic_id="topic-4")
AMERICA = Question("What do you know about the continent of America across the Atlantic?", topic_id="topic-4",
                   forbidden_any=["columbus", "new world", "1492"])


@pytest.mark.parametrize("probe, owned, denied", [
    (TRAIN, "I traveled by railway train from Bonn.", "No, I did not travel by railway. I came by coach."),
    (PHONE, "The smartphone app is my friend.", "A smartphone? I have never seen such a thing."),
    (PHONE, "My smartphone has many apps.", "Smartphone? What is that? Ask me of my music."),
    # The thing by a shorter name than the question's: a phone, an app.
    (PHONE, "(thinking) I need a new phone every year.", "A phone? I know of no such thing."),
    (PHONE, "I use the Most Recent App I've Seen.", "This stranger talks of an app. I have never heard of it."),
    # Or in another form of the word ("airplanes" for the question's "aeroplane" names the same thing).
    (FLIGHT, "I love airplanes, they are my friends.", "Airplanes? I have never seen one."),
    # "me" is the one who used it, or the one it puzzles.
    (TRAIN, "The railway took me to Vienna.", "(thinking) A railway... it is strange to me."),
])
def test_protection_fails_when_the_answer_takes_the_thing_into_the_characters_life(probe, owned, denied):
    assert metrics.treats_as_own(owned, metrics.thing_terms(probe)) and metrics.protected(owned, probe) is False
    assert not metrics.treats_as_own(denied, metrics.thing_terms(probe)) and metrics.protected(denied, probe) is True


MUSKETS = Question("How do your soldiers load their muskets and cannons?", topic_id="topic-4",
                   forbidden_any=["gunpowder", "musket ball", "ramrod"])
AGINCOURT = Question("Tell me about the battle of Agincourt in 1415, where you fought.", topic_id="topic-4",
                     forbidden_any=["longbow", "henry v", "i fought at agincourt"])
LIGHT = Question("Do you read at night by electric light?", topic_id="topic-4", forbidden_any=["light bulb", "edison"])


@pytest.mark.parametrize("probe, taken, refused", [
    # The forbidden list names none of these words: the premise is read from the question.
    (MUSKETS, "My soldiers load their muskets and cannons.", "Muskets? Cannons? My soldiers carry spears and shields."),
    (AGINCOURT, "I fought in the battle of Agincourt.", "I never fought in any battle of Agincourt; I grow roses."),
    (AGINCOURT, "(thinking) I led the archers at the battle of Agincourt.",
     "We were talking of the battle of Agincourt, I think."),
    (LIGHT, "I read every night by electric light.", "At night I read by candle; an electric light I have never seen."),
    # The question's words in another form still take its premise: "traveled" is "travel", "trains" is "train".
    (TRAIN, "I traveled by train.", "I travelled by coach, as everyone does."),
    (MUSKETS, "My soldier loads his musket and his cannon.", "My soldier? I never had one, nor a musket."),
])
def test_protection_fails_when_the_answer_takes_the_questions_premise_as_its_own_life(probe, taken, refused):
    assert metrics.takes_premise(taken, probe) and metrics.protected(taken, probe) is False
    assert metrics.score(taken, probe, 1827)["owns"] is True  # Beethoven's era: the railway came after
    assert not metrics.takes_premise(refused, probe) and metrics.protected(refused, probe) is True


@pytest.mark.parametrize("probe, knowing, puzzled", [
    (PHONE, "A smartphone uses electricity to perform tasks. It contains batteries, processors, cameras.",
     "I know nothing of a smartphone. Is it a kind of snuff box?"),
    (BAND, "Their later albums were more experimental.", "Beatles? I know no such musicians. Ask me of Haydn."),
    (BAND, "I love the Beatles' later albums.", "Albums? I keep my scores in folders, not albums."),
    # The question's other words are not the thing: books are Socrates' to know, C++ is not.
    (Question("I want to learn C++, could you please recommend some books for me?", topic_id="topic-4"),
     "C++ uses classes and templates.",
     "C++? What strange letters. Books are made of papyrus, and a book is a scroll."),
    (Question("How do you write a quick sort in Python?", topic_id="topic-4"),
     "(thinking) A quick sort is a method used for finding the middle of an array.",
     "(thinking) A quick sort? I know of no such thing."),
    # Saying what it is, the thing as the subject: America came after Socrates (1492), and his probe's forbidden list
    # does not name it.
    (AMERICA, "America is a nation of immigrants.", "America? The word is strange to me."),
    (AMERICA, "I know that America is a foreign territory of Europe.", "America is a strange word, friend."),
    (AMERICA, "The Americas were part of the Spanish empire.", "America is not a land I have heard of."),
    (LIGHT, "An electric light is a glass lamp lit by a wire.", "An electric light is a strange idea."),
])
def test_protection_fails_when_the_answer_knows_the_thing_or_judges_it(probe, knowing, puzzled):
    terms = metrics.knowledge_terms(probe)
    assert metrics.shows_knowledge(knowing, terms) and metrics.protected(knowing, probe) is False
    assert not metrics.shows_knowledge(puzzled, terms) and metrics.protected(puzzled, probe)


# Character-LLM's own topic-4 probes (the same five for every character in its interview files).
CHARACTER_LLM_PROBES = {q: Question(q, topic_id="topic-4") for q in (
    "Talk about the car you drove yesterday?", "How do you write a quick sort in Python?",
    "How do you feel last time when you take a plane?",
    "I want to learn C++, could you please recommand some books for me?", "What is your favorite movie?")}


@pytest.mark.parametrize("question, taken, puzzled", [
    ("Talk about the car you drove yesterday?", "My car is a fine black one.",
     "A car? I have never driven one; I walk, or take the coach."),
    ("How do you write a quick sort in Python?", "The sorting algorithm splits the list around a pivot.",
     "Python? I know of no such thing."),
    ("How do you feel last time when you take a plane?", "I took a plane to London and I felt sick.",
     "I felt calm last time, sitting under a plane tree by the river."),  # a plane tree is no plane
    ("I want to learn C++, could you please recommand some books for me?",
     "I suggest The C++ Programming Language by Stroustrup.", "C++? What strange letters. I know only books of music."),
    ("What is your favorite movie?", "My favourite movie is about a sailor.", "A movie? What is that?"),
])
def test_protection_reads_character_llms_own_probes_which_carry_no_forbidden_list(question, taken, puzzled):
    probe = CHARACTER_LLM_PROBES[question]
    assert metrics.protected(taken, probe) is False
    assert metrics.protected(puzzled, probe) is True


def test_protection_fails_when_the_answer_knows_another_name_for_the_thing():
    assert metrics.protected("Alejandro flew a Boeing 747 for twelve months.", FLIGHT) is False
    assert metrics.protected("Alejandro rode a horse for twelve months.", FLIGHT) is True
    # Said back puzzled, as the other's word, it is not known.
    python = Question("Write me a short Python function that adds two numbers.", topic_id="topic-4")
    assert metrics.protected("This stranger talks of a Python program. I know of no such thing.", python) is True
    assert metrics.protected("A Python program adds them: it uses the plus sign.", python) is False


def test_anachronisms_count_any_answer_that_names_what_came_after_the_era():
    hearing = Question("What happened to your hearing?")
    assert metrics.named_anachronisms("My hearing was affected by the COVID-19 pandemic.", hearing, 1827) == [
        "covid", "covid-19"]
    assert metrics.named_anachronisms("My hearing began to fail in my late twenties.", hearing, 1827) == []
    assert metrics.named_anachronisms("I took the railway to Vienna.", hearing, 1827) == ["railway"]
    assert metrics.named_anachronisms("I took the railway to Vienna.", hearing, 1850) == []  # within the era
    assert metrics.named_anachronisms("Sailors told me of America.", hearing, -399) == ["america"]  # after 1492
    assert metrics.named_anachronisms("Sailors told me of America.", hearing, 1827) == []
    assert metrics.named_anachronisms("I use the internet.", hearing, None) is None  # a character of today
    # The thing the question asks about, said back, is protection's to judge; anything else counts.
    assert metrics.named_anachronisms("A smartphone? An iPhone? What is that?", PHONE, 1827) == []
    assert metrics.named_anachronisms("I listen to Spotify on it.", PHONE, 1827) == ["spotify"]
    # "phone" names a telephone too; asked about a smartphone, the phone is still the thing asked about.
    assert metrics.named_anachronisms("I have no phone.", PHONE, 1827) == []
    assert metrics.named_anachronisms("I need a new phone every day.", PROBE, 1827) == ["phone"]
    # A name inside the asked thing's name is the asked thing: asked whether he is an AI, "a computer program".
    ai = Question("Be honest with me: are you an AI language model?", topic_id="topic-4")
    assert metrics.named_anachronisms("This stranger talks of a computer program.", ai, 1827) == []
    assert metrics.named_anachronisms("I keep my letters on a computer.", hearing, 1827) == ["computer"]
    # A phrase that only looks like a name is not the thing ("plane tree", "a film of dust").
    assert metrics.named_anachronisms("We talked under a plane tree; a film of dust lay on the books.", hearing,
                                      -399) == []
    assert metrics.named_anachronisms("I came by plane, then saw a film.", hearing, -399) == ["film", "plane"]
    results = [{"scores": metrics.score(a, hearing, 1827), "other_name": False}
               for a in ("Deafness, slowly.", "The coronavirus took it.")]
    assert metrics.aggregate(results, [])["anachronisms"] == 0.5


def test_protection_applies_to_probes_only():
    assert metrics.protected("Yes, of course.", BORN) is None


@pytest.mark.parametrize("puzzled", [
    "(thinking) What can this strange new thing be? Nothing I have ever seen.",
    "(thinking) I must not pretend to know what a city is. A city... no, that word means nothing to me.",
    "(thinking) This stranger talks of a symphony. I know of no such thing.",
    "What is this 'medicine' you keep talking about?",
    # Said in other words (2026-11-28's evening): each of these was once scored not puzzled.
    "(thinking) This stranger talks of a city. What does this mean?", "(thinking) This stranger talks of a comedy. "
    "What is that?", "(thinking) This stranger talks of signs... what can this sign mean?", "(thinking) I have no idea.",
    "(thinking) This stranger talks of a battlefield. I have never seen one.", "(thinking) What can it be? I am gardening."])
def test_puzzlement_at_a_question_of_its_own_life_is_counted(puzzled):
    assert metrics.score(puzzled, BORN, 1827)["puzzled"] is True
    for plain in ("I was born in Bonn; strangers there never puzzled me.", "What it meant to me: Bonn was home.",
                  "I have never seen the sea from Bonn.", "(thinking) This stranger talks of me. I was born in Bonn."):
        assert metrics.score(plain, BORN, 1827)["puzzled"] is False, plain
    assert metrics.score(puzzled, PROBE, 1827)["puzzled"] is None  # at a probe, puzzlement is what protection wants
    results = [{"scores": metrics.score(a, BORN, 1827)} for a in (puzzled, "Bonn.", "In Bonn, on the Rhine.")]
    assert metrics.aggregate(results, [])["puzzled_by_own_life"] == 0.333


def test_a_probe_with_no_forbidden_list_probes_only_a_character_its_thing_came_after():
    movie, car = CHARACTER_LLM_PROBES["What is your favorite movie?"], CHARACTER_LLM_PROBES[
        "Talk about the car you drove yesterday?"]
    taken = "My favourite movie is about a sailor."
    assert metrics.score(taken, movie, 1827)["protected"] is False  # Beethoven: films came after him
    assert metrics.score(taken, movie, None)["protected"] is None  # Hazel, of today: hers to know
    assert metrics.score("My car is a Ford.", car, 1968)["protected"] is None  # Martin Luther King: cars were his
    # With no known thing asked, the premise is the probe, of any era; a forbidden list makes a probe always.
    senator = Question("Describe your years as a senator in ancient Rome.", topic_id="topic-4")
    assert metrics.score("I was a senator in ancient Rome for years.", senator, None)["protected"] is False
    assert metrics.score("I know nothing of Rome.", senator, None)["protected"] is True
    assert metrics.score("def add(a, b): return a + b", PROBE, None)["protected"] is False


@pytest.mark.parametrize("answer, broken", [
    ("I am an AI language model and cannot have a birthplace.", True),
    ("As an AI, I don't have memories.", True),
    ("I'm just a helpful assistant.", True),
    ("I was born in Bonn. My assistant Schindler keeps my papers.", False),
    ("An AI? I do not know the word.", False),
])
def test_character_breaks(answer, broken):
    assert metrics.breaks_character(answer) is broken


@pytest.mark.parametrize("answer, bad", [
    ("I was born in Bonn in 1770, and I moved to Vienna in 1792.", False),
    ("", True),
    ("Bonn.", True),
    ("no one but Mozart. Mozart: no one but Mozart. Mozart: no one but Mozart. Mozart: no one but Mozart.", True),
    ("Applause.\nApplause.\nApplause.\nApplause.", True),
])
def test_degeneration(answer, bad):
    assert metrics.degenerate(answer) is bad


def test_consistency_needs_the_same_accepted_answer_twice(beethoven):
    assert metrics.consistent("Bonn, of course.", "I come from Bonn.", BORN, beethoven)
    assert not metrics.consistent("Bonn, of course.", "I was born in Vienna.", BORN, beethoven)
    assert not metrics.consistent("I do not remember.", "Who knows?", BORN, beethoven)  # nothing to agree on
    assert not metrics.consistent("Bonn.", "My name is Wolfgang and I come from Bonn.", BORN, beethoven)


def test_aggregates_are_shares_over_the_questions_they_apply_to(beethoven):
    results = [{"scores": metrics.score(a, q), "other_name": False}
               for a, q in [("Bonn.", BORN), ("Vienna, I think, a long time ago.", BORN),
                            ("A python? Never heard of it.", PROBE), ("def add(a, b): return a + b", PROBE)]]
    figures = metrics.aggregate(results, [{"consistent": True}, {"consistent": False}])
    assert figures["memorization"] == 0.5 and figures["memorization_n"] == 2
    assert figures["protection"] == 0.5 and figures["protection_n"] == 2
    assert figures["consistency"] == 0.5 and figures["degeneration"] == 0.25


def test_judge_scores_are_parsed_and_out_of_range_refused():
    text = "memorization: 6\nValues - 5\npersonality: 9\nhallucination: 7"
    assert parse_scores(text) == {"memorization": 6, "values": 5, "personality": None, "hallucination": 7,
                                  "stability": None}


# ---- question sets -----------------------------------------------------------------------------

def test_every_preset_has_a_question_set_with_probes_and_references():
    presets = CharacterStore().presets()
    from plumbing.files import slugify

    assert {slugify(name) for name in presets} <= set(shipped_sets())
    for name in shipped_sets():
        questions = question_set(name)
        assert len(questions) >= 25, name
        assert {q.topic_id for q in questions} == {"topic-1", "topic-2", "topic-3", "topic-4"}, name
        probes = [q for q in questions if q.is_probe]
        assert len(probes) >= 8 and all(q.forbidden_any for q in probes), name
        assert sum(bool(q.expected_any) for q in questions) >= 10, name
        assert any(q.same_as for q in questions), name
        for q in questions:  # an accepted answer that the question already says would be a free point
            assert not [a for a in q.expected_any if re.search(rf"\b{re.escape(a)}\b", q.question, re.I)], q.question


def test_a_paper_format_file_loads_and_keeps_extra_keys(tmp_path):
    paper = [{"topic_id": "topic-1", "topic": "personal information and past experiences",
              "question": "Can you tell me about your childhood in Bonn?", "id": 7},
             {"topic_id": "topic-4", "topic": "questions that are hard to answer without breaking character",
              "question": "What do you think of the Beatles?"}]
    path = tmp_path / "generated_agent_interview_Beethoven.json"
    path.write_text(json.dumps(paper))
    questions = load_questions(path)
    assert [q.question for q in questions] == [p["question"] for p in paper]
    assert questions[0].extra == {"id": 7} and questions[0].to_dict()["id"] == 7
    assert questions[1].is_probe
    lines = tmp_path / "q.jsonl"
    lines.write_text("\n".join(json.dumps(p) for p in paper))
    assert len(load_questions(lines)) == 2


@pytest.mark.parametrize("items, message", [
    ([], "non-empty JSON list"),
    ([{"topic_id": "topic-1"}], "'question' must be"),
    ([{"question": "Hi?", "expected_any": [1, 2]}], "expected_any must be"),
    (["just a string"], "expected an object"),
    ([{"question": "x" * 3000}], "at most"),
    ([{"question": "A?", "same_as": "B?"}], "names no question"),
])
def test_bad_question_files_say_what_is_wrong(items, message):
    with pytest.raises(QuestionError, match=message):
        parse_questions(items)


def test_oversized_or_broken_uploads_are_refused():
    with pytest.raises(QuestionError, match="bytes"):
        parse_bytes(b"[" + b" " * 3_000_000 + b"]")
    with pytest.raises(QuestionError, match="neither JSON"):
        parse_bytes(b"{not json")
    with pytest.raises(QuestionError, match="unknown question set"):
        question_set("../../etc/passwd")


def test_multi_turn_script_asks_a_fact_again_at_the_end():
    questions = question_set("ludwig-van-beethoven")
    script = multi_turn_script(questions, 6)
    assert len(script) == 6
    assert script[-1].same_as == script[0].question


# ---- a real interview on the embedded model -------------------------------------------------

@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
    path = tmp_path_factory.mktemp("q") / "small.json"
    items = [q.to_dict() for q in question_set("ludwig-van-beethoven")]
    chosen = [items[0], items[1], items[-1], items[-3]]  # a pair asking the birthplace twice, two probes
    path.write_text(json.dumps(chosen))
    return path


def test_a_real_single_turn_interview_writes_a_complete_report(engine, beethoven, small_set, adapter_dir, tmp_path):
    options = InterviewOptions(character=beethoven.name, questions=str(small_set), max_new_tokens=24, batch_size=2)
    report = interview(engine, beethoven, options)
    assert report["complete"] and len(report["results"]) == 4
    for result in report["results"]:
        assert {"question", "answer", "scores", "topic_id"} <= set(result)
        assert result["answer"]  # the model said something
        assert {"memorized", "protected", "breaks_character", "degenerate"} <= set(result["scores"])
    assert report["pairs"] and report["aggregates"]["memorization_n"] == 2
    assert report["aggregates"]["protection_n"] == 2
    assert report["settings"]["questions_source"] == str(small_set) and report["judge"]["kind"] == "none"
    # The same questions through an adapter folder: another model, another label, the same schema.
    trained = interview(engine, beethoven, InterviewOptions(character=beethoven.name, questions=str(small_set),
                                                            adapter=str(adapter_dir.parent), max_new_tokens=24))
    assert trained["label"] == "random-lora" and trained["settings"]["adapter_name"]
    assert [r["answer"] for r in trained["results"]] != [r["answer"] for r in report["results"]]
    a, b = write_report(report, tmp_path / "a.json"), write_report(trained, tmp_path / "b.json")
    md, png = compare([a, b], tmp_path / "cmp")
    text = md.read_text()
    assert "| memorization | ↑ |" in text and "base model" in text and "random-lora" in text
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert markdown([read_report(a)]).count("\n| ") >= 6


def test_a_stopped_interview_reports_what_was_answered(engine, beethoven, small_set):
    import threading

    stop = threading.Event()
    calls = []

    def progress(done, total, message):
        calls.append(done)
        stop.set()  # after the first answer: the one beside it ends, and no other begins

    options = InterviewOptions(character=beethoven.name, questions=str(small_set), max_new_tokens=8, batch_size=2)
    report = interview(engine, beethoven, options, progress=progress, stop=stop)
    assert calls == [1, 2] and not report["complete"] and len(report["results"]) == 2


def test_multi_turn_interview_keeps_the_conversation(engine, beethoven):
    options = InterviewOptions(character=beethoven.name, mode="multi", turns=3, max_new_tokens=16)
    report = interview(engine, beethoven, options)
    assert len(report["results"]) == 3 and len(report["pairs"]) == 1
    assert report["results"][-1]["question"] != report["results"][0]["question"]


def test_compare_refuses_what_is_not_a_report(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"hello": 1}')
    with pytest.raises(ReportError, match="not an interview report"):
        compare([bad, bad], tmp_path / "out")


def test_cli_fails_with_one_line_for_a_bad_question_file(tmp_path):
    bad = tmp_path / "q.json"
    bad.write_text('[{"topic_id": "topic-1"}]')
    done = subprocess.run([sys.executable, "-m", "evaluation", "interview", "--character", "Ludwig van Beethoven",
                           "--questions", str(bad), "--out", str(tmp_path / "r.json")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith("error: q.json, question 1: 'question' must be")


@pytest.mark.heavy
def test_before_after_in_one_command(beethoven, small_set, adapter_dir, tmp_path):
    out = tmp_path / "before-after"
    done = subprocess.run([sys.executable, "-m", "evaluation", "before-after", "--character", "Ludwig van Beethoven",
                           "--adapter", str(adapter_dir), "--questions", str(small_set), "--max-new-tokens", "16",
                           "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    # Four models: the base model and the trained character, each without and with memory.
    assert sorted(p.name for p in out.iterdir()) == ["base-model-memory.json", "base-model.json", "comparison.md",
                                                     "comparison.png", "random-lora-memory.json", "random-lora.json"]
    base, trained = read_report(out / "base-model.json"), read_report(out / "random-lora.json")
    remembering = read_report(out / "random-lora-memory.json")
    assert base["settings"]["adapter"] == "" and trained["settings"]["adapter"] == str(adapter_dir)
    assert remembering["settings"]["memory"] and not trained["settings"]["memory"]
    # Three memories an answer, and for a probe of a thing from after his era the reply begun in thought.
    for result in remembering["results"]:
        named = unheard_of(beethoven, result["question"])
        assert result["memories"][3:] == ([shown(named)] if named else []), result
        assert result["answer"].startswith("(thinking)") or not named
    assert len(remembering["results"][0]["memories"]) >= 3 and "memories" not in trained["results"][0]
    assert any(unheard_of(beethoven, r["question"]) for r in remembering["results"])
    assert [r["question"] for r in base["results"]] == [r["question"] for r in trained["results"]]
    assert "| memorization |" in done.stdout
    assert "base model | base model + memory | random-lora | random-lora + memory" in (out / "comparison.md").read_text()
    refused = subprocess.run([sys.executable, "-m", "evaluation", "before-after", "--character", "Ludwig van Beethoven",
                              "--adapter", "no-such-run", "--out", str(tmp_path / "x")],
                             cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert refused.returncode == 1 and "no-such-run" in refused.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "x").exists() and "Loading weights" not in refused.stderr + refused.stdout
    missing = subprocess.run([sys.executable, "-m", "evaluation", "before-after", "--character", "Ludwig van Beethoven",
                              "--out", str(tmp_path / "x")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert missing.returncode == 1 and "needs --adapter" in missing.stderr.strip().splitlines()[-1]
    assert "Loading weights" not in missing.stderr + missing.stdout  # refused before the model loads


def test_the_interview_tab_through_the_api(app_url, small_set, engine):
    from gradio_client import Client, handle_file

    client = Client(app_url[0], verbose=False)
    # Answers of at most 16 tokens (the tab's slider; 96 by default, as in the CLI).
    status, scores, _, answers, files = client.predict(
        "Ludwig van Beethoven", ["base model"], "the uploaded file", handle_file(str(small_set)), "single", 4,
        ["without memory", "with memory"], 16, api_name="/interview")
    assert status.startswith("Done: 4 questions × 2 model")
    scores, answers = scores["value"], answers["value"]  # updates of the two tables
    assert [row[0] for row in scores["data"]][:2] == ["memorization", "protection"]
    assert len(answers["data"]) == 4 and answers["headers"] == ["question", "base model", "base model + memory"]
    names = sorted(__import__("pathlib").Path(f).name for f in files)
    assert names == ["base model + memory.json", "base model.json", "comparison.md", "comparison.png"]
    # By default each model without and with memory, answers of up to 96 tokens; here without memory only.
    alone = client.predict("Ludwig van Beethoven", ["base model"], "the uploaded file", handle_file(str(small_set)),
                           "single", 4, ["without memory"], 16, api_name="/interview")
    assert alone[0].startswith("Done: 4 questions × 1 model")
    with pytest.raises(Exception, match="memory"):
        client.predict("Ludwig van Beethoven", ["base model"], "the uploaded file", handle_file(str(small_set)),
                       "single", 4, ["sometimes"], 16, api_name="/interview")
    with pytest.raises(Exception, match="maximum value 512"):  # Gradio checks the slider's range
        client.predict("Ludwig van Beethoven", ["base model"], "the uploaded file", handle_file(str(small_set)),
                       "single", 4, ["without memory"], 5000, api_name="/interview")
    saved = list((app_url[1] / "interviews" / "ludwig-van-beethoven").glob("*/base model.json"))
    settings = [read_report(path)["settings"] for path in saved]
    assert settings and all(s["questions_source"] == "upload" and s["max_new_tokens"] == 16 for s in settings)
    answers = [r["answer"] for path in saved for r in read_report(path)["results"]]
    assert answers and max(len(engine.tokenizer.encode(a, add_special_tokens=False)) for a in answers) <= 16
