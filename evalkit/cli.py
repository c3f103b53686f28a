"""``evalkit``: score models or prediction files, write reports, gate CI on regressions."""

from __future__ import annotations

from pathlib import Path

import click

from corekit.clikit import (
    Group,
    choice_option,
    config_data_root_option,
    config_runs_root_option,
    data_root_option,
    echo_json,
    engine_options,
    engine_specs_from_options,
    json_option,
    kit_group,
    number_option,
    path_option,
    quiet_option,
    setup_logging,
    with_executor_options,
)

from .cli_gate import EXIT_CODES


class EvalGroup(Group):
    """The error contract with evalkit's exit codes: a CI system must tell "the model
    regressed" (1) from "the gate could not run" (2: bad input, 3: the tool failed)."""

    def invoke(self, ctx: click.Context):  # type: ignore[no-untyped-def]
        import sys

        verbose = bool(ctx.params.get("verbose"))
        try:
            return super().invoke(ctx)
        except click.ClickException as e:
            if verbose:
                raise
            if e.exit_code == 1:  # bad input (a ToolkitError as one line): not a regression
                e.exit_code = 2
            raise
        except (click.exceptions.Exit, SystemExit, click.Abort):
            raise
        except Exception as e:  # noqa: BLE001 - an unexpected failure is the tool's
            if verbose:
                raise
            click.echo(f"Error: evalkit failed: {type(e).__name__}: {e}", err=True)
            sys.exit(3)


@kit_group("evalkit", cls=EvalGroup, epilog=EXIT_CODES)
def cli(verbose: bool) -> None:
    """Score models or prediction files, write reports, gate CI on regressions.

    \b
    Examples:
      evalkit run pipeline.yaml                        # what `make eval` runs
      evalkit predict runs/models/tuned qa -o preds.jsonl --suite qa
      evalkit score preds.jsonl --metrics exact_match,f1 --out scored/
      evalkit gate runs/eval/tuned --baseline eval/baseline
      evalkit baseline runs/eval/tuned -o eval/baseline
      evalkit compare runs/eval/base runs/eval/tuned
    """
    setup_logging(verbose)


def _metric_list(metrics: str | None, suite: str | None) -> list[str]:
    from .suites import suite_def

    if metrics:
        return [m.strip() for m in metrics.split(",") if m.strip()]
    if suite:
        return list(suite_def(suite).metrics)
    raise click.UsageError("give --metrics or --suite")


@cli.command("score", epilog=EXIT_CODES)
@click.argument("predictions", type=click.Path(dir_okay=False))
@click.option("--metrics", help="Comma-separated metric names (evalkit metrics lists them).")
@click.option("--suite", help="Use a suite's metrics (qa, format, safety, squad, xstest).")
@click.option("--extract", help="Regex applied to outputs before exact_match/f1 (group 1 if any).")
@click.option("--regex", help="Pattern for regex_match (default: each record's `regex`).")
@click.option(
    "--truncated",
    type=click.Choice(["exclude", "score"]),
    help="Predictions cut off at max_tokens (finish_reason: length): left out of every "
    "metric (default; the safety suites' default is score) or scored as they are.",
)
@path_option(
    "--out", "out_dir", dir=True, required=True, help="Directory for items.jsonl and report.json."
)
@json_option
def score_cmd(
    predictions: str,
    metrics: str | None,
    suite: str | None,
    extract: str | None,
    regex: str | None,
    truncated: str | None,
    out_dir: str,
    as_json: bool,
) -> None:
    """Score a JSONL file of predictions, no model needed.

    Each line: `id` (or `item_id`, as prediction records name it), `output`,
    and as the metrics need them `references` (exact_match, f1), `schema` (schema_valid), `expected` comply|refuse
    (refusal_rate, over_refusal_rate), `regex` (regex_match). Writes
    OUT/items.jsonl (one line per id: each metric's value, failure reasons,
    the refusal label full|partial|none) and OUT/report.json (mean, n, 95%
    bootstrap CI per metric, with how many items it applied to). A line with
    `error`, or `finish_reason: length` (truncated), is left out of every
    metric with its reason and counted. Format metrics score only items with
    a `schema` or `task: format`.

    \b
    Examples:
      evalkit score preds.jsonl --metrics exact_match,f1 --out scored/
      evalkit score preds.jsonl --suite safety --out scored/
      evalkit score preds.jsonl --metrics exact_match --extract 'Answer: (.*)' --out s/
    """
    from corekit.runs import atomic_write_json

    from .scoring import make_report, read_predictions, score, suite_entry, write_scored

    names = _metric_list(metrics, suite)
    rows = read_predictions(predictions)
    params = {}
    if extract:
        params["exact_match"] = params["f1"] = {"extract": extract}
    if regex:
        params["regex_match"] = {"regex": regex}
    from .suites import suite_def

    policy = truncated or (suite_def(suite).truncated if suite else "exclude")
    items, aggregates = score(rows, names, params, policy)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_scored(out, "items", items, fname="items.jsonl")
    entry = suite_entry(
        suite or "predictions", aggregates, "items.jsonl", predictions, items=items,
        generation={"truncated": policy},
    )  # fmt: skip
    report = make_report([entry], None, predictions=predictions)
    atomic_write_json(out / "report.json", report)
    if as_json:
        echo_json(report)
        return
    _print_aggregates(aggregates, entry["counts"])
    click.echo(f"wrote {out / 'items.jsonl'} and {out / 'report.json'}")


