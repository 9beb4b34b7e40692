"""The app as a visitor or an API client meets it: started by `python app.py`, called over HTTP."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from gradio_client import Client

from conftest import ROOT, free_port


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """`python app.py` in its own process, as `make run` starts it."""
    port = free_port()
    data = tmp_path_factory.mktemp("user_data")
    log = open(data / "app.log", "w")
    process = subprocess.Popen(
        [sys.executable, "app.py", "--port", str(port), "--data-dir", str(data)],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 180
    client = None
    while time.time() < deadline and process.poll() is None:
        try:
            client = Client(url, verbose=False)
            break
        except Exception:
            time.sleep(1)
    if client is None:
        process.kill()
        pytest.fail("the app did not start:\n" + (data / "app.log").read_text()[-3000:])
    yield client
    process.terminate()
    process.wait(timeout=30)
    log.close()


def test_app_lists_its_endpoints(served):
    endpoints = served.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert {"/chat", "/respond", "/clear"} <= set(endpoints)


def test_chat_endpoint_streams_the_reply(served):
    job = served.submit("Where were you born?", [], "You are Ludwig van Beethoven, born in Bonn.",
                        0.0, 32, -1, api_name="/chat")
    updates = list(job)
    assert len(updates) >= 2, "the reply should arrive in several updates"
    assert updates[-1].startswith(updates[0]) and len(updates[-1]) > len(updates[0])


def test_chat_endpoint_uses_the_history(served):
    history = [{"role": "user", "content": "My name is Ada."}, {"role": "assistant", "content": "Hello Ada!"}]
    reply = served.predict("What is my name?", history, "You are a helpful assistant.", 0.0, 16, -1,
                           api_name="/chat")
    assert isinstance(reply, str) and reply.strip()


@pytest.mark.parametrize("args, words", [
    (("hi", [{"role": "root", "content": "x"}], ""), "role"),
    (("", [], ""), "empty"),
    (("hi", [], "x" * 30_000), "limit"),
    (("hi", [], "", 5.0, 16, -1), "temperature"),
])
def test_chat_endpoint_refuses_bad_input_with_a_clear_message(served, args, words):
    with pytest.raises(Exception) as err:
        served.predict(*args, api_name="/chat")
    assert words in str(err.value)


def test_respond_event_streams_into_the_chatbot(served):
    job = served.submit("Hello!", [], "You are Socrates.", 0.0, 0.9, 16, 1.1, -1, api_name="/respond")
    updates = list(job)
    history, box = updates[-1]
    assert box == ""
    assert [m["role"] for m in history] == ["user", "assistant"]
    assert len(updates) >= 3
