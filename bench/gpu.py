"""GPU benchmark: the CUDA path end to end, for the README's hardware table.

    python bench/gpu.py [--model SOURCE ...] [--random-weights SmolLM2-1.7B-Instruct ...] [--tokenizer DIR]

For each model: a short QLoRA run (4-bit NF4, bf16 compute, double quantisation, as the app trains on
CUDA), then the engine as the app loads it on CUDA (``--precision auto``), with the run's adapter:

- training: real tokens/s (median of the logged steps after the first), peak GPU memory, first and
  last loss;
- load: seconds, the weights' footprint, GPU memory allocated after loading (the footer's figure);
- one visitor alone: time to first token and decode tokens/s, greedy, --tokens new tokens;
- 8 and 16 visitors at once (every other one through the run's adapter): aggregate tokens/s, the
  ratio to one alone, the slowest first token, peak GPU memory, and how many of the 8 greedy replies
  equal the same question asked alone.

A machine that cannot reach the Hub (a lent GPU box here) measures ``--random-weights NAME``: a
model of that SmolLM2 size's exact shape (``SHAPES``) with random weights and the embedded model's
tokenizer. Speed and memory do not depend on the weights' values; the replies' words mean nothing, and
a random model rarely ends its turn early, so every reply runs to --tokens. Writes bench/results/gpu.json.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results" / "gpu.json"
QUESTIONS = ["Tell me about the work you are proudest of, and why.", "What does an ordinary day look like for you?",
             "Who taught you the most, and what did they teach you?", "What are you afraid of?"]
PRESETS = ["Ludwig van Beethoven", "Socrates", "Cleopatra VII", "Isaac Newton", "Julius Caesar", "Spartacus",
           "Martin Luther King Jr.", "Marisol Vega"]
# The published configs of the SmolLM2 instruct models (the embedded 135M, and the GPU default).
_SMOLLM2 = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 49152,
            "max_position_embeddings": 8192, "hidden_act": "silu", "rms_norm_eps": 1e-5, "tie_word_embeddings": True,
            "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 2}
SHAPES = {
    "SmolLM2-135M-Instruct": {**_SMOLLM2, "hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30,
                              "num_attention_heads": 9, "num_key_value_heads": 3, "rope_theta": 100000.0},
    "SmolLM2-1.7B-Instruct": {**_SMOLLM2, "hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 24,
                              "num_attention_heads": 32, "num_key_value_heads": 32, "rope_theta": 130000.0},
}
TOKENIZER_FILES = ["tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "generation_config.json"]


def greedy(tokens: int):
    from engine import SamplingOptions

    return SamplingOptions(temperature=0, max_new_tokens=tokens, repetition_penalty=1.0)


def random_model(name: str, tokenizer: Path, folder: Path) -> Path:
    """A model folder of ``name``'s shape with random bf16 weights and ``tokenizer``'s files."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(LlamaConfig(**SHAPES[name]), dtype=torch.bfloat16)
    model.save_pretrained(folder)
    for file in TOKENIZER_FILES:
        if (tokenizer / file).is_file():
            shutil.copy(tokenizer / file, folder / file)
    return folder


def dataset(folder: Path) -> Path:
    """Training examples of a realistic length: a preset's meta prompt, a question, a profile paragraph."""
    from characters.store import CharacterStore
    from engine.roleplay import turn_messages

    store = CharacterStore()
    rows = []
    for name in PRESETS[:7]:
        character = store.load(name)
        for i, paragraph in enumerate(character.sims.profile):
            messages = turn_messages(character, None, [], QUESTIONS[i % len(QUESTIONS)])
            rows.append({"messages": [*messages, {"role": "assistant", "content": paragraph}],
                         "kind": "experience", "source": "profile"})
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "dataset.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def training(source: str, data: Path, runs: Path, steps: int, batch_size: int) -> dict:
    import torch

    from training.qlora import RunOptions, train

    folder = runs / "gpu-run"
    torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    train(RunOptions(character="Ludwig van Beethoven", dataset=str(data), model=source, preset="quick",
                     max_steps=steps, batch_size=batch_size, max_seq_len=1024, eval_split=0.0, save_steps=10**6,
                     output_dir=str(folder), seed=3), folder)
    log = [json.loads(line) for line in (folder / "log.jsonl").read_text().splitlines()]
    rows = [r for r in log if r.get("loss") is not None]
    return {"steps": steps, "batch_size": batch_size, "seconds": round(time.perf_counter() - started, 1),
            "tokens_per_s": statistics.median(r["tokens_per_s"] for r in rows[1:]),
            "first_loss": rows[0]["loss"], "last_loss": rows[-1]["loss"],
            "peak_gpu_mb": round(torch.cuda.max_memory_allocated() / 2**20)}


