"""Which precision ``--precision auto`` means on this machine, and why (for the page footer and the log).

On CUDA it is 4-bit NF4 with bf16 compute. On a CPU it is the precision that serves chat fastest there:

- a model whose fp32 weights would take more than a quarter of the memory (or 4 GB) gets 4-bit NF4;
- without AVX-512 BF16, fp32: bitsandbytes' CPU 4-bit kernel is about 3x slower there (the embedded model
  decoded 14.6 tokens/s in fp32 against 6-7 in 4-bit on an AVX2-only EPYC, issue #16);
- with AVX-512 BF16, bitsandbytes repacks 4-bit weights for a faster kernel, and bf16 matrix products run
  natively, and which serves faster then depends on the CPU and the threads a pass gets: fp32 decoded 25.1
  against 4-bit 20.5 tokens/s on one such EPYC with two decode threads, 4-bit 21.3 against fp32 14.9 on another
  with one, and bf16 was 28 % slower than fp32 for one visitor there; on a Xeon with AMX, bf16 read prompts
  2.1-2.3x as fast as fp32 and decoded 8 rows 1.5x as fast, and 4-bit decoded 1.3-1.8x as fast but read prompts
  at two-thirds of fp32's speed. So the first start measures a prompt read and decode steps in each, prices a chat
  turn with them for one visitor and for eight (``faster``), and keeps the answer for this CPU, thread counts,
  model and library versions (``plumbing.layout.precision_choices_dir``); later starts read it. The precisions
  are measured in turns, ``ROUNDS`` times, and each figure is the median of its rounds: measured one after the
  other, a burst of load during one precision's turn decided the choice for good (on the Xeon, beside a
  training, bf16 decoded 8 rows no faster than fp32, 66.1 against 66.3 tokens/s, and fp32 was kept; three quiet
  rounds the same morning gave bf16 1.5-2.0x). Rounds do not help against work that lasts the whole
  measurement (a test suite on both cores: bf16 measured 1.6x slower than fp32 for one visitor, and fp32 kept),
  so a choice measured while other processes used more than ``BUSY`` of the CPUs is kept with that share, used,
  and measured again at a later start that finds the CPUs free.
"""

from __future__ import annotations

import functools
import gc
import hashlib
import json
import logging
import os
import statistics
import time
from importlib.metadata import version

import torch
from transformers import AutoConfig, AutoModelForCausalLM

from engine.batching import PREFILL_CHUNK
from engine.cpu import OtherWork, cpu_features, cpu_kind, cpu_name, cpu_threads, on_short_lived_thread, others_now
from engine.kv_cache import new_cache
from engine.loading import load_model, weights_identity
from plumbing.files import atomic_write_json
from plumbing.layout import precision_choices_dir

log = logging.getLogger(__name__)

FP32_MEMORY_SHARE = 0.25  # fp32 costs 4 bytes a weight: only while the weights take a small share
FP32_MAX_BYTES = 4 * 2**30
MEASURED = ("fp32", "bf16", "4bit")  # fp32 first: the others are measured against it
NAMES = {"fp32": "fp32", "bf16": "bf16", "4bit": "4-bit NF4"}
ROWS = (1, 8)  # one visitor, and a classroom's batch
# The measured chat: a prompt of this many tokens (persona, memories, history; the README's Beethoven prompt is
# 846), read in the engine's chunks, then decode steps after it. At a short context 4-bit's lead in decoding
# looked twice what a crowd through the API gets, where attention over the prompt costs both the same.
CONTEXT, WARM_STEPS, STEPS = 640, 1, 5
ROUNDS = 3
BUSY = 0.25  # of the CPUs' time, used by other processes while measuring
# A chat turn as priced: a prompt read (between an opened chat's new message with its memories, 55-80 tokens,
# and a first turn's whole persona, 650-850), and a spoken reply.
TURN_PROMPT, TURN_TOKENS = 256, 64
# bf16 or 4-bit must serve eight visitors' turn this much faster than fp32, and one visitor's no more than this
# much slower. Within that they serve about alike, and fp32's greedy replies stay the same alone and in a crowd,
# while bf16's and 4-bit's kernels on these CPUs round with the batch's shape (see README).
MARGIN = 1.1


