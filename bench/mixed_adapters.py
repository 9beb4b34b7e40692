"""Mixed-adapter decode steps: rows of the base model and of an adapter in one forward pass, two ways.

    .venv/bin/python bench/mixed_adapters.py [--rows 8 16] [--context 700]

Times one decode step (one new token a row over a cache of --context tokens) on the engine's model, for
rows that are all base, all one adapter (rank 16 on every default target, the quick preset's shape),
and half base, half adapter: through PEFT's own mixed batch (``adapter_names=``) and through the engine's
per-row scales (engine/mixed_adapters.py, what the scheduler uses). The four kinds take turns, --steps
timed steps each, for --rounds rounds, so they see the same machine; the step before each turn (which
switches the active adapters) is not timed. Medians; writes bench/results/mixed_adapters.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
RESULTS = ROOT / "bench" / "results" / "mixed_adapters.json"
KINDS = ("base", "adapter", "mixed, PEFT adapter_names", "mixed, per-row scales")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[8, 16])
    parser.add_argument("--context", type=int, default=700)
    parser.add_argument("--steps", type=int, default=5, help="timed steps of a kind in a row")
    parser.add_argument("--rounds", type=int, default=3, help="rounds in which the kinds take turns")
    args = parser.parse_args()

    import torch

    from conftest import random_lora
    from engine import Engine, EngineOptions
    from engine.kv_cache import copy_of, new_cache
    from engine.cpu import speed_features
    from training.qlora import PRESETS, TARGETS

    engine = Engine(EngineOptions(max_batch_rows=max(args.rows)))
    folder = random_lora(engine.source, Path(tempfile.mkdtemp()) / "lora", TARGETS.split(","),
                         PRESETS["quick"]["lora_r"], PRESETS["quick"]["lora_alpha"], std=0.02)
    engine.add_adapter("lora", folder)
    config = engine.base_model.config
    torch.manual_seed(0)
    _, prompt = engine._forward(torch.randint(100, 40000, (1, args.context)), new_cache(config), None)

    def step(kind: str, cache, rows: int):
        tokens = torch.randint(100, 40000, (rows, 1))
        if kind == "mixed, PEFT adapter_names":  # what the engine did before: PEFT's hooks and row indexing
            with engine._lock, torch.inference_mode():
                engine._activate("lora")
                names = ["__base__" if i % 2 == 0 else "lora" for i in range(rows)]
                engine.model(input_ids=tokens, past_key_values=cache, use_cache=True, logits_to_keep=1,
                             adapter_names=names)
            return
        adapters = {"base": [None] * rows, "adapter": ["lora"] * rows,
                    "mixed, per-row scales": [None if i % 2 == 0 else "lora" for i in range(rows)]}[kind]
        engine._forward(tokens, cache, adapters)

    table = []
    for rows in args.rows:
        times = {kind: [] for kind in KINDS}
        caches = {}
        for kind in KINDS:
            caches[kind] = copy_of(prompt, config)
            for layer in caches[kind].layers:
                layer.keys, layer.values = layer.keys.repeat(rows, 1, 1, 1), layer.values.repeat(rows, 1, 1, 1)
        for _ in range(args.rounds):
            for kind in KINDS:
                step(kind, caches[kind], rows)  # not timed: it switches the active adapters (and grows a new cache)
                for _ in range(args.steps):
                    started = time.perf_counter()
                    step(kind, caches[kind], rows)
                    times[kind].append(time.perf_counter() - started)
        row = {"rows": rows, **{kind: statistics.median(t) * 1e3 for kind, t in times.items()}}
        table.append(row)
        print(f"  {rows} rows: " + ", ".join(f"{kind} {row[kind]:.0f} ms" for kind in KINDS), flush=True)
    results = {"cpu_features": speed_features(), "precision": engine.precision, "context": args.context,
               "measured": time.strftime("%Y-%m-%d %H:%M"), "step_ms": table}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"CPU features: {results['cpu_features']}; {engine.precision}; one decode step over {args.context} tokens, "
          "median ms\n| rows | " + " | ".join(KINDS) + " |\n|---|" + "---|" * len(KINDS))
    for row in table:
        print(f"| {row['rows']} | " + " | ".join(f"{row[kind]:.0f}" for kind in KINDS) + " |")


if __name__ == "__main__":
    main()
