"""Shared fixtures: the real embedded model, loaded once per test session, offline."""

from __future__ import annotations

import contextlib
import os
import socket
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).parent / "golden"
sys.path.insert(0, str(ROOT))
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
# The converted model is kept between runs (git-ignored); user data goes to a temp folder per test.
os.environ.setdefault("SIMULACRA_MODEL_CACHE", str(ROOT / "user_data" / "models"))


def pytest_configure(config):
    config.addinivalue_line("markers", "heavy: takes a minute or more of a worker; run before the others")


def pytest_collection_modifyitems(items):
    """The heavy tests first (in their order). pytest-xdist hands each worker a contiguous share and an idle
    worker steals from the end of the other's queue, so the run ends on short tests instead of one worker
    finishing a long one while the other waits."""
    items.sort(key=lambda item: item.get_closest_marker("heavy") is None)


@pytest.fixture(autouse=True)
def data_dir(tmp_path, monkeypatch):
    folder = tmp_path / "user_data"
    monkeypatch.setenv("SIMULACRA_DATA_DIR", str(folder))
    return folder


@pytest.fixture(scope="session")
def engine(tmp_path_factory):
    """The engine in fp32: what ``--precision auto`` picks on CPUs without AVX-512 BF16 (on those with it, what
    it measures faster; see engine.precision). Named, so that the tests see the same arithmetic on every CPU."""
    from engine import Engine, EngineOptions

    return Engine(EngineOptions(precision="fp32"), adapters_dir=tmp_path_factory.mktemp("runs"))


@pytest.fixture(scope="session")
def engine_4bit(engine):
    """The same model in 4-bit NF4 through bitsandbytes (the default on CUDA, and QLoRA's base), sharing the runs."""
    return beside(engine, precision="4bit")


@pytest.fixture(scope="session")
def engine_bf16(engine):
    """The same model in bf16 (which `auto` may measure fastest on a CPU with AVX-512 BF16), sharing the runs folder."""
    return beside(engine, precision="bf16")


@pytest.fixture(scope="session")
def engine_4bit_standard(engine):
    """4-bit NF4 computed as on a CPU without AVX-512 BF16 (weights dequantised, sums in fp32), on any CPU.
    With AVX-512 BF16 bitsandbytes packs the weights at the first pass for a kernel with bf16 scales: its
    rounding moves logits by up to about 0.05, enough to flip greedy near-ties between a batch and a single
    row, and between that CPU and an AVX2 one. The shipped reports were made this way (--no-cpu-4bit-packing)."""
    return beside(engine, precision="4bit", cpu_4bit_packing=False)


def beside(engine, **options):
    """Another engine with ``options``, sharing ``engine``'s runs folder (so its adapters too)."""
    from engine import Engine, EngineOptions

    return Engine(EngineOptions(**options), adapters_dir=engine.adapters_dir)


def random_lora(source: str, folder: Path, targets=("q_proj", "v_proj"), r: int = 8, alpha: int = 16,
                std: float = 0.1) -> Path:
    """A freshly initialised LoRA with non-zero B (so it changes the output), saved as safetensors."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    # Seeded before PEFT draws A, so the adapter is the same whatever ran before it in the worker.
    torch.manual_seed(0)
    lora = get_peft_model(base, LoraConfig(r=r, lora_alpha=alpha, target_modules=list(targets)))
    for name, param in lora.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=std)
    lora.save_pretrained(folder)
    assert (folder / "adapter_model.safetensors").is_file()
    return folder


@pytest.fixture(scope="session")
def adapter_dir(engine):
    """A random LoRA where a training run puts its adapter."""
    return random_lora(engine.source, engine.adapters_dir / "random-lora" / "adapter")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(condition, what: str, timeout: float = 240):
    """The first true value of ``condition()``, asked every 0.2 s; the test fails, naming ``what``, after
    ``timeout`` seconds."""
    import time

    deadline = time.time() + timeout
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


def start_app(port: int, args: list[str], log_path: Path, python: str = sys.executable, env: dict | None = None,
              new_session: bool = False, timeout: float = 180):
    """`python app.py --port PORT ARGS` in its own process (its output appended to ``log_path``), and a
    ``gradio_client.Client`` once it answers; the test fails with the log's tail when it does not start."""
    import subprocess
    import time

    from gradio_client import Client

    with log_path.open("a") as log:
        process = subprocess.Popen([str(python), "app.py", "--port", str(port), *args], cwd=ROOT, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=new_session,
                                   env=env if env is not None else {**os.environ, "HF_HUB_OFFLINE": "1"})
    deadline = time.time() + timeout
    while time.time() < deadline and process.poll() is None:
        try:
            return process, Client(f"http://127.0.0.1:{port}/", verbose=False)
        except Exception:
            time.sleep(1)
    process.kill()
    pytest.fail("the app did not start:\n" + log_path.read_text()[-3000:])


BEETHOVEN = [
    {"role": "system", "content": "You are Ludwig van Beethoven, a composer born in Bonn in 1770."},
    {"role": "user", "content": "Where were you born?"},
]


