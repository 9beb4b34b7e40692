"""Scenes and chat: meta prompt with scenes, two-character turns, saved chats, the app's chat API."""

from __future__ import annotations

import json
import threading

import pytest
from gradio_client import Client, handle_file

from characters.chats import Chat, ChatStore, check_chat
from characters.meta_prompt import meta_prompt
from characters.scenes import INTERVIEW, find_scene, scene_catalogue
from characters.store import CharacterStore
from engine.messages import text_of
from engine.roleplay import model_history, turn_messages
from conftest import golden
from training.scene_extraction import parse_scenes

NOBODY = "nobody (chat with me)"


def spoken(history: list[dict]) -> list[dict]:
    """The Chatbot's lines without its notes (the folded "Memories used" before a reply)."""
    return [m for m in history if not m.get("metadata")]


# ---- scenes and prompts ----------------------------------------------------------------------

def test_scene_catalogue_has_twenty_real_world_scenes_and_the_interview_setting():
    scenes = scene_catalogue()
    assert scenes[0] == INTERVIEW and INTERVIEW.location == "Coffee Shop" and INTERVIEW.time == "Afternoon"
    assert len(scenes) >= 21
    assert {"Concert hall before a premiere", "Senate session", "Spaceport departure lounge"} <= {s.name for s in scenes}


def test_meta_prompt_golden_beethoven_before_the_premiere(data_dir):
    scene = find_scene("Concert hall before a premiere")
    scene.mood = "Tense"
    golden("beethoven_premiere.txt", meta_prompt(CharacterStore(data_dir).load("Ludwig van Beethoven"), scene,
                                                 user="Anna"))


def test_two_character_prompt_names_the_other_and_signs_their_lines(data_dir):
    store = CharacterStore(data_dir)
    caesar, cleopatra = store.load("Julius Caesar"), store.load("Cleopatra VII")
    history = [{"role": "assistant", "content": "Welcome to Alexandria.", "name": "Cleopatra VII"},
               {"role": "assistant", "content": "Your city is splendid.", "name": "Julius Caesar"},
               {"role": "user", "content": "Both of you, look here!", "name": "Anna"}]
    messages = turn_messages(cleopatra, find_scene("Palace throne room"), history, user="Anna", other=caesar)
    system = messages[0]["content"]
    assert "I want you to act like Cleopatra VII" in system and "You are talking with Julius Caesar" in system
    assert [m["role"] for m in messages[1:]] == ["assistant", "user"]
    assert messages[2]["content"] == "Julius Caesar: Your city is splendid.\nAnna: Both of you, look here!"
    assert model_history(history, "Julius Caesar", named=False)[1] == {
        "role": "assistant", "content": "Your city is splendid."}


MESSY_SCENES = """Sure! Here are some scenes:

**Scene 1:**
- **Type:** Chat
- **Location:** Beethoven's rooms in Vienna
- Time: A winter morning
- Background: Beethoven argues with his copyist about mistakes in the score.
  The stove has gone out.
- Mood: angry
- Topic: Complaints

### Scene 2
Type - Speech
Place: A salon of Prince Lobkowitz
Background: Beethoven improvises for the nobility.
Mood: Confident.

Scene 3: Location: nowhere
Some stray sentence the model added.

Scene 4
1. Type: Debate
2. Location: The scenery of the Rhine
3. Background: A boat trip.
"""


def test_generated_scenes_are_parsed_from_messy_output():
    scenes = parse_scenes(MESSY_SCENES)
    assert [s.location for s in scenes] == ["Beethoven's rooms in Vienna", "A salon of Prince Lobkowitz", "nowhere",
                                          "The scenery of the Rhine"]
    first = scenes[0]
    assert first.type == "Chat" and first.mood == "Angry" and first.topic == "complaints"
    assert first.status.endswith("The stove has gone out.")
    assert scenes[1].type == "Speech" and scenes[1].mood == "Confident" and scenes[1].time == ""
    assert scenes[3].type == "Debate" and scenes[3].status == "A boat trip."
    assert parse_scenes("I cannot do that.") == []


# ---- saved chats -----------------------------------------------------------------------------

