"""Recollections: fact questions asked with the character's memories in the prompt, as chat with memory
(``engine.memory``) brings them: a note of a few memories just before the question, the fact among them
in a random place, or, now and then, not among them (retrieval misses too).

A character trained without them has seen only its bare meta prompt. Measured on the shipped
Beethoven and Socrates, memory then added nothing to the trained character (72 → 72 %, 58 → 58 %): the
note was there with the right fact, and the answer ignored it. Training on the note with distractors,
as RAFT does for retrieval-augmented answering (Zhang et al., 2024), teaches the answer to use the right
memory and not to copy whatever stands first."""

from __future__ import annotations

import random

from characters.scenes import INTERVIEW
from characters.schema import Character
from engine.memory import TOP_K, memories_of
from training.experience import Experience
from training.grounded_interviews import fact_wordings

WITHOUT_THE_FACT = 5  # one note in five leaves the fact out, so the answer still comes from the weights


def recollections(character: Character, per_fact: int, rng: random.Random,
                  dev: list[dict] = ()) -> list[tuple[Experience, list[str]]]:
    """``per_fact`` one-question interviews for every fact (its wordings in turn, the dev questions never
    asked), each with the ``TOP_K`` memories of its note."""
    held = {(row["fact"], row["question"]) for row in dev}
    memories = [text for _, text in memories_of(character)]
    items = []
    for i, (fact, wordings) in enumerate(zip(character.sims.facts, fact_wordings(character))):
        questions = [q for q in wordings if (i, q) not in held]
        others = [m for m in memories if m != fact.strip()]
        for k in range(per_fact if questions else 0):
            leave_out = len(items) % WITHOUT_THE_FACT == WITHOUT_THE_FACT - 1
            note = rng.sample(others, min(len(others), TOP_K - (0 if leave_out else 1)))
            if not leave_out:
                note.insert(rng.randrange(len(note) + 1), fact.strip())
            dialogue = [{"role": "Interviewer", "action": "(speaking)", "content": questions[k % len(questions)]},
                        {"role": character.name, "action": "(speaking)", "content": fact}]
            items.append((Experience.in_scene(INTERVIEW, dialogue, source="facts", kind="recollection",
                                              task=f"recollection-{i}-{k}", emotion="", topic=""), note))
    return items
