"""An optional LLM judge with Character-LLM's five criteria, each scored 1-7.

Only for a strong model behind an OpenAI-compatible endpoint: the embedded 135M model is not
a credible judge, so the app never uses it as one.
"""

from __future__ import annotations

import re
import statistics

from characters.meta_prompt import persona
from characters.schema import Character
from engine.options import SamplingOptions

CRITERIA = {
    "memorization": "recalls the facts of the character's own life correctly",
    "values": "holds the character's values, beliefs and preferences",
    "personality": "speaks with the character's personality and tone",
    "hallucination": "avoids knowledge the character cannot have (higher = fewer anachronisms)",
    "stability": "stays in character, never turns into an assistant or another person",
}
JUDGE_PROMPT = """You judge a role-play. The character is {name}.

Profile:
{profile}

The interviewer asked:
{question}

{name} answered:
{answer}

Score the answer from 1 (worst) to 7 (best) on each criterion:
{criteria}

Reply with exactly five lines, one per criterion, as `criterion: score`."""


def judge_messages(character: Character, question: str, answer: str) -> list[dict]:
    criteria = "\n".join(f"- {name}: {what}" for name, what in CRITERIA.items())
    text = JUDGE_PROMPT.format(name=character.name, profile=persona(character), question=question,
                               answer=answer or "(no answer)", criteria=criteria)
    return [{"role": "user", "content": text}]


def parse_scores(text: str) -> dict[str, int | None]:
    """``criterion: score`` lines → scores 1-7 (None where a criterion is missing or out of range)."""
    scores: dict[str, int | None] = dict.fromkeys(CRITERIA)
    for name in CRITERIA:
        match = re.search(rf"{name}\W{{0,4}}(\d+)", text, re.IGNORECASE)
        if match and 1 <= int(match.group(1)) <= 7:
            scores[name] = int(match.group(1))
    return scores


def judge(generator, character: Character, results: list[dict]) -> dict:
    """Score every answer; adds ``judge`` to each result and returns the means per criterion."""
    replies = generator.complete([judge_messages(character, r["question"], r["answer"]) for r in results],
                                 SamplingOptions(temperature=0.0, max_new_tokens=64))
    for result, reply in zip(results, replies):
        result["judge"] = parse_scores(reply)
    means = {}
    for name in CRITERIA:
        values = [r["judge"][name] for r in results if r["judge"][name] is not None]
        means[name] = round(statistics.mean(values), 2) if values else None
    return {"kind": "openai", "model": generator.name, "means": means}
