"""``datakit``: versioned datasets for fine-tuning: import, validate, inspect, export.

Each command parses its input, calls one library function and prints the result.
"""

from __future__ import annotations

import click

from corekit.clikit import (
    Group,
    config_data_root_option,
    config_runs_root_option,
    echo_json,
    json_option,
    kit_group,
    number_option,
    quiet_option,
    setup_logging,
    with_executor_options,
)
from corekit.errors import ToolkitError


@kit_group("datakit")
def cli(verbose: bool) -> None:
    """Grow, check and version the datasets you fine-tune on.

    Every dataset is a series of immutable versions under the data root
    (data/NAME/vN/records.jsonl + manifest.json). Address a version as NAME
    (latest), NAME@v3 or NAME@TAG.

    \b
    Examples:
      datakit import seeds.json --format alpaca --name seeds
      datakit validate seeds
      datakit show seeds@v1
      datakit export seeds --format trl -o train.jsonl
    """
    setup_logging(verbose)


def _register_store() -> None:
    from . import cli_store, cli_versions

    for command in cli_store.COMMANDS + cli_versions.COMMANDS:
        cli.add_command(command)


_register_store()


@cli.command("run")
@click.argument("config", default="pipeline.yaml", required=False, type=click.Path(dir_okay=False))
@config_data_root_option
@config_runs_root_option
@with_executor_options
@click.option("--only", multiple=True, help="Run only this step (repeatable).")
@click.option("--force", is_flag=True, help="Re-run steps even when their config is unchanged.")
@click.option(
    "--allow-empty",
    is_flag=True,
    help="Let every step write an empty output, or one that lost more than its "
    "max_error_share to engine errors (otherwise the step fails, exit 1).",
)
@number_option(
    "--examples",
    default=0,
    help="Print this many example records of each step's output at the end.",
    minimum=0,
)
@json_option
@quiet_option
def run_cmd(
    config: str,
    data_root: str | None,
    runs_root: str | None,
    executor: str | None,
    ray_address: str | None,
    only: tuple[str, ...],
    force: bool,
    allow_empty: bool,
    examples: int,
    as_json: bool,
    quiet: bool,
) -> None:
    """Run the data section of CONFIG (default pipeline.yaml).

    The whole config is checked first. Then models it declares are built
    if missing, each import becomes a dataset version, and the steps run in
    order, each writing a new version of its output dataset (rejects with their
    reasons in rejects.jsonl beside it). Unchanged imports and steps are
    skipped; engine calls are cached under runs_root/cache, so an interrupted
    run resumes where it stopped. `make data` runs this.

    \b
    Examples:
      datakit run
      datakit run pipeline.yaml --only answers --force
      datakit run --examples 2
      datakit run pipeline.yaml --data-root /tmp/data -q
      datakit run --executor ray --ray-address auto   # model calls on a Ray cluster
    """
    from corekit.project import Project

    from .ops.step import step_line
    from .stage import run_data

    project = Project.load(config, data_root=data_root, runs_root=runs_root, full=True)
    project = project.with_executor(executor, ray_address)
    s = run_data(
        project,
        quiet=quiet,
        only=list(only) or None,
        force=force,
        allow_empty=allow_empty,
    )
    if as_json:
        echo_json({"models": s.models, "datasets": s.datasets, "steps": s.steps})
        return
    for m in s.models:
        click.echo(f"model {m['name']}: {'built' if m['built'] else 'present'} at {m['path']}")
    for d in s.datasets:
        dups = f" ({d['duplicates']} exact duplicates dropped)" if d.get("duplicates") else ""
        click.echo(
            f"dataset {d['ref']}: {d['count']} {d['kind']} records"
            f"{' (unchanged)' if d['reused'] else dups}"
        )
    for st in s.steps:
        click.echo(step_line(st))
    if examples and s.steps:
        from .records import preview
        from .store import DatasetStore

        store = DatasetStore(s.data_root)
        click.echo("examples:")
        for st in s.steps:
            for out in st["outputs"]:
                for rec in store.resolve(out["ref"]).head(examples):
                    click.echo(f"  {out['ref']}  {preview(rec)}")
        kept = sum(o["count"] for st in s.steps for o in st["outputs"])
        dropped = sum(sum(st["drops"].values()) for st in s.steps)
        click.echo(
            f"kept {kept} records in {len(s.steps)} steps, dropped {dropped} (reasons above; "
            f"each version's rejects.jsonl holds them)"
        )
    timed = sorted((st for st in s.steps if st.get("seconds", 0) >= 1), key=lambda x: -x["seconds"])
    if timed:  # where the time went (the first model step includes its engine's start)
        click.echo(
            "time by step: " + ", ".join(f"{st['name']} {st['seconds']:.0f} s" for st in timed)
        )