def test_chats_survive_a_restart_and_round_trip_through_export(data_dir):
    chat = Chat(character="Socrates", messages=[{"role": "user", "content": "Hi", "name": "Anna"},
                                                {"role": "assistant", "content": "Greetings!", "name": "Socrates"}])
    ChatStore(data_dir).save(chat)
    again = ChatStore(data_dir).load("Socrates", chat.id)  # a new store, as after an app restart
    assert again.messages == chat.messages
    imported = ChatStore(data_dir).import_bytes(json.dumps(chat.to_dict()).encode())
    assert imported.id != chat.id and imported.messages == chat.messages
    assert len(ChatStore(data_dir).list("Socrates")) == 2


@pytest.mark.parametrize("bad", [[], {"character": ""}, {"character": "x", "messages": [{"role": "system",
                                 "content": "x"}]}, {"character": "x", "messages": "no"},
                                 {"character": "x", "scene": {"mood": "Furious"}},
                                 {"character": "x", "messages": [{"role": "user", "content": "x" * 20_000}]}])
def test_bad_chat_files_are_refused(bad):
    with pytest.raises(ValueError):
        check_chat(bad)


def test_chat_ids_and_names_cannot_escape_the_chats_folder(data_dir):
    store = ChatStore(data_dir)
    with pytest.raises(KeyError):
        store.load("../../etc", "passwd")
    with pytest.raises(KeyError):  # the id is slugified inside the folder: simply not found
        store.load("Socrates", "../../../etc/passwd")


# ---- the app over HTTP -----------------------------------------------------------------------

@pytest.fixture
def client(app_url):
    return Client(app_url[0], verbose=False)


def test_api_lists_characters_and_scenes(client):
    characters = client.predict(api_name="/characters")
    assert {"name": "Socrates", "kind": "preset"} in characters
    scenes = client.predict(api_name="/scenes")
    assert scenes[0]["location"] == "Coffee Shop" and len(scenes) >= 21


def test_api_chat_streams_an_in_character_reply_in_a_scene(client):
    job = client.submit("Are you ready for tonight?", [], "Ludwig van Beethoven", "Concert hall before a premiere",
                        "", "", "Anna", 0.0, 24, -1, api_name="/chat")
    updates = list(job)
    assert len(updates) >= 2 and updates[-1].strip()
    custom = json.dumps({"location": "A ship", "status": "{{char}} is seasick.", "mood": "Sad"})
    assert client.predict("How do you feel?", [], "Socrates", custom, max_new_tokens=24, api_name="/chat").strip()


@pytest.mark.parametrize("args, words", [
    (("Hi", [], "Nobody Such"), "no character"),
    (("Hi", [], "../../etc/passwd"), "no character"),
    (("Hi", [], "Socrates", "No such scene"), "no scene"),
    (("Hi", [], "Socrates", '{"mood": "Furious"}'), "mood"),
    (("Hi", [], "Socrates", "", "", "../../x"), "adapter"),
])
def test_api_chat_refuses_bad_names(client, args, words):
    with pytest.raises(Exception) as err:
        client.predict(*args, api_name="/chat")
    assert words in str(err.value)


def test_a_session_chats_regenerates_undoes_and_the_chat_is_saved(client, app_url):
    state = client.predict("Socrates", "Philosophers' symposium", NOBODY, "Anna", "",
                           api_name="/new_chat")
    assert state[0][0]["role"] == "assistant"  # the greeting
    history, box = client.predict("What is courage?", "none (base model)", 0.0, 0.9, 24, 1.1, -1, api_name="/send")
    assert [m["role"] for m in spoken(history)] == ["assistant", "user", "assistant"] and box == ""
    assert [m["metadata"]["title"] for m in history if m.get("metadata")] == ["Memories used"]  # memory is on
    regenerated = client.predict("none (base model)", 0.7, 0.9, 24, 1.1, 3, api_name="/regenerate")
    assert len(spoken(regenerated)) == 3
    history, returned = client.predict(api_name="/undo")
    assert len(history) == 1 and returned == "What is courage?"
    saved = ChatStore(app_url[1]).list("Socrates")
    assert saved and saved[0].messages[0]["name"] == "Socrates"


def test_two_characters_play_three_turns_with_the_real_model(client):
    client.predict("Julius Caesar", "Palace throne room", "Cleopatra VII", "Anna", "", api_name="/new_chat")
    history = client.predict(3, "none (base model)", 0.7, 0.9, 20, 1.1, 5, api_name="/play_turns")
    speakers = [text_of(m["content"]).split(":**")[0].strip("*") for m in spoken(history)[1:]]
    assert speakers == ["Cleopatra VII", "Julius Caesar", "Cleopatra VII"]


