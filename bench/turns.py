"""Chat turns: degeneration and other speakers' lines in the replies of ten presets to ten ordinary
questions, before and after turn endings, for a few sampling settings.

    .venv/bin/python bench/turns.py [--configs defaults,short,short-rep,short-cool,short-minp,cool,no-examples]
                                    [--precision auto|fp32|bf16|4bit] [--memory] [--trained]

Each reply is a character's turn in Character-LLM's interview setting, all 100 generated at once through
the engine's continuous batching (reply i sampled with seed + i; the settings of earlier runs went
ten at a time with one seeded sampler a batch) and then ended as the Chat tab ends it (engine.turn_end: before another speaker's line; at the last whole sentence when the
token limit cuts it); each setting is reported raw (before) and ended (after). Settings measured
in earlier runs stay in the JSON and the table, each with when it was measured. A reply is degenerate by
evaluation.metrics.degenerate (empty, looping, or a list of short fragments); "another speaker" counts
replies with a "Name:" line of someone else. Writes bench/results/turns.json.

``--memory`` brings each character's memories into its prompt, as the Chat tab does by default.
``--trained`` asks the shipped trained characters (``trained/``) instead of the ten presets, each through its
adapter with the bare meta prompt it was trained with, as Chat does when one is picked; each question three
times (three seeds), 90 replies a setting.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results" / "turns.json"
PRESETS = ["Ludwig van Beethoven", "Cleopatra VII", "Julius Caesar", "Socrates", "Isaac Newton", "Spartacus",
           "Martin Luther King Jr.", "Dez Okafor", "Hazel Thornbury", "Inès Moreau"]
QUESTIONS = ["What is your name and where do you live?", "Are you ready for tonight?", "What did you do today?",
             "Who is your closest friend?", "What do you fear most?", "What makes you happy?",
             "Tell me about your family.", "What are you working on these days?", "What would you like to eat?",
             "Where did you grow up?"]
CONFIGS = {  # the old chat defaults first; each is reported raw and with turn endings
    "defaults": {"temperature": 0.7, "top_p": 0.9, "repetition_penalty": 1.1, "max_new_tokens": 256},
    "short": {"temperature": 0.7, "top_p": 0.9, "repetition_penalty": 1.1, "max_new_tokens": 128},
    "short-rep": {"temperature": 0.7, "top_p": 0.9, "repetition_penalty": 1.2, "max_new_tokens": 128},
    "short-cool": {"temperature": 0.5, "top_p": 0.9, "repetition_penalty": 1.15, "max_new_tokens": 128},
    "short-minp": {"temperature": 0.7, "top_p": 1.0, "min_p": 0.1, "repetition_penalty": 1.1, "max_new_tokens": 128},
    # The chat defaults (short-rep) at temperature 0.5, and with less of the persona: no dialogue examples.
    "cool": {"temperature": 0.5, "top_p": 0.9, "repetition_penalty": 1.2, "max_new_tokens": 128},
    "no-examples": {"temperature": 0.7, "top_p": 0.9, "repetition_penalty": 1.2, "max_new_tokens": 128,
                    "examples": False},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--precision", default="auto", help="the engine's precision (a run other than fp32 keeps "
                                                            "its settings apart, named with it)")
    parser.add_argument("--memory", action="store_true", help="memories in the prompt, as in Chat")
    parser.add_argument("--trained", action="store_true", help="the shipped trained characters through their adapters")
    args = parser.parse_args()

    from characters.meta_prompt import meta_prompt
    from characters.store import CharacterStore
    from engine import Engine, EngineOptions, SamplingOptions
    from engine.cpu import speed_features
    from engine.puzzlement import begun
    from engine.roleplay import turn_messages, with_memories
    from engine.shipped import shipped_adapters
    from engine.turn_end import SPEAKER_LINE, end_turn, is_own
    from evaluation.metrics import degenerate

    engine = Engine(EngineOptions(precision=args.precision))
    store = CharacterStore()
    if args.trained:  # (adapter, character) for each shipped trained character, each question asked thrice
        adapters = [(name, store.find(json.loads((folder / "simulacra.json").read_text())["character"]))
                    for name, folder in shipped_adapters(engine.source).items()]
        groups = [(adapter, [(c, q) for q in QUESTIONS * 3]) for adapter, c in adapters]
    else:
        groups = [(None, [(c, q) for q in QUESTIONS for c in (store.load(name) for name in PRESETS)])]
    results = {"model": engine.name, "cpu_features": speed_features(), "configs": {}}
    if RESULTS.is_file():  # settings measured in earlier runs are kept (each says when it was measured)
        results["configs"] = json.loads(RESULTS.read_text()).get("configs", {})
        for kept in results["configs"].values():  # measured before runs named their precision: all in fp32
            kept.setdefault("precision", "fp32")
    for name in args.configs.split(","):
        values = CONFIGS[name]
        sampling = SamplingOptions(**{k: v for k, v in values.items() if k != "examples"}, seed=args.seed)
        started, rows, asked = time.perf_counter(), {False: [], True: []}, []
        for adapter, pairs in groups:
            conversations = [turn_messages(c, None, [], q, trained=adapter is not None) for c, q in pairs]
            if not values.get("examples", True) and adapter is None:  # the persona without its dialogue examples
                for (character, _), messages in zip(pairs, conversations):
                    messages[0]["content"] = meta_prompt(character, examples=False)
            if args.memory:
                conversations = [with_memories(engine, c, m, {}, trained=adapter is not None)
                                 for (c, _), m in zip(pairs, conversations)]
            # All at once: the engine's continuous batching keeps its rows full as replies end.
            replies = engine.generate_batch(conversations, sampling, adapter=adapter)
            asked += zip(pairs, [begun(m) + reply for m, reply in zip(conversations, replies)])
        for (character, question), reply in asked:
            tokens = len(engine.tokenizer(reply)["input_ids"])
            ended = "".join(end_turn([reply], character.name, sampling.max_new_tokens, {"new_tokens": tokens}))
            for turn_endings, text in ((False, reply), (True, ended)):
                other = any((m := SPEAKER_LINE.match(line)) and not is_own(m.group(1), character.name)
                            for line in text.splitlines()[1:])
                rows[turn_endings].append({"character": character.name, "question": question, "reply": text,
                                           "degenerate": degenerate(text), "other_speaker": other,
                                           "words": len(text.split())})
        seconds = time.perf_counter() - started
        for turn_endings, got in rows.items():
            n = len(got)
            label = ", ".join([name] + [engine.precision] * (engine.precision != "fp32")
                              + ["memory"] * args.memory + ["trained"] * args.trained)
            results["configs"][f"{label}{' + turn endings' if turn_endings else ''}"] = {
                "sampling": values, "precision": engine.precision, "turn_endings": turn_endings, "replies": n,
                "memory": args.memory, "trained": args.trained,
                "seconds": seconds,
                "measured": time.strftime("%Y-%m-%d %H:%M"), "cpu_features": results["cpu_features"],
                "degenerate_share": sum(r["degenerate"] for r in got) / n,
                "other_speaker_share": sum(r["other_speaker"] for r in got) / n,
                "median_words": sorted(r["words"] for r in got)[n // 2], "rows": got}
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    print(f"{engine.name}, {engine.precision}, CPU features: {results['cpu_features']}; "
          f"{len(PRESETS)} presets × {len(QUESTIONS)} questions (trained: the shipped characters, each question "
          f"thrice), seed {args.seed}\n"
          "| settings | precision | characters | memory | turn endings | degenerate | another speaker's line "
          "| median words |\n|---|---|---|---|---|---|---|---|")
    for name, r in results["configs"].items():
        s = r["sampling"]
        print(f"| {name}: T {s['temperature']}, top-p {s['top_p']}, min-p {s.get('min_p', 0)}, "
              f"rep. {s['repetition_penalty']}, {'' if s.get('examples', True) else 'no dialogue examples, '}"
              f"{s['max_new_tokens']} tokens | {r['precision']} | {'trained' if r.get('trained') else 'presets'} | "
              f"{'yes' if r.get('memory') else 'no'} | {'yes' if r['turn_endings'] else 'no'} | "
              f"{r['degenerate_share']:.0%} | "
              f"{r['other_speaker_share']:.0%} | {r['median_words']} |")


if __name__ == "__main__":
    main()
