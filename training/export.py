"""Take a trained character home: the run's adapter merged into its base model and written as GGUF
(for llama.cpp, Ollama, LM Studio), with an Ollama ``Modelfile``, the character's card (V3) and the
PEFT adapter zipped with its model card.

GGUF keeps llama.cpp's tensor layout, which is not transformers': the query and key projections of
llama-family models are permuted (llama.cpp's converter does it, transformers' GGUF reader undoes
it on load), so ``write_gguf`` permutes them as llama.cpp's converter does. The tokenizer, chat
template and special tokens are carried over from the base model's tokenizer files.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType, LlamaFileType

from characters.cards import card_json, to_v3
from characters.meta_prompt import meta_prompt
from characters.scenes import INTERVIEW
from characters.store import CharacterStore
from engine.loading import load_model
from engine.model_source import resolve_model
from engine.options import SamplingOptions, chat_defaults
from plumbing.files import atomic_write_bytes, atomic_write_text, slugify
from training.runs import adapter_of, read_options, run_folder, zip_adapter

log = logging.getLogger(__name__)

# format: (the weights' GGML type, the file type GGUF records)
FORMATS = {"gguf-f16": (GGMLQuantizationType.F16, LlamaFileType.MOSTLY_F16),
           "gguf-q8_0": (GGMLQuantizationType.Q8_0, LlamaFileType.MOSTLY_Q8_0),
           "gguf-q4_0": (GGMLQuantizationType.Q4_0, LlamaFileType.MOSTLY_Q4_0)}
# llama.cpp names the pre-tokenizer of each model family (its converter recognises it by a hash of the
# tokenizer's output); these are the families this app ships or suggests.
PRE_TOKENIZERS = {"smollm2": "smollm"}


@dataclass
class ExportOptions:
    run: str = field(default="", metadata={"help": "The training run to export (its id in the runs folder)."})
    format: str = field(default="gguf-q8_0", metadata={"help": "gguf-f16, gguf-q8_0 or gguf-q4_0.",
                                                        "choices": tuple(FORMATS)})
    out: str = field(default="", metadata={"help": "Folder to write to (default: the run's export/ folder)."})

    def __post_init__(self):
        if self.format not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {self.format!r}")


def merged_model(folder: Path):
    """The run's base model in fp32, as QLoRA trained on it (``as_qlora_base``), with its adapter merged in, and
    the base model's source."""
    from peft import PeftModel

    adapter = adapter_of(folder)
    source = base_model_of(adapter, read_options(folder).get("model") or None)
    base = load_model(source, "fp32", "cpu", qlora_base=True)
    return PeftModel.from_pretrained(base, str(adapter)).merge_and_unload().eval(), source


def base_model_of(adapter: Path, model_option: str | None) -> str:
    """The base the adapter was trained on, as its adapter_config.json names it (on a GPU that was the
    GPU default); a local folder that is not on this machine falls back to the run's --model option."""
    from peft import PeftConfig

    named = PeftConfig.from_pretrained(str(adapter)).base_model_name_or_path or ""
    if named and (Path(named).is_dir() or is_hub_id(named)):
        return named
    return resolve_model(model_option)


def is_hub_id(name: str) -> bool:
    """``org/model``, as the Hub names a repository (a local path has more parts, or none)."""
    return re.fullmatch(r"[\w.-]+/[\w.-]+", name) is not None


