"""A run: the folder of one QLoRA training under ``runs/<id>/`` of the data folder, and its status.

The state lives on disk, never in a process's memory, so the UI, the job manager and the
training process all read and write it through here:

- ``options.json``  the run's options        - ``status.json`` state, pid, step, times
- ``log.jsonl``     step, loss, eval loss, learning rate, tokens/s, elapsed, ETA
- ``process.log``   the training process's output
- ``checkpoint-N/`` Trainer checkpoints (adapter + optimizer + scheduler + RNG), for resume
- ``adapter/``      the final adapter (safetensors) with a README model card
- ``STOP``          asks the running process to stop at its next step

A run killed outright stays ``running`` in its status with a dead pid; readers call that
*interrupted*, and it can be resumed from its last checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from plumbing.files import append_jsonl, atomic_write_json, inside, read_jsonl, slugify
from plumbing.layout import runs_dir

ACTIVE = ("starting", "running")


def run_folder(run_id: str) -> Path:
    """The folder of an existing run; an unknown or unsafe id is an error."""
    folder = inside(runs_dir(), run_id)
    if not (folder / "options.json").is_file():
        raise FileNotFoundError(f"no run {run_id!r}")
    return folder


def new_run_id(character: str) -> str:
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{slugify(character)[:40]}-{os.urandom(2).hex()}"


def read_options(folder: Path) -> dict:
    return json.loads((folder / "options.json").read_text())


def adapter_of(folder: Path) -> Path:
    """The run's final adapter; an error that says what to do when there is none yet."""
    adapter = folder / "adapter"
    if not (adapter / "adapter_config.json").is_file():
        raise FileNotFoundError("This run has no adapter yet: wait for it to finish, or stop it (that saves one).")
    return adapter


def pid_alive(pid: int | None, marker: str = "") -> bool:
    """Is ``pid`` running, and (when ``marker`` is given) is it still our process, not a reused pid?"""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="ignore")
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return True
    return state != "Z" and (not marker or marker in cmdline)


def read_status(folder: Path) -> dict:
    path = folder / "status.json"
    status = json.loads(path.read_text()) if path.is_file() else {"state": "queued"}
    # A run in a process of its own has its id in that process's command line; one in slices driven by the
    # app (ZeroGPU) is alive while the app is.
    marker = "" if status.get("in_app") else folder.name
    if status.get("state") in ACTIVE and not pid_alive(status.get("pid"), marker):
        status["state"] = "interrupted"  # killed without a chance to say so: resumable
    return status


def write_status(folder: Path, **changes) -> dict:
    path = folder / "status.json"
    status = json.loads(path.read_text()) if path.is_file() else {}
    status.update(changes, updated=time.time())
    atomic_write_json(path, status)
    return status


def read_log(folder: Path) -> list[dict]:
    return read_jsonl(folder / "log.jsonl")


def append_log(folder: Path, row: dict) -> None:
    append_jsonl(folder / "log.jsonl", [row])


def last_checkpoint(folder: Path) -> Path | None:
    checkpoints = [p for p in folder.glob("checkpoint-*") if (p / "trainer_state.json").is_file()]
    return max(checkpoints, key=lambda p: int(p.name.split("-")[-1]), default=None)


def all_runs() -> list[Path]:
    """Every run folder, newest first."""
    root = runs_dir()
    return [p.parent for p in sorted(root.glob("*/options.json"), reverse=True)] if root.is_dir() else []


def zip_adapter(run_id: str) -> Path:
    """The run's adapter folder (weights, tokenizer, model card) as a zip in a fresh temporary folder."""
    adapter = adapter_of(run_folder(run_id))
    target = Path(tempfile.mkdtemp(prefix="adapter-")) / f"{run_id}-adapter"
    return Path(shutil.make_archive(str(target), "zip", root_dir=adapter))
