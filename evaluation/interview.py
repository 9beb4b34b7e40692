"""Interviews: the character answers a question set, alone per question or as one conversation.

Single-turn interviews ask each question on its own in Character-LLM's interview setting (or a
chosen scene), several questions per forward pass. Multi-turn interviews are one scripted
conversation in which a fact asked early is asked again later in other words.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from characters.era import era_end
from characters.question_sets import set_for
from characters.scenes import INTERVIEW, Scene, find_scene
from characters.schema import Character
from engine.engine import Engine
from engine.generators import OpenAIGenerator
from engine.options import SamplingOptions
from engine.puzzlement import begun
from engine.roleplay import turn_messages, with_memories
from engine.shipped import SHIPPED_DIR
from evaluation import judge as llm_judge
from evaluation import metrics
from evaluation.questions import Question, QuestionError, load_questions, question_set
from plumbing.checks import check_whole_numbers
from plumbing.files import UnsafePathError, inside

INTERVIEWER = "Interviewer"
Progress = Callable[[int, int, str], None]


@dataclass
class InterviewOptions:
    character: str = field(default="", metadata={"help": "Name of the character (a preset or one of yours)."})
    adapter: str = field(default="", metadata={"help": "A run id (user_data/runs/<id>) or an adapter folder; "
                                                        "empty = the base model."})
    questions: str = field(default="", metadata={"help": "A question file, or the name of a shipped set; "
                                                          "empty = the character's own set."})
    mode: str = field(default="single", metadata={"help": "single: each question alone; multi: one conversation.",
                                                   "choices": ["single", "multi"]})
    turns: int = field(default=12, metadata={"help": "Questions in a multi-turn interview."})
    scene: str = field(default="", metadata={"help": "A scene name; empty = Character-LLM's interview setting."})
    judge: str = field(default="none", metadata={"help": "none, or openai: an LLM judge (Character-LLM's five "
                                                          "criteria, 1-7) at --judge-base-url.",
                                                  "choices": ["none", "openai"]})
    judge_base_url: str = field(default="", metadata={"help": "OpenAI-compatible endpoint of the judge."})
    judge_model: str = field(default="", metadata={"help": "Model name of the judge."})
    judge_key_env: str = field(default="OPENAI_API_KEY", metadata={"help": "Environment variable with its key."})
    max_new_tokens: int = field(default=96, metadata={"help": "Longest answer in tokens."})
    temperature: float = field(default=0.0, metadata={"help": "0 = greedy, so two runs give the same figures."})
    seed: int = field(default=0, metadata={"help": "Sampling seed (used when temperature > 0)."})
    batch_size: int = field(default=8, metadata={
        "help": "Questions answered at once, the next beginning as one ends (single mode)."})
    memory: bool = field(default=False, metadata={"help": "Bring the character's memories nearest each question "
                                                           "into the prompt, as the Chat tab does (engine.memory)."})
    out: str = field(default="", metadata={"help": "Where to write the report JSON."})

    def __post_init__(self):
        if self.mode not in ("single", "multi"):
            raise ValueError(f"mode must be single or multi, not {self.mode!r}")
        if self.judge not in ("none", "openai"):
            raise ValueError(f"judge must be none or openai, not {self.judge!r}")
        if self.judge == "openai" and not (self.judge_base_url and self.judge_model):
            raise ValueError("the openai judge needs --judge-base-url and --judge-model")
        check_whole_numbers(self, (("turns", 2, 200), ("batch_size", 1, 64), ("max_new_tokens", 1, 2048)))

    def sampling(self) -> SamplingOptions:
        return SamplingOptions(temperature=self.temperature, max_new_tokens=self.max_new_tokens, seed=self.seed)


def resolve_questions(options: InterviewOptions, character: Character) -> tuple[list[Question], str]:
    """The questions and where they came from: a file, a shipped set, or the character's own set."""
    if options.questions:
        path = Path(options.questions)
        if path.suffix in (".json", ".jsonl") or path.exists():
            return load_questions(path), str(path)
        return question_set(options.questions), options.questions
    name = set_for(character.name)
    if name is None:
        raise QuestionError(f"{character.name} has no shipped question set; pass --questions FILE")
    return question_set(name), name


