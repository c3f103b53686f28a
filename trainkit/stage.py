"""Run the stages of a ``train:`` section; each stage in its own, self-describing run dir.

    <output_dir>/<stage>/
        run.json        status, config hash, datasets (name@version + sha256), library
                        versions, git commit, data stats, final metrics
        config.json     the resolved stage config (defaults filled in)
        metrics.jsonl   one line per logging step: loss, eval_loss, learning_rate, grad_norm
        tensorboard/    the same as TensorBoard events
        curves.png      loss and learning-rate curves
        checkpoints/    Trainer checkpoints (a killed run resumes from the last one)
        final/          the adapter or the model, with tokenizer and chat template

A stage whose run.json says complete for the same config hash is skipped; an incomplete
one with the same hash resumes from its last checkpoint; a different config in an existing
run dir is an error unless forced, so a run is never silently mixed with another.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from corekit import adapters
from corekit.adapters import (
    BASE_QUANTIZATION_FILE,
    final_dir,
    load_tokenizer,
    merged_from_adapter,
)
from corekit.errors import ToolkitError
from corekit.models import check_model, is_adapter
from corekit.project import Project
from corekit.runs import (
    atomic_dir,
    atomic_write_json,
    git_commit,
    library_versions,
)
from datakit.store import DatasetStore

from .callbacks import (
    PhaseClock,
    delta_callback,
    metrics_callback,
    terminal_output,
    warmup_callback,
)
from .config import Stage, TrainPlan, plan
from .model import fp32_master_weights, is_peft_model, load_base, peft_config
from .plot import plot_curves
from .rundir import RunPlan, plan_run, rank, world_size

log = logging.getLogger(__name__)


@dataclass
class StageResult:
    name: str
    method: str
    run_dir: Path
    status: str  # trained | resumed | skipped
    metrics: dict[str, Any]


def common_args(stage: Stage, has_eval: bool, quiet: bool) -> dict[str, Any]:
    """Training arguments every method shares, from the stage's ``args``."""
    a = stage.args
    out: dict[str, Any] = {
        "output_dir": str(stage.run_dir / "checkpoints"),
        "num_train_epochs": a["epochs"],
        "max_steps": a["max_steps"],
        "learning_rate": a["learning_rate"],
        "lr_scheduler_type": a["lr_scheduler"],
        "warmup_steps": a["warmup_ratio"],  # a float below 1 is a ratio of the total steps
        "per_device_train_batch_size": a["batch_size"],
        "per_device_eval_batch_size": a["batch_size"],
        "gradient_accumulation_steps": a["grad_accum"],
        "gradient_checkpointing": a["gradient_checkpointing"],
        "seed": a["seed"],
        "data_seed": a["seed"],
        "logging_steps": a["logging_steps"],
        "save_strategy": "steps",
        "save_steps": a["save_steps"],
        "save_total_limit": 2,
        # TensorBoard events are written by our own callback (into the run dir, resumable);
        # the other sinks are transformers' integrations.
        "report_to": [r for r in a["report_to"] if r != "tensorboard"] or "none",
        "optim": a["optimizer"],
        "weight_decay": a["weight_decay"],
        "max_grad_norm": a["max_grad_norm"],
        "neftune_noise_alpha": a["neftune_noise_alpha"],
        "disable_tqdm": quiet,
        "use_cpu": not adapters.cuda(),
    }
    if has_eval:
        out.update(eval_strategy="steps", eval_steps=a["eval_steps"])
    if stage.early_stopping is not None:
        out.update(
            load_best_model_at_end=True,
            metric_for_best_model="eval_loss",
            greater_is_better=False,
            # load_best_model_at_end needs saves on evaluation steps
            save_steps=a["eval_steps"],
        )
    if a.get("pure_bf16"):
        out["bf16"] = True  # the weights are bf16 already (model.weights_dtype)
    elif adapters.cuda():
        import torch

        out["bf16"] = torch.cuda.is_bf16_supported()
    else:
        # TRL turns bf16 autocast on by default; on a CPU without native bf16 (AVX2) it made
        # SFT ~7x slower here. float32 is the fast path on CPU.
        out["bf16"] = False
        if world_size() > 1:
            out["ddp_backend"] = "gloo"
    return out


def check_device_args(stage: Stage) -> None:
    """Arguments this machine cannot run, as a clear error before anything loads."""
    import importlib.util

    where = f"train.stages.{stage.name}.args"
    if stage.args["attn_implementation"] == "flash_attention_2" and not (
        adapters.cuda() and importlib.util.find_spec("flash_attn") is not None
    ):
        raise ToolkitError(
            f"{where}.attn_implementation: flash_attention_2 needs a CUDA GPU and the "
            "flash-attn package; use auto (sdpa here)"
        )
    optim = stage.args["optimizer"]
    if (
        "8bit" in optim or optim.startswith("paged_") or optim == "lion_32bit"
    ) and not adapters.cuda():
        raise ToolkitError(
            f"{where}.optimizer: {optim} is a bitsandbytes GPU optimizer; on a CPU use "
            "adamw_torch, adafactor or sgd"
        )


