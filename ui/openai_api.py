"""An OpenAI-compatible endpoint on the app's own server, for SillyTavern, the ``openai`` client and
any other front end that speaks the Chat Completions API.

- ``GET /v1/models``: the base model, every character, and each with the adapters trained for it
  (``"Ludwig van Beethoven@<run id>"``); the base model with any adapter too.
- ``POST /v1/chat/completions``: whole or streamed (server-sent events). A character model brings its
  own meta prompt and scene (the client's system messages are not used); the base model takes the
  client's messages as they are. The sampling options that map onto the engine's are honoured:
  ``temperature``, ``top_p``, ``max_tokens`` / ``max_completion_tokens``, ``seed``, ``stop``, and
  ``repetition_penalty``, ``min_p`` and ``scene`` as extensions (vLLM takes the first two too), and
  ``memory`` (default true): a character brings the memories nearest the last message into the prompt.

Requests run on the same engine as the Gradio visitors, in the same continuous batch. With
``SIMULACRA_API_KEY`` set, every request needs ``Authorization: Bearer <key>``. Every error is an
OpenAI error object (``{"error": {"message", "type", "param", "code"}}``).
"""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse

from characters.meta_prompt import DEFAULT_USER
from characters.scenes import scene_from
from characters.store import CharacterNotFound, CharacterStore
from characters.schema import Character
from engine import AdapterError, Engine, PromptTooLong, SamplingOptions
from engine.messages import MAX_HISTORY_MESSAGES, conversation, text_of
from engine.options import CHAT_DEFAULTS, chat_defaults
from engine.shipped import shipped_adapters
from engine.remote import ADAPTER_MARK  # "<character or base model>@<adapter>", as a remote engine reads it
from engine.roleplay import client_turn
from engine.stop_strings import cut_at_stops
from training.runs import read_options
from ui.errors import message_of

API_KEY_ENV = "SIMULACRA_API_KEY"
MAX_BODY_BYTES = 2_000_000  # 400 messages of 8,000 characters fit, with room for JSON
MAX_STOPS = 4  # as OpenAI


