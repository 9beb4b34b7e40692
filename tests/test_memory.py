"""Memory at chat time: retrieval by meaning with the real model, the prompt it builds, the Chat tab's
switch and note, the API's option, and saved chats that keep what a reply remembered."""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest
import torch

from characters.chats import ChatStore, check_chat
from characters.store import CharacterStore
from engine.memory import Memory, _Index, memories_of, memory_of, remembering
from engine.options import SamplingOptions
from engine.puzzlement import begun, shown, unheard_of
from engine.remote import RemoteEngine
from engine.roleplay import stream_turn, turn_messages, with_memories
from evaluation.interview import InterviewOptions, interview
from evaluation.questions import Question
from ui.chat_tab import MEMORIES_TITLE, NO_ADAPTER, NOBODY, ChatTab

GREEDY_12 = (0.0, 0.9, 12, 1.1, 1, 0.0)  # temperature, top_p, max_new_tokens, repetition_penalty, seed, min_p


@pytest.fixture(scope="module")
def memory(engine):
    return Memory(engine)


@pytest.mark.parametrize("character, question, answer", [
    # No word in common with the memory that answers it.
    ("Ludwig van Beethoven", "Who paid for your keep?", "stipend"),
    ("Socrates", "Which playwright made fun of you?", "Aristophanes"),
    ("Isaac Newton", "What made you wonder about the pull that holds the Moon?", "apple"),
])
def test_a_question_in_other_words_finds_the_memory_that_answers_it(memory, data_dir, character, question, answer):
    recalled = memory.recall(CharacterStore(data_dir).load(character), question)
    assert len(recalled) == 3 and recalled[0].score >= recalled[-1].score
    assert any(answer in r.text for r in recalled), [r.text for r in recalled]


@pytest.mark.parametrize("character, question, answer", [
    # The vectors alone put "I moved to Vienna in 1792." and "Chaerephon asked the oracle about me." first.
    ("Ludwig van Beethoven", "In what year were you born?", "born in Bonn in December 1770"),
    ("Socrates", "What did the oracle at Delphi say about you?", "no one is wiser"),
])
def test_a_question_that_shares_its_words_with_a_memory_finds_it_first(memory, data_dir, character, question, answer):
    assert answer in memory.recall(CharacterStore(data_dir).load(character), question)[0].text


def test_the_words_a_question_shares_with_a_memory_count_by_how_few_memories_say_them():
    items = [("fact", "I was born in Athens around 470 BC."), ("fact", "My wife is Xanthippe."),
             ("fact", "My wife Xanthippe was born in Athens."), ("fact", "I was condemned in Athens.")]
    index = _Index(items, torch.randn(len(items), 8))
    shared = index.words_shared("When were you born in Athens?")
    assert shared[1] == 0 and shared[0] == shared[2] > shared[3] > 0  # "born" is rarer than "athens"
    assert float(shared[0]) == pytest.approx(1.0)  # every content word it asks ("athens", "born") said
    assert not index.words_shared("Is it so?").any()  # no content words: nothing to add


def test_a_turn_goes_to_the_models_thread_once_for_its_memories_and_not_at_all_for_a_loaded_adapter(
        engine, memory, data_dir, adapter_dir, monkeypatch):
    """Each trip to the scheduler's thread waits for the pass running there, and a classroom's turns queue
    behind each other's passes: the memory search runs with its embedding, and a loaded adapter is checked
    here. A search that fails raises in its caller."""
    beethoven = CharacterStore(data_dir).load("Ludwig van Beethoven")
    expected = memory.recall(beethoven, "Who paid for your keep?")  # builds the index; alone, no count
    engine.check_adapter("random-lora")  # loads it
    trips = []
    real = engine.scheduler.call
    monkeypatch.setattr(engine.scheduler, "call", lambda fn: (trips.append(fn), real(fn))[1])
    assert memory.recall(beethoven, "Who paid for your keep?") == expected
    assert len(trips) == 1, trips
    engine.check_adapter("random-lora")
    assert len(trips) == 1, trips

    def broken(states):
        raise RuntimeError("a search that fails")

    with pytest.raises(RuntimeError, match="a search that fails"):
        engine.hidden_states(["Who paid for your keep?"], 0.9, then=broken)


