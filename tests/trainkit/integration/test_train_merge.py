"""`trainkit merge`: LoRA and QLoRA adapters folded into their base give the adapter's outputs;
the merged model loads in vLLM (CPU), and vLLM also serves the adapter unmerged."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from tests.trainkit.integration.test_train import FAST, project, train  # noqa: F401

ROOT = Path(__file__).resolve().parents[3]
UNSEEN = ["Name a colour.", "Write a haiku about rain.", "What is 2+2?", "List three fruits."]
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
        {  # a `from:` stage after LoRA: its adapter and the one under it compose into one
            "name": "after_lora",
            "method": "sft",
            "from": "lora",
            "dataset": "chat",
            "adapter": {"type": "lora", "r": 4, "alpha": 16},
            "args": dict(FAST, max_steps=2, learning_rate=5e-3),
        },
    ]
    plan, results = train(project, "merge", stages)
    return {r.name: r.run_dir for r in results}


@pytest.mark.numeric
def test_lora_merge_equals_the_adapter(trained, tmp_path, project):  # noqa: F811
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from corekit.adapters import merge

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
    # W + s*B@A in one matmul or x@W + s*(x@A)@B in three: the same sum in float32, rounded
    # in another order (logits of a few units, so 1e-4 is ~1e-5 relative).
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    # ... and the adapter did change the model, by far more than that rounding.
    assert (a - c).abs().max() > 1e-3


def _4bit_base(adapter_dir, generic_kernel: bool = False):
    """The adapter's base loaded in 4-bit as it trained. ``generic_kernel`` keeps every
    4-bit layer on bitsandbytes' dequantise-then-matmul path: on CPUs with AVX-512 BF16 an
    eval forward otherwise repacks the weights for a BF16 kernel, whose rounding differs."""
    from bitsandbytes.nn import Linear4bit
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    from corekit.adapters import adapter_base
    from trainkit.model import keep_4bit_layers_differentiable

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
    if generic_kernel:
        # trainkit's own switch, on an attribute bitsandbytes must still have (if it renames
        # it, setting the old name would silently change nothing)
        layers = [m for m in q.modules() if isinstance(m, Linear4bit)]
        assert layers and all(hasattr(m, "support_avx512bf16_for_cpu") for m in layers)
        assert keep_4bit_layers_differentiable(q) == len(layers)
    return q


def _adapter_on_4bit_base(adapter_dir, generic_kernel: bool = False):
    from peft import PeftModel

    return PeftModel.from_pretrained(_4bit_base(adapter_dir, generic_kernel), adapter_dir)


def _dequantised_plus_lora_delta(adapter_dir) -> dict[str, torch.Tensor]:
    """What a QLoRA merge must give, computed directly: each 4-bit weight dequantised by
    bitsandbytes, plus scale * B @ A from the adapter file."""
    import bitsandbytes.functional as bnbf
    from bitsandbytes.nn import Linear4bit
    from safetensors.torch import load_file

    cfg = json.loads((adapter_dir / "adapter_config.json").read_text())
    scale = cfg["lora_alpha"] / cfg["r"]
    lora = load_file(adapter_dir / "adapter_model.safetensors")
    q = _4bit_base(adapter_dir)
    want = {}
    for name, m in q.named_modules():
        if not isinstance(m, Linear4bit):
            continue
        w = bnbf.dequantize_4bit(m.weight.data, m.weight.quant_state).float()
        key = f"base_model.model.{name}.lora_{{}}.weight"
        if key.format("A") in lora:
            w = w + scale * (lora[key.format("B")].float() @ lora[key.format("A")].float())
        want[f"{name}.weight"] = w
    return want


@pytest.mark.numeric
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

    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from corekit.adapters import merge

    src = trained["qlora"]
    if entry == "bare_adapter_dir":
        src = tmp_path / "adapter-copy"
        shutil.copytree(trained["qlora"] / "final", src)
    info = merge(src, tmp_path / "qmerged")
    assert info["dequantized_4bit_base"]
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "qmerged", dtype=torch.float32)
    assert getattr(merged.config, "quantization_config", None) is None

    # The weights: the dequantised 4-bit weights plus the LoRA delta, up to float32 rounding.
    want = _dequantised_plus_lora_delta(trained["qlora"] / "final")
    got = dict(merged.named_parameters())
    assert want.keys() <= got.keys() and len(want) >= 7 * merged.config.num_hidden_layers
    for k, w in want.items():
        torch.testing.assert_close(got[k].detach(), w, msg=k)  # float32's rtol/atol

    # The outputs: the same as the adapter on its 4-bit base run through the generic
    # (dequantise, float32 matmul) path, up to float32 rounding ...
    tok = AutoTokenizer.from_pretrained(tmp_path / "qmerged")
    out = _logits(merged, tok)
    generic = _logits(_adapter_on_4bit_base(trained["qlora"] / "final", generic_kernel=True), tok)
    torch.testing.assert_close(out, generic, rtol=1e-4, atol=1e-4)
    # ... and, whatever kernel bitsandbytes picks on this CPU, far closer to the adapter on
    # the 4-bit base than to the adapter merged into the full-precision base (the bug).
    on_4bit = (out - _logits(_adapter_on_4bit_base(trained["qlora"] / "final"), tok)).abs()
    full = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(project["model"]), trained["qlora"] / "final"
    ).merge_and_unload()
    on_full = (out - _logits(full, tok)).abs()
    assert on_4bit.mean() * 3 < on_full.mean(), (on_4bit.mean(), on_full.mean())


@pytest.mark.numeric
def test_from_stage_after_qlora_starts_from_the_dequantised_merge(trained, tmp_path):
    from safetensors.torch import load_file

    from corekit.adapters import merge

    merge(trained["qlora"], tmp_path / "qmerged")
    start = load_file(trained["after_qlora"] / "merged-start" / "model.safetensors")
    want = load_file(tmp_path / "qmerged" / "model.safetensors")
    assert start.keys() == want.keys()
    # The same merge computed twice on one machine: equal up to float32 rounding.
    for k in want:
        torch.testing.assert_close(start[k].float(), want[k].float(), msg=k)


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
    from corekit.engines import EngineSpec, Request, build_engine

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

    from corekit.adapters import merge

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


@pytest.mark.numeric
def test_a_chain_of_loras_composes_into_one_lora_on_the_base(trained, tmp_path, project):  # noqa: F811
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from corekit.adapters import compose_lora, lora_chain, merge

    chain = lora_chain(trained["after_lora"] / "final")
    assert chain == (
        str(project["model"]),
        [trained["lora"] / "final", trained["after_lora"] / "final"],
    )
    # A chain through a 4-bit stage is not the base plus low-rank deltas: merged instead.
    assert lora_chain(trained["after_qlora"] / "final") is None
    info = compose_lora(chain[1], tmp_path / "composed")
    assert info["rank"] == 8 + 4
    merge(trained["after_lora"], tmp_path / "merged")  # into its merged-start, as evalkit did
    tok = AutoTokenizer.from_pretrained(tmp_path / "merged")
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    composed = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(project["model"]), tmp_path / "composed"
    )
    first_only = AutoModelForCausalLM.from_pretrained(trained["after_lora"] / "merged-start")
    a, b, c = _logits(merged, tok), _logits(composed, tok), _logits(first_only, tok)
    torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4)  # float32 rounding, as above
    assert (a - c).abs().max() > 1e-3  # the second stage's adapter counts in the composition


SWAP_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from corekit.engines import EngineSpec, Request
    from corekit.engines.pool import EnginePool

    if __name__ == "__main__":
        base, merged, composed, cache = sys.argv[1:5]
        prompts = json.loads(sys.argv[5])
        reqs = [Request.chat(p, temperature=0.0, max_tokens=12) for p in prompts]
        out = {}
        opts = {"max_model_len": 256}
        pool = EnginePool(Path(cache), quiet=True)
        first = pool.get(EngineSpec("vllm", base, opts), swap=True)
        out["base"] = [r.completions[0].text for r in first.generate(reqs)]
        second = pool.get(EngineSpec("vllm", merged, opts), swap=True)  # weights in place
        out["merged"] = [r.completions[0].text for r in second.generate(reqs)]
        out["one_engine"] = second is first and len(pool._engines) == 1
        pool.close()
        fresh = pool.get(EngineSpec("vllm", merged, opts))  # a start of its own
        out["merged_fresh"] = [r.completions[0].text for r in fresh.generate(reqs)]
        pool.close()
        lora = {**opts, "enable_lora": True, "max_lora_rank": 16}
        first = pool.get(EngineSpec("vllm", base, lora), swap=True)
        out["base_lora_engine"] = [r.completions[0].text for r in first.generate(reqs)]
        second = pool.get(EngineSpec("vllm", base, {**lora, "lora_adapter": composed}), swap=True)
        out["composed"] = [r.completions[0].text for r in second.generate(reqs)]
        out["one_lora_engine"] = second is first and len(pool._engines) == 1
        third = pool.get(EngineSpec("vllm", base, lora), swap=True)  # back to the bare base
        out["base_again"] = [r.completions[0].text for r in third.generate(reqs)]
        pool.close()
        print("RESULT " + json.dumps(out))
    """
)


