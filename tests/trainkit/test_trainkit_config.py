"""The train: section: schema errors with suggestions, cross-stage checks, per-method defaults."""

from __future__ import annotations

import pytest
import yaml

from corekit.errors import ToolkitError
from trainkit.cli import cli
from trainkit.config import plan


def cfg(tmp_path, stages, **train):
    path = tmp_path / "p.yaml"
    path.write_text(
        yaml.safe_dump(
            {"train": {"base_model": str(tmp_path / "model"), "stages": stages, **train}}
        )
    )
    return path


def problems(tmp_path, stages, **train) -> str:
    with pytest.raises(ToolkitError) as e:
        plan(cfg(tmp_path, stages, **train))
    return str(e.value)


def test_defaults_per_method_and_adapter(tmp_path):
    p = plan(
        cfg(
            tmp_path,
            [
                {"name": "a", "method": "sft", "dataset": "d"},
                {"name": "b", "method": "sft", "dataset": "d", "adapter": {"type": "full"}},
                {"name": "c", "method": "dpo", "dataset": "p", "from": "a"},
                {"name": "d", "method": "simpo", "dataset": "p"},
                {
                    "name": "e",
                    "method": "sft",
                    "dataset": "d",
                    "adapter": {"type": "prompt_tuning"},
                },
                {"name": "f", "method": "ipo", "dataset": "p"},
            ],
        )
    )
    a, b, c, d, e, f = p.stages
    assert a.adapter == {
        "type": "lora",
        "r": 16,
        "alpha": 32,
        "dropout": 0.05,
        "target_modules": "all-linear",
        "num_virtual_tokens": 16,
    }
    assert a.args["learning_rate"] == 2e-4 and b.args["learning_rate"] == 2e-5
    assert a.args["packing"] is True and e.args["packing"] is False and c.args["packing"] is False
    assert c.params == {"beta": 0.1, "label_smoothing": 0.0}
    assert c.base_model == str(a.run_dir / "final") and c.from_stage == "a"
    assert d.params == {"beta": 2.0, "gamma": 0.5}
    assert f.params == {"beta": 0.1}
    assert a.run_dir == tmp_path / "runs" / "train" / "a"
    assert a.early_stopping is None and a.quantization["load_in_4bit"] is False


def test_qlora_turns_on_4bit(tmp_path):
    (st,) = plan(
        cfg(
            tmp_path, [{"name": "q", "method": "sft", "dataset": "d", "adapter": {"type": "qlora"}}]
        )
    ).stages
    assert st.quantization == {
        "load_in_4bit": True,
        "quant_type": "nf4",
        "double_quant": True,
        "compute_dtype": "auto",  # bfloat16 on a bf16 GPU, else float32 (adapters.compute_dtype)
    }


def test_method_keys_are_checked_against_the_method(tmp_path):
    msg = problems(
        tmp_path, [{"name": "s", "method": "sft", "dataset": "d", "params": {"beta": 0.1}}]
    )
    assert "train.stages[0].params.beta: unknown key" in msg
    msg = problems(
        tmp_path, [{"name": "s", "method": "dpo", "dataset": "d", "params": {"betta": 0.1}}]
    )
    assert "params.betta: unknown key; did you mean 'beta'?" in msg
    msg = problems(tmp_path, [{"name": "s", "method": "rl", "dataset": "d", "params": {}}])
    assert "missing required key 'reward_model'" in msg


