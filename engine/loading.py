"""How a model is loaded: the one function the engine and QLoRA training share, so that chat and
training see the same weights, precision and quantisation; and which precision ``auto`` means."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

import torch
from safetensors import SafetensorError
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

from plumbing.files import folder_in_place
from plumbing.layout import quantized_dir

log = logging.getLogger(__name__)

# On a CPU, fp32 served chat fastest for the embedded 135M model on both CPUs measured: with AVX-512
# BF16 (decode 25.1 tokens/s against 20.5 in 4-bit) and with AVX2 only, where bitsandbytes' 4-bit
# kernel is about 3x slower (14.6 against 6-7). fp32 costs 4 bytes a weight, so it is chosen only
# while the weights take a small share of the memory.
FP32_MEMORY_SHARE = 0.25
FP32_MAX_BYTES = 4 * 2**30


def quantization_config(precision: str, on_cuda: bool) -> BitsAndBytesConfig | None:
    if precision == "4bit":
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            # bf16 compute is fast on GPUs; CPUs without AMX are faster in fp32.
            bnb_4bit_compute_dtype=torch.bfloat16 if on_cuda else torch.float32,
            bnb_4bit_use_double_quant=on_cuda,
        )
    if precision == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return None


def load_tokenizer(source: str, trust_remote_code: bool = False):
    return AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)


def pad_id(tokenizer) -> int:
    """The token that pads a batch: the tokenizer's own, else its end of sequence (many chat models have none)."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def load_model(source: str, precision: str, device: str, trust_remote_code: bool = False,
               cache_dir: str | os.PathLike | None = None):
    """``source`` (a folder or Hub id) in ``precision`` on ``device`` (``cpu``, ``cuda`` or ``cuda:N``).

    bitsandbytes quantises a model to 4-bit on the CPU slowly (3.8 s of the 4.6 s a load of the embedded model
    takes on one core), and every training run and 4-bit engine did it again. A local model quantised on the CPU
    is therefore kept, quantised, under ``cache_dir`` (``plumbing.layout.quantized_dir``) and loaded from there
    next time (0.3 s; the same bits, tested). A GPU quantises in a moment, and a Hub model is not kept."""
    kwargs: dict = {"trust_remote_code": trust_remote_code, "device_map": {"": device}}
    quant = quantization_config(precision, device.startswith("cuda"))
    if quant is None:
        return AutoModelForCausalLM.from_pretrained(
            source, dtype=torch.bfloat16 if precision == "bf16" else torch.float32, **kwargs)
    kept = None
    if (precision, device, trust_remote_code) == ("4bit", "cpu", False):
        kept = quantized_copy(source, quant, cache_dir)
    if kept is not None and (kept / "config.json").is_file():
        try:
            model = AutoModelForCausalLM.from_pretrained(kept, **kwargs)
        except (OSError, ValueError, RuntimeError, SafetensorError) as err:  # damaged: quantised again, kept anew
            log.warning("The quantised copy in %s cannot be loaded (%s); quantising again", kept, err)
            shutil.rmtree(kept, ignore_errors=True)
        else:
            model.name_or_path = model.config.name_or_path = source  # what PEFT writes as an adapter's base
            return model
    model = AutoModelForCausalLM.from_pretrained(source, quantization_config=quant, **kwargs)
    if kept is not None:
        # Saved before any forward pass: bitsandbytes repacks 4-bit weights at the first one on CPUs with
        # AVX-512 BF16, and its state_dict() does not undo that correctly (see engine.bnb_cpu).
        try:
            with folder_in_place(kept) as tmp:
                model.save_pretrained(tmp)
        except OSError as err:  # a read-only or full disk: the model is loaded all the same
            log.warning("The quantised model was not kept in %s: %s", kept, err)
    return model


def quantized_copy(source: str, quant: BitsAndBytesConfig,
                   cache_dir: str | os.PathLike | None = None) -> Path | None:
    """Where the local model ``source`` quantised as ``quant`` is kept; None for a Hub id. The name changes
    with the weights' files and with every library that decides the bits."""
    folder = Path(source)
    if not folder.is_dir():
        return None
    import bitsandbytes
    import transformers

    files = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.glob("*.safetensors"))]
    parts = [str(folder.resolve()), files, quant.to_json_string(), bitsandbytes.__version__, transformers.__version__,
             torch.__version__]
    return quantized_dir(cache_dir) / hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]


def cpu_features() -> set[str]:
    """The CPU's feature flags (Linux), e.g. ``avx2``, ``avx512_bf16``; empty where they cannot be read."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    return {flag for line in text.splitlines() if line.startswith("flags") for flag in line.split(":", 1)[1].split()}


def speed_features() -> str:
    """The features that decide CPU speed here, for benchmark tables (bitsandbytes' 4-bit is ~3x faster
    with AVX-512 BF16): e.g. "avx2" or "avx2, avx512f, avx512_bf16"."""
    features = cpu_features()
    return ", ".join(f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in features) or "unknown"


def parameter_count(source: str, trust_remote_code: bool = False) -> int:
    """The model's parameters, counted on the meta device from its config (no weights are read)."""
    config = AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    return sum(p.numel() for p in model.parameters())


def auto_precision(source: str, on_cuda: bool, trust_remote_code: bool = False) -> tuple[str, str]:
    """The precision ``auto`` means here, and why (for the page footer and the log)."""
    if on_cuda:
        return "4bit", "CUDA: 4-bit NF4 with bf16 compute"
    fp32_bytes = 4 * parameter_count(source, trust_remote_code)
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    features = cpu_features()
    kind = "AVX-512 BF16" if "avx512_bf16" in features else "AVX2" if "avx2" in features else "no AVX2"
    if fp32_bytes <= min(FP32_MAX_BYTES, FP32_MEMORY_SHARE * memory):
        return "fp32", (f"CPU ({kind}): fp32 decodes fastest for a model this small "
                        f"({fp32_bytes / 2**20:.0f} MB in fp32)")
    return "4bit", f"CPU ({kind}): the model is too large for fp32 here ({fp32_bytes / 2**30:.1f} GB), 4-bit NF4"
