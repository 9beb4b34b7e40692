"""A work-around for bitsandbytes' CPU 4-bit packing (seen in bitsandbytes 0.50.2).

On CPUs with AVX-512 BF16, ``Linear4bit`` repacks its weight on the first forward pass
in eval mode into a layout for a faster kernel (about 2x faster decoding here), with
``absmax`` transposed to bf16. ``state_dict()`` undoes the packing, but its inverse leaves
``absmax`` transposed when the state is not nested, so the next forward repacks a
scrambled scale table and the model outputs garbage. PEFT calls ``state_dict()`` when it
loads an adapter, so before that we undo the packing ourselves, correctly. The next
forward packs again.

bitsandbytes is imported where it is used: importing it takes about 2 s (it brings in torch.compile's
machinery), which an app serving fp32 need not pay at start. Loading a 4-bit model imports it anyway.
"""

from __future__ import annotations

import torch


def unpack_cpu_4bit(model: torch.nn.Module) -> int:
    """Return every packed ``Linear4bit`` of ``model`` to the standard layout; the count."""
    import bitsandbytes as bnb
    from bitsandbytes.functional import _convert_weight_packed_for_cpu_inverse

    count = 0
    for module in model.modules():
        if not isinstance(module, bnb.nn.Linear4bit):
            continue
        state = module.weight.quant_state
        if not getattr(state, "packing_format_for_cpu", False):
            continue
        nested = state.original_nested
        module.weight.data, state = _convert_weight_packed_for_cpu_inverse(module.weight.data, state)
        if not nested:
            state.absmax = state.absmax.T.reshape(-1).float()
        module.weight.quant_state = state
        count += 1
    return count


def keep_cpu_4bit_unpacked(model: torch.nn.Module) -> None:
    """For training: never repack. An evaluation pass (eval mode, no grad) would pack the weights,
    and the training pass after it reads them as unpacked: the loss jumps from 0.5 to 18."""
    import bitsandbytes as bnb

    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            module.support_avx512bf16_for_cpu = False
