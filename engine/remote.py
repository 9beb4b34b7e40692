"""Past one machine: the model on a serving engine built for crowds (vLLM, TGI, a llama.cpp server, or
another instance of this app), reached through its OpenAI-compatible API.

``RemoteEngine`` answers what the app asks of ``Engine`` (``stream``, ``generate``, ``generate_batch``,
``available_adapters``, …), so Chat, the two-character scene, experience generation and interviews
run unchanged. What makes a character stays here: the meta prompt, the scene, the history and the
turn's ending are built by this app and sent as plain messages. An adapter is a model name on the
server: vLLM lists each ``--lora-modules name=path`` as a model whose ``parent`` is the base model;
this app lists ``<base>@<adapter>``.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed

import httpx

from engine.engine import AdapterError, Message
from engine.options import EngineOptions, SamplingOptions

ADAPTER_MARK = "@"  # how this app's /v1/models names a base model with an adapter


class EngineUnreachable(ConnectionError):
    """The remote engine did not answer, or answered with an error."""


class OnceMoreOnDrop(httpx.BaseTransport):
    """Sends a request once more when the server closed the pooled connection as the request went out: no
    response came, so it never reached the server, and it goes again on a new connection, as the openai client
    does. Every request of the engine (the model list too) can meet that race."""

    def __init__(self, inner: httpx.BaseTransport):
        self.inner = inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return self.inner.handle_request(request)
        except httpx.RemoteProtocolError:
            return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


class RemoteEngine:
    precision, precision_reason = "remote", "served elsewhere"
    adapters_dir = None
    tokenizer = None  # the server tokenizes; the dataset's token count is left out

    def __init__(self, options: EngineOptions, timeout_s: float = 300.0, max_in_flight: int = 8):
        self.options = options
        self.url = options.engine_url.rstrip("/")
        key = os.environ.get(options.engine_api_key_env, "")
        # Idle connections are dropped before uvicorn's 5 s keep-alive (vLLM's, this app's) would close them under
        # a request: "Server disconnected without sending a response" (and see OnceMoreOnDrop).
        transport = OnceMoreOnDrop(httpx.HTTPTransport(limits=httpx.Limits(keepalive_expiry=2.0)))
        self.client = httpx.Client(base_url=self.url, timeout=timeout_s, transport=transport,
                                   headers={"Authorization": f"Bearer {key}"} if key else {})
        self.max_in_flight = max_in_flight
        self._served: dict[str, str] = {}
        started = time.perf_counter()
        models = self._models()
        if not models:
            raise EngineUnreachable(f"the engine at {self.url} lists no models")
        self.base = options.engine_model or models[0]["id"]
        if self.base not in {m["id"] for m in models}:
            raise EngineUnreachable(f"the engine at {self.url} has no model {self.base!r}; it has "
                                    f"{', '.join(m['id'] for m in models[:10])}")
        self.load_seconds = time.perf_counter() - started

    @property
    def name(self) -> str:
        return self.base

    def usage(self) -> dict:
        return {"model_mb": 0.0, "device_memory": f"served by {self.url}"}

    # ---- adapters: model names on the server --------------------------------------------------

    def _models(self) -> list[dict]:
        try:
            response = self.client.get("/models")
            response.raise_for_status()
            return response.json()["data"]
        except (httpx.HTTPError, KeyError, ValueError) as err:
            raise EngineUnreachable(f"the engine at {self.url} did not list its models: {err}") from None

    def _adapter_models(self) -> dict[str, str]:
        """Adapter name → the model name that serves it, as the server lists them now (kept in ``_served``)."""
        found = {}
        for model in self._models():
            model_id = model["id"]
            if model.get("parent") == self.base and model_id != self.base:
                found[model_id] = model_id  # vLLM: --lora-modules name=path
            elif model_id.startswith(self.base + ADAPTER_MARK):
                found[model_id[len(self.base) + 1:]] = model_id  # this app
        self._served = found
        return found

    def available_adapters(self) -> list[str]:
        return sorted(self._adapter_models())

    def _model_for(self, adapter: str | None) -> str:
        if not adapter:
            return self.base
        if adapter in self._served:  # known: no listing on every turn; the server's own error if it went away
            return self._served[adapter]
        served = self._adapter_models()
        if adapter not in served:
            raise AdapterError(f"unknown adapter {adapter!r}; the engine at {self.url} serves: "
                               f"{', '.join(sorted(served)) or 'none'}")
        return served[adapter]

    def check_adapter(self, name: str | None) -> None:
        self._model_for(name)

    def add_adapter(self, name: str, path) -> None:
        raise AdapterError(f"a remote engine serves adapters by name: load {path} on the server "
                           "(vLLM: --enable-lora --lora-modules name=path)")

    def prefill(self, messages: list[Message], adapter: str | None = None) -> int:
        """Nothing to read ahead here: serving engines keep their own prefix cache (vLLM, llama.cpp)."""
        return 0

    # ---- generation ----------------------------------------------------------------------------

    def _body(self, messages: list[Message], sampling: SamplingOptions, adapter: str | None, stream: bool) -> dict:
        body = {"model": self._model_for(adapter), "stream": stream, "max_tokens": sampling.max_new_tokens,
                "temperature": sampling.temperature, "top_p": sampling.top_p,
                "messages": [{"role": m["role"], "content": m["content"]} for m in messages]}
        if sampling.repetition_penalty != 1.0:
            body["repetition_penalty"] = sampling.repetition_penalty  # vLLM and this app take it
        if sampling.min_p > 0:
            body["min_p"] = sampling.min_p  # as do vLLM and llama.cpp's server
        if sampling.seed is not None:
            body["seed"] = sampling.seed
        if stream:
            body["stream_options"] = {"include_usage": True}
        return body

    @staticmethod
    def _error(response: httpx.Response) -> Exception:
        try:
            message = response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = response.text[:300]
        kind = ValueError if 400 <= response.status_code < 500 else EngineUnreachable
        return kind(f"the engine answered {response.status_code}: {message}")

    def stream(self, messages: list[Message], sampling: SamplingOptions | None = None,
               adapter: str | None = None, stop: threading.Event | None = None,
               continue_last: bool = False, stats: dict | None = None) -> Iterator[str]:
        if continue_last:
            raise ValueError("continuing a reply needs the local engine; a remote engine only answers new turns")
        body = self._body(messages, sampling or SamplingOptions(), adapter or None, stream=True)
        return self._events(body, stop, {} if stats is None else stats)

    def _events(self, body: dict, stop: threading.Event | None, stats: dict) -> Iterator[str]:
        started = time.perf_counter()
        stats.update(prompt_tokens=0, reused_tokens=0, new_tokens=0, first_token_s=None, decode_s=0.0)
        try:
            with self.client.stream("POST", "/chat/completions", json=body) as response:
                if response.status_code != 200:
                    response.read()
                    raise self._error(response)
                for line in response.iter_lines():
                    if stop is not None and stop.is_set():
                        break  # closing the response ends the request; the server stops decoding
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    chunk = json.loads(line[len("data: "):])
                    if chunk.get("usage"):
                        stats["prompt_tokens"] = chunk["usage"].get("prompt_tokens", 0)
                        stats["new_tokens"] = chunk["usage"].get("completion_tokens", 0)
                    piece = (chunk.get("choices") or [{}])[0].get("delta", {}).get("content")
                    if piece:
                        stats["new_tokens"] += 1  # about a token a chunk; the usage chunk at the end is exact
                        now = time.perf_counter() - started
                        if stats["first_token_s"] is None:
                            stats["first_token_s"] = now
                        stats["decode_s"] = now - stats["first_token_s"]
                        yield piece
        except httpx.HTTPError as err:
            raise EngineUnreachable(f"the engine at {self.url} failed: {err}") from None

    def generate(self, messages: list[Message], sampling: SamplingOptions | None = None,
                 adapter: str | None = None, stop: threading.Event | None = None, stats: dict | None = None) -> str:
        return "".join(self.stream(messages, sampling, adapter, stop, stats=stats))

    def generate_batch(self, conversations: list[list[Message]], sampling: SamplingOptions | None = None,
                       adapter: str | None = None, stop: threading.Event | None = None,
                       stats: dict | None = None, max_rows: int | None = None,
                       progress: Callable[[int], None] | None = None) -> list[str]:
        """Several requests in flight at once (``max_in_flight``, or ``max_rows`` if fewer): the server batches
        them (continuous batching in vLLM and TGI). A conversation ending with an assistant message is answered
        without it, since the Chat Completions API cannot continue a reply. ``progress`` and ``stop`` as in
        ``Engine.generate_batch``."""
        self.check_adapter(adapter)
        started = time.perf_counter()
        each = [{} for _ in conversations]

        def answer(i: int) -> str | None:
            if stop is not None and stop.is_set():
                return None
            conversation = conversations[i]
            start = conversation[-1]["content"] if conversation and conversation[-1]["role"] == "assistant" else ""
            reply = self.generate(conversation[:-1] if start else conversation, sampling, adapter, stop, each[i])
            return reply[len(start):] if start and reply.startswith(start) else reply  # as the engine: the rest

        workers = max(1, min(self.max_in_flight, max_rows or self.max_in_flight, len(conversations)))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(answer, i) for i in range(len(conversations))]
            for done, _ in enumerate(as_completed(futures), 1):
                if progress is not None:
                    progress(done)
        replies = [future.result() for future in futures]
        if None in replies:  # stopped: the ones begun (taken in order)
            replies = replies[:replies.index(None)]
        if stats is not None:
            stats.update(prompt_tokens=sum(s.get("prompt_tokens", 0) for s in each), shared_tokens=0,
                         new_tokens=sum(s.get("new_tokens", 0) for s in each), seconds=time.perf_counter() - started)
        return replies
