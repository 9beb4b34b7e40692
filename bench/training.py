"""Training throughput benchmark: QLoRA on the embedded 4-bit model, ours against a plain baseline.

    .venv/bin/python bench/training.py --dataset user_data/datasets/<character>/<id> [--steps 6]

Both runs use the same model, data, seed and optimizer settings; the baseline pads every example
to the maximum length (no length grouping), ours groups examples of similar length and pads a
batch only to its longest. Figures: tokens/s counted over real (non-padding) tokens, median of
the logged steps after the first. Writes bench/results/training.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results" / "training.json"


def measure(dataset: str, batching: str, steps: int, max_len: int) -> dict:
    from training.qlora import RunOptions, train

    folder = Path(tempfile.mkdtemp()) / batching
    options = RunOptions(character="Ludwig van Beethoven", dataset=dataset, preset="quick", max_steps=steps,
                         batch_size=4, max_seq_len=max_len, batching=batching, eval_split=0.0, save_steps=10**6,
                         output_dir=str(folder), seed=3)
    train(options, folder)
    log = [json.loads(line) for line in (folder / "log.jsonl").read_text().splitlines()]
    rows = [r for r in log if r.get("loss") is not None][1:]  # the first step includes warm-up costs
    return {"tokens_per_s": statistics.median(r["tokens_per_s"] for r in rows), "steps": steps,
            "seconds": log[-1]["elapsed_s"], "final_loss": rows[-1]["loss"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--max-seq-len", type=int, default=512)
    args = parser.parse_args()
    results = {"dataset": args.dataset, "max_seq_len": args.max_seq_len,
               "baseline_pad_to_max": measure(args.dataset, "pad_to_max", args.steps, args.max_seq_len),
               "group_by_length": measure(args.dataset, "group_by_length", args.steps, args.max_seq_len)}
    results["speedup"] = results["group_by_length"]["tokens_per_s"] / results["baseline_pad_to_max"]["tokens_per_s"]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print("| batching | tokens/s (real tokens) | seconds for the steps |\n|---|---|---|")
    for name in ("baseline_pad_to_max", "group_by_length"):
        r = results[name]
        print(f"| {name} | {r['tokens_per_s']:.0f} | {r['seconds']:.0f} |")
    print(f"\ngroup_by_length / baseline: {results['speedup']:.2f}×")


if __name__ == "__main__":
    main()
