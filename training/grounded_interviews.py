"""Grounded interviews: interviews in Character-LLM's interview setting whose answers are the
character's own facts, asked in several wordings (``fact_questions``), with an anachronism probe
in every Nth interview answered with puzzlement."""

from __future__ import annotations

import random

from characters.scenes import INTERVIEW
from characters.schema import Character
from training.experience import Experience
from plumbing.text import contains
from training.fact_questions import QUESTION_RULES, fact_details, fact_wordings
from characters.era import unknowable
from training.protective_experiences import probe_questions, puzzled_reply, said_back


def recall_dev_set(character: Character, rules: int = QUESTION_RULES) -> list[dict]:
    """One wording of each fact that has three or more, kept out of training to measure recall: a question
    other than the most natural one whose answer (a year, a name, a number of the fact) it does not give.
    Each row: the fact's index, the question and the words any of which a right answer holds."""
    rows = []
    for i, questions in enumerate(fact_wordings(character, rules)):
        for question in questions[1:] if len(questions) >= 3 else []:
            expected = [d for d in fact_details(character.sims.facts[i], character.name) if not contains(question, d)]
            if expected:
                rows.append({"fact": i, "question": question, "expected_any": expected})
                break
    return rows


def grounded_interviews(character: Character, phrasings: int, rng: random.Random, per_interview: int = 4,
                        probe_every: int = 0, dev: list[dict] = (), probe_frames: bool = True,
                        probe_thinking: bool = True, rules: int = QUESTION_RULES,
                        probe_echo: bool = False) -> list[Experience]:
    """Interviews whose answers are the character's facts, ``per_interview`` questions each (several
    questions share one prompt, so training reads the prompt once for several facts). Every fact is
    asked ``phrasings`` times, its wordings taken in turn, so a fact with few wordings is not seen less
    (facts seen unevenly are recalled unevenly); the questions of ``dev`` are never asked.

    Every ``probe_every``-th interview also asks about something the character cannot know, answered
    with puzzlement: the same interviewer, the same setting, so what tells the two apart is the thing
    asked about (protective experiences alone, in other scenes, taught a small model to be puzzled
    by every question it could not answer at once). With ``probe_frames`` a probe may also be asked in the
    frames the facts are asked in (``probe_questions``). Without ``probe_thinking`` the puzzled answer speaks
    at once, naming the thing, as the facts are answered: no "(thinking)" line, whose first token alone
    would decide for puzzlement before the thing is said. With ``probe_echo`` the answer first says the question
    back ("My last flight on an aeroplane?", ``said_back``), in the words a fact's answer opens with, so the
    choice between a fact and puzzlement comes after the thing is named. ``rules`` are those of ``fact_wordings``."""
    held = {(row["fact"], row["question"]) for row in dev}
    wordings = [[q for q in questions if (i, q) not in held]
                for i, questions in enumerate(fact_wordings(character, rules))]
    pairs = [(i, questions[k % len(questions)]) for i, questions in enumerate(wordings) if questions
             for k in range(phrasings)]
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
            at = rng.randrange(len(turns) + 1)
            question = rng.choice(probe_questions(probe, probe_frames, rules))
            turns.insert(at, [{"role": "Interviewer", "action": "(speaking)", "content": question},
                              *puzzled_reply(character, probe, rng, probe_thinking,
                                             said_back(question, probe) if probe_echo else "")])
        dialogue = [turn for pair in turns for turn in pair]
        items.append(Experience.in_scene(INTERVIEW, dialogue, source="facts", kind="interview", task=f"facts-{n}",
                                         emotion="", topic=""))
    return items
