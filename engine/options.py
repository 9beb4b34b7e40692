"""Options of the engine and of sampling, as dataclasses.

The same definitions serve the CLI (``HfArgumentParser``), JSON configs and the UI.
Every value is checked on the server side: a slider in a browser can be bypassed
through the HTTP API.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field, fields

PRECISIONS = ("auto", "4bit", "8bit", "bf16", "fp32")


@dataclass
class EngineOptions:
    model: str = field(
        default="",
        metadata={"help": "Hub id or local folder; empty means the embedded SmolLM2-135M-Instruct "
                          "(or SIMULACRA_MODEL when set)."},
    )
    precision: str = field(default="auto", metadata={
        "help": "auto (default: 4-bit NF4 on CUDA; on a CPU the precision that serves chat fastest there, said in "
                "the footer and the log), 4bit (NF4), 8bit, bf16 or fp32.", "choices": PRECISIONS})
    device: str = field(default="auto", metadata={"help": "auto (CUDA when present, else CPU), cpu or cuda."})
    cpu_4bit_packing: bool = field(default=True, metadata={
        "help": "4-bit on a CPU with AVX-512 BF16: let bitsandbytes repack the weights for its faster kernel (about "
                "2x decoding), whose bf16 scales round otherwise than an AVX2 CPU does. --no-cpu-4bit-packing "
                "computes as on AVX2 (weights dequantised, sums in fp32), so greedy answers are the same on every "
                "CPU."})
    qlora_base: bool = field(default=True, metadata={
        "help": "bf16 and fp32: round the weights QLoRA keeps in 4-bit to NF4 and back at load, so that adapters run "
                "on the base they were trained on (in fp32, greedy answers are then the 4-bit model's, word for "
                "word, at fp32's speed). --no-qlora-base keeps the checkpoint's weights."})
    trust_remote_code: bool = field(default=False, metadata={"help": "Run code shipped with a Hub model. Off by default."})
    max_context_tokens: int = field(default=4096, metadata={"help": "Prompt + reply budget; older turns are dropped past it."})
    prefix_cache_entries: int = field(default=16, metadata={"help": "KV caches of recent conversations kept for reuse."})
    max_batch_rows: int = field(default=16, metadata={
        "help": "Most replies decoded together in one forward pass (continuous batching); more wait their turn."})
    decode_threads: int = field(default=0, metadata={
        "help": "CPU threads a decode step uses; 0 (auto): all of torch's threads. Fewer leave cores to the "
                "server's own work (HTTP, the tokenizer, streaming), as llama.cpp splits --threads from "
                "--threads-batch. Prompts are read with all of them."})
    engine_url: str = field(default_factory=lambda: os.environ.get("SIMULACRA_ENGINE_URL", ""), metadata={
        "help": "An OpenAI-compatible server (vLLM, TGI, llama.cpp server, another instance of this app) that "
                "runs the model instead of this process, e.g. http://gpu-box:8000/v1 (default: "
                "SIMULACRA_ENGINE_URL). Meta prompts, scenes and turn endings stay in this app."})
    engine_model: str = field(default="", metadata={
        "help": "The base model's name on that server (default: the first it lists)."})
    engine_api_key_env: str = field(default="SIMULACRA_ENGINE_API_KEY", metadata={
        "help": "Environment variable holding that server's API key, if it needs one."})

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {self.precision!r}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be auto, cpu or cuda, not {self.device!r}")
        if not 256 <= int(self.max_context_tokens) <= 131072:
            raise ValueError("max_context_tokens must be between 256 and 131072")
        if not 1 <= int(self.max_batch_rows) <= 256:
            raise ValueError("max_batch_rows must be between 1 and 256")
        if not 0 <= int(self.decode_threads) <= 256:
            raise ValueError("decode_threads must be between 0 (auto) and 256")
        if self.engine_url and not self.engine_url.startswith(("http://", "https://")):
            raise ValueError(f"engine_url must be an http:// or https:// URL, not {self.engine_url!r}")


@dataclass
class SamplingOptions:
    temperature: float = field(default=0.7, metadata={"help": "0 means greedy decoding.", "range": (0.0, 2.0)})
    top_p: float = field(default=0.9, metadata={"help": "Nucleus sampling mass.", "range": (0.05, 1.0)})
    min_p: float = field(default=0.0, metadata={
        "help": "Drop tokens less likely than this share of the likeliest one's probability; 0 means none.",
        "range": (0.0, 1.0)})
    max_new_tokens: int = field(default=256, metadata={"help": "Longest reply in tokens.", "range": (1, 2048)})
    repetition_penalty: float = field(default=1.1, metadata={"help": "1.0 means none.", "range": (1.0, 2.0)})
    seed: int | None = field(default=None, metadata={"help": "Fixes the sampling; empty means random.",
                                                      "range": (0, 2**31 - 1)})

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None and f.name == "seed":
                continue
            kind = int if f.name in ("max_new_tokens", "seed") else float
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{f.name} must be a number, not {value!r}")
            if kind is int and float(value) != int(value):
                raise ValueError(f"{f.name} must be a whole number, not {value!r}")
            if not math.isfinite(value):
                raise ValueError(f"{f.name} must be finite, not {value!r}")
            low, high = f.metadata["range"]
            if not low <= value <= high:
                raise ValueError(f"{f.name} must be between {low} and {high}, not {value!r}")
            setattr(self, f.name, kind(value))

    @classmethod
    def from_values(cls, defaults: dict | None = None, **values) -> "SamplingOptions":
        """From loose UI/API values: empty strings and None fall back to ``defaults``, then the class's."""
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown sampling option(s): {', '.join(sorted(unknown))}")
        clean = {**(defaults or {}), **cls.given(values)}
        if "seed" in clean and isinstance(clean["seed"], (int, float)) and clean["seed"] < 0:
            clean.pop("seed")  # the UI uses -1 for "random"
        return cls(**clean)

    @staticmethod
    def given(values: dict) -> dict:
        """The loose values that were given: not None, not an empty string (those take the defaults)."""
        return {k: v for k, v in values.items() if v is not None and v != ""}

    def to_dict(self) -> dict:
        return asdict(self)


