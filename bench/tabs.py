"""Eight browser tabs chat at once: issue 16's "done when", measured in headless Chromium.

    .venv/bin/python bench/tabs.py [--tabs 8] [--question "…"] [--memory on|off] [--browser-nice 19]

Starts `python app.py` (the default options: the embedded model, `--precision auto`) on a fresh data
folder, opens one Chromium context (a visitor) per tab, and in each opens a chat in the Chat tab: four
characters, two of them trained (the shipped adapters), two tabs each. Once every chat is open and the
app is quiet (every prompt read ahead, as the tab does), every tab sends the same question within a few
milliseconds. For each tab it records the seconds from its Enter to the model's first words on the page
(after the folded note of the memories used) and to the end of the reply (the text unchanged for 4 s, less
those 4 s), and checks the reply: one speaker (no other speaker's
"Name:" line, engine.turn_end) and not degenerate (evaluation.metrics). Writes bench/results/tabs.json,
one entry for each memory switch and browser priority.

A classroom's browsers run on the pupils' machines; here all eight run on the server's cores, and
rendering eight streaming chats took 1-1.8 of the 2 cores while the replies were written, leaving the app
a third to a half of them. So the pages time their own text (a MutationObserver, no polling from here),
and the browser's processes run at ``--browser-nice`` (19 by default: the app's work comes first, the
pages take what is left; 0 to let them compete as equals). The CPU seconds of the app and of the browser
during the replies are recorded beside the times.
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


# Kept by the page itself: when the reply after the question first shows words, and when it last changed
# (Date.now(), the clock time.time() reads). The reply leaves out the folded note of the memories used.
WATCH = """([question, memoriesTitle]) => {
    const seen = window.__reply = {text: "", first: null, last: null};
    const reply = () => {
        const all = [...document.querySelectorAll("[data-testid='user'], [data-testid='bot']")];
        const isUser = e => e.getAttribute("data-testid") === "user";
        let asked = -1;
        all.forEach((e, i) => { if (isUser(e) && e.innerText.includes(question)) asked = i; });
        if (asked < 0) return "";
        return all.slice(asked + 1).filter(e => !isUser(e)).map(e => e.innerText)
                  .filter(t => !t.startsWith(memoriesTitle)).join("\\n").trim();
    };
    new MutationObserver(() => {
        const text = reply(), now = Date.now();
        if (text && seen.first === null) seen.first = now;
        if (text !== seen.text) { seen.text = text; seen.last = now; }
    }).observe(document.body, {subtree: true, childList: true, characterData: true});
}"""


def browser_processes() -> list:
    """Chromium's processes: this process's descendants (Playwright's driver starts the browser)."""
    import psutil

    return [p for p in psutil.Process().children(recursive=True) if "chrom" in p.name().lower()]


def lower_priority(process, nice: int) -> None:
    """Every thread of ``process`` at ``nice``: Linux keeps a priority a thread, and renicing a process id
    changes its first thread only (the browser's threads that draw the pages kept theirs)."""
    import psutil

    try:
        for thread in process.threads():
            os.setpriority(os.PRIO_PROCESS, thread.id, nice)
    except (psutil.NoSuchProcess, ProcessLookupError):  # a renderer that ended
        pass


def cpu_seconds(processes) -> float:
    import psutil

    total = 0.0
    for p in processes:
        try:
            times = p.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:  # a renderer that ended
            pass
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tabs", type=int, default=8)
    parser.add_argument("--question", default="Good evening! What did you do today?")
    parser.add_argument("--memory", choices=["on", "off"], default="on",
                        help="the Chat tab's memory switch (on by default, as in the app)")
    parser.add_argument("--browser-nice", type=int, default=19,
                        help="the browser's CPU priority (19: the app first; 0: the browser competes as an equal)")
    args = parser.parse_args()

    import psutil
    from playwright.sync_api import sync_playwright

    from conftest import free_port, start_app
    from engine.cpu import speed_features
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
            for process in browser_processes():  # every renderer exists once the pages are open
                lower_priority(process, args.browser_nice)
            quiet(app.pid)  # every chat's read-ahead done, as for a class that opened its chats a minute ago
            for page in pages:
                page.evaluate(WATCH, [args.question, MEMORIES_TITLE])
                page.get_by_placeholder("Say something in character…").fill(args.question)
            server, browsers = psutil.Process(app.pid), browser_processes()
            cpu_before = cpu_seconds([server]), cpu_seconds(browsers)
            sent = []
            for page in pages:
                sent.append(time.time())
                page.get_by_placeholder("Say something in character…").press("Enter")
            deadline = time.time() + 600
            while time.time() < deadline:
                time.sleep(0.5)
                seen = [page.evaluate("window.__reply") for page in pages]
                if all(s["first"] is not None and time.time() - s["last"] / 1000 > STABLE_S for s in seen):
                    break
            last = max((s["last"] or 0) / 1000 for s in seen) or time.time()
            cpu = {"app_s": round(cpu_seconds([server]) - cpu_before[0], 1),
                   "browser_s": round(cpu_seconds(browsers) - cpu_before[1], 1),
                   "wall_s": round(last - min(sent), 1)}
            for i, (character, adapter) in enumerate(plan):
                reply, first = seen[i]["text"], seen[i]["first"]
                rows.append({"tab": i + 1, "character": character, "adapter": adapter or "—",
                             "first_words_s": round(first / 1000 - sent[i], 2) if first is not None else None,
                             "reply_s": round((seen[i]["last"] or 0) / 1000 - sent[i], 2), "chars": len(reply),
                             "one_speaker": other_speaker_at(reply, character) is None,
                             "degenerate": degenerate(reply), "reply": reply})
            browser.close()
    finally:
        app.kill()
        app.wait(timeout=30)

    firsts = [r["first_words_s"] for r in rows if r["first_words_s"] is not None]
    summary = {"date": time.strftime("%Y-%m-%d"), "cpu": speed_features(), "tabs": args.tabs, "memory": args.memory,
               "browser_nice": args.browser_nice, "cpu_seconds_while_replying": cpu,
               "question": args.question, "first_words_median_s": statistics.median(firsts) if firsts else None,
               "first_words_worst_s": max(firsts, default=None),
               "all_first_words": len(firsts) == len(rows),
               "one_speaker": sum(r["one_speaker"] for r in rows), "degenerate": sum(r["degenerate"] for r in rows),
               "rows": rows}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    results[f"memory {args.memory}, browser nice {args.browser_nice}"] = summary  # the others' latest runs stay
    RESULTS.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    print(f"{args.tabs} Chromium tabs at once, memory {args.memory}, browser nice {args.browser_nice}, "
          f"{summary['cpu']}, {summary['date']}: \"{args.question}\"; while replying ({cpu['wall_s']} s) the app used "
          f"{cpu['app_s']} CPU s, the browser {cpu['browser_s']}")
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
