"""How a model is loaded: the one function the engine and QLoRA training share, so that chat and
training see the same weights, precision and quantisation."""

from __future__ import annotations

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig


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


def load_model(source: str, precision: str, device: str, trust_remote_code: bool = False):
    """``source`` (a folder or Hub id) in ``precision`` on ``device`` (``cpu``, ``cuda`` or ``cuda:N``)."""
    kwargs: dict = {"trust_remote_code": trust_remote_code, "device_map": {"": device}}
    quant = quantization_config(precision, device.startswith("cuda"))
    if quant is not None:
        kwargs["quantization_config"] = quant
    else:
        kwargs["dtype"] = torch.bfloat16 if precision == "bf16" else torch.float32
    return AutoModelForCausalLM.from_pretrained(source, **kwargs)
