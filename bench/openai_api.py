"""The OpenAI-compatible endpoint against Gradio's /chat: time to first token for the same request.

    .venv/bin/python bench/openai_api.py [--repeats 9] [--precision auto]

Starts the app's server in this process. Each round sends one question to both endpoints, streamed,
the same character (Beethoven) and settings, greedy, 32 new tokens: through the official `openai`
client to /v1/chat/completions and through `gradio_client` to /chat. The order alternates between
rounds, and each endpoint gets a question of its own (same length), so both find the character's
system prompt in the prefix cache and read only the new question, as a follow-up in a chat does.
Time to first token is from the call to the first non-empty text. Medians; writes
bench/results/openai_api.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results" / "openai_api.json"
CHARACTER = "Ludwig van Beethoven"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--port", type=int, default=7931)
    args = parser.parse_args()

    import openai
    from gradio_client import Client

    from engine import Engine, EngineOptions
    from engine.cpu import speed_features
    from ui.app import server

    engine = Engine(EngineOptions(precision=args.precision))
    serving = server(engine, "127.0.0.1", args.port)
    threading.Thread(target=serving.run, daemon=True).start()
    while not serving.started:
        time.sleep(0.1)
    url = f"http://127.0.0.1:{args.port}/"
    api = openai.OpenAI(base_url=url + "v1", api_key="unused", max_retries=0)
    gradio = Client(url, verbose=False)

    def via_openai(question: str) -> float:
        started = time.perf_counter()
        stream = api.chat.completions.create(model=CHARACTER, messages=[{"role": "user", "content": question}],
                                             temperature=0, max_tokens=32, stream=True)
        first = None
        for chunk in stream:
            if first is None and chunk.choices and chunk.choices[0].delta.content:
                first = time.perf_counter() - started
        return first

    def via_gradio(question: str) -> float:
        started = time.perf_counter()
        job = gradio.submit(question, [], CHARACTER, "", "", "", "User", 0.0, 32, -1, api_name="/chat")
        first = None
        for update in job:
            if first is None and update:
                first = time.perf_counter() - started
        return first

    endpoints = {"openai": via_openai, "gradio": via_gradio}
    times: dict[str, list[float]] = {name: [] for name in endpoints}
    for round_ in range(args.repeats + 1):  # round 0 warms both up (and reads the system prompt once)
        order = ["openai", "gradio"] if round_ % 2 == 0 else ["gradio", "openai"]
        for k, name in enumerate(order):
            seconds = endpoints[name](f"Question {round_}-{k}: what did you compose in year {1790 + round_}?")
            if round_:
                times[name].append(seconds)
    serving.should_exit = True

    medians = {name: statistics.median(values) for name, values in times.items()}
    results = {"model": engine.name, "precision": engine.precision, "cpu_features": speed_features(),
               "repeats": args.repeats, "ttft_s": times, "median_ttft_s": medians,
               "ratio_openai_to_gradio": medians["openai"] / medians["gradio"]}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"{engine.name}, {engine.precision}, CPU features: {results['cpu_features']}\n"
          f"| endpoint | median time to first token | target |\n|---|---|---|\n"
          f"| Gradio /chat (gradio_client) | {medians['gradio']:.3f} s | |\n"
          f"| /v1/chat/completions (openai client) | {medians['openai']:.3f} s | within 10 % of /chat |\n"
          f"| ratio /v1 : /chat | {results['ratio_openai_to_gradio']:.2f} | ≤ 1.10 |")


if __name__ == "__main__":
    main()
