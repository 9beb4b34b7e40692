"""A character's turn in a scene: who says what to whom, rendered for the model and streamed.

The chat history is a list of ``{"role", "content", "name"}``: ``user`` is the person at the
keyboard, ``assistant`` any character. For the model, the speaking character's own lines
become assistant turns and everyone else's become user turns, prefixed with the speaker's
name when more than two take part.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator

from characters.meta_prompt import DEFAULT_USER, chat_messages
from characters.scenes import Scene
from characters.schema import Character
from engine.engine import Engine
from engine.memory import memory_of, remembering
from engine.messages import MAX_MESSAGE_CHARS, check_text, clean_history
from engine.options import SamplingOptions
from engine.puzzlement import begin_puzzled, begun, shown, unheard_of
from engine.turn_end import end_turn


def model_history(history: list[dict], speaker: str, named: bool) -> list[dict]:
    """``history`` from the point of view of ``speaker``: their lines are assistant turns."""
    out = []
    for message in history:
        mine = message["role"] == "assistant" and message.get("name", speaker) == speaker
        content = message["content"]
        if not mine and named and message.get("name"):
            content = f"{message['name']}: {content}"
        role = "assistant" if mine else "user"
        if out and out[-1]["role"] == role:  # chat templates expect turns to alternate
            out[-1]["content"] += "\n" + content
        else:
            out.append({"role": role, "content": content})
    return out


def turn_messages(character: Character, scene: Scene | None, history: list[dict], message: str | None = None,
                  user: str = DEFAULT_USER, user_persona: str = "", other: Character | None = None,
                  trained: bool = False) -> list[dict]:
    """The engine messages for ``character``'s next turn (after ``message`` from the user, if any).
    ``trained``: the character speaks through its adapter and gets the bare meta prompt it was trained with."""
    new = [*history, {"role": "user", "content": message, "name": user}] if message is not None else history
    return chat_messages(character, scene, model_history(new, character.name, named=other is not None), None,
                         user, user_persona, other, trained)


def stream_turn(engine: Engine, character: Character, scene: Scene | None, history: list[dict],
                message: str | None = None, sampling: SamplingOptions | None = None, adapter: str | None = None,
                user: str = DEFAULT_USER, user_persona: str = "", other: Character | None = None,
                stop: threading.Event | None = None, continue_last: bool = False,
                stats: dict | None = None, memory: bool = False) -> Iterator[str]:
    """Stream ``character``'s reply, ended where the turn ends (``turn_end``). With ``continue_last`` the
    last assistant message is extended; ``stats`` is filled as ``Engine.stream`` fills it, with ``turn_end``.
    With ``memory`` the memories nearest the last message go into the prompt (``engine.memory``), and
    ``stats["memories"]`` lists them; a reply to a message that names a thing from after the character's era
    begins in thought (``engine.puzzlement``)."""
    stats = {} if stats is None else stats
    messages = turn_messages(character, scene, history, message, user, user_persona, other, trained=bool(adapter))
    if continue_last:
        if messages[-1]["role"] == "system":  # post-history instructions go before the reply being continued
            messages.insert(len(messages) - 2, messages.pop())
        if messages[-1]["role"] != "assistant":
            raise ValueError("there is no reply of the character to continue")
    if memory:  # a reply being continued is not begun again (with_memories begins only a reply to a message)
        messages = with_memories(engine, character, messages, stats, trained=bool(adapter))
    start = begun(messages)
    sampling = sampling or SamplingOptions()
    pieces = engine.stream(messages, sampling, adapter, stop, continue_last=continue_last or bool(start), stats=stats)
    return end_turn(itertools.chain([start] if start else [], pieces), character.name, sampling.max_new_tokens, stats)


def with_memories(engine: Engine, character: Character, messages: list[dict], stats: dict,
                  trained: bool = False) -> list[dict]:
    """``messages`` with ``character``'s memories nearest the last thing said to it; for a ``trained`` character
    (through its adapter), where that names things from after its era, also the reply begun in thought, left open
    for the engine to go on with (``engine.puzzlement``; ``begun`` gives that start back: the base model, never
    taught the thought, goes on "(thinking) Ah yes, I read at night by electricity"). ``stats["memories"]`` lists
    both (empty where the engine has no memory: a remote one, which also cannot go on with a begun reply)."""
    memory = memory_of(engine)
    if memory is None:
        stats["memories"] = []
        return messages
    said = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
    recollections = memory.recall(character, said)
    asked = next((m["role"] for m in reversed(messages) if m["role"] != "system"), "") == "user"
    unknown = unheard_of(character, said) if trained and asked else []  # not when a reply is continued
    stats["memories"] = [r.text for r in recollections] + ([shown(unknown)] if unknown else [])
    messages = remembering(messages, character, recollections)
    return begin_puzzled(messages) if unknown else messages


def client_turn(engine: Engine, character: Character, scene: Scene | None, history, message,
                sampling: SamplingOptions | None = None, adapter: str | None = None,
                user_name=DEFAULT_USER, stop: threading.Event | None = None,
                stats: dict | None = None, memory: bool = True) -> Iterator[str]:
    """``character``'s reply for an API client (Gradio's ``/chat``, ``/v1/chat/completions``): ``history``
    is OpenAI-style messages as the client sent them, checked here with ``message`` and ``user_name``."""
    user = check_text(user_name, "user_name", 100).strip() or DEFAULT_USER
    past = [{**m, "name": character.name if m["role"] == "assistant" else user} for m in clean_history(history)]
    check_text(message, "message", MAX_MESSAGE_CHARS, allow_empty=False)
    return stream_turn(engine, character, scene, past, message, sampling, adapter, user, stop=stop, stats=stats,
                       memory=memory)
