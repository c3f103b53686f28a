"""`trainkit merge`: LoRA and QLoRA adapters folded into their base give the adapter's outputs;
the merged model loads in vLLM (CPU), and vLLM also serves the adapter unmerged."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from tests.integration.test_train import FAST, project, train  # noqa: F401

PROMPTS = [
    [{"role": "user", "content": "Give three tips for keeping a sourdough starter healthy."}],
    [{"role": "user", "content": "Convert the temperature to Fahrenheit.\n\n25 degrees Celsius"}],
]


def _logits(model, tok):
    ids = tok.apply_chat_template(
        PROMPTS[0], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    with torch.no_grad():
        return model(**ids).logits


@pytest.fixture(scope="module")
def trained(project):  # noqa: F811
    args = dict(FAST, max_steps=8, learning_rate=2e-3)
    stages = [
        {
            "name": "lora",
            "method": "sft",
            "dataset": "chat",
            "adapter": {"type": "lora", "r": 8, "alpha": 16},
            "args": args,
        },
        {
            "name": "qlora",
            "method": "sft",
            "dataset": "chat",
            "adapter": {"type": "qlora", "r": 8, "alpha": 16},
            "args": args,
        },
        {
            "name": "prompt",
            "method": "sft",
            "dataset": "chat",
            "adapter": {"type": "prompt_tuning"},
            "args": dict(args, packing=False),
        },
        {  # a `from:` stage after QLoRA starts from the QLoRA adapter merged into its base
            "name": "after_qlora",
            "method": "sft",
            "from": "qlora",
            "dataset": "chat",
            "adapter": {"type": "lora", "r": 8, "alpha": 16},
            "args": dict(FAST, max_steps=1),
        },
    ]
    plan, results = train(project, "merge", stages)
    return {r.name: r.run_dir for r in results}


def test_lora_merge_equals_the_adapter(trained, tmp_path, project):  # noqa: F811
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trainkit.merge import merge

    info = merge(trained["lora"], tmp_path / "merged")
    assert info["peft_type"] == "LORA" and not info["dequantized_4bit_base"]
    tok = AutoTokenizer.from_pretrained(tmp_path / "merged")
    assert tok.chat_template  # the chat template travels with the model
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    peft = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(project["model"]), trained["lora"] / "final"
    )
    base = AutoModelForCausalLM.from_pretrained(project["model"])
    a, b, c = _logits(merged, tok), _logits(peft, tok), _logits(base, tok)
    assert (a - b).abs().max() < 1e-4
    assert (a - c).abs().max() > 1e-3  # and the adapter did change the model


def _adapter_on_4bit_base(adapter_dir):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    from trainkit.model import adapter_base

    q = AutoModelForCausalLM.from_pretrained(
        adapter_base(adapter_dir),
        quantization_config=BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.float32,
        ),
        device_map="cpu",
    )
    return PeftModel.from_pretrained(q, adapter_dir)


# The adapter on the 4-bit base and the merged dequantised model agree up to this (LoRA
# params trained by TRL on a quantised base; the 4-bit matmul path rounds differently).
QLORA_LOGIT_TOLERANCE = 0.05


@pytest.mark.parametrize("entry", ["run_dir", "bare_adapter_dir"])
def test_qlora_merge_by_either_entry_point_uses_the_dequantised_base(
    trained,
    tmp_path,
    project,  # noqa: F811
    entry,
):
    """`trainkit merge RUN` and `trainkit merge ADAPTER_DIR` (a copy of final/ elsewhere,
    with no run config around it) give the same model: the QLoRA adapter on its 4-bit base,
    not on the full-precision one."""
    import shutil

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trainkit.merge import merge

    src = trained["qlora"]
    if entry == "bare_adapter_dir":
        src = tmp_path / "adapter-copy"
        shutil.copytree(trained["qlora"] / "final", src)
    info = merge(src, tmp_path / "qmerged")
    assert info["dequantized_4bit_base"]
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "qmerged")
    assert getattr(merged.config, "quantization_config", None) is None
    tok = AutoTokenizer.from_pretrained(tmp_path / "qmerged")
    peft = _adapter_on_4bit_base(trained["qlora"] / "final")
    diff = (_logits(merged, tok) - _logits(peft, tok)).abs().max()
    assert diff < QLORA_LOGIT_TOLERANCE, diff
    # ... and not the adapter merged into the full-precision base (what the bug gave).
    from peft import PeftModel

    full = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(project["model"]), trained["qlora"] / "final"
    ).merge_and_unload()
    assert (_logits(merged, tok) - _logits(full, tok)).abs().max() > diff


def test_from_stage_after_qlora_starts_from_the_dequantised_merge(trained, tmp_path):
    from safetensors.torch import load_file

    from trainkit.merge import merge

    merge(trained["qlora"], tmp_path / "qmerged")
    start = load_file(trained["after_qlora"] / "merged-start" / "model.safetensors")
    want = load_file(tmp_path / "qmerged" / "model.safetensors")
    assert start.keys() == want.keys()
    assert max((start[k].float() - want[k].float()).abs().max().item() for k in want) < 1e-6


def test_merge_errors(trained, tmp_path, cli):
    from trainkit.cli import cli as trainkit

    code, out = cli(trainkit, "merge", str(trained["prompt"]), "-o", str(tmp_path / "x"))
    assert code == 1 and "PROMPT_TUNING adapters add virtual tokens and cannot be merged" in out
    code, out = cli(trainkit, "merge", str(tmp_path), "-o", str(tmp_path / "x"))
    assert code == 1 and "neither a training run (run.json) nor an adapter directory" in out
    code, out = cli(trainkit, "merge", str(trained["lora"]))
    assert code == 2 and "Missing option '-o'" in out


VLLM_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from datakit.engines import EngineSpec, Request, build_engine

    if __name__ == "__main__":
        prompts = json.loads(sys.argv[5])
        reqs = [Request.chat(p, temperature=0.0, max_tokens=12) for p in prompts]
        out = {}
        for name, spec in (
            ("merged", EngineSpec("vllm", sys.argv[1], {"max_model_len": 256})),
            ("lora", EngineSpec("vllm", sys.argv[2], {"max_model_len": 256, "lora_adapter": sys.argv[3]})),
            ("qmerged", EngineSpec("vllm", sys.argv[4], {"max_model_len": 256})),
        ):
            eng = build_engine(spec, None, quiet=True)
            out[name] = [r.completions[0].text for r in eng.generate(reqs)]
            eng.close()
        print("RESULT " + json.dumps(out))
    """
)