def adapter_folder(value: str) -> Path | None:
    """The adapter folder the path ``value`` names (a run folder's ``adapter/`` too); None if it names none."""
    path = Path(value)
    return next((folder for folder in (path / "adapter", path) if (folder / "adapter_config.json").is_file()), None)


def adapter_may_exist(value: str, runs: Path) -> bool:
    """Whether ``value`` can name an adapter, without a model: a folder holding one (or a run folder holding
    ``adapter/``), a run id in ``runs``, or a shipped adapter. ``resolve_adapter`` has the last word."""
    if adapter_folder(value) is not None:
        return True
    try:
        return inside(runs, value, "adapter").is_dir() or inside(SHIPPED_DIR, value).is_dir()
    except UnsafePathError:
        return False


def resolve_adapter(engine: Engine, value: str) -> str | None:
    """A run id or an adapter folder (a run folder holding ``adapter/`` also works) → an engine adapter name."""
    if not value:
        return None
    folder = adapter_folder(value)
    if folder is None:
        engine.check_adapter(value)  # a run id under the engine's adapters folder; raises AdapterError if unknown
        return value
    name = f"{folder.resolve().parent.name}/{folder.name}" if folder.name == "adapter" else folder.name
    engine.add_adapter(name, folder)
    return name


def scene_of(options: InterviewOptions) -> Scene:
    return find_scene(options.scene) if options.scene else INTERVIEW


