"""Eight browser tabs chat at once: issue 16's "done when", measured in headless Chromium.

    .venv/bin/python bench/tabs.py [--tabs 8] [--question "…"]

Starts `python app.py` (the default options: the embedded model, `--precision auto`) on a fresh data
folder, opens one Chromium context (a visitor) per tab, and in each opens a chat in the Chat tab: four
characters, two of them trained (the shipped adapters), two tabs each. Once every chat is open and the
app is quiet (every prompt read ahead, as the tab does), every tab sends the same question within a few milliseconds. For each
tab it records the seconds from its Enter to the model's first words on the page (after the folded note of
the memories used) and to the end of the reply
(the text unchanged for 4 s, less those 4 s), and checks the reply: one speaker (no other speaker's
"Name:" line, engine.turn_end) and not degenerate (evaluation.metrics). Writes bench/results/tabs.json,
one entry for each memory switch (--memory on|off).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
RESULTS = ROOT / "bench" / "results" / "tabs.json"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
# Four characters, two of them trained: (character, adapter or None).
VISITORS = [("Ludwig van Beethoven", "ludwig-van-beethoven-trained"), ("Socrates", "socrates-trained"),
            ("Hazel Thornbury", None), ("Cleopatra VII", None)]
STABLE_S = 4.0
MEMORIES_TITLE = "Memories used"  # ui.chat_tab's, as the page shows it


def cpu_features() -> str:
    flags = Path("/proc/cpuinfo").read_text().split("flags", 1)[1].split("\n", 1)[0] if Path("/proc/cpuinfo").exists() else ""
    kind = "AVX-512 BF16" if "avx512_bf16" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    return f"{platform.processor() or platform.machine()}, {kind}"


def choose(page, elem_id: str, value: str) -> None:
    """Pick ``value`` in the Gradio dropdown ``#elem_id`` as a visitor does: open it, click the option."""
    box = page.locator(f"#{elem_id} input")
    box.click()
    box.fill(value)
    page.get_by_role("option", name=value, exact=True).click()
    page.wait_for_function(f"document.querySelector('#{elem_id} input').value === {json.dumps(value)}")


def open_chat(page, url: str, character: str, adapter: str | None) -> None:
    page.goto(url)
    page.get_by_role("tab", name="Chat").click()
    choose(page, "chat-character", character)
    settled(page)  # the new chat is made and its prompt read ahead
    if adapter:
        choose(page, "chat-adapter", adapter)
        settled(page)


def settled(page) -> None:
    """No component is waiting for the server (Gradio marks those "pending")."""
    page.wait_for_timeout(500)
    page.wait_for_function("document.querySelectorAll('.pending, .generating').length === 0", timeout=120_000)


def quiet(pid: int, seconds: float = 120) -> None:
    """Wait until the app's process uses under a tenth of a core for two seconds running."""
    import psutil

    process, calm, deadline = psutil.Process(pid), 0, time.time() + seconds
    while calm < 2 and time.time() < deadline:
        calm = calm + 1 if process.cpu_percent(interval=1.0) < 10 else 0


