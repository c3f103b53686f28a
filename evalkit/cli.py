"""``evalkit``: score models or prediction files, write reports, gate CI on regressions."""

from __future__ import annotations

import click

from datakit.clikit import Group, setup_logging, verbose_option


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@verbose_option
@click.version_option(package_name="finetune-toolkit", prog_name="evalkit")
def cli(verbose: bool) -> None:
    """Score models or prediction files against eval items.

    Eval items are `eval_item` dataset versions (see `datakit import --format
    xstest`); predictions are `prediction` records. Metrics, reports and the
    regression gate build on these.

    \b
    Examples:
      datakit import xstest_prompts.csv --format xstest --name xstest
      datakit validate preds.jsonl --schema prediction
    """
    setup_logging(verbose)


def main() -> None:
    cli(prog_name="evalkit")


if __name__ == "__main__":
    main()
