"""ZeroGPU: on a Space with ZeroGPU hardware the GPU is attached only inside ``@spaces.GPU`` calls. Each
runs in a worker process forked from the app; its arguments and results cross by pickle, and an
exception crosses as its class name only.

``ZeroGPUEngine`` wraps the engine so that every piece of GPU work the app asks for is one such call, with
a duration that fits it: a streamed reply, a batch of replies (a full batch a call), reading a prompt
ahead, the memory's sentence vectors. The tabs, the API and the evaluation use it as they use the
engine. What can fail for a visitor's input (an unknown adapter, a prompt too long) is checked before
the call, and what fails inside it comes back with its class and message. Stop is checked between the
pieces of a reply and between calls.

Training runs in slices (``launch_training``): each call resumes the run from its last checkpoint,
trains for ``TRAIN_SLICE_S`` less a margin, saves a checkpoint and returns; the next call goes on.

The model is loaded at start, as ZeroGPU requires: ``import spaces`` (first, in ``app.py``) makes
``.to("cuda")`` register the weights, which ``start()`` packs before the server serves. bitsandbytes
4-bit needs bitsandbytes >= 0.46 there (``requirements.txt``). Off ZeroGPU, ``spaces.GPU`` returns the
function unchanged, and without the ``spaces`` package the app does not use this module.
"""

from __future__ import annotations

import contextvars
import dataclasses
import math
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

try:  # before torch is imported (app.py imports this module first): on ZeroGPU, spaces patches torch
    import spaces
except ImportError:  # not a Space: the Space images install it on every hardware
    spaces = None

from engine import AdapterError, PromptTooLong, SamplingOptions  # noqa: E402
from training.runs import ACTIVE, read_status, write_status  # noqa: E402

# Seconds a call is granted. A cold worker first moves the weights to the GPU (the 1.7B: 960 MB); then a
# decode step of one row costs about 54 ms, of a full batch about 0.2 s (H200, bench/gpu.py).
COLD_START_S = 15
ROW_STEP_S = 0.08
BATCH_STEP_S = 0.2
TRAIN_SLICE_S = 120
TRAIN_SLICE_MARGIN_S = 45  # loading the model and data before the first step, saving after the last
KNOWN_ERRORS = (AdapterError, PromptTooLong, ValueError)

_engine = None  # the wrapped engine; a worker inherits it by fork


def active() -> bool:
    """Running on ZeroGPU hardware."""
    return spaces is not None and spaces.config.Config.zero_gpu


def start() -> None:
    """Pack the weights registered at load, as ``gr.Blocks.launch`` does on ZeroGPU (this app serves
    Gradio mounted in its own FastAPI app, so launch is not called)."""
    if active():
        import spaces.zero

        spaces.zero.startup()


class _Failure:
    """An expected error raised in a worker, sent back whole (ZeroGPU would send only its class name)."""

    def __init__(self, err: Exception):
        self.kind = next(kind for kind in KNOWN_ERRORS if isinstance(err, kind))
        self.message = str(err)

    def raise_it(self):
        raise self.kind(self.message)


def _with_adapter(adapter: tuple[str, str] | None) -> str | None:
    """The adapter's name, registered first (the path the app resolved): a worker forked before it was added
    does not know it."""
    if adapter is None:
        return None
    name, path = adapter
    _engine.add_adapter(name, path)
    return name


def _stream(messages, sampling, adapter, continue_last) -> Iterator:
    stats: dict = {}
    try:
        yield from _engine.stream(messages, sampling, _with_adapter(adapter), continue_last=continue_last,
                                  stats=stats)
    except KNOWN_ERRORS as err:
        yield _Failure(err)
    yield stats  # the last item: the engine's figures for the reply


def _generate_batch(conversations, sampling, adapter):
    stats: dict = {}
    try:
        return _engine.generate_batch(conversations, sampling, _with_adapter(adapter), stats=stats), stats
    except KNOWN_ERRORS as err:
        return _Failure(err), stats


def _prefill(messages, adapter) -> int:
    return _engine.prefill(messages, _with_adapter(adapter))


def _hidden_states(texts, depth):
    return _engine.hidden_states(texts, depth)


def _stream_s(messages, sampling, adapter, continue_last) -> int:
    return math.ceil(COLD_START_S + ROW_STEP_S * sampling.max_new_tokens)


def _batch_s(conversations, sampling, adapter) -> int:
    return math.ceil(COLD_START_S + BATCH_STEP_S * sampling.max_new_tokens)


def _hidden_states_s(texts, depth) -> int:
    return math.ceil(COLD_START_S + 0.02 * len(texts))


