"""``evalkit``: score models or prediction files, write reports, gate CI on regressions."""

from __future__ import annotations

from pathlib import Path

import click

from corekit.clikit import (
    Group,
    config_data_root_option,
    config_runs_root_option,
    data_root_option,
    echo_json,
    engine_options,
    engine_specs_from_options,
    json_option,
    quiet_option,
    setup_logging,
    verbose_option,
)
from corekit.errors import ToolkitError

from .gate import GateSettings

EXIT_CODES = """\b
Exit codes (every command):
  0  pass / done
  1  the gate failed: a regression, a floor, too little coverage, a changed
     suite (or an inconclusive row with `inconclusive: fail`)
  2  usage error or unreadable input (bad flag, missing or malformed file,
     unknown metric, suite or rule)
  3  the tool itself failed (an engine that would not start, an I/O error)"""


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


@click.group(
    cls=EvalGroup, context_settings={"help_option_names": ["-h", "--help"]}, epilog=EXIT_CODES
)
@verbose_option
@click.version_option(package_name="finetune-toolkit", prog_name="evalkit")
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
    from .suites import SUITES

    if metrics:
        return [m.strip() for m in metrics.split(",") if m.strip()]
    if suite:
        if suite not in SUITES:
            raise ToolkitError(f"unknown suite {suite!r}; choose one of: {', '.join(SUITES)}")
        return list(SUITES[suite].metrics)
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
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="Directory for items.jsonl and report.json.",
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
    from .suites import SUITES

    policy = truncated or (SUITES[suite].truncated if suite in SUITES else "exclude")
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
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False),
    help="Predictions JSONL to write.",
)
@click.option(
    "--suite",
    help="EVALSET is a built-in suite name (qa, format, safety) or, with "
    "squad/xstest, a file in that format.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["jsonl", "squad", "xstest"]),
    default="jsonl",
    show_default=True,
    help="Format of an EVALSET file.",
)
@click.option("--max-tokens", default=128, show_default=True, type=click.IntRange(min=1))
@click.option("--temperature", default=0.0, show_default=True, type=click.FloatRange(min=0))
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
    from .suites import SUITES, load_items

    if suite in ("qa", "format", "safety") and evalset == suite:
        sdef = SUITES[suite]
        items = load_items(sdef.path, sdef.format, data_root)
    else:
        items = load_items(evalset, SUITES[suite].format if suite in SUITES else fmt, data_root)
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
@quiet_option
@json_option
def run_cmd(
    config: str, data_root: str | None, runs_root: str | None, quiet: bool, as_json: bool
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
    """
    from .gate import format_table, verdict_line
    from .render import side_by_side
    from .scoring import read_report
    from .stage import run_eval

    res = run_eval(config, runs_root=runs_root, data_root=data_root, quiet=quiet)
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


_GATE = GateSettings()  # the defaults, stated once (evalkit/gate.py; the schema's test checks them)


@cli.command("gate", epilog=EXIT_CODES)
@click.argument("report", type=click.Path())
@click.option(
    "--baseline",
    type=click.Path(),
    help="Baseline report (or its directory); default eval.gate.baseline of -c.",
)
@click.option(
    "--max-drop",
    type=click.FloatRange(min=0),
    help=f"Allowed drop for metrics without a rule [default: {_GATE.max_drop}].",
)
@click.option(
    "--alpha",
    type=click.FloatRange(0, 0.5, min_open=True),
    help=f"Family-wise significance level of the paired tests [default: {_GATE.alpha}].",
)
@click.option(
    "--min-coverage",
    type=click.FloatRange(0, 1),
    help="Share of the baseline's items the report must have a value for "
    f"[default: {_GATE.min_coverage}].",
)
@click.option(
    "--inconclusive",
    type=click.Choice(["warn", "fail"]),
    help="A row that cannot detect its max_drop at this n: warn or fail "
    f"[default: {_GATE.inconclusive}].",
)
@click.option(
    "--correction",
    type=click.Choice(["holm", "none"]),
    help=f"Multiple-testing correction across the gated metrics [default: {_GATE.correction}].",
)
@click.option(
    "--allow-suite-change",
    is_flag=True,
    default=None,
    help="Gate a suite whose items differ from the baseline's (on the unchanged items).",
)
@click.option(
    "--rule",
    "rules",
    multiple=True,
    metavar="METRIC:KEY=VALUE",
    help="Per-metric rule, repeatable: f1:max_drop=0.05, safety/refusal_rate:min=0.8.",
)
@click.option(
    "-c",
    "--config",
    type=click.Path(dir_okay=False),
    help="Read eval.gate of this pipeline.yaml (flags override it).",
)
@click.option("--junit", type=click.Path(dir_okay=False), help="Also write JUnit XML here.")
@click.option(
    "--markdown", type=click.Path(dir_okay=False), help="Also write a Markdown table here."
)
@json_option
def gate_cmd(
    report: str,
    baseline: str | None,
    max_drop: float | None,
    alpha: float | None,
    min_coverage: float | None,
    inconclusive: str | None,
    correction: str | None,
    allow_suite_change: bool | None,
    rules: tuple[str, ...],
    config: str | None,
    junit: str | None,
    markdown: str | None,
    as_json: bool,
) -> None:
    """Fail (exit 1) when REPORT regresses against BASELINE.

    Coverage first: items are paired by id and content hash; baseline items
    the report lacks, whose content changed, or that have no value (engine
    error, truncated) count against min_coverage, and a metric that cannot be
    computed fails. Then the paired test on the shared items: McNemar's exact
    test for pass/fail metrics, a sign-flip permutation test for continuous
    ones, Holm-corrected across metrics. A metric regresses when it is worse
    by more than its max_drop and the drop is significant; a row whose n is
    too small to detect its max_drop is inconclusive (a warning, or a failure
    with --inconclusive fail). A min/max floor fails on its own; a suite whose
    items differ fails unless --allow-suite-change.

    \b
    Examples:
      evalkit gate runs/eval/tuned --baseline eval/baseline
      evalkit gate runs/eval/tuned -c pipeline.yaml      # eval.gate's settings
      evalkit gate report.json --baseline base.json --rule f1:max_drop=0.05 --junit gate.xml
    """
    from corekit.runs import atomic_write_bytes

    from .gate import format_table, gate, gate_settings, verdict_line
    from .render import junit as to_junit
    from .render import markdown as to_md
    from .scoring import read_report

    section: dict = {}
    if config:
        from datakit.config import load_config

        section = (load_config(config).get("eval") or {}).get("gate") or {}
    rule_map: dict[str, dict[str, float]] = {}
    for r in rules:
        metric, _, kv = r.partition(":")
        key, eq, val = kv.partition("=")
        if not metric or not eq or key not in ("max_drop", "min", "max"):
            raise click.BadParameter(
                f"expected METRIC:max_drop|min|max=NUMBER, got {r!r}", param_hint="--rule"
            )
        try:
            rule_map.setdefault(metric, {})[key] = float(val)
        except ValueError:
            raise click.BadParameter(f"{val!r} is not a number", param_hint="--rule") from None
    settings = gate_settings(
        section,
        baseline=baseline,
        alpha=alpha,
        max_drop=max_drop,
        min_coverage=min_coverage,
        inconclusive=inconclusive,
        correction=correction,
        allow_suite_change=allow_suite_change,
        rules=rule_map,
    )
    if not settings.baseline:
        raise click.UsageError("give --baseline (or -c with eval.gate.baseline)")
    base_path = settings.baseline
    if config and not baseline:
        from corekit.models import resolve_path

        base_path = str(resolve_path(Path(config).resolve().parent, settings.baseline))
    result = gate(report, base_path, settings)
    if junit:
        atomic_write_bytes(Path(junit), to_junit(result).encode())
    if markdown:
        atomic_write_bytes(Path(markdown), to_md({"current": read_report(report)}, result).encode())
    if as_json:
        from dataclasses import asdict

        echo_json(
            {
                "failed": result.failed,
                "inconclusive": result.inconclusive,
                "rows": [asdict(r) for r in result.rows],
                "new_suites": result.new_suites,
                "warnings": result.warnings,
            }
        )
    else:
        click.echo(format_table(result))
        click.echo(verdict_line(result))
    if result.failed:
        raise SystemExit(1)


@cli.command("baseline")
@click.argument("report", type=click.Path())
@click.option(
    "-o",
    "--out",
    required=True,
    type=click.Path(file_okay=False),
    help="Baseline directory to write (report.json and its per-item files).",
)
def baseline_cmd(report: str, out: str) -> None:
    """Bless REPORT as the baseline the gate compares against (copied with its items).

    \b
    Examples:
      evalkit baseline runs/eval/tuned -o eval/baseline && git add eval/baseline
    """
    from .gate import bless

    click.echo(f"wrote {bless(report, out)}")


@cli.command("compare")
@click.argument("a", type=click.Path())
@click.argument("b", type=click.Path())
@click.option(
    "--human",
    "human",
    metavar="NAME",
    help="Also write blind pairwise tasks as dataset NAME for `datakit review NAME`.",
)
@click.option("--limit", type=click.IntRange(min=1), help="At most this many human tasks.")
@data_root_option
@json_option
def compare_cmd(
    a: str, b: str, human: str | None, limit: int | None, data_root: str, as_json: bool
) -> None:
    """Paired per-item comparison of two reports: wins, losses, ties of B against A.

    With --human NAME, every item both models answered differently becomes a
    blind A/B task (order randomised, model names hidden) in dataset NAME;
    annotators judge them in `datakit review NAME` and `evalkit tally NAME`
    counts the verdicts.

    \b
    Examples:
      evalkit compare runs/eval/base runs/eval/tuned
      evalkit compare runs/eval/base runs/eval/tuned --human base-vs-tuned --limit 50
    """
    if human:
        from datakit.store import DatasetStore

        from .human import human_tasks

        v = human_tasks(a, b, DatasetStore(data_root), human, limit)
        click.echo(
            f"wrote {v.ref}: {v.manifest()['count']} blind pairwise tasks "
            f"(review them: datakit review {v.name}; count: evalkit tally {v.name})"
        )
    from .gate import gate
    from .scoring import read_items, read_report

    ra, rb = read_report(a), read_report(b)
    from .gate import GateSettings

    rows = gate(b, a, GateSettings(max_drop=0.0, min_coverage=0.0, allow_suite_change=True)).rows
    out = []
    for r in rows:
        sa = next((s for s in ra["suites"] if s["suite"] == r.suite), None)
        sb = next((s for s in rb["suites"] if s["suite"] == r.suite), None)
        wins = losses = ties = 0
        if sa and sb:
            ia, ib = read_items(a, sa), read_items(b, sb)
            hib = next((m for m in sa["metrics"] if m["metric"] == r.metric), {}).get(
                "higher_is_better", True
            )
            for k in ia.keys() & ib.keys():
                if r.metric in ia[k] and r.metric in ib[k]:
                    d = ib[k][r.metric] - ia[k][r.metric]
                    d = d if hib else -d
                    wins += d > 0
                    losses += d < 0
                    ties += d == 0
        out.append(
            {
                "suite": r.suite,
                "metric": r.metric,
                "a": r.baseline,
                "b": r.current,
                "delta": r.delta,
                "p_value": r.p_value,
                "wins": wins,
                "losses": losses,
                "ties": ties,
            }
        )
    if as_json:
        echo_json(out)
        return
    # p: one-sided, that B is worse than A (the gate's test); small = B regressed
    click.echo(
        f"{'suite/metric':<28}{'A':>8}{'B':>8}{'delta':>9}{'p(B<A)':>8}  wins/losses/ties of B"
    )
    for r in out:
        delta = "-" if r["delta"] is None else f"{r['delta']:+.3f}"
        name = r["suite"] + "/" + r["metric"]
        click.echo(
            f"{name:<28}{_v(r['a']):>8}{_v(r['b']):>8}{delta:>9}{_v(r['p_value']):>8}"
            f"  {r['wins']}/{r['losses']}/{r['ties']}"
        )


@cli.command("tally")
@click.argument("ref")
@data_root_option
@json_option
def tally_cmd(ref: str, data_root: str, as_json: bool) -> None:
    """Count the annotators' verdicts on the blind tasks of `compare --human`.

    B's win rate among decided tasks with its 95% Wilson interval and the
    sign test's p-value; ties and split verdicts are counted apart.

    \b
    Examples:
      evalkit tally base-vs-tuned
    """
    from datakit.store import DatasetStore

    from .human import tally

    t = tally(DatasetStore(data_root), ref)
    if as_json:
        echo_json(t)
        return
    click.echo(
        f"{t['ref']}: {t['judged']} of {t['records']} tasks judged: B won {t['b_wins']}, "
        f"A won {t['a_wins']}, {t['ties']} ties"
    )
    if "b_win_rate" in t:
        click.echo(
            f"  B's win rate {t['b_win_rate']:.3f} (95% CI {t['ci95'][0]:.3f}-{t['ci95'][1]:.3f}), "
            f"sign test p={t['p_value']}"
        )


def _v(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


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
