"""The Interview tab: interview a character with the base model and trained adapters, side by side."""

from __future__ import annotations

import time

import gradio as gr

from characters.question_sets import set_for, shipped_sets
from characters.store import CharacterStore
from engine import Engine
from evaluation.interview import InterviewOptions, interview, label
from evaluation.questions import QuestionError, parse_bytes, question_set
from evaluation.report import cell, chart, label_of, save_comparison, table, write_report
from plumbing.layout import data_dir, interview_folder
from ui.background import Background, request_stop
from ui.errors import shown

BASE = "base model"
OWN_SET = "the character's own set"
UPLOADED = "the uploaded file"
WITHOUT_MEMORY, WITH_MEMORY = "without memory", "with memory"
DEFAULT_ANSWER = InterviewOptions.max_new_tokens  # the CLI's default


class InterviewTab:
    """Handlers as methods (a test calls them without a browser); ``build`` lays out and wires them."""

    def __init__(self, engine: Engine, characters: CharacterStore):
        self.engine, self.characters = engine, characters
        self.root = data_dir()  # fixed when the app is built, like the character store's

    def models(self) -> list[str]:
        return [BASE, *self.engine.available_adapters()]

    @staticmethod
    def questions_of(name: str, choice: str, data: bytes | None):
        if choice == UPLOADED:
            if not data:
                raise QuestionError("Upload a question file first.")
            return parse_bytes(data), "upload"
        if choice == OWN_SET:
            own = set_for(name)
            if own is None:
                raise QuestionError(f"{name} has no question set of its own: choose another set or upload one.")
            return question_set(own), own
        return question_set(choice), choice  # unknown names are refused there

    def run_interview(self, name, chosen, choice, data, how, n_turns, memory_modes=(WITHOUT_MEMORY,),
                      max_new_tokens=DEFAULT_ANSWER, progress=gr.Progress()):
        char = self.characters.load(name)
        chosen = list(dict.fromkeys(chosen or []))
        allowed = self.models()
        unknown = [m for m in chosen if m not in allowed]
        if unknown or not chosen:
            raise gr.Error(f"Choose models among: {', '.join(allowed)}" + (f" (unknown: {unknown})" if unknown else ""))
        modes = list(dict.fromkeys(memory_modes or []))
        if not modes or not set(modes) <= {WITHOUT_MEMORY, WITH_MEMORY}:
            raise gr.Error(f"Choose memory among: {WITHOUT_MEMORY}, {WITH_MEMORY}")
        questions, source = self.questions_of(char.name, choice, data)
        options = [InterviewOptions(character=char.name, adapter="" if m == BASE else m, mode=how, turns=int(n_turns),
                                    max_new_tokens=int(max_new_tokens), memory=mode == WITH_MEMORY)
                   for m in chosen for mode in modes]

        def work(report, stop_now):
            reports = []
            for i, opts in enumerate(options):
                def each(done, total, message, i=i, name=label(opts)):
                    report(i * total + done, len(options) * total, f"{name}: {message}")
                reports.append(interview(self.engine, char, opts, questions, source, each, stop_now))
                if stop_now.is_set():
                    break
            return reports

        job = Background(work)
        yield job.stop, "Interviewing…", gr.Dataframe(), None, gr.Dataframe(), None
        for _ in job.follow(progress):
            yield job.stop, f"Interviewing… {job.message}", gr.Dataframe(), None, gr.Dataframe(), None
        if job.error is not None:
            raise gr.Error(f"The interview failed: {job.error}")
        reports = job.result or []
        if not reports:
            yield None, "Stopped before any answer.", gr.Dataframe(), None, gr.Dataframe(), None
            return
        yield (None, *self.shown_reports(char.name, reports))

    def shown_reports(self, name: str, reports: list[dict]) -> tuple:
        """Save the reports and the comparison; the status line, scores, chart, answers side by side, files."""
        folder = interview_folder(name, time.strftime("%Y%m%d-%H%M%S"), self.root)
        files = [str(write_report(r, folder / f"{label_of(r).replace('/', '-')}.json")) for r in reports]
        files += [str(path) for path in save_comparison(reports, folder)]
        labels = [label_of(r) for r in reports]
        answers = [{r["question"]: r for r in report["results"]} for report in reports]
        rows = [[q["question"], *[cell(a[q["question"]], 400) if q["question"] in a else "–" for a in answers]]
                for q in reports[0]["results"]]
        complete = all(r["complete"] for r in reports)
        seconds = sum(r["seconds"] for r in reports)
        text = (f"{'Done' if complete else 'Stopped'}: {len(reports[0]['results'])} questions × {len(reports)} "
                f"model(s) in {seconds:.0f} s. Reports saved in `{folder.relative_to(self.root)}`.")
        return (text, gr.Dataframe(value=table(reports), headers=["metric", "better", *labels]), chart(reports),
                gr.Dataframe(value=rows, headers=["question", *labels]), files)

    def adapters(self) -> gr.CheckboxGroup:
        return gr.CheckboxGroup(choices=self.models())

    @staticmethod
    def choice_after_upload(data) -> str:
        return UPLOADED if data else OWN_SET

    def build(self) -> dict:
        gr.Markdown("Interview a character before and after training. Scores come from exact references in the "
                    "question set (accepted answers, content the character cannot know), not from a model: the "
                    "embedded 135M model is not a credible judge. Definitions are in the README.")
        with gr.Row():
            character = gr.Dropdown(self.characters.names(), value="Ludwig van Beethoven", label="Character", scale=2)
            models = gr.CheckboxGroup(self.models(), value=[BASE],
                                      label="Models (the base model and trained adapters)", scale=3)
            refresh = gr.Button("Refresh adapters", scale=1)
        with gr.Row():
            question_choice = gr.Dropdown([OWN_SET, *shipped_sets(), UPLOADED], value=OWN_SET, label="Question set")
            upload = gr.File(label="Question file (JSON list or JSON lines, Character-LLM format)",
                             file_types=[".json", ".jsonl"], type="binary")
            mode = gr.Radio(["single", "multi"], value="single", label="Interview",
                            info="single: each question alone · multi: one conversation that asks a fact twice")
            turns = gr.Slider(2, 40, value=12, step=1, label="Turns (multi)")
            memory = gr.CheckboxGroup([WITHOUT_MEMORY, WITH_MEMORY], value=[WITHOUT_MEMORY, WITH_MEMORY],
                                      label="Memory", info="each model as trained, and with the memories nearest "
                                                           "each question in its prompt (as the Chat tab's memory "
                                                           "switch)")
            answer_tokens = gr.Slider(16, 512, value=DEFAULT_ANSWER, step=8, label="Longest answer (tokens)",
                                      info="shorter answers finish sooner on a CPU", elem_id="interview-answer-tokens")
        with gr.Row():
            start = gr.Button("Run the interview", variant="primary")
            stop = gr.Button("Stop", variant="stop")
        status = gr.Markdown()
        scores = gr.Dataframe(headers=["metric", "better", BASE], label="Scores", interactive=False)
        plot = gr.Plot(label="Scores")
        transcripts = gr.Dataframe(headers=["question", BASE], label="Answers side by side (✓ accepted answer, "
                                   "🛡 protected, ⚠AI character break, ↻ degenerate)", interactive=False, wrap=True)
        download = gr.File(label="Reports (JSON per model, comparison as Markdown and PNG)", file_count="multiple",
                           interactive=False)
        stop_event = gr.State(None)

        outputs = [stop_event, status, scores, plot, transcripts, download]
        start.click(shown(self.run_interview),
                    [character, models, question_choice, upload, mode, turns, memory, answer_tokens], outputs,
                    api_name="interview")
        stop.click(request_stop, stop_event, status, api_name="stop_interview")
        refresh.click(self.adapters, None, models, api_name="interview_adapters")
        upload.upload(self.choice_after_upload, upload, question_choice, api_visibility="private")
        refresh_models = (self.adapters, None, models)
        return {"character": character, "models": models, "refresh": refresh_models, "on_load": refresh_models}


def build(engine: Engine, characters: CharacterStore) -> dict:
    return InterviewTab(engine, characters).build()
