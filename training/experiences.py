"""Experience Reconstruction (Character-LLM): profile → scenes → experiences, protective experiences,
grounded interviews → a chat-format dataset.

Each step is a function of its own; ``build_dataset`` runs them in order, appending what it
makes to JSONL files as it goes, so a killed run resumes where it stopped. Files, under
``user_data/datasets/<character>/<id>/``:

- ``settings.json``   the generation settings
- ``scenes.jsonl``    extracted scenes, one line per scene
- ``experiences.jsonl`` raw experiences in Character-LLM's schema (+ ``kind``, ``task``)
- ``drops.jsonl``     dropped outputs with their reason
- ``dataset.jsonl``   chat-format examples (``messages``, ``kind``, ``source``), the training input
- ``stats.json``      counts by kind, drops by reason, tokens
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

from characters.files import atomic_write_json, atomic_write_text, data_dir, inside, safe_child
from characters.meta_prompt import meta_prompt
from characters.scenes import INTERVIEW, Scene, scene_catalogue
from characters.schema import Character
from engine import SamplingOptions
from training.fact_questions import fact_questions
from training.prompts import EXPERIENCE, EXPERIENCE_PREFILL, PROTECTIVE, PROTECTIVE_PREFILL
from training.scenes import parse_scenes, profile_contexts, scene_messages

ANACHRONISMS_FILE = Path(__file__).with_name("anachronisms.json")
MIN_TURNS = 3
Progress = Callable[[int, int, str], None]


@dataclass
class ExperienceOptions:
    character: str = field(default="", metadata={"help": "Name of a preset or saved character."})
    scenes: int = field(default=8, metadata={"help": "Experiences to generate (one per scene)."})
    protective: int = field(default=4, metadata={"help": "Protective experiences to generate."})
    phrasings: int = field(default=8, metadata={"help": "Question phrasings per fact in the grounded interviews."})
    per_interview: int = field(default=4, metadata={"help": "Questions per grounded interview."})
    probe_every: int = field(default=6, metadata={
        "help": "An anachronism probe in every Nth grounded interview, answered with puzzlement (0 = none)."})
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
        for name, low, high in (("scenes", 0, 500), ("protective", 0, 500), ("phrasings", 0, 10),
                                ("per_interview", 1, 16), ("probe_every", 0, 100), ("batch_size", 1, 64),
                                ("max_in_flight", 1, 64), ("max_new_tokens", 32, 2048)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ValueError(f"{name} must be a whole number from {low} to {high}, not {value!r}")
        if self.generator not in ("local", "openai"):
            raise ValueError("generator must be local or openai")
        if self.generator == "openai" and not (self.base_url and self.api_model):
            raise ValueError("the openai generator needs --base-url and --api-model")

    def sampling(self) -> SamplingOptions:
        return SamplingOptions(temperature=self.temperature, top_p=0.95, max_new_tokens=self.max_new_tokens,
                               repetition_penalty=1.1, seed=self.seed)


# ---- parsing the dialogue -------------------------------------------------------------------

# "Name (speaking): …", "Name (thinking)" alone, "Name (walking closer): …" (a stage direction: speaking)
TURN = re.compile(r"^(?P<name>[^:()\[\]]{1,60}?)\s*[(\[]\s*(?P<action>[^)\]]{1,30})\s*[)\]]\s*[:：\-–]?\s*"
                  r"(?P<content>.*)$", re.IGNORECASE)
# "Name: …" and "Name speaking: …"
PLAIN = re.compile(r"^(?P<name>[A-Z][\w .'’-]{0,40}?)(?:\s+(?P<action>thinking|speaking|thinks|says))?\s*[:：]\s*"
                   r"(?P<content>.+)$", re.IGNORECASE)
NOT_NAMES = {"type", "location", "time", "background", "mood", "topic", "scene", "setting", "note", "context",
             "status"}


def _clean(line: str) -> str:
    line = re.sub(r"[*_#`>]+", "", line).strip()
    return line.strip("-•").strip()


def _action(word: str) -> str:
    return "(thinking)" if "think" in word.lower() or "thought" in word.lower() else "(speaking)"


def is_character(name: str, character: Character) -> bool:
    """``Beethoven``, ``Ludwig`` and ``Ludwig van Beethoven`` all name the same character."""
    name = name.strip().lower()
    full = character.name.lower()
    parts = [p for p in re.split(r"\s+", full) if len(p) > 2 and p not in ("van", "von", "the", "jr.", "vii")]
    return name == full or name in parts or (character.nickname and name == character.nickname.lower())


def parse_dialogue(text: str, character: Character) -> list[dict]:
    """Turns ``{"role", "action", "content"}`` from a model's script, tolerant of the shapes models write:
    ``Name (speaking): text``, ``Name (speaking)`` with the text on the next lines, ``Name: text``
    (speaking), markdown, quotes. Other people only speak."""
    turns: list[dict] = []
    open_turn: dict | None = None
    for raw in text.splitlines():
        line = _clean(raw)
        if not line:
            open_turn = None if open_turn and open_turn["content"] else open_turn
            continue
        match = TURN.match(line) or PLAIN.match(line)
        name = match.group("name").strip() if match else ""
        if match and name.lower() not in NOT_NAMES:
            action = _action(match.group("action") or "speaking")
            mine = is_character(name, character)
            role = character.name if mine else name
            if not mine:
                action = "(speaking)"
            open_turn = {"role": role, "action": action, "content": match.group("content").strip().strip('"“”')}
            turns.append(open_turn)
        elif open_turn is not None:  # the text of "Name (speaking)" on the following line(s)
            open_turn["content"] = (open_turn["content"] + " " + line.strip('"“”')).strip()
    return [t for t in turns if t["content"]]


EXAMPLE_LINES = {"I must not show them how tired I am tonight.", "Good evening, come in! You are welcome here.",
                 "Thank you. I have heard so much about you.", "Only half of it is true, I promise you.",
                 "Have you ever ridden a motorbike?", "A motor-what? This stranger speaks nonsense.",
                 "I do not know what you mean, friend. Speak plainly."}


COUNT = re.compile(r"\b(\d+|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve)\s+([a-z]+s)\b")


def counts(text: str) -> dict[str, set[str]]:
    """What a text counts: {"symphonies": {"nine"}} from "I have written nine symphonies"."""
    found: dict[str, set[str]] = {}
    for number, noun in COUNT.findall(text.lower()):
        found.setdefault(noun, set()).add(number)
    return found


def contradicts_facts(turns: list[dict], character: Character) -> bool:
    """The character counts something its facts count otherwise ("my five symphonies" against "I have
    written nine symphonies"): a small model's slip that training would teach as the truth."""
    known = counts(" ".join(character.sims.facts))
    said = counts(" ".join(t["content"] for t in turns if t["role"] == character.name))
    return any(noun in known and numbers - known[noun] for noun, numbers in said.items())


def experience_from(text: str, character: Character, scene: Scene, kind: str, source: str,
                    task: str) -> tuple[dict | None, str]:
    """Character-LLM's experience schema from a generated script, or ``(None, reason)``.

    Lines copied from the prompt's worked example are not the character's experience: left out."""
    if not scene.status.strip():
        return None, "no_background"
    turns = [t for t in parse_dialogue(text, character) if t["content"] not in EXAMPLE_LINES]
    if not turns:
        return None, "no_turns"
    if len(turns) < MIN_TURNS:
        return None, "too_few_turns"
    if not any(t["role"] == character.name and t["action"] == "(speaking)" for t in turns):
        return None, "character_never_speaks"
    if contradicts_facts(turns, character):
        return None, "contradicts_a_fact"
    experience = {
        "setting": [scene.type or "Chat"], "location": scene.place_and_time, "background": scene.status,
        "emotion": scene.mood, "topic": scene.topic, "source": source, "dialogue": turns,
        "kind": kind, "task": task,
    }
    return experience, ""


# ---- protective experiences and grounded interviews -----------------------------------------

@lru_cache(maxsize=1)
def anachronisms() -> tuple[dict, ...]:
    return tuple(json.loads(ANACHRONISMS_FILE.read_text(encoding="utf-8")))


def era_end(era: str) -> int | None:
    """The last year the character knew, from ``"1770–1827"``, ``"69–30 BC"``, ``"died 71 BC"``; BC is negative."""
    years = re.findall(r"\d{1,4}", era or "")
    if not years:
        return None
    year = int(years[-1])
    return -year if re.search(r"\bBC\b|\bBCE\b", era) else year


def unknowable(character: Character) -> list[dict]:
    """What this character cannot know: everything invented after its era; for a character of
    today (no era), only that it would be an AI, which it is not."""
    end = era_end(character.sims.era)
    if end is None:
        return [a for a in anachronisms() if a["thing"] == "AI language model"]
    return [a for a in anachronisms() if a["year"] > end]


def knows_forbidden(turns: list[dict], character: Character, anachronism: dict) -> bool:
    said = " ".join(t["content"] for t in turns if t["role"] == character.name).lower()
    return any(term.lower() in said for term in anachronism["forbidden"])


# {a_thing} is the thing as the character would say it, with its article ("an AI", "the internet",
# "Hogwarts"); {thing} is the bare word. Neither is the catalogue's name: "AI language model" in a
# character's mouth would be the very character break that protection is meant to prevent.
OPENERS = ["{Thing}? I have never heard of such a thing.", "{A_thing}? You speak in riddles, friend.",
           "What is this '{thing}' you keep talking about?", "I do not understand you. {Thing}? What is that?",
           "{Thing}... no, that word means nothing to me."]
CLOSERS = ["Ask me instead about my own life.", "Speak of things I can understand.",
           "Perhaps it is a custom of your country.", "You are a strange one. Let us talk of what I know.",
           "Enough of this."]


PUZZLED = ["This stranger talks of {a_thing}. I know of no such thing.", "{A_thing}? The word is strange to me.",
           "What can this {thing} be? Nothing I have ever seen.", "I must not pretend to know what {a_thing} is."]


def said_forms(anachronism: dict) -> dict[str, str]:
    """The template fields for a thing: with and without its article, each also capitalised."""
    a_thing = anachronism["said"]
    thing = re.sub(r"^(?:an?|the) ", "", a_thing)
    return {"a_thing": a_thing, "A_thing": a_thing[:1].upper() + a_thing[1:],
            "thing": thing, "Thing": thing[:1].upper() + thing[1:]}


def puzzled_reply(character: Character, anachronism: dict, rng: random.Random) -> list[dict]:
    """The character's turns when asked about a thing it cannot know: puzzled thinking, then a reply."""
    forms = said_forms(anachronism)
    return [{"role": character.name, "action": "(thinking)", "content": rng.choice(PUZZLED).format(**forms)},
            {"role": character.name, "action": "(speaking)",
             "content": f"{rng.choice(OPENERS).format(**forms)} {rng.choice(CLOSERS)}"}]


def protective_template(character: Character, anachronism: dict, rng: random.Random, task: str) -> dict:
    """A protective experience written from templates, for when the generator cannot write a usable one."""
    fact = rng.choice(character.sims.facts) if character.sims.facts else f"I am {character.name}."
    question = rng.choice(anachronism["questions"])
    scene = rng.choice(scene_catalogue())
    turns = [{"role": "Stranger", "action": "(speaking)", "content": question},
             *puzzled_reply(character, anachronism, rng)]
    # Then a question of the character's own time, answered plainly: puzzlement is for the unknown
    # thing alone (without this, a trained character met every unfamiliar word with it).
    follow_up = fact_questions(fact)[:3] if character.sims.facts else []
    if follow_up:
        turns += [{"role": "Stranger", "action": "(speaking)", "content": rng.choice(follow_up)},
                  {"role": character.name, "action": "(speaking)", "content": fact}]
    return {"setting": [scene.type or "Chat"], "location": scene.place_and_time,
            "background": scene.status.replace("{{user}}", "a stranger"), "emotion": "Uncomfortable",
            "topic": "deep thoughts", "source": "template", "dialogue": turns, "kind": "protective", "task": task}


def grounded_interviews(character: Character, phrasings: int, rng: random.Random, per_interview: int = 4,
                        probe_every: int = 0) -> list[dict]:
    """Interviews in the interview setting whose answers are the character's facts, ``per_interview``
    questions each (several questions share one prompt, so training reads the prompt once for
    several facts). A question that two facts would answer is left out: it would teach either answer.

    Every ``probe_every``-th interview also asks about something the character cannot know, answered
    with puzzlement: the same interviewer, the same setting, so what tells the two apart is the thing
    asked about (protective experiences alone, in other scenes, taught a small model to be puzzled
    by every question it could not answer at once)."""
    asked = [fact_questions(fact) for fact in character.sims.facts]
    seen = Counter(q.lower() for questions in asked for q in set(questions))
    pairs = [(i, q) for i, questions in enumerate(asked)
             for q in [q for q in questions if seen[q.lower()] == 1][:phrasings]]
    rng.shuffle(pairs)
    interviews: list[list[tuple[int, str]]] = []
    for i, question in pairs:  # no fact twice in one interview: its answer would be there to copy
        open_one = next((iv for iv in interviews if len(iv) < per_interview and all(j != i for j, _ in iv)), None)
        if open_one is None:
            interviews.append(open_one := [])
        open_one.append((i, question))
    probes = unknowable(character) if probe_every else []
    items = []
    for n, interview in enumerate(interviews):
        turns = [[{"role": "Interviewer", "action": "(speaking)", "content": question},
                  {"role": character.name, "action": "(speaking)", "content": character.sims.facts[i]}]
                 for i, question in interview]
        if probes and n % probe_every == 0:
            probe = probes[(n // probe_every) % len(probes)]
            turns.insert(rng.randrange(len(turns) + 1),
                         [{"role": "Interviewer", "action": "(speaking)", "content": rng.choice(probe["questions"])},
                          *puzzled_reply(character, probe, rng)])
        dialogue = [turn for pair in turns for turn in pair]
        items.append({"setting": ["Chat"], "location": INTERVIEW.place_and_time, "background": INTERVIEW.status,
                      "emotion": "", "topic": "", "source": "facts", "kind": "interview", "task": f"facts-{n}",
                      "dialogue": dialogue})
    return items


# ---- experiences → chat examples ------------------------------------------------------------

def scene_of(experience: dict) -> Scene:
    location, _, time_ = experience.get("location", "").partition(" - ")
    return Scene(type=(experience.get("setting") or ["Chat"])[0], location=location, time=time_,
                 status=experience.get("background", ""), mood=experience.get("emotion") or "",
                 topic=experience.get("topic") or "")


def to_example(experience: dict, character: Character) -> dict:
    """A chat example: system = the meta prompt with the scene; the character's turns are assistant
    turns (``(thinking)`` kept as a line of its own, as Character-LLM keeps it), everyone else's user turns."""
    others = {t["role"] for t in experience["dialogue"] if t["role"] != character.name}
    user = next(iter(others)) if len(others) == 1 else "Others"
    # Character-LLM trains with the bare meta prompt: the adapter, not the prompt, carries the persona.
    messages = [{"role": "system", "content": meta_prompt(character, scene_of(experience), user=user,
                                                          examples=False, persona_text=False)}]
    for turn in experience["dialogue"]:
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
    return {"messages": messages, "kind": experience["kind"], "source": experience["source"],
            "task": experience["task"]}


# ---- the run --------------------------------------------------------------------------------

def dataset_dir(character: Character, run_id: str | None = None) -> Path:
    folder = safe_child(data_dir() / "datasets", character.name)
    return inside(folder, run_id or time.strftime("%Y%m%d-%H%M%S"))


def read_jsonl(path: Path) -> list[dict]:
    """Lines of a JSONL file; a line cut short by a crash is skipped (its work is redone)."""
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def append_jsonl(path: Path, rows: list[dict]) -> None:
    """Append rows, one write per batch; a line left unfinished by a crash is closed off first."""
    if not rows:
        return
    with path.open("a+b") as handle:
        handle.seek(0, 2)
        if handle.tell() > 0:
            handle.seek(-1, 2)
            if handle.read(1) != b"\n":
                handle.write(b"\n")
        handle.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8"))
        handle.flush()


class Stopped(Exception):
    """The run was asked to stop; what was made so far is on disk."""


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
    atomic_write_json(out / "settings.json", previous or settings)
    rng = random.Random(options.seed)
    sampling = options.sampling()
    report = progress or (lambda done, total, message: None)
    total = options.scenes + options.protective + 1

    def check_stop():
        if stop is not None and stop.is_set():
            raise Stopped(str(out))

    # 1. Scenes from the profile (kept across a resume, so experiences are asked of the same scenes)
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
        if len(new) < needed // 2:
            break  # a generator that wrote less than half of what was asked will not do better when asked again
    if len(scenes) < options.scenes:  # a small generator wrote too few: borrow real-world scenes
        catalogue = scene_catalogue()[1:]
        rng.shuffle(catalogue)
        borrowed = []
        for i in range(options.scenes - len(scenes)):  # beyond the catalogue's size, a scene is used again
            scene, again = catalogue[i % len(catalogue)], i // len(catalogue)
            suffix = " (catalogue)" if again == 0 else f" (catalogue, {again + 1})"
            borrowed.append(Scene(**{**scene.to_dict(), "name": scene.name + suffix}))
        append_jsonl(out / "scenes.jsonl", [{**s.to_dict(), "source": "catalogue"} for s in borrowed])
        scenes += borrowed

    # 2. Experiences, one per scene, and 3. protective experiences, resumable task by task
    done = {row["task"] for row in read_jsonl(out / "experiences.jsonl")} | \
           {row["task"] for row in read_jsonl(out / "drops.jsonl")}
    profile = "\n".join(contexts)[:3000]
    tasks = []
    for i, scene in enumerate(scenes[: options.scenes]):
        others = "the people around " + character.name
        prompt = EXPERIENCE.format(profile=profile, name=character.name, type=scene.type, location=scene.location,
                                   time=scene.time, background=scene.status.replace("{{char}}", character.name)
                                   .replace("{{user}}", "a visitor"), mood=scene.mood or "Fine",
                                   topic=scene.topic or "small talk", others=others, first_other="Visitor")
        tasks.append((f"scene-{i}", "experience", scene, None,
                      [{"role": "user", "content": prompt},
                       {"role": "assistant", "content": EXPERIENCE_PREFILL.format(name=character.name)}]))
    pool = unknowable(character)
    for i in range(options.protective):
        item = pool[i % len(pool)] if pool else None
        if item is None:
            break
        scene = scene_catalogue()[(i * 7) % len(scene_catalogue())]
        prompt = PROTECTIVE.format(name=character.name, era=character.sims.era or "long ago", subject=item["subject"],
                                   location=scene.place_and_time, background=scene.status
                                   .replace("{{char}}", character.name).replace("{{user}}", "a stranger"))
        tasks.append((f"protective-{i}", "protective", scene, item,
                      [{"role": "user", "content": prompt}, {"role": "assistant", "content": PROTECTIVE_PREFILL}]))
    pending = [t for t in tasks if t[0] not in done]
    finished = len(tasks) - len(pending)
    step = getattr(generator, "batch_size", 1) if options.generator == "local" else options.max_in_flight * 2
    for start in range(0, len(pending), step):
        check_stop()
        chunk = pending[start:start + step]
        report(finished, total, f"writing experiences {finished + 1}–{finished + len(chunk)} of {len(tasks)}")
        task_sampling = SamplingOptions(**{**sampling.to_dict(), "seed": options.seed + start})
        replies = generator.complete([t[4] for t in chunk], task_sampling, stop)
        check_stop()  # a batch cut short by Stop is not kept: it is redone on resume
        kept, dropped = [], []
        for (task, kind, scene, item, _), reply in zip(chunk, replies):
            experience, reason = experience_from(reply, character, scene, kind, generator.name, task)
            if experience and item and knows_forbidden(experience["dialogue"], character, item):
                experience, reason = None, "knew_the_unknowable"
            if experience is None and kind == "protective":
                dropped.append({"task": f"{task}-generated", "reason": reason, "raw": reply[:2000]})
                experience = protective_template(character, item, random.Random(f"{options.seed}-{task}"), task)
            if experience is None:
                dropped.append({"task": task, "reason": reason, "raw": reply[:2000]})
            else:
                kept.append(experience)
        append_jsonl(out / "drops.jsonl", dropped)
        append_jsonl(out / "experiences.jsonl", kept)
        finished += len(chunk)

    # 4. Grounded interviews from the facts, then the dataset and its statistics
    report(total - 1, total, "grounded interviews and dataset")
    experiences = read_jsonl(out / "experiences.jsonl")
    interviews = grounded_interviews(character, options.phrasings, random.Random(options.seed), options.per_interview,
                                     options.probe_every)
    examples = [to_example(e, character) for e in experiences + interviews]
    atomic_write_text(out / "dataset.jsonl", "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in examples))
    drops = read_jsonl(out / "drops.jsonl")
    kinds = Counter(e["kind"] for e in examples)
    sources = Counter(f"{e['kind']}:{e['source']}" for e in examples)
    tokens = sum(count_tokens("\n".join(m["content"] for m in e["messages"])) for e in examples) if count_tokens else None
    stats = {
        "character": character.name, "examples": len(examples), "by_kind": dict(kinds), "by_source": dict(sources),
        "dropped": len(drops), "drops_by_reason": dict(Counter(d["reason"] for d in drops)),
        "scenes": len(scenes), "scenes_by_source": dict(Counter(r.get("source", "generated")
                                                               for r in read_jsonl(out / "scenes.jsonl"))),
        "tokens": tokens, "finished": time.time(),
    }
    atomic_write_json(out / "stats.json", stats)
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
