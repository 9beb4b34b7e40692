"""`--engine-url`: the model on another server. Two real instances of this app: the in-process one
(`app_url`) serves the model through its /v1 endpoint, and a second, started as `python app.py
--engine-url`, loads no model and builds every prompt itself."""

from __future__ import annotations

import subprocess
import sys

import pytest
from gradio_client import Client

from characters.scenes import find_scene
from characters.store import CharacterStore
from conftest import ROOT, free_port, start_app
from engine import EngineOptions, SamplingOptions, make_engine
from engine.generators import LocalGenerator
from engine.remote import EngineUnreachable, RemoteEngine
from engine.roleplay import stream_turn
from evaluation.interview import InterviewOptions, interview
from evaluation.questions import Question

GREEDY = SamplingOptions(temperature=0, max_new_tokens=16)


@pytest.fixture(scope="module")
def remote(app_url):
    return make_engine(EngineOptions(engine_url=app_url[0] + "v1"))


@pytest.fixture(scope="module")
def second_app(app_url, tmp_path_factory):
    """`python app.py --engine-url <first app>/v1`, as a front machine in front of a serving engine."""
    data = tmp_path_factory.mktemp("front_data")
    process, client = start_app(free_port(), ["--data-dir", str(data), "--engine-url", app_url[0] + "v1"],
                                data / "app.log", timeout=120)
    yield client
    process.terminate()
    process.wait(timeout=30)


def test_the_front_app_chats_as_the_serving_app_does(app_url, second_app, adapter_dir):
    """The same character, scene, adapter and greedy settings: the same reply from the app that holds
    the model and from the app that only reaches it, so the meta prompt and scene travel as messages.
    (Memory needs the model's hidden states, which only the serving app has: the front app answers
    without it, so the comparison is without memory.)"""
    serving = Client(app_url[0], verbose=False)
    for adapter in ("", "random-lora"):
        args = ("Where do you live?", [], "Socrates", "Philosophers' symposium", "", adapter, "Anna", 0.0, 16, -1, False)
        assert second_app.predict(*args, api_name="/chat") == serving.predict(*args, api_name="/chat"), adapter
    assert second_app.predict("Where do you live?", [], "Socrates", max_new_tokens=8, api_name="/chat").strip()
    assert "random-lora" in second_app.predict(api_name="/adapters")


def test_a_two_character_turn_an_interview_and_experience_prompts_run_remotely_as_locally(remote, engine):
    characters = CharacterStore()
    beethoven, socrates = characters.load("Ludwig van Beethoven"), characters.load("Socrates")
    scene = find_scene("Philosophers' symposium")
    history = [{"role": "assistant", "content": socrates.first_mes, "name": socrates.name}]
    turns = ["".join(stream_turn(e, beethoven, scene, history, None, GREEDY, other=socrates)) for e in (engine, remote)]
    assert turns[0] == turns[1] and turns[0]

    questions = [Question("Where were you born?", expected_any=["Bonn"]),
                 Question("Who taught you music?", expected_any=["father"])]
    options = InterviewOptions(character=beethoven.name, max_new_tokens=16, temperature=0.0)
    reports = [interview(e, beethoven, options, questions) for e in (engine, remote)]
    assert [r["answer"] for r in reports[0]["results"]] == [r["answer"] for r in reports[1]["results"]]

    conversations = [[{"role": "user", "content": f"Name a {thing} in three words."}] for thing in ("city", "song")]
    assert LocalGenerator(remote).complete(conversations, GREEDY) == LocalGenerator(engine).complete(conversations,
                                                                                                    GREEDY)


def test_adapters_are_model_names_on_the_server(remote, adapter_dir, engine):
    assert "random-lora" in remote.available_adapters()
    messages = [{"role": "user", "content": "Hello!"}]
    assert remote.generate(messages, GREEDY, "random-lora") == engine.generate(messages, GREEDY, "random-lora")
    with pytest.raises(ValueError, match="unknown adapter"):
        remote.check_adapter("no-such-run")
    with pytest.raises(ValueError, match="needs the local engine"):
        remote.stream(messages + [{"role": "assistant", "content": "Hi"}], GREEDY, continue_last=True)


def test_an_engine_url_that_does_not_answer_is_one_line_at_start(tmp_path):
    port = free_port()  # nothing listens there
    done = subprocess.run([sys.executable, "app.py", "--data-dir", str(tmp_path), "--engine-url",
                           f"http://127.0.0.1:{port}/v1"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("error: the engine at"), done.stderr[-1000:]
    with pytest.raises(EngineUnreachable):
        RemoteEngine(EngineOptions(engine_url=f"http://127.0.0.1:{port}/v1"))


def test_a_request_on_a_connection_the_server_had_just_closed_goes_once_more_with_a_mock_transport(monkeypatch):
    """The keep-alive race (the server closes an idle connection as a request goes out on it) cannot be made to
    happen on demand, so a mock transport plays the server and drops requests unanswered."""
    import json

    import httpx

    sent, drops, listed = [], [1], []

    def server(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/models"):
            listed.append(request)
            if len(listed) == 1:  # the model list meets the race too
                raise httpx.RemoteProtocolError("Server disconnected without sending a response.", request=request)
            return httpx.Response(200, json={"data": [{"id": "m"}]})
        sent.append(json.loads(request.content))
        if len(sent) <= drops[0]:
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.", request=request)
        chunk = {"choices": [{"delta": {"content": "Bonn."}}]}
        return httpx.Response(200, text=f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n")

    monkeypatch.setattr(httpx, "HTTPTransport", lambda **_: httpx.MockTransport(server))  # under OnceMoreOnDrop
    remote = RemoteEngine(EngineOptions(engine_url="http://engine.test/v1"))
    assert len(listed) == 2
    question = [{"role": "user", "content": "Where were you born?"}]
    assert remote.generate(question) == "Bonn."
    assert len(sent) == 2 and sent[0] == sent[1]
    sent.clear()
    drops[0] = 2  # dropped again: the server's failure, said as such, after one more try only
    with pytest.raises(EngineUnreachable, match="disconnected"):
        remote.generate(question)
    assert len(sent) == 2
