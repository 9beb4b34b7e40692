"""Matching a term in free text, as the scores, the recall of a run and the era of a chat need it."""

from __future__ import annotations

import re


def contains(answer: str, term: str) -> bool:
    """Case-insensitive; a term that starts or ends with a letter or digit must match whole words there."""
    pattern = re.escape(term.lower())
    if term[:1].isalnum():
        pattern = r"(?<![a-z0-9])" + pattern
    if term[-1:].isalnum():
        pattern += r"(?![a-z0-9])"
    return re.search(pattern, answer.lower()) is not None


# A word said again in another form: "travel" → "traveled", "travelling"; "musket" → "muskets". A word of
# under five letters only takes a plural ending ("car" → "cars", never "cared" or "card").
INFLECTION = r"(?:s|es|d|ed|ing|ings|led|ling)?"
PLURAL = r"(?:s|es)?"


def said_pattern(term: str, ending: str) -> str:
    """A pattern for ``term`` as a whole word or phrase with one of ``ending`` after its last word."""
    return r"(?<![a-z0-9])" * term[:1].isalnum() + re.escape(term.lower()) + ending + r"(?![a-z0-9])"


def says(text: str, term: str, ending: str) -> bool:
    """``text`` says ``term`` as a whole word or phrase (``contains``); one ending in a letter also with
    ``ending`` after its last word."""
    if not term[-1:].isalpha():
        return contains(text, term)
    return re.search(said_pattern(term, ending), text.lower()) is not None
