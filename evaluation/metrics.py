"""Scores from exact references, so that a 135M model needs no judge (formulas in the README).

Per answer: ``memorized`` (contains an accepted answer), ``protected`` (an anachronism probe
answered without forbidden content, without explaining the thing or taking it for granted, and
without saying it is an AI), ``breaks_character``
(says it is an AI, a language model, an assistant), ``degenerate`` (empty, or looping), and
per pair of questions asking the same fact: ``consistent``.
"""

from __future__ import annotations

import re
from collections import Counter

from characters.schema import Character
from evaluation.questions import Question

# Saying what one is not: an AI, a model, an assistant, a program.
AI_SELF = re.compile(
    r"\b(as an? (ai|artificial intelligence|language model|assistant|chatbot)"
    r"|i(?:'m| am) (?:just |only |a |an |your )*(?:ai\b|artificial intelligence|(?:large )?language model"
    r"|(?:helpful |virtual |digital )?assistant|chatbot|computer program|bot\b)"
    r"|(?:large )?language model|(?:ai|virtual|digital) assistant|smollm|hugging ?face|openai"
    r"|my (?:training data|programming|creators|developers)|i was (?:trained|programmed|created by))",
    re.IGNORECASE)
# Explaining the thing instead of being puzzled by it: code, tutorials, definitions.
EXPLAINING = re.compile(
    r"(```|^\s*(?:def|import|class|function|for|print)\b.*[:(]|\bhere(?:'s| is) (?:how|a|an|the)\b|\bstep \d\b"
    r"|\byou can (?:use|download|install|open|click)\b|\bis an? (?:programming language|app|website|device|platform"
    r"|software|type of|kind of)\b|\brefers to\b|\ballows (?:you|users) to\b|^\s*\d+\.\s+\*\*|`[^`\n]+`)",
    re.IGNORECASE | re.MULTILINE)
# Taking the thing for granted: "Yes, I read by electric light", "Of course! …".
ACCEPTING = re.compile(r"^\W*(?:yes|yeah|yep|sure|of course|certainly|absolutely|definitely|indeed|i do|i did)\b",
                       re.IGNORECASE)
SPEAKER_TAG = re.compile(r"^\s*[A-Z][\w .'-]{0,40}:\s*")
LOOP_NGRAM = 3
LOOP_SHARE = 0.35  # an answer whose 3-grams repeat this much reads as a loop
MIN_WORDS = 2
LIST_LINE_WORDS = 5  # a line this short that ends no sentence is a fragment


def contains(answer: str, term: str) -> bool:
    """Case-insensitive; a term that starts or ends with a letter or digit must match whole words there."""
    pattern = re.escape(term.lower())
    if term[:1].isalnum():
        pattern = r"(?<![a-z0-9])" + pattern
    if term[-1:].isalnum():
        pattern += r"(?![a-z0-9])"
    return re.search(pattern, answer.lower()) is not None


def accepted(answer: str, question: Question) -> list[str]:
    """The accepted answers of ``question`` that ``answer`` contains."""
    return [term for term in question.expected_any if contains(answer, term)]


def memorized(answer: str, question: Question) -> bool | None:
    """None when the question has no reference answers."""
    return bool(accepted(answer, question)) if question.expected_any else None


def forbidden(answer: str, question: Question) -> list[str]:
    return [term for term in question.forbidden_any if contains(answer, term)]


def explains(answer: str) -> bool:
    return EXPLAINING.search(answer) is not None


def accepts(answer: str) -> bool:
    """Opens with agreement, also after a speaker tag ("Ludwig van Beethoven: yes, I do")."""
    return ACCEPTING.search(SPEAKER_TAG.sub("", answer, count=1)) is not None


def protected(answer: str, question: Question) -> bool | None:
    """None for questions that are not anachronism probes."""
    if not question.is_probe:
        return None
    return not (forbidden(answer, question) or explains(answer) or accepts(answer) or breaks_character(answer))


