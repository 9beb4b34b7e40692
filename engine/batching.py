"""Continuous batching: the decode steps of every active request run as one forward pass.

This is how vLLM and TGI serve many users, on our own small decode loop. A request first has
its prompt read, one pass of at most ``prefill_chunk`` tokens (rows times the widest chunk) between two
decode steps of the running batch: a long prompt a chunk at a time, several short ones together in one
pass, so a new visitor's long prompt does not stall the others and a classroom's messages are read at
the batched speed. It then joins the batch, and leaves it when its turn ends (end of sequence,
its token limit, its stop event, or its reader going away). Each request keeps its own KV cache rows, sampler, seed and LoRA adapter:
base-model rows and rows of several adapters share a pass through PEFT's mixed-adapter batches.

The batch's KV cache is one tensor per layer, ``[rows, heads, T, dim]``. Rows shorter than ``T``
are padded on the left, masked out, with positions that count only their real tokens. A row that
leaves takes its own part of the cache to the prefix cache, where a follow-up turn finds it.

One thread, the scheduler, runs every step, and every other pass on the model too (``Scheduler.call``):
libgomp gives each thread that runs a parallel op an OpenMP team of its own, and once a process holds more
OpenMP threads than CPUs it stops spinning between parallel regions, so every op of a pass then waits for
its workers to wake. On 2 cores a one-row decode step went from 41 to 66 ms, for as long as the server
thread that had embedded one message lived. Readers get token ids through a queue, so a slow reader (a
browser far away) never holds the batch up.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import queue
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import DynamicCache

from engine.kv_cache import copy_of, new_cache

log = logging.getLogger(__name__)

# Prompt tokens read between two decode steps (and at most per forward pass). On a CPU a pass costs in
# proportion to its tokens. On a GPU a small model's pass costs about the same for 1 token or 600
# (H200, 4-bit: a 600-token prompt read in 84 ms, a decode step 72 ms), so reading in small chunks
# there only multiplies passes: 16 fresh prompts waited up to 13 s for their first token.
PREFILL_CHUNK = {"cpu": 256, "cuda": 2048}
END = None  # put on a request's queue when it has no more tokens


def _heap_trimmer() -> Callable[[], None]:
    """glibc's ``malloc_trim``, or a no-op elsewhere. A crowd's KV cache is hundreds of MB in blocks glibc keeps
    for reuse after they are freed (measured: a crowd of 8 left RSS 1 GB up; trimmed, 0.5 GB)."""
    name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(name) if name else None
    if libc is None or not hasattr(libc, "malloc_trim"):
        return lambda: None
    return lambda: libc.malloc_trim(0)


_trim_heap = _heap_trimmer()


@dataclass(eq=False)
class Request:
    """One reply being generated. ``out`` receives token ids, then ``END`` or the exception that ended it."""

    prompt: list[int]
    pick: Callable  # (context [1, L], logits [1, V]) -> tokens [1]
    adapter: str | None
    max_new_tokens: int
    stop: threading.Event | None
    cache: DynamicCache  # its own cache while its prompt is read; then its rows live in the batch
    fed: list[int]  # exactly what its cache holds
    keep: bool = True  # give its cache to the prefix cache when it ends
    borrowed: bool = False  # ``cache`` is another's (a prefix cache entry): its first ``len(fed)`` positions are copied
    out: queue.SimpleQueue = field(default_factory=queue.SimpleQueue)
    cancelled: bool = False  # its reader went away
    generated: int = 0
    next_token: int | None = None  # sampled, not yet fed
    error: BaseException | None = None  # what ended it, if not its own end
    ended_to: queue.SimpleQueue | None = None  # also told when it ends (a caller waiting on several)

    def __post_init__(self):
        self.pending = self.prompt[len(self.fed):]
        self.context = torch.tensor([self.prompt], dtype=torch.long)  # for the repetition penalty

    @property
    def ended(self) -> bool:
        return self.cancelled or (self.stop is not None and self.stop.is_set())


@dataclass(eq=False)
class Call:
    """Work on the model asked for by another thread (``Scheduler.call``), and what it gave."""

    fn: Callable[[], Any]
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: BaseException | None = None


def _padded(tensor: torch.Tensor, pad: int) -> torch.Tensor:
    """``tensor`` ([rows, heads, T, dim]) with ``pad`` zero positions added on the left."""
    if pad == 0:
        return tensor
    zeros = tensor.new_zeros(*tensor.shape[:2], pad, tensor.shape[3])
    return torch.cat([zeros, tensor], dim=2)


def _stacked(caches: list[DynamicCache], lengths: list[int], config) -> DynamicCache:
    """One cache holding the rows of ``caches`` in order, each padded on the left to the longest of ``lengths`` (the
    positions each holds). A cache that holds nothing (a prompt read from its start) becomes one row of padding."""
    longest = max(lengths)
    like = next(cache for cache, length in zip(caches, lengths) if length)
    data = []
    for i, layer in enumerate(like.layers):
        empty = layer.keys.new_zeros(1, layer.keys.shape[1], longest, layer.keys.shape[3])
        data.append(tuple(torch.cat([_padded(getattr(cache.layers[i], name), longest - length) if length else empty
                                     for cache, length in zip(caches, lengths)]) for name in ("keys", "values")))
    return new_cache(config, data)


class Scheduler:
    """Runs the requests given to ``submit`` in batches on ``engine``'s model (see the module's text)."""

    def __init__(self, engine, max_rows: int, prefill_chunk: int):
        self.engine = engine
        self.prefill_chunk = prefill_chunk
        self.config = engine.base_model.config
        # A sliding-window layer keeps only its last tokens, so rows of different lengths cannot be
        # aligned in one tensor: such models decode one request at a time.
        sliding = any(getattr(layer, "is_sliding", False) for layer in DynamicCache(config=self.config).layers)
        self.max_rows = 1 if sliding else max_rows
        self._incoming: queue.SimpleQueue[Request | Call] = queue.SimpleQueue()
        self._calls: deque[Call] = deque()  # other work on the model, run between two steps
        self._reading: deque[Request] = deque()  # prompts being read, first come first served
        self._ready: deque[Request] = deque()  # read, waiting for a free row
        self._rows: list[Request] = []  # the batch, one request per row
        self._cache: DynamicCache | None = None
        self._mask: torch.Tensor | None = None  # [rows, T]: 1 for real tokens, 0 for padding
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        # Set while the loop waits with nothing to do, after it has given the freed memory back: what a
        # caller that measures the process's memory waits for (a reply can arrive before the trim ends).
        self.idle = threading.Event()
        self.steps = 0  # decode steps run, and rows in them: their ratio is the mean batch size
        self.row_steps = 0
        self.reads = 0  # prompt-reading passes, and requests read in them
        self.read_rows = 0

    def submit(self, request: Request | Call) -> None:
        with self._start_lock:
            # Not alive: never started, or this is a process forked from one where it ran (a ZeroGPU
            # worker), which has the scheduler's state but not its thread.
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="decode-scheduler", daemon=True)
                self._thread.start()
        self._incoming.put(request)

    def call(self, fn: Callable[[], Any]) -> Any:
        """``fn()`` (work on the model: a prompt read for the prefix cache, an embedding pass, an adapter load)
        run on the scheduler's thread between two steps; its result, or its error raised here."""
        if threading.current_thread() is self._thread:
            return fn()
        call = Call(fn)
        self.submit(call)
        call.done.wait()
        if call.error is not None:
            raise call.error
        return call.result

    @property
    def active(self) -> int:
        """Requests being read, waiting or decoding."""
        return len(self._reading) + len(self._ready) + len(self._rows)

    # ---- the loop ------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            if not (self._calls or self._reading or self._ready or self._rows):
                if self._incoming.empty():
                    _trim_heap()  # idle: the memory of the batch that ended goes back to the system
                    self.idle.set()
                self._take(self._incoming.get())  # then sleep until a request comes
                self.idle.clear()
            self._between_passes()
            try:
                self._read_chunk()
                # Again before the decode step: a visitor's message is embedded (a call), then sent (a request),
                # and each waits for the pass running when it comes; taken once an iteration, each also waited
                # for a decode step.
                self._between_passes()
                self._admit()
                if self._rows:
                    self._decode_step()
            except Exception as err:  # noqa: BLE001 - a bug here must not leave readers waiting forever
                log.exception("the decode scheduler failed; the requests in it end with the error")
                self._fail([*self._reading, *self._ready, *self._rows], err)
                self._reading.clear(), self._ready.clear()
                self._keep_rows([])

    def _between_passes(self) -> None:
        """Take what came in, and run the calls waiting."""
        while True:
            try:
                self._take(self._incoming.get_nowait())
            except queue.Empty:
                break
        while self._calls:
            self._run_call(self._calls.popleft())

    def _take(self, item: Request | Call) -> None:
        if isinstance(item, Call):
            self._calls.append(item)
            return
        if item.borrowed:  # copied here, where tensor work belongs (see the module's text)
            try:
                item.cache, item.borrowed = copy_of(item.cache, self.config, stop=len(item.fed)), False
            except Exception as err:  # noqa: BLE001 - out of memory, say: this request ends with it
                item.cache = None
                self._fail([item], err)
                return
        self._reading.append(item)

    @staticmethod
    def _run_call(call: Call) -> None:
        try:
            call.result = call.fn()
        except BaseException as err:  # noqa: BLE001 - it belongs to the caller, who raises it
            call.error = err
        finally:
            call.done.set()

    def _read_chunk(self) -> None:
        """Read up to ``prefill_chunk`` prompt tokens, first come first served: a long prompt a chunk at a time,
        several short ones (new visitors' messages, follow-up questions) in one pass. A prompt fully read gives
        its first token."""
        group, chunks = self._next_reads()
        if not group:
            return
        try:
            if len(group) == 1:
                logits, group[0].cache = self.engine._forward(torch.tensor(chunks), group[0].cache, group[0].adapter)
            else:
                logits = self._read_together(group, chunks)
        except Exception as err:  # noqa: BLE001 - the requests of the pass get the error, the others go on
            for request in group:
                self._reading.remove(request)
            self._fail(group, err)
            return
        self.reads += 1
        self.read_rows += len(group)
        for i, (request, chunk) in enumerate(zip(group, chunks)):
            request.fed.extend(chunk)
            request.pending = request.pending[len(chunk):]
            if not request.pending:
                self._reading.remove(request)
                if self._take_token(request, logits[i:i + 1]):
                    self._ready.append(request)
                else:
                    self._finish(request)

    def _next_reads(self) -> tuple[list[Request], list[list[int]]]:
        """The requests whose prompts the next pass reads, and what of each. The pass costs its rows times its
        widest chunk, which stays within ``prefill_chunk``: the first waiting request gets up to all of it, and
        the ones after join whole while that holds, or else cut to the pass's width. Measured on 2 AVX2 cores
        (fp32): four 60-token messages after a 700-token prompt in one pass took 1.0 s, one at a time 1.65 s,
        since a CPU's matrix products run faster on more rows."""
        group, chunks, width = [], [], 0
        for request in list(self._reading):
            if request.ended:
                self._reading.remove(request)
                self._finish(request)
                continue
            take, rows = min(len(request.pending), self.prefill_chunk), len(group) + 1
            if group:
                if rows > self.max_rows or rows * width > self.prefill_chunk:
                    break
                if rows * take > self.prefill_chunk:
                    take = width
            group.append(request)
            chunks.append(request.pending[:take])
            width = max(width, take)
        return group, chunks

    def _read_together(self, group: list[Request], chunks: list[list[int]]) -> torch.Tensor:
        """One pass over the chunks of several requests, each after its own cache. The caches are padded on the
        left to one length and the chunks on the right to one width (masked, and never seen by a real token since
        they come after it). Each request then gets its own part of the cache back. Returns the logits a row."""
        lengths = [len(r.fed) for r in group]
        past, width = max(lengths), max(map(len, chunks))
        cache = _stacked([r.cache for r in group], lengths, self.config) if past else new_cache(self.config)
        mask = torch.zeros(len(group), past + width, dtype=torch.long)
        for i, (n, chunk) in enumerate(zip(lengths, chunks)):
            mask[i, past - n:past + len(chunk)] = 1
        ids = torch.tensor([chunk + [chunk[-1]] * (width - len(chunk)) for chunk in chunks])
        positions = torch.tensor(lengths)[:, None] + torch.arange(width)
        logits, cache = self.engine._forward(ids, cache, [r.adapter for r in group], last=[len(c) - 1 for c in chunks],
                                             attention_mask=mask, position_ids=positions)
        for i, (request, n, chunk) in enumerate(zip(group, lengths, chunks)):
            request.cache = copy_of(cache, self.config, slice(i, i + 1), past - n, past + len(chunk))
        return logits

    def _take_token(self, request: Request, logits: torch.Tensor) -> bool:
        """Sample ``request``'s next token from ``logits`` [1, V] and send it; False when the request ends
        here (the caller then finishes it)."""
        if request.ended:
            return False
        try:
            token = int(request.pick(request.context, logits)[0])
        except Exception as err:  # noqa: BLE001 - a sampler error ends only its request
            request.error = err
            return False
        if token in self.engine.eos_ids:
            return False
        request.out.put(token)
        request.generated += 1
        request.context = torch.cat([request.context, torch.tensor([[token]])], dim=1)
        request.next_token = token
        return request.generated < request.max_new_tokens  # the last token is not fed: the cache holds ``fed``

    def _finish(self, request: Request) -> None:
        """End ``request``: its cache (its own, holding ``fed``) goes to the prefix cache, then ``END`` or its error."""
        if request.keep and request.error is None and request.cache is not None:
            self.engine.prefix_cache.put(request.adapter, request.fed, request.cache)
        request.cache = None
        request.out.put(END if request.error is None else request.error)
        if request.ended_to is not None:
            request.ended_to.put(request)

    def _fail(self, requests: list[Request], err: BaseException) -> None:
        for request in requests:
            request.error = err
            self._finish(request)

    # ---- the batch -----------------------------------------------------------------------

    def _admit(self) -> None:
        """Move read requests into free rows: their caches join the batch's, padded on the left, in one copy
        (one at a time, 7 requests read together took 0.19 s to join on 2 cores)."""
        joining = []
        while self._ready and len(self._rows) + len(joining) < self.max_rows:
            request = self._ready.popleft()
            if request.ended:
                self._finish(request)
            else:
                joining.append(request)
        if not joining:
            return
        caches, lengths = [r.cache for r in joining], [len(r.fed) for r in joining]
        width = max(lengths + ([self._mask.shape[1]] if self._rows else []))
        masks = [torch.cat([torch.zeros(1, width - n, dtype=torch.long), torch.ones(1, n, dtype=torch.long)], 1)
                 for n in lengths]
        if self._rows:
            caches, lengths = [self._cache, *caches], [self._mask.shape[1], *lengths]
            masks.insert(0, torch.nn.functional.pad(self._mask, (width - self._mask.shape[1], 0)))
        self._cache = caches[0] if len(caches) == 1 else _stacked(caches, lengths, self.config)
        self._mask = torch.cat(masks)
        for request in joining:
            request.cache = None  # its rows are in the batch now
            self._rows.append(request)

    def _decode_step(self) -> None:
        rows = self._rows
        tokens = torch.tensor([[r.next_token] for r in rows])
        mask = torch.cat([self._mask, torch.ones(len(rows), 1, dtype=torch.long)], dim=1)
        extra = {}
        if not bool(self._mask.all()):  # padding: mask it, and count positions over real tokens only
            extra = {"attention_mask": mask, "position_ids": torch.tensor([[len(r.fed)] for r in rows])}
        adapters = [r.adapter for r in rows]
        try:
            logits, self._cache = self.engine._forward(tokens, self._cache, adapters,
                                                       threads=self.engine.decode_threads, **extra)
        except Exception as err:  # noqa: BLE001 - every row of the failed pass gets the error
            log.exception("a batched decode step failed")
            self._fail(rows, err)
            self._keep_rows([])
            return
        self._mask = mask
        self.steps += 1
        self.row_steps += len(rows)
        going = []
        for i, request in enumerate(rows):
            request.fed.append(request.next_token)
            if self._take_token(request, logits[i:i + 1]):
                going.append(i)
                continue
            if request.keep and self.engine.prefix_cache.capacity > 0:
                request.cache = self._row_cache(i)  # its part of the batch's cache, before the row goes
            self._finish(request)
        if len(going) < len(rows):
            self._keep_rows(going)

    def _row_cache(self, row: int) -> DynamicCache:
        """Row ``row`` of the batch's cache, without its padding, as a cache of its own."""
        start = int((self._mask[row] == 0).sum())  # padding is all on the left
        return copy_of(self._cache, self.config, slice(row, row + 1), start)

    def _keep_rows(self, going: list[int]) -> None:
        """Drop the rows that ended, then the left columns that are padding in every row left."""
        self._rows = [self._rows[i] for i in going]
        if not going:
            self._cache, self._mask = None, None
            return
        keep = torch.tensor(going)
        self._cache.batch_select_indices(keep)
        self._mask = self._mask[keep]
        unused = int(self._mask.argmax(dim=1).min())  # the first real token of the least padded row
        if unused:
            for layer in self._cache.layers:
                layer.keys, layer.values = layer.keys[:, :, unused:], layer.values[:, :, unused:]
            self._mask = self._mask[:, unused:]


def wait(request: Request):
    """The next item of ``request``'s queue: a token id, ``END``, or raises the error that ended it."""
    item = request.out.get()
    if isinstance(item, BaseException):
        raise item
    return item