def test_one_vllm_engine_serves_the_base_and_the_tuned_model(trained, tmp_path, project):  # noqa: F811
    """evalkit's path: the tuned model's merged weights are loaded into the base model's
    running engine, or its adapters, composed into one LoRA, are served per request from
    it; either way the texts are those of the merged model (transformers, greedy)."""
    from corekit.adapters import compose_lora, lora_chain, merge

    merge(trained["after_lora"], tmp_path / "merged")
    compose_lora(lora_chain(trained["after_lora"] / "final")[1], tmp_path / "composed")
    script = tmp_path / "swap.py"
    script.write_text(SWAP_SCRIPT)
    args = [project["model"], tmp_path / "merged", tmp_path / "composed", tmp_path / "cache"]
    # The training prompts (the tiny model answers them confidently: the same text under
    # any kernel) and prompts it never saw (where its stages changed its answers).
    prompts = PROMPTS + [[{"role": "user", "content": q}] for q in UNSEEN]
    proc = subprocess.run(
        [sys.executable, str(script), *map(str, args), json.dumps(prompts)],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
        env={**os.environ, "VLLM_LOGGING_LEVEL": "ERROR"},
    )  # fmt: skip
    lines = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-4000:]
    got = json.loads(lines[0][7:])
    seen = len(PROMPTS)
    assert got["one_engine"] and got["one_lora_engine"]
    # Loaded in place, the merged weights compute what a fresh engine on them computes.
    assert got["merged"] == got["merged_fresh"]
    assert got["merged"] != got["base"]  # so a load that changed nothing fails
    # The composed LoRA served per request: the merged model's answers (the same sums in
    # another order, so compared where the model is confident), and without the adapter
    # the same engine is the base again.
    assert got["composed"][:seen] == got["merged"][:seen]
    assert got["base_lora_engine"][:seen] == got["base"][:seen]
    assert got["base_again"] == got["base_lora_engine"]


