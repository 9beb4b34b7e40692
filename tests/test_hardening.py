"""Hardening: hostile input through the HTTP API, eight visitors at once, crashes and a full disk.

Every hostile request goes through ``gradio_client`` (what a stranger on a public Space can send),
and after each one the saved character is intact and nothing appeared outside the data folder."""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import pytest
from gradio_client import Client, handle_file

from conftest import ROOT, free_port, wait_for
from conftest import start_app as start_app_process
from conftest import form
from ui.chat_tab import NO_ADAPTER, NOBODY

BIG = 12 * 1024 * 1024


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def png_with_text(keyword: bytes, text: bytes) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00\xff\x00\x00")
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"tEXt", keyword + b"\x00" + text)
            + chunk(b"IDAT", pixels) + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def guarded(app_url):
    """A client, and a character saved before the attacks that must come through them unchanged.
    Afterwards no file named after an attack exists outside the data folder, and /etc is untouched."""
    url, data = app_url
    client = Client(url, verbose=False)
    client.predict(None, *form(name="Canary Keeper", description="Keeps the canary."), api_name="/save_character")
    saved = (data / "characters" / "canary-keeper.json").read_bytes()
    etc = Path("/etc/passwd").stat().st_mtime
    yield client, data
    assert (data / "characters" / "canary-keeper.json").read_bytes() == saved, "a saved character changed"
    assert Path("/etc/passwd").stat().st_mtime == etc
    outside = [p for p in data.parent.rglob("*") if data not in p.parents and p != data]  # this session's folders
    assert not [p for p in outside if p.stem in ATTACK_NAMES], "a file appeared outside the data folder"


ATTACK_NAMES = {"passwd", "escaped", "windows"}


def refused(client, api_name, *args, words: str | tuple[str, ...]):
    """The request fails with a message containing one of ``words``."""
    with pytest.raises(Exception) as err:
        client.predict(*args, api_name=api_name)
    alternatives = (words,) if isinstance(words, str) else words
    assert any(w.lower() in str(err.value).lower() for w in alternatives), str(err.value)[:300]


# A dropdown's value is checked against its choices by Gradio itself, before our code sees it.
CHOICES = "not in the list of choices"


# ---- 1 · hostile input, a test per class --------------------------------------------------------

TRAVERSAL = ["../../etc/passwd", "..", "/etc/passwd", "runs/../../../etc", "a/../../b", "..\\..\\windows", "\x00x"]


@pytest.mark.parametrize("name", TRAVERSAL)
def test_path_traversal_in_every_name_parameter(guarded, name):
    client, data = guarded
    refused(client, "/character", name, words=("no character", "name"))
    refused(client, "/chat", "Hi", [], name, words=("no character", "name"))
    refused(client, "/chat", "Hi", [], "Socrates", "", "", name, words="adapter")
    refused(client, "/show_dataset", "Ludwig van Beethoven", name, words=("dataset", "outside", "invalid", CHOICES))
    status = client.predict(name, api_name="/run_status")  # an unknown run shows nothing, reads nothing
    assert status[1] == "" and status[4] == ""
    refused(client, "/stop_training", name, words=("run", "invalid", "outside", CHOICES))
    refused(client, "/resume_training", name, words=("run", "invalid", "outside", CHOICES))
    refused(client, "/chat_with_run", name, words=("run", "invalid", "outside", CHOICES))
    refused(client, "/interview", "Ludwig van Beethoven", ["base model"], name, None, "single", 4,
            words=("unknown question set", CHOICES))
    refused(client, "/interview", "Ludwig van Beethoven", [name], "the character's own set", None, "single", 4,
            words=("choose models", CHOICES))
    refused(client, "/delete_character", name, True, words=("no character", "invalid", "name", CHOICES))
    assert not (data.parent / "passwd").exists()


def test_a_path_in_a_saved_name_stays_inside(guarded):
    client, data = guarded
    _, name, _ = client.predict(None, *form(name="../../../escaped"), api_name="/save_character")
    assert name == "../../../escaped" and (data / "characters" / "escaped.json").is_file()
    assert not (data.parent / "escaped.json").exists() and not (data.parent.parent / "escaped.json").exists()


