"""Dialogue parsing: the turns of a generated script, in Character-LLM's ``(thinking)`` /
``(speaking)`` form, from whatever shape a model writes; and the one check of content that
parsing makes possible (the character counting something otherwise than its facts)."""

from __future__ import annotations

import re

from characters.schema import Character

# "Name (speaking): …", "Name (thinking)" alone, "Name (walking closer): …" (a stage direction: speaking)
TURN = re.compile(r"^(?P<name>[^:()\[\]]{1,60}?)\s*[(\[]\s*(?P<action>[^)\]]{1,30})\s*[)\]]\s*[:：\-–]?\s*"
                  r"(?P<content>.*)$", re.IGNORECASE)
# "Name: …" and "Name speaking: …"
PLAIN = re.compile(r"^(?P<name>[A-Z][\w .'’-]{0,40}?)(?:\s+(?P<action>thinking|speaking|thinks|says))?\s*[:：]\s*"
                   r"(?P<content>.+)$", re.IGNORECASE)
NOT_NAMES = {"type", "location", "time", "background", "mood", "topic", "scene", "setting", "note", "context",
             "status"}


def _clean(line: str) -> str:
    line = re.sub(r"[*_#`>]+", "", line).strip()
    return line.strip("-•").strip()


def _action(word: str) -> str:
    return "(thinking)" if "think" in word.lower() or "thought" in word.lower() else "(speaking)"


def is_character(name: str, character: Character) -> bool:
    """``Beethoven``, ``Ludwig`` and ``Ludwig van Beethoven`` all name the same character."""
    name = name.strip().lower()
    full = character.name.lower()
    parts = [p for p in re.split(r"\s+", full) if len(p) > 2 and p not in ("van", "von", "the", "jr.", "vii")]
    return name == full or name in parts or (character.nickname and name == character.nickname.lower())


def parse_dialogue(text: str, character: Character) -> list[dict]:
    """Turns ``{"role", "action", "content"}`` from a model's script, tolerant of the shapes models write:
    ``Name (speaking): text``, ``Name (speaking)`` with the text on the next lines, ``Name: text``
    (speaking), markdown, quotes. Other people only speak."""
    turns: list[dict] = []
    open_turn: dict | None = None
    for raw in text.splitlines():
        line = _clean(raw)
        if not line:
            open_turn = None if open_turn and open_turn["content"] else open_turn
            continue
        match = TURN.match(line) or PLAIN.match(line)
        name = match.group("name").strip() if match else ""
        if match and name.lower() not in NOT_NAMES:
            action = _action(match.group("action") or "speaking")
            mine = is_character(name, character)
            role = character.name if mine else name
            if not mine:
                action = "(speaking)"
            open_turn = {"role": role, "action": action, "content": match.group("content").strip().strip('"“”')}
            turns.append(open_turn)
        elif open_turn is not None:  # the text of "Name (speaking)" on the following line(s)
            open_turn["content"] = (open_turn["content"] + " " + line.strip('"“”')).strip()
    return [t for t in turns if t["content"]]


COUNT = re.compile(r"\b(\d+|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve)\s+([a-z]+s)\b")


def counts(text: str) -> dict[str, set[str]]:
    """What a text counts: {"symphonies": {"nine"}} from "I have written nine symphonies"."""
    found: dict[str, set[str]] = {}
    for number, noun in COUNT.findall(text.lower()):
        found.setdefault(noun, set()).add(number)
    return found


def contradicts_facts(turns: list[dict], character: Character) -> bool:
    """The character counts something its facts count otherwise ("my five symphonies" against "I have
    written nine symphonies"): a small model's slip that training would teach as the truth."""
    known = counts(" ".join(character.sims.facts))
    said = counts(" ".join(t["content"] for t in turns if t["role"] == character.name))
    return any(noun in known and numbers - known[noun] for noun, numbers in said.items())
