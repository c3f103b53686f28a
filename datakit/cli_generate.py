"""The command of every registry op (``datakit generate <op>``, ``datakit judge``, ...).

Options come from the op's parameter schema in schemas/pipeline.json and the shared engine
options, so the CLI, pipeline.yaml and the docs say the same thing about every parameter.
"""

from __future__ import annotations

import json
import re
from typing import Any

import click

from corekit.clikit import (
    data_root_option,
    echo_json,
    engine_options,
    engine_specs_from_options,
    json_option,
    number_option,
    quiet_option,
    with_executor_options,
)
from corekit.schemas import load_schema

from .ops import Op


def _repeatable(flag: str, name: str, help_: str, given: Any) -> Any:
    """A flag given any number of times: None when absent, else ``given`` of the values."""
    return click.option(
        flag,
        name,
        multiple=True,
        default=None,
        help=help_ + " Repeatable.",
        callback=lambda c, p, v: given(v) if v else None,
    )


def _option_for(name: str, prop: dict[str, Any]) -> Any:
    flag = "--" + name.replace("_", "-")
    help_ = prop.get("description", "")
    if "default" in prop:
        help_ += f" [default: {json.dumps(prop['default'])}]"
    if prop.get("type") == "boolean":
        return click.option(f"{flag}/--no-{name.replace('_', '-')}", name, default=None, help=help_)
    if "enum" in prop:
        return click.option(
            flag, name, type=click.Choice([str(x) for x in prop["enum"]]), default=None, help=help_
        )
    if prop.get("type") in ("integer", "number"):
        # the schema's bounds as Click ranges: a bad value is a usage error (exit 2)
        low = prop.get("minimum", prop.get("exclusiveMinimum"))
        high = prop.get("maximum", prop.get("exclusiveMaximum"))
        kind = click.IntRange if prop["type"] == "integer" else click.FloatRange
        return click.option(
            flag,
            name,
            type=kind(
                min=low,
                max=high,
                min_open="exclusiveMinimum" in prop,
                max_open="exclusiveMaximum" in prop,
            ),
            default=None,
            help=help_,
        )
    forms = {f.get("type") for f in prop.get("anyOf", [])}
    if forms == {"string", "array"}:
        # one value or a list of them (mix's balance_by): repeat the flag for a list
        return _repeatable(flag, name, help_, lambda v: v[0] if len(v) == 1 else list(v))
    if prop.get("type") == "array":
        item = prop.get("items", {}).get("type")
        if item == "number":
            return click.option(
                flag,
                name,
                default=None,
                metavar="X,Y,...",
                help=help_ + " Comma-separated.",
                callback=lambda c, p, v: None if v is None else _floats(v, p.opts[0]),
            )
        return _repeatable(flag, name, help_, list)
    if prop.get("type") == "object":
        return click.option(
            flag,
            name,
            default=None,
            metavar="JSON",
            help=help_ + " As JSON.",
            callback=lambda c, p, v: None if v is None else _json(v, p.opts[0]),
        )
    return click.option(flag, name, default=None, help=help_)


def _explain(op: Op, output: str, data_root: str, record_id: str, as_json: bool) -> None:
    import importlib

    from .store import DatasetStore

    version = DatasetStore(data_root).resolve(output)
    mod, _, fn = op.explain.partition(":")
    rows = getattr(importlib.import_module(mod), fn)(version, record_id)
    if as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo(f"{record_id}: not in any duplicate cluster of {version.ref}")
        return
    click.echo(f"cluster {rows[0]['cluster']} in {version.ref}:")
    for r in rows:
        click.echo(
            f"  dropped {r['dropped']} as a duplicate of {r['kept']} "
            f"({r['method']}, similarity {r['similarity']})"
        )


def _weighted(refs: list[str]) -> tuple[list[str], list[float] | None]:
    """INPUT:WEIGHT arguments (mix): the refs, and the weights if any were given."""
    names, weights = [], []
    for r in refs:
        name, sep, w = r.rpartition(":")
        if sep and re.fullmatch(r"[0-9]*\.?[0-9]+", w):
            names.append(name)
            weights.append(float(w))
        else:
            names.append(r)
            weights.append(None)
    if all(w is None for w in weights):
        return names, None
    if any(w is None or w <= 0 for w in weights):
        raise click.BadParameter(
            "give every input a positive weight (NAME:0.8) or none", param_hint="INPUT..."
        )
    return names, weights


def _floats(v: str, flag: str) -> list[float]:
    try:
        return [float(x) for x in v.split(",") if x.strip()]
    except ValueError:
        raise click.BadParameter(
            f"expected numbers separated by commas, got {v!r}", param_hint=flag
        ) from None


def _json(v: str, flag: str) -> Any:
    try:
        return json.loads(v)
    except ValueError as e:
        raise click.BadParameter(f"not JSON: {e}", param_hint=flag) from None