@cli.group("generate", cls=Group)
def generate_group() -> None:
    """Grow datasets with an LLM engine: Self-Instruct, Evol-Instruct, responses, ...

    Each subcommand reads a dataset version and writes the next version of -o
    NAME. The same ops run as steps of pipeline.yaml (`datakit run`).

    \b
    Examples:
      datakit generate self-instruct seeds -o grown --model runs/models/tiny
      datakit generate respond grown -o answers --model runs/models/tiny
      datakit generate preferences seeds -o prefs --model runs/models/tiny
    """


def _register_ops() -> None:
    from .cli_generate import make_command
    from .ops import OPS

    for op in OPS.values():
        (generate_group if op.command == "generate" else cli).add_command(make_command(op))


_register_ops()


def _register_review() -> None:
    from .cli_review import review_group

    cli.add_command(review_group)


_register_review()


@cli.command("ops")
@json_option
def ops_cmd(as_json: bool) -> None:
    """List the ops a pipeline step (and its command) can run.

    Each row: the op (its name in pipeline.yaml), the command that runs it
    alone, the record kinds it reads -> what it writes, the engine roles it
    calls, and what it does. Parameters: that command's --help, or datakit
    config schema (definitions/params_OP).

    \b
    Examples:
      datakit ops
      datakit ops --json | jq '.[].name'
    """
    from .ops import OPS

    rows = [
        {
            "name": op.name,
            "command": ("datakit generate " if op.command == "generate" else "datakit ")
            + op.cli_name,
            "inputs": list(op.inputs),
            "output": op.output_label,
            "writes": [f"NAME-{x}" for x in op.outputs] or ["NAME"],
            "roles": list(op.roles),
            "summary": op.summary,
        }
        for op in OPS.values()
    ]
    if as_json:
        echo_json(rows)
        return
    w = max(len(r["name"]) for r in rows)
    wc = max(len(r["command"]) for r in rows)
    for r in rows:
        roles = ",".join(r["roles"]) or "-"
        click.echo(
            f"{r['name']:<{w}}  {r['command']:<{wc}}  {'|'.join(r['inputs'])} -> {r['output']}"
            + (f" as {', '.join(r['writes'])}" if r["writes"] != ["NAME"] else "")
            + f"  [{roles}]  {r['summary']}"
        )


@cli.group("config", cls=Group)
def config_group() -> None:
    """Check pipeline.yaml or print its schema.

    \b
    Examples:
      datakit config check pipeline.yaml
      datakit config schema > pipeline.schema.json
    """


@config_group.command("check")
@click.argument("path", default="pipeline.yaml", required=False)
@json_option
def config_check(path: str, as_json: bool) -> None:
    """Check PATH (default pipeline.yaml) against the pipeline schema.

    All problems are reported together, each with its line and key path;
    unknown keys come with a "did you mean" hint. Nothing runs.

    \b
    Examples:
      datakit config check
      datakit config check examples/qlora-7b.yaml
      datakit config check --json | jq .datasets    # every dataset name it makes
    """
    from corekit.config import check_config
    from corekit.yaml_load import load_yaml

    data, lines = load_yaml(path)
    if data is not None and not isinstance(data, dict):
        raise ToolkitError(
            f"{path}:1: the config must be a mapping of sections (data, train, eval)"
        )
    problems = check_config(data, lines, path, full=True)
    if as_json:
        from pathlib import Path

        from .config import dataset_names

        made = dataset_names(data, Path(path).resolve().parent) if isinstance(data, dict) else {}
        echo_json({"file": path, "ok": not problems, "problems": problems, "datasets": made})
    else:
        for p in problems:
            click.echo(p)
        click.echo(
            f"{path}: {len(problems)} problem{'s' if len(problems) != 1 else ''}"
            if problems
            else f"ok: {path}"
        )
    if problems:
        raise SystemExit(1)


@config_group.command("schema")
def config_schema() -> None:
    """Print the JSON Schema of pipeline.yaml (every field with its type, default and help).

    \b
    Examples:
      datakit config schema | jq '.definitions.import'
    """
    from corekit.schemas import load_schema

    echo_json(load_schema("pipeline"))


def main() -> None:
    cli(prog_name="datakit")


if __name__ == "__main__":
    main()
