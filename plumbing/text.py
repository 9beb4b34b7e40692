"""Matching a term in free text, as the scores and the recall of a run both need it."""

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
