"""Engine benchmark: cold start, time to first token, decode speed and memory per precision.

    .venv/bin/python bench/engine.py [--repeats 3] [--tokens 64]

Each measurement runs in a fresh process (so peak RSS and cold start are that process's
own); each figure is the median of --repeats runs. Writes bench/results/engine.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results" / "engine.json"

PERSONA = (
    "I want you to act like Ludwig van Beethoven. I want you to respond and answer like Ludwig van Beethoven, "
    "using the tone, manner and vocabulary Ludwig van Beethoven would use. You must know all of the knowledge "
    "of Ludwig van Beethoven. You were born in Bonn in December 1770, into a family of court musicians; your "
    "father Johann drilled you at the keyboard, and your grandfather Ludwig was Kapellmeister to the Elector. "
    "You moved to Vienna in 1792 to study with Haydn, and made your name there as a pianist of fire and "
    "improvisation before your compositions took over. Your hearing began to fail in your late twenties; in "
    "1802 at Heiligenstadt you wrote to your brothers of despair and of your resolve to live for your art. "
)
SYSTEM_600 = PERSONA * 5  # about 600 tokens with the chat template
FIRST = [{"role": "system", "content": SYSTEM_600},
         {"role": "user", "content": "Tell me the story of your life, from Bonn to Vienna, in detail."}]


def follow_up(reply: str) -> list[dict]:
    return FIRST + [{"role": "assistant", "content": reply},
                    {"role": "user", "content": "And what did the Ninth Symphony mean to you?"}]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---- children: one measurement per process ----------------------------------------------

def child_cold(cache_dir: str) -> dict:
    """From the start of the process (imports included) to the first streamed token of a short chat."""
    from engine import Engine, EngineOptions, SamplingOptions

    engine = Engine(EngineOptions(), cache_dir=cache_dir)
    next(engine.stream([{"role": "user", "content": "Hello!"}], SamplingOptions(temperature=0, max_new_tokens=4)))
    return {"seconds_to_first_token": time.perf_counter() - START, "load_s": engine.load_seconds}


def child_engine(precision: str, tokens: int, threads: int) -> dict:
    import torch

    from engine import Engine, EngineOptions, SamplingOptions

    torch.set_num_threads(threads)
    engine = Engine(EngineOptions(precision=precision))
    sampling = SamplingOptions(temperature=0, max_new_tokens=tokens, repetition_penalty=1.1)
    engine.generate([FIRST[0], {"role": "user", "content": "Hello."}], SamplingOptions(max_new_tokens=4))  # warm-up
    engine.prefix_cache.clear()
    first, second = {}, {}
    reply = "".join(engine.stream(FIRST, sampling, stats=first))
    engine.generate(follow_up(reply), sampling, stats=second)
    return {
        "prompt_tokens": first["prompt_tokens"],
        "first_turn_ttft_s": first["first_token_s"],
        "follow_up_ttft_s": second["first_token_s"],
        "follow_up_reused_tokens": second["reused_tokens"],
        "decode_tokens_per_s": (first["new_tokens"] - 1) / first["decode_s"],
        "decoded_tokens": first["new_tokens"],
        "model_mb": engine.memory_bytes() / 2**20,
        "peak_rss_mb": peak_rss_mb(),
    }


def child_generate(tokens: int, static: bool, threads: int) -> dict:
    """The baseline: plain `model.generate` on the same fp32 model and prompt."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from engine.model_source import resolve_model

    torch.set_num_threads(threads)
    source = resolve_model("")
    tokenizer = AutoTokenizer.from_pretrained(source)
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32).eval()
    ids = tokenizer.apply_chat_template(FIRST, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    extra = {"cache_implementation": "static"} if static else {}

    def run(n):
        started = time.perf_counter()
        with torch.inference_mode():
            model.generate(**ids, max_new_tokens=n, min_new_tokens=n, do_sample=False, repetition_penalty=1.1, **extra)
        return time.perf_counter() - started

    run(2)  # warm-up
    one, full = run(1), run(tokens)
    return {
        "prompt_tokens": int(ids["input_ids"].shape[1]),
        "first_turn_ttft_s": one,
        "decode_tokens_per_s": (tokens - 1) / (full - one),
        "decoded_tokens": tokens,
        "model_mb": model.get_memory_footprint() / 2**20,
        "peak_rss_mb": peak_rss_mb(),
    }


# ---- parent: run the children, print the table, write JSON ------------------------------

def run_child(*args: str, env: dict | None = None) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", *args], cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})})
    if out.returncode != 0:
        raise RuntimeError(f"child {args} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def median_of(runs: list[dict]) -> dict:
    return {k: statistics.median(r[k] for r in runs) if isinstance(runs[0][k], (int, float)) else runs[0][k]
            for k in runs[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--precisions", default="4bit,8bit,bf16,fp32")
    args = parser.parse_args()
    threads = os.cpu_count() or 1
    results: dict = {"machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
                     "repeats": args.repeats, "decode_tokens": args.tokens, "variants": {}}

    from plumbing.layout import models_dir

    with tempfile.TemporaryDirectory() as empty:
        fresh_cache = Path(empty) / "models"
        results["cold_start_first_run_s"] = run_child("cold", str(fresh_cache))["seconds_to_first_token"]
        shutil.rmtree(fresh_cache, ignore_errors=True)
    cached = [run_child("cold", str(models_dir())) for _ in range(args.repeats)]
    results["cold_start_from_cache_s"] = statistics.median(r["seconds_to_first_token"] for r in cached)

    variants = [("generate fp32 (baseline)", ("generate", "dynamic", str(threads))),
                ("generate fp32 + static cache", ("generate", "static", str(threads)))]
    variants += [(f"engine {p}", ("engine", p, str(threads))) for p in args.precisions.split(",")]
    variants += [("engine 4bit, 1 thread", ("engine", "4bit", "1"))]
    for name, child_args in variants:
        try:
            runs = [run_child(*child_args, str(args.tokens)) for _ in range(args.repeats)]
            results["variants"][name] = median_of(runs)
        except RuntimeError as err:
            results["variants"][name] = {"error": str(err).splitlines()[-1][:300]}
        print(f"  measured {name}", file=sys.stderr)

    base = results["variants"]["generate fp32 (baseline)"]["decode_tokens_per_s"]
    for figures in results["variants"].values():
        if "decode_tokens_per_s" in figures:
            figures["decode_vs_baseline"] = figures["decode_tokens_per_s"] / base

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))


def table(results: dict) -> str:
    lines = [
        f"Cold start to first token (process start, short chat): first run (with GGUF conversion) {results['cold_start_first_run_s']:.1f} s, "
        f"from cache {results['cold_start_from_cache_s']:.1f} s (median of {results['repeats']})",
        "",
        "| variant | prompt tok | TTFT 1st turn (s) | TTFT follow-up (s) | decode tok/s | × baseline | model MB | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, f in results["variants"].items():
        if "error" in f:
            lines.append(f"| {name} | failed: {f['error']} |||||||")
            continue
        follow = f"{f['follow_up_ttft_s']:.3f} ({f['follow_up_reused_tokens']} reused)" if "follow_up_ttft_s" in f else "—"
        lines.append(f"| {name} | {f['prompt_tokens']} | {f['first_turn_ttft_s']:.3f} | {follow} | "
                     f"{f['decode_tokens_per_s']:.1f} | {f['decode_vs_baseline']:.2f} | {f['model_mb']:.0f} | "
                     f"{f['peak_rss_mb']:.0f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    START = time.perf_counter()
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        kind, rest = sys.argv[2], sys.argv[3:]
        if kind == "cold":
            result = child_cold(rest[0])
        elif kind == "engine":
            result = child_engine(rest[0], int(rest[2]), int(rest[1]))
        else:
            result = child_generate(int(rest[2]), rest[0] == "static", int(rest[1]))
        print(json.dumps(result), flush=True)
        # A process whose scheduler thread ran passes on two threads aborts in torch's teardown at exit
        # ("terminate called without an active exception", rc 134; also before decode_threads): the
        # measurement is out, so leave without the teardown.
        os._exit(0)
    else:
        main()
