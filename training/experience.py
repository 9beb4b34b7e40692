"""An experience (Character-LLM): a scene and a scripted dialogue in which the character thinks
and speaks. ``Experience`` is the one type that experiences, protective experiences and grounded
interviews are built as; on disk it is a line of ``experiences.jsonl`` in Character-LLM's schema
(plus ``kind`` and ``task``, this project's bookkeeping)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from characters.scenes import Scene
from characters.schema import Character
from training.dialogue import contradicts_facts, parse_dialogue

MIN_TURNS = 3
KINDS = ("experience", "protective", "interview", "retelling")

# Lines of the prompts' worked example: a small model copies them, and they are not the character's life.
EXAMPLE_LINES = {"I must not show them how tired I am tonight.", "Good evening, come in! You are welcome here.",
                 "Thank you. I have heard so much about you.", "Only half of it is true, I promise you.",
                 "Have you ever ridden a motorbike?", "A motor-what? This stranger speaks nonsense.",
                 "I do not know what you mean, friend. Speak plainly."}


@dataclass
class Experience:
    setting: list[str]
    location: str
    background: str
    dialogue: list[dict]  # {"role", "action": "(thinking)" | "(speaking)", "content"}
    source: str  # who wrote it: "local:<model>", "openai:<model>@<url>", "template", "facts"
    emotion: str = ""
    topic: str = ""
    kind: str = "experience"  # one of KINDS
    task: str = ""  # the pipeline's task id, which makes a generation resumable

    @classmethod
    def in_scene(cls, scene: Scene, dialogue: list[dict], *, source: str, kind: str, task: str,
                 background: str | None = None, emotion: str | None = None, topic: str | None = None) -> "Experience":
        return cls(setting=[scene.type or "Chat"], location=scene.place_and_time,
                   background=scene.status if background is None else background, dialogue=dialogue, source=source,
                   emotion=scene.mood if emotion is None else emotion, topic=scene.topic if topic is None else topic,
                   kind=kind, task=task)

    @classmethod
    def from_dict(cls, row: dict) -> "Experience":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in row.items() if k in known})

    def to_dict(self) -> dict:
        return asdict(self)

    def scene(self) -> Scene:
        location, _, time_ = self.location.partition(" - ")
        return Scene(type=(self.setting or ["Chat"])[0], location=location, time=time_, status=self.background,
                     mood=self.emotion or "", topic=self.topic or "")

    def said_by(self, name: str) -> str:
        return " ".join(t["content"] for t in self.dialogue if t["role"] == name)


def experience_from(text: str, character: Character, scene: Scene, kind: str, source: str,
                    task: str) -> tuple[Experience | None, str]:
    """An experience from a generated script, or ``(None, reason)`` when it is unusable.

    Lines copied from the prompt's worked example are not the character's experience: left out."""
    if not scene.status.strip():
        return None, "no_background"
    turns = [t for t in parse_dialogue(text, character) if t["content"] not in EXAMPLE_LINES]
    if not turns:
        return None, "no_turns"
    if len(turns) < MIN_TURNS:
        return None, "too_few_turns"
    if not any(t["role"] == character.name and t["action"] == "(speaking)" for t in turns):
        return None, "character_never_speaks"
    if contradicts_facts(turns, character):
        return None, "contradicts_a_fact"
    return Experience.in_scene(scene, turns, source=source, kind=kind, task=task), ""
