"""The CPU: the feature flags that decide how fast each precision runs on it, and the threads a pass uses."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

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


def _busy_cpu() -> tuple[float, int] | None:
    """CPU seconds all processes have run since boot, and the CPUs they ran on (Linux's /proc/stat; in a
    container without its own view, the host's); None where it cannot be read."""
    try:
        lines = Path("/proc/stat").read_text().splitlines()
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in lines[0].split()[1:9])
    except (OSError, IndexError, ValueError):
        return None
    cpus = sum(line.startswith("cpu") and line[3:4].isdigit() for line in lines) or 1
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK"), cpus


class OtherWork:
    """How much of the CPUs other processes used from its making to ``share()``: from the CPUs' busy time less
    this process's own (stolen time counts as others'). A speed measured while others work is theirs to decide."""

    def __init__(self):
        self.started, self.busy, self.own = time.monotonic(), _busy_cpu(), time.process_time()

    def share(self) -> float | None:
        """Others' share of the CPUs' time so far (0 to 1), or None where it cannot be known."""
        busy, wall = _busy_cpu(), time.monotonic() - self.started
        if busy is None or self.busy is None or wall <= 0:
            return None
        others = busy[0] - self.busy[0] - (time.process_time() - self.own)
        return round(min(1.0, max(0.0, others / (wall * busy[1]))), 2)


def others_now(seconds: float = 0.25) -> float | None:
    """Other processes' share of the CPUs over the next ``seconds``."""
    work = OtherWork()
    time.sleep(seconds)
    return work.share()


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


def on_short_lived_thread(fn: Callable[[], Any]) -> Any:
    """``fn()`` run on a thread that ends with it; its result, or its error raised here. For tensor work before
    the model's thread exists (``engine.precision``'s measurement, a benchmark's set-up): libgomp gives each
    thread that runs a parallel op an OpenMP team for as long as it lives, and once a process holds more OpenMP
    threads than CPUs every pass waits for its workers to wake (see ``batching``). Measured on 2 cores (fp32, one
    visitor): 42-48 ms a token after such work on a short-lived thread or none, 72-76 ms after it on the main thread."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = fn()
        except BaseException as err:  # noqa: BLE001 - raised in the caller's thread
            outcome["error"] = err

    thread = threading.Thread(target=run, name="short-lived-tensor-work")
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]
