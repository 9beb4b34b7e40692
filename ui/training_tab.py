"""The Training tab: Experience Reconstruction (generate a character's experiences into a dataset)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import gradio as gr

from characters.files import data_dir, inside, safe_child
from characters.store import CharacterStore
from engine import Engine
from training.experiences import ExperienceOptions, Stopped, build_dataset, dataset_dir, read_jsonl
from training.generators import LocalGenerator, OpenAIGenerator
from ui.errors import shown


def datasets_of(character: str) -> list[str]:
    """Dataset ids of a character, newest first."""
    try:
        folder = safe_child(data_dir() / "datasets", character)
    except ValueError:
        return []
    if not folder.is_dir():
        return []
    return sorted((p.name for p in folder.iterdir() if (p / "settings.json").is_file()), reverse=True)


def dataset_folder(character: str, dataset_id: str) -> Path:
    folder = inside(safe_child(data_dir() / "datasets", character), dataset_id)
    if not (folder / "settings.json").is_file():
        raise FileNotFoundError(f"no dataset {dataset_id!r} for {character!r}")
    return folder


def script(experience: dict) -> str:
    """An experience as a readable script: thinking in italics, speaking plain."""
    head = f"**{experience.get('location') or 'Somewhere'}** · {experience.get('kind', '')} · " \
           f"{experience.get('source', '')}  \n_{experience.get('background', '')}_"
    lines = []
    for turn in experience.get("dialogue", []):
        if turn["action"] == "(thinking)":
            lines.append(f"> **{turn['role']}** *(thinking)* *{turn['content']}*")
        else:
            lines.append(f"> **{turn['role']}**: {turn['content']}")
    return head + "\n>\n" + "\n>\n".join(lines)


def summary(folder: Path) -> str:
    stats_file = folder / "stats.json"
    experiences = read_jsonl(folder / "experiences.jsonl")
    drops = read_jsonl(folder / "drops.jsonl")
    if not stats_file.is_file():
        return (f"**Unfinished** (stopped or running): {len(experiences)} experiences kept, {len(drops)} dropped so "
                f"far. Tick *Resume* and press Generate to finish it.")
    stats = json.loads(stats_file.read_text())
    kinds = ", ".join(f"{k}: {v}" for k, v in stats["by_kind"].items())
    reasons = ", ".join(f"{k}: {v}" for k, v in stats["drops_by_reason"].items()) or "none"
    return (f"**{stats['examples']} training examples** ({kinds}); **{stats['dropped']} outputs dropped** "
            f"({reasons}); {stats['scenes']} scenes {stats['scenes_by_source']}; {stats['tokens'] or '?'} tokens.")


def build(engine: Engine, characters: CharacterStore) -> dict:
    gr.Markdown("### 1 · Experience Reconstruction\nThe model imagines scenes from the character's profile, writes "
                "the character's experiences in them (thinking and speaking), protective experiences (someone asks "
                "about what the character cannot know) and interviews grounded in its facts.")
    with gr.Row():
        character = gr.Dropdown(characters.names(), value="Ludwig van Beethoven", label="Character", scale=2)
        scenes = gr.Slider(0, 100, value=8, step=1, label="Experiences (scenes)")
        protective = gr.Slider(0, 50, value=4, step=1, label="Protective experiences")
        phrasings = gr.Slider(0, 5, value=3, step=1, label="Question phrasings per fact")
    with gr.Accordion("Generator", open=False):
        with gr.Row():
            generator = gr.Radio(["local", "openai"], value="local", label="Who writes",
                                 info="local = the loaded model (batched); openai = any OpenAI-compatible endpoint")
            base_url = gr.Textbox(label="Base URL (openai)", placeholder="http://127.0.0.1:8000/v1")
            api_model = gr.Textbox(label="Model at the endpoint (openai)")
            seed = gr.Number(value=0, precision=0, label="Seed")
    with gr.Row():
        resume = gr.Checkbox(label="Resume the selected dataset instead of starting a new one")
        generate = gr.Button("Generate", variant="primary")
        stop = gr.Button("Stop", variant="stop")
    progress_text = gr.Markdown()
    with gr.Row():
        dataset = gr.Dropdown(datasets_of("Ludwig van Beethoven"), label="Datasets of this character", scale=3)
        refresh = gr.Button("Refresh", scale=1)
    stats_view = gr.Markdown()
    preview = gr.Markdown(label="Experiences", height=420)
    stop_event = gr.State(None)

    def run(name, n_scenes, n_protective, n_phrasings, who, url, model, seed_value, resume_it, selected,
            progress=gr.Progress()):
        char = characters.load(name)
        options = ExperienceOptions(character=char.name, scenes=int(n_scenes), protective=int(n_protective),
                                    phrasings=int(n_phrasings), generator=who, base_url=url or "",
                                    api_model=model or "", seed=int(seed_value or 0), resume=bool(resume_it))
        out = dataset_folder(char.name, selected) if resume_it and selected else dataset_dir(char)
        if resume_it and not selected:
            raise gr.Error("Choose the dataset to resume.")
        gen = LocalGenerator(engine, options.batch_size) if who == "local" else OpenAIGenerator(
            options.base_url, options.api_model, options.api_key_env, options.max_in_flight)
        stop_now = threading.Event()
        state = {"done": 0, "total": 1, "message": "starting", "error": None}

        def report(done, total, message):
            state.update(done=done, total=total, message=message)

        def work():
            try:
                build_dataset(char, gen, options, out, report, stop_now,
                              count_tokens=lambda text: len(engine.tokenizer(text)["input_ids"]))
            except Stopped:
                state["message"] = "stopped"
            except Exception as err:  # shown to the visitor below; the partial files stay for a resume
                state["error"] = err

        worker = threading.Thread(target=work, daemon=True)
        worker.start()
        listed = sorted({*datasets_of(char.name), out.name}, reverse=True)  # its settings.json may not exist yet
        yield stop_now, f"Started **{out.name}**…", gr.Dropdown(choices=listed, value=out.name)
        while worker.is_alive():
            progress(state["done"] / max(1, state["total"]), desc=state["message"])
            time.sleep(0.5)
            kept = len(read_jsonl(out / "experiences.jsonl"))
            yield stop_now, f"{state['message']} — {kept} experiences kept so far", gr.Dropdown()
        if state["error"] is not None:
            raise gr.Error(f"Generation failed: {state['error']}. What was made is kept; tick Resume to go on.")
        done_text = "Stopped; tick *Resume* to continue." if state["message"] == "stopped" else "Done."
        yield None, done_text, gr.Dropdown(choices=datasets_of(char.name), value=out.name)

    def request_stop(event):
        if isinstance(event, threading.Event):
            event.set()
            return "Stopping after the current batch…"
        return "Nothing is running."

    def show(name, selected):
        if not selected:
            return "", ""
        folder = dataset_folder(name, selected)
        experiences = read_jsonl(folder / "experiences.jsonl")
        shown_ = "\n\n---\n\n".join(script(e) for e in experiences[:30])
        more = f"\n\n*…and {len(experiences) - 30} more in {folder}*" if len(experiences) > 30 else ""
        return summary(folder), shown_ + more

    inputs = [character, scenes, protective, phrasings, generator, base_url, api_model, seed, resume, dataset]
    running = generate.click(shown(run), inputs, [stop_event, progress_text, dataset], api_name="generate_experiences")
    running.then(shown(show), [character, dataset], [stats_view, preview], api_visibility="private")
    stop.click(request_stop, stop_event, progress_text, api_name="stop_experiences")
    dataset.change(shown(show), [character, dataset], [stats_view, preview], api_name="show_dataset")
    refresh.click(lambda name: gr.Dropdown(choices=datasets_of(name)), character, dataset, api_visibility="private")
    character.change(lambda name: gr.Dropdown(choices=datasets_of(name), value=None), character, dataset,
                     api_visibility="private")
    return {"character": character, "dataset": dataset}
