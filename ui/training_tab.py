"""The Training tab: 1 · Experience Reconstruction (a character's experiences into a dataset) and
2 · QLoRA runs (started as processes of their own, followed by polling their run folder)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import gradio as gr
import pandas as pd

from characters.store import CharacterStore
from engine import Engine
from plumbing.files import read_jsonl
from plumbing.layout import character_datasets, dataset_folder
from training.dataset import ExperienceOptions, Stopped, build_dataset, dataset_dir, token_counter
from training.export import FORMATS, ExportOptions, export_run
from training.jobs import JobManager
from training.qlora import RunOptions
from training.runs import zip_adapter
from ui import zerogpu
from ui.background import Background, request_stop
from ui.errors import shown

RUN_SIZES = {"Quick demo — minutes on CPU": "quick", "Standard": "standard", "Paper-like": "paper"}
SHOWN_EXPERIENCES = 30


def datasets_of(character: str) -> list[str]:
    """Dataset ids of a character, newest first."""
    try:
        folder = character_datasets(character)
    except ValueError:
        return []
    if not folder.is_dir():
        return []
    return sorted((p.name for p in folder.iterdir() if (p / "settings.json").is_file()), reverse=True)


def existing_dataset(character: str, dataset_id: str) -> Path:
    folder = dataset_folder(character, dataset_id)
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


def progress_bar(status: dict, last: dict) -> str:
    step, total = status.get("step") or last.get("step") or 0, status.get("max_steps") or last.get("max_steps") or 0
    share = step / total if total else 0
    filled = int(share * 30)
    eta = last.get("eta_s")
    eta_text = f" · ETA {int(eta // 60)} min {int(eta % 60)} s" if eta and status.get("state") == "running" else ""
    speed = f" · {last['tokens_per_s']:.0f} tokens/s" if last.get("tokens_per_s") else ""
    return (f"**{status.get('state', '?')}** · step {step}/{total or '?'} `{'█' * filled}{'░' * (30 - filled)}` "
            f"{share:.0%}{eta_text}{speed}" + (f"  \n⚠️ {status['error']}" if status.get("error") else ""))


def loss_points(log: list[dict]) -> pd.DataFrame:
    """Train and eval loss by step, as the loss plot wants them."""
    points = [{"step": r["step"], "loss": r["loss"], "series": "train"} for r in log if r.get("loss") is not None]
    points += [{"step": r["step"], "loss": r["eval_loss"], "series": "eval"} for r in log
               if r.get("eval_loss") is not None]
    return pd.DataFrame(points or [{"step": 0, "loss": None, "series": "train"}])


def recall_points(log: list[dict]) -> pd.DataFrame:
    """Recall of the dataset's held-out fact questions by step, as the recall plot wants it."""
    points = [{"step": r["step"], "recall": round(100 * r["recall"], 1)} for r in log if r.get("recall") is not None]
    return pd.DataFrame(points or [{"step": 0, "recall": None}])


def optional_number(value, kind=float):
    # An empty number field reaches the server as 0 (or None from an API client): the preset decides.
    return None if value in (None, "", 0) else kind(value)