def test_evalkit_serves_a_from_chain_as_one_lora_on_the_base_engine(trained, tmp_path, project):  # noqa: F811
    """`eval.adapters: lora`: base and tuned from one vLLM engine, the tuned model's two
    stages composed into one adapter served per request; its answers are the merged
    model's (`adapters: merge`, the default)."""
    import yaml

    rows = [json.loads(x) for x in (ROOT / "datakit/demo/seeds.jsonl").read_text().splitlines()]
    suite = tmp_path / "suite.jsonl"
    suite.write_text(
        "".join(
            json.dumps({"id": f"s{i}", "prompt": r["instruction"], "references": [r["output"]]})
            + "\n"
            for i, r in enumerate(rows)
        )
    )
    preds, infos = {}, {}
    for mode in ("merge", "lora"):
        cfg = {
            "version": 1,
            "data_root": str(tmp_path / "data"),
            "runs_root": str(tmp_path / "runs"),
            "engines": {
                "v": {
                    "backend": "vllm",
                    "model": str(project["model"]),
                    "options": {"max_model_len": 256},
                }
            },  # fmt: skip
            "eval": {
                "engine": "v",
                "adapters": mode,
                "models": {"base": str(project["model"]), "tuned": str(trained["after_lora"])},
                "suites": [
                    {
                        "name": "s",
                        "path": str(suite),
                        "metrics": ["f1"],
                        "max_tokens": 32,
                        "truncated": "score",
                    }
                ],  # fmt: skip
                "out": str(tmp_path / mode),
            },
        }
        (tmp_path / f"{mode}.yaml").write_text(yaml.safe_dump(cfg))
        proc = subprocess.run(
            [str(Path(sys.executable).parent / "evalkit"), "run", str(tmp_path / f"{mode}.yaml"), "-q"],
            capture_output=True, text=True, timeout=600,
            env={**os.environ, "VLLM_LOGGING_LEVEL": "ERROR"},
        )  # fmt: skip
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        for label in ("base", "tuned"):
            lines = (tmp_path / mode / label / "s.predictions.jsonl").read_text().splitlines()
            preds[mode, label] = [json.loads(x)["output"] for x in lines]
            infos[mode, label] = json.loads((tmp_path / mode / label / "report.json").read_text())[
                "model"
            ]
    assert infos["merge", "tuned"]["engine_start"] == "weights swapped in"
    assert infos["lora", "tuned"]["engine_start"] == "adapter per request"
    assert (
        json.loads((Path(infos["lora", "tuned"]["lora"]) / "adapter_config.json").read_text())["r"]
        == 8 + 4
    )  # both stages' adapters
    assert preds["lora", "base"] == preds["merge", "base"]
    assert preds["lora", "tuned"] == preds["merge", "tuned"]
    assert preds["merge", "tuned"] != preds["merge", "base"]
