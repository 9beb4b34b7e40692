"""The Gradio Blocks app: one tab a module, wired together here."""

from __future__ import annotations

import functools

import gradio as gr
import uvicorn
from fastapi import FastAPI

from characters.chats import ChatStore
from characters.store import CharacterStore
from engine import Engine
from plumbing.layout import data_is_lost_on_restart
from training.runs import adapter_of, read_options, run_folder
from ui import characters_tab, chat_tab, interview_tab, scenes_tab, training_tab
from ui.errors import shown
from ui.openai_api import OpenAIAPI, router

# Replies decode together in one batch (engine.batching); the events that write them share the batch's
# size as their limit (chat_tab). Other events run CONCURRENT_EVENTS at a time. Past the limits a
# visitor waits in the queue and sees their place; past QUEUE_SIZE they get "queue full", not a stall.
CONCURRENT_EVENTS = 8
QUEUE_SIZE = 64
# How often Gradio's queue looks for a new event while it has none, and for progress to send: its own 1 ms and
# 10 ms on Linux kept an idle app at 6.9 % of a core (of a Space's two; 0.9 % with this, as on Windows, where
# Gradio waits 50 and 100 ms). An event then waits at most this long to start, against seconds a reply.
QUEUE_POLL_S = 0.05


RESTART_NOTICE = (
    "⚠️ **This Space has no persistent storage: characters, chats and training runs are lost when it "
    "restarts.** Keep what you make: *Export V3 JSON* or *Export PNG* in Characters, *Export this chat* in "
    "Chat, *Download the adapter (zip)* in Training. (The Space's owner can add persistent storage in its "
    "settings; the app then keeps everything in `/data`.)")


def footer(engine: Engine) -> str:
    """What the page runs on: model, precision, device and memory in use, on every page."""
    usage = engine.usage()
    if engine.precision == "remote":
        return f"Model `{engine.name}` · {usage['device_memory']}"
    why = f" ({engine.precision_reason})" if engine.options.precision == "auto" else ""
    return (f"Model `{engine.name}` · {engine.precision}{why} · {engine.device.type} · model "
            f"{usage['model_mb']:.0f} MB · {usage['device_memory']}")


def follow(characters: CharacterStore, name: str) -> tuple:
    """The character chosen in the Characters tab follows into the other tabs, with the choices too: a
    character saved a moment ago must be a valid value everywhere."""
    return (gr.Dropdown(choices=characters.names(), value=name),) * 4


def to_chat(_scene) -> gr.Tabs:
    """A scene sent from the Scenes tab opens the Chat tab."""
    return gr.Tabs(selected="chat")


def adapter_choices(adapters, value=None) -> gr.Dropdown:
    """The adapter dropdown of Chat with the adapters on disk now (a run may have finished since the page
    was built; ``adapters()`` lists them), and ``value`` chosen when given. Without it the choice is left as it
    is: opening the tab right after a reload sent back the value it read then, which undid the reopened chat's
    adapter when it came after it."""
    return gr.Dropdown(choices=adapters()) if value is None else gr.Dropdown(choices=adapters(), value=value)


def chat_with_run(adapters, run_id) -> tuple:
    """Open Chat with the character of a run and its trained adapter."""
    if not run_id:
        raise gr.Error("Choose a run.")
    folder = run_folder(run_id)
    adapter_of(folder)
    character = read_options(folder)["character"]
    return gr.Dropdown(value=character), adapter_choices(adapters, run_id), gr.Tabs(selected="chat")


def build_app(engine: Engine) -> gr.Blocks:
    characters, chats = CharacterStore(), ChatStore()
    with gr.Blocks(title="Simulacra Studio") as demo:
        gr.Markdown("# Simulacra Studio\nBuild a character, place it in a scene, chat with it, then train it.")
        if data_is_lost_on_restart():
            gr.Markdown(RESTART_NOTICE, elem_id="restart-notice")
        scene_state = gr.State(None)  # a scene sent from the Scenes tab to the Chat tab
        # This browser's chat, reopened on a reload. Outside the tabs: a tab's components mount when it is first
        # opened, and inside Chat the page-load event read the default ({}) before the stored chat.
        remembered = gr.BrowserState({}, storage_key="simulacra-chat")
        with gr.Tabs() as tabs:
            with gr.Tab("Characters", id="characters"):
                built = characters_tab.build(engine, characters)
            with gr.Tab("Scenes", id="scenes"):
                scenes = scenes_tab.build(engine, characters, scene_state)
            with gr.Tab("Chat", id="chat") as chat_page:
                chat = chat_tab.build(engine, characters, chats, scene_state, remembered)
            with gr.Tab("Training", id="training"):
                training = training_tab.build(engine, characters)
            with gr.Tab("Interview", id="interview") as interview_page:
                interviews = interview_tab.build(engine, characters)

        built["picker"].change(functools.partial(follow, characters), built["picker"],
                               [scenes["character"], chat["character"], training["character"], interviews["character"]],
                               api_visibility="private")
        page_footer = gr.Markdown(footer(engine), elem_id="footer")
        scene_state.change(to_chat, scene_state, tabs, api_visibility="private")
        # Opening a tab re-reads the adapters, so one trained after the page loaded can be picked at once.
        chat_page.select(functools.partial(adapter_choices, chat["adapters"]), None, chat["adapter"],
                         api_visibility="private")
        interview_page.select(*interviews["refresh"], api_visibility="private")
        fn, inputs, outputs = chat["start_trained"]
        training["chat_with"].click(shown(functools.partial(chat_with_run, chat["adapters"])), training["run"],
                                    [chat["character"], chat["adapter"], tabs],
                                    api_name="chat_with_run").then(fn, inputs, outputs, api_visibility="private")
        for part in (built, scenes, chat, training, interviews):
            fn, inputs, outputs = part["on_load"]
            demo.load(fn, inputs, outputs, api_visibility="private")
        demo.load(functools.partial(footer, engine), None, page_footer, api_visibility="private")
    demo.queue(default_concurrency_limit=CONCURRENT_EVENTS, max_size=QUEUE_SIZE)
    if hasattr(demo._queue, "sleep_when_free"):  # Gradio's own attributes, not settings it offers
        demo._queue.sleep_when_free = demo._queue.progress_update_sleep_when_free = QUEUE_POLL_S
    return demo


def server_app(engine: Engine) -> FastAPI:
    """The whole server: the OpenAI-compatible routes under ``/v1``, and the Gradio app at ``/``
    (Gradio's documented way to serve routes of one's own beside it)."""
    app = FastAPI(title="Simulacra Studio", docs_url=None, redoc_url=None, openapi_url=None)
    app.include_router(router(OpenAIAPI(engine, CharacterStore())))
    return gr.mount_gradio_app(app, build_app(engine), path="/", show_error=True, allowed_paths=[],
                               max_file_size="20mb")


def server(engine: Engine, host: str, port: int) -> uvicorn.Server:
    """The server of ``server_app``, ready to ``run()`` (or to start in a thread, as the tests do)."""
    return uvicorn.Server(uvicorn.Config(server_app(engine), host=host, port=port, log_level="warning",
                                         timeout_graceful_shutdown=5))
