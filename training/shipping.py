"""Shipping a trained character with the app: a run's adapter copied to ``trained/<name>/``
(``engine.shipped``) in bf16, half the size of the run's fp32 weights, with its model card, how it was
made, and the report of its interview."""

from __future__ import annotations

import json
from pathlib import Path

from engine.shipped import SHIPPED_DIR
from plumbing.files import atomic_write_bytes, atomic_write_json, inside, slugify
from training.runs import adapter_of, run_folder

KEPT = ("adapter_config.json", "README.md", "simulacra.json")


def ship(run: str, name: str, report: str = "", into: Path = SHIPPED_DIR) -> Path:
    """Copy the adapter of ``run`` (a run id or folder) to ``into/<name>``; ``report`` is its interview report
    (``evaluation interview`` or the trained report of ``before-after``), kept as ``interview.json``."""
    import torch
    from safetensors.torch import load_file, save

    folder = Path(run) if (Path(run) / "options.json").is_file() else run_folder(run)
    adapter = adapter_of(folder)
    target = inside(into, slugify(name))
    target.mkdir(parents=True, exist_ok=True)
    weights = load_file(adapter / "adapter_model.safetensors")
    atomic_write_bytes(target / "adapter_model.safetensors",
                       save({key: value.to(torch.bfloat16) for key, value in weights.items()}))
    for file in KEPT:
        atomic_write_bytes(target / file, (adapter / file).read_bytes())
    if report:
        atomic_write_json(target / "interview.json", json.loads(Path(report).read_text(encoding="utf-8")))
    return target
