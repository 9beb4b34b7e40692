"""Who writes the experiences (and, for the interview, judges the answers): the loaded engine
(batched) or any OpenAI-compatible chat endpoint.

Both take the same prompts and answer ``complete(conversations) -> replies``.
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx

from engine.engine import Engine
from engine.options import SamplingOptions


class GeneratorError(ConnectionError):
    """The endpoint could not answer (after retries): a connection-level error, so every command
    line reports it in one line like any other unreachable resource."""


class LocalGenerator:
    """The engine's model, several prompts per forward pass."""

    def __init__(self, engine: Engine, batch_size: int = 8):
        self.engine, self.batch_size = engine, batch_size
        self.name = f"local:{engine.name}"

    def complete(self, conversations: list[list[dict]], sampling: SamplingOptions,
                 stop: threading.Event | None = None) -> list[str]:
        """Replies; a conversation ending in an assistant message is continued from it (prefill). ``batch_size``
        decode at once, the next beginning as one ends; once ``stop`` is set, the replies of those begun."""
        continued = self.engine.generate_batch(conversations, sampling, stop=stop, max_rows=self.batch_size)
        return [prefill(c) + text for c, text in zip(conversations, continued)]


def prefill(conversation: list[dict]) -> str:
    """The start of the answer written for the model (a trailing assistant message), or nothing."""
    return conversation[-1]["content"] if conversation and conversation[-1]["role"] == "assistant" else ""


@dataclass
class OpenAIGenerator:
    """An OpenAI-compatible ``/chat/completions`` endpoint (vLLM, TGI, llama.cpp server, OpenAI, …)."""

    base_url: str
    model: str
    api_key_env: str = "OPENAI_API_KEY"
    max_in_flight: int = 4
    retries: int = 3
    timeout_s: float = 120.0
    backoff_s: float = 0.5

    @property
    def name(self) -> str:
        return f"openai:{self.model}@{self.base_url}"

    def _one(self, client: httpx.Client, messages: list[dict], sampling: SamplingOptions,
             stop: threading.Event | None) -> str:
        if prefill(messages):  # not every server continues a prefilled answer; strong models need no prefill
            messages = messages[:-1]
        body = {"model": self.model, "messages": messages, "temperature": sampling.temperature,
                "top_p": sampling.top_p, "max_tokens": sampling.max_new_tokens}
        if sampling.seed is not None:
            body["seed"] = sampling.seed
        last = "no attempt"
        for attempt in range(self.retries + 1):
            if stop is not None and stop.is_set():
                return ""
            try:
                response = client.post("/chat/completions", json=body)
                if response.status_code == 200:
                    return response.json()["choices"][0]["message"]["content"] or ""
                last = f"HTTP {response.status_code}: {response.text[:200]}"
                if response.status_code not in (408, 409, 429) and response.status_code < 500:
                    break  # a client error will not go away by retrying
            except (httpx.HTTPError, KeyError, IndexError, ValueError) as err:
                last = f"{type(err).__name__}: {err}"
            time.sleep(self.backoff_s * 2**attempt)
        raise GeneratorError(f"{self.base_url} failed after {self.retries + 1} attempts: {last}")

    def complete(self, conversations: list[list[dict]], sampling: SamplingOptions,
                 stop: threading.Event | None = None) -> list[str]:
        key = os.environ.get(self.api_key_env, "")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        with httpx.Client(base_url=self.base_url.rstrip("/"), headers=headers, timeout=self.timeout_s) as client, \
                ThreadPoolExecutor(max_workers=max(1, self.max_in_flight)) as pool:
            futures = [pool.submit(self._one, client, messages, sampling, stop) for messages in conversations]
            return [f.result() for f in futures]