def test_messages_embedded_at_the_same_time_share_one_pass_and_get_the_vectors_they_get_alone(engine, monkeypatch):
    """A classroom's messages arrive together: the caller whose turn it is embeds all waiting texts at once."""
    texts = [f'This sentence : "{q}" means in one word:"' for q in (
        "Who paid for your keep?", "Hi!", "What do you think of the emperor and his wars across Europe?", "Why?")]
    alone = [engine.hidden_states([text], 0.9) for text in texts]
    passes = []
    real = engine._embed
    monkeypatch.setattr(engine, "_embed", lambda jobs, *a: (passes.append(len(jobs)), real(jobs, *a)))
    results: list = [None] * len(texts)
    threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, engine.hidden_states([texts[i]], 0.9)))
               for i in range(len(texts))]
    with engine._embedding_turn:  # another caller's turn: the four wait, queued
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 30
        while len(engine._embeddings) < len(texts) and time.monotonic() < deadline:
            time.sleep(0.01)
    for thread in threads:
        thread.join(timeout=60)
    assert passes == [len(texts)]
    for together, own in zip(results, alone):
        torch.testing.assert_close(together, own, atol=1e-4, rtol=1e-4)


def test_a_characters_memories_are_its_facts_and_profile_sentences(data_dir):
    beethoven = CharacterStore(data_dir).load("Ludwig van Beethoven")
    items = memories_of(beethoven)
    assert [t for k, t in items if k == "fact"] == beethoven.sims.facts
    profile = [t for k, t in items if k == "profile"]
    assert len(profile) > len(beethoven.sims.profile) and all(t in " ".join(beethoven.sims.profile) for t in profile)
    assert memories_of(beethoven.copy(sims=type(beethoven.sims)())) == []


def test_memory_vectors_are_kept_on_disk_for_the_next_process_and_a_damaged_file_is_computed_again(
        engine, data_dir, tmp_path, monkeypatch, caplog):
    from dataclasses import replace
    from types import SimpleNamespace

    from engine.memory import model_key

    monkeypatch.setattr(engine, "cache_dir", tmp_path / "models")
    beethoven = CharacterStore(data_dir).load("Ludwig van Beethoven")
    keeper = beethoven.copy(sims=replace(beethoven.sims, facts=["I keep the lighthouse.", "My cat is called Fog."],
                                         profile=["I was born in Tromsø. I moved to Skarvøy."]))
    embedded = []
    real = engine.hidden_states
    monkeypatch.setattr(engine, "hidden_states",
                        lambda texts, *a, **k: (embedded.extend(texts), real(texts, *a, **k))[1])

    first = Memory(engine).index(keeper)
    assert len(embedded) == 4
    files = list((tmp_path / "models" / "memory-vectors").rglob("*.safetensors"))
    assert len(files) == 1 and files[0].parent.name == model_key(engine)
    again = Memory(engine).index(keeper)  # as an app started again: read back, nothing embedded
    assert len(embedded) == 4 and torch.equal(again.vectors, first.vectors) and again.items == first.items
    # Another precision's vectors are kept apart.
    assert model_key(SimpleNamespace(**{**vars(engine), "precision": "4bit"})) != model_key(engine)
    checkpoint = SimpleNamespace(**{**vars(engine), "qlora_base": False})
    assert model_key(checkpoint) != model_key(engine)  # vectors of the checkpoint's weights are not QLoRA base's

    files[0].write_bytes(b"not a tensor file")
    repaired = Memory(engine).index(keeper)
    assert len(embedded) == 8 and "cannot be read" in caplog.text
    torch.testing.assert_close(repaired.vectors, first.vectors)
    assert Memory(engine).index(keeper) is not None and len(embedded) == 8  # the file was written again

    # A disk that cannot be written (here a file where the folder should be): the vectors stay in memory.
    monkeypatch.setattr(engine, "cache_dir", tmp_path / "blocked")
    (tmp_path / "blocked").write_text("")
    memory = Memory(engine)
    assert memory.index(keeper) is not None and "not saved" in caplog.text
    assert [r.text for r in memory.recall(keeper, "What is your cat's name?")][0] == "My cat is called Fog."


def test_memories_go_just_before_the_message_so_the_cached_prompt_is_kept(engine, data_dir):
    socrates = CharacterStore(data_dir).load("Socrates")
    history = [{"role": "user", "content": "Hello.", "name": "Anna"},
               {"role": "assistant", "content": "Greetings.", "name": "Socrates"}]
    plain = turn_messages(socrates, None, history, "Who is the woman you married?", user="Anna")
    stats: dict = {}
    remembered = with_memories(engine, socrates, plain, stats)
    assert len(stats["memories"]) == 3 and any("Xanthippe" in m for m in stats["memories"])
    note = remembered.index(next(m for m in remembered if m["role"] == "system" and "remembers" in m["content"]))
    assert remembered[:note] == plain[:note] and remembered[note + 1:] == plain[note:]
    assert remembered[note + 1] == {"role": "user", "content": "Who is the woman you married?"}
    assert all(f"- {m}" in remembered[note]["content"] for m in stats["memories"])
    # The prompt before the note is the one without memory: a follow-up reuses its cached keys.
    before = engine.encode(plain[:note], reply=False)
    assert engine.encode(remembered)[:len(before)] == before
    assert remembering(plain, socrates, []) == plain


