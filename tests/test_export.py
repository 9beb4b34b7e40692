"""Export of a trained character as GGUF (+ Modelfile, card, adapter zip), read back with transformers'
own GGUF reader: the file holds the merged model, in llama.cpp's tensor layout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile

import pytest
import torch

from conftest import ROOT, random_lora
from training.export import ExportOptions, export_run, llama_permute, merged_model
from training.runs import run_folder

PROMPTS = ["Where were you born?", "Tell me about your father.", "What is your favourite piece?",
           "Do you like Vienna?", "What happened to your hearing?"]
NEW_TOKENS = 32
RUN = "beethoven-run"


@pytest.fixture(scope="module")
def exported(engine, tmp_path_factory):
    """A run of Beethoven as training leaves it (options.json, and an adapter on q, k and v with non-zero B;
    k has fewer heads than q in SmolLM2, so both permutations count), exported as F16 and Q8_0."""
    data, out = tmp_path_factory.mktemp("export_data"), tmp_path_factory.mktemp("exported")
    folder = data / "runs" / RUN
    random_lora(engine.source, folder / "adapter", ("q_proj", "k_proj", "v_proj"), std=0.05)
    (folder / "options.json").write_text(json.dumps({"character": "Ludwig van Beethoven", "model": ""}))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SIMULACRA_DATA_DIR", str(data))
        files = {fmt: export_run(ExportOptions(run=RUN, format=fmt, out=str(out))) for fmt in ("gguf-f16", "gguf-q8_0")}
        merged, _ = merged_model(run_folder(RUN))
    return files, merged, data


def prompts(tokenizer) -> dict:
    """The 5 questions as one left-padded batch (one forward pass per token for all of them)."""
    tokenizer.padding_side = "left"
    return tokenizer.apply_chat_template([[{"role": "user", "content": q}] for q in PROMPTS],
                                         add_generation_prompt=True, padding=True, return_tensors="pt",
                                         return_dict=True)


def greedy(model, batch: dict) -> torch.Tensor:
    return model.generate(**batch, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=False)


def from_gguf(path):
    """The model in the GGUF file, read by transformers (16 s here: it parses the whole file twice)."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32).eval()


def tokenizer_of(path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)


def test_permuting_q_and_k_is_what_transformers_gguf_reader_undoes():
    from transformers.modeling_gguf_pytorch_utils import LlamaTensorProcessor

    weights = torch.arange(12 * 4, dtype=torch.float32).reshape(12, 4).numpy()
    for heads, kv_heads in ((3, 3), (6, 3)):
        permuted = llama_permute(weights, kv_heads)
        back = LlamaTensorProcessor()._reverse_permute_weights(permuted, heads, kv_heads)
        assert (back == weights).all() and not (permuted == weights).all()


def test_the_f16_gguf_continues_greedily_as_the_merged_model_does(exported, engine):
    """The file holds the merged weights (rounded to fp16) in the right layout, with the base model's
    tokenizer and chat template: 5 prompts, 32 greedy tokens, token for token the merged model with the
    same fp16-rounded weights."""
    files, merged, _ = exported
    model, tokenizer = from_gguf(files["gguf-f16"]["gguf"]), tokenizer_of(files["gguf-f16"]["gguf"])
    batch = prompts(engine.tokenizer)
    assert torch.equal(batch["input_ids"], prompts(tokenizer)["input_ids"]), "the GGUF's tokenizer or template differ"
    reference = type(merged)(merged.config).eval()
    reference.load_state_dict({k: v.half().float() for k, v in merged.state_dict().items()}, strict=False)
    reference.tie_weights()
    want, got = greedy(reference, batch), greedy(model, batch)
    assert torch.equal(want, got), (engine.tokenizer.batch_decode(want), engine.tokenizer.batch_decode(got))


def test_the_q8_0_gguf_agrees_with_the_merged_model_on_the_next_token(exported, engine):
    """Teacher-forced over the merged model's own greedy replies: Q8_0's top-1 token is the merged
    model's (fp32) at >= 95 % of the positions."""
    files, merged, _ = exported
    model = from_gguf(files["gguf-q8_0"]["gguf"])
    batch = prompts(engine.tokenizer)
    start = batch["input_ids"].shape[1]
    text = greedy(merged, batch)
    mask = torch.cat([batch["attention_mask"], torch.ones(len(PROMPTS), NEW_TOKENS, dtype=torch.long)], dim=1)
    with torch.inference_mode():
        want = merged(input_ids=text, attention_mask=mask).logits[:, start - 1:-1].argmax(-1)
        got = model(input_ids=text, attention_mask=mask).logits[:, start - 1:-1].argmax(-1)
    agreement = (want == got).float().mean().item()
    assert agreement >= 0.95, f"{agreement:.1%} of {want.numel()} positions"


