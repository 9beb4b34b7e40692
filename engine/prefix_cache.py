"""Reuse of the KV cache of what the model has already read.

A chat's follow-up turn repeats the whole earlier conversation (system prompt, earlier
turns) before the new message. Re-reading ~600 tokens of system prompt costs more than
a second on a CPU; keeping the KV cache of each finished request and cropping it to the
longest common token prefix makes the follow-up start at the new message.

A request gets a *copy* of the best entry's shared prefix, so two concurrent requests never write
into the same cache, and many visitors chatting with one character (a classroom) all reuse its
system prompt. An entry is never changed after it is put; the least recently used ones go first.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from engine.kv_cache import copy_of


def common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def common_prefix_of(prompts: list[list[int]]) -> int:
    """Length of the prefix all ``prompts`` share."""
    return min((common_prefix(prompts[0], p) for p in prompts[1:]), default=len(prompts[0]) if prompts else 0)


class PrefixCache:
    def __init__(self, config, capacity: int = 16, min_reuse: int = 16):
        self.config = config  # the model's, to build the copies
        self.capacity = capacity
        self.min_reuse = min_reuse  # shorter matches are not worth an entry or a copy
        self._entries: OrderedDict[int, tuple[str | None, list[int], object]] = OrderedDict()
        self._next = 0
        self._lock = threading.Lock()

    def take(self, adapter: str | None, ids: list[int]):
        """A copy of the longest prefix of ``ids`` cached for this adapter: ``(cache, n_reused)``.

        At least one prompt token is left unread, since its logits start the reply.
        """
        cache, keep = self.find(adapter, ids)
        return (copy_of(cache, self.config, stop=keep), keep) if cache is not None else (None, 0)

    def find(self, adapter: str | None, ids: list[int]):
        """As ``take``, but the entry's own cache, not a copy (its first ``n_reused`` positions are the prefix):
        for a caller that copies it elsewhere. Entries are never written to, so it stays valid."""
        with self._lock:
            best, best_len = None, 0
            for key, (entry_adapter, entry_ids, _) in self._entries.items():
                if entry_adapter != adapter:
                    continue
                n = common_prefix(entry_ids, ids)
                if n > best_len:
                    best, best_len = key, n
            if best is None or best_len < self.min_reuse:
                return None, 0
            self._entries.move_to_end(best)
            cache = self._entries[best][2]
        return cache, min(best_len, len(ids) - 1)

    def put(self, adapter: str | None, ids: list[int], cache) -> None:
        """Give back a cache that holds exactly ``ids``."""
        if cache is None or len(ids) < self.min_reuse or self.capacity <= 0:
            return
        with self._lock:
            for key in [k for k, (a, entry_ids, _) in self._entries.items() if a == adapter and entry_ids == ids]:
                del self._entries[key]  # the same tokens again: keep the newer
            self._entries[self._next] = (adapter, list(ids), cache)
            self._next += 1
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)

    def clear(self, adapter: str | None = ...) -> None:
        with self._lock:
            if adapter is ...:
                self._entries.clear()
            else:
                for key in [k for k, v in self._entries.items() if v[0] == adapter]:
                    del self._entries[key]

    def __len__(self) -> int:
        return len(self._entries)
