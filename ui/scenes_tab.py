"""The Scenes tab: pick a scene from the catalogue, write one, or have the model extract scenes
from the character's profile; preview the prompt; send the scene to the Chat tab."""

from __future__ import annotations

import gradio as gr

from characters import catalogue
from characters.meta_prompt import meta_prompt
from characters.scenes import INTERVIEW, Scene, find_scene, scene_catalogue
from characters.store import CharacterStore
from engine import Engine, SamplingOptions
from training.scene_extraction import parse_scenes, profile_contexts, scene_messages
from ui.errors import shown

FIELDS = ("name", "type", "location", "time", "status", "mood", "topic")


def to_values(scene: Scene) -> list:
    return [getattr(scene, f) for f in FIELDS]


def from_values(values) -> Scene:
    return Scene.from_dict(dict(zip(FIELDS, values)))


class ScenesTab:
    """Handlers as methods (a test calls them without a browser); ``build`` lays out and wires them."""

    def __init__(self, engine: Engine, characters: CharacterStore):
        self.engine, self.characters = engine, characters

    @staticmethod
    def catalogue_scene(name: str) -> list:
        return to_values(find_scene(name))

    def show_prompt(self, character_name, *values) -> str:
        try:
            return meta_prompt(self.characters.load(character_name), from_values(values))
        except (KeyError, ValueError) as err:
            return f"⚠️ {err}"

    def generate_scenes(self, character_name, n, index):
        char = self.characters.load(character_name)
        contexts = profile_contexts(char)
        if not isinstance(index, (int, float)) or not 1 <= index <= len(contexts):
            raise gr.Error(f"{char.name} has {len(contexts)} profile paragraph(s); choose 1 to {len(contexts)}.")
        if not isinstance(n, (int, float)) or not 1 <= n <= 5:
            raise gr.Error("Ask for 1 to 5 scenes.")
        text = ""
        for piece in self.engine.stream(scene_messages(char, contexts[int(index) - 1], int(n)),
                                        SamplingOptions(temperature=0.8, max_new_tokens=400)):
            text += piece
            yield text, gr.Dropdown(), []
        scenes = parse_scenes(text)
        if not scenes:
            gr.Warning("The model wrote no scene that could be parsed; try again or write one yourself.")
        yield text, gr.Dropdown(choices=[(s.name, i) for i, s in enumerate(scenes)], value=None), \
            [s.to_dict() for s in scenes]

    @staticmethod
    def pick_generated(scenes, index):
        if not isinstance(index, int) or not 0 <= index < len(scenes):
            return [gr.update()] * len(FIELDS)
        return to_values(Scene.from_dict(scenes[index]))

    @staticmethod
    def use_scene(*values) -> dict:
        return from_values(values).to_dict()

    def on_page_load(self) -> list:
        return [gr.Dropdown(choices=self.characters.names()), *to_values(INTERVIEW)]

    def build(self, scene_state: gr.State) -> dict:
        with gr.Row():
            character = gr.Dropdown(self.characters.names(), value="Ludwig van Beethoven", label="Character", scale=2)
            pick = gr.Dropdown([s.name for s in scene_catalogue()], value=INTERVIEW.name, label="Scene catalogue",
                               scale=2)
        with gr.Row():
            with gr.Column(scale=3):
                name = gr.Textbox(label="Scene name", max_length=200)
                with gr.Row():
                    kind = gr.Dropdown(catalogue.scene_types(), label="Type", allow_custom_value=True)
                    location = gr.Textbox(label="Location", max_length=2000)
                    time = gr.Textbox(label="Time", max_length=2000)
                status = gr.Textbox(label="Status / background ({{char}} and {{user}} work here)", lines=3,
                                    max_length=2000)
                with gr.Row():
                    mood = gr.Dropdown(["", *catalogue.moods()], label="Mood")
                    topic = gr.Dropdown(["", *catalogue.topics()], label="Conversation topic")
                use = gr.Button("Chat in this scene", variant="primary")
                with gr.Accordion("Generate scenes from the character's profile", open=True):
                    gr.Markdown("Character-LLM's scene extraction: the loaded model reads a profile paragraph and "
                                "imagines scenes. A small model writes rough scenes; edit before use.")
                    with gr.Row():
                        count = gr.Slider(1, 5, value=3, step=1, label="Scenes to ask for")
                        paragraph = gr.Number(value=1, precision=0, label="Profile paragraph (1 = first)")
                    generate = gr.Button("Generate scenes")
                    generated_raw = gr.Textbox(label="What the model wrote", lines=6, interactive=False)
                    generated = gr.Dropdown([], label="Parsed scenes: pick one to edit")
            with gr.Column(scale=2):
                preview = gr.Textbox(label="System prompt with this scene", lines=26, interactive=False,
                                     buttons=["copy"])
        found = gr.State([])
        fields = [name, kind, location, time, status, mood, topic]

        pick.input(shown(self.catalogue_scene), pick, fields, api_visibility="private")
        gr.on([f.change for f in fields] + [character.change], self.show_prompt, [character, *fields], preview,
              api_visibility="private", show_progress="hidden", trigger_mode="always_last")
        generate.click(shown(self.generate_scenes), [character, count, paragraph], [generated_raw, generated, found],
                       api_name="generate_scenes")
        generated.input(self.pick_generated, [found, generated], fields, api_visibility="private")
        use.click(shown(self.use_scene), fields, scene_state, api_name="use_scene")
        return {"character": character, "on_load": (self.on_page_load, [], [character, *fields])}


def build(engine: Engine, characters: CharacterStore, scene_state: gr.State) -> dict:
    return ScenesTab(engine, characters).build(scene_state)