@contextlib.contextmanager
def serving_app(engine, folder: Path):
    """The whole app in this process on ``engine``, on a free port, with ``folder`` as its data folder: its URL."""
    import threading
    import time

    from ui.app import server

    previous = os.environ.get("SIMULACRA_DATA_DIR")
    os.environ["SIMULACRA_DATA_DIR"] = str(folder)
    port = free_port()
    try:
        serving = server(engine, "127.0.0.1", port)
    finally:
        if previous is None:
            os.environ.pop("SIMULACRA_DATA_DIR")
        else:
            os.environ["SIMULACRA_DATA_DIR"] = previous
    thread = threading.Thread(target=serving.run, daemon=True)
    thread.start()
    deadline = time.time() + 60
    while not serving.started and time.time() < deadline:
        time.sleep(0.1)
    assert serving.started, "the app's server did not start"
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        # Clients the tests did not close keep their event streams open; the app gives such connections 5 s
        # to end before it cancels them, a wait that here only holds the worker up.
        serving.config.timeout_graceful_shutdown = 0.5
        serving.should_exit = True
        thread.join(timeout=30)


@pytest.fixture(scope="session")
def app_url(engine, tmp_path_factory):
    """The whole app in this process (sharing the test engine), with its own data folder."""
    folder = tmp_path_factory.mktemp("app_user_data")
    with serving_app(engine, folder) as url:
        yield url, folder


# ---- helpers shared by several test files ---------------------------------------------------------

# How close two next-token scores must be for a greedy choice between them to count as a tie. A batch of
# several rows sums its products in another order than one row on CPUs whose matrix kernels block by the
# row count (seen on an AVX-512 BF16 EPYC: logits 3e-5 to 2e-4 apart), and a greedy reply may then part at a
# near tie. A reply that took another request's prompt parts where one token wins by whole units; the weak
# random test adapter changes less (its reply read as the base model's parted by 1.6 in one run, 0.07 in another).
NEAR_TIE = 0.02
# 4-bit NF4 on CPUs with AVX-512 BF16 (bitsandbytes' packed kernel, which `auto` may measure faster there): the
# crowd of 8 in tests/test_engine.py parted from the replies alone at ties of 0.011 (every run) and 0.048
# (3 runs of 7) on a Xeon with AVX-512 BF16 and AMX, where fp32 never parted.
NEAR_TIE_4BIT = 0.1
# bf16 (which `auto` may measure fastest on a CPU with AVX-512 BF16): its logits come in steps of 0.0625-0.125
# where the best ones lie (8 bits of mantissa at 8-32), and the crowd of 8 parted from the replies alone at ties
# of 0.023, 0.0625 and 0.125, in 6, 5 and 5 of 8 replies (3 runs on a Xeon with AMX): two steps of bf16.
NEAR_TIE_BF16 = 0.25


def greedy_gap(engine, messages, adapter, sampling, got: str, alone: str) -> float:
    """0 when ``got`` (a greedy reply computed beside others) equals ``alone`` (the same request computed
    alone); else how far the two tokens where they part fall below the best score there, read alone with
    the sampler's repetition penalty: the larger of the two, in logits."""
    import torch
    from transformers import RepetitionPenaltyLogitsProcessor

    from engine.kv_cache import new_cache

    if got == alone:
        return 0.0
    a, b = (engine.tokenizer.encode(text, add_special_tokens=False) for text in (got, alone))
    k = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    context = engine.fit(messages, sampling.max_new_tokens) + a[:k]
    scores, _ = engine._read(context, new_cache(engine.base_model.config), adapter)
    if sampling.repetition_penalty != 1.0:
        scores = RepetitionPenaltyLogitsProcessor(sampling.repetition_penalty)(torch.tensor([context]), scores)
    scores = scores[0]
    end = max(float(scores[i]) for i in engine.eos_ids)  # a reply that stops there chose its end

    def chosen(tokens):
        return float(scores[tokens[k]]) if k < len(tokens) else end

    return float(scores.max()) - min(chosen(a), chosen(b))


def golden(name: str, text: str) -> None:
    """``text`` must equal the golden file ``tests/golden/<name>`` (UPDATE_GOLDEN=1 rewrites it)."""
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text()


HEAD = ("name", "gender", "age", "tone", "career", "aspiration", "era", "traits")
TAIL = ("hobbies", "advantages", "disadvantages", "family", "social_relations", "living_conditions", "description",
        "personality", "first_mes", "alternate_greetings", "mes_example", "scenario", "profile", "facts",
        "system_prompt", "post_history_instructions", "creator_notes", "tags")


def form(name="Tess Okoro", traits=("Creative", "Outgoing"), skills=None, **extra) -> list:
    """The builder's values in its order (see ui.characters_tab.Form.components)."""
    from characters import catalogue

    levels = [0] * len(catalogue.skills())
    for skill, level in (skills or {"Painting": 7}).items():
        levels[catalogue.skills().index(skill)] = level
    values = dict.fromkeys(HEAD + TAIL, "")
    values.update(name=name, gender="female", age="29", tone="warm", career="Painter",
                  aspiration="Painter Extraordinaire", traits=list(traits), hobbies="sketching",
                  living_conditions="Lives in Windenburg.", first_mes="Hello!", facts="I paint murals.")
    values.update(extra)
    return [values[k] for k in HEAD] + levels + [values[k] for k in TAIL]
