"""Pieces shared by the three CLIs: the error contract and the shared options.

Expected failures (DatakitError) become ``Error: <message>`` with exit code 1 and no
traceback; bad flags are Click usage errors (exit 2); ``--verbose`` shows tracebacks.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import click

from .errors import DatakitError


class Group(click.Group):
    """A click group that applies the error contract to every subcommand."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DatakitError as e:
            if ctx.find_root().params.get("verbose"):
                raise
            raise click.ClickException(str(e)) from None
        except BrokenPipeError:  # `datakit show x | head`
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            sys.exit(0)
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            sys.exit(130)


def setup_logging(verbose: bool, quiet: bool = False) -> None:
    level = logging.DEBUG if verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


verbose_option = click.option(
    "-v", "--verbose", is_flag=True, help="Show debug logs and full tracebacks."
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
quiet_option = click.option("-q", "--quiet", is_flag=True, help="No progress bars or chatter (CI).")
data_root_option = click.option(
    "--data-root",
    envvar="DATAKIT_DATA_ROOT",
    default="data",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Directory of the versioned datasets (env DATAKIT_DATA_ROOT).",
)


def echo_json(obj: Any) -> None:
    import orjson

    click.echo(orjson.dumps(obj, option=orjson.OPT_INDENT_2).decode())


def progress(iterable: Any, quiet: bool, **kwargs: Any) -> Any:
    """tqdm on stderr, shown only for a terminal and when not quiet."""
    from tqdm import tqdm

    return tqdm(
        iterable, disable=True if quiet else None, file=sys.stderr, dynamic_ncols=True, **kwargs
    )
