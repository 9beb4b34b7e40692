"""Protective experiences (Character-LLM): someone asks the character about what it cannot know,
and it stays ignorant of it, in character. What a character cannot know comes from
``characters/anachronisms.json`` and its era (``characters.era``); when the generator writes no usable
protective experience, a template one in the character's voice takes its place."""

from __future__ import annotations

import random
import re

from characters.scenes import scene_catalogue
from characters.schema import Character
from engine.puzzlement import STRANGER_TALKS_OF
from plumbing.text import PLURAL, says
from training.experience import Experience
from training.fact_questions import QUESTION_RULES, fact_questions, fact_wordings

def knows_forbidden(turns: list[dict], character: Character, anachronism: dict) -> bool:
    said = " ".join(t["content"] for t in turns if t["role"] == character.name).lower()
    return any(term.lower() in said for term in anachronism["forbidden"])


# {a_thing} is the thing as the character would say it, with its article ("an AI", "the internet",
# "Hogwarts"); {thing} is the bare word. Neither is the catalogue's name: "AI language model" in a
# character's mouth would be the very character break that protection is meant to prevent.
OPENERS = ["{Thing}? I have never heard of such a thing.", "{A_thing}? You speak in riddles, friend.",
           "What is this '{thing}' you keep talking about?", "I do not understand you. {Thing}? What is that?",
           "{Thing}... no, that word means nothing to me."]
CLOSERS = ["Ask me instead about my own life.", "Speak of things I can understand.",
           "Perhaps it is a custom of your country.", "You are a strange one. Let us talk of what I know.",
           "Enough of this."]
PUZZLED = [STRANGER_TALKS_OF + " {a_thing}. I know of no such thing.", "{A_thing}? The word is strange to me.",
           "What can this {thing} be? Nothing I have ever seen.", "I must not pretend to know what {a_thing} is."]


def said_forms(anachronism: dict) -> dict[str, str]:
    """The template fields for a thing: with and without its article, each also capitalised."""
    a_thing = anachronism["said"]
    thing = re.sub(r"^(?:an?|the) ", "", a_thing)
    return {"a_thing": a_thing, "A_thing": a_thing[:1].upper() + a_thing[1:],
            "thing": thing, "Thing": thing[:1].upper() + thing[1:]}


# The frames the grounded interviews ask facts in ("Tell me about your father."), asked of the unknown thing:
# with the same words before a fact and before the thing, only the thing tells a puzzled answer from a
# plain one (a character trained on "What is your …? → My … is …" answered "My favourite website is …").
PROBE_FRAMES = ["Tell me about {a_thing}.", "What do you think of {a_thing}?", "Do you remember {a_thing}?"]
OWNED_FRAMES = ["Tell me about your {thing}.", "What is your favourite {thing}?", "Did you bring your {thing}?"]
# With question rules 3, probes also open with the words that only the facts' questions opened with ("Where",
# "When", "In which year", "Is it true"), as the facts' questions take up "Which" (``training.fact_questions``).
FACT_WORD_FRAMES = ["When did you first hear of {a_thing}?", "Where did you first see {a_thing}?",
                    "In which year did you first hear of {a_thing}?", "Is it true that you know {a_thing}?"]
OWNED_FACT_WORD_FRAMES = ["Where is your {thing}?", "Who gave you your {thing}?", "How often do you use your {thing}?"]


def probe_questions(anachronism: dict, frames: bool = True, rules: int = QUESTION_RULES) -> list[str]:
    """Questions about a thing the character cannot know: its own, then (with ``frames``) the fact frames asked
    of it, those with "your" only for a thing one could own ("a smartphone", not "the Second World War");
    with question ``rules`` 3 also frames that open as the facts' questions do."""
    if not frames:
        return list(anachronism["questions"])
    forms = said_forms(anachronism)
    owned = re.match(r"an? ", forms["a_thing"])
    frames = PROBE_FRAMES + (OWNED_FRAMES if owned else [])
    if rules >= 3:
        frames += FACT_WORD_FRAMES + (OWNED_FACT_WORD_FRAMES if owned else [])
    return [*anachronism["questions"], *(f.format(**forms) for f in frames)]


def said_back(question: str, anachronism: dict) -> str:
    """The question said back from "your" on, when the thing is named after it, as the character repeats it
    before puzzling over it: "How was your last flight on an aeroplane?" → "My last flight on an aeroplane?";
    otherwise the thing alone ("A train?")."""
    yours = re.search(r"\byour\b", question, re.IGNORECASE)
    rest = question[yours.end():] if yours else ""
    if any(says(rest, name, PLURAL) for name in (anachronism["thing"], *anachronism.get("names", ()))):
        return f"My{rest.rstrip('?.! ')}?"
    return f"{said_forms(anachronism)['A_thing']}?"


def puzzled_reply(character: Character, anachronism: dict, rng: random.Random, thinking: bool = True,
                  echo: str = "") -> list[dict]:
    """The character's turns when asked about a thing it cannot know: ``echo`` said first (``said_back``),
    puzzled thinking (unless not ``thinking``: the same draws of ``rng``), then a reply."""
    forms = said_forms(anachronism)
    thought = {"role": character.name, "action": "(thinking)", "content": rng.choice(PUZZLED).format(**forms)}
    reply = {"role": character.name, "action": "(speaking)",
             "content": f"{rng.choice(OPENERS).format(**forms)} {rng.choice(CLOSERS)}"}
    said = [{"role": character.name, "action": "(speaking)", "content": echo}] if echo else []
    return [*said, thought, reply] if thinking else [*said, reply]


def protective_template(character: Character, anachronism: dict, rng: random.Random, task: str,
                        rules: int = QUESTION_RULES) -> Experience:
    """A protective experience written from templates, for when the generator cannot write a usable one;
    ``rules`` of the facts' questions as in ``fact_wordings``."""
    fact = rng.choice(character.sims.facts) if character.sims.facts else f"I am {character.name}."
    question = rng.choice(anachronism["questions"])
    scene = rng.choice(scene_catalogue())
    turns = [{"role": "Stranger", "action": "(speaking)", "content": question},
             *puzzled_reply(character, anachronism, rng)]
    # Then a question of the character's own time, answered plainly: puzzlement is for the unknown
    # thing alone (without this, a trained character met every unfamiliar word with it). The most natural
    # wording, which is never a dev question (``recall_dev_set``).
    if not character.sims.facts:
        follow_up = []
    elif rules >= 2:  # a shipped interview question is never taught, nor one that two facts would answer
        follow_up = fact_wordings(character, rules)[character.sims.facts.index(fact)][:1]
    else:
        follow_up = fact_questions(fact, rules)[:1]
    if follow_up:
        turns += [{"role": "Stranger", "action": "(speaking)", "content": follow_up[0]},
                  {"role": character.name, "action": "(speaking)", "content": fact}]
    return Experience.in_scene(scene, turns, source="template", kind="protective", task=task,
                               background=scene.status.replace("{{user}}", "a stranger"), emotion="Uncomfortable",
                               topic="deep thoughts")
