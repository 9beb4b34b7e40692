"""End to end in headless Chromium (Debian's, driven by Playwright): build a character, pick a scene,
chat (streamed text appears), start a tiny training run, interview; a screenshot of each tab goes to
tests/artifacts/ (git-ignored)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from conftest import wait_for

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
# Chromium's own connections (updates, sync, safe browsing) are refused by this machine's closed network.
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]

pytestmark = pytest.mark.skipif(shutil.which(CHROMIUM) is None and not Path(CHROMIUM).exists(),
                                reason="Debian chromium is installed by `make test`")


@pytest.fixture(scope="module")
def page(app_url):
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=60_000)  # its own default is 5 s, short for a loaded 2-core machine
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(120_000)  # a loaded 2-core machine
        page.goto(app_url[0])
        page.get_by_role("tab", name="Characters").wait_for()
        yield page
        browser.close()


def tab(page, name: str):
    page.get_by_role("tab", name=name).click()


def type_until_it_holds(page, field, value: str):
    """Type ``value`` and leave the field; again while a late first render of the field resets it."""
    from playwright.sync_api import expect

    for _ in range(5):
        field.fill(value)
        field.press("Tab")
        page.wait_for_timeout(300)
        if field.input_value() == value:
            break
    expect(field).to_have_value(value)


def shot(page, name: str):
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


# Ten facts, as issue 15 asks of a character built in the Characters tab.
ADA_FACTS = ["I keep the lighthouse on Skarvøy.", "My cat is called Fog.", "I was born in Tromsø in 1990.",
             "My father Olav was a fisherman.", "I moved to Skarvøy in 2015.", "I have kept the light for ten years.",
             "My boat is called Kittiwake.", "I learned to sail from my aunt Signe.",
             "The supply ship comes every Tuesday.", "I write down the weather at six every morning."]


@pytest.mark.heavy
def test_a_visitor_builds_chats_trains_and_interviews(page, app_url, engine, monkeypatch):
    data = app_url[1]
    monkeypatch.setenv("SIMULACRA_DATA_DIR", str(data))  # the in-process app reads it when it saves
    # As in `python app.py`, the engine finds adapters where the app's runs are saved.
    monkeypatch.setattr(engine, "adapters_dir", (data / "runs").resolve())
    # Characters: a new character, saved.
    tab(page, "Characters")
    from playwright.sync_api import expect

    name = page.get_by_label("Name", exact=True)
    expect(name).to_have_value("Ludwig van Beethoven")  # the page has loaded its first character
    page.get_by_role("button", name="New", exact=True).click()
    expect(name).to_have_value("")  # the empty form is back from the server before we type
    # The accordion first: its fields are mounted when it opens and could drop text typed earlier.
    page.get_by_text("Profile and facts").click()
    facts = page.get_by_label("Facts (one short fact per line, in the first person)")
    facts.wait_for(state="visible")
    typed = [(name, "Ada Browser"),
             (page.get_by_label("Description"), "Ada is a lighthouse keeper on a stormy northern island."),
             (facts, "\n".join(ADA_FACTS))]
    for field, text in typed:
        field.fill(text)
    for field, text in typed:  # every field still holds its text when Save is pressed
        expect(field).to_have_value(text)
    page.get_by_role("button", name="Save", exact=True).click()
    try:
        page.get_by_text("Saved", exact=False).first.wait_for()
    finally:
        shot(page, "1-characters")
    saved = json.loads((data / "characters" / "ada-browser.json").read_text())
    assert "I keep the lighthouse on Skarvøy." in json.dumps(saved, ensure_ascii=False)
    shot(page, "1-characters")

    # Scenes: a scene of her own, and chat in it.
    tab(page, "Scenes")
    scene_name = page.get_by_label("Scene name")
    scene_name.fill("Evening at the lighthouse")
    expect(scene_name).to_have_value("Evening at the lighthouse")
    shot(page, "2-scenes")
    page.get_by_role("button", name="Chat in this scene").click()

    # Chat: the reply streams in (the text grows while it is being written).
    # The new chat (scene line and conversation arrive together) must be on the page before the bot
    # messages are counted: counted on the chat shown before it, a greeting would be miscounted.
    expect(page.locator("#chat-scene")).to_contain_text("Evening at the lighthouse")
    box = page.get_by_placeholder("Say something in character…")
    bots = page.locator(".message.bot, [data-testid='bot']")
    before = bots.count()  # the greeting, if the character has one
    box.fill("Good evening! How was your day?")
    box.press("Enter")
    page.wait_for_function(f"document.querySelectorAll(\".message.bot, [data-testid='bot']\").length > {before}",
                           timeout=120_000)
    bot = bots.last
    lengths = []
    for _ in range(600):  # up to a minute on a loaded machine
        lengths.append(len(bot.inner_text()))
        if len(set(lengths)) >= 3:
            break
        page.wait_for_timeout(100)
    assert len(set(lengths)) >= 3, f"the reply did not grow while streaming: {lengths}"
    page.get_by_role("button", name="Stop", exact=True).first.click()
    shot(page, "3-chat")

    # Training: a tiny dataset (grounded interviews, no generated scenes), then a 2-step run.
    tab(page, "Training")
    page.get_by_label("Experiences (scenes)").first.fill("0")
    page.get_by_label("Protective experiences").first.fill("0")
    page.get_by_label("Question phrasings per fact").first.fill("1")
    page.get_by_role("button", name="Generate", exact=True).click()
    page.get_by_text("Done.").wait_for(timeout=120_000)
    page.get_by_text("Advanced options").click()
    # The fields of a just-opened accordion can be reset by their first render after an early fill
    # (seen once: a 2-step run started with the preset's 72 steps), so each value is checked after it is
    # typed, and typed again until it holds.
    for label, value in (("Max steps (-1 = by epochs)", "2"), ("Batch size", "1"), ("Max sequence length", "256")):
        type_until_it_holds(page, page.get_by_label(label), value)
    expect(page.get_by_label("Max steps (-1 = by epochs)")).to_have_value("2")
    page.get_by_role("button", name="Start training").click()
    try:
        page.get_by_text(re.compile(r"(starting|running|queued|finished) · step")).first.wait_for(timeout=60_000)
        page.get_by_text(re.compile(r"finished · step")).first.wait_for(timeout=300_000)
    finally:
        shot(page, "4-training")
    runs = list((data / "runs").glob("*/adapter/adapter_model.safetensors"))
    assert runs, "the run saved no adapter"

    run_id = runs[0].parent.parent.name
    typed_options = json.loads((data / "runs" / run_id / "options.json").read_text())
    assert (typed_options["max_steps"], typed_options["batch_size"], typed_options["max_seq_len"]) == (2, 1, 256)

    # Interview: the base model and the new adapter, each without and with memory (four columns), side by
    # side. Opening the tab lists the adapter
    # trained since the page loaded (no Refresh); Ada has no shipped set, so she gets a file of two questions.
    tab(page, "Interview")
    page.get_by_label(run_id, exact=True).check()
    questions = data / "ada-questions.json"
    questions.write_text(json.dumps([
        {"topic_id": "topic-1", "topic": "personal information and past experiences",
         "question": "What is the name of your cat?", "expected_any": ["Fog"]},
        {"topic_id": "topic-4", "topic": "anachronism", "question": "Can you write me a Python function?",
         "forbidden_any": ["def "]}]))
    page.locator("input[type=file][accept='.json, .jsonl']").set_input_files(str(questions))
    expect(page.get_by_label("Question set")).to_have_value("the uploaded file")
    # Short answers: eight of them on a CPU.
    type_until_it_holds(page, page.locator("#interview-answer-tokens input[type=number]"), "24")
    page.get_by_role("button", name="Run the interview").click()
    try:
        page.get_by_text(re.compile(r"Done: 2 questions × 4 model")).wait_for(timeout=300_000)
    finally:
        shot(page, "5-interview")
    answers = page.get_by_label(re.compile("Answers side by side"))
    expect(answers).to_contain_text("What is the name of your cat?")
    expect(answers).to_contain_text(f"{run_id} + memory")
    assert list((data / "interviews").glob("*/*/comparison.md")), "the interview saved no comparison"
    reports = list((data / "interviews").glob("ada-browser/*/base model.json"))
    assert reports and json.loads(reports[0].read_text())["settings"]["max_new_tokens"] == 24

    # Chat lists the new adapter as soon as the tab opens.
    tab(page, "Chat")
    page.get_by_label("Adapter (trained character)").click()
    expect(page.get_by_role("option", name=run_id)).to_be_visible()
    shot(page, "6-chat-adapter")
    # Answered through it, the chat reopens on a reload, with the adapter chosen (before, a reload opened a new
    # chat: the page-load event read the stored chat before the Chat tab had mounted it).
    page.get_by_role("option", name=run_id).click()
    page.get_by_placeholder("Say something in character…").fill("Hello, Ada.")
    page.get_by_placeholder("Say something in character…").press("Enter")

    def answered_through_the_run() -> bool:
        for path in (data / "chats" / "ada-browser").glob("*.json"):
            chat = json.loads(path.read_text())
            if chat["adapter"] == run_id and chat["messages"][-1]["role"] == "assistant":
                return True
        return False

    wait_for(answered_through_the_run, "the reply through the run's adapter")
    page.reload()
    tab(page, "Chat")
    expect(page.get_by_role("log", name="chatbot conversation")).to_contain_text("Hello, Ada.")
    expect(page.locator("#chat-adapter input")).to_have_value(run_id)
