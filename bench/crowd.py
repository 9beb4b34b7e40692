"""Crowd benchmark: 1, 4, 8 and 16 visitors at once through the HTTP API (continuous batching).

    .venv/bin/python bench/crowd.py [--visitors 1 4 8 16] [--tokens 64] [--precisions auto 4bit]

Starts the app's server once for each precision, each in a process of its own. Visitor i chats with preset
character i % 10; every other visitor speaks through an adapter of the quick preset's shape (rank 16
on every default target; random values, since an adapter's cost does not depend on them), so base
rows and adapter rows share the batch. Each visitor streams one question through the official
`openai` client to /v1/chat/completions, greedy, at most --tokens new tokens, and all of them start
at once. The visitors' clients run in a process of their own (`--clients process`, the default), as a
load tester such as vLLM's `benchmark_serving` does: visitors are on other machines, and clients in
the server's process would share its GIL (`--clients thread` runs them there, for comparison; on
2 cores they share the CPU either way). Two rounds a crowd size:

- **opened**: each visitor's chat was opened first (one earlier question, not timed), so its system
  prompt is in the prefix cache, as the Chat tab's read-ahead leaves it;
- **fresh**: the prefix cache is emptied first, so every prompt is read whole, all at once.

Aggregate tokens/s is the completion tokens of all visitors over the wall time from the start to the
last reply; time to first token is from a visitor's call to its first text. The ratio is against
one visitor alone, in the same run. The replies of the 8 opened visitors are compared with the same
questions asked one at a time. Memory is the process's peak resident set. Writes
bench/results/crowd.json (a precision measured in an earlier run stays there, with its date, until it is
measured again).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
RESULTS = ROOT / "bench" / "results" / "crowd.json"
ADAPTER = "crowd-lora"
QUESTIONS = ["Tell me about the work you are proudest of, and why.", "What does an ordinary day look like for you?",
             "Who taught you the most, and what did they teach you?", "What are you afraid of?"]


class PeakMemory(threading.Thread):
    """Samples the process's resident memory every 50 ms; ``peak`` is the largest seen since ``reset``."""

    def __init__(self):
        super().__init__(daemon=True)
        import psutil

        self.process, self.peak = psutil.Process(), 0

    def reset(self) -> None:
        self.peak = self.process.memory_info().rss

    def run(self) -> None:
        while True:
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.05)


def visitor_models(count: int, names: list[str]) -> list[str]:
    return [names[i % len(names)] + (f"@{ADAPTER}" if i % 2 else "") for i in range(count)]


def ask(client, model: str, question: str, tokens: int, start: float | None = None) -> dict:
    """One streamed question; times are from ``start`` (the crowd's start) or from the call."""
    started = start if start is not None else time.perf_counter()
    stream = client.chat.completions.create(model=model, messages=[{"role": "user", "content": question}],
                                            temperature=0, max_tokens=tokens, stream=True,
                                            stream_options={"include_usage": True})
    first, text, usage = None, "", None
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            if first is None:
                first = time.perf_counter() - started
            text += chunk.choices[0].delta.content
        if chunk.usage:
            usage = chunk.usage.completion_tokens
    return {"ttft_s": first, "done_s": time.perf_counter() - started, "text": text, "tokens": usage or 0}


def new_client(url: str):
    import openai

    return openai.OpenAI(base_url=url, api_key="unused", max_retries=0, timeout=600)


def crowd(url: str, models: list[str], questions: list[str], tokens: int) -> dict:
    """Every visitor at once, each with a client of its own; aggregate tokens/s and times to first token."""
    clients = [new_client(url) for _ in models]
    results: list[dict | None] = [None] * len(models)
    barrier = threading.Barrier(len(models) + 1)

    def visit(i):
        barrier.wait()
        results[i] = ask(clients[i], models[i], questions[i], tokens, start)

    threads = [threading.Thread(target=visit, args=(i,)) for i in range(len(models))]
    for thread in threads:
        thread.start()
    start = time.perf_counter()
    barrier.wait()
    for thread in threads:
        thread.join()
    wall = max(r["done_s"] for r in results)
    ttfts = [r["ttft_s"] for r in results if r["ttft_s"] is not None]
    return {"visitors": len(models), "wall_s": wall, "tokens": sum(r["tokens"] for r in results),
            "tokens_per_s": sum(r["tokens"] for r in results) / wall,
            "ttft_median_s": statistics.median(ttfts) if ttfts else None, "ttft_worst_s": max(ttfts, default=None),
            "texts": [r["text"] for r in results]}


