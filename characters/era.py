"""What a character of an era cannot know: things invented after it (``anachronisms.json``), each with
its year, the words that name it (and phrases that only look like a name), and what only someone who
knows it would say. Training writes protective experiences from it; the interview scores read it to
catch an answer that names, uses or explains such a thing."""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path

from characters.schema import Character
from plumbing.text import INFLECTION, PLURAL, says

ANACHRONISMS_FILE = Path(__file__).with_name("anachronisms.json")


@lru_cache(maxsize=1)
def anachronisms() -> tuple[dict, ...]:
    return tuple(json.loads(ANACHRONISMS_FILE.read_text(encoding="utf-8")))


@lru_cache(maxsize=1)
def _lookalikes() -> re.Pattern | None:
    phrases = sorted({p.lower() for a in anachronisms() for p in a.get("not", [])}, key=len, reverse=True)
    return re.compile("|".join(rf"\b{re.escape(p)}\b" for p in phrases), re.IGNORECASE) if phrases else None


@lru_cache(maxsize=4096)  # a metric asks this of the same clause once per name it looks for
def without_lookalikes(text: str) -> str:
    """``text`` without the phrases that only look like a thing's name ("plane tree", "a film of dust"), so
    that matching a name finds the thing itself."""
    pattern = _lookalikes()
    return pattern.sub(" ", text) if pattern else text


def mentions(text: str, term: str) -> bool:
    """``text`` says ``term``, as a whole word or phrase or, for a term ending in a letter, in an inflected
    form of its last word ("railway" in "railways", "travel" in "I traveled"); a phrase that only looks like
    a name does not count ("plane tree" is no plane)."""
    return says(without_lookalikes(text), term, INFLECTION if len(term.split()[-1]) >= 5 else PLURAL)


def things_named(text: str, things: tuple[dict, ...] | list[dict] | None = None) -> list[dict]:
    """The anachronisms (of ``things``, else all) that ``text`` names by any of their names."""
    return [a for a in (anachronisms() if things is None else things) if any(mentions(text, n) for n in a["names"])]


def era_end(era: str) -> int | None:
    """The last year the character knew, from ``"1770–1827"``, ``"69–30 BC"``, ``"died 71 BC"``; BC is negative."""
    years = re.findall(r"\d{1,4}", era or "")
    if not years:
        return None
    year = int(years[-1])
    return -year if re.search(r"\bBC\b|\bBCE\b", era) else year


def unknowable(character: Character) -> list[dict]:
    """What this character cannot know: everything invented after its era; for a character of
    today (no era), only that it would be an AI, which it is not."""
    end = era_end(character.sims.era)
    if end is None:
        return [a for a in anachronisms() if a["thing"] == "AI language model"]
    return [a for a in anachronisms() if a["year"] > end]
