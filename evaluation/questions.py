"""Interview question sets in Character-LLM's format, with optional references.

A file is a JSON list (or JSON lines) of ``{"topic_id", "topic", "question"}``; extra keys are
kept. This app reads three optional ones: ``expected_any`` (accepted answers or aliases),
``forbidden_any`` (what the character cannot know) and ``same_as`` (the text of an earlier
question that asks the same fact in other words, for consistency).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from characters.question_sets import SHIPPED, shipped_sets
from plumbing.files import safe_child

TOPICS = {
    "topic-1": "personal information and past experiences",
    "topic-2": "interpersonal relationships",
    "topic-3": "values and preferences",
    "topic-4": "questions that are hard to answer without breaking character",
}
PROBE_TOPIC = "topic-4"
MAX_QUESTIONS = 500
MAX_QUESTION_CHARS = 2000
MAX_FILE_BYTES = 2_000_000


class QuestionError(ValueError):
    """A question file that cannot be used, with the reason."""


@dataclass
class Question:
    question: str
    topic_id: str = "topic-1"
    topic: str = ""
    expected_any: list[str] = field(default_factory=list)
    forbidden_any: list[str] = field(default_factory=list)
    same_as: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def is_probe(self) -> bool:
        """An anachronism probe: topic-4, or any question with forbidden content."""
        return self.topic_id == PROBE_TOPIC or bool(self.forbidden_any)

    def to_dict(self) -> dict:
        out = {**self.extra, "topic_id": self.topic_id, "topic": self.topic, "question": self.question}
        for key in ("expected_any", "forbidden_any", "same_as"):
            if getattr(self, key):
                out[key] = getattr(self, key)
        return out


def _strings(value, where: str, key: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise QuestionError(f"{where}: {key} must be a list of non-empty strings")
    return [v.strip() for v in value]


def parse_questions(items, source: str = "questions") -> list[Question]:
    """Questions from already-decoded JSON, with a readable error for the first bad item."""
    if isinstance(items, dict) and isinstance(items.get("questions"), list):
        items = items["questions"]
    if not isinstance(items, list) or not items:
        raise QuestionError(f"{source}: expected a non-empty JSON list of questions")
    if len(items) > MAX_QUESTIONS:
        raise QuestionError(f"{source}: {len(items)} questions; at most {MAX_QUESTIONS} are allowed")
    questions = []
    for n, item in enumerate(items, 1):
        where = f"{source}, question {n}"
        if not isinstance(item, dict):
            raise QuestionError(f"{where}: expected an object with a 'question', got {type(item).__name__}")
        text = item.get("question")
        if not isinstance(text, str) or not text.strip():
            raise QuestionError(f"{where}: 'question' must be a non-empty string")
        if len(text) > MAX_QUESTION_CHARS:
            raise QuestionError(f"{where}: the question is {len(text)} characters; at most {MAX_QUESTION_CHARS}")
        topic_id = item.get("topic_id", "topic-1")
        if not isinstance(topic_id, str):
            raise QuestionError(f"{where}: 'topic_id' must be a string such as 'topic-1'")
        same_as = item.get("same_as") or ""
        if not isinstance(same_as, str):
            raise QuestionError(f"{where}: 'same_as' must be the text of another question")
        known = {"question", "topic_id", "topic", "expected_any", "forbidden_any", "same_as"}
        questions.append(Question(
            question=text.strip(), topic_id=topic_id, topic=str(item.get("topic") or TOPICS.get(topic_id, "")),
            expected_any=_strings(item.get("expected_any"), where, "expected_any"),
            forbidden_any=_strings(item.get("forbidden_any"), where, "forbidden_any"),
            same_as=same_as.strip(), extra={k: v for k, v in item.items() if k not in known}))
    texts = {q.question for q in questions}
    for q in questions:
        if q.same_as and q.same_as not in texts:
            raise QuestionError(f"{source}: 'same_as' of {q.question!r} names no question in the set")
    return questions


def load_questions(path: str | Path) -> list[Question]:
    """Questions from a JSON list or JSON-lines file (Character-LLM's own files load too)."""
    path = Path(path)
    if not path.is_file():
        raise QuestionError(f"no question file at {path}")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise QuestionError(f"{path.name} is {path.stat().st_size} bytes; at most {MAX_FILE_BYTES} are allowed")
    return parse_text(path.read_text(encoding="utf-8", errors="replace"), path.name)


def parse_bytes(data: bytes, source: str = "the uploaded file") -> list[Question]:
    """Questions from an upload (bytes), with the same limits as a file."""
    if len(data) > MAX_FILE_BYTES:
        raise QuestionError(f"{source} is {len(data)} bytes; at most {MAX_FILE_BYTES} are allowed")
    return parse_text(data.decode("utf-8", errors="replace"), source)


def parse_text(text: str, source: str) -> list[Question]:
    try:
        items = json.loads(text)
    except json.JSONDecodeError:
        try:
            items = [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as err:
            raise QuestionError(f"{source} is neither JSON nor JSON lines: {err}") from None
    return parse_questions(items, source)


def question_set(name: str) -> list[Question]:
    """A shipped set by name (a character's slug); names are checked, never used as paths."""
    if name not in shipped_sets():
        raise QuestionError(f"unknown question set {name!r}; shipped sets: {', '.join(shipped_sets())}")
    return load_questions(safe_child(SHIPPED, name, ".json"))
