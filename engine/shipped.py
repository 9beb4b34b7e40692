"""Trained characters that come with the app: adapters in ``trained/<name>/``, made by the project's own
commands (README, "Trained characters from the first minute") on the embedded SmolLM2-135M-Instruct, so
a visitor meets a trained character without waiting for a run. Each folder holds the adapter (bf16
safetensors), its model card, ``simulacra.json`` (how it was made) and ``interview.json`` (its
before-after report)."""

from __future__ import annotations

from pathlib import Path

from engine.model_source import EMBEDDED_NAME, HUB_ID

SHIPPED_DIR = Path(__file__).resolve().parent.parent / "trained"


def shipped_adapters(source: str | Path) -> dict[str, Path]:
    """The shipped adapters by name, if they fit the base model ``source`` (the embedded model, or the same
    model from the Hub); none for another base model, on which they would load and say nothing sensible."""
    if Path(str(source)).name != EMBEDDED_NAME and str(source) != HUB_ID:
        return {}
    return {folder.name: folder for folder in sorted(SHIPPED_DIR.iterdir())
            if (folder / "adapter_config.json").is_file()} if SHIPPED_DIR.is_dir() else {}
