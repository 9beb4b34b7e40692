"""A QLoRA run: the base model in 4-bit NF4, LoRA adapters trained with PEFT on a character's
experiences, loss only on the character's own turns.

Runs in a process of its own (``python -m training run …``, or ``accelerate launch -m training
run …`` on several GPUs: the Trainer handles the distribution). It writes its run folder
(``training.runs``: options, status, log, checkpoints, adapter).

Stop: a ``STOP`` file in the run folder, or SIGTERM, ends the run at the next step with the
adapter saved; ``--resume`` continues an interrupted run from its last checkpoint.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from engine.bnb_cpu import keep_cpu_4bit_unpacked
from plumbing.checks import check_whole_numbers
from plumbing.files import append_jsonl, atomic_write_json, atomic_write_text
from plumbing.layout import dataset_folder
from training.runs import append_log, last_checkpoint, read_log, write_status

PRESETS = {
    # Minutes on a 2-core CPU with the embedded model; enough for the facts to stick.
    "quick": {"max_steps": 72, "learning_rate": 1e-3, "batch_size": 4, "grad_accum": 1, "lora_r": 16,
              "lora_alpha": 32, "max_seq_len": 512, "save_steps": 18, "eval_steps": 18},
    "standard": {"max_steps": -1, "epochs": 3, "learning_rate": 3e-4, "batch_size": 4, "grad_accum": 4, "lora_r": 32,
                 "lora_alpha": 64, "max_seq_len": 1024, "save_steps": 100, "eval_steps": 100},
    # Character-LLM trained 10 epochs; a LoRA wants a higher rate than their full fine-tune.
    "paper": {"max_steps": -1, "epochs": 10, "learning_rate": 2e-4, "batch_size": 4, "grad_accum": 16, "lora_r": 64,
              "lora_alpha": 128, "max_seq_len": 2048, "save_steps": 200, "eval_steps": 200},
}
TARGETS = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"


@dataclass
class RunOptions:
    character: str = field(default="", metadata={"help": "The character trained (a preset or saved character)."})
    dataset: str = field(default="", metadata={"help": "Dataset folder (with dataset.jsonl), or <character>/<id>."})
    preset: str = field(default="quick", metadata={"help": "quick | standard | paper: defaults for the options below.",
                                                    "choices": tuple(PRESETS)})
    model: str = field(default="", metadata={"help": "Base model; empty = the embedded SmolLM2-135M-Instruct."})
    precision: str = field(default="4bit", metadata={"help": "4bit (QLoRA, default), 8bit, bf16 or fp32."})
    lora_r: int | None = field(default=None, metadata={"help": "LoRA rank."})
    lora_alpha: int | None = field(default=None, metadata={"help": "LoRA alpha."})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout."})
    lora_targets: str = field(default=TARGETS, metadata={"help": "Comma-separated module names to adapt."})
    epochs: float | None = field(default=None, metadata={"help": "Epochs (ignored when max_steps > 0)."})
    max_steps: int | None = field(default=None, metadata={"help": "Optimizer steps; -1 = by epochs."})
    learning_rate: float | None = field(default=None, metadata={"help": "Peak learning rate."})
    lr_scheduler: str = field(default="cosine", metadata={"help": "linear, cosine, constant, …"})
    warmup_ratio: float = field(default=0.05, metadata={"help": "Share of steps for the warm-up."})
    batch_size: int | None = field(default=None, metadata={"help": "Examples per device step."})
    grad_accum: int | None = field(default=None, metadata={"help": "Gradient accumulation steps."})
    max_seq_len: int | None = field(default=None, metadata={"help": "Longer examples are cut from the left of "
                                                                    "the conversation (the system prompt stays)."})
    batching: str = field(default="group_by_length", metadata={
        "help": "group_by_length (similar lengths in a batch, padded to the longest) or pad_to_max (baseline).",
        "choices": ("group_by_length", "pad_to_max")})
    gradient_checkpointing: bool = field(default=False, metadata={"help": "Save memory at the cost of speed."})
    seed: int = field(default=42, metadata={"help": "Seed of the data order and the LoRA initialisation."})
    save_steps: int | None = field(default=None, metadata={"help": "Checkpoint every N steps."})
    eval_steps: int | None = field(default=None, metadata={"help": "Evaluate every N steps."})
    eval_split: float = field(default=0.05, metadata={"help": "Share of examples held out for the eval loss."})
    keep_best: bool = field(default=True, metadata={
        "help": "Keep the checkpoint with the best recall of the dataset's held-out questions (dev.jsonl) as the "
                "adapter, rather than the last one."})
    early_stop: int = field(default=0, metadata={
        "help": "Stop when recall has not risen for this many evaluations (0 = never)."})
    output_dir: str = field(default="", metadata={"help": "Run folder; default user_data/runs/<id>."})
    resume: bool = field(default=False, metadata={"help": "Continue the run in --output-dir from its last checkpoint."})

    def __post_init__(self):
        if self.preset not in PRESETS:
            raise ValueError(f"preset must be one of {', '.join(PRESETS)}")
        defaults = {"epochs": 1.0, "max_steps": -1, "lora_r": 16, "lora_alpha": 32, "learning_rate": 2e-4,
                    "batch_size": 4, "grad_accum": 1, "max_seq_len": 1024, "save_steps": 50, "eval_steps": 50}
        for name, value in {**defaults, **PRESETS[self.preset]}.items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        check_whole_numbers(self, (("lora_r", 1, 512), ("lora_alpha", 1, 4096), ("batch_size", 1, 512),
                                   ("grad_accum", 1, 512), ("max_seq_len", 64, 32768), ("save_steps", 1, 10**6),
                                   ("eval_steps", 1, 10**6), ("early_stop", 0, 1000)))
        if self.keep_best and self.eval_split > 0 and self.save_steps % self.eval_steps:
            raise ValueError("save_steps must be a multiple of eval_steps to keep the best checkpoint "
                             "(or set keep_best false)")
        if not (isinstance(self.max_steps, int) and (self.max_steps == -1 or 1 <= self.max_steps <= 10**7)):
            raise ValueError("max_steps must be -1 or a positive whole number")
        if not 0 < float(self.learning_rate) <= 1:
            raise ValueError("learning_rate must be in (0, 1]")
        if not 0 <= self.eval_split < 0.5:
            raise ValueError("eval_split must be in [0, 0.5)")
        if not 0 < float(self.epochs) <= 1000:
            raise ValueError("epochs must be in (0, 1000]")
        if self.precision not in ("4bit", "8bit", "bf16", "fp32"):
            raise ValueError("precision must be 4bit, 8bit, bf16 or fp32")

    @classmethod
    def from_file(cls, path: Path) -> "RunOptions":
        values = json.loads(Path(path).read_text())
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


# ---- data: tokenisation with the loss on the character's turns only --------------------------

def encode_example(tokenizer, messages: list[dict], max_len: int) -> dict:
    """``input_ids`` and ``labels`` with ``-100`` everywhere but the assistant turns' content and end token.

    Each turn's tokens are found as the difference between the template rendered up to that turn
    and up to the one before, so it works for any chat template that renders prefixes stably.
    """
    def render(upto: int, reply: bool) -> list[int]:
        ids = tokenizer.apply_chat_template(messages[:upto], add_generation_prompt=reply, tokenize=True,
                                            return_dict=False)
        return list(ids["input_ids"] if hasattr(ids, "keys") else ids)

    input_ids: list[int] = []
    labels: list[int] = []
    for i, message in enumerate(messages):
        full = render(i + 1, False)
        if full[: len(input_ids)] != input_ids:
            raise ValueError("the chat template does not render conversations prefix by prefix")
        turn = full[len(input_ids):]
        if message["role"] == "assistant":
            header = len(render(i, True)) - len(input_ids)  # "<|im_start|>assistant\n"
            turn_labels = [-100] * header + turn[header:]
        else:
            turn_labels = [-100] * len(turn)
        input_ids += turn
        labels += turn_labels
    if len(input_ids) > max_len:  # keep the system prompt, drop the oldest turns' tokens
        system = len(render(1, False)) if messages[0]["role"] == "system" else 0
        keep = max_len - system
        input_ids = input_ids[:system] + input_ids[-keep:]
        labels = [-100] * system + labels[-keep:]
    return {"input_ids": input_ids, "labels": labels, "attention_mask": [1] * len(input_ids),
            "length": len(input_ids)}


def tokenized(tokenizer, examples: list[dict], max_len: int, seed: int, eval_split: float):
    from datasets import Dataset

    rows = [encode_example(tokenizer, e["messages"], max_len) for e in examples]
    rows = [r for r in rows if any(label != -100 for label in r["labels"])]
    dataset = Dataset.from_list(rows)
    if eval_split > 0 and len(dataset) >= 20:
        split = dataset.train_test_split(test_size=eval_split, seed=seed)
        return split["train"], split["test"]
    return dataset, None


class Collator:
    """Pads a batch to its longest example, or to ``max_seq_len`` for the pad_to_max baseline."""

    def __init__(self, pad_id: int, pad_to: int | None = None):
        self.pad_id, self.pad_to = pad_id, pad_to
        self.real_tokens = 0  # what the training has read, padding excluded (the dataloader has no workers)

    def __call__(self, rows: list[dict]) -> dict:
        import torch

        width = self.pad_to or max(len(r["input_ids"]) for r in rows)
        self.real_tokens += sum(len(r["input_ids"]) for r in rows)
        batch = {"input_ids": [], "labels": [], "attention_mask": []}
        for r in rows:
            pad = width - len(r["input_ids"])
            batch["input_ids"].append(r["input_ids"] + [self.pad_id] * pad)
            batch["labels"].append(r["labels"] + [-100] * pad)
            batch["attention_mask"].append(r["attention_mask"] + [0] * pad)
        return {k: torch.tensor(v) for k, v in batch.items()}


# ---- the run --------------------------------------------------------------------------------

def resolve_dataset(value: str) -> Path:
    """A dataset folder from a path or ``<character>/<id>`` under user_data/datasets."""
    path = Path(value)
    if (path / "dataset.jsonl").is_file():
        return path.resolve()
    character, _, dataset_id = value.partition("/")
    if character and dataset_id:
        folder = dataset_folder(character, dataset_id)
        if (folder / "dataset.jsonl").is_file():
            return folder
    raise FileNotFoundError(f"no dataset at {value!r} (a folder with dataset.jsonl, or <character>/<id>)")


def recall_line(metrics: dict) -> str:
    if metrics.get("best_recall") is None:
        return "not measured (the dataset has no dev.jsonl, or too few examples to evaluate)"
    kept = f"; this adapter is step {metrics['best_step']}'s, the best" if metrics.get("best_step") is not None else ""
    return f"{metrics['recall']:.0%} at the last evaluation, best {metrics['best_recall']:.0%}{kept}"


def model_card(options: RunOptions, dataset: Path, base: str, metrics: dict) -> str:
    return f"""---
