"""The exported GGUF in real llama.cpp (llama-cpp-python, built from source by `make test-llamacpp`;
not part of `make test`, which ignores this folder)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import random_lora
from training.export import ExportOptions, export_run, merged_model
from training.runs import run_folder

llama_cpp = pytest.importorskip("llama_cpp", reason="make test-llamacpp builds llama-cpp-python")

RUN = "beethoven-run"
QUESTION = "Where were you born?"
NEW_TOKENS = 32


def test_llama_cpp_chats_as_the_character_and_agrees_with_the_merged_model(engine, data_dir, tmp_path):
    random_lora(engine.source, data_dir / "runs" / RUN / "adapter", ("q_proj", "k_proj", "v_proj"), std=0.05)
    (data_dir / "runs" / RUN / "options.json").write_text(json.dumps({"character": "Ludwig van Beethoven"}))
    files = export_run(ExportOptions(run=RUN, format="gguf-q8_0", out=str(tmp_path)))
    system = files["modelfile"].read_text().split('SYSTEM """', 1)[1].split('"""', 1)[0]
    messages = [{"role": "system", "content": system}, {"role": "user", "content": QUESTION}]
    llm = llama_cpp.Llama(model_path=str(files["gguf"]), n_ctx=2048, logits_all=True, verbose=False)

    # A chat through the GGUF's own chat template, as llama.cpp's front ends run it.
    reply = llm.create_chat_completion(messages=messages, temperature=0.0, max_tokens=NEW_TOKENS)
    assert reply["choices"][0]["message"]["content"].strip()

    # llama.cpp reads the character's prompt as the app's tokenizer does...
    text = engine.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    prompt = engine.tokenizer(text, add_special_tokens=False)["input_ids"]
    assert llm.tokenize(text.encode(), add_bos=False, special=True) == prompt

    # ...and predicts the merged model's next token at >= 95 % of the positions of its greedy reply.
    merged, _ = merged_model(run_folder(RUN))
    ids = torch.tensor([prompt])
    sequence = merged.generate(ids, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=False)[0]
    with torch.inference_mode():
        want = merged(sequence[None]).logits[0, len(prompt) - 1:-1].argmax(-1).numpy()
    llm.reset()
    llm.eval(sequence.tolist())
    got = np.asarray(llm.scores[len(prompt) - 1:len(sequence) - 1]).argmax(-1)
    assert (want == got).mean() >= 0.95, f"{(want == got).mean():.1%}"