def parameter_count(source: str, trust_remote_code: bool = False) -> int:
    """The model's parameters, counted on the meta device from its config (no weights are read)."""
    config = AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    return sum(p.numel() for p in model.parameters())


def auto_precision(source: str, on_cuda: bool, trust_remote_code: bool = False,
                   cache_dir: str | os.PathLike | None = None, threads: tuple[int, int] = (1, 1)) -> tuple[str, str]:
    """The precision ``auto`` means here, and why. ``threads``: the CPU threads a decode step and a prompt read
    run on."""
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
        return precision, f"CPU ({kind}): fp32; the other precisions could not be measured here ({when})"
    figures = "; ".join(f"{rows} at once " + ", ".join(f"{p} {turn_seconds(speeds[p], rows):.1f} s" for p in speeds)
                        for rows in ROWS)
    rule = (f"the fastest for {ROWS[-1]}" if precision != "fp32" else
            f"no other {MARGIN - 1:.0%} faster for {ROWS[-1]} and within {MARGIN - 1:.0%} for {ROWS[0]}")
    return precision, (f"CPU ({kind}): {NAMES[precision]}, {rule} in a measurement here ({TURN_PROMPT} prompt "
                       f"and {TURN_TOKENS} new tokens a visitor: {figures}; {when})")


def turn_seconds(speeds: dict[str, float], rows: int) -> float:
    """A chat turn of ``rows`` visitors at once, priced from measured speeds (tokens/s: ``read``, a prompt read;
    ``"1"``, ``"8"``, decode steps of that many rows after a chat's prompt): every visitor's new prompt read,
    then the replies decoded."""
    return rows * TURN_PROMPT / speeds["read"] + TURN_TOKENS * rows / speeds[str(rows)]


def faster(speeds: dict[str, dict[str, float]]) -> str:
    """The precision with the shortest chat turn (``turn_seconds``) for eight visitors at once, of fp32 and those
    that serve eight at least ``MARGIN`` times as fast as fp32 and one at most ``MARGIN`` times as slowly: a
    classroom then gains seconds a turn where a visitor alone loses a few tenths at most."""
    one, crowd = ROWS

    def clearly_better(p: str) -> bool:
        return (turn_seconds(speeds["fp32"], crowd) >= MARGIN * turn_seconds(speeds[p], crowd)
                and turn_seconds(speeds[p], one) <= MARGIN * turn_seconds(speeds["fp32"], one))

    return min((p for p in speeds if p == "fp32" or clearly_better(p)), key=lambda p: turn_seconds(speeds[p], crowd))


