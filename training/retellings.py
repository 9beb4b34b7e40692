"""Retellings: the character's facts told in the first person, several times, in a new order each time.

Allen-Zhu & Li ("Physics of Language Models, part 3.1") found that a small model which reads each
fact of a biography in one wording memorises the text but cannot answer a question put in other
words; recall came with several retellings of the biography, its facts shuffled each time and the
person named in full, mixed with question-and-answer data. The grounded interviews are that
question-and-answer data; these are the retellings, answers to "tell me about yourself" in the
interview setting. Each version is cut into parts of a few facts, so that no part is longer than a
quick run's examples, and each part opens with the full name.

The paper's retellings were also in other words. The character's profile is the biography in other words
than its facts (third person, with what a thing is: "the comic poet Aristophanes, who mocked him in The
Clouds"), so ``profile_retellings`` tell it too, as what others tell of the character, its sentences shuffled
and the full name where a sentence opened with a pronoun.
"""

from __future__ import annotations

import random
import re

from characters.scenes import INTERVIEW
from characters.schema import Character
from engine.memory import memories_of
from training.experience import Experience

# Asked only here: none of them is worded like a fact question or a shipped interview question.
PROMPTS = ("Tell me the story of your life.", "Tell me more about your life.", "What else do you remember?",
           "Please go on about your life.")
FACTS_PER_PART = 8
PROFILE_PROMPTS = ("What do others tell of you?", "How do others tell your story?",
                   "What else do others tell of you?")
SENTENCES_PER_PART = 4  # a profile's sentences are about twice a fact's length
_OPENING_PRONOUN = re.compile(r"^(?:(?P<subject>He|She|They)|(?P<possessive>His|Her|Their))\b")


def retellings(character: Character, versions: int, rng: random.Random) -> list[Experience]:
    """``versions`` first-person retellings of the facts, each in a fresh order, as interview experiences."""
    return _told(character, list(character.sims.facts), versions, rng, FACTS_PER_PART, PROMPTS, "facts", "retelling",
                 opening=f"I am {character.name}.")


def named(sentence: str, name: str) -> str:
    """``sentence`` with the full name for the pronoun it opens with ("His father …" → "Socrates's father …")."""
    return _OPENING_PRONOUN.sub(lambda m: name if m["subject"] else f"{name}'s", sentence, count=1)


def profile_retellings(character: Character, versions: int, rng: random.Random) -> list[Experience]:
    """``versions`` tellings of the profile by others, as the character repeats them, each in a fresh order."""
    sentences = [named(text, character.name) for kind, text in memories_of(character) if kind == "profile"]
    return _told(character, sentences, versions, rng, SENTENCES_PER_PART, PROFILE_PROMPTS, "profile", "profile")


def _told(character: Character, pieces: list[str], versions: int, rng: random.Random, per_part: int,
          prompts: tuple[str, ...], source: str, task: str, opening: str = "") -> list[Experience]:
    """``versions`` tellings of ``pieces``, each shuffled anew and cut into parts of ``per_part``, each part the
    answer (after ``opening``) to the next of ``prompts`` in the interview setting."""
    items = []
    for v in range(versions):
        rng.shuffle(pieces)
        for p, start in enumerate(range(0, len(pieces), per_part)):
            told = " ".join([opening, *pieces[start:start + per_part]]).strip()
            dialogue = [{"role": "Interviewer", "action": "(speaking)", "content": prompts[p % len(prompts)]},
                        {"role": character.name, "action": "(speaking)", "content": told}]
            items.append(Experience.in_scene(INTERVIEW, dialogue, source=source, kind="retelling",
                                             task=f"{task}-{v}-{p}", emotion="", topic=""))
    return items
