"""QLoRA runs on the real embedded model in 4-bit: masking, loss, adapters, stop/resume, kill -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
import torch

from conftest import ROOT, wait_for
from plumbing.text import contains
from training.jobs import JobManager
from training.qlora import RunOptions, encode_example, train
from training.runs import last_checkpoint, read_status

FACTS = [("Where were you born?", "I was born in Bonn, in 1770."),
         ("Who was your teacher in Vienna?", "Joseph Haydn taught me in Vienna."),
         ("What is your only opera?", "My only opera is Fidelio."),
         ("Which symphony sets the Ode to Joy?", "My Ninth Symphony sets Schiller's Ode to Joy."),
         ("Who is your nephew?", "My nephew is Karl."),
         ("When did you move to Vienna?", "I moved to Vienna in 1792.")]


@pytest.fixture
def tiny_dataset(data_dir):
    folder = data_dir / "datasets" / "ludwig-van-beethoven" / "tiny"
    folder.mkdir(parents=True)
    rows = [{"messages": [{"role": "system", "content": "You are Ludwig van Beethoven."},
                          {"role": "user", "content": q}, {"role": "assistant", "content": a}],
             "kind": "interview", "source": "facts"} for q, a in FACTS * 4]
    (folder / "dataset.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "settings.json").write_text("{}")
    return folder


def options(dataset, folder, **changes) -> RunOptions:
    """A tiny run. One example a step: the tests of stopping, resuming and queueing need steps, not learning
    (a step of one costs a third of a step of four on one CPU thread)."""
    values = dict(character="Ludwig van Beethoven", dataset=str(dataset), preset="quick", max_steps=8,
                  learning_rate=2e-3, batch_size=1, max_seq_len=128, save_steps=4, eval_split=0.0,
                  output_dir=str(folder), seed=1)
    values.update(changes)
    return RunOptions(**values)


def test_labels_cover_only_the_characters_turns(engine):
    messages = [{"role": "system", "content": "You are B."}, {"role": "user", "content": "Where were you born?"},
                {"role": "assistant", "content": "In Bonn."}, {"role": "user", "content": "When?"},
                {"role": "assistant", "content": "(thinking) He asks a lot.\nIn 1770."}]
    row = encode_example(engine.tokenizer, messages, 512)
    learned = engine.tokenizer.decode([t for t, label in zip(row["input_ids"], row["labels"]) if label != -100])
    assert learned == "In Bonn.<|im_end|>\n(thinking) He asks a lot.\nIn 1770.<|im_end|>\n"
    assert "Where were you born" in engine.tokenizer.decode(row["input_ids"])
    cut = encode_example(engine.tokenizer, messages, 24)
    assert len(cut["input_ids"]) == 24 and engine.tokenizer.decode(cut["input_ids"]).startswith("<|im_start|>system")


def test_a_few_real_4bit_steps_lower_the_loss_and_the_adapter_loads(tiny_dataset, data_dir, engine):
    folder = data_dir / "runs" / "tiny-run"
    # An evaluation at step 4 puts the model in eval mode between training steps (bitsandbytes would
    # repack its CPU weights there and the next training steps would diverge).
    adapter = train(options(tiny_dataset, folder, batch_size=4, eval_split=0.2, eval_steps=4), folder)
    log = [json.loads(line) for line in (folder / "log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in log if r.get("loss") is not None]
    assert len(losses) == 8 and sum(losses[-2:]) / 2 < 0.7 * sum(losses[:2]) / 2, losses
    assert any(r.get("eval_loss") is not None for r in log)
    assert all(r["tokens_per_s"] >= 0 and "eta_s" in r and "learning_rate" in r for r in log)
    assert (adapter / "adapter_model.safetensors").is_file() and "Ludwig van Beethoven" in (
        adapter / "README.md").read_text()
    assert read_status(folder)["state"] == "finished"

    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(engine.source, dtype=torch.float32)
    peft_model = PeftModel.from_pretrained(base, str(adapter))
    assert any("lora_A" in n for n, _ in peft_model.named_parameters())

    engine.add_adapter("tiny-run", adapter)
    question = [{"role": "system", "content": "You are Ludwig van Beethoven."},
                {"role": "user", "content": "Where were you born?"}]
    from engine import SamplingOptions

    trained = engine.generate(question, SamplingOptions(temperature=0, max_new_tokens=12), adapter="tiny-run")
    assert "Bonn" in trained


@pytest.mark.heavy
def test_recall_of_held_out_questions_is_scored_at_each_evaluation_and_the_best_checkpoint_kept(tiny_dataset,
                                                                                                  data_dir):
    system = {"role": "system", "content": "You are Ludwig van Beethoven."}
    dev = [("In which town did you come into the world?", ["Bonn"]), ("Who gave you lessons in Vienna?", ["Haydn"]),
           ("Which opera did you write?", ["Fidelio"]), ("What is your nephew's name?", ["Karl"])]
    (tiny_dataset / "dev.jsonl").write_text("".join(
        json.dumps({"messages": [system, {"role": "user", "content": q}], "fact": "", "expected_any": terms}) + "\n"
        for q, terms in dev))
    folder = data_dir / "runs" / "recall-run"
    adapter = train(options(tiny_dataset, folder, max_steps=9, eval_split=0.2, eval_steps=3, save_steps=3), folder)
    log = [json.loads(line) for line in (folder / "log.jsonl").read_text().splitlines()]
    recalls = {r["step"]: r["recall"] for r in log if r.get("recall") is not None}
    assert sorted(recalls) == [3, 6, 9] and all(0 <= v <= 1 for v in recalls.values())
    answered = [json.loads(line) for line in (folder / "recall.jsonl").read_text().splitlines()]
    assert [a["step"] for a in answered] == [3, 6, 9] and all(len(a["answers"]) == 4 for a in answered)
    for row in answered:  # the score is the share of answers that hold an expected word
        assert row["recall"] == sum(any(contains(a["answer"], t) for t in terms)
                                    for a, (_, terms) in zip(row["answers"], dev)) / 4
    metrics = json.loads((adapter / "simulacra.json").read_text())["metrics"]
    best = max(recalls.values())
    assert metrics["best_recall"] == best and recalls[metrics["best_step"]] == best
    assert metrics["best_step"] == min(step for step, value in recalls.items() if value == best)
    assert read_status(folder)["best_recall"] == round(best, 4)
    assert "Recall of the held-out fact questions" in (adapter / "README.md").read_text()

    from safetensors.torch import load_file
    kept, best_checkpoint = load_file(adapter / "adapter_model.safetensors"), load_file(
        folder / f"checkpoint-{metrics['best_step']}" / "adapter_model.safetensors")
    assert kept.keys() == best_checkpoint.keys() and all(torch.equal(kept[k], best_checkpoint[k]) for k in kept)

    # Shipped with the app: the same weights in bf16, the base named by its Hub id, a name made safe.
    from plumbing.files import UnsafePathError
    from training.shipping import ship

    shipped = ship(str(folder), "Tiny Beethoven!", into=data_dir / "trained")
    assert shipped == (data_dir / "trained" / "tiny-beethoven").resolve()
    small = load_file(shipped / "adapter_model.safetensors")
    assert all(small[k].dtype == torch.bfloat16 and torch.equal(small[k], kept[k].to(torch.bfloat16)) for k in kept)
    assert json.loads((shipped / "adapter_config.json").read_text())["base_model_name_or_path"] == \
        "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert "base_model: HuggingFaceTB/SmolLM2-135M-Instruct" in (shipped / "README.md").read_text()
    with pytest.raises(UnsafePathError):
        ship(str(folder), "../..", into=data_dir / "trained")


def test_a_run_stops_early_when_recall_stops_rising(tiny_dataset, data_dir):
    system = {"role": "system", "content": "You are Ludwig van Beethoven."}
    (tiny_dataset / "dev.jsonl").write_text(json.dumps(
        {"messages": [system, {"role": "user", "content": "Where were you born?"}], "fact": "",
         "expected_any": ["Atlantis-on-Mars"]}) + "\n")  # never answered: recall stays 0
    folder = data_dir / "runs" / "early"
    train(options(tiny_dataset, folder, max_steps=12, eval_split=0.2, eval_steps=2, save_steps=2, early_stop=2),
          folder)
    log = [json.loads(line) for line in (folder / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if r.get("recall") is not None] == [2, 4, 6]  # no rise at 4 nor 6: stop
    assert read_status(folder)["step"] == 6 and read_status(folder)["state"] == "finished"


def test_a_corrupt_dataset_line_fails_before_training_starts(tiny_dataset, data_dir):
    with (tiny_dataset / "dataset.jsonl").open("a") as handle:
        handle.write('{"messages": [{"role": "user", "content": "x"}\n')
    result = subprocess.run([sys.executable, "-m", "training", "run", "--character", "Ludwig van Beethoven",
                             "--dataset", str(tiny_dataset), "--output-dir", str(data_dir / "runs" / "bad")],
                            cwd=ROOT, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "SIMULACRA_DATA_DIR": str(data_dir)})
    assert result.returncode == 1
    assert "line 25: not valid JSON" in result.stderr and "Traceback" not in result.stderr
    assert not (data_dir / "runs" / "bad" / "log.jsonl").exists()


@pytest.mark.heavy
def test_stop_then_resume_in_a_process_of_its_own(tiny_dataset, data_dir):
    jobs = JobManager()
    run_id = jobs.submit(options(tiny_dataset, "", max_steps=12, save_steps=2, learning_rate=1e-3))
    folder = data_dir / "runs" / run_id
    wait_for(lambda: (read_status(folder).get("step") or 0) >= 3, "step 3")
    jobs.stop(run_id)
    wait_for(lambda: read_status(folder)["state"] == "stopped", "the stop")
    stopped_at = read_status(folder)["step"]
    assert stopped_at < 12 and (folder / "adapter" / "adapter_model.safetensors").is_file()
    assert last_checkpoint(folder).name == f"checkpoint-{stopped_at}"
    jobs.resume(run_id)
    wait_for(lambda: read_status(folder)["state"] == "finished", "the resumed run")
    steps = [json.loads(line)["step"] for line in (folder / "log.jsonl").read_text().splitlines()]
    assert max(steps) == 12 and steps.count(stopped_at + 1) == 1  # went on from the checkpoint, no restart
    state = json.loads((last_checkpoint(folder) / "trainer_state.json").read_text())
    assert state["global_step"] == 12 and (last_checkpoint(folder) / "optimizer.pt").is_file()


def test_stop_asked_while_a_resumed_run_loads_ends_it_at_its_checkpoint_without_another_step(tiny_dataset,
                                                                                            data_dir):
    from safetensors.torch import load_file

    folder = data_dir / "runs" / "sliced"
    # One slice, driven by this process as the app drives slices on ZeroGPU: it ends after step 1.
    assert train(options(tiny_dataset, folder, save_steps=100), folder, budget_s=0, owner_pid=os.getpid()) is None
    checkpoint = last_checkpoint(folder)
    assert checkpoint.name == "checkpoint-1" and read_status(folder)["state"] == "running"
    (folder / "STOP").touch()  # Stop, pressed between two slices
    adapter = train(options(tiny_dataset, folder, save_steps=100, resume=True), folder, owner_pid=os.getpid())
    status = read_status(folder)
    assert status["state"] == "stopped" and status["step"] == 1
    assert max(json.loads(line)["step"] for line in (folder / "log.jsonl").read_text().splitlines()) == 1
    saved, kept = load_file(adapter / "adapter_model.safetensors"), load_file(checkpoint / "adapter_model.safetensors")
    assert saved.keys() == kept.keys() and all(torch.equal(saved[k], kept[k]) for k in saved)
    assert any(k for k in saved if "lora_B" in k and saved[k].abs().sum() > 0)  # trained weights, not fresh ones


@pytest.mark.heavy
def test_kill_9_leaves_an_interrupted_run_that_resumes(tiny_dataset, data_dir):
    jobs = JobManager()
    run_id = jobs.submit(options(tiny_dataset, "", max_steps=10, save_steps=2, learning_rate=1e-3))
    folder = data_dir / "runs" / run_id
    wait_for(lambda: last_checkpoint(folder) is not None and (read_status(folder).get("step") or 0) >= 3,
             "a checkpoint")
    os.kill(read_status(folder)["pid"], signal.SIGKILL)
    wait_for(lambda: read_status(folder)["state"] == "interrupted", "interrupted", timeout=30)
    assert jobs.active() is None
    jobs.resume(run_id)
    wait_for(lambda: read_status(folder)["state"] == "finished", "the resumed run")
    assert (folder / "adapter" / "adapter_model.safetensors").is_file()


@pytest.mark.heavy
def test_one_run_at_a_time_the_next_is_queued(tiny_dataset, data_dir):
    jobs = JobManager()
    first = jobs.submit(options(tiny_dataset, "", max_steps=4, save_steps=4))
    second = jobs.submit(options(tiny_dataset, "", max_steps=2, save_steps=2))
    assert read_status(data_dir / "runs" / second)["state"] == "queued"
    wait_for(lambda: read_status(data_dir / "runs" / first)["state"] == "finished", "the first run")
    jobs.pump()
    wait_for(lambda: read_status(data_dir / "runs" / second)["state"] == "finished", "the queued run")


def test_a_run_on_an_empty_dataset_fails_with_its_reason(tmp_path, data_dir):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "dataset.jsonl").write_text("")
    run_id = JobManager().submit(options(empty, ""))
    wait_for(lambda: read_status(data_dir / "runs" / run_id)["state"] == "failed", "the run to fail")
    assert "dataset.jsonl is empty" in read_status(data_dir / "runs" / run_id)["error"]