def test_merged_model_and_unmerged_adapter_in_vllm(trained, tmp_path, project):  # noqa: F811
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trainkit.merge import merge

    merge(trained["lora"], tmp_path / "merged")
    merge(trained["qlora"] / "final", tmp_path / "qmerged")  # the bare adapter dir
    script = tmp_path / "serve.py"
    script.write_text(VLLM_SCRIPT)
    proc = subprocess.run(
        [
            sys.executable,
            str(script),
            str(tmp_path / "merged"),
            str(project["model"]),
            str(trained["lora"] / "final"),
            str(tmp_path / "qmerged"),
            json.dumps(PROMPTS),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
        env={**os.environ, "VLLM_LOGGING_LEVEL": "ERROR"},
    )
    lines = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-4000:]
    got = json.loads(lines[0][7:])

    # Greedy decoding with transformers on the merged weights gives the same text.
    def greedy(model_dir):
        tok = AutoTokenizer.from_pretrained(model_dir)
        model = AutoModelForCausalLM.from_pretrained(model_dir)
        texts = []
        for p in PROMPTS:
            ids = tok.apply_chat_template(
                p, add_generation_prompt=True, return_tensors="pt", return_dict=True
            )
            gen = model.generate(**ids, max_new_tokens=12, do_sample=False)
            texts.append(tok.decode(gen[0, ids["input_ids"].shape[1] :], skip_special_tokens=True))
        return texts

    expected = greedy(tmp_path / "merged")
    assert got["merged"] == expected
    assert got["lora"] == expected
    assert got["qmerged"] == greedy(tmp_path / "qmerged")  # merged QLoRA loads and generates
