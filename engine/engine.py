"""The model behind every tab: one base model, loaded once, shared by all sessions.

``Engine.stream`` renders chat messages with the model's own chat template and yields
text pieces as they are decoded. The decode loop is our own (a forward per token over a
KV cache) rather than ``model.generate``, for three reasons: it stops within one token
when asked, it reuses the KV cache of earlier turns (see ``prefix_cache``), and it runs
every active request, each with its own LoRA adapter, in one batched forward pass per
token (continuous batching, see ``batching``). Chat, the API, interviews, experience
generation and scenes all go through that one scheduler.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import queue
import random
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from transformers import (
    LogitsProcessorList,
    MinPLogitsWarper,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopPLogitsWarper,
)

from engine.batching import END, PREFILL_CHUNK, Request, Scheduler, wait
from engine.bnb_cpu import keep_cpu_4bit_unpacked, unpack_cpu_4bit
from engine.cpu import cpu_threads
from engine.kv_cache import new_cache
from engine.loading import load_model, load_tokenizer
from engine.mixed_adapters import lora_layers, row_scales
from engine.model_source import resolve_model
from plumbing.layout import models_dir
from engine.options import EngineOptions, SamplingOptions
from engine.precision import auto_precision
from engine.shipped import shipped_adapters
from engine.prefix_cache import PrefixCache, common_prefix_of
from plumbing.files import UnsafePathError, inside

log = logging.getLogger(__name__)

Message = dict  # {"role": "system"|"user"|"assistant", "content": str}
SHARED_PREFIX_MIN = 16  # a shorter shared prefix is not worth a separate pass
UNKNOWN = object()  # the adapter state after a load: set again before the next pass


class PromptTooLong(ValueError):
    """The system prompt alone does not fit the context budget."""


class AdapterError(ValueError):
    """An adapter name that is unknown, unsafe or does not fit the base model."""


@dataclasses.dataclass(eq=False)
class _Embedding:
    """Texts waiting for their hidden states (``Engine.hidden_states``), then the states or the error."""

    texts: list[str]
    layer: int
    then: Callable | None = None  # applied to the states on the model's thread
    result: Any = None
    error: BaseException | None = None


class Engine:
    def __init__(self, options: EngineOptions | None = None, adapters_dir: str | Path | None = None,
                 cache_dir: str | Path | None = None):
        self.options = options or EngineOptions()
        self.adapters_dir = Path(adapters_dir).resolve() if adapters_dir else None
        if self.options.device == "cuda" and not torch.cuda.is_available():
            raise ValueError("--device cuda was asked for, but this machine has no CUDA GPU; use --device auto")
        on_cuda = self.options.device == "cuda" or (self.options.device == "auto" and torch.cuda.is_available())
        self.device = torch.device("cuda" if on_cuda else "cpu")
        started = time.perf_counter()
        self.cache_dir = Path(cache_dir) if cache_dir else models_dir()
        self.source = resolve_model(self.options.model, self.cache_dir, on_cuda)
        trust = self.options.trust_remote_code
        self.tokenizer = load_tokenizer(self.source, trust)
        # Decode steps use every thread by default. One fewer had measured faster for a crowd on 2 cores while
        # server threads also ran passes, which slowed every pass (see batching); with all passes on one thread,
        # through the API on 2 cores (fp32, Xeon with AVX-512 BF16), one visitor got 18.5 tokens/s on two decode
        # threads against 12.9 on one, and 8 visitors 42.3 against 31.2. Every pass names its count: OpenMP keeps
        # one per thread, and a thread whose first torch op ran while a pass had changed the process-wide
        # default would keep it.
        self.threads = torch.get_num_threads()
        self.decode_threads = None if on_cuda else (int(self.options.decode_threads) or self.threads)
        self.precision, self.precision_reason = self.options.precision, "chosen"
        if self.precision == "auto":
            self.precision, self.precision_reason = auto_precision(self.source, on_cuda, trust, self.cache_dir,
                                                                   (self.decode_threads or 1, self.threads))
        precision = self.precision
        self.qlora_base = self.options.qlora_base and precision in ("bf16", "fp32")  # see loading.as_qlora_base
        self.model = load_model(self.source, precision, self.device.type, trust, self.cache_dir,
                                self.qlora_base).eval()
        if precision == "4bit" and not on_cuda and not self.options.cpu_4bit_packing:
            keep_cpu_4bit_unpacked(self.model)  # before any pass: packing and unpacking leaves bf16-rounded scales
        self.base_model = self.model
        self.load_seconds = time.perf_counter() - started
        self.eos_ids = self._eos_ids()
        self.prefix_cache = PrefixCache(self.base_model.config, self.options.prefix_cache_entries)
        self._lock = threading.Lock()  # one forward pass at a time on the shared model
        self._embeddings: list[_Embedding] = []  # texts waiting for hidden_states, and whose turn it is
        self._embeddings_lock, self._embedding_turn = threading.Lock(), threading.Lock()
        self._adapters: dict[str, Path] = dict(shipped_adapters(self.source))
        self._loaded: set[str] = set()  # adapters in the PEFT model, added once their weights are in
        self._active_adapter: str | tuple[str, ...] | None = None
        self._lora_layer_list: list | None = None  # see _lora_layers
        self.prefill_chunk = PREFILL_CHUNK[self.device.type]
        self.scheduler = Scheduler(self, self.options.max_batch_rows, self.prefill_chunk)
        log.info("Loaded %s in %s (%s) on %s in %.1fs; decode steps use %s of %d CPU threads", self.source,
                 precision, self.precision_reason, self.device, self.load_seconds, self.decode_threads, self.threads)

    # ---- facts about the model -------------------------------------------------------

    @property
    def name(self) -> str:
        return Path(self.source).name if Path(self.source).exists() else self.source

    def memory_bytes(self) -> int:
        return self.base_model.get_memory_footprint()

    def usage(self) -> dict:
        """Memory in use: the model's weights, and the GPU's allocation or the process's resident memory."""
        if self.device.type == "cuda":
            device_memory = f"GPU {torch.cuda.memory_allocated() / 2**20:.0f} MB allocated"
        else:
            import psutil

            device_memory = f"process {psutil.Process().memory_info().rss / 2**20:.0f} MB resident"
        return {"model_mb": self.memory_bytes() / 2**20, "device_memory": device_memory}

    def _eos_ids(self) -> set[int]:
        ids = set()
        for value in (self.tokenizer.eos_token_id, getattr(self.model.generation_config, "eos_token_id", None)):
            if isinstance(value, int):
                ids.add(value)
            elif value:
                ids.update(value)
        return ids

    # ---- prompts -----------------------------------------------------------------------

    def encode(self, messages: list[Message], continue_last: bool = False, reply: bool = True) -> list[int]:
        """Token ids of ``messages`` through the chat template, ready for the reply.

        ``continue_last`` leaves the last (assistant) message open so the model goes on with it;
        ``reply=False`` leaves out the generation prompt (a prefix of the next turn's prompt).
        """
        clean = [{"role": m["role"], "content": m["content"]} for m in messages]
        ids = self.tokenizer.apply_chat_template(
            clean,
            add_generation_prompt=reply and not continue_last,
            continue_final_message=continue_last,
            tokenize=True,
            return_dict=False,
        )
        if isinstance(ids, dict) or hasattr(ids, "input_ids"):
            ids = ids["input_ids"]
        return list(ids)

    def fit(self, messages: list[Message], max_new_tokens: int, continue_last: bool = False) -> list[int]:
        """Encode, dropping the fewest oldest turns (never the system prompt, never the last turn) so that
        prompt + reply fit the budget. The count is found by bisection: each try encodes the whole
        conversation, and a long chat dropped a turn at a time was encoded once per turn."""
        budget = self.options.max_context_tokens - max_new_tokens
        first = 1 if messages and messages[0]["role"] == "system" else 0

        def dropping(k: int) -> list[int]:
            return self.encode([*messages[:first], *messages[first + k:]], continue_last)

        ids = dropping(0)
        if len(ids) <= budget:
            return ids
        too_long, fits = 0, max(0, len(messages) - first - 1)
        ids = dropping(fits)
        if len(ids) > budget:
            raise PromptTooLong(
                f"The prompt is {len(ids)} tokens; with {max_new_tokens} new tokens it exceeds the "
                f"{self.options.max_context_tokens}-token budget. Shorten the character or the message."
            )
        while fits - too_long > 1:
            middle = (too_long + fits) // 2
            tried = dropping(middle)
            if len(tried) <= budget:
                fits, ids = middle, tried
            else:
                too_long = middle
        return ids

    # ---- adapters ----------------------------------------------------------------------

    def add_adapter(self, name: str, path: str | Path) -> None:
        """Register an adapter folder under ``name`` (trusted callers: training, tests)."""
        path = Path(path).resolve()
        if not (path / "adapter_config.json").is_file():
            raise AdapterError(f"{path} holds no adapter_config.json")
        if not (path / "adapter_model.safetensors").is_file():
            raise AdapterError(f"{path} holds no adapter_model.safetensors (only safetensors adapters are loaded)")
        self._adapters[name] = path

    def available_adapters(self) -> list[str]:
        """Names of adapters known to the engine or found in the adapters folder."""
        names = set(self._adapters)
        if self.adapters_dir and self.adapters_dir.is_dir():
            for config in self.adapters_dir.glob("*/adapter/adapter_config.json"):
                names.add(config.parent.parent.name)
        return sorted(names)

    def _adapter_path(self, name: str) -> Path:
        if name in self._adapters:
            return self._adapters[name]
        if not self.adapters_dir:
            raise AdapterError(f"unknown adapter {name!r}")
        try:
            path = inside(self.adapters_dir, name, "adapter")
        except UnsafePathError as err:
            raise AdapterError(f"invalid adapter name {name!r}: {err}") from None
        if path.is_dir():
            self.add_adapter(name, path)
        if name not in self._adapters:
            raise AdapterError(f"unknown adapter {name!r}; available: {', '.join(self.available_adapters()) or 'none'}")
        return self._adapters[name]

    @property
    def has_adapters(self) -> bool:
        return self.model is not self.base_model

    def _ensure_loaded(self, name: str) -> None:
        """Load an adapter into the shared PEFT model (once); called with the lock held."""
        from peft import PeftModel  # imported on first use: it adds seconds to every start

        if name in self._loaded:
            return
        path = self._adapter_path(name)
        unpack_cpu_4bit(self.base_model)  # no forward runs between this and PEFT's state_dict(): we hold the lock
        self._lora_layer_list = None  # this load adds LoRA layers (or, failing, may leave some)
        try:
            if self.has_adapters:
                self.model.load_adapter(str(path), adapter_name=name, is_trainable=False)
                self._active_adapter = UNKNOWN  # new LoRA layers may be on: the next pass sets every layer
            else:
                self.model = PeftModel.from_pretrained(self.base_model, str(path), adapter_name=name,
                                                       is_trainable=False).eval()
                self._active_adapter = name
        except Exception as err:  # a wrong base model or a broken file: say which adapter
            if self.has_adapters and name in self.model.peft_config:  # PEFT made its layers before the weights failed
                self.model.delete_adapter(name)
                self._active_adapter = UNKNOWN
            raise AdapterError(f"adapter {name!r} could not be loaded: {err}") from err
        self._loaded.add(name)

    def on_model_thread(self, fn):
        """``fn()`` run on the thread that runs the model's passes, its result returned here: every pass, and
        tensor work beside them (copies of cached prompts, memory search), runs there (see ``batching`` for why)."""
        return self.scheduler.call(fn)

    def check_adapter(self, name: str | None) -> None:
        """Raise ``AdapterError`` now (before streaming) if ``name`` cannot be used. A loaded adapter needs no
        trip to the model's thread, which would wait for the pass running there (a classroom's adapter visitors
        each waited one more read pass for their first token)."""
        if name and name not in self._loaded:
            self.on_model_thread(functools.partial(self._load_adapter, name))

    def _load_adapter(self, name: str) -> None:
        with self._lock:
            self._ensure_loaded(name)

    def _activate(self, adapter: str | tuple[str, ...] | None) -> None:
        """Make ``adapter`` the active one (several at once for a mixed batch), or turn the adapter layers off
        for ``None``; called with the lock held. The state stays between passes: switching walks every LoRA layer
        (tens of ms), so a run of passes of one adapter, or of the base model, pays it once (PEFT's
        ``disable_adapter()`` context pays it every pass)."""
        if adapter == self._active_adapter:
            return
        if adapter is None:
            self.model.base_model.disable_adapter_layers()
        else:
            if self._active_adapter is None or self._active_adapter is UNKNOWN:
                self.model.base_model.enable_adapter_layers()
            if isinstance(adapter, tuple):  # PeftModel.set_adapter takes one name; its LoraModel takes several
                self.model.base_model.set_adapter(list(adapter), inference_mode=True)
            else:
                self.model.set_adapter(adapter)
        self._active_adapter = adapter

    def _forward(self, input_ids: torch.Tensor, cache, adapter: str | None | list[str | None],
                 last: list[int] | None = None, threads: int | None = None, **extra):
        """One forward pass with ``adapter`` active, or one adapter a row (a list; ``None`` is the base model),
        on ``threads`` CPU threads (``None``: all of the engine's). The lock keeps the adapter choice to this pass.

        Returns the logits ``[batch, vocab]`` of the last position, or of position ``last[i]`` in row ``i`` (rows
        padded on the right), and the cache. It runs on the scheduler's thread, whichever thread asks (see
        ``batching``)."""
        return self.on_model_thread(functools.partial(self._pass, input_ids, cache, adapter, last, threads, **extra))

    def _pass(self, input_ids: torch.Tensor, cache, adapter: str | None | list[str | None],
              last: list[int] | None = None, threads: int | None = None, **extra):
        input_ids = input_ids.to(self.device)
        extra = {k: v.to(self.device) for k, v in extra.items()}
        rows = None
        if isinstance(adapter, list):
            if len(set(adapter)) == 1:
                adapter = adapter[0]
            else:  # rows of several adapters: all of them active, each scaled to its own rows (mixed_adapters)
                rows, names = adapter, tuple(sorted({name for name in adapter if name}))
                adapter = names[0] if len(names) == 1 else names  # one name: the state a pass of that adapter leaves
        with self._lock, torch.inference_mode(), cpu_threads(threads or self.threads):
            for name in ((adapter,) if isinstance(adapter, str) else adapter or ()):
                self._ensure_loaded(name)
            if self.has_adapters:
                self._activate(adapter)
            with row_scales(self._lora_layers() if rows else [], rows or [], self.device):
                kept = torch.tensor(sorted(set(last))) if last else None  # the output layer runs on these only
                out = self.model(input_ids=input_ids, past_key_values=cache, use_cache=True,
                                 logits_to_keep=1 if kept is None else kept.to(self.device), **extra)
        logits = out.logits.float().cpu()
        if kept is None:
            return logits[:, -1], out.past_key_values
        return logits[torch.arange(len(last)), torch.searchsorted(kept, torch.tensor(last))], out.past_key_values

    def _lora_layers(self) -> list:
        """The PEFT model's LoRA layers, listed again after an adapter load adds some."""
        if self._lora_layer_list is None:
            self._lora_layer_list = lora_layers(self.model)
        return self._lora_layer_list

    def _read(self, ids: list[int], cache, adapter: str | None):
        """Feed ``ids`` in chunks, so a long prompt lets other sessions' tokens through between chunks."""
        for start in range(0, len(ids), self.prefill_chunk):
            logits, cache = self._forward(torch.tensor([ids[start:start + self.prefill_chunk]]), cache, adapter)
        return logits, cache

    def prefill(self, messages: list[Message], adapter: str | None = None) -> int:
        """Read ``messages`` ahead into the prefix cache (e.g. a system prompt and greeting when a chat
        opens), so that the first reply only reads the new message. Returns the tokens read: none where the
        prefix cache keeps nothing (``prefix_cache_entries`` 0), since what is read would be thrown away."""
        adapter = adapter or None
        self.check_adapter(adapter)
        if self.prefix_cache.capacity <= 0:
            return 0
        ids = self.encode(messages, reply=False)[: self.options.max_context_tokens]
        cache, reused = self.on_model_thread(functools.partial(self.prefix_cache.take, adapter, ids))
        cache = cache if cache is not None else new_cache(self.base_model.config)
        if reused < len(ids):
            _, cache = self._read(ids[reused:], cache, adapter)
        self.prefix_cache.put(adapter, ids, cache)
        return len(ids) - reused

    def hidden_states(self, texts: list[str], depth: float, batch: int = 16, then: Callable | None = None):
        """The base model's hidden state after the last token of each text, at ``depth`` (0-1) of its layers,
        as ``[len(texts), hidden]`` floats on the CPU: the raw material of sentence embeddings (``memory``).
        With ``then``, ``then(states)`` instead, run on the model's thread (tensor work on the states, such as a
        search, without one more trip there).

        Callers at the same time share passes: the one whose turn it is embeds every text waiting, in passes
        of ``batch``. A classroom's messages arrive together, and one at a time their embeddings held the
        last visitor's first token up by the sum of them (8 messages: about 1.5 s on 2 AVX2 cores)."""
        job = _Embedding(list(texts), max(1, round(depth * self.base_model.config.num_hidden_layers)), then)
        with self._embeddings_lock:
            self._embeddings.append(job)
        with self._embedding_turn:
            if job.result is None and job.error is None:  # not embedded by the caller before
                with self._embeddings_lock:
                    jobs, self._embeddings = self._embeddings, []
                for layer in {j.layer for j in jobs}:
                    self.on_model_thread(functools.partial(self._embed, [j for j in jobs if j.layer == layer], layer,
                                                           batch))
        if job.error is not None:
            raise job.error
        return job.result

    def _embed(self, jobs: list[_Embedding], layer: int, batch: int) -> None:
        """Fill in the ``result`` (or ``error``) of ``jobs``, whose texts are all embedded at ``layer``."""
        texts = [text for job in jobs for text in job.texts]
        out = []
        try:
            for start in range(0, len(texts), batch):
                ids = [self.tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts[start:start + batch]]
                width = max(map(len, ids))
                # Left padding puts every text's last token in the last column; positions count real tokens only.
                input_ids = torch.tensor([[0] * (width - len(i)) + i for i in ids])
                mask = torch.tensor([[0] * (width - len(i)) + [1] * len(i) for i in ids])
                positions = (mask.cumsum(1) - 1).clamp(min=0)
                with self._lock, torch.inference_mode(), cpu_threads(self.threads):
                    if self.has_adapters:
                        self._activate(None)
                    states = self.model(input_ids=input_ids.to(self.device), attention_mask=mask.to(self.device),
                                        position_ids=positions.to(self.device), output_hidden_states=True,
                                        use_cache=False, logits_to_keep=1).hidden_states[layer]
                out.append(states[:, -1].float().cpu())
        except Exception as err:  # noqa: BLE001 - every caller whose texts were in the failed pass gets it
            for job in jobs:
                job.error = err
            return
        vectors, start = torch.cat(out), 0
        for job in jobs:
            job.result, start = vectors[start:start + len(job.texts)], start + len(job.texts)
            if job.then is not None:
                try:
                    job.result = job.then(job.result)
                except Exception as err:  # noqa: BLE001 - it belongs to that caller, who raises it
                    job.result, job.error = None, err

    # ---- generation --------------------------------------------------------------------

    def stream(self, messages: list[Message], sampling: SamplingOptions | None = None,
               adapter: str | None = None, stop: threading.Event | None = None,
               continue_last: bool = False, stats: dict | None = None) -> Iterator[str]:
        """Yield the reply to ``messages`` piece by piece.

        ``stop`` (a ``threading.Event``) ends generation before the next token. ``stats``, if
        given, is filled with prompt_tokens, reused_tokens, new_tokens, first_token_s and decode_s.
        """
        sampling = sampling or SamplingOptions()
        adapter = adapter or None
        prompt = self.fit(messages, sampling.max_new_tokens, continue_last)
        self.check_adapter(adapter)
        return self._decode(prompt, sampling, adapter, stop, {} if stats is None else stats)

    @staticmethod
    def _sampler(sampling: SamplingOptions):
        """``pick(context [B, L], logits [B, V]) -> tokens [B]`` for these options, with its own seeded RNG."""
        seed = sampling.seed if sampling.seed is not None else random.randrange(2**31)
        generator = torch.Generator().manual_seed(seed)
        processors = LogitsProcessorList()
        if sampling.repetition_penalty != 1.0:
            processors.append(RepetitionPenaltyLogitsProcessor(sampling.repetition_penalty))
        greedy = sampling.temperature == 0
        if not greedy:
            processors.append(TemperatureLogitsWarper(sampling.temperature))
            if sampling.top_p < 1.0:
                processors.append(TopPLogitsWarper(sampling.top_p))
            if sampling.min_p > 0:
                processors.append(MinPLogitsWarper(sampling.min_p))

        def pick(context: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
            scores = processors(context, logits)
            if greedy:
                return scores.argmax(-1)
            return torch.multinomial(torch.softmax(scores, dim=-1), 1, generator=generator)[:, 0]

        return pick

    def _request(self, prompt: list[int], sampling: SamplingOptions, adapter: str | None,
                 stop: threading.Event | None, keep: bool = True, start=None) -> Request:
        """A request for the scheduler, starting from the prefix cache's best match (or ``start``: a cache
        and the number of prompt tokens it holds), which the scheduler copies."""
        cache, reused = start if start is not None else self.prefix_cache.find(adapter, prompt)
        borrowed = cache is not None
        cache = cache if borrowed else new_cache(self.base_model.config)
        return Request(prompt, self._sampler(sampling), adapter, sampling.max_new_tokens, stop, cache,
                       list(prompt[:reused]), keep, borrowed=borrowed)

    def _decode(self, prompt: list[int], sampling: SamplingOptions, adapter: str | None,
                stop: threading.Event | None, stats: dict) -> Iterator[str]:
        started = time.perf_counter()
        request = self._request(prompt, sampling, adapter, stop)
        stats.update(prompt_tokens=len(prompt), reused_tokens=len(request.fed), new_tokens=0, first_token_s=None,
                     decode_s=0.0)
        self.scheduler.submit(request)
        generated: list[int] = []
        emitted = ""
        try:
            while (token := wait(request)) is not END:
                if stop is not None and stop.is_set():  # the scheduler may be a few tokens ahead of us
                    break
                generated.append(token)
                now = time.perf_counter() - started
                if stats["first_token_s"] is None:
                    stats["first_token_s"] = now
                stats["new_tokens"], stats["decode_s"] = len(generated), now - stats["first_token_s"]
                text = self.tokenizer.decode(generated, skip_special_tokens=True)
                if text.endswith("\ufffd"):  # half of a multi-byte character: wait for the rest
                    continue
                if len(text) > len(emitted):
                    piece, emitted = text[len(emitted):], text
                    yield piece
        finally:
            # Also runs when the consumer stops iterating (Gradio's Stop closes the generator).
            request.cancelled = True

    def generate(self, messages: list[Message], sampling: SamplingOptions | None = None,
                 adapter: str | None = None, stop: threading.Event | None = None, stats: dict | None = None) -> str:
        """The whole reply, as ``generate_batch`` gives one: a conversation ending with an assistant message is
        continued (the reply excludes that start)."""
        return "".join(self.stream(messages, sampling, adapter, stop, continue_last=messages[-1]["role"] == "assistant",
                                   stats=stats))

    def generate_batch(self, conversations: list[list[Message]], sampling: SamplingOptions | None = None,
                       adapter: str | None = None, stop: threading.Event | None = None,
                       stats: dict | None = None, max_rows: int | None = None,
                       progress: Callable[[int], None] | None = None) -> list[str]:
        """Replies to several conversations at once, through the scheduler like every other request, so they
        share each decode step with one another and with any chat running meanwhile. A conversation ending
        with an assistant message is continued (the reply excludes that start).

        At most ``max_rows`` of them decode at once (all, when None, within the scheduler's own limit): the
        next one starts as soon as one ends, so a short reply does not leave its row idle until the longest of
        a fixed group ends (a 26-question interview, 8 at a time, in 4-bit on one thread: 100 s in fixed
        groups, 63 s this way). ``progress(done)`` is told in the caller's thread as each reply ends. Once
        ``stop`` is set no more start, and the list holds the replies of those begun, in order.

        The prefix all prompts share (a system prompt, an instruction) is read once and its KV cache copied to
        every request. With a seed, conversation ``i`` samples with ``seed + i``: the first reply is the one
        ``generate`` gives, and equal prompts still get different replies."""
        if not conversations:
            return []
        sampling = sampling or SamplingOptions()
        adapter = adapter or None
        self.check_adapter(adapter)
        started = time.perf_counter()
        prompts = [self.fit(messages, sampling.max_new_tokens, continue_last=messages[-1]["role"] == "assistant")
                   for messages in conversations]
        shared = min(common_prefix_of(prompts), min(map(len, prompts)) - 1)  # every request keeps a token to read
        prefix = None
        if shared >= SHARED_PREFIX_MIN:
            _, prefix = self._read(prompts[0][:shared], new_cache(self.base_model.config), adapter)
        else:
            shared = 0
        ended: queue.SimpleQueue[Request] = queue.SimpleQueue()
        requests = []
        for i, prompt in enumerate(prompts):
            row_sampling = sampling if sampling.seed is None else dataclasses.replace(
                sampling, seed=(sampling.seed + i) % 2**31)
            start = (prefix, shared) if prefix is not None else (None, 0)
            request = self._request(prompt, row_sampling, adapter, stop, keep=False, start=start)
            request.ended_to = ended
            requests.append(request)
        begun = min(len(requests), max_rows or len(requests))
        for request in requests[:begun]:
            self.scheduler.submit(request)
        generated = []
        try:
            done = 0
            while done < begun:
                ended.get()
                done += 1
                if progress is not None:
                    progress(done)
                if begun < len(requests) and not (stop is not None and stop.is_set()):
                    self.scheduler.submit(requests[begun])
                    begun += 1
            for request in requests[:begun]:
                tokens = []
                while (token := wait(request)) is not END:
                    tokens.append(token)
                generated.append(tokens)
        finally:
            for request in requests:
                request.cancelled = True
        if stats is not None:
            stats.update(prompt_tokens=sum(map(len, prompts[:begun])), shared_tokens=shared,
                         new_tokens=sum(map(len, generated)), seconds=time.perf_counter() - started)
        return [self.tokenizer.decode(g, skip_special_tokens=True) for g in generated]