class ExperiencesPanel:
    """1 · Experience Reconstruction: generate, stop, resume, show a dataset."""

    def __init__(self, engine: Engine, characters: CharacterStore):
        self.engine, self.characters = engine, characters

    def generate(self, name, n_scenes, n_protective, n_phrasings, who, url, model, seed_value, resume_it, selected,
                 max_new_tokens=ExperienceOptions.max_new_tokens, progress=gr.Progress()):
        char = self.characters.load(name)
        options = ExperienceOptions(character=char.name, scenes=int(n_scenes), protective=int(n_protective),
                                    phrasings=int(n_phrasings), generator=who, base_url=url or "",
                                    api_model=model or "", seed=int(seed_value or 0), resume=bool(resume_it),
                                    max_new_tokens=int(max_new_tokens))
        if resume_it and not selected:
            raise gr.Error("Choose the dataset to resume.")
        out = existing_dataset(char.name, selected) if resume_it else dataset_dir(char)
        generator = options.make_generator(self.engine)

        def work(report, stop_now):
            try:
                build_dataset(char, generator, options, out, report, stop_now,
                              count_tokens=token_counter(self.engine))
            except Stopped:
                return "stopped"
            return "done"

        job = Background(work)
        listed = sorted({*datasets_of(char.name), out.name}, reverse=True)  # its settings.json may not exist yet
        yield job.stop, f"Started **{out.name}**…", gr.Dropdown(choices=listed, value=out.name)
        for _ in job.follow(progress):
            kept = len(read_jsonl(out / "experiences.jsonl"))
            yield job.stop, f"{job.message} — {kept} experiences kept so far", gr.Dropdown()
        if job.error is not None:
            raise gr.Error(f"Generation failed: {job.error}. What was made is kept; tick Resume to go on.")
        done_text = "Stopped; tick *Resume* to continue." if job.result == "stopped" else "Done."
        yield None, done_text, gr.Dropdown(choices=datasets_of(char.name), value=out.name)

    @staticmethod
    def show(name, selected) -> tuple[str, str]:
        if not selected:
            return "", ""
        folder = existing_dataset(name, selected)
        experiences = read_jsonl(folder / "experiences.jsonl")
        text = "\n\n---\n\n".join(script(e) for e in experiences[:SHOWN_EXPERIENCES])
        if len(experiences) > SHOWN_EXPERIENCES:
            text += f"\n\n*…and {len(experiences) - SHOWN_EXPERIENCES} more in {folder}*"
        return summary(folder), text

    @staticmethod
    def dataset_choices(name: str) -> gr.Dropdown:
        return gr.Dropdown(choices=datasets_of(name))

    @staticmethod
    def datasets_of_character(name: str) -> gr.Dropdown:
        """Another character: its datasets, none chosen."""
        return gr.Dropdown(choices=datasets_of(name), value=None)

    def build(self) -> dict:
        gr.Markdown("### 1 · Experience Reconstruction\nThe model imagines scenes from the character's profile, "
                    "writes the character's experiences in them (thinking and speaking), protective experiences "
                    "(someone asks about what the character cannot know) and interviews grounded in its facts.")
        with gr.Row():
            character = gr.Dropdown(self.characters.names(), value="Ludwig van Beethoven", label="Character",
                                    scale=2)
            scenes = gr.Slider(0, 100, value=8, step=1, label="Experiences (scenes)")
            protective = gr.Slider(0, 50, value=4, step=1, label="Protective experiences")
            phrasings = gr.Slider(0, 10, value=8, step=1, label="Question phrasings per fact")
        with gr.Accordion("Generator", open=False):
            with gr.Row():
                generator = gr.Radio(["local", "openai"], value="local", label="Who writes",
                                     info="local = the loaded model (batched); openai = any OpenAI-compatible "
                                          "endpoint")
                base_url = gr.Textbox(label="Base URL (openai)", placeholder="http://127.0.0.1:8000/v1")
                api_model = gr.Textbox(label="Model at the endpoint (openai)")
                seed = gr.Number(value=0, precision=0, label="Seed")
                longest = gr.Slider(32, 1024, value=ExperienceOptions.max_new_tokens, step=16,
                                    label="Longest experience (tokens)", info="a scene's dialogue is cut there")
        with gr.Row():
            resume = gr.Checkbox(label="Resume the selected dataset instead of starting a new one")
            generate = gr.Button("Generate", variant="primary")
            stop = gr.Button("Stop", variant="stop")
        progress_text = gr.Markdown()
        with gr.Row():
            dataset = gr.Dropdown(datasets_of("Ludwig van Beethoven"), label="Datasets of this character", scale=3,
                                  allow_custom_value=True)  # checked by existing_dataset(), like run ids
            refresh = gr.Button("Refresh", scale=1)
        stats_view = gr.Markdown()
        preview = gr.Markdown(label="Experiences", height=420)
        stop_event = gr.State(None)

        inputs = [character, scenes, protective, phrasings, generator, base_url, api_model, seed, resume, dataset,
                  longest]
        running = generate.click(shown(self.generate), inputs, [stop_event, progress_text, dataset],
                                 api_name="generate_experiences")
        running.then(shown(self.show), [character, dataset], [stats_view, preview], api_visibility="private")
        stop.click(request_stop, stop_event, progress_text, api_name="stop_experiences")
        dataset.change(shown(self.show), [character, dataset], [stats_view, preview], api_name="show_dataset")
        refresh.click(self.dataset_choices, character, dataset, api_visibility="private")
        character.change(self.datasets_of_character, character, dataset, api_visibility="private")
        return {"character": character, "dataset": dataset}


