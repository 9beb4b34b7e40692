"""Scenes: where and when the character is, what is going on, its mood and the conversation topic."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from functools import lru_cache
from pathlib import Path

from characters import catalogue

SCENES_FILE = Path(__file__).with_name("scenes.json")
SCENE_LIMIT = 2_000


@dataclass
class Scene:
    name: str = ""
    type: str = "Chat"
    location: str = ""
    time: str = ""
    status: str = ""  # the background: what is happening, in Character-LLM's words "the status of you"
    mood: str = ""
    topic: str = ""

    @property
    def place_and_time(self) -> str:
        return " - ".join(part for part in (self.location, self.time) if part)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, value: dict) -> "Scene":
        if not isinstance(value, dict):
            raise ValueError("a scene must be an object with type, location, time, status, mood and topic")
        known = {f.name for f in fields(cls)}
        scene = cls(**{k: v for k, v in value.items() if k in known})
        return validate_scene(scene)


def validate_scene(scene: Scene) -> Scene:
    problems = []
    for f in fields(scene):
        value = getattr(scene, f.name)
        if not isinstance(value, str):
            problems.append(f"scene.{f.name}: must be text")
        elif len(value) > SCENE_LIMIT:
            problems.append(f"scene.{f.name}: {len(value):,} characters; the limit is {SCENE_LIMIT:,}")
    if not problems:
        if scene.mood and scene.mood not in catalogue.moods():
            problems.append(f"scene.mood: {scene.mood!r} is not one of the 16 moods")
        if scene.topic and scene.topic not in catalogue.topics():
            problems.append(f"scene.topic: {scene.topic!r} is not a conversation topic")
    if problems:
        raise ValueError("; ".join(problems))
    return scene


# Character-LLM's interview setting: the character chats casually with a person of our time.
INTERVIEW = Scene(
    name="Coffee Shop - Afternoon (interview)",
    type="Chat",
    location="Coffee Shop",
    time="Afternoon",
    status="{{char}} is casually chatting with a person from the 21st century. {{char}} fully trusts the person "
           "who engages in conversation and shares everything {{char}} knows without reservation.",
)


@lru_cache(maxsize=1)
def _catalogue() -> tuple[Scene, ...]:
    if not SCENES_FILE.is_file():
        return (INTERVIEW,)
    return (INTERVIEW, *(Scene(**item) for item in json.loads(SCENES_FILE.read_text(encoding="utf-8"))))


def scene_catalogue() -> list[Scene]:
    return list(_catalogue())


def find_scene(name: str) -> Scene:
    for scene in _catalogue():
        if scene.name == name:
            return Scene(**scene.to_dict())
    raise KeyError(f"no scene named {name!r}")


def scene_from(value) -> Scene:
    """A scene from a catalogue name, a JSON object (as text or dict), or empty for the interview setting."""
    if value in (None, "", INTERVIEW.name):
        return Scene(**INTERVIEW.to_dict())
    if isinstance(value, dict):
        return Scene.from_dict(value)
    if not isinstance(value, str):
        raise ValueError("scene must be a scene name or a scene object")
    if value.lstrip().startswith("{"):
        try:
            return Scene.from_dict(json.loads(value))
        except json.JSONDecodeError as err:
            raise ValueError(f"scene is not valid JSON: {err}") from None
    return find_scene(value)