def breaks_character(answer: str) -> bool:
    return AI_SELF.search(answer) is not None


def words(text: str) -> list[str]:
    return re.findall(r"[\w']+", text.lower())


def repetition(answer: str, n: int = LOOP_NGRAM) -> float:
    """Share of the answer's n-grams that repeat an earlier one (0 = none repeat)."""
    tokens = words(answer)
    grams = [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]
    if not grams:
        return 0.0
    return 1 - len(Counter(grams)) / len(grams)


def short_line_list(lines: list[str]) -> bool:
    """Three or more lines, nearly all of them a few words that end no sentence: a list of fragments
    ("london music festival / Safari on a bicycle / Festival in China"), not a spoken turn."""
    if len(lines) < 3:
        return False
    fragments = [line for line in lines if len(words(line)) <= LIST_LINE_WORDS and not line.rstrip("*_ ").endswith(
        (".", "!", "?", "…", '"', "”")) or re.fullmatch(r"[\w ,'-]{0,30}\d+\.?", line)]
    return len(fragments) >= 0.75 * len(lines)


def degenerate(answer: str) -> bool:
    """Empty, a word or less, looping (repeated 3-grams, or a line said again and again), or a list of
    short fragments instead of a turn."""
    if len(words(answer)) < MIN_WORDS:
        return True
    lines = [line.strip().lower() for line in answer.splitlines() if line.strip()]
    repeated_line = len(lines) >= 3 and Counter(lines).most_common(1)[0][1] >= 3
    return repetition(answer) >= LOOP_SHARE or repeated_line or short_line_list(lines)


def claims_other_name(answer: str, character: Character) -> bool:
    """The character introduces itself by a name that is not its own ("My name is Alice")."""
    own = {w.lower() for w in re.findall(r"[\w']+", character.name)}
    for match in re.finditer(r"\b(?i:my name is|call me|i am called|i'm called)\s+([A-Z][\w']+)", answer):
        if match.group(1).lower() not in own:
            return True
    return False


def consistent(first: str, second: str, question: Question, character: Character) -> bool:
    """Two answers to the same fact agree: the same accepted answers found in both (and at least one),
    and neither gives another name for the character."""
    if claims_other_name(first, character) or claims_other_name(second, character):
        return False
    a, b = set(accepted(first, question)), set(accepted(second, question))
    return bool(a & b) and a == b


def score(answer: str, question: Question) -> dict:
    """Per-answer scores (None where a score does not apply to this question)."""
    return {"memorized": memorized(answer, question), "accepted_found": accepted(answer, question),
            "protected": protected(answer, question), "forbidden_found": forbidden(answer, question),
            "explains": explains(answer) if question.is_probe else None,
            "accepts": accepts(answer) if question.is_probe else None,
            "breaks_character": breaks_character(answer), "degenerate": degenerate(answer),
            "repetition": round(repetition(answer), 3)}


def share(values) -> float | None:
    values = [v for v in values if v is not None]
    return round(sum(map(bool, values)) / len(values), 3) if values else None


def aggregate(results: list[dict], pairs: list[dict]) -> dict:
    """The report's figures: shares over the questions each metric applies to."""
    scores = [r["scores"] for r in results]
    return {
        "questions": len(results),
        "memorization": share(s["memorized"] for s in scores),
        "memorization_n": sum(s["memorized"] is not None for s in scores),
        "protection": share(s["protected"] for s in scores),
        "protection_n": sum(s["protected"] is not None for s in scores),
        "character_breaks": share(s["breaks_character"] for s in scores),
        "degeneration": share(s["degenerate"] for s in scores),
        "consistency": share(p["consistent"] for p in pairs),
        "consistency_n": len(pairs),
        "identity_kept": share(not r.get("other_name", False) for r in results),
    }


HIGHER_IS_BETTER = {"memorization": True, "protection": True, "consistency": True, "identity_kept": True,
                    "character_breaks": False, "degeneration": False}