def test_two_concurrent_sessions_keep_their_own_history(app_url):
    results = {}

    def session(character, question):
        c = Client(app_url[0], verbose=False)
        c.predict(character, "", NOBODY, "Anna", "", api_name="/new_chat")
        for q in (question, "Tell me more."):
            history, _ = c.predict(q, "none (base model)", 0.0, 0.9, 12, 1.1, -1, api_name="/send")
        results[character] = history

    threads = [threading.Thread(target=session, args=a) for a in
               [("Socrates", "What is virtue?"), ("Isaac Newton", "What is gravity?")]]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=180)
    socrates, newton = results["Socrates"], results["Isaac Newton"]
    assert [text_of(m["content"]) for m in socrates if m["role"] == "user"] == ["What is virtue?", "Tell me more."]
    assert [text_of(m["content"]) for m in newton if m["role"] == "user"] == ["What is gravity?", "Tell me more."]
    assert "stranger" in text_of(socrates[0]["content"]) and "calculation" in text_of(newton[0]["content"])


def test_chat_import_through_the_app(client, engine, tmp_path):
    chat = Chat(character="Spartacus", messages=[{"role": "assistant", "content": "Hail!", "name": "Spartacus"}])
    path = tmp_path / "chat.json"
    path.write_text(json.dumps(chat.to_dict()))
    character, other, history, *_ = client.predict(handle_file(str(path)), api_name="/import_chat")
    assert (character["value"], other["value"]) == ("Spartacus", NOBODY)  # the chat's own, whatever was chosen
    assert text_of(history[0]["content"]) == "Hail!"
    assert_read_ahead_through(engine, chat, None)  # the imported chat is read ahead, as a reopened one is
    bad = tmp_path / "bad.json"
    bad.write_text('{"character": "Spartacus", "messages": [{"role": "root", "content": "x"}]}')
    with pytest.raises(Exception, match="role"):
        client.predict(handle_file(str(bad)), api_name="/import_chat")


def test_choosing_an_adapter_loads_it_and_reads_the_chat_ahead_through_it(engine, adapter_dir):
    from ui.chat_tab import NO_ADAPTER, ChatTab

    tab = ChatTab(engine, CharacterStore(), ChatStore())
    chat = tab.new_chat("Socrates", INTERVIEW.name, NOBODY, "Anna", "")
    with pytest.raises(ValueError, match="unknown adapter"):
        tab.choose_adapter(chat, "no-such-adapter")
    tab.choose_adapter(chat, "random-lora")
    # The sampling slider takes the chat default of a trained character, and of an untrained one again.
    assert (tab.penalty_for("random-lora"), tab.penalty_for(NO_ADAPTER)) == (1.1, 1.2)
    sampling, adapter, _ = tab._generation("random-lora", (0.7, 0.9, 128, None, -1, 0.0, True))
    assert (adapter, sampling.repetition_penalty) == ("random-lora", 1.1)
    assert tab._generation(NO_ADAPTER, (0.7, 0.9, 128, None, -1, 0.0, True))[0].repetition_penalty == 1.2
    assert tab._generation("random-lora", (0.7, 0.9, 128, 1.3, -1, 0.0, True))[0].repetition_penalty == 1.3
    assert_read_ahead_through(engine, chat, "random-lora")


def test_a_chat_started_from_a_run_is_read_ahead_through_its_adapter(engine, adapter_dir):
    """"Chat with this character" in the Training tab starts a chat with the run's adapter chosen."""
    from ui.chat_tab import ChatTab

    tab = ChatTab(engine, CharacterStore(), ChatStore())
    with pytest.raises(ValueError, match="unknown adapter"):
        tab.start("Socrates", INTERVIEW.name, NOBODY, "Anna", "", "no-such-adapter")
    engine.prefix_cache.clear()  # what the test above read ahead
    chat, *_ = tab.start("Socrates", INTERVIEW.name, NOBODY, "Anna", "", "random-lora")
    assert_read_ahead_through(engine, chat, "random-lora")


