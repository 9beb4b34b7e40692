"""Safe names, atomic writes and append-only JSONL files.

Every file a user creates goes under the data folder (see ``plumbing.layout``). Names typed by
users never become paths as they are: they are turned into safe slugs, and every resolved path is
checked to stay inside its folder.
Writes go to a temporary file that is renamed over the target, so a crash or a full
disk leaves the old file, never half a new one.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import unicodedata
from contextlib import contextmanager
from pathlib import Path

MAX_NAME_CHARS = 80

# Names Windows refuses as file names; a Space may be cloned onto Windows.
_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))}


class UnsafePathError(ValueError):
    """A name or path that would leave its folder or cannot be a file name."""


def slugify(name: str) -> str:
    """A file-system-safe form of a user's name: ``"Ludwig van Beethoven"`` → ``ludwig-van-beethoven``."""
    if not isinstance(name, str):
        raise UnsafePathError("a name must be text")
    text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-_").lower()
    text = text[:MAX_NAME_CHARS].strip("-_")
    if not text:
        raise UnsafePathError(f"the name {name[:40]!r} has no letters or digits to make a file name from")
    if text in _RESERVED:
        text = f"{text}-"
    return text


def inside(folder: str | os.PathLike, *parts: str) -> Path:
    """``folder/parts…`` resolved, refusing anything that ends outside ``folder``."""
    base = Path(folder).resolve()
    for part in parts:
        if not isinstance(part, str) or not part or "\x00" in part:
            raise UnsafePathError(f"invalid path part {part!r}")
    target = base.joinpath(*parts).resolve()
    if target != base and base not in target.parents:
        raise UnsafePathError(f"{'/'.join(parts)!r} points outside {base.name}/")
    return target


def safe_child(folder: str | os.PathLike, name: str, suffix: str = "") -> Path:
    """The path for a user's ``name`` in ``folder``: slugified, then checked to stay inside."""
    return inside(folder, slugify(name) + suffix)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, value) -> Path:
    return atomic_write_text(path, json.dumps(value, ensure_ascii=False, indent=2) + "\n")


@contextmanager
def folder_in_place(target: str | os.PathLike):
    """A temporary folder beside ``target`` to fill; when the block ends without an error it is renamed to
    ``target`` in one step, so a crash never leaves a half folder that looks complete. Where another
    process put ``target`` there first, theirs is kept."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        yield tmp
        try:
            tmp.rename(target)
        except OSError:
            if not target.is_dir():  # not a lost race: a real error
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """Lines of a JSONL file; a line cut short by a crash is skipped (its work is redone)."""
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def append_jsonl(path: str | os.PathLike, rows: list[dict]) -> None:
    """Append rows, one write per batch; a line left unfinished by a crash is closed off first."""
    if not rows:
        return
    with Path(path).open("a+b") as handle:
        handle.seek(0, 2)
        if handle.tell() > 0:
            handle.seek(-1, 2)
            if handle.read(1) != b"\n":
                handle.write(b"\n")
        handle.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8"))
        handle.flush()