def measured_choice(source: str, trust_remote_code: bool, cache_dir: str | os.PathLike | None,
                    threads: tuple[int, int]) -> tuple[str, dict | None, str]:
    """The precision that serves chat fastest on this CPU (``faster``), the speeds it was chosen from, and when
    they were measured (``_when``): read from the kept choice, else measured now and kept; a choice measured on
    busy CPUs is measured again once they are free. Where one of them cannot be
    measured (bitsandbytes' 4-bit failing to load, say): fp32, None, and the error (not kept, so a later start
    tries again)."""
    parts = [cpu_name(), sorted(cpu_features()), os.cpu_count(), threads, *weights_identity(source),
             [MEASURED, CONTEXT, ROWS, TURN_PROMPT, TURN_TOKENS, MARGIN, ROUNDS],
             version("bitsandbytes"), version("transformers"),
             torch.__version__]  # the installed versions: importing bitsandbytes costs 2 s, and fp32 needs none
    kept = precision_choices_dir(cache_dir) / f"{hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]}.json"
    try:
        choice = json.loads(kept.read_text())
        if _others(choice) <= BUSY or (now := others_now()) is None or now > BUSY:
            return choice["precision"], choice["speeds"], _when(choice)
        log.info("The kept precision choice was measured while other work used %.0f %% of the CPUs; measuring "
                 "again, now that they are free", 100 * _others(choice))
    except FileNotFoundError:
        pass
    except (OSError, ValueError, KeyError, TypeError) as err:
        log.warning("The kept precision choice %s cannot be read (%s); measuring again", kept, err)
    log.info("Measuring prompt reads and decode steps in %s to choose the precision (once on this CPU)",
             ", ".join(MEASURED))
    models, rounds, work = {}, [], OtherWork()
    try:
        for precision in MEASURED:
            models[precision] = on_short_lived_thread(functools.partial(
                load_model, source, precision, "cpu", trust_remote_code, cache_dir))
        for _ in range(ROUNDS):
            rounds.append({})
            for precision in MEASURED:
                rounds[-1][precision] = on_short_lived_thread(functools.partial(
                    measured_speeds, models[precision], threads))
    except (ImportError, OSError, RuntimeError, ValueError) as err:
        log.warning("%s could not be measured on this CPU: %s", precision, err)
        return "fp32", None, f"{precision}: {err}"
    finally:
        models.clear()
        gc.collect()
    speeds = {p: {key: round(statistics.median(r[p][key] for r in rounds), 1) for key in rounds[0][p]}
              for p in MEASURED}
    choice = {"precision": faster(speeds), "speeds": speeds, "measured": time.strftime("%Y-%m-%d"),
              "cpu": cpu_name(), "threads": {"decode": threads[0], "read": threads[1]}, "others": work.share()}
    try:
        atomic_write_json(kept, choice)
    except OSError as err:  # a read-only or full disk: measured again at the next start
        log.warning("The precision choice was not kept in %s: %s", kept, err)
    when = _when(choice)
    log.info("Speeds (tokens/s: a prompt read, decode steps by rows at once): %s; chose %s (%s)", speeds,
             choice["precision"], when)
    return choice["precision"], speeds, when


def _others(choice: dict) -> float:
    """Other processes' share of the CPUs while ``choice`` was measured (0 where unknown, or kept before it was)."""
    return choice.get("others") or 0


def _when(choice: dict) -> str:
    """When the kept ``choice`` was measured, and how busy the CPUs were then if that was too busy to trust."""
    busy = f", while other work used {_others(choice):.0%} of the CPUs" if _others(choice) > BUSY else ""
    return choice["measured"] + busy


def measured_speeds(model, threads: tuple[int, int]) -> dict[str, float]:
    """Tokens/s of ``model`` with the engine's thread counts (decode, read): ``read``, of a ``CONTEXT``-token
    prompt read in the engine's chunks; ``"1"``, ``"8"``, of a decode step of that many rows after it (the median
    of ``STEPS`` steps after ``WARM_STEPS``)."""
    decode, read = threads
    speeds = {}
    with torch.inference_mode():
        with cpu_threads(read):
            model(input_ids=torch.ones(1, 8, dtype=torch.long))  # the first pass, where bitsandbytes repacks
            prompt, started = new_cache(model.config), time.perf_counter()
            for start in range(0, CONTEXT, PREFILL_CHUNK["cpu"]):
                chunk = min(PREFILL_CHUNK["cpu"], CONTEXT - start)
                model(input_ids=torch.ones(1, chunk, dtype=torch.long), past_key_values=prompt, use_cache=True)
            speeds["read"] = round(CONTEXT / (time.perf_counter() - started), 1)
        with cpu_threads(decode):
            for rows in ROWS:
                cache = new_cache(model.config, [(layer.keys.repeat(rows, 1, 1, 1),
                                                  layer.values.repeat(rows, 1, 1, 1)) for layer in prompt.layers])
                step, seconds = torch.ones(rows, 1, dtype=torch.long), []
                for _ in range(WARM_STEPS + STEPS):
                    started = time.perf_counter()
                    model(input_ids=step, past_key_values=cache, use_cache=True)
                    seconds.append(time.perf_counter() - started)
                speeds[str(rows)] = round(rows / statistics.median(seconds[WARM_STEPS:]), 1)
    return speeds
