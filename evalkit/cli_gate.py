"""``evalkit``'s gate and human-comparison commands: gate, baseline, compare, tally; the
``evalkit`` group (cli.py) adds them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from corekit.clikit import (
    data_root_option,
    echo_json,
    json_option,
    number_option,
    path_option,
)

from .gate import GateSettings

EXIT_CODES = """\b
Exit codes (every command):
  0  pass / done
  1  the gate failed: a regression, a floor, too little coverage, a changed
     suite (or an inconclusive row with `inconclusive: fail`)
  2  usage error or unreadable input (bad flag, missing or malformed file,
     unknown metric, suite or rule)
  3  the tool itself failed (an engine that would not start, an I/O error)"""

_GATE = GateSettings()  # the defaults, stated once (evalkit/gate.py; the schema's test checks them)


def _rule_map(rules: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """--rule METRIC:max_drop|min|max=NUMBER, each checked (a bad one exits 2)."""
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
    return rule_map


def _settings(section: dict[str, Any], rules: tuple[str, ...], **flags: Any) -> Any:
    """The gate's settings: the config's eval.gate (``-c``), then the flags given."""
    from .gate import gate_settings

    return gate_settings(section, rules=_rule_map(rules), **flags)


def _write_gate(
    result: Any, report: str, junit: str | None, markdown: str | None, as_json: bool
) -> None:
    """The verdict: JUnit and Markdown files when asked, then JSON or the table."""
    from corekit.runs import atomic_write_bytes

    from .render import format_table, verdict_line
    from .render import junit as to_junit
    from .render import markdown as to_md
    from .scoring import read_report

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


@click.command("gate", epilog=EXIT_CODES)
@click.argument("report", type=click.Path())
@click.option(
    "--baseline",
    type=click.Path(),
    help="Baseline report (or its directory); default eval.gate.baseline of -c.",
)
@number_option(
    "--max-drop",
    help=f"Allowed drop for metrics without a rule [default: {_GATE.max_drop}].",
    minimum=0,
    kind=float,
)
@click.option(
    "--alpha",
    type=click.FloatRange(0, 0.5, min_open=True),
    help=f"Family-wise significance level of the paired tests [default: {_GATE.alpha}].",
)
@number_option(
    "--min-coverage",
    help="Share of the baseline's items the report must have a value for "
    f"[default: {_GATE.min_coverage}].",
    minimum=0,
    maximum=1,
    kind=float,
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
@path_option("-c", "--config", help="Read eval.gate of this pipeline.yaml (flags override it).")
@path_option("--junit", help="Also write JUnit XML here.")
@path_option("--markdown", help="Also write a Markdown table here.")
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
    from corekit.project import Project

    from .gate import gate

    project = Project.load(config) if config else None
    settings = _settings(
        project.gate if project else {},
        rules,
        baseline=baseline,
        alpha=alpha,
        max_drop=max_drop,
        min_coverage=min_coverage,
        inconclusive=inconclusive,
        correction=correction,
        allow_suite_change=allow_suite_change,
    )
    if not settings.baseline:
        raise click.UsageError("give --baseline (or -c with eval.gate.baseline)")
    base_path = settings.baseline
    if project and not baseline:  # the config's baseline is relative to the config
        base_path = str(project.resolve(settings.baseline))
    result = gate(report, base_path, settings)
    _write_gate(result, report, junit, markdown, as_json)
    if result.failed:
        raise SystemExit(1)


@click.command("baseline")
@click.argument("report", type=click.Path())
@path_option(
    "-o",
    "--out",
    dir=True,
    required=True,
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


@click.command("compare")
@click.argument("a", type=click.Path())
@click.argument("b", type=click.Path())
@click.option(
    "--human",
    "human",
    metavar="NAME",
    help="Also write blind pairwise tasks as dataset NAME for `datakit review NAME`.",
)
@number_option("--limit", help="At most this many human tasks.", minimum=1)
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


@click.command("tally")
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


COMMANDS = [gate_cmd, baseline_cmd, compare_cmd, tally_cmd]
