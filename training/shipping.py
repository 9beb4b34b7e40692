"""Shipping a trained character with the app: a run's adapter copied to ``trained/<name>/``
(``engine.shipped``) in bf16, half the size of the run's fp32 weights, with its model card and how it
was made. Its interview is then run on the shipped weights (``evaluation interview --adapter <name>
--out trained/<name>/interview.json``), so the figures are those of what ships."""

from __future__ import annotations

import json
from pathlib import Path

from engine.model_source import HUB_ID
from engine.shipped import SHIPPED_DIR
from plumbing.files import atomic_write_bytes, atomic_write_json, atomic_write_text, inside, slugify
from training.qlora import RunOptions, model_card
from training.runs import adapter_of, run_folder



def ship(run: str, name: str, into: Path = SHIPPED_DIR) -> Path:
    """Copy the adapter of ``run`` (a run id or folder) to ``into/<name>`` in bf16."""
    import torch
    from safetensors.torch import load_file, save

    folder = Path(run) if (Path(run) / "options.json").is_file() else run_folder(run)
    adapter = adapter_of(folder)
    target = inside(into, slugify(name))
    target.mkdir(parents=True, exist_ok=True)
    weights = load_file(adapter / "adapter_model.safetensors")
    atomic_write_bytes(target / "adapter_model.safetensors",
                       save({key: value.to(torch.bfloat16) for key, value in weights.items()}))
    # The run names its base by its path on the machine that trained it; the Hub id loads anywhere.
    config = json.loads((adapter / "adapter_config.json").read_text())
    atomic_write_json(target / "adapter_config.json", {**config, "base_model_name_or_path": HUB_ID})
    made = json.loads((adapter / "simulacra.json").read_text())
    atomic_write_json(target / "simulacra.json", made)
    atomic_write_text(target / "README.md", model_card(RunOptions(**made["options"]), Path(made["dataset"]), HUB_ID,
                                                       made["metrics"]))
    return target
