"""The Gradio Blocks app: one tab a module."""

from __future__ import annotations

import gradio as gr

from engine import Engine
from characters.store import CharacterStore
from ui import characters_tab, chat_tab

# Chat streams interleave token by token on the shared model, so several may run at once;
# the queue caps how many run and how many wait, so a crowd gets "queue full", not a stall.
CONCURRENT_EVENTS = 8
QUEUE_SIZE = 64

PLANNED = {
    "Scenes": "Place the character in a scene with a location, a mood and a conversation topic.",
    "Training": "Experience Reconstruction and QLoRA: generate the character's experiences, then train it.",
    "Interview": "Interview a character before and after training and compare the scores.",
}


def build_app(engine: Engine) -> gr.Blocks:
    with gr.Blocks(title="Simulacra Studio") as demo:
        gr.Markdown("# Simulacra Studio\nBuild a character, place it in a scene, chat with it, then train it.")
        with gr.Tabs():
            with gr.Tab("Characters"):
                characters = characters_tab.build(engine, CharacterStore)
            with gr.Tab("Scenes"):
                gr.Markdown(PLANNED["Scenes"])
            with gr.Tab("Chat"):
                chat_tab.build(engine)
            for name in ("Training", "Interview"):
                with gr.Tab(name):
                    gr.Markdown(PLANNED[name])
        on_load, inputs, outputs = characters["on_load"]
        demo.load(on_load, inputs, outputs, api_visibility="private")
    demo.queue(default_concurrency_limit=CONCURRENT_EVENTS, max_size=QUEUE_SIZE)
    return demo