class APIError(Exception):
    """An error the client gets as an OpenAI error object."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.kind, self.param, self.code = status, message, kind, param, code

    def response(self) -> JSONResponse:
        return JSONResponse({"error": {"message": self.message, "type": self.kind, "param": self.param,
                                       "code": self.code}}, status_code=self.status)


@dataclass
class Target:
    """What a model id names: a character (or the bare base model) and an adapter (or none)."""

    character: Character | None
    adapter: str | None


@dataclass
class CompletionRequest:
    """A checked ``/v1/chat/completions`` body."""

    model: str
    messages: list[dict]
    sampling: SamplingOptions
    stream: bool = False
    include_usage: bool = False
    stop: list[str] = field(default_factory=list)
    scene: object = None
    memory: bool = True
    given: frozenset[str] = frozenset()  # the sampling options the client set; the others take chat defaults

    def sampling_for(self, adapter: str | None) -> SamplingOptions:
        """The request's sampling options for a reply through ``adapter`` (or none): where the client set none,
        the chat defaults of a trained or an untrained character (``engine.options.chat_defaults``)."""
        defaults = chat_defaults(bool(adapter))
        return replace(self.sampling, **{k: v for k, v in defaults.items() if k not in self.given})

    @classmethod
    def parse(cls, raw: bytes) -> "CompletionRequest":
        if len(raw) > MAX_BODY_BYTES:
            raise APIError(413, f"the request body is {len(raw):,} bytes; the limit is {MAX_BODY_BYTES:,}")
        try:
            body = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise APIError(400, f"the request body is not valid JSON: {err}") from None
        if not isinstance(body, dict):
            raise APIError(400, "the request body must be a JSON object")
        model = body.get("model")
        if not isinstance(model, str) or not model.strip():
            raise APIError(400, "model must be a model id (see GET /v1/models)", param="model")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise APIError(400, "messages must be a non-empty list", param="messages")
        if len(messages) > MAX_HISTORY_MESSAGES:
            raise APIError(400, f"messages has {len(messages)} entries; the limit is {MAX_HISTORY_MESSAGES}",
                           param="messages")
        if body.get("n", 1) != 1:
            raise APIError(400, "only n=1 is supported", param="n")
        for name in ("frequency_penalty", "presence_penalty"):
            if body.get(name) not in (None, 0, 0.0):
                raise APIError(400, f"{name} is not supported; use repetition_penalty (1.0 = none)", param=name)
        stop = body.get("stop")
        stops = [stop] if isinstance(stop, str) else stop if stop is not None else []
        if not isinstance(stops, list) or len(stops) > MAX_STOPS or not all(isinstance(s, str) and len(s) <= 200
                                                                              for s in stops):
            raise APIError(400, f"stop must be a string or a list of at most {MAX_STOPS} strings", param="stop")
        stream = body.get("stream", False)
        options = body.get("stream_options") or {}
        if not isinstance(stream, bool) or not isinstance(options, dict):
            raise APIError(400, "stream must be true or false, and stream_options an object", param="stream")
        values = {"temperature": body.get("temperature"), "top_p": body.get("top_p"), "min_p": body.get("min_p"),
                  "max_new_tokens": body.get("max_completion_tokens", body.get("max_tokens")),
                  "seed": body.get("seed"), "repetition_penalty": body.get("repetition_penalty")}
        try:
            sampling = SamplingOptions.from_values(CHAT_DEFAULTS, **values)  # checked here: a 400 before any work
        except ValueError as err:
            raise APIError(400, str(err).replace("max_new_tokens", "max_tokens")) from None
        memory = body.get("memory", True)
        if not isinstance(memory, bool):
            raise APIError(400, "memory must be true or false", param="memory")
        return cls(model.strip(), messages, sampling, stream, bool(options.get("include_usage")), stops,
                   body.get("scene"), memory, frozenset(SamplingOptions.given(values)))


class OpenAIAPI:
    """The routes' behaviour, in methods a test can call without a server."""

    def __init__(self, engine: Engine, characters: CharacterStore):
        self.engine, self.characters = engine, characters
        self.created = int(time.time())

    # ---- models ---------------------------------------------------------------------------------

    def adapter_characters(self) -> dict[str, str | None]:
        """Each adapter the engine can load, with the character its run trained (None when unknown)."""
        owners = {}
        shipped = shipped_adapters(getattr(self.engine, "source", ""))
        for adapter in self.engine.available_adapters():
            owners[adapter] = None
            folder = self.engine.adapters_dir / adapter if self.engine.adapters_dir else None
            if adapter in shipped:  # a trained character that came with the app says whom it plays
                owners[adapter] = json.loads((shipped[adapter] / "simulacra.json").read_text()).get("character")
            if folder is not None and (folder / "options.json").is_file():
                try:
                    owners[adapter] = read_options(folder).get("character")
                except (OSError, ValueError):
                    pass  # a run folder being written: listed without its character
        return owners

    def model_ids(self) -> list[str]:
        adapters = self.adapter_characters()
        ids = [self.engine.name, *(f"{self.engine.name}{ADAPTER_MARK}{a}" for a in adapters)]
        for name in self.characters.names():
            ids.append(name)
            ids += [f"{name}{ADAPTER_MARK}{a}" for a, owner in adapters.items() if owner == name]
        return ids

    def models(self) -> dict:
        return {"object": "list", "data": [{"id": i, "object": "model", "created": self.created, "owned_by": "simulacra"}
                                           for i in self.model_ids()]}

    def target(self, model: str) -> Target:
        name, adapter = model, None
        if ADAPTER_MARK in model:
            left, right = model.rsplit(ADAPTER_MARK, 1)
            if right in self.engine.available_adapters():
                name, adapter = left, right
        if name == self.engine.name:
            return Target(None, adapter)
        try:
            return Target(self.characters.find(name), adapter)
        except (CharacterNotFound, ValueError) as err:
            raise APIError(404, f"The model {model!r} does not exist: {message_of(err)}. "
                                "GET /v1/models lists the models.", param="model", code="model_not_found") from None

    # ---- chat completions -----------------------------------------------------------------------

    def pieces(self, request: CompletionRequest, stop: threading.Event, stats: dict) -> Iterator[str]:
        """The reply's text pieces, with every check done before the first piece (so errors come as
        an HTTP status, not in the middle of a stream)."""
        target = self.target(request.model)
        system, rest = [], []
        for m in request.messages:
            (system if isinstance(m, dict) and m.get("role") in ("system", "developer") else rest).append(m)
        if not rest or not isinstance(rest[-1], dict) or rest[-1].get("role") != "user":
            raise APIError(400, "the last message must be from the user", param="messages")
        try:
            message = text_of(rest[-1].get("content"), "the last message")
            if target.character is None:
                prompt = "\n\n".join(text_of(m.get("content"), "a system message") for m in system)
                messages = conversation(prompt, rest[:-1], message)
                stream = self.engine.stream(messages, request.sampling_for(target.adapter), target.adapter, stop,
                                            stats=stats)
            else:
                user = rest[-1].get("name") or DEFAULT_USER
                stream = client_turn(self.engine, target.character, scene_from(request.scene), rest[:-1], message,
                                     request.sampling_for(target.adapter), target.adapter, user, stop=stop,
                                     stats=stats, memory=request.memory)
        except PromptTooLong as err:
            raise APIError(400, str(err), param="messages", code="context_length_exceeded") from None
        except AdapterError as err:
            raise APIError(404, str(err), param="model", code="model_not_found") from None
        except (ValueError, KeyError) as err:
            raise APIError(400, message_of(err)) from None
        return cut_at_stops(stream, request.stop, stats)

    def finish_reason(self, request: CompletionRequest, stats: dict) -> str:
        if "stop" not in stats and stats.get("new_tokens", 0) >= request.sampling.max_new_tokens:
            return "length"
        return "stop"

    @staticmethod
    def usage(stats: dict) -> dict:
        prompt, new = stats.get("prompt_tokens", 0), stats.get("new_tokens", 0)
        return {"prompt_tokens": prompt, "completion_tokens": new, "total_tokens": prompt + new}

    def complete(self, request: CompletionRequest) -> dict:
        """The whole reply as a ``chat.completion`` object."""
        stats: dict = {}
        text = "".join(self.pieces(request, threading.Event(), stats))
        return {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
                "model": request.model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                             "finish_reason": self.finish_reason(request, stats)}],
                "usage": self.usage(stats)}

    def chunks(self, request: CompletionRequest, pieces: Iterator[str], stats: dict) -> Iterator[dict]:
        """The ``chat.completion.chunk`` objects of a streamed reply."""
        base = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion.chunk", "created": int(time.time()),
                "model": request.model}

        def chunk(delta: dict, finish: str | None = None) -> dict:
            return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

        yield chunk({"role": "assistant", "content": ""})
        for piece in pieces:
            yield chunk({"content": piece})
        yield chunk({}, self.finish_reason(request, stats))
        if request.include_usage:
            yield {**base, "choices": [], "usage": self.usage(stats)}