def test_oversized_fields_and_files(guarded, tmp_path):
    client, _ = guarded
    refused(client, "/chat", "x" * 200_000, [], "Socrates", words="characters")
    refused(client, "/save_character", None, *form(name="Big", description="y" * 100_000), words="description")
    huge = tmp_path / "huge.json"
    huge.write_bytes(b'{"name": "' + b"z" * BIG + b'"}')
    refused(client, "/import_card", handle_file(str(huge)), words="limited to")
    refused(client, "/import_chat", handle_file(str(huge)), words="larger than 4 MB")
    refused(client, "/interview", "Ludwig van Beethoven", ["base model"], "the uploaded file",
            handle_file(str(huge)), "single", 4, words="bytes")


@pytest.mark.parametrize("content, words", [
    (b"\x89PNG\r\n\x1a\nbroken", "PNG"),
    (png_with_text(b"chara", b"A" * (9 * 1024 * 1024)), "limited to"),
    (png_with_text(b"chara", b"not base64 at all!"), "not base64"),
    (b'{"spec": "chara_card_v2", "data": {"name": 5, "description": ["a"]}}', "name"),
    (b"[" * 50_000 + b"]" * 50_000, "deep"),
    (b'{"name": "x", "extensions": ' + b'{"a": ' * 5000 + b"1" + b"}" * 5000 + b"}", "deep"),
    (b"\xff\xfe\x00garbage", "not valid JSON"),
])
def test_malformed_and_malicious_cards(guarded, tmp_path, content, words):
    client, _ = guarded
    path = tmp_path / ("card.png" if content.startswith(b"\x89PNG") else "card.json")
    path.write_bytes(content)
    refused(client, "/import_card", handle_file(str(path)), words=words)


def test_prompt_length_overflow(guarded):
    client, _ = guarded
    refused(client, "/chat", "Hello", [], "", "", "word " * 30_000, words="system prompt")  # over the size limit
    # Under the size limit but over the model's context: a clear error, not a truncated identity.
    refused(client, "/chat", "Hello", [], "", "", "word " * 4_500, words="budget")
    # An overlong history is trimmed from its oldest turns, and the character still answers.
    history = [{"role": "user", "content": "tell me more " * 300}, {"role": "assistant", "content": "Hm."}] * 40
    assert client.predict("Hello", history, "Socrates", "", "", "", "Anna", 0.0, 8, 1, api_name="/chat").strip()


def test_unknown_adapter_names(guarded):
    client, _ = guarded
    refused(client, "/chat", "Hi", [], "Socrates", "", "", "no-such-run", words="unknown adapter")
    refused(client, "/interview", "Socrates", ["no-such-run"], "the character's own set", None, "single", 4,
            words=("choose models", CHOICES))


@pytest.mark.parametrize("sampling, words", [
    ((-1.0, 16), "temperature"), ((9.0, 16), "temperature"), (("hot", 16), "temperature"),
    ((0.7, 0), "max_new_tokens"), ((0.7, 100_000), "max_new_tokens"), ((0.7, 2.5), "max_new_tokens"),
])
def test_invalid_sampling_values(guarded, sampling, words):
    client, _ = guarded
    refused(client, "/chat", "Hi", [], "Socrates", "", "", "", "Anna", *sampling, words=words)


# ---- 2 · eight visitors at once -----------------------------------------------------------------

