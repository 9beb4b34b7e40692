"""Chat messages as they arrive from a browser or an API client, checked and made plain.

Clients may send anything, so roles, types and sizes are checked here, once, for every
caller. Content may be a string or a list of content blocks (``{"type": "text", "text": …}``,
as Gradio 6's Chatbot sends it); it comes out as a string.
"""

from __future__ import annotations

MAX_MESSAGE_CHARS = 8_000
MAX_SYSTEM_CHARS = 24_000
MAX_HISTORY_MESSAGES = 400
ROLES = ("user", "assistant")


def text_of(content, where: str = "message") -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        content = [content]
    if isinstance(content, (list, tuple)):
        parts = []
        for block in content:
            if isinstance(block, str):
                parts.append(block)
            elif isinstance(block, dict) and isinstance(block.get("text", block.get("content")), str):
                parts.append(block.get("text", block.get("content")))
            elif isinstance(block, dict) and block.get("type") == "file":
                continue  # files are shown in the chat but not read by a text model
            else:
                raise ValueError(f"{where}: content blocks must be text, got {type(block).__name__}")
        return "".join(parts)
    if content is None:
        return ""
    raise ValueError(f"{where}: content must be text, got {type(content).__name__}")


def check_text(text, what: str, limit: int, allow_empty: bool = True) -> str:
    if text is None:
        text = ""
    if not isinstance(text, str):
        raise ValueError(f"{what} must be text, got {type(text).__name__}")
    if len(text) > limit:
        raise ValueError(f"{what} is {len(text):,} characters; the limit is {limit:,}")
    if not allow_empty and not text.strip():
        raise ValueError(f"{what} is empty")
    return text


def clean_history(history) -> list[dict]:
    """``[{"role": "user"|"assistant", "content": str}, …]`` from a client's history, or a ValueError."""
    if history is None:
        return []
    if not isinstance(history, (list, tuple)):
        raise ValueError("history must be a list of messages")
    if len(history) > MAX_HISTORY_MESSAGES:
        raise ValueError(f"history has {len(history)} messages; the limit is {MAX_HISTORY_MESSAGES}")
    clean = []
    for i, message in enumerate(history):
        where = f"history[{i}]"
        if not isinstance(message, dict):
            raise ValueError(f"{where} must be an object with role and content")
        role = message.get("role")
        if role == "system":
            continue  # the system prompt comes from the character, never from the client's history
        if role not in ROLES:
            raise ValueError(f"{where}.role must be user or assistant, not {role!r}")
        text = check_text(text_of(message.get("content"), where), f"{where}.content", MAX_MESSAGE_CHARS)
        clean.append({"role": role, "content": text})
    return clean


def conversation(system_prompt: str, history: list[dict], message: str | None = None) -> list[dict]:
    """System prompt + checked history (+ the new user message) as engine messages."""
    system_prompt = check_text(system_prompt, "system prompt", MAX_SYSTEM_CHARS)
    messages = [{"role": "system", "content": system_prompt}] if system_prompt.strip() else []
    messages += clean_history(history)
    if message is not None:
        messages.append({"role": "user", "content": check_text(message, "message", MAX_MESSAGE_CHARS,
                                                               allow_empty=False)})
    return messages
