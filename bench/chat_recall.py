"""Chat's recall: the shipped trained characters asked their shipped interview questions through Chat's own turn.

    .venv/bin/python bench/chat_recall.py [--seeds 0,1,2] [--precision auto] [--no-memory]

Each question is one chat turn as the Chat tab makes it (engine.roleplay.stream_turn: no scene, no history, the
adapter, memory on unless --no-memory), sampled at the trained characters' chat defaults
(engine.options.chat_defaults: temperature 0.7, repetition penalty 1.1, 128 new tokens), once per seed, and scored
as an interview's answer is (evaluation.metrics). Interviews are greedy and in Character-LLM's interview scene;
this is what a visitor gets in Chat. Writes bench/results/chat_recall.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results" / "chat_recall.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--no-memory", action="store_true")
    args = parser.parse_args()

    from characters.store import CharacterStore
    from engine import Engine, EngineOptions
    from engine.cpu import speed_features
    from engine.options import SamplingOptions, chat_defaults
    from engine.roleplay import stream_turn
    from engine.shipped import shipped_adapters
    from evaluation import metrics
    from evaluation.interview import scored
    from evaluation.questions import question_set
    from plumbing.files import slugify

    engine = Engine(EngineOptions(precision=args.precision))
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = {}
    started = time.perf_counter()
    for adapter, folder in shipped_adapters(engine.source).items():
        name = json.loads((folder / "simulacra.json").read_text())["character"]
        character = CharacterStore().find(name)
        results = []
        for seed in seeds:
            sampling = SamplingOptions(**{**chat_defaults(True), "seed": seed})
            for i, question in enumerate(question_set(slugify(name))):
                answer = "".join(stream_turn(engine, character, None, [], question.question, sampling, adapter,
                                             stats={}, memory=not args.no_memory))
                results.append({**scored(i, question, answer, character), "seed": seed})
        rows[name] = {"aggregates": metrics.aggregate(results, []), "results": results}
    figures = {name: {k: row["aggregates"][k] for k in ("memorization", "memorization_n", "protection",
                                                        "protection_n", "degeneration", "character_breaks")}
               for name, row in rows.items()}
    out = {"model": engine.name, "precision": engine.precision, "cpu_features": speed_features(),
           "memory": not args.no_memory, "seeds": seeds, "sampling": chat_defaults(True),
           "seconds": round(time.perf_counter() - started, 1), "figures": figures, "characters": rows}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=1) + "\n")
    print(f"{engine.name}, {engine.precision}, memory {'on' if out['memory'] else 'off'}, seeds {seeds}, "
          f"CPU: {out['cpu_features']}, {out['seconds']} s\n")
    print("| shipped trained character | memorization | strict protection | degenerate | character breaks |")
    print("|---|---|---|---|---|")
    for name, f in figures.items():
        print(f"| {name} | {f['memorization']:.0%} (of {f['memorization_n']}) | {f['protection']:.0%} "
              f"(of {f['protection_n']}) | {f['degeneration']:.0%} | {f['character_breaks']:.0%} |")


if __name__ == "__main__":
    main()
