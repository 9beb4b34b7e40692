"""The model: where it comes from, loading (``auto`` precision: 4-bit NF4 on CUDA, fp32 for a small
model on a CPU), adapters, prompts, streaming."""

import logging

# bitsandbytes warns at import that it cannot download an optional CPU kernel from the Hub
# (nothing here reaches the Hub); its built-in kernel is used instead.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)

from engine.engine import AdapterError, Engine, PromptTooLong
from engine.options import PRECISIONS, EngineOptions, SamplingOptions

__all__ = ["AdapterError", "Engine", "EngineOptions", "PRECISIONS", "PromptTooLong", "SamplingOptions", "make_engine"]


def make_engine(options: EngineOptions | None = None, adapters_dir=None):
    """The model in this process (``Engine``), or on the server of ``--engine-url`` (``RemoteEngine``)."""
    options = options or EngineOptions()
    if options.engine_url:
        from engine.remote import RemoteEngine

        return RemoteEngine(options)
    return Engine(options, adapters_dir=adapters_dir)
