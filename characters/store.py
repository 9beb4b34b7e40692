"""Presets (read-only, shipped in ``characters/presets/``) and user characters (``user_data/characters/``).

A user character is a V3 card JSON named after the slug of its name, with its avatar
(when it has one) beside it as ``<slug>.png``.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path

from characters.cards import card_json, read_card, to_v3
from plumbing.files import atomic_write_bytes, safe_child, slugify
from plumbing.layout import characters_dir
from characters.schema import LIMITS, Character, validate

PRESETS_DIR = Path(__file__).with_name("presets")


def words(text: str) -> list[str]:
    return re.findall(r"\w+", text.casefold())


def contains_run(haystack: list[str], needle: list[str]) -> bool:
    """``needle`` appears in ``haystack`` as consecutive whole words."""
    return any(haystack[i:i + len(needle)] == needle for i in range(len(haystack) - len(needle) + 1))


class CharacterNotFound(KeyError):
    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "character not found"


@dataclass(frozen=True)
class Entry:
    name: str
    kind: str  # "preset" or "user"


class CharacterStore:
    def __init__(self, root: str | Path | None = None, presets_dir: Path = PRESETS_DIR):
        self.folder = characters_dir(root)
        self.presets_dir = presets_dir
        self._presets: dict[str, Character] | None = None

    # ---- reading ------------------------------------------------------------------------

    def presets(self) -> dict[str, Character]:
        if self._presets is None:
            loaded = {}
            for path in sorted(self.presets_dir.glob("*.json")):
                character, _ = read_card(path.read_bytes())
                loaded[character.name] = validate(character)
            self._presets = loaded
        return self._presets

    def _user_files(self) -> list[Path]:
        return sorted(self.folder.glob("*.json")) if self.folder.is_dir() else []

    def user_characters(self) -> dict[str, Character]:
        found = {}
        for path in self._user_files():
            try:
                character, _ = read_card(path.read_bytes())
            except ValueError:
                continue  # a damaged file is skipped in the list, never deleted
            found[character.name] = character
        return found

    def entries(self) -> list[Entry]:
        users = [Entry(name, "user") for name in sorted(self.user_characters(), key=str.lower)]
        return [*(Entry(name, "preset") for name in self.presets()), *users]

    def names(self) -> list[str]:
        return [e.name for e in self.entries()]

    def is_preset(self, name: str) -> bool:
        return name in self.presets()

    def resolve(self, name: str) -> str:
        """A character's name from a name as people type it: the exact name, else the one character
        whose name matches case-insensitively, in full or by whole words ("beethoven"). Several
        matches, or none, is an error that lists the nearest names."""
        if not isinstance(name, str) or not name.strip():
            raise CharacterNotFound("choose a character")
        names = self.names()
        if name in names:
            return name
        typed = words(name)
        same = [n for n in names if n.casefold() == name.strip().casefold()]
        matches = same or [n for n in names if typed and contains_run(words(n), typed)]
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise CharacterNotFound(f"{name!r} matches several characters: {', '.join(matches[:8])}; "
                                    f"give more of the name")
        near = difflib.get_close_matches(name.casefold(), [n.casefold() for n in names], n=3, cutoff=0.5)
        nearest = [n for n in names if n.casefold() in near]
        raise CharacterNotFound(f"no character named {name!r}" + (f"; nearest: {', '.join(nearest)}" if nearest
                                                                  else f"; there are {len(names)}: "
                                                                       f"{', '.join(names[:5])}, …"))

    def find(self, typed: str) -> Character:
        """The character a person means by ``typed`` (see ``resolve``): for the CLIs' ``--character`` and
        the API's ``character``. Inside the app names are exact: use ``load``."""
        return self.load(self.resolve(typed))

    def load(self, name: str) -> Character:
        """The character with exactly this name."""
        if not isinstance(name, str) or not name.strip():
            raise CharacterNotFound("choose a character")
        if name in self.presets():
            return self.presets()[name].copy()
        path = self._path(name)
        if path.is_file():
            character, _ = read_card(path.read_bytes())
            if character.name == name:
                return character
        raise CharacterNotFound(f"no character named {name!r}")

    def avatar(self, name: str) -> bytes | None:
        if self.is_preset(name):
            return None
        path = self._path(name, ".png")
        return path.read_bytes() if path.is_file() else None

    # ---- writing ------------------------------------------------------------------------

    def _path(self, name: str, suffix: str = ".json") -> Path:
        return safe_child(self.folder, name, suffix)

    def save(self, character: Character, avatar: bytes | None = None, overwrite: bool = True) -> Path:
        """Save a user character; presets are read-only and another character's file is never taken."""
        validate(character)
        if self.is_preset(character.name):
            raise PermissionError(f"{character.name!r} is a preset and read-only; save it under another name")
        path = self._path(character.name)
        if path.is_file():
            try:
                existing, _ = read_card(path.read_bytes())
                other = existing.name
            except ValueError:
                other = None  # a damaged file of the same slug: replacing it loses nothing readable
            if other is not None and other != character.name:
                raise FileExistsError(f"{other!r} already uses the file name {path.name}; choose another name")
            if other is not None and not overwrite:
                raise FileExistsError(f"a character named {character.name!r} exists already")
        if avatar:
            atomic_write_bytes(self._path(character.name, ".png"), avatar)
        return atomic_write_bytes(path, card_json(to_v3(character)))

    def delete(self, name: str) -> None:
        if self.is_preset(name):
            raise PermissionError(f"{name!r} is a preset and cannot be deleted")
        self.load(name)  # raises if there is no such user character
        self._path(name).unlink()
        self._path(name, ".png").unlink(missing_ok=True)

    def free_name(self, base: str) -> str:
        """``base``, or ``base (copy)``, ``base (copy 2)``… whichever no character or file uses yet."""
        taken = set(self.names())
        taken_slugs = {p.stem for p in self._user_files()}
        for suffix in ["", " (copy)", *(f" (copy {i})" for i in range(2, 1000))]:
            candidate = base[: LIMITS["name"] - len(suffix)] + suffix
            if candidate not in taken and slugify(candidate) not in taken_slugs:
                return candidate
        raise FileExistsError(f"no free name for {base!r}")

    def duplicate(self, name: str, new_name: str | None = None) -> Character:
        source = self.load(name)
        clone = source.copy(name=new_name or self.free_name(name), creation_date=None,
                            modification_date=None)
        self.save(clone, self.avatar(name), overwrite=False)
        return clone
