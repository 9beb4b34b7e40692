"""Long work in a thread of its own, followed by a Gradio generator: progress, Stop, the error if any."""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable, Iterator


class Background:
    """Runs ``work(report, stop)`` in a thread; ``report(done, total, message)`` feeds the progress bar."""

    def __init__(self, work: Callable[[Callable, threading.Event], object]):
        self.stop = threading.Event()
        self.done, self.total, self.message = 0, 1, "starting"
        self.result, self.error = None, None
        # The event's context goes along (ZeroGPU counts the GPU calls made in it against its visitor).
        self._thread = threading.Thread(target=contextvars.copy_context().run, args=(self._run, work), daemon=True)
        self._thread.start()

    def report(self, done: int, total: int, message: str) -> None:
        self.done, self.total, self.message = done, total, message

    def _run(self, work) -> None:
        try:
            self.result = work(self.report, self.stop)
        except Exception as err:  # handed to the page by the caller; what was saved stays
            self.error = err

    def follow(self, progress, every: float = 0.5) -> Iterator[None]:
        """Yield every ``every`` seconds while the work runs, moving ``progress`` (a ``gr.Progress``)."""
        while self._thread.is_alive():
            progress(self.done / max(1, self.total), desc=self.message)
            time.sleep(every)
            yield


def request_stop(event) -> str:
    """The Stop button: ``event`` is the running work's stop event (kept in a ``gr.State``), or nothing."""
    if isinstance(event, threading.Event):
        event.set()
        return "Stopping after the current step…"
    return "Nothing is running."