library_name: peft
base_model: {base}
tags: [simulacra-studio, character-llm, qlora, lora]
---

# {options.character} — a trained character (LoRA adapter)

Trained with Simulacra Studio on the experiences of **{options.character}** (Character-LLM's
Experience Reconstruction: experiences, protective experiences, interviews grounded in facts).

- Base model: `{base}` in {options.precision} ({'QLoRA, NF4' if options.precision == '4bit' else 'LoRA'})
- Dataset: `{dataset}`
- LoRA: r={options.lora_r}, alpha={options.lora_alpha}, dropout={options.lora_dropout}, targets={options.lora_targets}
- Steps: {metrics.get('step')} · learning rate {options.learning_rate} ({options.lr_scheduler}) · batch
  {options.batch_size}×{options.grad_accum} · max length {options.max_seq_len} · seed {options.seed}
- Final training loss: {metrics.get('loss')} · eval loss: {metrics.get('eval_loss')}
- Recall of the held-out fact questions: {recall_line(metrics)}

Load it with `PeftModel.from_pretrained(base_model, "<this folder>")`, or pick it in the app's Chat tab.
"""


def train(options: RunOptions, folder: Path, budget_s: float | None = None, owner_pid: int | None = None) -> Path | None:
    """Run (or resume) the training in ``folder``; returns the adapter folder. A run that has a status
    (queued by the UI, or started) and fails says why in it, rather than look interrupted.

    ``budget_s`` trains one slice: at the first step past that many seconds it saves a checkpoint and
    returns None, the run still ``running``, for the next slice to resume (ZeroGPU grants the GPU a call at
    a time). ``owner_pid`` is the process that drives the slices (the app), recorded in place of this one."""
    try:
        return _train(options, folder, budget_s, owner_pid)
    except BaseException as err:
        if (folder / "status.json").is_file():
            write_status(folder, state="failed", error=f"{type(err).__name__}: {err}"[:500])
        raise


def _train(options: RunOptions, folder: Path, budget_s: float | None, owner_pid: int | None) -> Path | None:
    import torch
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training, set_peft_model_state_dict
    from safetensors.torch import load_file
    from transformers import EarlyStoppingCallback, Trainer, TrainerCallback, TrainerState, TrainingArguments

    from engine.loading import load_model, load_tokenizer, pad_id
    from engine.model_source import resolve_model
    from training.dataset import load_examples
    from training.recall import load_dev_set, recall

    dataset_path = resolve_dataset(options.dataset)
    examples = load_examples(dataset_path)  # a broken line fails here, before any training
    dev = load_dev_set(dataset_path)
    folder.mkdir(parents=True, exist_ok=True)
    if not options.resume:
        atomic_write_json(folder / "options.json", asdict(options))
    stop_file = folder / "STOP"
    if owner_pid is None:  # a slice leaves it: Stop asked between two slices ends the next one
        stop_file.unlink(missing_ok=True)
    write_status(folder, state="running", pid=owner_pid or os.getpid(), in_app=owner_pid is not None,
                 started=time.time(), character=options.character)
    stopping = {"asked": False, "sliced": False}
    if threading.current_thread() is threading.main_thread():  # only there can a signal handler be set
        signal.signal(signal.SIGTERM, lambda *_: stopping.update(asked=True))

    def stop_asked() -> bool:
        """Stop was asked: a SIGTERM (to a run in its own process) or the STOP file (the one way to reach
        slices run in the app)."""
        stopping["asked"] = stopping["asked"] or stop_file.exists()
        return stopping["asked"]

    on_cuda = torch.cuda.is_available()
    source = resolve_model(options.model, on_cuda=on_cuda)
    tokenizer = load_tokenizer(source)
    padding = pad_id(tokenizer)
    train_set, eval_set = tokenized(tokenizer, examples, options.max_seq_len, options.seed, options.eval_split)
    scores_recall = bool(dev) and eval_set is not None  # recall is measured at the evaluations
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))  # set by accelerate launch / torchrun
    model = load_model(source, options.precision, f"cuda:{local_rank}" if on_cuda else "cpu")
    if options.precision in ("4bit", "8bit"):
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=options.gradient_checkpointing)
        keep_cpu_4bit_unpacked(model)
    elif options.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    torch.manual_seed(options.seed)
    model = get_peft_model(model, LoraConfig(
        r=options.lora_r, lora_alpha=options.lora_alpha, lora_dropout=options.lora_dropout, task_type="CAUSAL_LM",
        target_modules=[t.strip() for t in options.lora_targets.split(",") if t.strip()]))

    started = time.time()

    pad_to = options.max_seq_len if options.batching == "pad_to_max" else None
    collator = Collator(padding, pad_to)

    class Progress(TrainerCallback):
        """Writes log.jsonl and status.json, scores recall at each evaluation, and stops at the next step
        when asked."""

        def __init__(self):
            self.last_time, self.last_tokens = time.time(), 0
            self.recall = None

        def on_log(self, args, state, control, logs=None, **kwargs):
            if scores_recall and logs.get("eval_loss") is not None:  # the Trainer logs an evaluation first
                self.recall, scored = recall(model, tokenizer, dev)
                append_jsonl(folder / "recall.jsonl", [{"step": state.global_step, "recall": self.recall,
                                                        "answers": scored}])
                best = max(self.recall, state.best_metric or 0.0)
                write_status(folder, recall=round(self.recall, 4), best_recall=round(best, 4))
            now = time.time()
            tokens = collator.real_tokens
            rate = (tokens - self.last_tokens) / max(1e-9, now - self.last_time)
            self.last_time, self.last_tokens = now, tokens
            elapsed = now - started
            done = state.global_step / max(1, state.max_steps)
            row = {"step": state.global_step, "max_steps": state.max_steps, "epoch": state.epoch,
                   "loss": logs.get("loss"), "eval_loss": logs.get("eval_loss"),
                   "learning_rate": logs.get("learning_rate"), "tokens_per_s": round(rate, 1),
                   "recall": self.recall if logs.get("eval_loss") is not None else None,
                   "tokens_seen": tokens, "elapsed_s": round(elapsed, 1),
                   "eta_s": round(elapsed / done - elapsed, 1) if done > 0 else None, "time": now}
            append_log(folder, row)
            write_status(folder, step=state.global_step, max_steps=state.max_steps)

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            if scores_recall:  # what the best checkpoint and early stopping are judged by
                metrics["eval_recall"] = self.recall

        def on_step_end(self, args, state, control, **kwargs):
            if (not stop_asked() and budget_s is not None and time.time() - started > budget_s
                    and state.global_step < state.max_steps):
                stopping["sliced"] = True
            if stopping["asked"] or stopping["sliced"]:
                control.should_training_stop = True
                control.should_save = True
            return control

    steps_per_epoch = -(-len(train_set) // (options.batch_size * options.grad_accum))
    args = TrainingArguments(
        output_dir=str(folder), per_device_train_batch_size=options.batch_size,
        per_device_eval_batch_size=options.batch_size, gradient_accumulation_steps=options.grad_accum,
        learning_rate=options.learning_rate, lr_scheduler_type=options.lr_scheduler,
        warmup_steps=int(options.warmup_ratio * (options.max_steps if options.max_steps > 0 else
                                                 steps_per_epoch * options.epochs)),
        num_train_epochs=options.epochs, max_steps=options.max_steps, logging_steps=1,
        save_strategy="steps", save_steps=options.save_steps, save_total_limit=2,
        eval_strategy="steps" if eval_set is not None else "no", eval_steps=options.eval_steps,
        train_sampling_strategy="group_by_length" if options.batching == "group_by_length" else "random",
        seed=options.seed, data_seed=options.seed, report_to=[], use_cpu=not on_cuda,
        bf16=on_cuda and torch.cuda.is_bf16_supported(), dataloader_num_workers=0,
        remove_unused_columns=False, disable_tqdm=True,
        save_only_model=False, metric_for_best_model="recall" if scores_recall else None, greater_is_better=True,
        load_best_model_at_end=scores_recall and options.keep_best,
    )
    callbacks = [Progress()]
    if scores_recall and options.early_stop:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=options.early_stop))
    checkpoint = last_checkpoint(folder) if options.resume else None
    if checkpoint and stop_asked():
        # Stop came while the run loaded: end it at its checkpoint now. The Trainer would check only after a
        # whole step, which on a CPU takes longer than the load did.
        state = TrainerState.load_from_json(str(checkpoint / "trainer_state.json"))
        kept = Path(state.best_model_checkpoint or "") if args.load_best_model_at_end else None
        weights = (kept if kept and kept.is_dir() else checkpoint) / "adapter_model.safetensors"
        set_peft_model_state_dict(model, load_file(str(weights)))
        runtime = None
    else:
        trainer = Trainer(model=model, args=args, train_dataset=train_set, eval_dataset=eval_set,
                          data_collator=collator, callbacks=callbacks)
        result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
        state, runtime = trainer.state, result.metrics.get("train_runtime")
    if stopping["sliced"] and not stopping["asked"]:
        write_status(folder, state="running", step=state.global_step)
        return None
    adapter = folder / "adapter"
    model.save_pretrained(adapter, safe_serialization=True)
    tokenizer.save_pretrained(adapter)
    logs = read_log(folder)
    losses = [r["loss"] for r in logs if r.get("loss") is not None]
    evals = [r["eval_loss"] for r in logs if r.get("eval_loss") is not None]
    metrics = {"step": state.global_step, "loss": losses[-1] if losses else None,
               "eval_loss": evals[-1] if evals else None, "train_runtime_s": runtime}
    if scores_recall:
        recalls = [r["recall"] for r in logs if r.get("recall") is not None]
        metrics.update(recall=recalls[-1] if recalls else None, best_recall=state.best_metric,
                       best_step=state.best_global_step if options.keep_best else None)
    atomic_write_text(adapter / "README.md", model_card(options, dataset_path, source, metrics))
    atomic_write_json(adapter / "simulacra.json", {"character": options.character, "dataset": str(dataset_path),
                                                   "options": asdict(options), "metrics": metrics})
    write_status(folder, state="stopped" if stopping["asked"] else "finished", finished=time.time(), **metrics)
    return adapter
