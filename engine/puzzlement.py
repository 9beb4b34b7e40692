"""A reply begun in puzzled thought, when a message names a thing from after the character's era.

Protective experiences teach a character to meet such a thing with a "(thinking)" line of puzzlement
(``training.protective_experiences``). The trained 135M model chooses between that and an answer as of a fact
on its reply's first token, and chooses by the question's wording rather than by the thing: "Did you travel here
by railway train?" → "I traveled by train from Bonn to Vienna." The app knows the character's era and what
came after it (``characters.era``), so where the character brings its memory it makes that first choice: the
reply opens with the words the protective experiences' thought opens with, "(thinking) This stranger talks of",
and the model goes on from there ("… of my travels. I am Ludwig van Beethoven."). Opened with "(thinking)" alone,
the thought could go on to know the thing ("(thinking) I traveled by train only once."): with memory, the third
question rules' six runs kept 76 % of their probes, against 85 % with these words (README). A thing the
catalogue does not name gets no help, and what follows is still the model's.
"""

from __future__ import annotations

from characters.era import mentions, things_named, unknowable
from characters.schema import Character

STRANGER_TALKS_OF = "This stranger talks of"  # how a protective experience's puzzled thought may open
THOUGHT = f"(thinking) {STRANGER_TALKS_OF}"
SHOWN = "Never heard of {}: the reply begins in thought."  # how chat and reports list it among the memories


def unheard_of(character: Character, said: str) -> list[str]:
    """The words by which ``said`` names things from after ``character``'s era, one a thing ("railway")."""
    return [next(n for n in a["names"] if mentions(said, n)) for a in things_named(said, unknowable(character))]


def shown(names: list[str]) -> str:
    """The line that lists, among the memories a reply used, the things it was begun in thought about."""
    return SHOWN.format(", ".join(f'"{name}"' for name in names))


def begin_puzzled(messages: list[dict]) -> list[dict]:
    """``messages`` with the reply begun in thought, left open: the engine goes on with a last assistant message."""
    return [*messages, {"role": "assistant", "content": THOUGHT, "begun": True}]


def begun(messages: list[dict]) -> str:
    """The start of the reply that ``begin_puzzled`` left open in ``messages``, or "" (a reply the engine goes on
    with excludes its start)."""
    return messages[-1]["content"] if messages and messages[-1].get("begun") else ""