@pytest.mark.heavy
def test_eight_visitors_chat_at_once_and_nothing_crosses_over(app_url, adapter_dir, engine, monkeypatch):
    url, _ = app_url
    # Without KV reuse every greedy reply is computed the same way alone or in a crowd, so it must be
    # identical: a reused prefix is numerically close, not bit-equal, and a random adapter amplifies that.
    engine.prefix_cache.clear()
    monkeypatch.setattr(engine.prefix_cache, "capacity", 0)
    characters = ["Ludwig van Beethoven", "Socrates", "Cleopatra VII", "Isaac Newton", "Julius Caesar",
                  "Spartacus", "Marisol Vega", "Theo Lindqvist"]
    visitors = [{"character": c, "adapter": "random-lora" if i % 2 else "", "word": f"codeword-{i}-{c.split()[0]}"}
                for i, c in enumerate(characters)]

    def ask(visitor) -> str:
        client = Client(url, verbose=False)
        history = [{"role": "user", "content": f"Remember my word: {visitor['word']}."},
                   {"role": "assistant", "content": f"I will remember {visitor['word']}."}]
        return client.predict("What was my word?", history, visitor["character"], "", "", visitor["adapter"],
                              "Anna", 0.0, 12, 1, api_name="/chat")

    def session(visitor):
        """A stateful chat session: the history the server keeps must hold only this visitor's lines."""
        client = Client(url, verbose=False)
        client.predict(visitor["character"], "Coffee Shop - Afternoon (interview)", NOBODY, "Anna", "",
                       api_name="/new_chat")
        # (The adapter dropdown offers what existed when the page was built; /chat above covers adapters.)
        chatbot, _ = client.predict(f"My word is {visitor['word']}.", NO_ADAPTER, 0.0, 0.9, 12, 1.1, 1,
                                    api_name="/send")
        return chatbot

    solo = {v["word"]: ask(v) for v in visitors}

    def crowd(sessions: bool) -> float:
        """All eight at once, through /chat or in sessions; returns the seconds until the last one was served."""
        results.clear(), chatbots.clear()
        threads = [threading.Thread(target=visit, args=(v, sessions)) for v in visitors]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=600)
        assert not errors and not any(t.is_alive() for t in threads), errors
        return time.perf_counter() - started

    results, chatbots, errors = {}, {}, []

    def visit(v, sessions):
        try:
            if sessions:
                chatbots[v["word"]] = session(v)
            else:
                results[v["word"]] = ask(v)
        except Exception as err:  # reported with the visitor
            errors.append((v["word"], err))

    def settled_rss() -> float:
        """The process's memory once the scheduler is idle and has given the crowd's freed memory back (the
        last reply arrives before that trim ends, and glibc keeps freed blocks until it runs)."""
        assert engine.scheduler.idle.wait(60), "the scheduler did not go idle after the crowd"
        return rss_mb()

    crowd(sessions=False)  # also warms the queue, the threads and the allocator for the memory check below
    for v in visitors:
        # Greedy: alone or in the crowd, the same character with the same adapter says the same.
        assert results[v["word"]] == solo[v["word"]], v
    warm = settled_rss()
    elapsed = crowd(sessions=True)
    for v in visitors:
        chatbot = chatbots[v["word"]]
        mine = [m for m in chatbot if m["role"] == "user"]
        assert len(mine) == 1 and v["word"] in str(mine[0]["content"]), chatbot
        others = [w["word"] for w in visitors if w is not v]
        assert not any(o in json.dumps(chatbot) for o in others), "another visitor's words leaked in"
    grown = settled_rss() - warm
    print(f"8 visitors × (1 /new_chat + 1 /send), served in {elapsed:.1f} s; RSS +{grown:.0f} MB")
    # Measured idle on the AVX-512 BF16 EPYC: +20 to +30 MB a crowd (client threads, queue records); a crowd's
    # KV caches and activations are about 900 MB, so a leak of any of them shows. The growth also holds what
    # the first sessions kept (chat files, session state), since the first crowd had none.
    assert grown < 150, f"memory grew by {grown:.0f} MB in a second crowd"


# ---- 3 · crashes -------------------------------------------------------------------------------

def start_app(data: Path, port: int) -> tuple[subprocess.Popen, Client]:
    """The app in a process group of its own (so the whole group can be killed), logging beside ``data``."""
    return start_app_process(port, ["--data-dir", str(data)], data.parent / f"app-{port}.log", new_session=True)


