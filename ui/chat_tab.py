"""The Chat tab: talk with the model under a system prompt, streamed, with Stop and Clear."""

from __future__ import annotations

from collections.abc import Iterator

import gradio as gr

from engine import Engine, SamplingOptions
from engine.messages import clean_history, conversation
from ui.errors import shown

SYSTEM_PROMPTS = {
    "Ludwig van Beethoven": (
        "I want you to act like Ludwig van Beethoven. I want you to respond and answer like Ludwig van "
        "Beethoven, using the tone, manner and vocabulary Beethoven would use. You are a composer born in "
        "Bonn in 1770, living in Vienna. You know nothing of the world after 1827."
    ),
    "Socrates": (
        "I want you to act like Socrates of Athens. Answer as Socrates would, by asking questions in return, "
        "with irony and patience. You know nothing of the world after 399 BC."
    ),
    "Helpful assistant": "You are a helpful assistant.",
}


def sampling_controls() -> list[gr.components.Component]:
    """Sliders for ``SamplingOptions``; the server checks the values again."""
    defaults = SamplingOptions()
    return [
        gr.Slider(0.0, 2.0, value=defaults.temperature, step=0.05, label="Temperature (0 = greedy)"),
        gr.Slider(0.05, 1.0, value=defaults.top_p, step=0.05, label="Top-p"),
        gr.Slider(1, 1024, value=defaults.max_new_tokens, step=1, label="Max new tokens"),
        gr.Slider(1.0, 2.0, value=defaults.repetition_penalty, step=0.05, label="Repetition penalty"),
        gr.Number(value=-1, precision=0, label="Seed (-1 = random)"),
    ]


def sampling_from(temperature, top_p, max_new_tokens, repetition_penalty, seed) -> SamplingOptions:
    return SamplingOptions.from_values(temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens,
                                       repetition_penalty=repetition_penalty, seed=seed)


def build(engine: Engine) -> None:
    def respond(message, history, system_prompt, *sampling_values):
        sampling = sampling_from(*sampling_values)
        messages = conversation(system_prompt, history, message)
        shown_history = clean_history(history) + [{"role": "user", "content": message},
                                                  {"role": "assistant", "content": ""}]
        yield shown_history, ""
        for piece in engine.stream(messages, sampling):
            shown_history[-1]["content"] += piece
            yield shown_history, ""

    def chat(message: str, history: list[dict], system_prompt: str = "", temperature: float = 0.7,
             max_new_tokens: int = 256, seed: int = -1) -> Iterator[str]:
        """Stream the reply to `message` after `history` (openai-style messages) under `system_prompt`.

        Each yielded value is the reply so far."""
        sampling = SamplingOptions.from_values(temperature=temperature, max_new_tokens=max_new_tokens, seed=seed)
        reply = ""
        for piece in engine.stream(conversation(system_prompt, history, message), sampling):
            reply += piece
            yield reply

    with gr.Row():
        with gr.Column(scale=3):
            chatbot = gr.Chatbot(label="Conversation", height=460, buttons=["copy"])
            with gr.Row():
                message = gr.Textbox(placeholder="Say something…", show_label=False, scale=5, max_lines=6)
                send = gr.Button("Send", variant="primary", scale=1)
            with gr.Row():
                stop = gr.Button("Stop", variant="stop")
                clear = gr.Button("Clear")
        with gr.Column(scale=2):
            preset = gr.Dropdown(list(SYSTEM_PROMPTS), value=next(iter(SYSTEM_PROMPTS)), label="System prompt")
            system_prompt = gr.Textbox(SYSTEM_PROMPTS[next(iter(SYSTEM_PROMPTS))], lines=8, label="System prompt text")
            with gr.Accordion("Sampling", open=False):
                sampling = sampling_controls()
            gr.Markdown(f"Model: `{engine.name}` · {engine.options.precision} · {engine.device.type}")

    preset.change(lambda name: SYSTEM_PROMPTS.get(name, ""), preset, system_prompt, api_name="system_prompt")
    inputs = [message, chatbot, system_prompt, *sampling]
    submitted = message.submit(shown(respond), inputs, [chatbot, message], api_name="respond")
    clicked = send.click(shown(respond), inputs, [chatbot, message], api_visibility="private")
    stop.click(None, cancels=[submitted, clicked], api_visibility="private")
    clear.click(lambda: ([], ""), None, [chatbot, message], api_name="clear")
    gr.api(shown(chat), api_name="chat", concurrency_limit=None)
