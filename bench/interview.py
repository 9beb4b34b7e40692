"""Interview benchmark: a 25-question single-turn interview on the embedded 4-bit model,
batched against one question at a time, in one run.

    .venv/bin/python bench/interview.py [--questions 25] [--batch-size 8] [--adapter RUN_ID] [--precision 4bit]

One at a time goes through the chat path (the KV cache of the shared system prompt is reused from
the second question on); batched keeps --batch-size questions decoding at once, the next beginning as
one ends, and reads the shared system prompt once. Both greedy, up to 96 new tokens. Writes
bench/results/interview.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results" / "interview.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", type=int, default=25)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--adapter", default="")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "4bit"])
    args = parser.parse_args()

    from plumbing.layout import runs_dir
    from characters.store import CharacterStore
    from engine import Engine, EngineOptions
    from evaluation.interview import InterviewOptions, interview
    from evaluation.questions import question_set

    engine = Engine(EngineOptions(precision=args.precision), adapters_dir=runs_dir())
    beethoven = CharacterStore().load("Ludwig van Beethoven")
    questions = question_set("ludwig-van-beethoven")[: args.questions]
    results = {"questions": len(questions), "model": engine.name, "precision": engine.precision,
               "adapter": args.adapter}
    for name, batch in (("one_at_a_time", 1), ("batched", args.batch_size)):
        engine.prefix_cache.clear()
        options = InterviewOptions(character=beethoven.name, adapter=args.adapter, batch_size=batch)
        started = time.perf_counter()
        report = interview(engine, beethoven, options, questions, "bench")
        seconds = time.perf_counter() - started
        results[name] = {"batch_size": batch, "seconds": round(seconds, 1), "new_tokens": report["new_tokens"],
                         "tokens_per_s": round(report["new_tokens"] / seconds, 1),
                         "memorization": report["aggregates"]["memorization"]}
    results["speedup"] = round(results["one_at_a_time"]["seconds"] / results["batched"]["seconds"], 2)
    print(f"| {len(questions)}-question interview | batch | seconds | new tokens | tokens/s |\n|---|---|---|---|---|")
    for name in ("one_at_a_time", "batched"):
        r = results[name]
        print(f"| {name.replace('_', ' ')} | {r['batch_size']} | {r['seconds']} | {r['new_tokens']} | "
              f"{r['tokens_per_s']} |")
    print(f"\nbatched / one at a time (time): {results['speedup']}×")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
