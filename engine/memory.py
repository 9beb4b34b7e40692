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
character's mean were chosen on Beethoven's 14 questions and held on the other 22. The words a question
shares with a memory count too (``WORDS_WEIGHT``), weighed by how few memories say them: on a Xeon, the
36 questions' answer first 21 → 24 (top three 32 both), the 50 fact questions of the shipped interviews
38 → 42 (42 → 45). A character's
memory vectors are computed once (about 4-5 s for 47 memories here) and kept, in memory and on disk beside
the models (``plumbing.layout.memory_vectors_dir``), keyed by the model, its precision and its device, so
an app restarted (or a second process) does not compute them again; a turn embeds only its message.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import re
import threading
import weakref
from collections import Counter, OrderedDict
from dataclasses import dataclass

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from characters.schema import Character
from engine.loading import weights_identity
from plumbing.files import atomic_write_bytes
from plumbing.layout import memory_vectors_dir
from plumbing.text import content_words

log = logging.getLogger(__name__)

TEMPLATE = 'This sentence : "{}" means in one word:"'
DEPTH = 28 / 30  # of the model's layers
TOP_K = 3
# Beside the meaning, the words a question shares with a memory: the 135M model's vectors drew "In which city were
# you born?" to "My wife is Xanthippe." before "I was born in Athens around 470 BC." (see the module's text).
WORDS_WEIGHT = 0.3  # of a cosine; a memory that says every content word of the question gains this much
SHORTEST_WORD = 4
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
        self.words = [content_words(text, SHORTEST_WORD) for _, text in items]
        counts = Counter(w for said in self.words for w in said)
        self.rarity = {w: math.log((len(items) + 1) / (n + 1)) for w, n in counts.items()}
        self.unsaid = math.log(len(items) + 1)  # the rarity of a word no memory says

    def words_shared(self, query: str) -> torch.Tensor:
        """For each memory, the share of the query's content words it says too, each word weighed by how few
        memories say it ("born" in "In which city were you born?" points at one fact, "your" at none)."""
        asked = content_words(query, SHORTEST_WORD)
        weights = {w: self.rarity.get(w, self.unsaid) for w in asked}
        total = sum(weights.values())
        if not total:
            return torch.zeros(len(self.items))
        return torch.tensor([sum(weights[w] for w in asked & said) / total for said in self.words])


def model_key(engine) -> str:
    """What memory vectors depend on besides the texts: the model's weights (their files, or the Hub commit),
    the precision and device they ran in (and whether bf16 or fp32 ran on QLoRA's rounded weights), and how a
    text is embedded."""
    parts = [*weights_identity(engine.source), getattr(engine.base_model.config, "_commit_hash", None),
             engine.precision, engine.device.type, DEPTH, TEMPLATE, torch.__version__]
    if engine.qlora_base:
        parts.append("qlora base")  # vectors kept before the rounding, under the bare key, were not made so
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]


class Memory:
    """The memory vectors of recently seen characters, for one engine's model."""

    def __init__(self, engine):
        self.engine = engine
        self.folder = memory_vectors_dir(engine.cache_dir) / model_key(engine)
        self._indexes: OrderedDict[str, _Index] = OrderedDict()
        self._building = threading.Lock()  # a classroom opening one character builds its vectors once

    def _embed(self, texts: list[str], then=None):
        return self.engine.hidden_states([TEMPLATE.format(t) for t in texts], DEPTH, then=then)

    def index(self, character: Character) -> _Index | None:
        items = memories_of(character)
        if not items:
            return None
        key = hashlib.sha256("\n".join(f"{k}\t{t}" for k, t in items).encode()).hexdigest()
        with self._building:
            if key in self._indexes:
                self._indexes.move_to_end(key)
                return self._indexes[key]
            vectors = self._stored(key, len(items))
            if vectors is None:
                vectors = self._embed([text for _, text in items])
                self._store(key, vectors)
            built = self.engine.on_model_thread(functools.partial(_Index, items, vectors))
            self._indexes[key] = built
            while len(self._indexes) > INDEXES_KEPT:
                self._indexes.popitem(last=False)
            return built

    def _stored(self, key: str, count: int) -> torch.Tensor | None:
        """The vectors saved for ``key``, or None: none saved, or a damaged file (they are computed again)."""
        path = self.folder / f"{key}.safetensors"
        try:
            vectors = load_file(path)["vectors"]
        except FileNotFoundError:
            return None
        except (OSError, KeyError, SafetensorError) as err:
            log.warning("Memory vectors in %s cannot be read (%s); computing them again", path, err)
            return None
        return vectors if vectors.shape[0] == count else None

    def _store(self, key: str, vectors: torch.Tensor) -> None:
        try:
            atomic_write_bytes(self.folder / f"{key}.safetensors", save({"vectors": vectors.contiguous()}))
        except OSError as err:  # a read-only or full disk: chat goes on, the vectors are kept in memory only
            log.warning("Memory vectors not saved in %s: %s", self.folder, err)

    def recall(self, character: Character, query: str, k: int = TOP_K) -> list[Recollection]:
        """The ``k`` memories of ``character`` nearest in meaning to ``query``, nearest first."""
        query = query.strip()[-MAX_QUERY_CHARS:]
        index = self.index(character)
        if index is None or not query:
            return []

        shared = WORDS_WEIGHT * index.words_shared(query)

        def nearest(states: torch.Tensor) -> list[tuple[int, float]]:
            scores = index.vectors @ torch.nn.functional.normalize(states[0] - index.mean, dim=-1) + shared
            return [(i, round(float(scores[i]), 3)) for i in torch.topk(scores, min(k, len(index.items))).indices]

        # The search runs with the embedding, on the model's thread: one trip there, not two.
        return [Recollection(index.items[i][1], index.items[i][0], score)
                for i, score in self._embed([query], then=nearest)]


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