def test_the_adapter_is_merged_into_the_4bit_base_it_was_trained_on(exported, engine):
    _, merged, _ = exported
    engine_layers = dict(engine.base_model.named_modules())
    for name, module in merged.named_modules():  # layers the adapter left alone hold QLoRA's NF4 values
        if name.endswith(("gate_proj", "up_proj", "down_proj", "o_proj")):
            assert torch.equal(module.weight, engine_layers[name].weight), name


def test_the_tokenizer_metadata_is_the_embedded_gguf_s(exported):
    """The tokenizer written from the base model's files is the one llama.cpp's own converter wrote
    into the embedded GGUF: tokens, their types (special tokens CONTROL), merges, ids and template."""
    from gguf import GGUFReader

    from engine.model_source import embedded_gguf

    def fields(path) -> dict:
        reader = GGUFReader(path)
        out = {}
        for key, field in reader.fields.items():
            if key.startswith("tokenizer."):
                out[key] = field.contents()
        return out

    ours, theirs = fields(exported[0]["gguf-q8_0"]["gguf"]), fields(embedded_gguf())
    assert ours == theirs, sorted(k for k in theirs if ours.get(k) != theirs[k])


def test_the_export_brings_a_modelfile_a_card_and_the_adapter(exported):
    files = exported[0]["gguf-q8_0"]
    modelfile = files["modelfile"].read_text()
    assert modelfile.startswith(f"FROM ./{files['gguf'].name}\n")
    assert "act like Ludwig van Beethoven" in modelfile and "<|im_start|>" in modelfile
    assert 'PARAMETER stop "<|im_end|>"' in modelfile
    assert "PARAMETER repeat_penalty 1.1\n" in modelfile  # a trained character's chat default
    card = json.loads(files["card"].read_text())
    assert card["spec"] == "chara_card_v3" and card["data"]["name"] == "Ludwig van Beethoven"
    assert card["data"]["scenario"]
    with zipfile.ZipFile(files["adapter_zip"]) as archive:
        assert {"adapter_config.json", "adapter_model.safetensors"} <= set(archive.namelist())


@pytest.mark.parametrize("args, words", [
    (["no-such-run"], "no run"),
    (["../../etc"], "outside"),
    (["beethoven-run", "--format", "gguf-q2"], "format"),
])
def test_the_cli_refuses_bad_runs_and_formats_in_one_line(exported, args, words, capsys, monkeypatch):
    from training.__main__ import main

    monkeypatch.setenv("SIMULACRA_DATA_DIR", str(exported[2]))
    try:
        assert main(["export", *args]) != 0
    except SystemExit as end:  # argparse's own one-line usage error
        assert end.code == 2
    error = capsys.readouterr().err
    assert words in error and "Traceback" not in error, error


def test_the_cli_exports_a_run_as_the_issue_spells_it(exported, tmp_path):
    done = subprocess.run([sys.executable, "-m", "training", "export", RUN, "--format", "gguf-q8_0", "--out",
                           str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "SIMULACRA_DATA_DIR": str(exported[2])})
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"gguf: {tmp_path}/ludwig-van-beethoven-{RUN}.Q8_0.gguf" in done.stdout
    assert (tmp_path / "Modelfile").is_file() and len(list(tmp_path.iterdir())) == 4


def test_the_training_tabs_export_through_the_api_gives_the_four_files(exported, app_url, monkeypatch):
    """The Training tab's Export (`/export_character`), here in Q4_0: the GGUF (readable, Q4_0 weights),
    the Modelfile, the card and the adapter zip, as downloads."""
    from gguf import GGUFReader
    from gradio_client import Client

    monkeypatch.setenv("SIMULACRA_DATA_DIR", str(exported[2]))  # the in-process app reads it per request
    files = Client(app_url[0], verbose=False).predict(RUN, "gguf-q4_0", api_name="/export_character")
    names = sorted(os.path.basename(f) for f in files)
    assert names == sorted([f"ludwig-van-beethoven-{RUN}.Q4_0.gguf", "Modelfile", f"ludwig-van-beethoven-{RUN}.card.json",
                            f"ludwig-van-beethoven-{RUN}-adapter.zip"])
    gguf_file = next(f for f in files if f.endswith(".gguf"))
    kinds = {t.tensor_type.name for t in GGUFReader(gguf_file).tensors}
    assert kinds == {"Q4_0", "F32"}
    with pytest.raises(Exception, match="not in the list of choices"):  # Gradio checks a Radio's choices itself
        Client(app_url[0], verbose=False).predict(RUN, "gguf-q2", api_name="/export_character")
