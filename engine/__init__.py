"""The model: loading (4-bit NF4 by default), adapters, prompts, streaming."""

from engine.engine import AdapterError, Engine, PromptTooLong
from engine.options import PRECISIONS, EngineOptions, SamplingOptions

__all__ = ["AdapterError", "Engine", "EngineOptions", "PRECISIONS", "PromptTooLong", "SamplingOptions"]
