"""trainkit on the tiny local model: every method and adapter trains a few real steps with
TRL/PEFT/bitsandbytes; the loss is logged, the trainable weights moved, and the run
directory describes itself."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT


def _seeds() -> list[dict]:
    return [
        json.loads(line) for line in (ROOT / "datakit/demo/seeds.jsonl").read_text().splitlines()
    ]


@pytest.fixture(scope="module")
def project(tmp_path_factory, tiny_trained):
    """A project dir with a data store holding chat, instruction, preference and unpaired data."""
    from datakit.records import instruction_to_messages
    from datakit.store import DatasetStore

    root = tmp_path_factory.mktemp("project")
    store = DatasetStore(root / "data")
    seeds = _seeds()
    store.write(
        "seeds",
        [{k: s[k] for k in ("instruction", "input", "output")} for s in seeds],
        "instruction",
    )
    store.write("chat", [{"messages": instruction_to_messages(s)} for s in seeds], "chat")
    prefs = []
    for i, s in enumerate(seeds):
        other = seeds[(i + 7) % len(seeds)]["output"]
        prompt = s["instruction"] + (f"\n\n{s['input']}" if s["input"] else "")
        prefs.append({"prompt": prompt, "chosen": s["output"], "rejected": other})
    store.write("prefs", prefs, "preference")
    unpaired = [
        {"prompt": p["prompt"], "completion": p["chosen"], "label": True} for p in prefs[:16]
    ]
    unpaired += [
        {"prompt": p["prompt"], "completion": p["rejected"], "label": False} for p in prefs[16:]
    ]
    store.write("unpaired", unpaired, "unpaired")
    return {"root": root, "model": tiny_trained}


def write_config(project, name: str, stages: list[dict], **train) -> Path:
    cfg = {
        "data_root": str(project["root"] / "data"),
        "runs_root": str(project["root"] / "runs" / name),
        "train": {"base_model": str(project["model"]), "stages": stages, **train},
    }
    path = project["root"] / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


FAST = {"max_steps": 3, "batch_size": 4, "max_length": 256, "logging_steps": 1, "save_steps": 100}


def train(project, name: str, stages: list[dict], **kw):
    from trainkit.stage import run_train

    return run_train(write_config(project, name, stages), quiet=True, **kw)


def stage_trainer(stage, store, method: str | None = None, dataset: str | None = None):
    """The stage's trainer as trainkit builds it (data, model, PEFT config, float32 master
    weights), without training; and the converted data and the tokenizer."""
    from corekit.adapters import load_tokenizer
    from trainkit.data import load_stage_data
    from trainkit.model import load_base
    from trainkit.stage import build_trainer

    tok = load_tokenizer(stage.base_model)
    data = load_stage_data(store, method or stage.method, dataset or stage.dataset, tok, 256)
    return build_trainer(stage, load_base(stage), tok, data.train), data, tok


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


def assert_trained(run_dir: Path, steps: int = 3) -> dict:
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "complete" and info["global_step"] == steps
    losses = [r["loss"] for r in metrics(run_dir) if "loss" in r]
    assert len(losses) == steps and all(math.isfinite(x) for x in losses)
    assert info["weights_delta_l2"] > 0, "the trainable weights did not move"
    assert 0 < info["trainable_parameters"] <= info["total_parameters"]
    assert (run_dir / "curves.png").stat().st_size > 1000
    phases = info["phase_seconds"]  # where the stage's time went (bench/train.py prints it)
    assert {"checks", "data", "load", "trainer", "train", "save", "curves"} <= set(phases)
    assert all(v >= 0 for v in phases.values())
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    final = run_dir / "final"
    assert (final / "tokenizer_config.json").is_file() and (final / "chat_template.jinja").is_file()
    return info


@pytest.mark.numeric
@pytest.mark.parametrize(
    "method,dataset,params",
    [
        ("sft", "chat", {}),
        ("sft", "seeds", {}),  # instruction records, converted to chat
        ("sft", "prefs", {}),  # prompt + chosen as prompt/completion
        ("dpo", "prefs", {"beta": 0.1}),
        ("ipo", "prefs", {}),
        ("kto", "unpaired", {}),
        ("kto", "prefs", {}),  # pairs split into desirable / undesirable rows
        ("orpo", "prefs", {}),
        ("simpo", "prefs", {}),
        ("reward", "prefs", {}),
    ],
)
def test_method_trains(project, method, dataset, params):
    stage = {
        "name": f"{method}-{dataset}",
        "method": method,
        "dataset": dataset,
        "args": FAST,
        "params": params,
    }
    plan, results = train(project, f"m-{method}-{dataset}", [stage])
    assert results[0].status == "trained"
    info = assert_trained(results[0].run_dir)
    assert (
        info["datasets"][0]["ref"] == f"{dataset}@v1" and len(info["datasets"][0]["sha256"]) == 64
    )
    assert info["libraries"]["trl"].startswith("1.16")
    first = metrics(results[0].run_dir)[0]["loss"]
    # The first logged loss is computed before any update, so it is known in closed form.
    # The bounds are far wider than float32 rounding of the log-probabilities and do not
    # depend on kernels: they only tell the right loss from a wrong one.
    if method == "dpo":
        # The policy equals the reference model: the margin is 0, the loss -log sigmoid(0).
        assert first == pytest.approx(math.log(2), abs=0.02)
    if method == "reward":
        # The untrained score head gives chosen and rejected nearly equal rewards (seeded
        # init): within 0.3 of ln 2 means |r_chosen - r_rejected| is below about 0.6.
        assert first == pytest.approx(math.log(2), abs=0.3)
    if method == "ipo":
        # IPO's loss at the start is (0 - 1/(2 beta))^2 = 25 for beta 0.1.
        assert first == pytest.approx(25.0, rel=0.05)
    config = json.loads((results[0].run_dir / "config.json").read_text())
    if method == "simpo":
        assert config["params"] == {"beta": 2.0, "gamma": 0.5}
    if method == "reward":
        from transformers import AutoModelForSequenceClassification

        rm = AutoModelForSequenceClassification.from_pretrained(results[0].run_dir / "final")
        assert rm.config.num_labels == 1


@pytest.mark.parametrize(
    "adapter", ["full", "lora", "dora", "qlora", "ia3", "prompt_tuning", "prefix_tuning"]
)
def test_adapter_trains(project, adapter):
    args = dict(FAST, packing=False) if adapter.endswith("_tuning") else FAST
    stage = {
        "name": adapter,
        "method": "sft",
        "dataset": "chat",
        "adapter": {"type": adapter},
        "args": args,
    }
    if adapter == "lora":
        stage["adapter"].update(r=4, alpha=8, target_modules=["q_proj", "v_proj"])
    plan, results = train(project, f"a-{adapter}", [stage])
    info = assert_trained(results[0].run_dir)
    final = results[0].run_dir / "final"
    if adapter == "full":
        assert (final / "model.safetensors").is_file() and info["trainable_parameters"] == info[
            "total_parameters"
        ]
        assert info["final_kind"] == "model"
    else:
        cfg = json.loads((final / "adapter_config.json").read_text())
        assert info["final_kind"] == "adapter"
        assert info["trainable_parameters"] < info["total_parameters"] / 2
        expected = {
            "lora": "LORA",
            "dora": "LORA",
            "qlora": "LORA",
            "ia3": "IA3",
            "prompt_tuning": "PROMPT_TUNING",
            "prefix_tuning": "PREFIX_TUNING",
        }[adapter]
        assert cfg["peft_type"] == expected
        if adapter == "dora":
            assert cfg["use_dora"] is True
        if adapter == "lora":
            assert sorted(cfg["target_modules"]) == ["q_proj", "v_proj"] and cfg["r"] == 4
    if adapter == "qlora":
        assert json.loads((results[0].run_dir / "config.json").read_text())["quantization"][
            "load_in_4bit"
        ]


def test_qlora_loads_the_base_in_4bit(project):
    from trainkit.config import plan
    from trainkit.model import load_base

    stage = {"name": "q", "method": "sft", "dataset": "chat", "adapter": {"type": "qlora"}}
    st = plan(write_config(project, "q4", [stage])).stages[0]
    import bitsandbytes as bnb

    model = load_base(st)
    n4 = sum(isinstance(m, bnb.nn.Linear4bit) for m in model.modules())
    assert n4 == 14  # 2 layers x (4 attention + 3 MLP projections)
    q = model.model.layers[0].self_attn.q_proj.weight.quant_state
    assert q.quant_type == "nf4" and q.nested  # NF4 with double quantisation


def test_chained_sft_then_dpo_skips_and_retrains(project):
    stages = [
        {"name": "sft", "method": "sft", "dataset": "chat", "args": FAST},
        {"name": "dpo", "method": "dpo", "from": "sft", "dataset": "prefs", "args": FAST},
        {"name": "solo", "method": "sft", "dataset": "seeds", "args": dict(FAST, max_steps=1)},
    ]
    plan, results = train(project, "chain", stages)
    assert [r.status for r in results] == ["trained"] * 3
    dpo = assert_trained(results[1].run_dir)
    # DPO started from the SFT adapter merged into the base.
    assert dpo["base_model"] == str(results[0].run_dir / "final")
    merged = results[1].run_dir / "merged-start" / "model.safetensors"
    assert merged.is_file()
    # An unchanged re-run skips every stage.
    plan, again = train(project, "chain", stages)
    assert [r.status for r in again] == ["skipped"] * 3
    from corekit.errors import ToolkitError

    # A changed stage config in an existing run dir is refused unless forced.
    stages[0]["args"] = dict(FAST, learning_rate=1e-3)
    with pytest.raises(ToolkitError, match="holds a run of another config") as e:
        train(project, "chain", stages)
    assert "differs in args.learning_rate 0.0002 -> 0.001" in str(e.value)
    before = merged.read_bytes()
    plan, forced = train(project, "chain", stages, only=["sft"], force=True)
    assert [r.status for r in forced] == ["trained"]
    # The SFT stage was retrained: the DPO stage below it is out of date and trains again,
    # from the new SFT policy; the stage that does not depend on it is still skipped.
    plan, after = train(project, "chain", stages)
    assert [r.status for r in after] == ["skipped", "trained", "skipped"]
    sft_run = json.loads((results[0].run_dir / "run.json").read_text())
    dpo_run = json.loads((results[1].run_dir / "run.json").read_text())
    assert dpo_run["upstream"]["from"]["config_hash"] == sft_run["config_hash"]
    assert merged.read_bytes() != before
    plan, again = train(project, "chain", stages)
    assert [r.status for r in again] == ["skipped"] * 3
    stages[1]["params"] = {"beta": 0.2}
    with pytest.raises(ToolkitError, match="holds a run of another config"):
        train(project, "chain", stages)
    plan, forced = train(project, "chain", stages, only=["dpo"], force=True)
    assert [r.status for r in forced] == ["trained"]


@pytest.mark.parametrize("algorithm", ["grpo", "rloo"])
def test_rlhf_sft_reward_rl(project, algorithm):
    stages = [
        {"name": "sft", "method": "sft", "dataset": "chat", "args": FAST},
        {"name": "rm", "method": "reward", "dataset": "prefs", "args": FAST},
        {
            "name": "rl",
            "method": "rl",
            "from": "sft",
            "dataset": "seeds",
            # An eval batch of 5 is not whole groups of 2 (TRL refuses it unless rounded);
            # max_length 38 leaves 30 tokens for a prompt: some seed prompts are longer.
            "eval_split": 0.25,
            "args": dict(FAST, max_steps=2, batch_size=5, eval_steps=1, max_length=38),
            "params": {
                "algorithm": algorithm,
                "reward_model": "rm",
                "num_generations": 2,
                "max_completion_length": 8,
            },
        },
    ]
    plan, results = train(project, f"rlhf-{algorithm}", stages)
    assert [r.status for r in results] == ["trained"] * 3
    # The reward model is saved merged (a plain classifier the RL stage can load).
    assert (results[1].run_dir / "final" / "model.safetensors").is_file()
    info = json.loads((results[2].run_dir / "run.json").read_text())
    assert info["status"] == "complete" and info["weights_delta_l2"] > 0
    rows = metrics(results[2].run_dir)
    assert any("reward" in r for r in rows), rows[0].keys()
    assert any("eval_reward" in r for r in rows)
    stats = info["data_stats"]
    assert 0 < stats["prompts_over_budget"] < 32
    assert stats["train_rows"] + stats["eval_rows"] + stats["prompts_over_budget"] == 32


def test_early_stopping_and_eval_split(project):
    stage = {
        "name": "es",
        "method": "sft",
        "dataset": "chat",
        "eval_split": 0.25,
        "early_stopping": {"patience": 1, "threshold": 10.0},  # no step can improve by 10
        "args": dict(FAST, max_steps=30, eval_steps=1, learning_rate=1e-3),
    }
    plan, results = train(project, "es", [stage])
    info = json.loads((results[0].run_dir / "run.json").read_text())
    assert info["data_stats"]["eval_rows"] == 8 and info["data_stats"]["train_rows"] == 24
    # Patience 1: the second evaluation without a 10-point gain stops the run.
    assert info["global_step"] == 2
    assert any("eval_loss" in r for r in metrics(results[0].run_dir))


@pytest.mark.numeric
@pytest.mark.parametrize("forced_bf16_kernel", [False, True])
def test_qlora_keeps_its_gradients_after_an_evaluation(project, monkeypatch, forced_bf16_kernel):
    """An evaluation between training steps must not change training. On CPUs with
    AVX-512 BF16, bitsandbytes repacks 4-bit weights in place for a kernel without autograd
    during an eval forward; unguarded, the runs below logged grad norms about half as large
    after the first eval. Elsewhere bitsandbytes never repacks; forcing its CPU check to
    say yes puts every machine on the repacking path, where the guard must hold as well."""
    if forced_bf16_kernel:
        import bitsandbytes.nn.modules as bnb_modules

        monkeypatch.setattr(bnb_modules, "has_avx512bf16", lambda: True)
    runs = {}
    for name, extra in (("plain", {}), ("evaluated", {"eval_dataset": "seeds"})):
        stage = {
            "name": name,
            "method": "sft",
            "dataset": "chat",
            "adapter": {"type": "qlora", "r": 8, "alpha": 16, "dropout": 0.0},
            "args": dict(FAST, max_steps=3, eval_steps=1, learning_rate=1e-3),
            **extra,
        }
        plan, results = train(project, f"qlora-{name}-{forced_bf16_kernel}", [stage])
        rows = metrics(results[0].run_dir)
        runs[name] = [r["grad_norm"] for r in rows if "grad_norm" in r]
        if extra:
            assert sum("eval_loss" in r for r in rows) >= 2  # evaluated before steps 2 and 3
    assert len(runs["plain"]) == 3
    # The same arithmetic in both runs (no RNG is drawn by evaluation): equal up to float32
    # rounding of the norms.
    assert runs["evaluated"] == pytest.approx(runs["plain"], rel=1e-5)


@pytest.mark.parametrize("batch_size", [2, 4])
def test_kto_kl_pairs_never_share_a_prompt(project, batch_size):
    """KTO on preference pairs: the mismatched (prompt, completion) pairs TRL builds for the
    KL term come from other prompts, in the dataset the trainer really holds."""
    from datakit.store import DatasetStore
    from trainkit.config import plan
    from trainkit.methods.kto import prompt_key, same_prompt_kl_pairs

    stage_cfg = {
        "name": "kto",
        "method": "kto",
        "dataset": "prefs",
        "args": dict(FAST, batch_size=batch_size),
    }
    stage = plan(write_config(project, f"kto-kl-{batch_size}", [stage_cfg])).stages[0]
    trainer, data, tok = stage_trainer(stage, DatasetStore(project["root"] / "data"))
    # As converted, each pair's rows are adjacent: all (batch 2) or half (batch 4) of the KL
    # pairs would share their prompt.
    before = same_prompt_kl_pairs([prompt_key(r) for r in data.train], batch_size)
    assert before == len(data.train) * 2 // batch_size
    ds = trainer.train_dataset
    assert len(ds) == len(data.train) and "KL_completion_ids" in ds.column_names
    same = 0
    for start in range(0, len(ds), batch_size):
        rows = ds[start : start + batch_size]
        n = len(rows["prompt_ids"])
        for j in range(n):
            prev = (j - 1) % n
            assert rows["KL_completion_ids"][j] == rows["completion_ids"][prev]  # TRL's rotation
            same += rows["prompt_ids"][j] == rows["prompt_ids"][prev]
    assert same == 0


def _probe_loss(model, tok, messages) -> float:
    import torch

    ids = tok.apply_chat_template(messages, return_tensors="pt", return_dict=True)["input_ids"]
    model.eval()
    with torch.no_grad():
        return float(model(input_ids=ids, labels=ids).loss)


@pytest.mark.numeric
def test_a_qlora_chain_starts_from_and_refers_to_the_first_stage(project):
    """QLoRA SFT, then QLoRA DPO from it: the DPO policy starts as the SFT policy and its
    reference model is the SFT policy (merging and quantising to 4-bit again snapped the SFT
    update back to the base: the loss on a probe came out at the base's)."""
    from peft import PeftModel
    from trl.trainer.utils import use_adapter

    from corekit.adapters import load_tokenizer
    from datakit.store import DatasetStore
    from trainkit.model import load_base

    qlora = {"type": "qlora", "r": 8, "alpha": 16, "dropout": 0.0}
    stages = [
        {
            "name": "sft",
            "method": "sft",
            "dataset": "chat",
            "adapter": qlora,
            "args": dict(FAST, learning_rate=1e-2),  # three steps that move the probe ~0.01
        },
        {
            "name": "dpo",
            "method": "dpo",
            "from": "sft",
            "dataset": "prefs",
            "adapter": qlora,
            "args": FAST,
        },
    ]
    p, results = train(project, "qlora-chain", stages, only=["sft"])
    sft, dpo = p.stages
    tok = load_tokenizer(sft.base_model)
    chats = [
        json.loads(line)["messages"]
        for line in next((project["root"] / "data" / "chat").glob("v*/records.jsonl"))
        .read_text()
        .splitlines()
    ]
    # A question with another seed's answer: the tiny model has learnt the seeds by heart, and
    # at that minimum a few SFT steps barely move the loss; off it, they move it at first order.
    probe = chats[0][:-1] + chats[7][-1:]
    base4 = load_base(sft)
    base_loss = _probe_loss(base4, tok, probe)
    sft_loss = _probe_loss(PeftModel.from_pretrained(base4, str(dpo.base_model)), tok, probe)
    assert abs(sft_loss - base_loss) > 1e-3, (sft_loss, base_loss)  # SFT moved the policy

    start = load_base(dpo)
    assert _probe_loss(start, tok, probe) == pytest.approx(sft_loss, abs=1e-5)
    trainer, _, _ = stage_trainer(dpo, DatasetStore(project["root"] / "data"))
    with use_adapter(trainer.model, "ref"):
        assert _probe_loss(trainer.model, tok, probe) == pytest.approx(sft_loss, abs=1e-5)
    del trainer, start

    p, results = train(project, "qlora-chain", stages)
    assert [r.status for r in results] == ["skipped", "trained"]
    info = assert_trained(results[1].run_dir)
    assert info["continues_adapter"] == dpo.base_model
    final = results[1].run_dir / "final"
    assert (final / "adapter_model.safetensors").is_file() and not (final / "ref").exists()
    # The DPO policy moved away from the SFT policy it started from.
    moved = _probe_loss(PeftModel.from_pretrained(load_base(sft), str(final)), tok, probe)
    assert moved != pytest.approx(sft_loss, abs=1e-6)


@pytest.mark.numeric
def test_a_qlora_reward_model_trains_and_its_saved_model_scores_like_the_adapter(project):
    """QLoRA reward model on CPU (TRL casts the trainable score head to bf16 while the hidden
    states are float32: it crashed); its saved model is the adapter folded into the
    dequantised 4-bit base with the trained score head, scoring as the adapter did (merging
    into the 4-bit weights would quantise the LoRA update away)."""
    import torch
    from transformers import AutoModelForSequenceClassification

    from datakit.store import DatasetStore
    from trainkit.config import plan
    from trainkit.stage import save_final

    cfg = {
        "name": "rm",
        "method": "reward",
        "dataset": "prefs",
        "adapter": {"type": "qlora", "r": 8, "alpha": 16, "dropout": 0.0},
        "args": dict(FAST, learning_rate=1e-3),
    }
    stage = plan(write_config(project, "qlora-rm", [cfg])).stages[0]
    trainer, data, tok = stage_trainer(stage, DatasetStore(project["root"] / "data"))
    head = trainer.model.base_model.model.score.modules_to_save["default"].weight.detach().clone()
    trainer.train()
    assert not torch.equal(
        head, trainer.model.base_model.model.score.modules_to_save["default"].weight
    )
    texts = ["What is the capital of France? Paris.", "Write a haiku. Leaves fall, softly."]
    batch = tok(texts, return_tensors="pt", padding=True)
    trainer.model.eval()
    with torch.no_grad():
        trained = trainer.model(**batch).logits[:, 0].float()
    save_final(trainer, stage, tok)
    final = stage.run_dir / "final"
    saved = AutoModelForSequenceClassification.from_pretrained(final, num_labels=1).eval()
    assert getattr(saved.config, "quantization_config", None) is None
    assert all(p.dtype == torch.float32 for p in saved.parameters())
    with torch.no_grad():
        scores = saved(**batch).logits[:, 0]
    torch.testing.assert_close(scores, trained, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("pure_bf16", [False, True])
def test_full_fine_tuning_keeps_float32_master_weights(project, pure_bf16):
    """One full fine-tuning step at DPO's default learning rate (5e-7) moves the weights:
    float32 master weights. With pure_bf16 the weights are bf16 and that step is below
    their resolution (which is why it is not the default)."""
    import torch
    from safetensors.torch import load_file

    stage = {
        "name": "full",
        "method": "sft",
        "dataset": "chat",
        "adapter": {"type": "full"},
        "args": dict(
            FAST,
            max_steps=1,
            learning_rate=5e-7,
            warmup_ratio=0.0,
            lr_scheduler="constant",
            pure_bf16=pure_bf16,
        ),
    }
    p, results = train(project, f"full-{pure_bf16}", [stage])
    key = "model.layers.0.self_attn.q_proj.weight"
    before = load_file(project["model"] / "model.safetensors")[key].float()
    after = load_file(results[0].run_dir / "final" / "model.safetensors")[key]
    assert after.dtype == (torch.bfloat16 if pure_bf16 else torch.float32)
    changed = float((after != before.to(after.dtype)).float().mean())
    if pure_bf16:
        assert changed < 0.2, changed
    else:
        assert changed > 0.9, changed


def test_stage_args_reach_the_trainer(project, monkeypatch):
    """Optimizer, weight decay, clipping, NEFTune, report_to, attention kernel, a chat
    template override and weighted datasets, each as TRL and transformers receive them."""
    import trainkit.methods as methods

    template = (
        "{%- for m in messages %}{{- '[' + m['role'] + '] ' + m['content'] + '<|end|>' }}"
        "{%- endfor %}{%- if add_generation_prompt %}{{- '[assistant] ' }}{%- endif %}"
    )
    (project["root"] / "plain.jinja").write_text(template)
    seen = {}
    original = methods.builder

    def builder(method):
        build = original(method)

        def wrapped(stage, common, inputs):
            trainer = build(stage, common, inputs)
            seen.update(
                args=trainer.args,
                model=trainer.model,
                tok=trainer.processing_class,
                rows=trainer.train_dataset,
            )
            return trainer

        return wrapped

    monkeypatch.setattr(methods, "builder", builder)
    args = dict(
        FAST,
        max_steps=1,
        optimizer="adafactor",
        weight_decay=0.1,
        max_grad_norm=0.5,
        neftune_noise_alpha=5.0,
        report_to=[],
        attn_implementation="eager",
        chat_template="plain.jinja",
        packing=False,
    )
    stage = {
        "name": "args",
        "method": "sft",
        "args": args,
        "dataset": [{"name": "chat", "weight": 0.5}, {"name": "seeds", "weight": 1.5}],
    }
    cfg = write_config(project, "args", [stage])
    from trainkit.stage import run_train

    p, results = run_train(cfg, quiet=True)
    a = seen["args"]
    assert (a.optim, a.weight_decay, a.max_grad_norm, a.neftune_noise_alpha) == (
        "adafactor",
        0.1,
        0.5,
        5.0,
    )
    assert a.report_to == [] or a.report_to == "none"
    assert seen["model"].config._attn_implementation == "eager"
    assert seen["tok"].chat_template == template
    assert "[user] " in seen["tok"].decode(seen["rows"][0]["input_ids"])
    run_dir = results[0].run_dir
    assert not (run_dir / "tensorboard").exists()  # report_to: [] asks for no events
    assert (run_dir / "final" / "chat_template.jinja").read_text() == template
    info = json.loads((run_dir / "run.json").read_text())
    # 32 chat records at weight 0.5 and 32 instruction records at 1.5: 16 + 48 rows.
    assert [(d["weight"], d["rows"]) for d in info["datasets"]] == [(0.5, 16), (1.5, 48)]
    assert info["data_stats"]["train_rows"] == 64
