"""Reuse of the KV cache of what the model has already read.

A chat's follow-up turn repeats the whole earlier conversation (system prompt, earlier
turns) before the new message. Re-reading ~600 tokens of system prompt costs more than
a second on a CPU; keeping the KV cache of each finished request and cropping it to the
longest common token prefix makes the follow-up start at the new message.

An entry is *taken* by a request (removed from the pool) and *given back* when the
request ends, so two concurrent requests never write into the same cache.
"""

from __future__ import annotations

import threading
from collections import OrderedDict


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
    def __init__(self, capacity: int = 16, min_reuse: int = 16):
        self.capacity = capacity
        self.min_reuse = min_reuse  # shorter matches are not worth keeping an entry busy
        self._entries: OrderedDict[int, tuple[str | None, list[int], object]] = OrderedDict()
        self._next = 0
        self._lock = threading.Lock()

    def take(self, adapter: str | None, ids: list[int]):
        """The cache with the longest shared prefix for this adapter, cropped to it: ``(cache, n_reused)``.

        At least one prompt token is left unread, since its logits start the reply.
        """
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
            _, entry_ids, cache = self._entries.pop(best)
        keep = min(best_len, len(ids) - 1)
        drop = len(entry_ids) - keep
        if drop > 0:
            cache.crop(-drop)
        return cache, keep

    def put(self, adapter: str | None, ids: list[int], cache) -> None:
        """Give back a cache that holds exactly ``ids``."""
        if cache is None or len(ids) < self.min_reuse or self.capacity <= 0:
            return
        with self._lock:
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
