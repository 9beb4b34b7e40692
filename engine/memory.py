"""Memory at chat time: before a reply, the facts and profile lines most relevant to the message go into
the prompt, so the character can answer from its own life even where training did not make it stick.

Retrieval must work for a question in other words than the fact ("Who paid for your keep?" finds
"… gave me a yearly stipend from 1809", with no word in common), offline, on a small CPU. No
embedding model can be downloaded here, so the chat model itself embeds: PromptEOL (Jiang et al.,
"Scaling Sentence Embeddings with Large Language Models", 2023) wraps a text in
``This sentence : "…" means in one word:"`` and takes the hidden state after the last token, which
the model has to fill with the sentence's meaning. Measured with SmolLM2-135M (``bench/memory.py``): 36
questions about three characters, each in other words than its answer, every fact and profile sentence
of the character competing; a memory holding the answer came first for 24 and in the top three for
31, at 167 ms a turn (median; AVX2, 2 cores). The depth (93 % of the layers) and the centring on the
character's mean were chosen on Beethoven's 14 questions and held on the other 22. A character's
memory vectors are computed once (about 4-5 s for 47 memories here) and kept; a turn embeds only its
message.
"""

from __future__ import annotations

import hashlib
import re
import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass

import torch

from characters.schema import Character

TEMPLATE = 'This sentence : "{}" means in one word:"'
DEPTH = 28 / 30  # of the model's layers
TOP_K = 3
INDEXES_KEPT = 32  # characters whose memory vectors are kept
MAX_QUERY_CHARS = 500
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")


@dataclass(frozen=True)
class Recollection:
    text: str
    kind: str  # "fact" or "profile"
    score: float


def memories_of(character: Character) -> list[tuple[str, str]]:
    """``(kind, text)`` of everything the character can remember: each fact, each sentence of its profile."""
    items = [("fact", f.strip()) for f in character.sims.facts if f.strip()]
    for paragraph in character.sims.profile:
        items += [("profile", s.strip()) for s in _SENTENCE_END.split(paragraph) if s.strip()]
    return items


class _Index:
    def __init__(self, items: list[tuple[str, str]], vectors: torch.Tensor):
        self.items = items
        self.mean = vectors.mean(0)
        self.vectors = torch.nn.functional.normalize(vectors - self.mean, dim=-1)


class Memory:
    """The memory vectors of recently seen characters, for one engine's model."""

    def __init__(self, engine):
        self.engine = engine
        self._indexes: OrderedDict[str, _Index] = OrderedDict()
        self._building = threading.Lock()  # a classroom opening one character builds its vectors once

    def _embed(self, texts: list[str]) -> torch.Tensor:
        return self.engine.hidden_states([TEMPLATE.format(t) for t in texts], DEPTH)

    def index(self, character: Character) -> _Index | None:
        items = memories_of(character)
        if not items:
            return None
        key = hashlib.sha256("\n".join(f"{k}\t{t}" for k, t in items).encode()).hexdigest()
        with self._building:
            if key in self._indexes:
                self._indexes.move_to_end(key)
                return self._indexes[key]
            built = _Index(items, self._embed([text for _, text in items]))
            self._indexes[key] = built
            while len(self._indexes) > INDEXES_KEPT:
                self._indexes.popitem(last=False)
            return built

    def recall(self, character: Character, query: str, k: int = TOP_K) -> list[Recollection]:
        """The ``k`` memories of ``character`` nearest in meaning to ``query``, nearest first."""
        query = query.strip()[-MAX_QUERY_CHARS:]
        index = self.index(character)
        if index is None or not query:
            return []
        vector = torch.nn.functional.normalize(self._embed([query])[0] - index.mean, dim=-1)
        scores = index.vectors @ vector
        best = torch.topk(scores, min(k, len(index.items))).indices.tolist()
        return [Recollection(index.items[i][1], index.items[i][0], round(float(scores[i]), 3)) for i in best]


_memories: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def memory_of(engine) -> Memory | None:
    """The engine's ``Memory``; None where the model runs elsewhere (a remote engine has no hidden states)."""
    if not hasattr(engine, "hidden_states"):
        return None
    if engine not in _memories:
        _memories[engine] = Memory(engine)
    return _memories[engine]


def remembering(messages: list[dict], character: Character, recollections: list[Recollection]) -> list[dict]:
    """``messages`` with the recollections as a system note just before the last user message: after the
    system prompt and earlier turns, so their cached prefix is still reused."""
    if not recollections:
        return messages
    note = {"role": "system", "content": f"What {character.name} remembers that bears on this:\n"
                                         + "\n".join(f"- {r.text}" for r in recollections)}
    last_user = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=1)
    return [*messages[:last_user], note, *messages[last_user:]]
