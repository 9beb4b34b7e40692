"""Ending a streamed reply at a stop string (the OpenAI API's ``stop``), within the piece that completes it.

Text that could be the start of a stop string is held back until the next piece shows whether it is,
so a client never sees half of a stop string it asked not to get.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence


def held_back(text: str, stops: Sequence[str]) -> int:
    """How many characters at the end of ``text`` could begin one of ``stops``."""
    for size in range(min(len(text), max(map(len, stops)) - 1), 0, -1):
        tail = text[-size:]
        if any(stop.startswith(tail) for stop in stops):
            return size
    return 0


def close_stream(pieces: Iterable[str]) -> None:
    """Close a stream that a wrapper stops reading early, so the engine behind it stops decoding now
    (its generator's ``finally`` runs) rather than when it is garbage-collected."""
    close = getattr(pieces, "close", None)
    if close is not None:
        close()


def cut_at_stops(pieces: Iterable[str], stops: Sequence[str], found: dict | None = None) -> Iterator[str]:
    """``pieces`` up to (not including) the first of ``stops``; the stream is then closed, which stops the
    engine. ``found["stop"]`` is set to the stop string that ended it."""
    stops = [s for s in stops if s]
    if not stops:
        yield from pieces
        return
    held = ""
    try:
        for piece in pieces:
            held += piece
            hits = [(held.find(s), s) for s in stops if s in held]
            if hits:
                at, stop = min(hits)
                if found is not None:
                    found["stop"] = stop
                if at:
                    yield held[:at]
                return
            keep = held_back(held, stops)
            if len(held) > keep:
                yield held[:len(held) - keep]
                held = held[len(held) - keep:]
        if held:
            yield held
    finally:
        close_stream(pieces)
