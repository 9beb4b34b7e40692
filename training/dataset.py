"""The dataset build of Experience Reconstruction (Character-LLM): profile → scenes → experiences
and protective experiences → grounded interviews and retellings of the facts → chat-format training
examples, with a recall dev set kept out of them.

``build_dataset`` runs the numbered steps in order, appending what each makes to JSONL files as it
goes, so a killed run resumes where it stopped. Files, under ``datasets/<character>/<id>/`` of the
data folder (``plumbing.layout``):

- ``settings.json``     the settings, those of the last resume if any, with what each resume changed
- ``scenes.jsonl``      1. extracted scenes, one line per scene
- ``experiences.jsonl`` 2–3. experiences and protective experiences (``training.experience``)
- ``drops.jsonl``       dropped outputs with their reason
- ``dataset.jsonl``     4. chat-format examples (``messages``, ``kind``, ``source``), the training input
- ``dev.jsonl``         4. one held-out question per fact, scored by the run as recall
- ``stats.json``        counts by kind, drops by reason, tokens, and per fact how often training
                        asks it, in how many wordings, and how often it is retold
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from characters.meta_prompt import meta_prompt
from characters.scenes import INTERVIEW, Scene, scene_catalogue
from characters.schema import Character
from engine import SamplingOptions
from engine.generators import LocalGenerator, OpenAIGenerator
from plumbing.checks import check_whole_numbers
from plumbing.files import append_jsonl, atomic_write_json, atomic_write_text, read_jsonl
from plumbing.layout import dataset_folder
from training.experience import Experience, experience_from
from training.fact_questions import QUESTION_RULES
from training.grounded_interviews import grounded_interviews, recall_dev_set
from training.recall import DEV_FILE
from training.retellings import profile_retellings, retellings
from training.prompts import EXPERIENCE, EXPERIENCE_PREFILL, PROTECTIVE, PROTECTIVE_PREFILL
from characters.era import unknowable
from training.protective_experiences import knows_forbidden, protective_template
from training.scene_extraction import parse_scenes, profile_contexts, scene_messages

Progress = Callable[[int, int, str], None]


@dataclass
class ExperienceOptions:
    character: str = field(default="", metadata={"help": "Name of a preset or saved character."})
    scenes: int = field(default=8, metadata={"help": "Experiences to generate (one per scene)."})
    protective: int = field(default=4, metadata={"help": "Protective experiences to generate."})
    phrasings: int = field(default=8, metadata={"help": "Question phrasings per fact in the grounded interviews."})
    per_interview: int = field(default=4, metadata={"help": "Questions per grounded interview."})
    retellings: int = field(default=4, metadata={
        "help": "First-person retellings of all the facts, each in a new order (0 = none)."})
    profile_retellings: int = field(default=0, metadata={
        "help": "Tellings of the profile, the biography in other words than the facts, as what others tell of the "
                "character, each in a new order, with the full name for an opening pronoun (0 = none)."})
    probe_every: int = field(default=6, metadata={
        "help": "An anachronism probe in every Nth grounded interview, answered with puzzlement (0 = none)."})
    probe_frames: bool = field(default=True, metadata={
        "help": "Probes are also asked in the frames facts are asked in ('Tell me about your car.'); off gives "
                "the datasets of before 2026-11-28, the shipped Socrates' among them."})
    probe_thinking: bool = field(default=True, metadata={
        "help": "A probe in a grounded interview is answered with a puzzled (thinking) line, then the reply; off, "
                "with the reply alone, which names the thing at once."})
    probe_echo: bool = field(default=False, metadata={
        "help": "A probe in a grounded interview is answered by first saying the question back ('My last flight on "
                "an aeroplane?', else the thing: 'A train?'), so a fact and puzzlement part after the thing is named."})
    question_rules: int = field(default=QUESTION_RULES, metadata={
        "help": "The rules that word the facts' questions: 2 also asks what a verb acts on ('What do you graft?'), a "
                "named person's name and a place said as an adverb, and keeps every wording of a shipped interview "
                "question out; 3 (the default) also asks with the words probes open with ('In which place …', "
                "'Which person …') and probes with the facts' ('When did you first hear of …'); 1 gives the datasets "
                "made before the evening of 2026-11-28.",
        "choices": (1, 2, 3)})
    generator: str = field(default="local", metadata={"help": "local (the loaded model) or openai.",
                                                        "choices": ("local", "openai")})
    base_url: str = field(default="", metadata={"help": "OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1"})
    api_model: str = field(default="", metadata={"help": "Model name at the endpoint."})
    api_key_env: str = field(default="OPENAI_API_KEY", metadata={"help": "Environment variable with the API key."})
    max_in_flight: int = field(default=4, metadata={"help": "Concurrent requests to the endpoint."})
    batch_size: int = field(default=8, metadata={"help": "Prompts per batch for the local model."})
    temperature: float = field(default=0.8, metadata={"help": "Sampling temperature of the generator."})
    max_new_tokens: int = field(default=320, metadata={"help": "Longest generated dialogue in tokens."})
    seed: int = field(default=0, metadata={"help": "Makes the run reproducible."})
    out: str = field(default="", metadata={"help": "Output folder; default user_data/datasets/<character>/<id>."})
    resume: bool = field(default=False, metadata={"help": "Continue the run in --out where it stopped."})

    def __post_init__(self):
        check_whole_numbers(self, (("scenes", 0, 500), ("protective", 0, 500), ("phrasings", 0, 10), ("retellings", 0, 20),
                                   ("profile_retellings", 0, 20),
                                   ("per_interview", 1, 16), ("probe_every", 0, 100), ("batch_size", 1, 64),
                                   ("max_in_flight", 1, 64), ("max_new_tokens", 32, 2048)))
        if self.question_rules not in (1, 2, 3):
            raise ValueError("question_rules must be 1, 2 or 3")
        if self.generator not in ("local", "openai"):
            raise ValueError("generator must be local or openai")
        if self.generator == "openai" and not (self.base_url and self.api_model):
            raise ValueError("the openai generator needs --base-url and --api-model")

    def sampling(self) -> SamplingOptions:
        return SamplingOptions(temperature=self.temperature, top_p=0.95, max_new_tokens=self.max_new_tokens,
                               repetition_penalty=1.1, seed=self.seed)

    def make_generator(self, engine):
        """Who writes: the loaded engine, batched, or the OpenAI-compatible endpoint of these options."""
        if self.generator == "local":
            return LocalGenerator(engine, self.batch_size)
        return OpenAIGenerator(self.base_url, self.api_model, self.api_key_env, self.max_in_flight)


def dataset_dir(character: Character, run_id: str | None = None) -> Path:
    return dataset_folder(character.name, run_id or time.strftime("%Y%m%d-%H%M%S"))


class Stopped(Exception):
    """The run was asked to stop; what was made so far is on disk."""


@dataclass
class Task:
    """One prompt to the generator, whose answer becomes one experience (or a drop)."""

    id: str  # "scene-3", "protective-1": the key that makes the run resumable
    kind: str  # "experience" or "protective"
    scene: Scene
    messages: list[dict]
    anachronism: dict | None = None  # what a protective experience asks about


# ---- 1. scenes -------------------------------------------------------------------------------

def extract_scenes(character: Character, generator, options: ExperienceOptions, out: Path, rng: random.Random,
                   report: Progress, total: int, check_stop: Callable[[], None]) -> list[Scene]:
    """Scenes from the profile, kept across a resume (so experiences are asked of the same scenes);
    when the generator writes too few, real-world scenes of the catalogue are borrowed."""
    scenes = [Scene(**{k: v for k, v in row.items() if k in Scene.__dataclass_fields__})
              for row in read_jsonl(out / "scenes.jsonl")]
    contexts = profile_contexts(character)
    attempt = 0
    while len(scenes) < options.scenes and attempt < 3:
        check_stop()
        report(0, total, f"extracting scenes (round {attempt + 1})")
        needed = options.scenes - len(scenes)
        paragraphs = rng.sample(contexts, min(len(contexts), needed))  # no more prompts than scenes needed
        per = min(5, -(-needed // len(paragraphs)))
        replies = generator.complete([scene_messages(character, c, per) for c in paragraphs],
                                     SamplingOptions(temperature=0.9, top_p=0.95, max_new_tokens=min(480, 96 * per),
                                                     seed=options.seed + attempt))
        new = [s for reply in replies for s in parse_scenes(reply)][:needed]
        append_jsonl(out / "scenes.jsonl", [{**s.to_dict(), "source": "generated"} for s in new])
        scenes += new
        attempt += 1
        if 2 * len(new) < needed:
            break  # a generator that wrote less than half of what was asked will not do better when asked again
    if len(scenes) < options.scenes:
        catalogue = scene_catalogue()[1:]
        rng.shuffle(catalogue)
        borrowed = []
        for i in range(options.scenes - len(scenes)):  # beyond the catalogue's size, a scene is used again
            scene, again = catalogue[i % len(catalogue)], i // len(catalogue)
            suffix = " (catalogue)" if again == 0 else f" (catalogue, {again + 1})"
            borrowed.append(Scene(**{**scene.to_dict(), "name": scene.name + suffix}))
        append_jsonl(out / "scenes.jsonl", [{**s.to_dict(), "source": "catalogue"} for s in borrowed])
        scenes += borrowed
    return scenes[: options.scenes]


# ---- 2. experiences and 3. protective experiences ----------------------------------------------

def experience_tasks(character: Character, scenes: list[Scene], options: ExperienceOptions) -> list[Task]:
    """One experience prompt per scene, then one protective prompt per unknowable thing (in turn)."""
    profile = "\n".join(profile_contexts(character))[:3000]
    tasks = []
    for i, scene in enumerate(scenes):
        prompt = EXPERIENCE.format(profile=profile, name=character.name, type=scene.type, location=scene.location,
                                   time=scene.time, background=scene.status.replace("{{char}}", character.name)
                                   .replace("{{user}}", "a visitor"), mood=scene.mood or "Fine",
                                   topic=scene.topic or "small talk", others="the people around " + character.name,
                                   first_other="Visitor")
        tasks.append(Task(f"scene-{i}", "experience", scene,
                          [{"role": "user", "content": prompt},
                           {"role": "assistant", "content": EXPERIENCE_PREFILL.format(name=character.name)}]))
    pool = unknowable(character)
    for i in range(options.protective if pool else 0):
        item = pool[i % len(pool)]
        scene = scene_catalogue()[(i * 7) % len(scene_catalogue())]
        prompt = PROTECTIVE.format(name=character.name, era=character.sims.era or "long ago", subject=item["subject"],
                                   location=scene.place_and_time, background=scene.status
                                   .replace("{{char}}", character.name).replace("{{user}}", "a stranger"))
        tasks.append(Task(f"protective-{i}", "protective", scene,
                          [{"role": "user", "content": prompt}, {"role": "assistant", "content": PROTECTIVE_PREFILL}],
                          anachronism=item))
    return tasks


def judge_reply(task: Task, reply: str, character: Character, source: str, seed: int,
                rules: int = QUESTION_RULES) -> tuple[Experience | None, list[dict]]:
    """The experience a reply gives (a template one for an unusable protective reply), and the drops."""
    experience, reason = experience_from(reply, character, task.scene, task.kind, source, task.id)
    if experience and task.anachronism and knows_forbidden(experience.dialogue, character, task.anachronism):
        experience, reason = None, "knew_the_unknowable"
    if experience is not None:
        return experience, []
    if task.kind == "protective":
        template = protective_template(character, task.anachronism, random.Random(f"{seed}-{task.id}"), task.id,
                                       rules)
        return template, [{"task": f"{task.id}-generated", "reason": reason, "raw": reply[:2000]}]
    return None, [{"task": task.id, "reason": reason, "raw": reply[:2000]}]


def write_experiences(character: Character, generator, options: ExperienceOptions, out: Path, tasks: list[Task],
                      report: Progress, total: int, check_stop: Callable[[], None],
                      stop: threading.Event | None) -> None:
    """Ask the generator for every task not yet done, a batch at a time, appending each batch's result."""
    done = {row["task"] for row in read_jsonl(out / "experiences.jsonl") + read_jsonl(out / "drops.jsonl")}
    pending = [t for t in tasks if t.id not in done]
    finished = len(tasks) - len(pending)
    step = getattr(generator, "batch_size", 1) if options.generator == "local" else options.max_in_flight * 2
    sampling = options.sampling()
    for start in range(0, len(pending), step):
        check_stop()
        chunk = pending[start:start + step]
        report(finished, total, f"writing experiences {finished + 1}–{finished + len(chunk)} of {len(tasks)}")
        task_sampling = SamplingOptions(**{**sampling.to_dict(), "seed": options.seed + start})
        replies = generator.complete([t.messages for t in chunk], task_sampling, stop)
        check_stop()  # a batch cut short by Stop is not kept: it is redone on resume
        kept, dropped = [], []
        for task, reply in zip(chunk, replies):
            experience, drops = judge_reply(task, reply, character, generator.name, options.seed,
                                            options.question_rules)
            dropped += drops
            if experience is not None:
                kept.append(experience.to_dict())
        append_jsonl(out / "drops.jsonl", dropped)
        append_jsonl(out / "experiences.jsonl", kept)
        finished += len(chunk)