def test_a_trained_chat_shown_again_brings_its_adapter_and_is_read_ahead_through_it(engine, adapter_dir):
    """A page reload (``restore``), the saved chats (``reopen``) and an import show a chat last answered through an
    adapter with its character and that adapter chosen, its repetition penalty, and its prompt read ahead through
    it; a chat whose adapter is gone comes back with none."""
    import dataclasses

    from ui.chat_tab import NO_ADAPTER, ChatTab

    tab, chats = ChatTab(engine, CharacterStore(), ChatStore()), ChatStore()
    chat = tab.new_chat("Socrates", INTERVIEW.name, NOBODY, "Anna", "")
    *_, (chat, _, _) = tab.send_message("What is virtue?", chat, "random-lora", 0.0, 0.9, 6, None, 1, 0.0, False)
    assert chat.adapter == "random-lora" and chats.load("Socrates", chat.id).adapter == "random-lora"
    for shown_again in (lambda: tab.restore({"character": "Socrates", "chat": chat.id}),
                        lambda: tab.reopen(chat, chat.id), lambda: tab.import_chat(json.dumps(chat.to_dict()).encode())):
        engine.prefix_cache.clear()
        character, other, again, *_, dropdown, penalty = shown_again()
        assert again.messages == chat.messages and (character.value, other.value) == ("Socrates", NOBODY)
        assert (dropdown.value, penalty) == ("random-lora", tab.penalty_for("random-lora"))
        assert_read_ahead_through(engine, again, "random-lora")
    chats.save(dataclasses.replace(chat, adapter="a-deleted-run"))
    _, _, again, *_, dropdown, penalty = tab.reopen(chat, chat.id)
    assert (dropdown.value, penalty) == (NO_ADAPTER, tab.penalty_for(NO_ADAPTER))
    assert_read_ahead_through(engine, again, None)


def assert_read_ahead_through(engine, chat, adapter: str | None):
    """The chat's prompt as a turn through ``adapter`` reads it (the bare meta prompt the character was trained
    with; the base model's whole persona prompt for None) is in the prefix cache for that adapter, all of it: the
    first reply reads only the new message."""
    import time

    from characters.scenes import Scene
    from engine.memory import memory_of

    character = CharacterStore().load(chat.character)
    prompt = engine.encode(turn_messages(character, Scene.from_dict(chat.scene), chat.messages, None, chat.user,
                                         chat.user_persona, None, trained=bool(adapter)), reply=False)
    first_reply = engine.encode(turn_messages(character, Scene.from_dict(chat.scene), chat.messages,
                                              "What is virtue?", chat.user, chat.user_persona, None,
                                              trained=bool(adapter)))
    assert first_reply[:len(prompt)] == prompt
    deadline, reused = time.time() + 60, 0
    while time.time() < deadline and reused < len(prompt) - 1:
        _, reused = engine.prefix_cache.take(adapter, prompt)
        time.sleep(0.2)
    assert reused == len(prompt) - 1  # take leaves the last token, whose logits start a reply
    memory_of(engine).index(character)  # the read-ahead's last step: done before the test ends


def test_greetings_swipe_before_the_conversation_starts_and_not_after(engine, monkeypatch):
    import gradio as gr

    from ui.chat_tab import Chat, ChatTab

    import dataclasses

    store = CharacterStore()  # a character with two greetings (the presets have one)
    store.save(dataclasses.replace(store.load("Ludwig van Beethoven"), name="Ludwig Two Greetings",
                                   alternate_greetings=["Ah, {{user}}! Sit, the coffee is hot."]))
    tab = ChatTab(engine, store, ChatStore())
    monkeypatch.setattr(tab, "read_ahead", lambda *args: None)  # tested above; its threads would outlive this test
    setup = ("Ludwig Two Greetings", INTERVIEW.name, NOBODY, "Anna", "")
    first = tab.new_chat(*setup)
    *shown, index = tab.swipe(1, first, 0, *setup)
    chat = next(item for item in shown if isinstance(item, Chat))
    assert index == 1 and chat.messages[0]["content"] == "Ah, Anna! Sit, the coffee is hot."
    *shown, index = tab.swipe(-1, chat, index, *setup)
    assert index == 0 and next(i for i in shown if isinstance(i, Chat)).messages[0] == first.messages[0]
    chat.messages.append({"role": "user", "content": "Hello"})
    with pytest.raises(gr.Error, match="only before"):
        tab.swipe(1, chat, index, *setup)