# A character's chat turn (Chat tab, /chat, /v1), chosen with bench/turns.py: ten presets × ten questions,
# 100 replies a setting. 128 tokens is a spoken turn (84 words at the median with turn endings, against 95
# at 256); repetition penalty 1.2 left no degenerate raw reply (1.1: 3 %) and fewer other speakers' lines
# (10 % against 16 %); min-p 0.1 did no better on degeneration (3 %), so it stays off. Interviews and
# experience generation keep the class's defaults, which their measured figures used.
CHAT_DEFAULTS = {"max_new_tokens": 128, "repetition_penalty": 1.2}
# A trained character (one speaking through an adapter) keeps 1.1, the penalty its recall was measured with in
# training and in interviews: at 1.2 it says less of its own life, since the penalty keeps the reply from the
# question's words. Measured through Chat's own turn (memory on, T 0.7, three seeds, the shipped characters'
# questions, bf16 on QLoRA's base): memorization of Beethoven, Socrates, Hazel 69 / 53 / 72 % at 1.1 against
# 44 / 26 / 62 % at 1.2 (strict protection 44 / 67 / 81 % against 52 / 59 / 74 %); bench/turns.py --trained
# --memory: 2 % degenerate replies at 1.1, none at 1.2. The presets' untrained replies keep 1.2 (with memory, in
# bf16 on QLoRA's base: 6 % degenerate at 1.1, 2 % at 1.2).
TRAINED_CHAT_DEFAULTS = {**CHAT_DEFAULTS, "repetition_penalty": 1.1}


def chat_defaults(trained: bool) -> dict:
    """The sampling defaults of a chat turn, for a character speaking through an adapter or not."""
    return TRAINED_CHAT_DEFAULTS if trained else CHAT_DEFAULTS
