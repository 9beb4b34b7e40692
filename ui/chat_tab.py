"""The Chat tab: a character in a scene, streamed replies, Stop, Regenerate, Undo, Edit, Continue,
greetings to swipe, saved chats, and two characters talking to each other."""

from __future__ import annotations

import functools
import json
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import gradio as gr

from characters.chats import Chat, ChatStore
from plumbing.files import slugify
from characters.meta_prompt import DEFAULT_USER, replace_macros
from characters.scenes import INTERVIEW, Scene, scene_catalogue, scene_from
from characters.store import CharacterStore
from engine import Engine, SamplingOptions
from engine.memory import memory_of
from engine.messages import MAX_MESSAGE_CHARS, check_text, conversation
from engine.options import CHAT_DEFAULTS, chat_defaults
from engine.roleplay import client_turn, stream_turn, turn_messages
from ui.errors import shown

NO_ADAPTER = "none (base model)"
NOBODY = "nobody (chat with me)"
MAX_PLAY_TURNS = 12
MEMORIES_TITLE = "Memories used"


def sampling_controls() -> list[gr.components.Component]:
    """Sliders for ``SamplingOptions``; the server checks the values again."""
    defaults = SamplingOptions(**CHAT_DEFAULTS)
    return [
        gr.Slider(0.0, 2.0, value=defaults.temperature, step=0.05, label="Temperature (0 = greedy)"),
        gr.Slider(0.05, 1.0, value=defaults.top_p, step=0.05, label="Top-p"),
        gr.Slider(1, 1024, value=defaults.max_new_tokens, step=1, label="Max new tokens"),
        gr.Slider(1.0, 2.0, value=defaults.repetition_penalty, step=0.05, label="Repetition penalty"),
        gr.Number(value=-1, precision=0, label="Seed (-1 = random)"),
        gr.Slider(0.0, 0.5, value=defaults.min_p, step=0.01, label="Min-p (0 = off)"),  # last: older clients omit it
    ]


def sampling_from(temperature, top_p, max_new_tokens, repetition_penalty, seed, min_p=None,
                  trained: bool = False) -> SamplingOptions:
    return SamplingOptions.from_values(chat_defaults(trained), temperature=temperature, top_p=top_p,
                                       max_new_tokens=max_new_tokens, repetition_penalty=repetition_penalty,
                                       seed=seed, min_p=min_p)


def display(chat: Chat | None) -> list[dict]:
    """The Chatbot's messages: in a two-character scene each line is signed by its speaker; a reply that
    brought memories into its prompt is preceded by a folded "Memories used" note listing them."""
    if chat is None:
        return []
    two = bool(chat.other)
    shown_messages = []
    for m in chat.messages:
        if m.get("memories"):
            shown_messages.append({"role": "assistant", "content": "\n".join(f"- {t}" for t in m["memories"]),
                                   "metadata": {"title": MEMORIES_TITLE, "status": "done"}})
        content = m["content"]
        if two and m.get("name"):
            content = f"**{m['name']}:** {content}"
        shown_messages.append({"role": m["role"], "content": content})
    return shown_messages


