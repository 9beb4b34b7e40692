"""ZeroGPU: the app's GPU work as ``@spaces.GPU`` calls, and training in slices of such calls.

No ZeroGPU hardware is here. ``spaces`` is installed (as on every Space), so off ZeroGPU its decorator is
the real one and changes nothing. What a ZeroGPU call adds, arguments and results that cross a process
boundary by pickle, is played by ``pickling_stand_in_for_spaces_gpu``: it pickles and unpickles every
argument and every result, and records the duration asked for.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import pickle
import shutil
import threading

import pytest

from conftest import wait_for
from engine import AdapterError, PromptTooLong, SamplingOptions
from training.jobs import JobManager
from training.runs import read_log, read_status
from ui import zerogpu

MESSAGES = [{"role": "system", "content": "You are Ada Lovelace, a mathematician."},
            {"role": "user", "content": "What do you work on?"}]
GREEDY = SamplingOptions(temperature=0, max_new_tokens=20)


class PicklingStandInForSpacesGPU:
    """``spaces.GPU(fn, duration=…)`` as far as pickling goes: every argument and result crosses by pickle."""

    def __init__(self):
        self.calls: list[tuple[str, int]] = []
        self.closed = 0

    def __call__(self, fn, duration):
        def across(value):
            return pickle.loads(pickle.dumps(value))

        def asked(args):
            self.calls.append((fn.__name__, duration(*args) if callable(duration) else duration))
            return across(args)

        if inspect.isgeneratorfunction(fn):
            @functools.wraps(fn)
            def generator(*args):
                try:
                    for item in fn(*asked(args)):
                        yield across(item)
                finally:
                    self.closed += 1
            return generator

        @functools.wraps(fn)
        def regular(*args):
            return across(fn(*asked(args)))
        return regular


@pytest.fixture
def gpu():
    return PicklingStandInForSpacesGPU()


def test_spaces_is_installed_and_off_zerogpu_its_decorator_changes_nothing():
    import spaces

    def reply():
        return "hello"

    assert spaces.GPU(reply) is reply and spaces.GPU(duration=30)(reply) is reply
    assert zerogpu.spaces is spaces and not zerogpu.active()
    zerogpu.start()  # nothing to pack off ZeroGPU


def test_each_piece_of_gpu_work_is_one_call_with_the_engines_answer(engine, adapter_dir, gpu):
    proxy = zerogpu.ZeroGPUEngine(engine, gpu=gpu)
    stats = {}
    streamed = "".join(proxy.stream(MESSAGES, GREEDY, stats=stats))
    assert streamed and streamed == engine.generate(MESSAGES, GREEDY)
    assert stats["new_tokens"] > 0 and stats["prompt_tokens"] > 0  # the worker's figures came back
    assert gpu.calls[-1] == ("_stream", 15 + round(0.08 * 20)) and gpu.closed == 1

    trained = "".join(proxy.stream(MESSAGES, GREEDY, adapter="random-lora"))
    assert trained == engine.generate(MESSAGES, GREEDY, adapter="random-lora") and trained != streamed

    seeded = SamplingOptions(temperature=0.8, max_new_tokens=12, seed=5)
    three = [MESSAGES, [*MESSAGES[:1], {"role": "user", "content": "Where do you live?"}], MESSAGES]
    assert proxy.generate_batch(three, seeded) == engine.generate_batch(three, seeded)
    assert proxy.hidden_states(["a line", "another"], 0.5).tolist() == engine.hidden_states(
        ["a line", "another"], 0.5).tolist()
    assert proxy.prefill(MESSAGES) >= 0
    assert [name for name, _ in gpu.calls] == ["_stream", "_stream", "_generate_batch", "_hidden_states", "_prefill"]
    assert proxy.usage()["device_memory"].startswith("ZeroGPU") and proxy.name == engine.name


def test_a_full_batch_a_call_with_the_seeds_of_one_call(engine, gpu, monkeypatch):
    monkeypatch.setattr(engine.options, "max_batch_rows", 2)
    proxy = zerogpu.ZeroGPUEngine(engine, gpu=gpu)
    seeded = SamplingOptions(temperature=1.0, max_new_tokens=10, seed=11)
    same = [MESSAGES] * 3
    replies = proxy.generate_batch(same, seeded)
    assert [name for name, _ in gpu.calls] == ["_generate_batch", "_generate_batch"]
    # Conversation 2 sampled with seed 13 in the second call, as it would in one call of three.
    assert replies[2] == engine.generate(MESSAGES, SamplingOptions(temperature=1.0, max_new_tokens=10, seed=13))
    assert len(set(replies)) > 1


def test_stop_ends_the_call_and_a_visitors_errors_are_raised_before_any_call(engine, gpu):
    proxy = zerogpu.ZeroGPUEngine(engine, gpu=gpu)
    stop = threading.Event()
    pieces = []
    for piece in proxy.stream(MESSAGES, SamplingOptions(temperature=0, max_new_tokens=60), stop=stop):
        pieces.append(piece)
        stop.set()
    assert len(pieces) == 1 and gpu.closed == 1

    calls = len(gpu.calls)
    with pytest.raises(AdapterError, match="unknown adapter"):
        proxy.stream(MESSAGES, GREEDY, adapter="no-such-run")
    with pytest.raises(AdapterError, match="invalid adapter name"):
        proxy.generate_batch([MESSAGES], GREEDY, adapter="../../etc")
    with pytest.raises(PromptTooLong):
        proxy.stream([MESSAGES[0], {"role": "user", "content": "word " * 9000}], GREEDY)
    assert len(gpu.calls) == calls


def test_an_error_inside_a_call_comes_back_with_its_class_and_message(engine, adapter_dir, gpu):
    broken = engine.adapters_dir / "broken-weights" / "adapter"
    broken.mkdir(parents=True)
    shutil.copy(adapter_dir / "adapter_config.json", broken)
    (broken / "adapter_model.safetensors").write_bytes(b"not safetensors")
    proxy = zerogpu.ZeroGPUEngine(engine, gpu=gpu)
    with pytest.raises(AdapterError, match="'broken-weights' could not be loaded"):
        "".join(proxy.stream(MESSAGES, GREEDY, adapter="broken-weights"))
    with pytest.raises(AdapterError, match="'broken-weights' could not be loaded"):
        proxy.generate_batch([MESSAGES], GREEDY, adapter="broken-weights")
    assert "".join(proxy.stream(MESSAGES, GREEDY)) == engine.generate(MESSAGES, GREEDY)  # the engine still serves


@pytest.fixture
def tiny_dataset(data_dir):
    folder = data_dir / "datasets" / "ada-lovelace" / "tiny"
    folder.mkdir(parents=True)
    facts = [("Where were you born?", "I was born in London, in 1815."),
             ("Who was your father?", "My father was Lord Byron, the poet."),
             ("What did you write about?", "I wrote notes on Babbage's Analytical Engine."),
             ("Who taught you mathematics?", "Augustus De Morgan taught me mathematics.")]
    rows = [{"messages": [{"role": "system", "content": "You are Ada Lovelace."}, {"role": "user", "content": q},
                          {"role": "assistant", "content": a}], "kind": "interview", "source": "facts"}
            for q, a in facts * 4]
    (folder / "dataset.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "settings.json").write_text("{}")
    return folder


def run_reaches(folder, states, seconds=400) -> dict:
    """The run's status once its state is one of ``states``."""
    status = wait_for(lambda: (status := read_status(folder)).get("state") in states and status,
                      f"the run to be {' or '.join(states)}", seconds)
    for thread in threading.enumerate():  # a run that ended ends its thread: none outlives the test
        if thread.name == "training-slices" and "running" not in states:
            thread.join(60)
    return status


