"""The real small instruct model, SmolLM2-135M-Instruct, built offline from its registry
wheel: it loads and answers in transformers and vLLM (CPU), trains with TRL + PEFT, loads in
4-bit with bitsandbytes, and its provenance is recorded. Deselect with -m 'not smollm2'."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import SMOLLM2

pytestmark = pytest.mark.smollm2

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def test_built_from_the_wheel_with_its_provenance(smollm2):
    prov = json.loads((smollm2 / "model_source.json").read_text())
    assert prov["wheel_sha256"] == SMOLLM2["sha256"]
    assert prov["source"] == "gguf_wheel" and prov["file"] == SMOLLM2["file"]
    assert 130e6 < prov["parameters"] < 140e6 and prov["chat_template"]
    names = {p.name for p in smollm2.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= names
    assert not any(n.endswith(".gguf") for n in names)  # a plain model directory


@pytest.mark.numeric
def test_answers_in_transformers(smollm2):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smollm2)
    model = AutoModelForCausalLM.from_pretrained(smollm2, dtype="float32")
    enc = tok.apply_chat_template(
        QUESTION, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    out = model.generate(**enc, max_new_tokens=16, do_sample=False)
    answer = tok.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "Paris" in answer, answer


VLLM = textwrap.dedent(
    """
    import json, sys
    from corekit.engines import EngineSpec, Request, build_engine

    if __name__ == "__main__":
        eng = build_engine(EngineSpec("vllm", sys.argv[1], {"max_model_len": 512}), None, quiet=True)
        out = eng.generate([Request.chat(json.loads(sys.argv[2]), temperature=0.0, max_tokens=16)])
        eng.close()
        print("RESULT " + json.dumps(out[0].text))
    """
)


def test_answers_in_vllm_cpu(smollm2, tmp_path):
    script = tmp_path / "vllm_smol.py"
    script.write_text(VLLM)
    proc = subprocess.run(
        [sys.executable, str(script), str(smollm2), json.dumps(QUESTION)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
        env={**os.environ, "VLLM_LOGGING_LEVEL": "ERROR"},
    )
    lines = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    assert "Paris" in json.loads(lines[0][7:])


def test_loads_in_4bit_and_trains_a_lora_adapter(smollm2):
    import torch
    from bitsandbytes.nn import Linear4bit
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    tok = AutoTokenizer.from_pretrained(smollm2)
    q = AutoModelForCausalLM.from_pretrained(
        smollm2,
        quantization_config=BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.float32,
        ),
        device_map="cpu",
    )
    assert any(isinstance(m, Linear4bit) for m in q.modules())
    q = prepare_model_for_kbit_training(q, use_gradient_checkpointing=False)
    model = get_peft_model(q, LoraConfig(r=4, target_modules="all-linear", task_type="CAUSAL_LM"))
    batch = tok(["The capital of France is Paris."], return_tensors="pt")
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    losses = []
    for _ in range(3):
        loss = model(**batch, labels=batch["input_ids"]).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
