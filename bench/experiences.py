"""Experience generation benchmark on the embedded 4-bit model.

    .venv/bin/python bench/experiences.py [--prompts 8] [--skip-demo] [--demo-out DIR]

1. Batched against one-at-a-time generation of the same experience prompts, side by side in one
   run: generated tokens per second of each, and the ratio.
2. The demo dataset: Beethoven, 40 experiences + 20 protective + grounded interviews from all
   facts, timed end to end.
Writes bench/results/experiences.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results" / "experiences.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=160)
    parser.add_argument("--skip-demo", action="store_true")
    parser.add_argument("--demo-out", default="", help="keep the demo dataset in this folder (default: removed)")
    args = parser.parse_args()

    from characters.scenes import scene_catalogue
    from characters.store import CharacterStore
    from engine import Engine, SamplingOptions
    from training.dataset import ExperienceOptions, build_dataset
    from engine.generators import LocalGenerator
    from training.prompts import EXPERIENCE

    engine = Engine()
    beethoven = CharacterStore().load("Ludwig van Beethoven")
    prompts = []
    for scene in scene_catalogue()[1:args.prompts + 1]:
        prompts.append([{"role": "user", "content": EXPERIENCE.format(
            profile=beethoven.sims.profile[0], name=beethoven.name, type=scene.type, location=scene.location,
            time=scene.time, background=scene.status, mood=scene.mood, topic=scene.topic, others="a visitor",
            first_other="Visitor")}])
    sampling = SamplingOptions(temperature=0.8, max_new_tokens=args.tokens, seed=0)
    engine.generate_batch(prompts[:2], SamplingOptions(max_new_tokens=4))  # warm-up

    started = time.perf_counter()
    single_tokens = 0
    for conversation in prompts:
        stats: dict = {}
        engine.generate(conversation, sampling, stats=stats)
        single_tokens += stats["new_tokens"]
    single_s = time.perf_counter() - started

    stats = {}
    engine.generate_batch(prompts, sampling, stats=stats)
    batch_tokens, batch_s = stats["new_tokens"], stats["seconds"]
    results = {
        "prompts": len(prompts), "max_new_tokens": args.tokens,
        "one_at_a_time": {"tokens": single_tokens, "seconds": single_s, "tokens_per_s": single_tokens / single_s},
        "batched": {"tokens": batch_tokens, "seconds": batch_s, "tokens_per_s": batch_tokens / batch_s},
    }
    results["batched_speedup"] = results["batched"]["tokens_per_s"] / results["one_at_a_time"]["tokens_per_s"]
    print(f"| generation of {len(prompts)} experience prompts | tokens | seconds | tokens/s |\n|---|---|---|---|")
    for name in ("one_at_a_time", "batched"):
        r = results[name]
        print(f"| {name.replace('_', ' ')} | {r['tokens']} | {r['seconds']:.1f} | {r['tokens_per_s']:.1f} |")
    print(f"\nbatched / one at a time: {results['batched_speedup']:.2f}×")

    if not args.skip_demo:
        out = Path(args.demo_out) if args.demo_out else Path(tempfile.mkdtemp()) / "demo"
        options = ExperienceOptions(character=beethoven.name, scenes=40, protective=20, batch_size=8)
        started = time.perf_counter()
        build_dataset(beethoven, LocalGenerator(engine, options.batch_size), options, out,
                      count_tokens=lambda text: len(engine.tokenizer(text)["input_ids"]))
        demo_s = time.perf_counter() - started
        stats = json.loads((out / "stats.json").read_text())
        results["demo_dataset"] = {"seconds": demo_s, **{k: stats[k] for k in
                                                         ("examples", "by_kind", "by_source", "dropped",
                                                          "drops_by_reason", "scenes_by_source", "tokens")}}
        print(f"\nDemo dataset (Beethoven: 40 experiences + 20 protective + interviews): {demo_s / 60:.1f} min, "
              f"{stats['examples']} examples {stats['by_source']}, dropped {stats['drops_by_reason']}, "
              f"scenes {stats['scenes_by_source']}")
        if not args.demo_out:
            shutil.rmtree(out.parent, ignore_errors=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
