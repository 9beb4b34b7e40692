"""Where a character's turn ends: before the model starts another speaker's line, and, when the token
limit cuts the reply, at its last whole sentence.

A small model writing a chat often goes on past its own turn: it writes the user's next line
("Anna: …"), another character's ("Sicilons: I think you're right"), or a "<START>" of a new
example. The turn ends before such a line. Text that may still become one (a new line that so far
reads like the start of "Name:") is held back until it is clear, so a visitor never sees half of
another speaker's line. Near the token limit only whole sentences go out, so that a reply the limit
cuts ends at its last whole sentence rather than mid-word.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from engine.stop_strings import close_stream, held_back

MARKERS = ("<START>", "<|im_start|>", "<|im_end|>")
NAME = r"[A-Z][\w.'’\- ]{0,38}?"
# "Anna:", "**Socrates:**", "  Dr. Okafor:" at the start of a line
SPEAKER_LINE = re.compile(rf"^[ \t]*(?:\*\*|\*)?({NAME})(?:\*\*|\*)?[ \t]*:", re.MULTILINE)
# a line so far that may still become a speaker line
MAYBE_SPEAKER = re.compile(r"^[ \t]*(?:\*\*|\*)?(?:[A-Z][\w.'’\- ]{0,38})?(?:\*\*|\*)?[ \t]*$", re.MULTILINE)
SENTENCE_END = re.compile(r"[.!?…][\"'”’)\]*]*(?=\s|$)")
TAIL_TOKENS = 24  # within this many tokens of the limit (a quarter of a short one), only whole sentences go out
CLOSERS = (".", "!", "?", "…", '"', "'", "”", "’", ")", "]", "*")


def is_own(name: str, speaker: str) -> bool:
    """``name`` names the speaker: the full name or one of its words ("Beethoven" for Ludwig van Beethoven)."""
    name = name.strip().lower()
    return name == speaker.lower() or name in {w.lower() for w in re.findall(r"[\w'’]+", speaker) if len(w) > 2}


def other_speaker_at(text: str, speaker: str) -> int | None:
    """Where another speaker's line (or a marker) begins in ``text``: the newline before it, or None.
    The first line is the character's own, whatever it starts with."""
    cuts = [text.find(m) for m in MARKERS if m in text]
    for match in re.finditer(r"\n", text):
        line = SPEAKER_LINE.match(text, match.end())
        if line and not is_own(line.group(1), speaker):
            cuts.append(match.start())
            break
    return min(cuts) if cuts else None


def last_sentence_end(text: str) -> int:
    """The end of the last whole sentence in ``text`` (0 when there is none)."""
    ends = [m.end() for m in SENTENCE_END.finditer(text)]
    return ends[-1] if ends else 0


def end_turn(pieces: Iterable[str], speaker: str, max_new_tokens: int, stats: dict) -> Iterator[str]:
    """``pieces`` of ``speaker``'s reply, ended where the turn ends. ``stats`` is the engine's (its
    ``new_tokens`` grows as tokens are decoded); ``stats["turn_end"]`` says why the turn ended
    (``"eos"``, ``"speaker"`` for another speaker's line or a marker, ``"length"`` for the limit)."""
    text, sent = "", 0
    tail = min(TAIL_TOKENS, max_new_tokens // 4)
    try:
        for piece in pieces:
            text += piece
            cut = other_speaker_at(text, speaker)
            if cut is not None:
                stats["turn_end"] = "speaker"
                final = text[:cut].rstrip()
                if len(final) > sent:
                    yield final[sent:]
                return
            ready = len(text)
            newline = text.rfind("\n")
            if newline >= 0 and MAYBE_SPEAKER.match(text, newline + 1):
                ready = newline  # the new line may be another speaker's: wait for it
            ready -= held_back(text[:ready], MARKERS)
            if stats.get("new_tokens", 0) >= max_new_tokens - tail:
                ready = sent + last_sentence_end(text[sent:ready])
            if ready > sent:
                yield text[sent:ready]
                sent = ready
        if stats.get("new_tokens", 0) >= max_new_tokens:
            stats["turn_end"] = "length"
            rest = text[sent:sent + last_sentence_end(text[sent:])]
            if not last_sentence_end(text):
                rest = text[sent:].rstrip() + "…"  # not one whole sentence: keep what there is
            elif not rest and not text[:sent].rstrip().endswith(CLOSERS):
                rest = "…"
        else:
            stats["turn_end"] = "eos"
            rest = text[sent:].rstrip()
        if rest:
            yield rest
    finally:
        close_stream(pieces)