def test_all_schema_errors_together_with_lines(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(
        "train:\n"
        "  base_model: m\n"
        "  stages:\n"
        "    - name: s\n"
        "      method: dpoo\n"
        "      dataset: d\n"
        "      adaptor: {type: lora}\n"
        "      args: {epochs: 1, lerning_rate: 0.1}\n"
    )
    msg = str(pytest.raises(ToolkitError, plan, path).value)
    assert "3 problems" in msg
    assert f"{path}:5: train.stages[0].method: 'dpoo' is not one of" in msg
    assert f"{path}:7: train.stages[0].adaptor: unknown key; did you mean 'adapter'?" in msg
    assert (
        f"{path}:8: train.stages[0].args.lerning_rate: unknown key; did you mean 'learning_rate'?"
        in msg
    )


def test_cross_stage_problems(tmp_path):
    msg = problems(
        tmp_path,
        [
            {"name": "s", "method": "sft", "dataset": "d", "from": "later"},
            {"name": "later", "method": "reward", "dataset": "p"},
            {"name": "x", "method": "dpo", "dataset": "p", "from": "later"},
            {"name": "r", "method": "rl", "dataset": "d", "params": {"reward_model": "s"}},
            {"name": "s", "method": "sft", "dataset": "d"},
            {
                "name": "p",
                "method": "sft",
                "dataset": "d",
                "adapter": {"type": "prefix_tuning"},
                "args": {"gradient_checkpointing": True},
            },
            {"name": "k", "method": "dpo", "dataset": "p", "args": {"packing": True}},
            {"name": "e", "method": "sft", "dataset": "d", "early_stopping": {"patience": 2}},
            {
                "name": "f",
                "method": "sft",
                "dataset": "d",
                "adapter": {"type": "full"},
                "quantization": {"load_in_4bit": True},
            },
            {"name": "g", "method": "reward", "dataset": "p", "adapter": {"type": "prompt_tuning"}},
        ],
    )
    assert "9 problems in train:" in msg
    assert "train.stages[0] (s): from 'later' is not an earlier stage (none before this one)" in msg
    assert "train.stages[2] (x): from 'later' is a reward model" in msg
    assert "train.stages[3] (r): reward_model 's' is a sft stage" in msg
    assert "train.stages[4] (s): a stage named 's' already exists" in msg
    assert "prefix_tuning cannot be combined with gradient_checkpointing" in msg
    assert "train.stages[6] (k): args.packing applies to sft only" in msg
    assert "early_stopping needs eval_dataset or eval_split" in msg
    assert "a 4-bit base cannot be fully fine-tuned" in msg
    assert "a reward model needs its score head trained" in msg


def test_cli_run_errors_follow_the_contract(tmp_path, cli):
    path = cfg(tmp_path, [{"name": "s", "method": "sft", "dataset": "d", "params": {"beta": 1}}])
    code, out = cli(cli_group(), "run", str(path))
    assert code == 1 and out.startswith("Error: 1 problem in") and "Traceback" not in out
    code, out = cli(cli_group(), "run", str(path), "--stages", "x")
    assert code == 2 and "No such option" in out
    ok = cfg(tmp_path, [{"name": "s", "method": "sft", "dataset": "d"}])
    code, out = cli(cli_group(), "run", str(ok), "--stage", "nope")
    assert code == 1 and out == "Error: no stage named nope (stages: s)\n"
    code, out = cli(cli_group(), "run", str(ok))
    assert (
        code == 1 and out == f"Error: no dataset named 'd'; {tmp_path / 'data'} holds no datasets\n"
    )
    # The model directory is checked before any weights load.
    from datakit.store import DatasetStore

    DatasetStore(tmp_path / "data").write(
        "d", [{"instruction": "a", "input": "", "output": "b"}], "instruction"
    )
    code, out = cli(cli_group(), "run", str(ok))
    assert (
        code == 1
        and out == f"Error: train.stages.s: model directory {tmp_path / 'model'} does not exist\n"
    )
    (tmp_path / "model").mkdir()
    code, out = cli(cli_group(), "run", str(ok))
    assert (
        out
        == f"Error: train.stages.s: {tmp_path / 'model'} is not a model directory (no config.json)\n"
    )


def test_show_rejects_a_non_run(tmp_path, cli):
    code, out = cli(cli_group(), "show", str(tmp_path))
    assert code == 1 and out == f"Error: {tmp_path}: not a training run (no run.json)\n"


def cli_group():
    return cli


@pytest.mark.parametrize(
    "name,kind",
    [("ddp", "MULTI_GPU"), ("fsdp", "FSDP"), ("zero2", "DEEPSPEED"), ("zero3", "DEEPSPEED")],
)
def test_launch_presets_load_in_accelerate(cli, name, kind):
    from accelerate.commands.config.config_args import load_config_from_file

    code, out = cli(cli_group(), "preset", name)
    assert code == 0
    conf = load_config_from_file(out.strip())
    assert conf.distributed_type.value == kind
    if name.startswith("zero"):
        assert conf.deepspeed_config["zero_stage"] == int(name[-1])
    code, out = cli(cli_group(), "preset", "zero1")
    assert code == 2 and "Invalid value" in out


def test_a_stage_needs_a_model(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(
        yaml.safe_dump({"train": {"stages": [{"name": "a", "method": "sft", "dataset": "d"}]}})
    )
    msg = str(pytest.raises(ToolkitError, plan, path).value)
    assert (
        msg
        == "1 problem in train:\ntrain.stages[0] (a): no model: set train.base_model or the stage's base_model"
    )


def test_estimate_errors_name_the_file_and_key(tmp_path, cli):
    (tmp_path / "c.json").write_text('{"hidden_size": 8}')
    code, out = cli(cli_group(), "estimate", "--model", str(tmp_path / "c.json"))
    assert code == 1
    assert (
        out
        == f"Error: {tmp_path / 'c.json'}: no num_hidden_layers (not a decoder-only transformer config?)\n"
    )
    code, out = cli(cli_group(), "estimate", "--model", str(tmp_path / "none"))
    assert code == 1 and "no config.json (give a model directory or its config.json)" in out
    code, out = cli(cli_group(), "estimate", "--model", str(tmp_path), "--method", "big")
    assert code == 2 and "Invalid value for '--method'" in out


def test_stage_identity_holds_every_upstream_model(tmp_path):
    """A stage's config hash holds the identity of the stage it continues and of its reward
    model: retraining either changes it; a stage with no upstream keeps its own hash."""
    import json

    from trainkit.rundir import stage_key, upstream_identity

    (tmp_path / "rm-dir").mkdir()
    (tmp_path / "rm-dir" / "config.json").write_text("{}")
    rl = {"algorithm": "grpo", "num_generations": 2}
    stages = [
        {"name": "sft", "method": "sft", "dataset": "d"},
        {"name": "rm", "method": "reward", "dataset": "p"},
        {
            "name": "rl",
            "method": "rl",
            "dataset": "d",
            "from": "sft",
            "params": {**rl, "reward_model": "rm"},
        },
        {
            "name": "rl2",
            "method": "rl",
            "dataset": "d",
            "params": {**rl, "reward_model": str(tmp_path / "rm-dir")},
        },
    ]
    sft, rm, rl_stage, rl2 = plan(cfg(tmp_path, stages)).stages
    assert upstream_identity(sft) == {} and stage_key("abc", {}) == "abc"

    def finish(stage, hash_, when):
        (stage.run_dir / "final").mkdir(parents=True, exist_ok=True)
        (stage.run_dir / "run.json").write_text(
            json.dumps({"config_hash": hash_, "finished": when})
        )

    finish(sft, "s1", "t1")
    finish(rm, "r1", "t1")
    first = upstream_identity(rl_stage)
    assert first["from"]["config_hash"] == "s1" and first["reward_model"]["config_hash"] == "r1"
    finish(sft, "s1", "t2")  # the same config trained again
    second = upstream_identity(rl_stage)
    finish(rm, "r2", "t2")
    third = upstream_identity(rl_stage)
    keys = {stage_key("own", x) for x in (first, second, third)}
    assert len(keys) == 3
    # A reward model directory outside the config: its files identify it.
    ext = upstream_identity(rl2)["reward_model"]
    (tmp_path / "rm-dir" / "model.safetensors").write_text("weights")
    assert upstream_identity(rl2)["reward_model"] != ext


def test_gpu_profile_keeps_float32_master_weights_for_full_fine_tuning(tmp_path, monkeypatch):
    """On a bf16 GPU (mocked: there is none here) full fine-tuning loads float32 weights and
    trains in bf16 mixed precision; pure_bf16 loads bf16; a frozen base under an adapter is
    bf16. On the CPU everything is float32."""
    import torch

    import corekit.adapters as adapters
    import trainkit.model as model
    import trainkit.stage as run

    stages = [
        {"name": "full", "method": "dpo", "dataset": "p", "adapter": {"type": "full"}},
        {
            "name": "pure",
            "method": "dpo",
            "dataset": "p",
            "adapter": {"type": "full"},
            "args": {"pure_bf16": True},
        },
        {"name": "lora", "method": "dpo", "dataset": "p"},
    ]
    full, pure, lora = plan(cfg(tmp_path, stages)).stages
    assert [model.weights_dtype(s) for s in (full, lora)] == [torch.float32] * 2
    monkeypatch.setattr(adapters, "cuda", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert model.weights_dtype(full) == torch.float32
    assert model.weights_dtype(pure) == torch.bfloat16
    assert model.weights_dtype(lora) == torch.bfloat16
    assert run.common_args(full, False, True)["bf16"] is True
    assert run.common_args(pure, False, True)["bf16"] is True


def test_the_schema_states_the_learning_rate_defaults_the_code_uses():
    from corekit.schemas import load_schema
    from trainkit.methods import METHODS

    text = load_schema("pipeline")["definitions"]["train_args"]["properties"]["learning_rate"][
        "description"
    ]

    def t(x: float) -> str:
        return f"{x:.0e}".replace("e-0", "e-")

    for method, m in METHODS.items():
        full, adapters = m.learning_rate
        assert f"{method} {t(full)} / {t(adapters)}" in text, method


def test_config_check_checks_the_new_stage_args(tmp_path, cli):
    """datakit config check runs trainkit's checks of the train: section (the same ones
    trainkit run makes), each at its stage's line."""
    import importlib.util

    from datakit.cli import cli as datakit

    (tmp_path / "bad.jinja").write_text("{% for m in messages %}{{ m.content }")
    stages = [
        {
            "name": "ok",
            "method": "sft",
            "dataset": [{"name": "a"}, {"name": "b", "weight": 0.5}],
            "args": {
                "optimizer": "adafactor",
                "weight_decay": 0.1,
                "max_grad_norm": 0.5,
                "neftune_noise_alpha": 5,
                "attn_implementation": "eager",
                "chat_template": "{% for m in messages %}{{ m.content }}{% endfor %}",
            },
        },
        {"name": "nofile", "method": "sft", "dataset": "d", "args": {"chat_template": "t.jinja"}},
        {"name": "syntax", "method": "sft", "dataset": "d", "args": {"chat_template": "bad.jinja"}},
    ]
    missing = [s for s in ("wandb", "mlflow") if importlib.util.find_spec(s) is None]
    if missing:
        stages.append(
            {
                "name": "sink",
                "method": "sft",
                "dataset": "d",
                "args": {"report_to": ["tensorboard", missing[0]]},
            }
        )
    path = cfg(tmp_path, stages)
    code, out = cli(datakit, "config", "check", str(path))
    assert code == 1 and "Traceback" not in out
    lines = out.splitlines()
    assert any(
        f"train.stages[1] (nofile): args.chat_template: no such file {tmp_path / 't.jinja'}" in x
        for x in lines
    ), out
    assert any(
        "train.stages[2] (syntax): args.chat_template: not a valid Jinja template (line 1" in x
        for x in lines
    ), out
    if missing:
        assert any(f"(sink): args.report_to: {missing[0]} is not installed" in x for x in lines)
    assert not any("(ok)" in x for x in lines), out
    assert all(x.startswith(f"{path}:") for x in lines)
    # Schema errors: a weight must be positive, an optimizer must be known.
    bad = cfg(
        tmp_path,
        [
            {
                "name": "w",
                "method": "sft",
                "dataset": [{"name": "a", "weight": 0}],
                "args": {"optimizer": "adam"},
            }
        ],
    )
    code, out = cli(datakit, "config", "check", str(bad))
    assert code == 1 and "args.optimizer: 'adam' is not one of" in out, out
    # the form the value was meant as, not "not valid under any of the given schemas"
    assert "train.stages[0].dataset[0].weight: 0 is less than or equal to the minimum" in out
    # The stage's datasets and weights, resolved.
    ok = plan(cfg(tmp_path, stages[:1])).stages[0]
    assert ok.datasets == [("a", 1.0), ("b", 0.5)]
    assert ok.args["chat_template"].startswith("{% for m in messages %}")
    # A template file is read into the resolved config: editing it changes the stage.
    (tmp_path / "t.jinja").write_text("{{ messages[0].content }}")
    from_file = plan(cfg(tmp_path, [stages[1]])).stages[0]
    assert from_file.resolved()["args"]["chat_template"] == "{{ messages[0].content }}"
    (tmp_path / "t.jinja").write_text("{{ messages[-1].content }}")
    edited = plan(cfg(tmp_path, [stages[1]])).stages[0]
    assert edited.resolved() != from_file.resolved()


def test_device_dependent_args_resolve_per_machine(tmp_path, monkeypatch):
    """compute_dtype and attn_implementation 'auto', and args this machine cannot run: a
    clear error before anything loads (flash-attention and bitsandbytes' GPU optimizers
    on a CPU)."""
    import torch

    import corekit.adapters as adapters
    import trainkit.model as model
    import trainkit.stage as run

    assert adapters.compute_dtype("auto") == torch.float32  # no GPU here
    assert adapters.compute_dtype("bfloat16") == torch.bfloat16
    assert model.attn_implementation("auto") is None  # transformers' default, sdpa
    assert model.attn_implementation("eager") == "eager"
    stages = [
        {
            "name": "fa",
            "method": "sft",
            "dataset": "d",
            "args": {"attn_implementation": "flash_attention_2"},
        },
        {
            "name": "paged",
            "method": "sft",
            "dataset": "d",
            "args": {"optimizer": "paged_adamw_8bit"},
        },
        {"name": "ok", "method": "sft", "dataset": "d", "args": {"optimizer": "adafactor"}},
    ]
    fa, paged, ok = plan(cfg(tmp_path, stages)).stages
    with pytest.raises(ToolkitError, match="flash_attention_2 needs a CUDA GPU"):
        run.check_device_args(fa)
    with pytest.raises(ToolkitError, match="paged_adamw_8bit is a bitsandbytes GPU optimizer"):
        run.check_device_args(paged)
    run.check_device_args(ok)
    # On a bf16 GPU (mocked) auto is bf16 compute; flash-attention only when installed.
    monkeypatch.setattr(adapters, "cuda", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert adapters.compute_dtype("auto") == torch.bfloat16
    import importlib.util

    has_fa = importlib.util.find_spec("flash_attn") is not None
    assert model.attn_implementation("auto") == ("flash_attention_2" if has_fa else None)


def test_rl_completions_must_leave_room_for_the_prompt(tmp_path):
    stage = {
        "name": "rl",
        "method": "rl",
        "dataset": "d",
        "args": {"max_length": 64},
        "params": {"reward_model": str(tmp_path), "max_completion_length": 64},
    }
    msg = problems(tmp_path, [stage])
    assert (
        "train.stages[0] (rl): params.max_completion_length (64) leaves no room for the "
        "prompt in args.max_length (64)" in msg
    )
    stage["params"]["max_completion_length"] = 48
    assert plan(cfg(tmp_path, [stage])).stages[0].params["max_completion_length"] == 48


def test_a_run_mostly_warmup_is_said_once_at_the_start():
    """Before: a 2-step SFT run with the default warmup_ratio 0.03 ran its first step at
    learning rate 0 and reported `8.5092 -> 8.5092` without a word."""
    from transformers import TrainingArguments

    from trainkit.callbacks import warmup_note

    args = TrainingArguments(output_dir="unused", warmup_steps=0.03, report_to="none")
    assert args.get_warmup_steps(2) == 1  # the ratio rounds up: one warmup step of two
    note = warmup_note(args.get_warmup_steps(2), 2)
    assert note is not None and note.startswith("warmup is 1 of this run's 2 steps")
    assert "warmup_ratio: 0" in note
    assert warmup_note(args.get_warmup_steps(300), 300) is None  # 9 of 300: nothing to say
    assert warmup_note(0, 2) is None


@pytest.mark.parametrize(
    "change",
    [{}, {"use_dora": True}, {"bias": "lora_only"}, {"rank_pattern": {"q_proj": 4}},
     {"peft_type": "IA3"}, {"modules_to_save": ["lm_head"]}],
)  # fmt: skip
def test_lora_chain_composes_only_plain_loras_down_to_a_plain_base(tmp_path, change):
    """What `eval.adapters: lora` may compose: plain LoRAs on a plain model, through
    merges that say which adapter they came from; anything else is merged instead."""
    import json

    from corekit.adapters import lora_chain, write_merged_from

    base = tmp_path / "base"
    base.mkdir()
    (base / "config.json").write_text("{}")

    def adapter(name, on, **extra):
        d = tmp_path / name
        d.mkdir()
        cfg = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": 8, "lora_alpha": 16,
               "bias": "none", "base_model_name_or_path": str(on), **extra}  # fmt: skip
        (d / "adapter_config.json").write_text(json.dumps(cfg))
        (d / "adapter_model.safetensors").write_bytes(b"weights of " + name.encode())
        return d

    first = adapter("sft", base, **change)
    merged = tmp_path / "merged-start"
    merged.mkdir()
    (merged / "config.json").write_text("{}")
    write_merged_from(merged, first, False, "torch.float32")
    second = adapter("dpo", merged)
    got = lora_chain(second)
    assert got == ((str(base), [first, second]) if not change else None)
    if not change:
        # a merge into other weights, or from an adapter changed since, breaks the chain
        write_merged_from(merged, first, False, "torch.bfloat16")
        assert lora_chain(second) is None
        write_merged_from(merged, first, True, "torch.float32")
        assert lora_chain(second) is None
        write_merged_from(merged, first, False, "torch.float32")
        (first / "adapter_model.safetensors").write_bytes(b"retrained")
        assert lora_chain(second) is None
