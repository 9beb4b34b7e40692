"""Recall during a run: the dataset's dev questions (``dev.jsonl``, one held-out wording per fact) are
asked greedily at every evaluation, and the share answered with the fact is the run's ``recall``. The
loss says how well the model copies its training text; recall says whether it can answer a question
about its life in words it was not trained on, which is what an interview asks."""

from __future__ import annotations

from pathlib import Path

from engine.loading import pad_id
from plumbing.files import read_jsonl
from plumbing.text import contains

DEV_FILE = "dev.jsonl"
ANSWER_TOKENS = 40  # a fact is one sentence
BATCH = 16


def load_dev_set(dataset: Path) -> list[dict]:
    """The dev questions of a dataset folder; none for a dataset made before there were any, or by hand."""
    rows = read_jsonl(Path(dataset) / DEV_FILE)
    for number, row in enumerate(rows, 1):
        if not (isinstance(row, dict) and isinstance(row.get("messages"), list) and row["messages"]
                and isinstance(row.get("expected_any"), list) and all(isinstance(t, str) for t in row["expected_any"])):
            raise ValueError(f"{DEV_FILE} line {number}: needs 'messages' and 'expected_any'")
    return rows


def answers(model, tokenizer, rows: list[dict]) -> list[str]:
    """Greedy answers of ``model`` to each row's messages, a batch at a time, padded on the left."""
    import torch

    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    padding = pad_id(tokenizer)
    was_training = model.training
    model.eval()
    replies = []
    try:
        for start in range(0, len(rows), BATCH):
            prompts = [tokenizer.apply_chat_template(r["messages"], add_generation_prompt=True, tokenize=False)
                       for r in rows[start:start + BATCH]]
            batch = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
            batch = {k: v.to(model.device) for k, v in batch.items()}
            with torch.no_grad():
                out = model.generate(**batch, max_new_tokens=ANSWER_TOKENS, do_sample=False, pad_token_id=padding,
                                     use_cache=True)
            replies += tokenizer.batch_decode(out[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
    finally:
        tokenizer.padding_side = side
        model.train(was_training)
    return [reply.strip() for reply in replies]


def recalled(answer: str, row: dict) -> bool:
    return any(contains(answer, term) for term in row["expected_any"])


def recall(model, tokenizer, rows: list[dict]) -> tuple[float, list[dict]]:
    """The share of dev questions answered with their fact, and each answer with its verdict."""
    given = answers(model, tokenizer, rows)
    scored = [{"question": r["messages"][-1]["content"], "answer": a, "recalled": recalled(a, r)}
              for r, a in zip(rows, given)]
    return sum(s["recalled"] for s in scored) / max(1, len(scored)), scored