def authorised(request: Request) -> None:
    key = os.environ.get(API_KEY_ENV, "")
    if not key:
        return
    given = request.headers.get("authorization", "")
    if not secrets.compare_digest(given.encode(), f"Bearer {key}".encode()):
        raise APIError(401, f"a valid API key is required (Authorization: Bearer <{API_KEY_ENV}>)",
                       code="invalid_api_key")


def sse(chunks: Iterator[dict], stop: threading.Event):
    """Server-sent events from a blocking iterator, read in a worker thread; a client that goes away
    cancels this generator, and ``stop`` then ends the engine's decoding at its next token."""

    async def events():
        try:
            while True:
                item = await anyio.to_thread.run_sync(next, chunks, None)
                if item is None:
                    break
                yield f"data: {json.dumps(item, ensure_ascii=False)}\n\n"
            yield "data: [DONE]\n\n"
        finally:
            stop.set()

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


def router(api: OpenAIAPI) -> APIRouter:
    routes = APIRouter(prefix="/v1")

    @routes.get("/models")
    def models(request: Request):
        try:
            authorised(request)
            return api.models()
        except APIError as err:
            return err.response()

    @routes.post("/chat/completions")
    async def chat_completions(request: Request):
        try:
            authorised(request)
            length = request.headers.get("content-length", "")
            if length.isdigit() and int(length) > MAX_BODY_BYTES:  # refused before it is read
                raise APIError(413, f"the request body is {int(length):,} bytes; the limit is {MAX_BODY_BYTES:,}")
            parsed = CompletionRequest.parse(await request.body())
            if not parsed.stream:
                return await anyio.to_thread.run_sync(api.complete, parsed)
            stop, stats = threading.Event(), {}
            pieces = await anyio.to_thread.run_sync(api.pieces, parsed, stop, stats)
            return sse(api.chunks(parsed, pieces, stats), stop)
        except APIError as err:
            return err.response()

    return routes
