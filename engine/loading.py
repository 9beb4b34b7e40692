"""How a model is loaded: the one function the engine and QLoRA training share, so that chat and
training see the same weights, precision and quantisation (which precision ``auto`` means is in
``engine.precision``)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

import torch
from safetensors import SafetensorError
from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

from plumbing.files import folder_in_place
from plumbing.layout import quantized_dir

log = logging.getLogger(__name__)


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


def as_qlora_base(model, on_cuda: bool = False):
    """``model`` (fp32 or bf16) with the weights that QLoRA keeps in 4-bit rounded to NF4 and back, in place: the
    base every adapter of this app was trained on, computed by the model's own dtype. Without it a trained
    character loses much of what it learned (the shipped Beethoven, greedy in fp32: memorization 72 % on its
    4-bit base, 44 % on the checkpoint's weights); with it an fp32 model answers as the 4-bit one computed
    without packing does, word for word. Which layers, the block size and the double quantisation follow
    ``quantization_config``: every linear layer but the output embeddings."""
    import bitsandbytes.functional as F

    quant = quantization_config("4bit", on_cuda)
    skip = model.get_output_embeddings()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Linear) and module is not skip:
                weight = module.weight
                packed, state = F.quantize_4bit(weight.float(), quant_type=quant.bnb_4bit_quant_type,
                                                compress_statistics=quant.bnb_4bit_use_double_quant)
                # A new tensor, not a copy into the old: loaded weights are mapped from the file, and writing
                # into them took as long as the rounding (1.5 s of the embedded model's 3.3 s).
                weight.data = F.dequantize_4bit(packed, state).to(weight.dtype)
    return model


def load_model(source: str, precision: str, device: str, trust_remote_code: bool = False,
               cache_dir: str | os.PathLike | None = None, qlora_base: bool = False):
    """``source`` (a folder or Hub id) in ``precision`` on ``device`` (``cpu``, ``cuda`` or ``cuda:N``);
    ``qlora_base``: in bf16 or fp32, with the weights QLoRA trains on (``as_qlora_base``).

    bitsandbytes quantises a model to 4-bit on the CPU slowly (3.8 s of the 4.6 s a load of the embedded model
    takes on one core), and every training run and 4-bit engine did it again. A local model quantised on the CPU
    is therefore kept, quantised, under ``cache_dir`` (``plumbing.layout.quantized_dir``) and loaded from there
    next time (0.3 s; the same bits, tested). A GPU quantises in a moment, and a Hub model is not kept."""
    kwargs: dict = {"trust_remote_code": trust_remote_code, "device_map": {"": device}}
    quant = quantization_config(precision, device.startswith("cuda"))
    if quant is None:
        model = AutoModelForCausalLM.from_pretrained(
            source, dtype=torch.bfloat16 if precision == "bf16" else torch.float32, **kwargs)
        return as_qlora_base(model, device.startswith("cuda")) if qlora_base else model
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

    parts = [*weights_identity(source), quant.to_json_string(), bitsandbytes.__version__, transformers.__version__,
             torch.__version__]
    return quantized_dir(cache_dir) / hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]


def weights_identity(source: str) -> list:
    """What names a model's weights for the files kept from them: a local folder's path and its safetensors'
    names, sizes and times; a Hub id as it is."""
    folder = Path(source)
    if not folder.is_dir():
        return [source]
    return [str(folder.resolve()),
            [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.glob("*.safetensors"))]]