def llama_permute(weights: np.ndarray, heads: int) -> np.ndarray:
    """transformers' q/k projection rows in llama.cpp's order (the inverse of transformers' GGUF reader)."""
    return (weights.reshape(heads, 2, weights.shape[0] // heads // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def tokenizer_metadata(writer, source: str) -> None:
    """Tokens, merges, special tokens and chat template of the base model's tokenizer."""
    import gguf
    from huggingface_hub import snapshot_download

    folder = Path(source) if Path(source).is_dir() else Path(snapshot_download(source, allow_patterns=["*.json",
                                                                                                      "*.jinja"]))
    vocab = gguf.vocab.BpeVocab(folder)
    tokens, types = [], []
    for text, _score, kind in vocab.all_tokens():
        tokens.append(text)
        types.append(kind)
    # llama.cpp parses special tokens in a prompt only when they are CONTROL tokens (as its converter marks
    # the tokenizer's special added tokens); other added tokens are USER_DEFINED.
    for added in json.loads((folder / "tokenizer.json").read_text()).get("added_tokens", []):
        if added["id"] < len(types):
            types[added["id"]] = (gguf.TokenType.CONTROL if added.get("special") else gguf.TokenType.USER_DEFINED)
    config = folder / "tokenizer_config.json"
    settings = json.loads(config.read_text()) if config.is_file() else {}
    writer.add_add_space_prefix(bool(settings.get("add_prefix_space", False)))
    writer.add_add_bos_token(bool(settings.get("add_bos_token", False)))
    writer.add_tokenizer_model("gpt2")
    family = next((pre for key, pre in PRE_TOKENIZERS.items() if key in Path(source).name.lower()), "default")
    writer.add_tokenizer_pre(family)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    special = gguf.SpecialVocab(folder, load_merges=True, n_vocab=len(tokens))
    template = folder / "chat_template.jinja"
    if not special.chat_template and template.is_file():
        special.chat_template = template.read_text()
    special.add_to_gguf(writer)


def write_gguf(model, source: str, path: Path, fmt: str, title: str) -> Path:
    """``model`` (a llama-family ``*ForCausalLM`` in fp32) as one GGUF file at ``path``."""
    import gguf

    qtype, file_type = FORMATS[fmt]
    config = model.config
    if config.model_type != "llama":
        raise ValueError(f"GGUF export knows llama-family models; this base is {config.model_type!r}")
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, config.num_hidden_layers)
    tmp = path.with_name(f".{path.name}.{time.time_ns()}.tmp")
    try:
        writer = gguf.GGUFWriter(str(tmp), "llama")
        writer.add_name(title)
        writer.add_finetune("simulacra-character")
        writer.add_base_model_count(1)
        writer.add_base_model_name(0, Path(source).name)
        if is_hub_id(source):
            writer.add_base_model_repo_url(0, f"https://huggingface.co/{source}")
        writer.add_context_length(config.max_position_embeddings)
        writer.add_embedding_length(config.hidden_size)
        writer.add_block_count(config.num_hidden_layers)
        writer.add_feed_forward_length(config.intermediate_size)
        writer.add_head_count(heads)
        writer.add_head_count_kv(kv_heads)
        writer.add_rope_dimension_count(config.hidden_size // heads)
        writer.add_rope_freq_base(float(getattr(config, "rope_theta", None)
                                        or (config.rope_parameters or {}).get("rope_theta", 10000.0)))
        writer.add_layer_norm_rms_eps(config.rms_norm_eps)
        writer.add_vocab_size(config.vocab_size)
        writer.add_file_type(file_type)
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        tokenizer_metadata(writer, source)
        state = model.state_dict()
        tied = getattr(config, "tie_word_embeddings", False)
        for hf_name, tensor in state.items():
            if tied and hf_name == "lm_head.weight":
                continue  # llama.cpp reuses token_embd when there is no output tensor
            data = tensor.detach().float().numpy()
            if hf_name.endswith("q_proj.weight"):
                data = llama_permute(data, heads)
            elif hf_name.endswith("k_proj.weight"):
                data = llama_permute(data, kv_heads)
            name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
            if name is None:
                raise ValueError(f"no GGUF name for tensor {hf_name}")
            if data.ndim == 1:
                writer.add_tensor(name, data.astype(np.float32))  # norms stay fp32, as llama.cpp keeps them
                continue
            if qtype == GGMLQuantizationType.F16:
                writer.add_tensor(name, data.astype(np.float16))
            else:
                writer.add_tensor(name, gguf.quants.quantize(data, qtype), raw_dtype=qtype)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    except BaseException:
        tmp.unlink(missing_ok=True)  # no half-written file is left behind
        raise
    tmp.replace(path)
    return path


def modelfile(gguf_name: str, system: str, sampling: SamplingOptions) -> str:
    """An Ollama Modelfile: the character's meta prompt as SYSTEM, the model's chat template (ChatML,
    in Ollama's template language; system messages come from .System only, user and assistant turns
    from .Messages, as LLaMA-Factory writes it) and the app's sampling defaults."""
    quoted = system.replace('"""', '\\"\\"\\"')
    return f'''FROM ./{gguf_name}
TEMPLATE """{{{{ if .System }}}}<|im_start|>system
{{{{ .System }}}}<|im_end|>
{{{{ end }}}}{{{{ range .Messages }}}}{{{{ if eq .Role "user" }}}}<|im_start|>user
{{{{ .Content }}}}<|im_end|>
<|im_start|>assistant
{{{{ else if eq .Role "assistant" }}}}{{{{ .Content }}}}<|im_end|>
{{{{ end }}}}{{{{ end }}}}"""
SYSTEM """{quoted}"""
PARAMETER temperature {sampling.temperature}
PARAMETER top_p {sampling.top_p}
PARAMETER min_p {sampling.min_p}
PARAMETER repeat_penalty {sampling.repetition_penalty}
PARAMETER num_predict {sampling.max_new_tokens}
PARAMETER stop "<|im_end|>"
PARAMETER stop "<|im_start|>"
'''


def export_run(options: ExportOptions) -> dict[str, Path]:
    """Everything a trained character needs outside the app, in ``options.out``; returns the files."""
    folder = run_folder(options.run)
    character = CharacterStore().load(read_options(folder)["character"])
    out = Path(options.out) if options.out else folder / "export"
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    model, source = merged_model(folder)
    stem = f"{slugify(character.name)}-{options.run}"[:120]
    suffix = options.format.split("-", 1)[1].upper()
    gguf_path = write_gguf(model, source, out / f"{stem}.{suffix}.gguf", options.format,
                           f"{character.name} ({Path(source).name} + {options.run})")
    card = to_v3(character)
    card["data"]["scenario"] = card["data"].get("scenario") or INTERVIEW.status
    files = {"gguf": gguf_path, "modelfile": out / "Modelfile", "card": out / f"{stem}.card.json",
             "adapter_zip": out / f"{stem}-adapter.zip"}
    system = meta_prompt(character, INTERVIEW, examples=False, persona_text=False)  # as the adapter was trained
    sampling = SamplingOptions(**chat_defaults(trained=True))  # the exported model is a trained character
    atomic_write_text(files["modelfile"], modelfile(gguf_path.name, system, sampling))
    atomic_write_bytes(files["card"], card_json(card))
    archive = zip_adapter(options.run)
    shutil.move(str(archive), files["adapter_zip"])
    shutil.rmtree(archive.parent, ignore_errors=True)
    log.info("Exported %s as %s in %.1fs", options.run, options.format, time.perf_counter() - started)
    return files