def crowd(engine, characters, count: int, tokens: int, adapter: str) -> dict:
    """``count`` visitors at once (every other one through ``adapter``), each streaming one greedy reply."""
    import torch

    from engine.roleplay import turn_messages

    sampling = greedy(tokens)
    results: list[dict] = [{} for _ in range(count)]
    start = threading.Barrier(count)

    def visit(i: int) -> None:
        character = characters[i % len(characters)]
        messages = turn_messages(character, None, [], QUESTIONS[i % len(QUESTIONS)])
        start.wait()
        stats: dict = {}
        text = "".join(engine.stream(messages, sampling, adapter if i % 2 else None, stats=stats))
        results[i] = {**stats, "text": text, "done": time.perf_counter()}

    torch.cuda.reset_peak_memory_stats()
    threads = [threading.Thread(target=visit, args=(i,)) for i in range(count)]
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = max(r["done"] for r in results) - began
    new = sum(r["new_tokens"] for r in results)
    return {"visitors": count, "tokens": new, "wall_s": round(wall, 2), "tokens_per_s": round(new / wall, 1),
            "first_token_median_s": round(statistics.median(r["first_token_s"] for r in results), 3),
            "first_token_worst_s": round(max(r["first_token_s"] for r in results), 3),
            "peak_gpu_mb": round(torch.cuda.max_memory_allocated() / 2**20), "texts": [r["text"] for r in results]}


def serving(runs: Path, tokens: int, precision: str) -> dict:
    import torch

    from characters.store import CharacterStore
    from engine import Engine, EngineOptions
    from engine.roleplay import turn_messages

    engine = Engine(EngineOptions(precision=precision), adapters_dir=runs)
    usage = engine.usage()
    store = CharacterStore()
    characters = [store.load(name) for name in PRESETS]
    crowd(engine, characters, 2, 8, "gpu-run")  # warm-up: CUDA kernels, the adapter's first load
    alone = crowd(engine, characters, 1, tokens, "gpu-run")
    rows = {"alone": alone}
    for count in (8, 16):
        engine.prefix_cache.clear()
        rows[count] = crowd(engine, characters, count, tokens, "gpu-run")
        rows[count]["x_alone"] = round(rows[count]["tokens_per_s"] / alone["tokens_per_s"], 2)
    # The 8 greedy replies, each asked alone (odd visitors through the adapter), against the crowd's.
    same = 0
    for i in range(8):
        engine.prefix_cache.clear()
        messages = turn_messages(characters[i], None, [], QUESTIONS[i % len(QUESTIONS)])
        text = "".join(engine.stream(messages, greedy(tokens), "gpu-run" if i % 2 else None))
        same += text == rows[8]["texts"][i]
    for row in rows.values():
        row.pop("texts")
    return {"model": engine.name, "precision": engine.precision, "reason": engine.precision_reason,
            "device": torch.cuda.get_device_name(), "load_s": round(engine.load_seconds, 1),
            "weights_mb": round(usage["model_mb"]), "after_load": usage["device_memory"],
            "alone": rows["alone"], "crowd_8": rows[8], "crowd_16": rows[16], "greedy_8_same_as_alone": same}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", nargs="*", default=[], help="Hub ids or folders to measure.")
    parser.add_argument("--random-weights", nargs="*", default=[], choices=sorted(SHAPES))
    parser.add_argument("--tokenizer", default=str(ROOT / "user_data" / "models" / "SmolLM2-135M-Instruct"),
                        help="Tokenizer files for --random-weights (the embedded model's converted folder).")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--precisions", nargs="+", default=["auto"],
                        help="Serving precisions (auto = 4-bit NF4 on CUDA); training is always QLoRA 4-bit.")
    parser.add_argument("--tokens", type=int, default=64)
    args = parser.parse_args()

    import torch

    if not torch.cuda.is_available():
        sys.exit("bench/gpu.py needs a CUDA GPU")
    work = Path(tempfile.mkdtemp(prefix="simulacra-gpu-"))
    sources = [(m, m, False) for m in args.model]
    sources += [(name, str(random_model(name, Path(args.tokenizer), work / name)), True) for name in args.random_weights]
    data = dataset(work / "dataset")
    # A model measured in an earlier run stays in the file, with its own date and GPU, until measured again.
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {"models": {}}
    for name, source, random in sources:
        runs = work / f"runs-{Path(name).name}"
        row = {"measured": time.strftime("%Y-%m-%d"), "gpu": torch.cuda.get_device_name(), "torch": torch.__version__,
               "random_weights": random, "training": training(source, data, runs, args.steps, args.batch_size)}
        os.environ["SIMULACRA_MODEL"] = source  # the app's model variable: the engine resolves it as the app does
        row["serving"] = {}
        for precision in args.precisions:
            row["serving"][precision] = serving(runs, args.tokens, precision)
            gc.collect()
            torch.cuda.empty_cache()
        results["models"][name] = row
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))


def table(results: dict) -> str:
    lines = ["| model, precision | GPU, date | train tokens/s | train peak GPU MB | load s | weights MB | alone tokens/s | alone first "
             "token s | 8 at once tokens/s (× alone) | 16 at once (× alone) | worst first token, 16 | greedy 8 = alone |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for (name, row), (precision, s) in ((m, p) for m in results["models"].items() for p in m[1]["serving"].items()):
        t = row["training"]
        lines.append(
            f"| {name}{' (random weights)' if row['random_weights'] else ''}, {s['precision']} ({precision}) | {row['gpu']}, {row['measured']} | "
            f"{t['tokens_per_s']:.0f} | {t['peak_gpu_mb']} | {s['load_s']} | {s['weights_mb']} | "
            f"{s['alone']['tokens_per_s']} | {s['alone']['first_token_median_s']} | "
            f"{s['crowd_8']['tokens_per_s']} ({s['crowd_8']['x_alone']}×) | "
            f"{s['crowd_16']['tokens_per_s']} ({s['crowd_16']['x_alone']}×) | {s['crowd_16']['first_token_worst_s']} | "
            f"{s['greedy_8_same_as_alone']}/8 |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