# ---- 4. grounded interviews and the dataset ----------------------------------------------------

def to_example(experience: Experience, character: Character) -> dict:
    """A chat example: system = the meta prompt with the scene; the character's turns are assistant
    turns (``(thinking)`` kept as a line of its own, as Character-LLM keeps it), everyone else's user turns."""
    others = {t["role"] for t in experience.dialogue if t["role"] != character.name}
    user = next(iter(others)) if len(others) == 1 else "Others"
    # Character-LLM trains with the bare meta prompt: the adapter, not the prompt, carries the persona.
    messages = [{"role": "system", "content": meta_prompt(character, experience.scene(), user=user,
                                                          examples=False, persona_text=False)}]
    for turn in experience.dialogue:
        mine = turn["role"] == character.name
        role = "assistant" if mine else "user"
        content = turn["content"]
        if mine and turn["action"] == "(thinking)":
            content = f"(thinking) {content}"
        elif not mine and len(others) > 1:
            content = f"{turn['role']}: {content}"
        if messages[-1]["role"] == role:
            messages[-1]["content"] += "\n" + content
        else:
            messages.append({"role": role, "content": content})
    while messages[-1]["role"] != "assistant":  # the loss is on the character's turns: end on one
        messages.pop()
    return {"messages": messages, "kind": experience.kind, "source": experience.source, "task": experience.task}