def sliced_run(dataset, data_dir, gpu, monkeypatch, slice_s: float, max_steps: int):
    """A short run submitted as the app submits one on ZeroGPU, in slices of about ``slice_s`` seconds of
    training: its job manager, id and folder."""
    from training.qlora import RunOptions

    monkeypatch.setattr(zerogpu, "TRAIN_SLICE_MARGIN_S", zerogpu.TRAIN_SLICE_S - slice_s)
    jobs = JobManager(launch=functools.partial(zerogpu.launch_training, gpu=gpu))
    run_id = jobs.submit(RunOptions(character="Ada Lovelace", dataset=str(dataset), preset="quick",
                                    max_steps=max_steps, batch_size=1, max_seq_len=96, save_steps=4,
                                    eval_split=0.0, seed=1))
    return jobs, run_id, data_dir / "runs" / run_id


def test_a_run_trains_in_slices_that_each_save_and_resume(tiny_dataset, data_dir, gpu, monkeypatch):
    # Slices of about 3 s of training (a step of one example takes about 1 s), so this short run takes several.
    _, _, folder = sliced_run(tiny_dataset, data_dir, gpu, monkeypatch, slice_s=3, max_steps=8)
    running = run_reaches(folder, ("running",))
    assert running["pid"] == os.getpid() and running["in_app"]  # alive while the app is, never "interrupted"
    status = run_reaches(folder, ("finished", "failed"))
    assert status["state"] == "finished", status
    slices = [duration for name, duration in gpu.calls if name == "_train_slice"]
    assert len(slices) >= 2 and set(slices) == {zerogpu.TRAIN_SLICE_S}
    steps = [row["step"] for row in read_log(folder) if row.get("loss") is not None]
    assert steps == list(range(1, 9))  # each slice went on where the one before ended
    assert (folder / "adapter" / "adapter_model.safetensors").is_file()


def test_stopping_a_run_in_slices_stops_it_and_not_the_app(tiny_dataset, data_dir, gpu, monkeypatch):
    jobs, run_id, folder = sliced_run(tiny_dataset, data_dir, gpu, monkeypatch, slice_s=2, max_steps=200)
    wait_for(lambda: read_log(folder), "the run's first logged step", 300)
    jobs.stop(run_id)  # a SIGTERM to the run's pid would end this process: the test would not go on
    status = run_reaches(folder, ("stopped", "failed"))
    assert status["state"] == "stopped", status
    assert (folder / "adapter" / "adapter_model.safetensors").is_file()
