"""Scene extraction (Character-LLM): ask a generator for scenes from a character's profile, parse them robustly."""

from __future__ import annotations

import re

from characters import catalogue
from characters.scenes import Scene
from characters.schema import Character
from training.prompts import SCENE_EXTRACTION, SCENE_PREFILL

FIELD = re.compile(r"^\W*(type|location|place|time|background|status|mood|topic|conversation topic)\W*[:\-–]\s*(.*)$",
                   re.IGNORECASE)
HEADER = re.compile(r"^\W*(?:scene\b\s*\d*|#+)\W*(.*)$", re.IGNORECASE)
NUMBERING = re.compile(r"^\d+[.)]\s*")


def profile_contexts(character: Character) -> list[str]:
    """What scenes are drawn from: the profile paragraphs, else the persona elements (Sims-style characters)."""
    if character.sims.profile:
        return list(character.sims.profile)
    s = character.sims
    elements = [character.description, f"Career: {s.career}" if s.career else "",
                f"Aspiration: {s.aspiration}" if s.aspiration else "",
                f"Traits: {', '.join(s.traits)}" if s.traits else "",
                f"Skills: {', '.join(s.skills)}" if s.skills else "",
                f"Hobbies: {', '.join(s.hobbies)}" if s.hobbies else "", s.family, s.social_relations,
                s.living_conditions]
    return ["\n".join(e for e in elements if e)]


def scene_messages(character: Character, context: str, n: int) -> list[dict]:
    prompt = SCENE_EXTRACTION.format(context=context, name=character.name, n=n,
                                     types=", ".join(catalogue.scene_types()[:4]),
                                     moods=", ".join(catalogue.moods()), topics=", ".join(catalogue.topics()))
    return [{"role": "user", "content": prompt}, {"role": "assistant", "content": SCENE_PREFILL}]


def _closest(value: str, options: list[str]) -> str:
    value = value.strip().strip(".").lower()
    for option in options:
        if option.lower() == value or option.lower() in value:
            return option
    return ""


def parse_scenes(text: str) -> list[Scene]:
    """Scenes from a model's answer: tolerant of markdown, numbering, missing fields and stray lines.

    A scene needs at least a location or a background; the rest defaults.
    """
    blocks: list[dict] = []
    current: dict = {}

    def flush():
        if current.get("location") or current.get("background"):
            blocks.append(dict(current))
        current.clear()

    for raw in text.splitlines():
        line = raw.strip().replace("**", "").replace("__", "")
        header = HEADER.match(line)
        if header and not FIELD.match(line):
            flush()
            line = header.group(1).strip()  # "Scene 3: Location: …" carries a field after its header
        line = NUMBERING.sub("", line)
        if not line:
            continue
        match = FIELD.match(line)
        if match:
            key = {"place": "location", "status": "background", "conversation topic": "topic"}.get(
                match.group(1).lower(), match.group(1).lower())
            if key in current and key in ("type", "location"):
                flush()  # a repeated field starts a new scene even without a header
            current[key] = match.group(2).strip()
        elif current.get("background"):
            current["background"] += " " + line  # a background that runs over several lines
    flush()
    scenes = []
    for b in blocks:
        scene_type = _closest(b.get("type", ""), catalogue.scene_types()) or "Chat"
        location = b.get("location", "")[:200]
        scenes.append(Scene(
            name=f"{location or scene_type} (generated)"[:120], type=scene_type, location=location,
            time=b.get("time", "")[:200], status=b.get("background", "")[:1000],
            mood=_closest(b.get("mood", ""), catalogue.moods()), topic=_closest(b.get("topic", ""), catalogue.topics()),
        ))
    return scenes