def measure(precision: str, sizes: list[int], tokens: int, port: int, decode_threads: int = 0,
            clients_in: str = "process") -> dict:
    from characters.store import CharacterStore
    from conftest import random_lora
    from engine import Engine, EngineOptions
    from engine.cpu import on_short_lived_thread
    from training.qlora import PRESETS, TARGETS
    from ui.app import server

    engine = Engine(EngineOptions(precision=precision, max_batch_rows=max(sizes), decode_threads=decode_threads))
    folder = Path(tempfile.mkdtemp()) / ADAPTER
    # Tensor work on this thread would give it an OpenMP team for good, and slow every pass (engine.cpu).
    on_short_lived_thread(lambda: random_lora(engine.source, folder, TARGETS.split(","), PRESETS["quick"]["lora_r"],
                                              PRESETS["quick"]["lora_alpha"], std=0.02))
    engine.add_adapter(ADAPTER, folder)
    serving = server(engine, "127.0.0.1", port)
    threading.Thread(target=serving.run, daemon=True).start()
    while not serving.started:
        time.sleep(0.1)
    memory = PeakMemory()
    memory.start()
    names = sorted(CharacterStore().names())[:10]
    url = f"http://127.0.0.1:{port}/v1"
    clients = [new_client(url) for _ in range(max(sizes))]
    # One process for the timed crowds' clients, started once (spawned: a fork would copy the server's threads).
    visitors = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) if clients_in == "process" else None
    ask(clients[0], visitor_models(2, names)[1], "Hello!", 8)  # warm-up: loads the adapter

    rows = []
    for size in sizes:
        models = visitor_models(size, names)
        questions = [QUESTIONS[i % len(QUESTIONS)] for i in range(size)]
        for mode in ("opened", "fresh"):
            engine.prefix_cache.clear()
            if mode == "opened":  # each chat opened with an earlier question, as a visitor's chat would be
                for client, model in zip(clients, models):
                    ask(client, model, "Good evening! How are you?", 1)
            memory.reset()
            steps, row_steps = engine.scheduler.steps, engine.scheduler.row_steps
            timed = (visitors.submit(crowd, url, models, questions, tokens).result() if visitors
                     else crowd(url, models, questions, tokens))
            row = {"precision": engine.precision, "mode": mode, **timed, "peak_rss_mb": memory.peak / 2**20}
            row["mean_batch_rows"] = (engine.scheduler.row_steps - row_steps) / max(1, engine.scheduler.steps - steps)
            rows.append(row)
            print(f"  {precision} {mode} {size}: {row['tokens_per_s']:.1f} tokens/s, first token median "
                  f"{row['ttft_median_s']:.2f} s, worst {row['ttft_worst_s']:.2f} s", flush=True)
    # The same questions one at a time, for the replies of the crowd of 8 (opened).
    same = None
    eight = next((r for r in rows if r["visitors"] == 8 and r["mode"] == "opened"), None)
    if eight:
        models = visitor_models(8, names)
        alone = []
        for i, model in enumerate(models):
            engine.prefix_cache.clear()
            ask(clients[i], model, "Good evening! How are you?", 1)
            alone.append(ask(clients[i], model, QUESTIONS[i % len(QUESTIONS)], tokens)["text"])
        same = sum(a == b for a, b in zip(alone, eight["texts"]))
    serving.should_exit = True
    if visitors:
        visitors.shutdown()
    time.sleep(1)
    alone_rate = {mode: next(r["tokens_per_s"] for r in rows if r["visitors"] == 1 and r["mode"] == mode)
                  for mode in ("opened", "fresh")} if 1 in sizes else {}
    for row in rows:
        if alone_rate:
            row["ratio_to_one"] = row["tokens_per_s"] / alone_rate[row["mode"]]
        del row["texts"]
    return {"precision": engine.precision, "precision_reason": engine.precision_reason, "clients": clients_in,
            "decode_threads": engine.decode_threads, "threads": engine.threads, "rows": rows,
            "greedy_replies_same_alone_and_in_8": same}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--visitors", type=int, nargs="+", default=[1, 4, 8, 16])
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--precisions", nargs="+", default=["auto", "4bit"])
    parser.add_argument("--port", type=int, default=7941)
    parser.add_argument("--decode-threads", type=int, default=0, help="the engine's decode_threads (0: auto)")
    parser.add_argument("--clients", choices=("process", "thread"), default="process",
                        help="where the timed visitors' clients run: a process of their own, or threads of the server's")
    args = parser.parse_args()

    from engine.cpu import speed_features

    runs = []
    for k, precision in enumerate(args.precisions):
        # Each precision in a process of its own: an engine's model thread keeps its OpenMP team while the process
        # lives, and with a second one the process holds more OpenMP threads than CPUs (engine.cpu), which slowed
        # the precision measured second by up to a third.
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as alone:
            runs.append(alone.submit(measure, precision, args.visitors, args.tokens, args.port + k,
                                     args.decode_threads, args.clients).result())
    for run in runs:
        run["measured"] = time.strftime("%Y-%m-%d %H:%M")
    # A precision measured in an earlier run stays in the JSON (with its date) until it is measured again.
    earlier = json.loads(RESULTS.read_text()).get("runs", []) if RESULTS.is_file() else []
    runs += [r for r in earlier if r["precision"] not in {run["precision"] for run in runs}]
    results = {"cpu_features": speed_features(), "tokens": args.tokens, "runs": runs}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"CPU features: {results['cpu_features']}; {args.tokens} new tokens a visitor, greedy\n"
          "| precision | chats | visitors | tokens/s, all | × one alone | first token median | worst | "
          "mean batch | peak memory |\n|---|---|---|---|---|---|---|---|---|")
    for run in results["runs"]:
        for r in run["rows"]:
            print(f"| {r['precision']} | {r['mode']} | {r['visitors']} | {r['tokens_per_s']:.1f} | "
                  f"{r.get('ratio_to_one', float('nan')):.2f} | {r['ttft_median_s']:.2f} s | {r['ttft_worst_s']:.2f} s | "
                  f"{r['mean_batch_rows']:.1f} | {r['peak_rss_mb']:.0f} MB |")
        if run["greedy_replies_same_alone_and_in_8"] is not None:
            print(f"{run['precision']} (measured {run['measured']}, decode steps on {run.get('decode_threads')} of "
                  f"{run.get('threads')} threads): {run['greedy_replies_same_alone_and_in_8']} "
                  "of 8 greedy replies the same alone and in the crowd of 8")


if __name__ == "__main__":
    main()
