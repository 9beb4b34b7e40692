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


# Words that carry no content of their own in a question or a memory ("What do you think of …", "Tell me about …").
FUNCTION_WORDS = frozenset("""what which where when whose about would could should there their these those your yours
have ever with from into like think tell know does doing been being than then them they this that just some
much many more most very really also here favourite favorite things thing other people were will""".split())


def words(text: str) -> list[str]:
    return re.findall(r"[\w']+", text.lower())


def stem(word: str) -> str:
    """``word`` without an ending that ``INFLECTION`` puts back ("travelling" → "travel", "muskets" → "musket")."""
    for ending in ("ing", "ed", "es", "s"):
        if word.endswith(ending) and len(word) - len(ending) >= 4:
            word = word[:-len(ending)]
            break
    return word[:-1] if len(word) >= 5 and word[-1] == word[-2] and word[-1] not in "aeiou" else word


def content_words(text: str, shortest: int) -> set[str]:
    """The stems of ``text``'s words of at least ``shortest`` letters that are not function words."""
    return {stem(w.strip("'")) for w in words(text) if len(w) >= shortest and w not in FUNCTION_WORDS}