def _print_aggregates(aggregates: dict, counts: dict) -> None:
    click.echo(
        f"{counts['items']} predictions: {counts['scored']} scored, {counts['errors']} errors, "
        f"{counts['truncated']} truncated (left out)"
        if counts["scored"] < counts["items"]
        else f"{counts['items']} predictions"
    )
    for name, a in aggregates.items():
        if a["value"] is None:
            click.echo(f"  {name:<22} -      (no item applies)")
            continue
        ci = f"  95% CI [{a['ci95'][0]:.3f}, {a['ci95'][1]:.3f}]" if a.get("ci95") else ""
        arrow = "higher is better" if a["higher_is_better"] else "lower is better"
        skipped = f", {a['skipped']} not applicable" if a.get("skipped") else ""
        click.echo(f"  {name:<22} {a['value']:.4f}  n={a['n']}{skipped}{ci}  ({arrow})")


@cli.command("predict", epilog=EXIT_CODES)
@click.argument("target", metavar="MODEL")
@click.argument("evalset")
@path_option("-o", "--output", required=True, help="Predictions JSONL to write.")
@click.option(
    "--suite",
    help="EVALSET is a built-in suite name (qa, format, safety) or, with "
    "squad/xstest, a file in that format.",
)
@choice_option(
    "--format",
    "fmt",
    choices=["jsonl", "squad", "xstest"],
    default="jsonl",
    help="Format of an EVALSET file.",
)
@number_option("--max-tokens", default=128, minimum=1)
@number_option("--temperature", default=0.0, minimum=0, kind=float)
@click.option("--seed", default=0, show_default=True, type=int)
@engine_options(("engine",))
@data_root_option
@quiet_option
def predict_cmd(
    target: str,
    evalset: str,
    output: str,
    suite: str | None,
    fmt: str,
    max_tokens: int,
    temperature: float,
    seed: int,
    data_root: str,
    quiet: bool,
    **kw,
) -> None:  # type: ignore[no-untyped-def]
    """Run MODEL on the items of EVALSET and write one prediction per item.

    MODEL is a model directory, a trainkit run or adapter directory (merged
    once into its base), or a served name (openai backend). EVALSET is a
    dataset version, a file, or a suite name with --suite. Greedy by
    default; requests are cached and resumable (runs/cache), keyed by the
    model's content fingerprint, the prompt and every sampling parameter.

    \b
    Examples:
      evalkit predict runs/models/tuned qa --suite qa -o preds.jsonl
      evalkit predict runs/train/sft evalset@v1 -o preds.jsonl --backend transformers
      evalkit predict my-model prompts.csv --format xstest -o p.jsonl \\
          --backend openai --base-url http://127.0.0.1:8000/v1
    """
    import orjson

    from corekit.engines.pool import EnginePool
    from corekit.runs import atomic_write_bytes

    from .predict import model_dir, predict
    from .suites import resolve

    if suite and evalset == suite:  # a built-in suite's own items
        items = resolve(suite, data_root).items
    elif suite:  # the suite's format and defaults, on these items
        items = resolve({"name": suite, "suite": suite, "path": evalset}, data_root).items
    else:
        items = resolve({"name": "items", "path": evalset, "format": fmt}, data_root).items
    if kw.get("model"):
        raise click.UsageError("give the model as the MODEL argument, not --model")
    path, info = model_dir(target, Path(kw["runs_root"]) / "eval" / "models")
    spec = engine_specs_from_options({**kw, "model": path})["engine"]
    pool = EnginePool(Path(kw["runs_root"]) / "cache", quiet=quiet)
    try:
        from .stage import start_engine

        engine = start_engine(pool, spec, kw["batch_size"], "evalkit predict")
        preds = predict(
            engine,
            items,
            max_tokens=max_tokens,
            temperature=temperature,
            seed=seed,
            model_name=target,
        )
    finally:
        pool.close()
    atomic_write_bytes(Path(output), b"".join(orjson.dumps(p) + b"\n" for p in preds))
    click.echo(f"wrote {output}: {len(preds)} predictions from {target}")