class RunsPanel:
    """2 · QLoRA runs: start, follow (progress, loss plot, log), stop, resume, list."""

    def __init__(self, jobs: JobManager):
        self.jobs = jobs

    def start_run(self, name, selected_dataset, size_label, steps, n_epochs, lr, r, alpha, batch, accum, seq,
                  batching_mode, seed_value, patience=0) -> gr.Dropdown:
        if not selected_dataset:
            raise gr.Error("Generate or choose a dataset above first.")
        folder = existing_dataset(name, selected_dataset)
        if size_label not in RUN_SIZES:
            raise gr.Error("Choose a run size.")
        options = RunOptions(
            character=name, dataset=str(folder), preset=RUN_SIZES[size_label],
            max_steps=optional_number(steps, int), epochs=optional_number(n_epochs), learning_rate=optional_number(lr),
            lora_r=optional_number(r, int), lora_alpha=optional_number(alpha, int),
            batch_size=optional_number(batch, int), grad_accum=optional_number(accum, int),
            max_seq_len=optional_number(seq, int), batching=batching_mode, seed=int(seed_value or 42),
            early_stop=optional_number(patience, int) or 0)
        run_id = self.jobs.submit(options)
        return gr.Dropdown(choices=[r["id"] for r in self.jobs.runs()], value=run_id)

    def table(self, runs: list[dict] | None = None) -> list[list]:
        rows = []
        for r in self.jobs.runs() if runs is None else runs:
            last = r["last"][0]
            rows.append([r["id"], r["options"].get("character", ""), r["status"].get("state", ""),
                         f"{r['status'].get('step', 0)}/{r['status'].get('max_steps', '?')}",
                         last.get("loss"), last.get("eval_loss"), r["status"].get("best_recall")])
        return rows

    def refresh(self, selected) -> tuple:
        """The values of ``[run, progress, loss_plot, recall_plot, log_tail, runs_table]`` now."""
        self.jobs.pump()  # a queued run starts when the one before it has ended
        runs = self.jobs.runs()  # read once a tick: the choices, the table and the selected run's status
        choices = [r["id"] for r in runs]
        if not selected or selected not in choices:
            return gr.Dropdown(choices=choices), "", None, None, "", self.table(runs)
        log = self.jobs.log(selected)
        status = next(r["status"] for r in runs if r["id"] == selected)
        last = next((r for r in reversed(log) if r.get("loss") is not None), {})
        return (gr.Dropdown(choices=choices), progress_bar(status, last), loss_points(log), recall_points(log),
                self.jobs.output_tail(selected), self.table(runs))

    def stop_run(self, selected) -> str:
        if not selected:
            raise gr.Error("Choose a run.")
        self.jobs.stop(selected)
        return f"Stopping **{selected}** at its next step; its adapter will be saved."

    def resume_run(self, selected) -> str:
        if not selected:
            raise gr.Error("Choose a run.")
        self.jobs.resume(selected)
        return f"**{selected}** will continue from its last checkpoint."

    @staticmethod
    def export_adapter(selected) -> str:
        """The selected run's adapter as a zip, to keep or to load elsewhere with PEFT."""
        if not selected:
            raise gr.Error("Choose a run.")
        return str(zip_adapter(selected))

    @staticmethod
    def export_character(selected, fmt) -> list[str]:
        """The selected run's character to take elsewhere: a GGUF of the merged model, an Ollama Modelfile,
        the character card (V3) and the adapter zip (written to a fresh temporary folder, which Gradio
        serves wherever the data folder is)."""
        if not selected:
            raise gr.Error("Choose a run.")
        files = export_run(ExportOptions(run=selected, format=fmt, out=tempfile.mkdtemp(prefix="export-")))
        return [str(path) for path in files.values()]

    def runs_list(self) -> list[dict]:
        """Every training run with its status and last log line."""
        return [{"id": r["id"], "character": r["options"].get("character"), "status": r["status"],
                 "last": r["last"][0]} for r in self.jobs.runs()]

    def on_page_load(self) -> gr.Dropdown:
        # Re-attach: the newest run (running or not) is shown with its live progress.
        runs = self.jobs.runs()
        active = self.jobs.active()
        return gr.Dropdown(choices=[r["id"] for r in runs], value=active or (runs[0]["id"] if runs else None))

    def build(self, character, dataset) -> dict:
        gr.Markdown("### 2 · QLoRA run\nThe base model in 4-bit NF4, LoRA adapters trained on the dataset above, in "
                    "a process of its own. The loss counts only the character's own turns.")
        with gr.Row():
            size = gr.Radio(list(RUN_SIZES), value=next(iter(RUN_SIZES)), label="Run size")
            start = gr.Button("Start training", variant="primary")
        with gr.Accordion("Advanced options (empty = the run size's default)", open=False):
            with gr.Row():
                max_steps = gr.Number(None, precision=0, label="Max steps (-1 = by epochs)")
                epochs = gr.Number(None, label="Epochs")
                learning_rate = gr.Number(None, label="Learning rate")
                lora_r = gr.Number(None, precision=0, label="LoRA rank")
                lora_alpha = gr.Number(None, precision=0, label="LoRA alpha")
            with gr.Row():
                batch_size = gr.Number(None, precision=0, label="Batch size")
                grad_accum = gr.Number(None, precision=0, label="Gradient accumulation")
                max_seq_len = gr.Number(None, precision=0, label="Max sequence length")
                batching = gr.Radio(["group_by_length", "pad_to_max"], value="group_by_length", label="Batching")
                seed = gr.Number(42, precision=0, label="Seed")
                early_stop = gr.Number(0, precision=0, label="Early stop (0 = never)",
                                       info="Stop after this many evaluations without a rise in recall")
        with gr.Row():
            # Any run id may come from an API client: run_folder() checks it, not the choices of this page.
            run = gr.Dropdown([], label="Run", scale=3, allow_custom_value=True)
            stop = gr.Button("Stop", variant="stop", scale=1)
            resume = gr.Button("Resume", scale=1)
            chat_with = gr.Button("Chat with this character", variant="secondary", scale=1)
            export = gr.Button("Download the adapter (zip)", scale=1)
        progress = gr.Markdown()
        download = gr.File(label="Adapter", interactive=False, visible=True)
        with gr.Row():
            export_format = gr.Radio(list(FORMATS), value="gguf-q8_0", label="Export format", scale=3,
                                     info="GGUF for llama.cpp, Ollama and LM Studio, with a Modelfile, the card "
                                          "and the adapter")
            export_gguf = gr.Button("Export", scale=1)
        exported = gr.File(label="Exported character", file_count="multiple", interactive=False)
        with gr.Row():
            loss_plot = gr.LinePlot(x="step", y="loss", color="series", title="Loss (train and eval)", height=300,
                                    scale=2)
            recall_plot = gr.LinePlot(x="step", y="recall", title="Recall of held-out fact questions (%)", height=300,
                                      y_lim=[0, 100], scale=2)
            log_tail = gr.Textbox(label="Log", lines=12, max_lines=12, autoscroll=True, scale=1)
        runs_table = gr.Dataframe(headers=["run", "character", "state", "step", "loss", "eval loss", "best recall"],
                                  label="Runs", interactive=False)
        timer = gr.Timer(2.0)

        advanced = [max_steps, epochs, learning_rate, lora_r, lora_alpha, batch_size, grad_accum, max_seq_len,
                    batching, seed, early_stop]
        start.click(shown(self.start_run), [character, dataset, size, *advanced], run, api_name="start_training")
        outputs = [run, progress, loss_plot, recall_plot, log_tail, runs_table]
        timer.tick(shown(self.refresh), run, outputs, api_visibility="private", show_progress="hidden")
        run.change(shown(self.refresh), run, outputs, api_name="run_status", show_progress="hidden")
        stop.click(shown(self.stop_run), run, progress, api_name="stop_training")
        resume.click(shown(self.resume_run), run, progress, api_name="resume_training")
        export.click(shown(self.export_adapter), run, download, api_name="export_adapter")
        export_gguf.click(shown(self.export_character), [run, export_format], exported, api_name="export_character")
        gr.api(shown(self.runs_list), api_name="runs")
        return {"run": run, "chat_with": chat_with, "on_load": (self.on_page_load, [], [run])}


def build(engine: Engine, characters: CharacterStore) -> dict:
    experiences = ExperiencesPanel(engine, characters).build()
    # On ZeroGPU a run is a series of GPU calls from the app, not a process of its own.
    runs = RunsPanel(JobManager(launch=zerogpu.launch_training if zerogpu.active() else None)).build(experiences["character"], experiences["dataset"])
    return {**experiences, **runs}
