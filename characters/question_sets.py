"""The interview question sets that ship with the preset characters, one file per character in
Character-LLM's format (``characters/questions/<slug>.json``). ``evaluation.questions`` reads them; training
reads only their questions, to keep them out of what it teaches."""

from __future__ import annotations

import json
from pathlib import Path

from plumbing.files import safe_child, slugify

SHIPPED = Path(__file__).parent / "questions"


def shipped_sets() -> list[str]:
    """Names of the question sets that ship with the app (one per preset character)."""
    return sorted(p.stem for p in SHIPPED.glob("*.json"))


def set_for(character_name: str) -> str | None:
    """The shipped set of a character, if there is one."""
    name = slugify(character_name)
    return name if name in shipped_sets() else None


def held_out_questions(character_name: str) -> list[str]:
    """The questions of the character's shipped set (none if it has none): training never asks them."""
    name = set_for(character_name)
    if name is None:
        return []
    return [item["question"] for item in json.loads(safe_child(SHIPPED, name, ".json").read_text())]