def write_dataset(character: Character, options: ExperienceOptions, out: Path,
                  count_tokens: Callable[[str], int] | None) -> dict:
    """The experiences on disk and the grounded interviews as ``dataset.jsonl``, and ``stats.json``."""
    experiences = [Experience.from_dict(row) for row in read_jsonl(out / "experiences.jsonl")]
    dev = recall_dev_set(character, options.question_rules)
    interviews = grounded_interviews(character, options.phrasings, random.Random(options.seed), options.per_interview,
                                     options.probe_every, dev, options.probe_frames, options.probe_thinking,
                                     options.question_rules, options.probe_echo)
    told = retellings(character, options.retellings, random.Random(options.seed)) + profile_retellings(
        character, options.profile_retellings, random.Random(f"profile-{options.seed}"))
    examples = [to_example(e, character) for e in experiences + interviews + told]
    # A dataset generated before there was a dev set may ask a dev question in a protective experience.
    asked = {m["content"] for e in examples for m in e["messages"] if m["role"] == "user"}
    dev = [row for row in dev if row["question"] not in asked]
    atomic_write_text(out / "dataset.jsonl", "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in examples))
    atomic_write_text(out / DEV_FILE, "".join(json.dumps(row, ensure_ascii=False) + "\n"
                                                 for row in dev_examples(character, dev)))
    drops = read_jsonl(out / "drops.jsonl")
    scenes = read_jsonl(out / "scenes.jsonl")
    tokens = sum(count_tokens("\n".join(m["content"] for m in e["messages"])) for e in examples) if count_tokens else None
    stats = {
        "character": character.name, "examples": len(examples), "by_kind": dict(Counter(e["kind"] for e in examples)),
        "by_source": dict(Counter(f"{e['kind']}:{e['source']}" for e in examples)),
        "dropped": len(drops), "drops_by_reason": dict(Counter(d["reason"] for d in drops)),
        "scenes": len(scenes),
        "scenes_by_source": dict(Counter(r.get("source", "generated") for r in scenes)),
        "tokens": tokens, "facts": fact_coverage(character, interviews, told, dev), "finished": time.time(),
    }
    atomic_write_json(out / "stats.json", stats)
    return stats


def dev_examples(character: Character, dev: list[dict]) -> list[dict]:
    """The recall dev set as the run reads it: each question as the prompt a training interview would give
    it (``messages``), the fact, and the words any of which a right answer holds."""
    rows = []
    for row in dev:
        fact = character.sims.facts[row["fact"]]
        asked = Experience.in_scene(INTERVIEW, [{"role": "Interviewer", "action": "(speaking)", "content": row["question"]},
                                                {"role": character.name, "action": "(speaking)", "content": fact}],
                                    source="facts", kind="interview", task="dev")
        rows.append({"messages": to_example(asked, character)["messages"][:-1], "fact": fact,
                     "expected_any": row["expected_any"]})
    return rows


def fact_coverage(character: Character, interviews: list[Experience], told: list[Experience],
                  dev: list[dict]) -> list[dict]:
    """For each fact: how often training asks it, in how many wordings, how often it is retold, and its
    dev question (if it has one)."""
    asked: dict[str, list[str]] = {fact: [] for fact in character.sims.facts}
    for item in interviews:
        for question, answer in zip(item.dialogue, item.dialogue[1:]):
            if answer["content"] in asked and question["role"] != character.name:
                asked[answer["content"]].append(question["content"])
    dev_of = {character.sims.facts[row["fact"]]: row["question"] for row in dev}
    return [{"fact": fact, "asked": len(questions), "wordings": len(set(questions)),
             "retold": sum(fact in item.dialogue[-1]["content"] for item in told), "dev": dev_of.get(fact)}
            for fact, questions in asked.items()]


def token_counter(engine) -> Callable[[str], int] | None:
    """Counts tokens with the engine's tokenizer; None for a remote engine (the server tokenizes)."""
    tokenizer = getattr(engine, "tokenizer", None)
    return None if tokenizer is None else (lambda text: len(tokenizer(text)["input_ids"]))


def build_dataset(character: Character, generator, options: ExperienceOptions, out: Path | None = None,
                  progress: Progress | None = None, stop: threading.Event | None = None,
                  count_tokens: Callable[[str], int] | None = None) -> Path:
    """Run the whole pipeline; returns the dataset folder. Resumes when ``options.resume`` is set."""
    out = Path(out) if out else dataset_dir(character)
    if out.exists() and any(out.iterdir()) and not options.resume:
        raise FileExistsError(f"{out} is not empty; use --resume to continue it or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    settings = {**asdict(options), "character": character.name, "generator_name": generator.name,
                "started": time.time()}
    previous = json.loads((out / "settings.json").read_text()) if (out / "settings.json").is_file() else None
    if previous and previous.get("character") != character.name:
        raise ValueError(f"{out} holds a dataset of {previous.get('character')!r}, not {character.name!r}")
    if previous:  # the first run's settings, and what each resume changed (dataset.jsonl is the last one's)
        changed = {k: [previous.get(k), v] for k, v in settings.items()
                   if k not in ("started", "resume") and previous.get(k) != v}
        settings = {**previous, **settings, "started": previous.get("started"),
                    "resumed": [*previous.get("resumed", []), {"at": settings["started"], "changed": changed}]}
    atomic_write_json(out / "settings.json", settings)
    report = progress or (lambda done, total, message: None)
    total = options.scenes + options.protective + 1

    def check_stop():
        if stop is not None and stop.is_set():
            raise Stopped(str(out))

    scenes = extract_scenes(character, generator, options, out, random.Random(options.seed), report, total,
                            check_stop)
    tasks = experience_tasks(character, scenes, options)
    write_experiences(character, generator, options, out, tasks, report, total, check_stop, stop)
    report(total - 1, total, "grounded interviews and dataset")
    write_dataset(character, options, out, count_tokens)
    report(total, total, "done")
    return out


def load_examples(folder: Path) -> list[dict]:
    """The chat examples of a dataset folder, each line checked; a broken line is an error naming it."""
    path = Path(folder) / "dataset.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{folder} has no dataset.jsonl (was the generation finished?)")
    examples = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path.name} line {number}: not valid JSON ({err.msg})") from None
        messages = row.get("messages") if isinstance(row, dict) else None
        if not isinstance(messages, list) or not messages or not all(
                isinstance(m, dict) and m.get("role") in ("system", "user", "assistant")
                and isinstance(m.get("content"), str) for m in messages):
            raise ValueError(f"{path.name} line {number}: 'messages' must be a list of role/content objects")
        if not any(m["role"] == "assistant" for m in messages):
            raise ValueError(f"{path.name} line {number}: no assistant turn to learn from")
        examples.append(row)
    if not examples:
        raise ValueError(f"{path.name} is empty")
    return examples


def as_dataset(folder: Path):
    """The examples as a ``datasets.Dataset`` (columns: messages, kind, source, task)."""
    from datasets import Dataset

    return Dataset.from_list(load_examples(folder))
