"""The Sims-style catalogue (SimsChat): careers, aspirations, traits, skills, moods, topics, scene types."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

CATALOGUE_FILE = Path(__file__).with_name("catalogue.json")
MAX_TRAITS = 3
SKILL_LEVELS = (1, 10)


@lru_cache(maxsize=1)
def catalogue() -> dict:
    return json.loads(CATALOGUE_FILE.read_text(encoding="utf-8"))


def careers() -> list[str]:
    return list(catalogue()["careers"])


def aspirations() -> list[str]:
    """``"Creativity: Musical Genius"``-style labels are for display; the value is the aspiration itself."""
    return [a for group in catalogue()["aspirations"].values() for a in group]


def aspiration_category(aspiration: str) -> str | None:
    for category, group in catalogue()["aspirations"].items():
        if aspiration in group:
            return category
    return None


def traits() -> list[str]:
    return [t for group in catalogue()["traits"].values() for t in group]


def skills() -> list[str]:
    return list(catalogue()["skills"])


def moods() -> list[str]:
    return list(catalogue()["moods"])


def topics() -> list[str]:
    return list(catalogue()["topics"])


def scene_types() -> list[str]:
    return list(catalogue()["scene_types"])


def tones() -> list[str]:
    return list(catalogue()["tones"])


def trait_conflicts(chosen: list[str]) -> list[tuple[str, str]]:
    """The conflicting pairs among ``chosen`` (e.g. Neat and Slob)."""
    picked = set(chosen)
    return [(a, b) for a, b in catalogue()["conflicting_traits"] if a in picked and b in picked]


def trait_problems(chosen: list[str]) -> list[str]:
    """Readable reasons why ``chosen`` is not a valid trait set; empty when it is."""
    problems = []
    known = set(traits())
    unknown = [t for t in chosen if t not in known]
    if unknown:
        problems.append(f"unknown trait(s): {', '.join(map(str, unknown))}")
    if len(chosen) > MAX_TRAITS:
        problems.append(f"at most {MAX_TRAITS} traits (got {len(chosen)})")
    if len(set(chosen)) != len(chosen):
        problems.append("a trait is listed twice")
    for a, b in trait_conflicts(chosen):
        problems.append(f"{a} and {b} conflict")
    return problems