def build_trainer(
    stage: Stage,
    model: Any,
    tokenizer: Any,
    train_dataset: Any,
    eval_dataset: Any = None,
    callbacks: list[Any] | None = None,
    quiet: bool = True,
) -> Any:
    """The stage's TRL trainer as ``trainkit run`` builds it: the method's config on the
    shared arguments, the stage's PEFT config (none when ``model`` is already an earlier
    stage's adapter, trained on), trainable weights in float32 unless ``pure_bf16``, and
    the terminal output of a stage (one progress bar, no log dictionaries)."""
    from .methods import builder

    inputs = {
        "model": model,
        "train_dataset": train_dataset,
        "eval_dataset": eval_dataset,
        "processing_class": tokenizer,
        "peft_config": None if is_peft_model(model) else peft_config(stage),
        "callbacks": list(callbacks or []),
    }
    common = common_args(stage, eval_dataset is not None, quiet)
    trainer = builder(stage.method)(stage, common, inputs)
    if not stage.args.get("pure_bf16"):
        fp32_master_weights(trainer.model)
    terminal_output(trainer, stage.name)
    return trainer


def _checked_tokenizer(stage: Stage) -> Any:
    """The base and reward models checked, and the tokenizer the stage trains with (its own
    chat template when it sets one: trained with, and saved with the final model)."""
    check_model(stage.base_model, f"train.stages.{stage.name}")
    if stage.reward_model:
        if is_adapter(stage.reward_model):
            raise ToolkitError(
                f"train.stages.{stage.name}: reward_model {stage.reward_model} is an adapter; "
                "RL needs a full sequence-classification model (trainkit merge it first)"
            )
        check_model(stage.reward_model, f"train.stages.{stage.name}.params.reward_model")
    tokenizer = load_tokenizer(stage.base_model)
    if stage.args.get("chat_template"):
        tokenizer.chat_template = stage.args["chat_template"]
    check_device_args(stage)
    return tokenizer


def _stage_data(stage: Stage, store: DatasetStore, tokenizer: Any) -> Any:
    from .data import load_stage_data
    from .methods.rl import prompt_budget

    rl = stage.method == "rl"
    return load_stage_data(
        store,
        stage.method,
        stage.datasets,
        tokenizer,
        stage.args["max_length"],
        eval_dataset=stage.eval_dataset,
        eval_split=stage.eval_split,
        seed=stage.args["seed"],
        assistant_only=stage.method == "sft" and stage.params.get("assistant_only_loss", False),
        max_prompt_length=prompt_budget(
            stage.args["max_length"], stage.params["max_completion_length"]
        )
        if rl
        else None,
    )


def _callbacks(stage: Stage, info: dict[str, Any], resume: Path | None) -> list[Any]:
    from transformers import EarlyStoppingCallback

    resume_step = int(resume.name.split("-")[-1]) if resume else 0
    callbacks = [metrics_callback(stage, resume_step), delta_callback(info), warmup_callback()]
    if stage.early_stopping is not None:
        callbacks.append(
            EarlyStoppingCallback(
                early_stopping_patience=stage.early_stopping["patience"],
                early_stopping_threshold=stage.early_stopping["threshold"],
            )
        )
    return callbacks


def _world(stage: Stage, refs: list[dict[str, Any]], args: Any, quiet: bool) -> dict[str, Any]:
    """The ranks, hosts, devices and dataset versions, checked alike on every rank; rank 0
    says so in one line."""
    import sys

    from .world import check_world

    world = check_world(stage.name, refs, args)
    if rank() == 0 and not quiet:
        print(world["line"], file=sys.stderr, flush=True)
    return world