def test_a_reply_with_memory_streams_and_says_what_it_remembered(engine, data_dir):
    newton = CharacterStore(data_dir).load("Isaac Newton")
    stats: dict = {}
    short = SamplingOptions(temperature=0.0, max_new_tokens=16)  # the reply's length is not what is tested
    reply = "".join(stream_turn(engine, newton, None, [], "Who funded the printing of your book?", short, None,
                                stats=stats, memory=True))
    assert reply.strip() and len(stats["memories"]) == 3
    off: dict = {}
    "".join(stream_turn(engine, newton, None, [], "Who funded the printing of your book?", short, stats=off))
    assert "memories" not in off


def test_things_from_after_a_characters_era_are_found_by_the_words_a_message_uses(data_dir):
    store = CharacterStore(data_dir)
    beethoven, socrates, hazel = (store.load(n) for n in ("Ludwig van Beethoven", "Socrates", "Hazel Thornbury"))
    assert unheard_of(beethoven, "Did you travel here by railway train?") == ["railway"]
    assert unheard_of(beethoven, "Do the railways reach Vienna?") == ["railway"]  # in another form
    assert unheard_of(beethoven, "Was it an aeroplane, or the railways?") == ["aeroplane", "railway"]
    assert unheard_of(beethoven, "In which town did you come into the world?") == []
    assert unheard_of(beethoven, "We sat under a plane tree.") == []  # only looks like a name
    assert unheard_of(beethoven, "What do you know of America?") == []  # found before his time
    assert unheard_of(socrates, "What do you know of America?") == ["america"]
    assert unheard_of(socrates, "How do your soldiers load their muskets?") == ["musket"]
    assert unheard_of(beethoven, "How do your soldiers load their muskets?") == []  # guns were of his time
    assert unheard_of(socrates, "Describe your years as a senator in ancient Rome.") == []  # not in the catalogue
    assert unheard_of(socrates, "Do you own a camera?") == ["camera"]
    assert unheard_of(socrates, "Have you seen a camera obscura?") == []  # a dark room with a pinhole: ancient
    assert unheard_of(socrates, "Did you rifle through the scrolls?") == []
    assert unheard_of(socrates, "Is the nuclear family a good thing?") == []
    assert unheard_of(beethoven, "Do you play the piano every day?") == []  # of his time (1700)
    assert unheard_of(socrates, "Do you play the piano every day?") == ["piano"]
    # A character of today (no era) has only never been an AI.
    assert unheard_of(hazel, "How many parameters does your neural network have?") == ["neural network"]
    assert unheard_of(hazel, "Which apps do you use most on your smartphone?") == []


def test_a_trained_characters_reply_to_a_thing_after_its_era_begins_in_thought(engine, data_dir):
    """With memory, through its adapter; not for a fact, not without memory, not for the base model (never taught
    the thought), and not when a reply is continued."""
    beethoven = CharacterStore(data_dir).load("Ludwig van Beethoven")
    trained, short = "ludwig-van-beethoven-trained", SamplingOptions(temperature=0.0, max_new_tokens=16)
    probe = "Did you travel here by railway train?"
    stats: dict = {}
    reply = "".join(stream_turn(engine, beethoven, None, [], probe, short, trained, stats=stats, memory=True))
    opened = "(thinking) This stranger talks of "
    assert reply.startswith(opened) and len(reply) > len(opened)
    assert len(stats["memories"]) == 4 and stats["memories"][-1] == shown(["railway"])
    assert shown(["railway"]) == 'Never heard of "railway": the reply begins in thought.'
    asked = turn_messages(beethoven, None, [], probe, trained=True)
    assert begun(with_memories(engine, beethoven, asked, {}, trained=True)) == "(thinking) This stranger talks of"
    assert begun(with_memories(engine, beethoven, asked, {}, trained=False)) == ""
    for question, adapter, memory in ((probe, trained, False), (probe, None, True),
                                      ("Who paid for your keep?", trained, True)):
        other: dict = {}
        "".join(stream_turn(engine, beethoven, None, [], question, short, adapter, stats=other, memory=memory))
        assert all("Never heard of" not in m for m in other.get("memories", [])), (question, adapter, memory)
    history = [{"role": "user", "content": probe, "name": "Anna"},
               {"role": "assistant", "content": "I traveled", "name": beethoven.name}]
    continued: dict = {}
    more = "".join(stream_turn(engine, beethoven, None, history, None, short, trained, continue_last=True,
                               stats=continued, memory=True))
    assert not more.startswith("(thinking)") and all("Never heard of" not in m for m in continued["memories"])
    with pytest.raises(ValueError, match="no reply of the character to continue"):  # not a begun one either
        stream_turn(engine, beethoven, None, history[:1], None, short, trained, continue_last=True, memory=True)


