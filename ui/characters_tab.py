"""The Characters tab: pick a preset or build one the SimsChat way, preview the prompt, save, import, export."""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import gradio as gr

from characters import builder, catalogue
from characters.cards import export, read_card, to_v2
from plumbing.files import slugify
from characters.meta_prompt import meta_prompt, persona
from characters.schema import Character, CharacterError, Simulacra, validate
from characters.store import CharacterStore
from engine import Engine, SamplingOptions
from ui.errors import shown

NEW = ""


def lines(text: str) -> list[str]:
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


def items(text: str) -> list[str]:
    return [part.strip() for part in (text or "").replace("\n", ",").split(",") if part.strip()]


def text(value):
    """Empty for None; any other non-text value is kept so that validation names the field."""
    return "" if value is None else value


def paragraphs(text: str) -> list[str]:
    return [p.strip() for p in (text or "").split("\n\n") if p.strip()]


class Form:
    """The builder's fields, in one order, and the mapping to and from ``Character``."""

    def __init__(self):
        s = catalogue.skills()
        with gr.Row():
            self.name = gr.Textbox(label="Name", max_length=100)
            self.gender = gr.Dropdown(["female", "male", "non-binary"], label="Gender", allow_custom_value=True)
            self.age = gr.Textbox(label="Age", max_length=200)
            self.tone = gr.Dropdown(catalogue.tones(), label="Tone", allow_custom_value=True)
        with gr.Row():
            self.career = gr.Dropdown(catalogue.careers(), label="Career", allow_custom_value=True)
            self.aspiration = gr.Dropdown(catalogue.aspirations(), label="Aspiration", allow_custom_value=True)
            self.era = gr.Textbox(label="Era (when the character lived; for historical figures)", max_length=200)
        self.traits = gr.CheckboxGroup(catalogue.traits(), label=f"Traits (up to {catalogue.MAX_TRAITS})")
        with gr.Accordion("Skills (0 = none)", open=False):
            self.skills = []
            for row in range(0, len(s), 4):
                with gr.Row():
                    for skill in s[row:row + 4]:
                        self.skills.append(gr.Slider(0, 10, step=1, value=0, label=skill))
        with gr.Accordion("Personal and social", open=False):
            with gr.Row():
                self.hobbies = gr.Textbox(label="Hobbies (comma separated)")
                self.advantages = gr.Textbox(label="Advantages (comma separated)")
                self.disadvantages = gr.Textbox(label="Disadvantages (comma separated)")
            with gr.Row():
                self.family = gr.Textbox(label="Family", lines=2)
                self.social_relations = gr.Textbox(label="Social relations", lines=2)
                self.living_conditions = gr.Textbox(label="Living conditions", lines=2)
        self.description = gr.Textbox(label="Description", lines=4)
        self.polish = gr.Button("Polish with the model (writes the description from the elements)")
        self.personality = gr.Textbox(label="Personality", lines=2)
        with gr.Accordion("Greeting, examples, scenario", open=False):
            self.first_mes = gr.Textbox(label="Greeting (first message)", lines=2)
            self.alternate_greetings = gr.Textbox(label="Alternate greetings (one per line)", lines=3)
            self.mes_example = gr.Textbox(label="Example dialogue (<START> blocks, {{char}}/{{user}})", lines=4)
            self.scenario = gr.Textbox(label="Scenario", lines=2)
        with gr.Accordion("Profile and facts (inputs of training and of the interview)", open=False):
            self.profile = gr.Textbox(label="Profile (biography paragraphs, separated by a blank line)", lines=8)
            self.facts = gr.Textbox(label="Facts (one short fact per line, in the first person)", lines=8)
        with gr.Accordion("Card fields", open=False):
            self.system_prompt = gr.Textbox(label="System prompt override ({{original}} = ours)", lines=2)
            self.post_history_instructions = gr.Textbox(label="Post-history instructions", lines=2)
            self.creator_notes = gr.Textbox(label="Creator notes", lines=2)
            self.tags = gr.Textbox(label="Tags (comma separated)")

    @property
    def components(self) -> list:
        return [self.name, self.gender, self.age, self.tone, self.career, self.aspiration, self.era, self.traits,
                *self.skills, self.hobbies, self.advantages, self.disadvantages, self.family, self.social_relations,
                self.living_conditions, self.description, self.personality, self.first_mes,
                self.alternate_greetings, self.mes_example, self.scenario, self.profile, self.facts,
                self.system_prompt, self.post_history_instructions, self.creator_notes, self.tags]

    @staticmethod
    def values_of(c: Character) -> list:
        s = c.sims
        skill_levels = [s.skills.get(skill, 0) for skill in catalogue.skills()]
        return [c.name, s.gender, s.age, s.tone, s.career, s.aspiration, s.era,
                [t for t in s.traits if t in catalogue.traits()], *skill_levels, ", ".join(s.hobbies),
                ", ".join(s.advantages), ", ".join(s.disadvantages), s.family, s.social_relations,
                s.living_conditions, c.description, c.personality, c.first_mes, "\n".join(c.alternate_greetings),
                c.mes_example, c.scenario, "\n\n".join(s.profile), "\n".join(s.facts), c.system_prompt,
                c.post_history_instructions, c.creator_notes, ", ".join(c.tags)]

    @staticmethod
    def character_of(base: Character | None, values: list) -> Character:
        """The form's values applied over ``base`` (so unknown card fields survive an edit)."""
        n = len(catalogue.skills())
        (name, gender, age, tone, career, aspiration, era, traits), rest = values[:8], values[8:]
        skill_levels, rest = rest[:n], rest[n:]
        (hobbies, advantages, disadvantages, family, social, living, description, personality, first_mes,
         alternates, mes_example, scenario, profile, facts, system_prompt, post_history, notes, tags) = rest
        skills = {}
        for skill, level in zip(catalogue.skills(), skill_levels):
            if level is None or level == 0:
                continue
            if isinstance(level, float) and level.is_integer():
                level = int(level)
            skills[skill] = level
        sims = Simulacra(career=text(career), aspiration=text(aspiration), traits=list(traits or []), skills=skills,
                         gender=text(gender), age=text(age), tone=text(tone), hobbies=items(hobbies),
                         advantages=items(advantages), disadvantages=items(disadvantages), family=text(family),
                         social_relations=text(social), living_conditions=text(living), era=text(era),
                         profile=paragraphs(profile), facts=lines(facts))
        base = base or Character(name="")
        return validate(base.copy(
            name=text(name).strip() if isinstance(name, str) else name, description=text(description),
            personality=text(personality), first_mes=text(first_mes), alternate_greetings=lines(alternates),
            mes_example=text(mes_example), scenario=text(scenario), system_prompt=text(system_prompt),
            post_history_instructions=text(post_history), creator_notes=text(notes), tags=items(tags), sims=sims,
        ))


