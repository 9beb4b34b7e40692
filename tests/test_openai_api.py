"""The OpenAI-compatible endpoint (/v1) on the app's own server, through the official `openai` client
and raw HTTP, on the real model."""

from __future__ import annotations

import json
import shutil

import httpx
import openai
import pytest
from gradio_client import Client

from characters.store import CharacterStore
from engine import SamplingOptions
from engine.options import CHAT_DEFAULTS
from engine.stop_strings import cut_at_stops
from training.dataset import ExperienceOptions, build_dataset, load_examples

QUESTION = [{"role": "user", "content": "Where do you live?"}]


@pytest.fixture(scope="module")
def trained(app_url, adapter_dir, engine):
    """An adapter in a run folder whose options name Socrates, as a finished training run leaves it."""
    run = engine.adapters_dir / "socrates-run"
    if not run.exists():
        shutil.copytree(adapter_dir, run / "adapter")
        (run / "options.json").write_text(json.dumps({"character": "Socrates"}))
    return "socrates-run"


@pytest.fixture
def client(app_url):
    return openai.OpenAI(base_url=app_url[0] + "v1", api_key="unused", max_retries=0)


def test_models_list_the_base_model_every_character_and_their_adapters(client, engine, trained):
    ids = [m.id for m in client.models.list().data]
    assert ids[0] == engine.name
    assert {"Socrates", "Ludwig van Beethoven", f"Socrates@{trained}", f"{engine.name}@{trained}",
            f"{engine.name}@random-lora"} <= set(ids)
    assert f"Ludwig van Beethoven@{trained}" not in ids  # an adapter is listed with the character it was trained for
    assert "Socrates@socrates-trained" in ids and "Ludwig van Beethoven@socrates-trained" not in ids  # shipped


def test_a_character_answers_as_the_gradio_chat_endpoint_does(client, app_url):
    """Same character, scene and greedy settings: the same reply through /v1 and Gradio's /chat, so the
    endpoint brings the character's meta prompt and scene."""
    reply = client.chat.completions.create(model="Socrates", messages=QUESTION, temperature=0, max_tokens=16,
                                           extra_body={"scene": "Philosophers' symposium"})
    gradio = Client(app_url[0], verbose=False).predict("Where do you live?", [], "Socrates",
                                                        "Philosophers' symposium", "", "", "User", 0.0, 16, -1,
                                                        api_name="/chat")
    assert reply.choices[0].message.content == gradio
    assert reply.choices[0].finish_reason in ("length", "stop") and reply.usage.completion_tokens <= 16
    assert reply.usage.prompt_tokens > 100  # the meta prompt is in it


def test_streaming_gives_the_same_reply_in_pieces_with_usage(client, trained):
    whole = client.chat.completions.create(model=f"Socrates@{trained}", messages=QUESTION, temperature=0,
                                           max_tokens=12)
    chunks = list(client.chat.completions.create(model=f"Socrates@{trained}", messages=QUESTION, temperature=0,
                                                  max_tokens=12, stream=True,
                                                  stream_options={"include_usage": True}))
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(pieces) >= 2 and "".join(pieces) == whole.choices[0].message.content
    assert chunks[-2].choices[0].finish_reason == whole.choices[0].finish_reason
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


def test_the_adapter_changes_the_reply(client, trained):
    base, tuned = (client.chat.completions.create(model=m, messages=QUESTION, temperature=0, max_tokens=12)
                   for m in ("Socrates", f"Socrates@{trained}"))
    assert base.choices[0].message.content != tuned.choices[0].message.content


def test_the_base_model_takes_the_clients_own_system_prompt(client, engine):
    messages = [{"role": "system", "content": "You are a pirate named Red Anne."}, *QUESTION]
    reply = client.chat.completions.create(model=engine.name, messages=messages, temperature=0, max_tokens=12)
    # The route's defaults are a chat turn's (repetition penalty 1.2), not the engine's class defaults (1.1).
    expected = engine.generate(messages, SamplingOptions(**{**CHAT_DEFAULTS, "temperature": 0, "max_new_tokens": 12}))
    assert reply.choices[0].message.content == expected


def test_a_stop_string_ends_the_reply_before_it(client):
    whole = client.chat.completions.create(model="Socrates", messages=QUESTION, temperature=0, max_tokens=24)
    text = whole.choices[0].message.content
    stop = text.split()[2]  # a word from the middle of the greedy reply
    cut = client.chat.completions.create(model="Socrates", messages=QUESTION, temperature=0, max_tokens=24,
                                         stop=[stop])
    assert cut.choices[0].message.content == text[:text.index(stop)]
    assert cut.choices[0].finish_reason == "stop"


