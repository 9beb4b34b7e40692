"""How soon a Space's first page answers: `python app.py` in a requirements-only environment.

    .venv/bin/python bench/space_start.py [--starts 2]

The environment is the one tests/test_space.py builds (torch and requirements.txt, no Makefile, no
embedded model package). The model is in a fresh Hugging Face cache (HF_HOME, the Hub's layout), offline,
as a Space finds it after its first download. The download itself is not measured: no machine here
reaches the Hub. Each start is timed from the process's launch to the first 200 from `/`. Writes
bench/results/space_start.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
RESULTS = ROOT / "bench" / "results" / "space_start.json"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--starts", type=int, default=2)
    args = parser.parse_args()

    from conftest import free_port
    from engine.model_source import resolve_model
    from tabs import cpu_features
    from test_space import hub_cache, space_env, space_environment

    python = space_environment()
    folder = Path(tempfile.mkdtemp(prefix="space-start-"))
    hub_cache(folder / "hf_home", Path(resolve_model(None)))
    seconds = []
    for _ in range(args.starts):
        port = free_port()
        started = time.perf_counter()
        app = subprocess.Popen([str(python), "app.py", "--port", str(port), "--data-dir", str(folder / "data")],
                               cwd=ROOT, env=space_env(folder, folder / "hf_home"), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
        try:
            while True:
                if app.poll() is not None:
                    raise SystemExit(f"the app exited with status {app.returncode}")
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read()
                    break
                except OSError:
                    time.sleep(0.2)
            seconds.append(round(time.perf_counter() - started, 1))
        finally:
            app.terminate()
            app.wait(timeout=30)
    result = {"date": time.strftime("%Y-%m-%d"), "cpu": cpu_features(), "first_page_s": seconds}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"requirements-only app, model from the Hub cache, {result['cpu']}: first page after "
          + ", ".join(f"{s} s" for s in seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
