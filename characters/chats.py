"""Saved chats: one JSON file per chat under ``user_data/chats/<character>/<id>.json``.

A chat records who talked (the character, maybe a second one, the user's name and
persona), where (the scene), and the messages. Each message has a ``role`` (``user`` for
the person, ``assistant`` for characters), the ``content`` and the speaker's ``name``.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

from plumbing.files import atomic_write_json, safe_child
from plumbing.layout import chats_dir
from characters.scenes import Scene

MAX_CHAT_BYTES = 4 * 2**20
MAX_MESSAGES = 2_000
MAX_CONTENT = 16_000
FORMAT = "simulacra-chat-1"


@dataclass
class Chat:
    character: str
    scene: dict = field(default_factory=dict)
    other: str = ""  # the second character of a two-character scene
    user: str = "User"
    user_persona: str = ""
    adapter: str = ""
    messages: list[dict] = field(default_factory=list)
    id: str = field(default_factory=lambda: time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6])
    created: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)
    format: str = FORMAT

    @property
    def title(self) -> str:
        first = next((m["content"] for m in self.messages if m["role"] == "user"), "")
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(self.updated))
        return f"{when} · {first[:40] or 'greeting only'} ({len(self.messages)} messages)"

    def to_dict(self) -> dict:
        return asdict(self)


def check_chat(value) -> Chat:
    """A ``Chat`` from untrusted JSON (an import, a file on disk), or a ValueError saying what is wrong."""
    if not isinstance(value, dict):
        raise ValueError("a chat file holds one JSON object")
    if value.get("format", FORMAT) != FORMAT:
        raise ValueError(f"unknown chat format {value.get('format')!r}")
    for key in ("character", "other", "user", "user_persona", "adapter", "id"):
        if key in value and not isinstance(value[key], str):
            raise ValueError(f"chat.{key} must be text")
    if not value.get("character"):
        raise ValueError("chat.character is missing")
    messages = value.get("messages", [])
    if not isinstance(messages, list) or len(messages) > MAX_MESSAGES:
        raise ValueError(f"chat.messages must be a list of at most {MAX_MESSAGES} messages")
    clean = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ("user", "assistant") or not isinstance(m.get("content"), str):
            raise ValueError(f"chat.messages[{i}] needs role user|assistant and text content")
        if len(m["content"]) > MAX_CONTENT:
            raise ValueError(f"chat.messages[{i}] is longer than {MAX_CONTENT:,} characters")
        name = m.get("name", "")
        if not isinstance(name, str) or len(name) > 100:
            raise ValueError(f"chat.messages[{i}].name must be short text")
        clean.append({"role": m["role"], "content": m["content"], "name": name})
        memories = m.get("memories")  # what a reply brought into its prompt (engine.memory), shown with it
        if memories is not None:
            if not isinstance(memories, list) or len(memories) > 10 or not all(
                    isinstance(t, str) and len(t) <= MAX_CONTENT for t in memories):
                raise ValueError(f"chat.messages[{i}].memories must be a short list of texts")
            clean[-1]["memories"] = memories
    scene = Scene.from_dict(value.get("scene") or {}).to_dict()
    known = {k: value[k] for k in ("character", "other", "user", "user_persona", "adapter") if k in value}
    chat = Chat(**known, scene=scene, messages=clean)
    if isinstance(value.get("id"), str) and value["id"]:
        chat.id = value["id"]
    for key in ("created", "updated"):
        if isinstance(value.get(key), (int, float)) and not isinstance(value.get(key), bool):
            setattr(chat, key, float(value[key]))
    return chat


class ChatStore:
    def __init__(self, root: str | Path | None = None):
        self.folder = chats_dir(root)

    def _folder(self, character: str) -> Path:
        return safe_child(self.folder, character)

    def _path(self, character: str, chat_id: str) -> Path:
        return safe_child(self._folder(character), chat_id, ".json")

    def save(self, chat: Chat) -> Path:
        chat.updated = time.time()
        data = chat.to_dict()
        if len(json.dumps(data)) > MAX_CHAT_BYTES:
            raise ValueError("this chat has grown past 4 MB; export it and start a new one")
        return atomic_write_json(self._path(chat.character, chat.id), data)

    def list(self, character: str) -> list[Chat]:
        folder = self._folder(character)
        chats = []
        for path in folder.glob("*.json") if folder.is_dir() else []:
            try:
                chats.append(check_chat(json.loads(path.read_text(encoding="utf-8"))))
            except (ValueError, OSError):
                continue  # a damaged file is left alone, not listed
        return sorted(chats, key=lambda c: c.updated, reverse=True)

    def load(self, character: str, chat_id: str) -> Chat:
        path = self._path(character, chat_id)
        if not path.is_file():
            raise KeyError(f"no saved chat {chat_id!r} for {character!r}")
        return check_chat(json.loads(path.read_text(encoding="utf-8")))

    def import_bytes(self, data: bytes, character: str | None = None) -> Chat:
        if len(data) > MAX_CHAT_BYTES:
            raise ValueError("the chat file is larger than 4 MB")
        try:
            value = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
            raise ValueError(f"not a chat file: {err}") from None
        chat = check_chat(value)
        if character:
            chat.character = character
        chat.id = Chat(character=chat.character).id  # never overwrite an existing chat
        self.save(chat)
        return chat

    def delete(self, character: str, chat_id: str) -> None:
        self._path(character, chat_id).unlink(missing_ok=True)