def run_stage(
    stage: Stage,
    store: DatasetStore,
    repo_dir: Path,
    quiet: bool = False,
    force: bool = False,
) -> StageResult:
    """Train one stage into its run dir (skipped when complete and unchanged, resumed from
    its last checkpoint when interrupted); run.json says what, with what, and how long."""
    run_dir = stage.run_dir
    clock = PhaseClock()
    plan = plan_run(stage, store, force)
    if not isinstance(plan, RunPlan):
        return StageResult(stage.name, stage.method, run_dir, "skipped", plan)
    tokenizer = _checked_tokenizer(stage)
    clock.lap("checks")
    data = _stage_data(stage, store, tokenizer)
    clock.lap("data")
    run_dir.mkdir(parents=True, exist_ok=True)
    info = {
        "name": stage.name,
        "method": stage.method,
        "status": "running",
        "config_hash": plan.key,
        "stage_hash": plan.own,
        "upstream": plan.upstream,
        "datasets": data.refs,
        "data_stats": data.stats,
        "base_model": stage.base_model,
        "libraries": library_versions(),
        "git": git_commit(repo_dir),
        "world_size": world_size(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if rank() == 0:
        atomic_write_json(run_dir / "config.json", plan.resolved)
        atomic_write_json(run_dir / "run.json", info)
    clock.lap("checks")  # config.json, run.json, library versions, git commit
    model = load_base(stage)
    clock.lap("load")
    if is_peft_model(model):
        info["continues_adapter"] = stage.base_model
    callbacks = _callbacks(stage, info, plan.resume)
    trainer = build_trainer(stage, model, tokenizer, data.train, data.eval, callbacks, quiet)
    info["world_size"] = trainer.args.world_size
    info["ddp_backend"] = trainer.args.ddp_backend
    info["world"] = _world(stage, data.refs, trainer.args, quiet)
    clock.lap("trainer")  # TRL's own dataset preparation (tokenisation) and setup
    resume = plan.resume
    out = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    seconds = clock.lap("train")
    metrics = dict(out.metrics)
    if data.eval is not None:
        metrics.update(trainer.evaluate())
        clock.lap("evaluate")
    if trainer.is_world_process_zero():
        _finish(trainer, stage, tokenizer, info, clock, seconds, metrics, resume)
    return StageResult(
        stage.name, stage.method, run_dir, "resumed" if resume else "trained", metrics
    )


def _finish(
    trainer: Any,
    stage: Stage,
    tokenizer: Any,
    info: dict[str, Any],
    clock: PhaseClock,
    seconds: float,
    metrics: dict[str, Any],
    resume: Path | None,
) -> None:
    """The final model saved, the curves drawn, run.json complete (rank 0 only)."""
    run_dir = stage.run_dir
    save_final(trainer, stage, tokenizer)
    clock.lap("save")
    plot_curves(
        run_dir / "metrics.jsonl",
        run_dir / "curves.png",
        title=f"{stage.name} ({stage.method})",
    )
    clock.lap("curves")
    info.update(
        status="complete",
        finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        seconds=round(seconds, 2),
        global_step=trainer.state.global_step,
        resumed_from=resume.name if resume else None,
        metrics={k: v for k, v in metrics.items() if isinstance(v, (int, float))},
        final=str(final_dir(run_dir)),
        final_kind="adapter" if is_adapter(final_dir(run_dir)) else "model",
        phase_seconds=clock.rounded(),
    )
    atomic_write_json(run_dir / "run.json", info)


def save_final(trainer: Any, stage: Stage, tokenizer: Any) -> None:
    """The final adapter or model, with tokenizer and chat template, in <run>/final."""
    model = trainer.model
    with atomic_dir(final_dir(stage.run_dir)) as tmp:
        if stage.method == "reward" and is_peft_model(model):
            # RL loads the reward model as a plain sequence classifier: save it merged.
            if stage.quantization.get("load_in_4bit"):
                # Into the dequantised 4-bit base it trained on: merging into the 4-bit
                # weights would quantise them again and lose the LoRA update.
                src = Path(tmp) / "adapter"
                model.save_pretrained(str(src))
                tokenizer.save_pretrained(src)
                atomic_write_json(src / BASE_QUANTIZATION_FILE, stage.quantization)
                merged, _ = merged_from_adapter(src)
                shutil.rmtree(src)
            else:
                merged = model.merge_and_unload()
            merged.save_pretrained(tmp)
        else:
            if is_peft_model(model) and len(model.peft_config) > 1:
                # A continued adapter beside TRL's frozen "ref" copy: the policy alone.
                model.save_pretrained(str(tmp), selected_adapters=["default"])
            else:
                trainer.save_model(str(tmp))
            if is_adapter(tmp) and stage.quantization.get("load_in_4bit"):
                # The adapter carries how its base was quantised: a merge (of this dir or
                # a copy of it) or a later `from:` stage rebuilds the base it trained on.
                atomic_write_json(tmp / BASE_QUANTIZATION_FILE, stage.quantization)
        tokenizer.save_pretrained(tmp)


def run_train(
    project: Project | str | Path,
    only: list[str] | None = None,
    force: bool = False,
    quiet: bool = False,
    output_dir: str | Path | None = None,
    data_root: str | Path | None = None,
    runs_root: str | Path | None = None,
) -> tuple[TrainPlan, list[StageResult]]:
    """The train section of ``project`` (a Project, or a config path loaded with the roots
    given here): each stage (``only``: those named) trained unless its run is complete."""
    p = plan(project, output_dir, runs_root=runs_root, data_root=data_root)
    names = [s.name for s in p.stages]
    unknown = [n for n in (only or []) if n not in names]
    if unknown:
        raise ToolkitError(
            f"no stage named {', '.join(unknown)} (stages: {', '.join(names) or 'none'})"
        )
    from corekit.model_sources import ensure_models
    from datakit.demo import tiny_corpus

    # Models the project builds (a gguf_wheel or tiny model) are built once, here if missing.
    base = p.project.base
    ensure_models(p.project.config, base, p.models, quiet=quiet, tiny_corpus=tiny_corpus)
    store = DatasetStore(p.data_root)
    repo_dir = base
    results = []
    for stage in p.stages:
        if only and stage.name not in only:
            continue
        results.append(run_stage(stage, store, repo_dir, quiet=quiet, force=force))
    return p, results
