"""Export benchmark: a trained Beethoven to GGUF, and the exported file's speed in llama.cpp beside ours.

    .venv/bin/python bench/export.py [--repeats 3] [--tokens 64]

The run is Beethoven with an adapter of the quick preset's shape (rank 16 on every default target;
the export's cost does not depend on the adapter's values, so no training is needed for it). Each
format is exported --repeats times (base model load, merge, write): medians.

When `llama_cpp` is installed (`make test-llamacpp` builds it), the Q8_0, Q4_0 and F16 files are loaded
in llama.cpp and decode --tokens greedy tokens after the character's prompt (the Modelfile's SYSTEM and
a question), beside this app's engine (auto precision and 4-bit) on the same prompt, in one run.
Writes bench/results/export.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results" / "export.json"
RUN = "beethoven-quick-shape"
QUESTION = "Where were you born, and who taught you music?"


def make_run(data: Path) -> None:
    """A run folder as training leaves it, with an adapter of the quick preset's shape."""
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import random_lora

    from engine.model_source import resolve_model
    from training.qlora import PRESETS, TARGETS

    folder = data / "runs" / RUN
    random_lora(resolve_model(None), folder / "adapter", TARGETS.split(","), PRESETS["quick"]["lora_r"],
                PRESETS["quick"]["lora_alpha"], std=0.02)
    (folder / "options.json").write_text(json.dumps({"character": "Ludwig van Beethoven", "model": "",
                                                     "preset": "quick"}))


def llama_cpp_speed(path: Path, prompt: list[int], tokens: int, repeats: int) -> dict:
    from llama_cpp import Llama

    llm = Llama(model_path=str(path), n_ctx=2048, n_threads=os.cpu_count(), verbose=False)
    firsts, rates = [], []
    for _ in range(repeats):
        llm.reset()
        started, first, count = time.perf_counter(), None, 0
        for _token in llm.generate(prompt, temp=0.0, top_k=1, repeat_penalty=1.0):
            count += 1
            if first is None:
                first = time.perf_counter() - started
            if count >= tokens:
                break
        firsts.append(first)
        rates.append((count - 1) / (time.perf_counter() - started - first))
    return {"first_token_s": statistics.median(firsts), "decode_tokens_per_s": statistics.median(rates)}


def engine_speed(precision: str, messages: list[dict], tokens: int, repeats: int) -> dict:
    from engine import Engine, EngineOptions, SamplingOptions

    engine = Engine(EngineOptions(precision=precision, prefix_cache_entries=0))  # every run reads the prompt
    firsts, rates = [], []
    for _ in range(repeats):
        stats: dict = {}
        engine.generate(messages, SamplingOptions(temperature=0, max_new_tokens=tokens, repetition_penalty=1.0),
                        stats=stats)
        firsts.append(stats["first_token_s"])
        rates.append((stats["new_tokens"] - 1) / stats["decode_s"])
    return {"precision": engine.precision, "first_token_s": statistics.median(firsts),
            "decode_tokens_per_s": statistics.median(rates)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=64)
    args = parser.parse_args()
    os.environ["SIMULACRA_DATA_DIR"] = data = tempfile.mkdtemp(prefix="bench-export-")

    from engine.cpu import speed_features
    from training.export import FORMATS, ExportOptions, export_run

    make_run(Path(data))
    out = Path(data) / "out"
    seconds, files = {}, {}
    for fmt in FORMATS:
        times = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            files[fmt] = export_run(ExportOptions(run=RUN, format=fmt, out=str(out)))
            times.append(time.perf_counter() - started)
        seconds[fmt] = statistics.median(times)
    results = {"cpu_features": speed_features(), "cpus": os.cpu_count(), "repeats": args.repeats,
               "export_s": seconds, "gguf_mb": {f: files[f]["gguf"].stat().st_size / 2**20 for f in FORMATS}}
    lines = [f"CPU features: {results['cpu_features']}, {results['cpus']} cores\n",
             "| format | export (load, merge, write) | file |", "|---|---|---|"]
    lines += [f"| {f} | {seconds[f]:.1f} s | {results['gguf_mb'][f]:.0f} MB |" for f in FORMATS]

    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        results["llama_cpp"] = "not installed (make test-llamacpp builds it)"
    else:
        from transformers import AutoTokenizer

        modelfile = files["gguf-q8_0"]["modelfile"].read_text()
        system = modelfile.split('SYSTEM """', 1)[1].split('"""', 1)[0]
        messages = [{"role": "system", "content": system}, {"role": "user", "content": QUESTION}]
        tokenizer = AutoTokenizer.from_pretrained(str(out), gguf_file=files["gguf-q8_0"]["gguf"].name)
        prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False)
        speeds = {f"llama.cpp {f}": llama_cpp_speed(files[f]["gguf"], list(prompt), args.tokens, args.repeats)
                  for f in ("gguf-q8_0", "gguf-q4_0", "gguf-f16")}
        for precision in ("auto", "4bit"):
            measured = engine_speed(precision, messages, args.tokens, args.repeats)
            speeds[f"this app's engine, {measured.pop('precision')} ({precision})"] = measured
        results["decode"] = {"prompt_tokens": len(prompt), "tokens": args.tokens, **speeds}
        lines += ["", f"| engine ({len(prompt)}-token prompt, {args.tokens} greedy tokens) | decode tokens/s | "
                      "first token |", "|---|---|---|"]
        lines += [f"| {name} | {v['decode_tokens_per_s']:.1f} | {v['first_token_s']:.2f} s |"
                  for name, v in speeds.items()]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
