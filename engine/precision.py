"""Which precision ``--precision auto`` means on this machine, and why (for the page footer and the log).

On CUDA it is 4-bit NF4 with bf16 compute. On a CPU it is the precision that serves chat fastest there:

- a model whose fp32 weights would take more than a quarter of the memory (or 4 GB) gets 4-bit NF4;
- without AVX-512 BF16, fp32: bitsandbytes' CPU 4-bit kernel is about 3x slower there (the embedded model
  decoded 14.6 tokens/s in fp32 against 6-7 in 4-bit on an AVX2-only EPYC, issue #16);
- with AVX-512 BF16, bitsandbytes repacks 4-bit weights for a bf16 kernel, and which is faster then depends
  on the CPU and the threads a decode step gets: fp32 25.1 against 4-bit 20.5 tokens/s on one such EPYC with
  two decode threads, 4-bit 21.3 against fp32 14.9 on another with one. So the first start measures decode
  steps in both, and the answer is kept for this CPU, thread count, model and library versions
  (``plumbing.layout.precision_choices_dir``); later starts read it.
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import os
import statistics
import time

import torch
from transformers import AutoConfig, AutoModelForCausalLM

from engine.cpu import cpu_features, cpu_kind, cpu_name, cpu_threads
from engine.kv_cache import new_cache
from engine.loading import load_model, weights_identity
from plumbing.files import atomic_write_json
from plumbing.layout import precision_choices_dir

log = logging.getLogger(__name__)

FP32_MEMORY_SHARE = 0.25  # fp32 costs 4 bytes a weight: only while the weights take a small share
FP32_MAX_BYTES = 4 * 2**30
MEASURED = ("fp32", "4bit")
ROWS = (1, 8)  # one visitor, and a classroom's batch
CONTEXT, WARM_STEPS, STEPS = 32, 1, 5
# 4-bit must be this much faster for one visitor and for eight: fp32's greedy replies stay the same alone and
# in a crowd, while the bf16 kernel of 4-bit on these CPUs rounds with the batch's shape (see README).
MARGIN = 1.1


def parameter_count(source: str, trust_remote_code: bool = False) -> int:
    """The model's parameters, counted on the meta device from its config (no weights are read)."""
    config = AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    return sum(p.numel() for p in model.parameters())


def auto_precision(source: str, on_cuda: bool, trust_remote_code: bool = False,
                   cache_dir: str | os.PathLike | None = None, threads: int = 1) -> tuple[str, str]:
    """The precision ``auto`` means here, and why. ``threads``: the CPU threads a decode step runs on."""
    if on_cuda:
        return "4bit", "CUDA: 4-bit NF4 with bf16 compute"
    fp32_bytes = 4 * parameter_count(source, trust_remote_code)
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    kind = cpu_kind()
    if fp32_bytes > min(FP32_MAX_BYTES, FP32_MEMORY_SHARE * memory):
        return "4bit", f"CPU ({kind}): the model is too large for fp32 here ({fp32_bytes / 2**30:.1f} GB), 4-bit NF4"
    if "avx512_bf16" not in cpu_features():
        return "fp32", (f"CPU ({kind}): fp32 decodes fastest for a model this small "
                        f"({fp32_bytes / 2**20:.0f} MB in fp32; bitsandbytes' 4-bit is slow without AVX-512 BF16)")
    precision, speeds, when = measured_choice(source, trust_remote_code, cache_dir, threads)
    if speeds is None:
        return precision, f"CPU ({kind}): fp32; 4-bit could not be measured here ({when})"
    other = next(p for p in MEASURED if p != precision)
    figures = "; ".join(f"{rows} at once {speeds[precision][str(rows)]:.1f} against {speeds[other][str(rows)]:.1f}"
                        for rows in ROWS)
    name = "4-bit NF4" if precision == "4bit" else "fp32"
    return precision, (f"CPU ({kind}): {name} decoded faster here (tokens/s against {other}, {figures}; "
                       f"measured {when} on {threads} thread{'s' if threads > 1 else ''})")


def faster(speeds: dict[str, dict[str, float]]) -> str:
    """"4bit" where it decoded at least ``MARGIN`` times as many tokens/s as fp32 for one row and for eight
    (``speeds[precision][str(rows)]``); else "fp32"."""
    return "4bit" if all(speeds["4bit"][str(r)] >= MARGIN * speeds["fp32"][str(r)] for r in ROWS) else "fp32"


def measured_choice(source: str, trust_remote_code: bool, cache_dir: str | os.PathLike | None,
                    threads: int) -> tuple[str, dict | None, str]:
    """The faster of fp32 and 4-bit on this CPU, the decode speeds it was chosen from, and when they were
    measured: read from the kept choice, else measured now and kept. Where 4-bit cannot be loaded: fp32,
    None, and the error (not kept, so a later start tries again)."""
    import bitsandbytes
    import transformers

    parts = [cpu_name(), sorted(cpu_features()), os.cpu_count(), threads, *weights_identity(source),
             [CONTEXT, ROWS, MARGIN], bitsandbytes.__version__, transformers.__version__, torch.__version__]
    kept = precision_choices_dir(cache_dir) / f"{hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]}.json"
    try:
        choice = json.loads(kept.read_text())
        return choice["precision"], choice["speeds"], choice["measured"]
    except FileNotFoundError:
        pass
    except (OSError, ValueError, KeyError, TypeError) as err:
        log.warning("The kept precision choice %s cannot be read (%s); measuring again", kept, err)
    log.info("Measuring decode steps in fp32 and 4-bit to choose the precision (once on this CPU)")
    try:
        speeds = {precision: decode_speeds(source, precision, trust_remote_code, cache_dir, threads)
                  for precision in MEASURED}
    except (ImportError, OSError, RuntimeError, ValueError) as err:
        log.warning("4-bit could not be measured on this CPU: %s", err)
        return "fp32", None, str(err)
    choice = {"precision": faster(speeds), "speeds": speeds, "measured": time.strftime("%Y-%m-%d"),
              "cpu": cpu_name(), "threads": threads}
    try:
        atomic_write_json(kept, choice)
    except OSError as err:  # a read-only or full disk: measured again at the next start
        log.warning("The precision choice was not kept in %s: %s", kept, err)
    log.info("Decode speeds (tokens/s by rows at once): %s; chose %s", speeds, choice["precision"])
    return choice["precision"], speeds, choice["measured"]


def decode_speeds(source: str, precision: str, trust_remote_code: bool, cache_dir: str | os.PathLike | None,
                  threads: int) -> dict[str, float]:
    """Tokens/s of a decode step of each of ``ROWS`` rows after ``CONTEXT`` tokens, on ``threads`` threads:
    the median of ``STEPS`` steps after ``WARM_STEPS`` (the first pass is where bitsandbytes repacks)."""
    model = load_model(source, precision, "cpu", trust_remote_code, cache_dir).eval()
    speeds = {}
    try:
        with torch.inference_mode(), cpu_threads(threads):
            for rows in ROWS:
                cache = new_cache(model.config)
                model(input_ids=torch.ones(rows, CONTEXT, dtype=torch.long), past_key_values=cache, use_cache=True)
                step, seconds = torch.ones(rows, 1, dtype=torch.long), []
                for _ in range(WARM_STEPS + STEPS):
                    started = time.perf_counter()
                    model(input_ids=step, past_key_values=cache, use_cache=True)
                    seconds.append(time.perf_counter() - started)
                speeds[str(rows)] = round(rows / statistics.median(seconds[WARM_STEPS:]), 1)
    finally:
        del model
        gc.collect()
    return speeds
