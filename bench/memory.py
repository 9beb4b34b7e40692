"""Memory retrieval benchmark: does a question in other words find the fact it asks about, and how fast?

    .venv/bin/python bench/memory.py

36 questions about three preset characters, each written in other words than the fact it asks about
(most share no content word with it: "Who paid for your keep?" for "Archduke Rudolph, Prince Lobkowitz
and Prince Kinsky gave me a yearly stipend from 1809."). Every memory of the character competes: its
facts and every sentence of its profile. A hit at k: a memory that holds the answer (the fact, or a
profile sentence that says it, found by the answer's words listed beside each question) is among the
first k. Times: building a character's memory vectors (once per character), reading them back from
disk (as a restarted app does), and a turn (embedding the message and ranking), median of the 36.
Writes bench/results/memory.json.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results" / "memory.json"
# (question, words that mark a memory holding the answer: the fact, or a profile sentence that says it)
QUESTIONS = {
    "Ludwig van Beethoven": [
        ("Who paid for your keep?", ["stipend"]), ("Where did you come into the world?", ["born in Bonn", "baptised"]),
        ("Who was your dad and what did he do?", ["father Johann"]), ("Did you ever take a wife?", ["never married"]),
        ("When did you go deaf?", ["hearing"]), ("How many sonatas for the keyboard have you composed?", ["thirty-two"]),
        ("Who looked after your brother's boy?", ["guardian"]),
        ("How do people speak with you now that you cannot hear?", ["conversation books"]),
        ("Which poem did you put into your last symphony?", ["Ode to Joy"]),
        ("Who taught you singing composition?", ["Salieri"]),
        ("Which instrument did you play in the orchestra back home?", ["viola"]),
        ("Which emperor made you angry?", ["Napoleon"]), ("When did your mum pass away?", ["mother died"]),
        ("Whom did you write to as your secret love?", ["Immortal Beloved"])],
    "Isaac Newton": [
        ("Who funded the publication of your great book?", ["Halley"]),
        ("Which academic chair did you hold at the university?", ["Lucasian"]),
        ("What did you do while the sickness closed the university?", ["plague"]),
        ("Who looks after your home?", ["Catherine Barton"]),
        ("With whom do you fight over credit for your mathematics?", ["Leibniz"]),
        ("Which monarch gave you a title?", ["knighted"]),
        ("What made you wonder about the pull that holds the Moon?", ["apple"]),
        ("Did you have a spouse?", ["never married"]), ("What did you find out about sunlight?", ["white light"]),
        ("What kind of instrument for viewing the stars did you make?", ["telescope"]),
        ("What do you do about people who forge coins?", ["counterfeit"])],
    "Socrates": [
        ("Who were your parents, and what work did they do?", ["stonemason", "Phaenarete"]),
        ("Who is the woman you married?", ["Xanthippe"]), ("Do you take money from your students?", ["fee"]),
        ("How did they put you to death?", ["hemlock"]),
        ("Did you ever serve as a soldier?", ["hoplite", "Potidaea", "Delium"]),
        ("Which playwright made fun of you?", ["Aristophanes"]),
        ("What do the gods tell you through the voice inside?", ["daimonion", "divine sign"]),
        ("Did your friends try to get you out of prison?", ["Crito"]),
        ("Where can I read your works?", ["never written", "never wrote", "wrote nothing"]),
        ("What was the charge against you?", ["impiety"]),
        ("Where can one find you most afternoons?", ["agora"])],
}


def main() -> None:
    from characters.store import CharacterStore
    from engine import Engine
    from engine.cpu import speed_features
    from engine.memory import Memory

    engine = Engine()
    store = CharacterStore()
    # An empty folder (removed at exit), so the vectors are computed; a second Memory (as a restarted app)
    # then reads them back.
    scratch = tempfile.TemporaryDirectory(prefix="memory-vectors-")
    engine.cache_dir = Path(scratch.name)
    memory, reloaded = Memory(engine), Memory(engine)
    ranks, turns, builds, misses = [], [], {}, []
    for name, questions in QUESTIONS.items():
        character = store.load(name)
        started = time.perf_counter()
        index = memory.index(character)
        computed = time.perf_counter() - started
        started = time.perf_counter()
        reloaded.index(character)
        builds[name] = {"memories": len(index.items), "seconds": round(computed, 2),
                        "from_disk_seconds": round(time.perf_counter() - started, 3)}
        for question, answers in questions:
            started = time.perf_counter()
            ranked = memory.recall(character, question, k=len(index.items))
            turns.append(time.perf_counter() - started)
            rank = min(i for i, r in enumerate(ranked) if any(a.lower() in r.text.lower() for a in answers))
            ranks.append(rank)
            if rank >= 3:
                misses.append({"character": name, "question": question, "rank": rank + 1, "first": ranked[0].text})
    results = {"model": engine.name, "precision": engine.precision, "cpu_features": speed_features(),
               "questions": len(ranks), "hit_at_1": sum(r == 0 for r in ranks), "hit_at_3": sum(r < 3 for r in ranks),
               "turn_ms_median": round(1000 * statistics.median(turns), 1), "turn_ms_worst": round(1000 * max(turns), 1),
               "index": builds, "misses": misses}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    n = len(ranks)
    print(f"{engine.name}, {engine.precision}, CPU: {results['cpu_features']}\n")
    print("| questions | answer first | answer in top 3 | a turn, median | worst | memory vectors of a character |")
    print("|---|---|---|---|---|---|")
    build = ", ".join(f"{k.split()[-1]} {v['memories']} in {v['seconds']} s ({v['from_disk_seconds']} s from disk)"
                      for k, v in builds.items())
    print(f"| {n} | {results['hit_at_1']} ({results['hit_at_1'] / n:.0%}) | {results['hit_at_3']} "
          f"({results['hit_at_3'] / n:.0%}) | {results['turn_ms_median']} ms | {results['turn_ms_worst']} ms | {build} |")
    for miss in misses:
        print(f"missed: {miss['character']}: {miss['question']!r} -> rank {miss['rank']}, first {miss['first']!r}")


if __name__ == "__main__":
    main()
