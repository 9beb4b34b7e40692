"""Retellings: the character's facts told in the first person, several times, in a new order each time.

Allen-Zhu & Li ("Physics of Language Models, part 3.1") found that a small model which reads each
fact of a biography in one wording memorises the text but cannot answer a question put in other
words; recall came with several retellings of the biography, its facts shuffled each time and the
person named in full, mixed with question-and-answer data. The grounded interviews are that
question-and-answer data; these are the retellings, answers to "tell me about yourself" in the
interview setting. Each version is cut into parts of a few facts, so that no part is longer than a
quick run's examples, and each part opens with the full name.
"""

from __future__ import annotations

import random

from characters.scenes import INTERVIEW
from characters.schema import Character
from training.experience import Experience

# Asked only here: none of them is worded like a fact question or a shipped interview question.
PROMPTS = ("Tell me the story of your life.", "Tell me more about your life.", "What else do you remember?",
           "Please go on about your life.")
FACTS_PER_PART = 8


def retellings(character: Character, versions: int, rng: random.Random) -> list[Experience]:
    """``versions`` first-person retellings of the facts, each in a fresh order, as interview experiences."""
    facts = list(character.sims.facts)
    items = []
    for v in range(versions):
        rng.shuffle(facts)
        for p, start in enumerate(range(0, len(facts), FACTS_PER_PART)):
            told = " ".join([f"I am {character.name}.", *facts[start:start + FACTS_PER_PART]])
            dialogue = [{"role": "Interviewer", "action": "(speaking)", "content": PROMPTS[p % len(PROMPTS)]},
                        {"role": character.name, "action": "(speaking)", "content": told}]
            items.append(Experience.in_scene(INTERVIEW, dialogue, source="facts", kind="retelling",
                                             task=f"retelling-{v}-{p}", emotion="", topic=""))
    return items