def reply_text(page, question: str) -> str | None:
    """The reply after the visitor's question on the page, without the folded note of the memories used;
    None before the question shows."""
    bots = page.evaluate("""(question) => {
        const all = [...document.querySelectorAll("[data-testid='user'], [data-testid='bot']")];
        const isUser = e => e.getAttribute("data-testid") === "user";
        let asked = -1;
        all.forEach((e, i) => { if (isUser(e) && e.innerText.includes(question)) asked = i; });
        return asked < 0 ? null : all.slice(asked + 1).filter(e => !isUser(e)).map(e => e.innerText);
    }""", question)
    if bots is None:
        return None
    return "\n".join(text for text in bots if not text.startswith(MEMORIES_TITLE)).strip()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tabs", type=int, default=8)
    parser.add_argument("--question", default="Good evening! What did you do today?")
    parser.add_argument("--memory", choices=["on", "off"], default="on",
                        help="the Chat tab's memory switch (on by default, as in the app)")
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    from conftest import free_port, start_app
    from engine.turn_end import other_speaker_at
    from evaluation.metrics import degenerate

    data = Path(tempfile.mkdtemp(prefix="tabs-"))
    port = free_port()
    app, _ = start_app(port, ["--data-dir", str(data)], data / "app.log", timeout=300)
    url = f"http://127.0.0.1:{port}/"
    plan = [VISITORS[i % len(VISITORS)] for i in range(args.tabs)]
    rows = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
            pages = []
            for character, adapter in plan:
                page = browser.new_context(viewport={"width": 1300, "height": 900}).new_page()
                page.set_default_timeout(120_000)
                open_chat(page, url, character, adapter)
                if args.memory == "off":
                    page.locator("#chat-memory input[type=checkbox]").uncheck()
                pages.append(page)
            quiet(app.pid)  # every chat's read-ahead done, as for a class that opened its chats a minute ago
            sent = []
            for page in pages:
                page.get_by_placeholder("Say something in character…").fill(args.question)
            for page in pages:
                page.get_by_placeholder("Say something in character…").press("Enter")
                sent.append(time.perf_counter())
            first = [None] * len(pages)
            last_change = list(sent)
            texts = [""] * len(pages)
            deadline = time.perf_counter() + 600
            while time.perf_counter() < deadline:
                now = time.perf_counter()
                for i, page in enumerate(pages):
                    text = reply_text(page, args.question) or ""
                    if text.strip() and first[i] is None:
                        first[i] = now - sent[i]
                    if text != texts[i]:
                        texts[i], last_change[i] = text, now
                if all(f is not None for f in first) and all(now - c > STABLE_S for c in last_change):
                    break
                time.sleep(0.1)
            for i, (character, adapter) in enumerate(plan):
                reply = texts[i]
                rows.append({"tab": i + 1, "character": character, "adapter": adapter or "—",
                             "first_words_s": round(first[i], 2) if first[i] is not None else None,
                             "reply_s": round(last_change[i] - sent[i], 2), "chars": len(reply),
                             "one_speaker": other_speaker_at(reply, character) is None,
                             "degenerate": degenerate(reply), "reply": reply})
            browser.close()
    finally:
        app.kill()
        app.wait(timeout=30)

    firsts = [r["first_words_s"] for r in rows if r["first_words_s"] is not None]
    summary = {"date": time.strftime("%Y-%m-%d"), "cpu": cpu_features(), "tabs": args.tabs, "memory": args.memory,
               "question": args.question, "first_words_median_s": statistics.median(firsts) if firsts else None,
               "first_words_worst_s": max(firsts, default=None),
               "all_first_words": len(firsts) == len(rows),
               "one_speaker": sum(r["one_speaker"] for r in rows), "degenerate": sum(r["degenerate"] for r in rows),
               "rows": rows}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    results[f"memory {args.memory}"] = summary  # the other switch's latest run stays, with its date
    RESULTS.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    print(f"{args.tabs} Chromium tabs at once, memory {args.memory}, {summary['cpu']}, {summary['date']}: "
          f"\"{args.question}\"")
    print("| tab | character | adapter | first words | reply ends | chars | one speaker | degenerate |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['tab']} | {r['character']} | {r['adapter']} | {r['first_words_s']} s | {r['reply_s']} s | "
              f"{r['chars']} | {'yes' if r['one_speaker'] else 'NO'} | {'YES' if r['degenerate'] else 'no'} |")
    print(f"first words: median {summary['first_words_median_s']} s, worst {summary['first_words_worst_s']} s; "
          f"one speaker {summary['one_speaker']}/{len(rows)}; degenerate {summary['degenerate']}/{len(rows)}")
    for r in rows:
        print(f"\n[{r['tab']}] {r['character']} ({r['adapter']}): {r['reply']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