def make_command(op: Op) -> click.Command:
    """The command of one registry op: its parameters as options, plus the engine options
    when it calls a model."""
    schema = load_schema("pipeline")["definitions"][f"params_{op.name}"]

    def callback(input_ref: str | tuple[str, ...], output: str, **kw: Any) -> None:
        if kw.get("explain_id"):
            return _explain(op, output, kw["data_root"], kw["explain_id"], kw["as_json"])
        _run_op(op, schema, input_ref, output, kw)

    f = callback
    for d in _op_params(op, schema):
        f = d(f)
    if op.roles:
        f = engine_options(op.roles)(f)
    elif op.on_ray:
        f = with_executor_options(f)
    cmd = click.Command(op.cli_name, callback=callback, help=_op_help(op))
    cmd.params = list(getattr(f, "__click_params__", []))
    return cmd


def _run_op(
    op: Op, schema: dict[str, Any], input_ref: str | tuple[str, ...], output: str, kw: dict
) -> None:
    """One op as a step over INPUT into -o NAME, its flags checked by the op's schema."""
    from pathlib import Path

    from corekit.clikit import cli_executor
    from corekit.engines.pool import EnginePool
    from corekit.engines.ray_backend import placement

    from .ops.step import param_problems, run_step, step_line
    from .store import DatasetStore

    params = {k: v for k, v in kw.items() if k in schema["properties"] and v is not None}
    for where, msg in param_problems(op.name, params):
        # a flag's value the schema refuses is a usage error (exit 2), named by its flag
        name = where.split(".", 1)[0]
        flag = f"--{name.replace('_', '-')}" if name in params else None
        raise click.BadParameter(msg, param_hint=f"'{flag}'" if flag else None)
    inputs: str | list[str] = input_ref if isinstance(input_ref, str) else list(input_ref)
    if op.many_inputs and "weights" in schema["properties"]:
        inputs, weights = _weighted(list(input_ref))
        if weights is not None:
            params["weights"] = weights
    roles: dict[str, Any] = {}
    pool = None
    if op.roles:
        roles = engine_specs_from_options(kw)
        pool = EnginePool(Path(kw["runs_root"]) / "cache", quiet=kw["quiet"])
    try:
        res = run_step(
            DatasetStore(kw["data_root"]),
            output,
            op.name,
            inputs,
            params,
            roles,
            pool,
            seed=kw["seed"],
            quiet=kw["quiet"],
            force=kw["force"],
            batch_size=kw.get("batch_size", 256),
            allow_empty=kw.get("allow_empty", False),
            executor=placement(cli_executor(kw.get("executor"), kw.get("ray_address"))),
        )
    finally:
        if pool is not None:
            pool.close()
    st = res.summary()
    echo_json(st) if kw["as_json"] else click.echo(step_line(st))


def _op_help(op: Op) -> str:
    reads = "Reads dataset versions INPUT..." if op.many_inputs else "Reads dataset version INPUT"
    writes = "-o NAME" + (
        f" as {' and '.join(f'NAME-{o}' for o in op.outputs)}" if op.outputs else ""
    )
    return (
        f"{op.summary}\n\n{reads}, writes the next version of {writes} (with"
        " rejects.jsonl: every dropped record and why)."
        + (
            " Engine calls are cached, so an interrupted run resumes and a repeat costs nothing."
            if op.roles
            else ""
        )
        + "\n\n\b\nExamples:\n  "
        + op.example.replace("\n", "\n  ")
    )


def _op_params(op: Op, schema: dict[str, Any]) -> list[Any]:
    """The op command's arguments and options: INPUT, -o, the shared ones, then one option
    per parameter of the op's schema."""
    deco = [
        click.argument("input_ref", nargs=-1, required=True, metavar="INPUT...")
        if op.many_inputs
        else click.argument("input_ref", metavar="INPUT"),
        click.option("-o", "--output", required=True, help="Dataset to write the next version of."),
        data_root_option,
        json_option,
        quiet_option,
        click.option(
            "--force",
            is_flag=True,
            help="Run even if the same step already produced the latest version.",
        ),
        number_option("--seed", default=0, minimum=0, help="Seed: same seed, same records."),
        click.option(
            "--allow-empty",
            is_flag=True,
            help="Write the output even if it holds no records or lost more than half "
            "of the input to engine errors (otherwise: exit 1, nothing written).",
        ),
    ]
    deco += [_option_for(name, prop) for name, prop in schema["properties"].items()]
    if op.explain:
        deco.append(
            click.option(
                "--explain",
                "explain_id",
                metavar="ID",
                help="Show the duplicate cluster of record ID in the latest version of -o NAME "
                "(what was dropped for what, and how similar); runs nothing.",
            )
        )
    return deco
