"""Training runs as processes of their own: one at a time, the rest queued, found again after a restart.

The state lives on disk (a run folder's ``status.json`` and the process's pid, see
``training.runs``), never in the UI's memory, so a page reload or an app restart re-attaches to a running job, and a run
whose process died is seen as *interrupted* and can be resumed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from plumbing.files import atomic_write_json
from plumbing.layout import data_dir, runs_dir
from training.qlora import RunOptions
from training.runs import (ACTIVE, all_runs, last_checkpoint, new_run_id, read_log, read_options, read_status,
                           run_folder, write_status)

ROOT = Path(__file__).resolve().parent.parent


class JobManager:
    """``launch(folder)``, if given, starts a run in place of a process of its own (ZeroGPU runs it in slices
    of GPU calls from the app, see ``ui.zerogpu``)."""

    def __init__(self, launch: Callable[[Path], None] | None = None):
        self._lock = threading.Lock()
        self._launch = launch

    # ---- reading --------------------------------------------------------------------------

    def runs(self) -> list[dict]:
        """Every run, newest first: id, status, options, last log line."""
        found = []
        for folder in all_runs():
            try:
                options = read_options(folder)
            except (OSError, ValueError):
                continue
            found.append({"id": folder.name, "status": read_status(folder), "options": options,
                          "last": read_log(folder)[-1:] or [{}]})
        return found

    def log(self, run_id: str) -> list[dict]:
        return read_log(run_folder(run_id))

    def output_tail(self, run_id: str, lines: int = 30) -> str:
        path = run_folder(run_id) / "process.log"
        if not path.is_file():
            return ""
        with path.open("rb") as handle:
            handle.seek(max(0, path.stat().st_size - 20_000))
            text = handle.read().decode(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def active(self) -> str | None:
        for run in self.runs():
            if run["status"].get("state") in ACTIVE:
                return run["id"]
        return None

    # ---- acting ---------------------------------------------------------------------------

    def submit(self, options: RunOptions) -> str:
        """Create a run; it starts now, or when the running one ends."""
        run_id = new_run_id(options.character)
        folder = runs_dir() / run_id
        folder.mkdir(parents=True)
        options.output_dir = str(folder)
        atomic_write_json(folder / "options.json", asdict(options))
        write_status(folder, state="queued", character=options.character)
        self.pump()
        return run_id

    def resume(self, run_id: str) -> None:
        folder = run_folder(run_id)
        state = read_status(folder).get("state")
        if state in ACTIVE:
            raise ValueError(f"{run_id} is already running")
        if state == "finished" and last_checkpoint(folder) is None:
            raise ValueError(f"{run_id} has finished and has no checkpoint to resume from")
        write_status(folder, state="queued")
        self.pump()

    def stop(self, run_id: str) -> None:
        """Ask a run to stop at its next step (it saves its adapter); a queued run is cancelled."""
        folder = run_folder(run_id)
        status = read_status(folder)
        if status.get("state") == "queued":
            write_status(folder, state="cancelled")
            return
        (folder / "STOP").touch()
        if status.get("state") in ACTIVE and isinstance(status.get("pid"), int) and not status.get("in_app"):
            try:
                os.kill(status["pid"], signal.SIGTERM)
            except ProcessLookupError:
                pass

    def pump(self) -> str | None:
        """Start the oldest queued run if nothing runs; the id started, if any."""
        with self._lock:
            if self.active():
                return None
            queued = [r for r in self.runs() if r["status"].get("state") == "queued"]
            if not queued:
                return None
            run_id = min(queued, key=lambda r: r["status"].get("updated", 0))["id"]
            self._start(run_id)
            return run_id

    def _start(self, run_id: str) -> None:
        folder = run_folder(run_id)
        (folder / "STOP").unlink(missing_ok=True)
        if self._launch is not None:
            self._launch(folder)
            return
        log = (folder / "process.log").open("ab")
        # An argument list, never a shell string; the run id is in the command line so that a
        # reused pid is not mistaken for the run.
        process = subprocess.Popen(
            [sys.executable, "-m", "training", "run", "--output-dir", str(folder), "--resume"],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            env={**os.environ, "SIMULACRA_DATA_DIR": str(data_dir())},
        )
        log.close()
        write_status(folder, state="starting", pid=process.pid, in_app=False)
        # Reap the child when it ends, so it does not linger as a zombie in a long-lived app.
        threading.Thread(target=process.wait, daemon=True).start()