class ZeroGPUEngine:
    """The engine, with its GPU work done in ``gpu`` calls (``spaces.GPU``; a test may pass another)."""

    def __init__(self, engine, gpu: Callable | None = None):
        global _engine
        _engine = engine
        gpu = gpu or spaces.GPU
        self.inner = engine
        self._stream = gpu(_stream, duration=_stream_s)
        self._generate_batch = gpu(_generate_batch, duration=_batch_s)
        self._prefill = gpu(_prefill, duration=COLD_START_S)
        self._hidden_states = gpu(_hidden_states, duration=_hidden_states_s)

    def __getattr__(self, name):  # names, options, tokenizer, adapters list: the engine's own
        return getattr(self.inner, name)

    def usage(self) -> dict:
        return {**self.inner.usage(), "device_memory": "ZeroGPU: a GPU is attached for each call"}

    def _adapter(self, name: str | None) -> tuple[str, str] | None:
        """Checked here, before a call: an unknown or unsafe name is the visitor's error, not the GPU's."""
        return (name, str(self.inner._adapter_path(name))) if name else None

    def check_adapter(self, name: str | None) -> None:
        self._adapter(name)

    def stream(self, messages, sampling: SamplingOptions | None = None, adapter: str | None = None,
               stop: threading.Event | None = None, continue_last: bool = False, stats: dict | None = None):
        sampling = sampling or SamplingOptions()
        self.inner.fit(messages, sampling.max_new_tokens, continue_last)  # too long: raised now, as the engine does
        pieces = self._stream(messages, sampling, self._adapter(adapter), continue_last)
        return self._follow(pieces, stop, stats)

    @staticmethod
    def _follow(pieces, stop, stats) -> Iterator[str]:
        try:
            for item in pieces:
                if isinstance(item, _Failure):
                    item.raise_it()
                if isinstance(item, dict):
                    if stats is not None:
                        stats.update(item)
                    continue
                if stop is not None and stop.is_set():
                    break
                yield item
        finally:
            pieces.close()  # ends the call: the worker's reply stops there

    def generate(self, messages, sampling=None, adapter=None, stop=None, stats=None) -> str:
        return "".join(self.stream(messages, sampling, adapter, stop, continue_last=messages[-1]["role"] == "assistant",
                                   stats=stats))

    def generate_batch(self, conversations, sampling: SamplingOptions | None = None, adapter: str | None = None,
                       stop: threading.Event | None = None, stats: dict | None = None, max_rows: int | None = None,
                       progress: Callable[[int], None] | None = None) -> list[str]:
        """One call per full batch of rows, so each call's duration stays that of one batch. ``progress`` is told
        after each call; ``stop`` as in ``Engine.generate_batch``."""
        sampling = sampling or SamplingOptions()
        spec = self._adapter(adapter)
        rows = max(1, min(self.inner.options.max_batch_rows, max_rows or self.inner.options.max_batch_rows))
        replies, totals = [], {}
        for start in range(0, len(conversations), rows):
            if stop is not None and stop.is_set():
                break
            # Conversation i samples with seed + i, as in one call to the engine.
            chunk = sampling if sampling.seed is None else dataclasses.replace(
                sampling, seed=(sampling.seed + start) % 2**31)
            got, figures = self._generate_batch(conversations[start:start + rows], chunk, spec)
            if isinstance(got, _Failure):
                got.raise_it()
            replies += got
            if progress is not None:
                progress(len(replies))
            for key, value in figures.items():
                totals[key] = totals.get(key, 0) + value
        if stats is not None:
            stats.update(totals)
        return replies

    def prefill(self, messages, adapter: str | None = None) -> int:
        return self._prefill(messages, self._adapter(adapter))

    def hidden_states(self, texts: list[str], depth: float, batch: int = 16, then=None):
        states = self._hidden_states(texts, depth)  # ``then`` runs here: a closure does not cross to the GPU worker
        return states if then is None else then(states)


# ---- training in slices ------------------------------------------------------------------------


def _train_slice(folder: str, owner_pid: int, budget_s: float) -> str:
    from training.qlora import RunOptions, train

    options = RunOptions.from_file(Path(folder) / "options.json")
    options.resume = True
    train(options, Path(folder), budget_s=budget_s, owner_pid=owner_pid)
    return read_status(Path(folder)).get("state", "")


def launch_training(folder: Path, gpu: Callable | None = None) -> threading.Thread:
    """Run the training of ``folder`` as a series of GPU calls, from a thread of the app. The thread carries
    the context of the Gradio event that started it, so ZeroGPU counts the calls against that visitor."""
    slice_of = (gpu or spaces.GPU)(_train_slice, duration=TRAIN_SLICE_S)
    owner = os.getpid()
    write_status(folder, state="starting", pid=owner, in_app=True)

    def slices() -> None:
        while read_status(folder).get("state") in ACTIVE:
            try:
                slice_of(str(folder), owner, TRAIN_SLICE_S - TRAIN_SLICE_MARGIN_S)
            except Exception as err:  # noqa: BLE001 - no GPU granted, the quota spent, a failed slice: the run says so
                if read_status(folder).get("state") in ACTIVE:
                    write_status(folder, state="failed", error=f"{type(err).__name__}: {err}"[:500])
                return

    thread = threading.Thread(target=contextvars.copy_context().run, args=(slices,), name="training-slices",
                              daemon=True)
    thread.start()
    return thread
