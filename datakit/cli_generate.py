"""``datakit generate <op>``, ``datakit judge`` and ``datakit filter``.

Their options are built from the op parameter schemas in schemas/pipeline.json, so the CLI,
pipeline.yaml and the docs say the same thing about every parameter.
"""

from __future__ import annotations

import json
from typing import Any

import click

from .clikit import data_root_option, echo_json, json_option, quiet_option
from .schemas import load_schema

EXAMPLES = {
    "self_instruct": "datakit generate self-instruct seeds -o grown --model runs/models/tiny --num-instructions 100",
    "evol_instruct": "datakit generate evol-instruct seeds -o evolved --model runs/models/tiny --rounds 2",
    "respond": "datakit generate respond grown -o answers --backend openai --model llama --base-url http://127.0.0.1:8000/v1",
    "distill": "datakit generate distill prompts -o distilled --teacher-model /models/big --model /models/big",
    "augment": "datakit generate augment seeds -o rephrased --model runs/models/tiny --variants 2",
    "critique_revise": "datakit generate critique-revise answers -o safety-prefs --model runs/models/tiny",
    "preferences": "datakit generate preferences seeds -o prefs --model runs/models/tiny --temperatures 0.3,0.7,1.0",
    "judge": "datakit judge answers -o judged --model runs/models/tiny",
    "filter": "datakit filter judged -o good --min-quality 0.7",
}


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
    if prop.get("type") == "integer":
        return click.option(flag, name, type=int, default=None, help=help_)
    if prop.get("type") == "number":
        return click.option(flag, name, type=float, default=None, help=help_)
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
        return click.option(
            flag,
            name,
            multiple=True,
            default=None,
            help=help_ + " Repeatable.",
            callback=lambda c, p, v: list(v) or None,
        )
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


def _engine_options(f: Any) -> Any:
    opts = [
        click.option(
            "--backend",
            type=click.Choice(["vllm", "openai", "transformers"]),
            default="vllm",
            show_default=True,
            help="Engine backend.",
        ),
        click.option(
            "--model", help="Model directory (vllm, transformers) or served model name (openai)."
        ),
        click.option(
            "--base-url",
            "base_urls",
            multiple=True,
            help="openai backend: server URL, repeatable for a fleet (round-robin).",
        ),
        click.option(
            "--engine-option",
            "engine_opts",
            multiple=True,
            metavar="KEY=VALUE",
            help="Backend option (JSON value), repeatable, e.g. max_model_len=512.",
        ),
        click.option("--judge-model", help="Judge with another model (same backend)."),
        click.option("--teacher-model", help="distill: the teacher model (same backend)."),
        click.option(
            "--runs-root",
            default="runs",
            show_default=True,
            type=click.Path(file_okay=False),
            help="Where the request cache lives (runs-root/cache).",
        ),
        click.option(
            "--batch-size",
            default=256,
            show_default=True,
            type=click.IntRange(min=1),
            help="Requests per engine call (the cache is written after each).",
        ),
    ]
    for o in opts:
        f = o(f)
    return f


def _parse_engine_opts(items: tuple[str, ...]) -> dict[str, Any]:
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


def make_command(op: str, cli_name: str, needs_engine: bool) -> click.Command:
    schema = load_schema("pipeline")["definitions"][f"params_{op}"]

    def callback(
        input_ref: str,
        output: str,
        data_root: str,
        as_json: bool,
        quiet: bool,
        force: bool,
        seed: int,
        **kw: Any,
    ) -> None:
        from pathlib import Path

        from .engines import EngineSpec
        from .generate.runner import EnginePool, run_step
        from .store import DatasetStore

        params = {k: v for k, v in kw.items() if k in schema["properties"] and v is not None}
        roles: dict[str, Any] = {}
        pool = None
        if needs_engine:
            if not kw.get("model"):
                raise click.UsageError("Missing option '--model'.")
            options = _parse_engine_opts(kw["engine_opts"])
            if kw["backend"] == "openai":
                if not kw["base_urls"]:
                    raise click.UsageError("--backend openai needs --base-url.")
                options["base_url"] = (
                    list(kw["base_urls"]) if len(kw["base_urls"]) > 1 else kw["base_urls"][0]
                )
            roles["engine"] = EngineSpec(kw["backend"], kw["model"], options)
            if kw.get("judge_model"):
                roles["judge"] = EngineSpec(kw["backend"], kw["judge_model"], options)
            if kw.get("teacher_model"):
                roles["teacher"] = EngineSpec(kw["backend"], kw["teacher_model"], options)
            pool = EnginePool(Path(kw["runs_root"]) / "cache", quiet=quiet)
        try:
            res = run_step(
                DatasetStore(data_root),
                output,
                op,
                input_ref,
                params,
                roles,
                pool,
                seed=seed,
                quiet=quiet,
                force=force,
                batch_size=kw.get("batch_size", 256),
            )
        finally:
            if pool is not None:
                pool.close()
        st = res.summary()
        if as_json:
            echo_json(st)
        else:
            from .cli import _step_line

            click.echo(_step_line(st))

    helptext = {
        "self_instruct": "Grow new instructions from seed instructions (Self-Instruct).",
        "evol_instruct": "Evolve instructions in depth and breadth, with elimination (Evol-Instruct).",
        "respond": "Answer every prompt of INPUT with an engine (chat or instruction records).",
        "distill": "A teacher answers INPUT's prompts; student-format chat records.",
        "augment": "Rephrase instructions keeping input and output, with a similarity check.",
        "critique_revise": "Critique responses against principles and revise them into preference pairs.",
        "preferences": "Sample responses at several temperatures, judge them, pair best with worst.",
        "judge": "Score every record with an LLM judge (rubric scores into meta.judge).",
        "filter": "Keep records whose judge quality is at least --min-quality.",
    }[op]
    helptext += (
        "\n\nReads dataset version INPUT, writes the next version of -o NAME (with"
        " rejects.jsonl: every dropped record and why)."
        + (
            " Engine calls are cached, so an interrupted run resumes and a repeat costs nothing."
            if needs_engine
            else ""
        )
        + "\n\n\b\nExamples:\n  "
        + EXAMPLES[op]
    )
    cmd = click.Command(cli_name, callback=callback, help=helptext)
    deco = [
        click.argument("input_ref", metavar="INPUT"),
        click.option("-o", "--output", required=True, help="Dataset to write the next version of."),
        data_root_option,
        json_option,
        quiet_option,
        click.option(
            "--force",
            is_flag=True,
            help="Run even if the same step already produced the latest version.",
        ),
        click.option(
            "--seed",
            default=0,
            show_default=True,
            type=click.IntRange(min=0),
            help="Seed: same seed, same records.",
        ),
    ]
    for name, prop in schema["properties"].items():
        deco.append(_option_for(name, prop))
    f = callback
    for d in deco:
        f = d(f)
    if needs_engine:
        f = _engine_options(f)
    cmd.params = list(getattr(f, "__click_params__", []))
    return cmd