class ChatTab:
    """Behaviour in named methods (each an event handler a test can call without a browser); layout in ``build``."""

    def __init__(self, engine: Engine, characters: CharacterStore, chats: ChatStore):
        self.engine, self.characters, self.chats = engine, characters, chats

    # ---- helpers ------------------------------------------------------------------------

    def adapters(self) -> list[str]:
        return [NO_ADAPTER, *self.engine.available_adapters()]

    def adapter_of(self, choice) -> str | None:
        if choice in (None, "", NO_ADAPTER):
            return None
        if not isinstance(choice, str):
            raise ValueError("adapter must be a name")
        return choice

    def new_chat(self, character, scene, other, user, persona, greeting: int = 0, adapter: str | None = None) -> Chat:
        """A new chat, read ahead (through ``adapter``, when the chat starts with one)."""
        char = self.characters.load(character)
        other_name = "" if other in (None, "", NOBODY) else other
        if other_name:
            self.characters.load(other_name)
            if other_name == character:
                raise ValueError("choose two different characters for a two-character scene")
        user = check_text(user or DEFAULT_USER, "your name", 100).strip() or DEFAULT_USER
        persona = check_text(persona, "your persona", 2_000)
        chat = Chat(character=char.name, scene=scene_from(scene).to_dict(), other=other_name, user=user,
                    user_persona=persona)
        greetings = char.greetings
        if greetings:
            text = replace_macros(greetings[greeting % len(greetings)], char.name, other_name or user)
            chat.messages.append({"role": "assistant", "content": text, "name": char.name})
        self.read_ahead(chat, char, adapter)
        return chat

    def read_ahead(self, chat: Chat, char, adapter: str | None = None) -> None:
        """Let the model read the system prompt and greeting while the visitor types the first message; through
        an adapter, the bare meta prompt its turns get (the full persona read through it left the first reply
        to read 166 tokens instead of 60, bench/tabs.py)."""
        other = self.characters.load(chat.other) if chat.other else None
        messages = turn_messages(char, Scene.from_dict(chat.scene), chat.messages, None, chat.user,
                                 chat.user_persona, other, trained=bool(adapter))
        threading.Thread(target=self._read_ahead, args=(messages, char, adapter), daemon=True).start()

    def choose_adapter(self, chat: Chat | None, adapter_choice) -> None:
        """An adapter chosen: load it now and read the chat ahead through it, as opening a chat does for the
        base model (measured with 8 tabs, bench/tabs.py: a trained character's first words came seconds
        after the others' when its adapter was first loaded by the reply)."""
        adapter = self.adapter_of(adapter_choice)
        self.engine.check_adapter(adapter)  # an unknown name is this event's error, not the thread's
        if chat is not None and adapter:
            self.read_ahead(chat, self.characters.load(chat.character), adapter)

    def penalty_for(self, adapter_choice) -> float:
        """The repetition penalty slider's value once an adapter (or none) is chosen: the chat default of a
        trained character or of an untrained one (``engine.options.chat_defaults``)."""
        return chat_defaults(bool(self.adapter_of(adapter_choice)))["repetition_penalty"]

    def _read_ahead(self, messages: list[dict], char, adapter: str | None = None) -> None:
        self.engine.prefill(messages, adapter)
        memory = memory_of(self.engine)
        if memory is not None:
            memory.index(char)  # the character's memory vectors, before its first reply needs them

    def reply(self, chat: Chat, speaker: str, sampling: SamplingOptions, adapter: str | None,
              continue_last: bool = False, memory: bool = True) -> Iterator[Chat]:
        """Stream ``speaker``'s turn into ``chat``; the chat is saved when the turn ends or is stopped. With
        ``memory`` the memories brought into the prompt are kept on the reply, for the page to show."""
        char = self.characters.load(speaker)
        other_name = chat.other if speaker == chat.character else chat.character
        other = self.characters.load(other_name) if chat.other else None
        stats: dict = {}
        pieces = stream_turn(self.engine, char, Scene.from_dict(chat.scene), chat.messages, None, sampling, adapter,
                             chat.user, chat.user_persona, other, continue_last=continue_last, stats=stats,
                             memory=memory)
        if not continue_last:
            chat.messages.append({"role": "assistant", "content": "", "name": char.name})
        if stats.get("memories"):
            chat.messages[-1]["memories"] = stats["memories"]
        try:
            for piece in pieces:
                chat.messages[-1]["content"] += piece
                yield chat
        finally:
            self.chats.save(chat)

    def _generation(self, adapter_choice, values) -> tuple[SamplingOptions, str | None, bool]:
        """The sampling options, adapter and memory switch of a reply event (the switch is its last input)."""
        *sampling_values, memory = values
        if not isinstance(memory, bool):
            raise gr.Error("memory must be true or false")
        adapter = self.adapter_of(adapter_choice)
        return sampling_from(*sampling_values, trained=bool(adapter)), adapter, memory

    @staticmethod
    def _last_reply(chat: Chat | None, what: str) -> str:
        """The speaker of the last reply, which is regenerated or continued."""
        if chat is None or not chat.messages or chat.messages[-1]["role"] != "assistant":
            raise gr.Error(f"There is no reply to {what}.")
        return chat.messages[-1]["name"] or chat.character

    # ---- what the page shows of a chat ----------------------------------------------------

    @staticmethod
    def scene_line(chat: Chat | None) -> str:
        if chat is None:
            return ""
        s = Scene.from_dict(chat.scene)
        bits = [f"**{s.name or 'Custom scene'}**", s.type, s.place_and_time,
                f"mood *{s.mood}*" if s.mood else "", f"topic *{s.topic}*" if s.topic else ""]
        return " · ".join(b for b in bits if b)

    def saved_choices(self, chat: Chat) -> gr.Dropdown:
        choices = [(c.title, c.id) for c in self.chats.list(chat.character)]
        return gr.Dropdown(choices=choices, value=chat.id if chat.id in [i for _, i in choices] else None)

    def shown_chat(self, chat: Chat) -> tuple:
        """The values of ``[chat_state, chatbot, scene_view, saved, remembered]``."""
        return chat, display(chat), self.scene_line(chat), self.saved_choices(chat), {"character": chat.character,
                                                                                      "chat": chat.id}

    def reopened(self, chat: Chat) -> tuple:
        """A saved chat shown again (a page reload, the saved chats, an import): its character and second
        character, ``shown_chat``'s values, then the adapter it was last answered through (where that still
        exists) and its repetition penalty. The chat is read ahead through it: before, a reload showed no adapter,
        and the next reply came from the base model (and an import left the dropdowns on the chat before)."""
        names = self.characters.names()
        adapter = chat.adapter if chat.adapter in self.engine.available_adapters() else None
        self.read_ahead(chat, self.characters.load(chat.character), adapter)
        return (gr.Dropdown(choices=names, value=chat.character),
                gr.Dropdown(choices=[NOBODY, *names], value=chat.other or NOBODY), *self.shown_chat(chat),
                gr.Dropdown(choices=self.adapters(), value=adapter or NO_ADAPTER), self.penalty_for(adapter))

    # ---- event handlers -------------------------------------------------------------------

    def start(self, character, scene, other, user, persona, adapter_choice=None) -> tuple:
        """A new chat; one that starts with an adapter chosen ("Chat with this character" in the Training tab) is
        read ahead through it, as choosing it in Chat does."""
        adapter = self.adapter_of(adapter_choice)
        self.engine.check_adapter(adapter)
        return self.shown_chat(self.new_chat(character, scene, other, user, persona, adapter=adapter))

    def start_from_scene(self, scene_value, character, other, user, persona) -> tuple:
        return self.shown_chat(self.new_chat(character, scene_value, other, user, persona))

    def swipe(self, step: int, chat: Chat, index: int, *setup) -> tuple:
        if chat is None or any(m["role"] == "user" for m in chat.messages) or len(chat.messages) > 1:
            raise gr.Error("Greetings can be swiped only before the conversation starts.")
        index += step
        return (*self.shown_chat(self.new_chat(*setup, greeting=index)), index)

    def send_message(self, text, chat: Chat, adapter_choice, *values):
        """``values``: the sampling controls, then the memory switch (as ``_generation`` reads them)."""
        if chat is None:
            raise gr.Error("Choose a character first.")
        text = check_text(text, "message", MAX_MESSAGE_CHARS, allow_empty=False)
        options, adapter_name, memory = self._generation(adapter_choice, values)
        self.engine.check_adapter(adapter_name)
        chat.adapter = adapter_name or ""
        chat.messages.append({"role": "user", "content": text, "name": chat.user})
        yield chat, display(chat), ""
        for chat in self.reply(chat, chat.character, options, adapter_name, memory=memory):
            yield chat, display(chat), ""

    def regenerate_reply(self, chat: Chat, adapter_choice, *values):
        speaker = self._last_reply(chat, "regenerate")
        options, adapter_name, memory = self._generation(adapter_choice, values)
        chat.messages.pop()
        for chat in self.reply(chat, speaker, options, adapter_name, memory=memory):
            yield chat, display(chat)

    def continue_reply(self, chat: Chat, adapter_choice, *values):
        speaker = self._last_reply(chat, "continue")
        options, adapter_name, memory = self._generation(adapter_choice, values)
        for chat in self.reply(chat, speaker, options, adapter_name, continue_last=True, memory=memory):
            yield chat, display(chat)

    def undo_last(self, chat: Chat) -> tuple:
        if chat is None or not chat.messages:
            raise gr.Error("Nothing to undo.")
        last = chat.messages.pop()
        if last["role"] == "assistant" and chat.messages and chat.messages[-1]["role"] == "user":
            last = chat.messages.pop()  # undo the whole exchange; the message returns to the box
        self.chats.save(chat)
        return chat, display(chat), last["content"] if last["role"] == "user" else gr.update()

    def edit_last(self, chat: Chat, text) -> tuple:
        if chat is None or not chat.messages:
            raise gr.Error("There is no message to edit.")
        chat.messages[-1]["content"] = check_text(text, "the new text", MAX_MESSAGE_CHARS, allow_empty=False)
        self.chats.save(chat)
        return chat, display(chat), ""

    def play_turns(self, chat: Chat, n, adapter_choice, *values):
        if chat is None or not chat.other:
            raise gr.Error("Choose a second character under 'Two characters in a scene' first.")
        n = int(n) if isinstance(n, (int, float)) and 1 <= n <= MAX_PLAY_TURNS else None
        if n is None:
            raise gr.Error(f"Turns must be between 1 and {MAX_PLAY_TURNS}.")
        options, adapter_name, memory = self._generation(adapter_choice, values)
        for _ in range(n):
            last = next((m["name"] for m in reversed(chat.messages) if m["role"] == "assistant"), chat.other)
            speaker = chat.other if last == chat.character else chat.character
            for chat in self.reply(chat, speaker, options, adapter_name, memory=memory):
                yield chat, display(chat)

    def reopen(self, chat: Chat, chat_id) -> tuple:
        if chat is None or not chat_id:
            return (gr.update(),) * 9
        return self.reopened(self.chats.load(chat.character, chat_id))

    def export_chat(self, chat: Chat) -> str:
        if chat is None:
            raise gr.Error("There is no chat to export.")
        path = Path(tempfile.mkdtemp(prefix="chat-")) / f"{slugify(chat.character)}-{chat.id}.json"
        path.write_text(json.dumps(chat.to_dict(), ensure_ascii=False, indent=2))
        return str(path)

    def import_chat(self, data) -> tuple:
        if data is None:
            return (gr.update(),) * 9
        return self.reopened(self.chats.import_bytes(data))  # which refuses an unknown character, loading it

    def restore(self, remembered) -> tuple:
        """On page load: this browser's last chat, else a new chat with Beethoven."""
        names = self.characters.names()
        if isinstance(remembered, dict) and remembered.get("chat") and remembered.get("character") in names:
            try:
                return self.reopened(self.chats.load(remembered["character"], remembered["chat"]))
            except (KeyError, ValueError, OSError):
                pass
        chat = self.new_chat("Ludwig van Beethoven", INTERVIEW.name, NOBODY, DEFAULT_USER, "")
        return (gr.Dropdown(choices=names), gr.Dropdown(choices=[NOBODY, *names]), *self.shown_chat(chat),
                gr.Dropdown(choices=self.adapters(), value=NO_ADAPTER), self.penalty_for(None))

    # ---- the HTTP API -----------------------------------------------------------------------

    def chat(self, message: str, history: list[dict], character: str = "", scene: str = "", system_prompt: str = "",
             adapter: str = "", user_name: str = DEFAULT_USER, temperature: float = 0.7,
             max_new_tokens: int = CHAT_DEFAULTS["max_new_tokens"], seed: int = -1,
             memory: bool = True) -> Iterator[str]:
        """Stream the reply of `character` (a preset or saved character) in `scene` (a catalogue name or
        a scene as JSON; empty = the interview setting) to `message` after `history` (openai-style messages).
        Without a character, `system_prompt` is used as it is. With `memory` (default) the character brings
        the memories nearest the message into the prompt. Each yielded value is the reply so far."""
        if not isinstance(memory, bool):
            raise gr.Error("memory must be true or false")
        adapter_name = self.adapter_of(adapter)
        options = SamplingOptions.from_values(chat_defaults(bool(adapter_name)), temperature=temperature,
                                              max_new_tokens=max_new_tokens, seed=seed)
        if character:
            pieces = client_turn(self.engine, self.characters.find(character), scene_from(scene), history, message,
                                 options, adapter_name, user_name, memory=memory)
        else:
            pieces = self.engine.stream(conversation(system_prompt, history, message), options, adapter_name)
        reply = ""
        for piece in pieces:
            reply += piece
            yield reply

    @staticmethod
    def scenes() -> list[dict]:
        """The scene catalogue (the first is Character-LLM's interview setting)."""
        return [s.to_dict() for s in scene_catalogue()]

    def adapter_names(self) -> list[str]:
        """Names of the trained adapters the engine can load."""
        return self.engine.available_adapters()

    # ---- the layout -------------------------------------------------------------------------

    def build(self, scene_state: gr.State, remembered: gr.BrowserState) -> dict:
        """``remembered``: this browser's chat, which a page reload reopens (made outside the tabs, see ui.app)."""
        names = self.characters.names()
        with gr.Row():
            character = gr.Dropdown(names, value="Ludwig van Beethoven", label="Character", scale=2,
                                    elem_id="chat-character")
            scene = gr.Dropdown([s.name for s in scene_catalogue()], value=INTERVIEW.name, label="Scene", scale=2,
                                allow_custom_value=True, info="Pick one here or build one in the Scenes tab.")
            adapter = gr.Dropdown(self.adapters(), value=NO_ADAPTER, label="Adapter (trained character)", scale=1,
                                  elem_id="chat-adapter")
        scene_view = gr.Markdown(elem_id="chat-scene")
        with gr.Row():
            with gr.Column(scale=3):
                chatbot = gr.Chatbot(label="Conversation", height=480, buttons=["copy"])
                with gr.Row():
                    message = gr.Textbox(placeholder="Say something in character…", show_label=False, scale=5,
                                         max_lines=6, max_length=MAX_MESSAGE_CHARS)
                    send = gr.Button("Send", variant="primary", scale=1)
                with gr.Row():
                    stop = gr.Button("Stop", variant="stop")
                    regenerate = gr.Button("Regenerate")
                    cont = gr.Button("Continue")
                    undo = gr.Button("Undo")
                    clear = gr.Button("Clear")
                with gr.Row():
                    prev_greeting = gr.Button("◀ Greeting", size="sm")
                    next_greeting = gr.Button("Greeting ▶", size="sm")
                with gr.Accordion("Edit the last message", open=False):
                    edit_box = gr.Textbox(label="New text of the last message", lines=3)
                    edit = gr.Button("Replace the last message")
            with gr.Column(scale=2):
                with gr.Accordion("You", open=True):
                    user = gr.Textbox(DEFAULT_USER, label="Your name", max_length=100)
                    persona = gr.Textbox(label="Your persona (who you are in the scene)", lines=2, max_length=2000)
                with gr.Accordion("Two characters in a scene", open=False):
                    other = gr.Dropdown([NOBODY, *names], value=NOBODY, label="Second character")
                    turns = gr.Slider(1, MAX_PLAY_TURNS, value=4, step=1, label="Turns to play")
                    play = gr.Button("Play N turns")
                local = memory_of(self.engine) is not None  # a remote engine has no hidden states to search with
                memory = gr.Checkbox(local, interactive=local, elem_id="chat-memory",
                                     label="Memory: bring the character's facts and profile lines nearest your "
                                           "message into the prompt" + ("" if local else " (needs the local engine)"))
                with gr.Accordion("Sampling", open=False):
                    sampling = sampling_controls()
                with gr.Accordion("Saved chats", open=False):
                    saved = gr.Dropdown([], label="Reopen a chat of this character")
                    with gr.Row():
                        export = gr.Button("Export this chat")
                        upload = gr.File(label="Import a chat (JSON)", file_types=[".json"], type="binary")
                    download = gr.File(label="Download", interactive=False)
        chat_state = gr.State(None)
        greeting_index = gr.State(0)

        setup = [character, scene, other, user, persona]
        outputs = [chat_state, chatbot, scene_view, saved, remembered]
        for trigger in (character.input, scene.input, other.input):
            trigger(shown(self.start), setup, outputs, api_visibility="private")
        clear.click(shown(self.start), setup, outputs, api_name="new_chat")
        scene_state.change(shown(self.start_from_scene), [scene_state, character, other, user, persona], outputs,
                           api_visibility="private")
        for button, step in ((prev_greeting, -1), (next_greeting, 1)):
            button.click(shown(functools.partial(self.swipe, step)),
                         [chat_state, greeting_index, *setup], [*outputs, greeting_index], api_visibility="private")

        generation = [adapter, *sampling, memory]  # the switch last: API clients may leave it out
        # Every event that writes a reply shares one limit, the engine's batch: that many replies decode
        # together, and a visitor beyond it sees their place in Gradio's queue rather than a frozen page.
        reply = {"concurrency_id": "reply", "concurrency_limit": self.engine.options.max_batch_rows}
        streams = [
            message.submit(shown(self.send_message), [message, chat_state, *generation],
                           [chat_state, chatbot, message], api_name="send", **reply),
            send.click(shown(self.send_message), [message, chat_state, *generation], [chat_state, chatbot, message],
                       api_visibility="private", **reply),
            regenerate.click(shown(self.regenerate_reply), [chat_state, *generation], [chat_state, chatbot],
                             api_name="regenerate", **reply),
            cont.click(shown(self.continue_reply), [chat_state, *generation], [chat_state, chatbot],
                       api_name="continue", **reply),
            play.click(shown(self.play_turns), [chat_state, turns, *generation], [chat_state, chatbot],
                       api_name="play_turns", **reply),
        ]
        stop.click(None, cancels=streams, api_visibility="private")
        adapter.input(shown(self.choose_adapter), [chat_state, adapter], None, api_visibility="private")
        adapter.input(shown(self.penalty_for), adapter, sampling[3], api_visibility="private")  # its default
        undo.click(shown(self.undo_last), chat_state, [chat_state, chatbot, message], api_name="undo")
        edit.click(shown(self.edit_last), [chat_state, edit_box], [chat_state, chatbot, edit_box],
                   api_name="edit_last")
        reopened = [character, other, *outputs, adapter, sampling[3]]  # a chat shown again, with its choices
        saved.input(shown(self.reopen), [chat_state, saved], reopened, api_visibility="private")
        export.click(shown(self.export_chat), chat_state, download, api_name="export_chat")
        upload.upload(shown(self.import_chat), upload, reopened, api_name="import_chat")
        gr.api(shown(self.chat), api_name="chat", **reply)
        gr.api(shown(self.scenes), api_name="scenes")
        gr.api(shown(self.adapter_names), api_name="adapters")
        return {"character": character, "scene": scene, "adapter": adapter, "adapters": self.adapters,
                "chatbot": chatbot,
                "start_trained": (shown(self.start), [*setup, adapter], outputs),
                "on_load": (self.restore, [remembered], reopened)}


def build(engine: Engine, characters: CharacterStore, chats: ChatStore, scene_state: gr.State,
          remembered: gr.BrowserState) -> dict:
    return ChatTab(engine, characters, chats).build(scene_state, remembered)