def test_an_interview_with_memory_begins_a_trained_characters_probe_answers_in_thought(engine, data_dir):
    """One at a time (``Engine.generate``), in a batch (``generate_batch``) and turn after turn: the same answers,
    each with the thought it was begun with, and the report's memories say so."""
    beethoven = CharacterStore(data_dir).load("Ludwig van Beethoven")
    questions = [Question("Did you travel here by railway train?", topic_id="topic-4"),
                 Question("In which town did you come into the world?", expected_any=["Bonn"])]
    reports = [interview(engine, beethoven, InterviewOptions(character=beethoven.name, adapter="ludwig-van-beethoven-"
                                                             "trained", memory=True, max_new_tokens=24, mode=mode,
                                                             batch_size=rows, turns=2), questions)
               for mode, rows in (("single", 1), ("single", 2), ("multi", 1))]
    for report in reports:
        probe, fact = report["results"]
        assert probe["answer"].startswith("(thinking) ") and probe["memories"][-1] == shown(["railway"])
        assert all("Never heard of" not in m for m in fact["memories"])
    assert reports[0]["results"] == reports[1]["results"]
    assert reports[2]["results"][0]["answer"] == reports[0]["results"][0]["answer"]  # the first turn is alone

def test_a_remote_engine_has_no_memory_and_the_turn_goes_on_without_it(data_dir):
    remote = object.__new__(RemoteEngine)  # no server needed: what it lacks is in its class
    assert memory_of(remote) is None
    stats: dict = {}
    socrates = CharacterStore(data_dir).load("Socrates")
    messages = turn_messages(socrates, None, [], "Hello?")
    assert with_memories(remote, socrates, messages, stats) == messages and stats["memories"] == []


def test_the_chat_tab_shows_the_memories_used_and_its_switch_turns_them_off(engine, data_dir):
    tab = ChatTab(engine, CharacterStore(data_dir), ChatStore(data_dir))
    chat = tab.new_chat("Ludwig van Beethoven", "", NOBODY, "Anna", "")
    *_, (chat, shown, box) = tab.send_message("Who paid for your keep?", chat, NO_ADAPTER, *GREEDY_12, True)
    notes = [m for m in shown if m.get("metadata", {}).get("title") == MEMORIES_TITLE]
    assert len(notes) == 1 and shown.index(notes[0]) == len(shown) - 2  # just before the reply it informed
    assert notes[0]["content"].count("\n- ") == 2 and chat.messages[-1]["memories"]
    # Saved with the chat, and shown again when it is reopened.
    reopened = ChatStore(data_dir).load(chat.character, chat.id)
    assert reopened.messages[-1]["memories"] == chat.messages[-1]["memories"]
    *_, (chat, shown, _) = tab.send_message("And who taught you?", chat, NO_ADAPTER, *GREEDY_12, False)
    assert "memories" not in chat.messages[-1]
    assert len([m for m in shown if m.get("metadata")]) == 1  # only the first reply's note
    with pytest.raises(Exception, match="memory must be true or false"):
        next(tab.send_message("Hi", chat, NO_ADAPTER, *GREEDY_12, "yes"))


@pytest.mark.parametrize("memories", ["not a list", [1, 2], ["x"] * 11])
def test_a_chat_file_with_bad_memories_is_refused(memories):
    value = {"character": "Socrates",
             "messages": [{"role": "assistant", "content": "Hi", "name": "Socrates", "memories": memories}]}
    with pytest.raises(ValueError, match="memories"):
        check_chat(value)


def test_the_api_takes_memory_as_an_option(app_url):
    url = app_url[0]
    body = {"model": "Socrates", "messages": [{"role": "user", "content": "Who is your wife?"}], "max_tokens": 8,
            "temperature": 0}
    for memory in (True, False):
        response = httpx.post(url + "v1/chat/completions", json={**body, "memory": memory}, timeout=120)
        assert response.status_code == 200, response.text
    with_memory = httpx.post(url + "v1/chat/completions", json=body, timeout=120).json()
    without = httpx.post(url + "v1/chat/completions", json={**body, "memory": False}, timeout=120).json()
    # The memory note is in the prompt by default, and only then.
    assert with_memory["usage"]["prompt_tokens"] > without["usage"]["prompt_tokens"] + 20
    bad = httpx.post(url + "v1/chat/completions", json={**body, "memory": "yes"}, timeout=60)
    assert bad.status_code == 400 and "memory" in bad.json()["error"]["message"]
    from gradio_client import Client

    client = Client(url, verbose=False)
    assert client.predict("Who is your wife?", [], "Socrates", memory=False, max_new_tokens=8,
                          api_name="/chat").strip()
    with pytest.raises(Exception, match="memory"):
        client.predict("Who is your wife?", [], "Socrates", memory="yes", api_name="/chat")
    assert json.dumps(client.view_api(print_info=False, return_format="dict")).count('"memory"') >= 1