@pytest.mark.heavy
def test_kill_9_during_saves_training_and_generation_loses_nothing(tmp_path):
    from characters.chats import check_chat
    from characters.store import CharacterStore

    data = tmp_path / "user_data"
    port = free_port()
    app, client = start_app(data, port)
    try:
        client.predict(None, *form(name="Crash Survivor"), api_name="/save_character")
        saved = (data / "characters" / "crash-survivor.json").read_bytes()
        # A finished chat, saved after its reply.
        client.predict("Socrates", "Coffee Shop - Afternoon (interview)", NOBODY, "Anna", "", api_name="/new_chat")
        client.predict("What is virtue?", NO_ADAPTER, 0.0, 0.9, 8, 1.1, 1, api_name="/send")
        chats_before = {p.name: p.read_bytes() for p in (data / "chats").rglob("*.json")}
        # A dataset of grounded interviews only (no model calls), then a training run on it.
        client.predict("Ludwig van Beethoven", 0, 0, 1, "local", "", "", 0, False, None,
                       api_name="/generate_experiences")
        dataset = sorted((data / "datasets" / "ludwig-van-beethoven").iterdir())[-1].name
        run_dd = client.predict("Ludwig van Beethoven", dataset, "Quick demo — minutes on CPU", 40, None, None, None,
                                None, 1, None, 256, "group_by_length", 42, 0, api_name="/start_training")
        run_id = run_dd if isinstance(run_dd, str) else run_dd["value"]
        status_file = data / "runs" / run_id / "status.json"
        wait_for(lambda: status_file.is_file() and json.loads(status_file.read_text()).get("step", 0) >= 1,
                 "the run's first step")
        # An experience generation with the model, and a chat reply being written, when the machine dies.
        generation = client.submit("Ludwig van Beethoven", 1, 0, 1, "local", "", "", 0, False, None,
                                   api_name="/generate_experiences")
        folder = data / "datasets" / "ludwig-van-beethoven"
        wait_for(lambda: len(list(folder.iterdir())) >= 2 and any((p / "scenes.jsonl").is_file() for p in
                                                                     folder.iterdir()), "the generation")
        talking = client.submit("And what is courage?", NO_ADAPTER, 0.7, 0.9, 200, 1.1, -1, api_name="/send")
        time.sleep(1.0)
        run_pid = json.loads(status_file.read_text())["pid"]
        os.killpg(app.pid, signal.SIGKILL)  # the app and anything in its process group
        os.kill(run_pid, signal.SIGKILL)  # the run has a session of its own: the whole machine went down
        app.wait(timeout=30)
        del generation, talking
    finally:
        if app.poll() is None:
            os.killpg(app.pid, signal.SIGKILL)

    app, client = start_app(data, free_port())
    try:
        assert (data / "characters" / "crash-survivor.json").read_bytes() == saved
        assert CharacterStore(data).load("Crash Survivor").name == "Crash Survivor"
        chats_after = {p.name: p.read_bytes() for p in (data / "chats").rglob("*.json")}
        for name, content in chats_before.items():  # the finished chat is there with all it held
            before = json.loads(content)["messages"]
            assert json.loads(chats_after[name])["messages"][:len(before)] == before
        for content in chats_after.values():
            check_chat(json.loads(content))  # every chat file parses and is valid, the cut one included
        assert not list(data.rglob(".*.tmp")), "a temp file was left behind"
        runs = {r["id"]: r for r in client.predict(api_name="/runs")}
        assert runs[run_id]["status"]["state"] == "interrupted"
        client.predict(run_id, api_name="/resume_training")
        client.predict(run_id, api_name="/run_status")
        wait_for(lambda: json.loads(status_file.read_text()).get("state") == "running", "the resumed run")
        client.predict(run_id, api_name="/stop_training")
        wait_for(lambda: json.loads(status_file.read_text()).get("state") in ("stopped", "finished"),
                 "the stopped run")
        assert (data / "runs" / run_id / "adapter" / "adapter_model.safetensors").is_file()
        # The cut generation resumes where it stopped and finishes.
        unfinished = [p for p in folder.iterdir() if not (p / "stats.json").is_file()]
        assert len(unfinished) == 1
        client.predict("Ludwig van Beethoven", 1, 0, 1, "local", "", "", 0, True, unfinished[0].name, 96,
                       api_name="/generate_experiences")  # short experiences: the test is that it finishes
        assert (unfinished[0] / "stats.json").is_file()
    finally:
        os.killpg(app.pid, signal.SIGKILL)
        app.wait(timeout=30)


FULL_DISK = """
import resource, signal, sys
sys.path.insert(0, {root!r})
from characters.store import CharacterStore
store = CharacterStore({data!r})
character = store.load("Disk Keeper")
character.description = "a much longer description " * 400
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG, as on a full disk
resource.setrlimit(resource.RLIMIT_FSIZE, (2048, 2048))
try:
    store.save(character)
except OSError as err:
    print("refused:", err)
"""


def test_a_full_disk_on_save_gives_an_error_not_a_corrupt_file(tmp_path):
    from characters.schema import Character
    from characters.store import CharacterStore

    data = tmp_path / "user_data"
    store = CharacterStore(data)
    store.save(Character(name="Disk Keeper", description="Keeps the disk."))
    before = (data / "characters" / "disk-keeper.json").read_bytes()
    done = subprocess.run([sys.executable, "-c", FULL_DISK.format(root=str(ROOT), data=str(data))],
                          capture_output=True, text=True, timeout=120)
    assert "refused:" in done.stdout and "File too large" in done.stdout, done.stdout + done.stderr
    assert (data / "characters" / "disk-keeper.json").read_bytes() == before
    assert not list((data / "characters").glob(".*.tmp"))