@cli.command("run", epilog=EXIT_CODES)
@click.argument("config", default="pipeline.yaml", required=False, type=click.Path(dir_okay=False))
@config_data_root_option
@config_runs_root_option
@with_executor_options
@quiet_option
@json_option
def run_cmd(
    config: str,
    data_root: str | None,
    runs_root: str | None,
    executor: str | None,
    ray_address: str | None,
    quiet: bool,
    as_json: bool,
) -> None:
    """Run the eval: section of CONFIG: every model on every suite, reports, gate.

    Writes one report per model (schemas/eval_report.json) with per-item
    files, summary.md (for a CI job summary), report.html (charts, base vs
    tuned, training curves) and, with eval.gate.baseline, gate.xml (JUnit);
    the gate reads eval.gate exactly as `evalkit gate -c` does. Exit 1 when
    the gate fails, 2 on bad input, 3 when an engine cannot start.

    \b
    Examples:
      evalkit run pipeline.yaml
      evalkit run pipeline.yaml --runs-root /tmp/runs -q
      evalkit run --executor ray --ray-address auto    # predictions on a Ray cluster
    """
    from corekit.project import Project

    from .render import format_table, side_by_side, verdict_line
    from .scoring import read_report
    from .stage import run_eval

    project = Project.load(config, data_root=data_root, runs_root=runs_root)
    project = project.with_executor(executor, ray_address)
    res = run_eval(project, quiet=quiet)
    reports = {k: read_report(v) for k, v in res.reports.items()}
    if as_json:
        echo_json(
            {
                "reports": {k: str(v) for k, v in res.reports.items()},
                "written": [str(p) for p in res.written],
                "gate_failed": res.gate_failed,
                "gate_inconclusive": res.gate.inconclusive if res.gate else None,
                "improve_failed": res.improve.failed if res.improve else None,
            }
        )
    else:
        labels = list(reports)
        click.echo("suite/metric".ljust(28) + "".join(x.rjust(12) for x in labels))
        for suite, metric, by in side_by_side(reports):
            vals = "".join(
                (f"{by[x]['value']:.3f}" if x in by and by[x]["value"] is not None else "-").rjust(
                    12
                )
                for x in labels
            )
            click.echo(f"{suite}/{metric}".ljust(28) + vals)
        if res.improve is not None:
            click.echo(f"\nwhat tuning must achieve, against {res.improve_over}:")
            click.echo(format_table(res.improve))
            click.echo(verdict_line(res.improve).replace("gate:", "improve gate:", 1))
        if res.gate is not None:
            click.echo("\nno regression against the baseline:" if res.improve else "")
            click.echo(format_table(res.gate))
            click.echo(verdict_line(res.gate))
        for note in res.notes:
            click.echo(note)
        for p in res.written:
            click.echo(f"wrote {p}")
    if res.gate_failed:
        raise SystemExit(1)


def _register_gate() -> None:
    from . import cli_gate

    for command in cli_gate.COMMANDS:
        cli.add_command(command)


_register_gate()


@cli.command("metrics")
@json_option
def metrics_cmd(as_json: bool) -> None:
    """List the metrics: name, direction, what it measures.

    \b
    Examples:
      evalkit metrics
    """
    from .metrics import METRICS

    rows = [
        {
            "name": m.name,
            "higher_is_better": m.higher_is_better,
            "per_item": m.per_item is not None,
            "summary": m.summary,
        }
        for m in METRICS.values()
    ]
    if as_json:
        echo_json(rows)
        return
    for r in rows:
        click.echo(
            f"{r['name']:<18} {'higher' if r['higher_is_better'] else 'lower ':<6}  {r['summary']}"
        )


@cli.command("suites")
def suites_cmd() -> None:
    """List the built-in suites and their metrics.

    \b
    Examples:
      evalkit suites
    """
    from .suites import SUITES

    for s in SUITES.values():
        click.echo(f"{s.name:<8} {','.join(s.metrics):<40} {s.summary}")


def main() -> None:
    cli(prog_name="evalkit")


if __name__ == "__main__":
    main()