class CharactersTab:
    """Behaviour in named methods (each an event handler a test can call without a browser); layout in ``build``."""

    def __init__(self, engine: Engine, store: CharacterStore):
        self.engine, self.store = engine, store

    def load(self, name) -> list:
        character = self.store.load(name)
        kind = "preset (read-only: saving makes a copy)" if self.store.is_preset(name) else "your character"
        return [*Form.values_of(character), f"Loaded **{character.name}**, {kind}."]

    @staticmethod
    def preview(*values) -> tuple[str, str]:
        try:
            character = Form.character_of(None, list(values))
        except (CharacterError, ValueError) as err:
            return f"⚠️ {err}", ""
        return persona(character).replace("\n", "  \n"), meta_prompt(character)

    @staticmethod
    def check_traits(traits):
        problems = catalogue.trait_problems(list(traits or []))
        if problems:
            gr.Warning("; ".join(problems))
            return traits[:-1]
        return traits

    def save_character(self, selected, *values) -> tuple:
        store = self.store
        base = store.load(selected) if selected else None
        character = Form.character_of(base, list(values))
        if store.is_preset(character.name):
            character.name = store.free_name(character.name)
        elif character.name != selected and character.name in store.names():
            raise gr.Error(f"A character named {character.name!r} exists already; choose another name.")
        store.save(character, store.avatar(selected) if selected else None)
        message = f"Saved **{character.name}** to your characters."
        return gr.Dropdown(choices=store.names(), value=character.name), character.name, message

    def duplicate_character(self, selected) -> tuple:
        clone = self.store.duplicate(selected)
        return gr.Dropdown(choices=self.store.names(), value=clone.name), f"Duplicated as **{clone.name}**."

    def delete_character(self, selected, confirmed) -> tuple:
        if not confirmed:
            raise gr.Error("Tick 'Yes, delete this character' first.")
        self.store.delete(selected)
        names = self.store.names()
        return gr.Dropdown(choices=names, value=names[0]), False, f"Deleted **{selected}**."

    def import_card(self, data) -> tuple:
        if data is None:
            return gr.Dropdown(), "No file."
        character, avatar = read_card(data)
        if character.name in self.store.names():
            character.name = self.store.free_name(character.name)
        self.store.save(character, avatar, overwrite=False)
        return gr.Dropdown(choices=self.store.names(), value=character.name), f"Imported **{character.name}**."

    def export_card(self, fmt, selected, *values) -> str:
        base = self.store.load(selected) if selected else None
        character = Form.character_of(base, list(values))
        data = export(character, fmt, self.store.avatar(selected) if selected else None)
        suffix = {"v2": ".v2.json", "v3": ".v3.json", "png": ".png"}[fmt]
        path = Path(tempfile.mkdtemp(prefix="card-")) / f"{slugify(character.name)}{suffix}"
        path.write_bytes(data)
        return str(path)

    def polish(self, *values):
        character = Form.character_of(None, list(values))
        text = ""
        for piece in self.engine.stream(builder.polish_messages(character),
                                        SamplingOptions(temperature=0.7, max_new_tokens=160)):
            text += piece
            yield text

    @staticmethod
    def surprise_me() -> list:
        character = builder.surprise()
        return [*Form.values_of(character), gr.Dropdown(value=None),
                f"A surprise: **{character.name}**. Edit anything, then Save."]

    @staticmethod
    def blank() -> list:
        return [*Form.values_of(Character(name="")), gr.Dropdown(value=None), "A new character: fill in the form."]

    def list_characters(self) -> list[dict]:
        """Every character: name and kind (preset or user)."""
        return [{"name": e.name, "kind": e.kind} for e in self.store.entries()]

    def get_character(self, name: str) -> dict:
        """One character as a Character Card V2 object."""
        return to_v2(self.store.find(name))

    def on_page_load(self, selected) -> list:
        # A reload shows characters saved in another session or before a restart.
        names = self.store.names()
        value = selected if selected in names else "Ludwig van Beethoven"
        return [gr.Dropdown(choices=names, value=value), *self.load(value)]

    def build(self) -> dict:
        """Build the tab; returns the components other tabs listen to."""
        with gr.Row():
            picker = gr.Dropdown(self.store.names(), value="Ludwig van Beethoven", label="Character", scale=3,
                                 info="Presets are read-only; saving a changed preset saves a copy.")
            new = gr.Button("New", scale=1)
            surprise = gr.Button("Surprise me", scale=1)
            duplicate = gr.Button("Duplicate", scale=1)
        status = gr.Markdown()
        with gr.Row():
            with gr.Column(scale=3):
                form = Form()
                with gr.Row():
                    save = gr.Button("Save", variant="primary")
                    confirm = gr.Checkbox(label="Yes, delete this character", value=False)
                    delete = gr.Button("Delete", variant="stop")
            with gr.Column(scale=2):
                persona_view = gr.Markdown(label="Persona")
                prompt_view = gr.Textbox(label="The exact system prompt the model gets (interview setting)",
                                         lines=18, interactive=False, buttons=["copy"])
                with gr.Accordion("Import and export cards", open=True):
                    upload = gr.File(label="Import a Character Card (V1/V2/V3, JSON or PNG)",
                                     file_types=[".json", ".png"], type="binary")
                    with gr.Row():
                        export_v2 = gr.Button("Export V2 JSON")
                        export_v3 = gr.Button("Export V3 JSON")
                        export_png = gr.Button("Export PNG")
                    download = gr.File(label="Download", interactive=False)

        fields = form.components
        picker.input(shown(self.load), picker, [*fields, status], api_name="load_character")
        gr.on([c.change for c in fields], self.preview, fields, [persona_view, prompt_view],
              api_visibility="private", show_progress="hidden", trigger_mode="always_last")
        form.traits.input(self.check_traits, form.traits, form.traits, api_visibility="private")
        save.click(shown(self.save_character), [picker, *fields], [picker, form.name, status],
                   api_name="save_character")
        duplicate.click(shown(self.duplicate_character), picker, [picker, status], api_name="duplicate_character")
        delete.click(shown(self.delete_character), [picker, confirm], [picker, confirm, status],
                     api_name="delete_character")
        upload.upload(shown(self.import_card), upload, [picker, status], api_name="import_card")
        for button, fmt in ((export_v2, "v2"), (export_v3, "v3"), (export_png, "png")):
            button.click(shown(functools.partial(self.export_card, fmt)), [picker, *fields], download,
                         api_name=f"export_{fmt}")
        form.polish.click(shown(self.polish), fields, form.description, api_name="polish_description")
        surprise.click(self.surprise_me, None, [*fields, picker, status], api_name="surprise")
        new.click(self.blank, None, [*fields, picker, status], api_visibility="private")
        gr.api(shown(self.list_characters), api_name="characters")
        gr.api(shown(self.get_character), api_name="character")
        return {"picker": picker, "on_load": (self.on_page_load, [picker], [picker, *fields, status])}


def build(engine: Engine, store: CharacterStore) -> dict:
    return CharactersTab(engine, store).build()