def test_a_trained_character_chats_at_its_own_repetition_penalty_unless_the_client_sets_one():
    from ui.openai_api import CompletionRequest

    def request(**extra) -> CompletionRequest:
        return CompletionRequest.parse(json.dumps({"model": "Socrates@socrates-trained", **extra,
                                                   "messages": [{"role": "user", "content": "Hi"}]}).encode())

    assert request().sampling_for("socrates-trained").repetition_penalty == 1.1
    assert request().sampling_for(None).repetition_penalty == 1.2
    assert request(repetition_penalty=1.3).sampling_for("socrates-trained").repetition_penalty == 1.3


@pytest.mark.parametrize("pieces", [["Hello", " wor", "ld.\nUs", "er: no"], ["Hello world.", "\n", "U", "ser:", " no"],
                                    ["Hello world.\nUser: no"]])
def test_stop_strings_cut_across_pieces_and_hold_back_only_what_may_start_one(pieces):
    found: dict = {}
    out = list(cut_at_stops(iter(pieces), ["\nUser:"], found))
    assert "".join(out) == "Hello world." and found["stop"] == "\nUser:"
    assert list(cut_at_stops(iter(["a\nUs", "ing"]), ["\nUser:"])) == ["a", "\nUsing"]


@pytest.mark.parametrize("body, status, words", [
    (b"{not json", 400, "not valid JSON"),
    (b"[1, 2]", 400, "JSON object"),
    (json.dumps({"model": "Nobody Such", "messages": QUESTION}).encode(), 404, "does not exist"),
    (json.dumps({"model": "Socrates@no-such-run", "messages": QUESTION}).encode(), 404, "does not exist"),
    (json.dumps({"model": "Socrates", "messages": "hi"}).encode(), 400, "messages must be"),
    (json.dumps({"model": "Socrates", "messages": [{"role": "user", "content": 5}]}).encode(), 400, "must be text"),
    (json.dumps({"model": "Socrates", "messages": [{"role": "tool", "content": "x"}, *QUESTION]}).encode(), 400,
     "role"),
    (json.dumps({"model": "Socrates", "messages": [{"role": "assistant", "content": "Hi"}]}).encode(), 400,
     "last message must be from the user"),
    (json.dumps({"model": "Socrates", "messages": QUESTION, "temperature": "hot"}).encode(), 400, "must be a number"),
    (json.dumps({"model": "Socrates", "messages": QUESTION, "max_tokens": 10**6}).encode(), 400, "max_tokens"),
    (json.dumps({"model": "Socrates", "messages": QUESTION, "n": 3}).encode(), 400, "n=1"),
    (json.dumps({"model": "Socrates", "messages": QUESTION, "stop": [1]}).encode(), 400, "stop"),
    (json.dumps({"model": "Socrates", "messages": QUESTION, "scene": "No such scene"}).encode(), 400, "no scene"),
    (json.dumps({"model": "Socrates", "messages": [{"role": "user", "content": "x" * 9_000}]}).encode(), 400,
     "limit is 8,000"),
    (json.dumps({"model": "Socrates", "messages": [{"role": "user", "content": "x" * 3_000_000}]}).encode(), 413,
     "limit is 2,000,000"),
])
def test_bad_requests_get_openai_errors_and_the_app_keeps_serving(app_url, body, status, words):
    response = httpx.post(app_url[0] + "v1/chat/completions", content=body,
                          headers={"Content-Type": "application/json"}, timeout=60)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert words in error["message"] and error["type"] == "invalid_request_error"
    assert httpx.get(app_url[0] + "v1/models", timeout=30).status_code == 200


def test_an_api_key_is_required_when_one_is_set(app_url, client, monkeypatch):
    monkeypatch.setenv("SIMULACRA_API_KEY", "s3cret")
    with pytest.raises(openai.AuthenticationError) as err:
        client.models.list()
    assert err.value.body["code"] == "invalid_api_key"
    keyed = openai.OpenAI(base_url=app_url[0] + "v1", api_key="s3cret", max_retries=0)
    assert keyed.models.list().data


@pytest.mark.heavy
def test_the_experience_pipeline_runs_against_the_apps_own_endpoint(app_url, engine, data_dir):
    """`--generator openai` pointed at this app: a real server, not the fake of test_experiences."""
    beethoven = CharacterStore().load("Ludwig van Beethoven")
    options = ExperienceOptions(character=beethoven.name, scenes=1, protective=1, phrasings=1, max_new_tokens=64,
                                generator="openai", base_url=app_url[0] + "v1", api_model=engine.name)
    out = build_dataset(beethoven, options.make_generator(engine), options, data_dir / "via-api")
    settings = json.loads((out / "settings.json").read_text())
    assert settings["generator_name"] == f"openai:{engine.name}@{app_url[0]}v1"
    stats = json.loads((out / "stats.json").read_text())
    assert stats["scenes"] == 1 and stats["by_kind"]["protective"] == 1
    assert len(load_examples(out)) == stats["examples"] > 0
