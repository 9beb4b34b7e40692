"""The CPU: the feature flags that decide how fast each precision runs on it, and the threads a pass uses."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch


def _cpuinfo() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return []


def cpu_features() -> set[str]:
    """The CPU's feature flags (Linux), e.g. ``avx2``, ``avx512_bf16``; empty where they cannot be read."""
    return {flag for line in _cpuinfo() if line.startswith("flags") for flag in line.split(":", 1)[1].split()}


def cpu_name() -> str:
    """The CPU's model name (Linux), e.g. "AMD EPYC 9B14"; "unknown" where it cannot be read."""
    return next((line.split(":", 1)[1].strip() for line in _cpuinfo() if line.startswith("model name")), "unknown")


def speed_features() -> str:
    """The features that decide CPU speed here, for benchmark tables (bitsandbytes' 4-bit is ~3x faster
    with AVX-512 BF16): e.g. "avx2" or "avx2, avx512f, avx512_bf16"."""
    features = cpu_features()
    return ", ".join(f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in features) or "unknown"


def cpu_kind() -> str:
    """The CPU's kind as the page footer names it: "AVX-512 BF16", "AVX2" or "no AVX2"."""
    features = cpu_features()
    return "AVX-512 BF16" if "avx512_bf16" in features else "AVX2" if "avx2" in features else "no AVX2"


@contextmanager
def cpu_threads(count: int) -> Iterator[None]:
    """The calling thread's torch intra-op threads set to ``count`` while inside. OpenMP keeps the count per
    thread, so other threads' passes are not changed."""
    before = torch.get_num_threads()
    if count == before:
        yield
        return
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)
