"""``trainkit``: fine-tune models on datakit dataset versions."""

from __future__ import annotations

import click

from datakit.clikit import Group, echo_json, json_option, setup_logging, verbose_option


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@verbose_option
@click.version_option(package_name="finetune-toolkit", prog_name="trainkit")
def cli(verbose: bool) -> None:
    """Fine-tune language models on versioned datasets (TRL + PEFT).

    \b
    Examples:
      trainkit init-tiny runs/models/tiny
    """
    setup_logging(verbose)


@cli.command("init-tiny")
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option(
    "--seed",
    default=0,
    show_default=True,
    type=click.IntRange(min=0),
    help="Seed for the tokenizer and weights.",
)
@click.option(
    "--vocab-size",
    default=1024,
    show_default=True,
    type=click.IntRange(300, 65536),
    help="BPE vocabulary size.",
)
@click.option(
    "--text",
    "text_files",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="Extra text file(s) to train the tokenizer on (repeatable).",
)
@click.option(
    "--train-steps",
    default=0,
    show_default=True,
    type=click.IntRange(min=0),
    help="First train this many steps on the demo seeds, so the model ends its turns (~300 is plenty).",
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
      trainkit init-tiny runs/models/tiny-trained --train-steps 300
    """
    from datakit.tiny import init_tiny

    summary = init_tiny(
        out_dir,
        seed=seed,
        vocab_size=vocab_size,
        text_files=text_files,
        force=force,
        train_steps=train_steps,
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


def main() -> None:
    cli(prog_name="trainkit")


if __name__ == "__main__":
    main()