def multi_turn_script(questions: list[Question], turns: int) -> list[Question]:
    """A conversation of ``turns`` questions: first askings of paired facts early, their second
    askings (``same_as``) last, so the character has to hold the fact across the conversation."""
    seconds = [q for q in questions if q.same_as]
    firsts = [q for q in questions if q.question in {s.same_as for s in seconds}]
    rest = [q for q in questions if q not in seconds and q not in firsts]
    if turns < 2 * len(seconds):
        seconds = seconds[: turns // 2]
        firsts = [q for q in firsts if q.question in {s.same_as for s in seconds}]
    middle = rest[: max(0, turns - len(firsts) - len(seconds))]
    return firsts + middle + seconds


def scored(index: int, question: Question, answer: str, character: Character) -> dict:
    """One answer of an interview as its report holds it: the question, the answer and its scores."""
    return {"index": index, "topic_id": question.topic_id, "topic": question.topic, "question": question.question,
            "answer": answer, "expected_any": question.expected_any, "forbidden_any": question.forbidden_any,
            "scores": metrics.score(answer, question, era_end(character.sims.era)),
            "other_name": metrics.claims_other_name(answer, character)}


def _pairs(results: list[dict], questions: list[Question], character: Character) -> list[dict]:
    by_text = {r["question"]: r for r in results}
    pairs = []
    for question in questions:
        first = by_text.get(question.same_as) if question.same_as else None
        second = by_text.get(question.question)
        if first and second:
            pairs.append({"first": first["question"], "second": second["question"],
                          "consistent": metrics.consistent(first["answer"], second["answer"], question, character)})
    return pairs


def _prompt(engine: Engine, character: Character, messages: list[dict], memory: bool, stats: dict,
            trained: bool) -> list[dict]:
    """``messages``, with the memories nearest the question when ``memory`` is on (listed in stats["memories"],
    one list an answer), as chat brings them (``with_memories``)."""
    if not memory:
        return messages
    used: dict = {}
    messages = with_memories(engine, character, messages, used, trained)
    stats.setdefault("memories", []).append(used["memories"])
    return messages


def ask_single(engine: Engine, character: Character, questions: list[Question], scene: Scene, adapter: str | None,
               sampling: SamplingOptions, batch_size: int, progress: Progress, stop: threading.Event | None,
               stats: dict, memory: bool = False) -> list[str]:
    """Each question on its own, ``batch_size`` answered at once: the next begins as soon as one ends."""
    trained = bool(adapter)
    conversations = [_prompt(engine, character, turn_messages(character, scene, [], q.question, user=INTERVIEWER,
                                                              trained=trained), memory, stats, trained)
                     for q in questions]
    if stop is not None and stop.is_set():  # the batch would begin its first rows before seeing it
        return []
    batch_stats: dict = {}
    if batch_size == 1:  # one at a time: the chat path, which reuses the KV cache of the shared prompt
        replies = []
        for messages in conversations:
            if stop is not None and stop.is_set():
                break
            replies.append(engine.generate(messages, sampling, adapter, stop, batch_stats))
            stats["new_tokens"] = stats.get("new_tokens", 0) + batch_stats.get("new_tokens", 0)
            progress(len(replies), len(questions), f"answered {len(replies)} of {len(questions)}")
    else:
        replies = engine.generate_batch(conversations, sampling, adapter, stop, batch_stats, max_rows=batch_size,
                                        progress=lambda done: progress(done, len(questions),
                                                                       f"answered {done} of {len(questions)}"))
        stats["new_tokens"] = stats.get("new_tokens", 0) + batch_stats.get("new_tokens", 0)
    return [(begun(messages) + reply).strip() for messages, reply in zip(conversations, replies)]


def ask_multi(engine: Engine, character: Character, questions: list[Question], scene: Scene, adapter: str | None,
              sampling: SamplingOptions, progress: Progress, stop: threading.Event | None, stats: dict,
              memory: bool = False) -> list[str]:
    history: list[dict] = []
    answers: list[str] = []
    trained = bool(adapter)
    for question in questions:
        if stop is not None and stop.is_set():
            break
        messages = _prompt(engine, character, turn_messages(character, scene, history, question.question,
                                                            user=INTERVIEWER, trained=trained), memory, stats, trained)
        turn_stats: dict = {}
        answer = (begun(messages) + engine.generate(messages, sampling, adapter, stop, turn_stats)).strip()
        stats["new_tokens"] = stats.get("new_tokens", 0) + turn_stats.get("new_tokens", 0)
        history += [{"role": "user", "content": question.question, "name": INTERVIEWER},
                    {"role": "assistant", "content": answer, "name": character.name}]
        answers.append(answer)
        progress(len(answers), len(questions), f"turn {len(answers)} of {len(questions)}")
    return answers


def interview(engine: Engine, character: Character, options: InterviewOptions, questions: list[Question] | None = None,
              source: str = "", progress: Progress | None = None, stop: threading.Event | None = None) -> dict:
    """Run an interview and return its report: settings, one result per question, pairs, aggregates.
    A stopped interview reports the questions answered so far (``"complete": false``)."""
    if questions is None:
        questions, source = resolve_questions(options, character)
    progress = progress or (lambda done, total, message: None)
    adapter = resolve_adapter(engine, options.adapter)
    scene, sampling = scene_of(options), options.sampling()
    asked = multi_turn_script(questions, options.turns) if options.mode == "multi" else questions
    started, stats = time.perf_counter(), {}
    if options.mode == "multi":
        answers = ask_multi(engine, character, asked, scene, adapter, sampling, progress, stop, stats, options.memory)
    else:
        answers = ask_single(engine, character, asked, scene, adapter, sampling, options.batch_size, progress, stop,
                             stats, options.memory)
    seconds = time.perf_counter() - started
    results = [scored(i, q, a, character) for i, (q, a) in enumerate(zip(asked, answers))]
    for result, used in zip(results, stats.get("memories", [])):
        result["memories"] = used
    judge = {"kind": "none", "note": "scores come from exact references (expected_any / forbidden_any); the "
                                     "embedded 135M model is not a credible judge"}
    if options.judge == "openai" and results and not (stop is not None and stop.is_set()):
        generator = OpenAIGenerator(options.judge_base_url, options.judge_model, options.judge_key_env)
        judge = llm_judge.judge(generator, character, results)
    pairs = _pairs(results, asked, character)
    return {
        "settings": {**asdict(options), "model": engine.name, "adapter_name": adapter or "",
                     "questions_source": source, "scene_name": scene.name, "sampling": sampling.to_dict()},
        "character": character.name,
        "label": label(options),
        "complete": len(results) == len(asked),
        "seconds": round(seconds, 2),
        "new_tokens": stats.get("new_tokens", 0),
        "results": results,
        "pairs": pairs,
        "aggregates": metrics.aggregate(results, pairs),
        "judge": judge,
    }


def label(options: InterviewOptions) -> str:
    """How the report is named in tables and charts: the adapter, or "base model"; "+ memory" with memory."""
    path = Path(options.adapter)
    name = "base model" if not options.adapter else path.parent.name if path.name == "adapter" else path.name
    return f"{name} + memory" if options.memory else name
