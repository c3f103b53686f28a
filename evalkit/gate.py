"""The regression gate: a candidate report against a baseline report, metric by metric.

Coverage before statistics. Baseline and candidate are paired by item id and by the content
hash of each item (prompt, references, schema, expected) kept in the per-item files. Items of
the baseline that the candidate lacks, whose content differs, or that have no value in the
candidate (an engine error, a truncated answer, a metric that does not apply) are counted per
metric; coverage below ``min_coverage`` of the baseline's items fails with that reason. A
metric that cannot be computed fails, it is never skipped. Suites only the candidate has are
listed as new and not gated.

Then the paired test on the items both have (evalkit.stats): McNemar's exact test for
pass/fail metrics, the sign-flip permutation test for continuous ones, Holm's adjustment
across the gated metrics. A metric regresses when it is worse by more than its ``max_drop``
*and* the adjusted drop is significant; it is ``improved`` only when the adjusted gain is
significant. A row whose guarded drop is smaller than the minimum detectable drop at that n
is ``inconclusive`` (a warning, or a failure with ``inconclusive: fail``). An absolute
``min`` (``max`` for lower-is-better metrics) fails on its own.

Provenance: a suite whose item content differs from the baseline's fails unless
``allow_suite_change``; different generation settings (temperature, max_tokens, seed, chat
template) are a warning.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from corekit.errors import ToolkitError, did_you_mean

from .metrics import METRICS
from .scoring import metric_direction, read_items, read_report

FAILING = ("regression", "below floor", "missing", "no value", "coverage", "suite changed",
           "not improved")  # fmt: skip
RULE_KEYS = ("max_drop", "min", "max", "min_gain")


def _default(key: str) -> Any:
    from corekit.config import schema_default

    return schema_default("eval", "gate", key)


@dataclass
class GateSettings:
    """The ``eval.gate`` section of pipeline.yaml; `evalkit gate`, `evalkit run` and the
    Python API all read it through :func:`gate_settings`."""

    baseline: str | None = None
    model: str | None = None
    # The defaults are the schema's (schemas/pipeline.json, eval.gate), stated there only.
    alpha: float = field(default_factory=lambda: _default("alpha"))
    max_drop: float = field(default_factory=lambda: _default("max_drop"))
    min_coverage: float = field(default_factory=lambda: _default("min_coverage"))
    rules: dict[str, dict[str, float]] = field(default_factory=dict)
    inconclusive: str = field(default_factory=lambda: _default("inconclusive"))  # warn | fail
    correction: str = field(default_factory=lambda: _default("correction"))  # holm | none
    allow_suite_change: bool = field(default_factory=lambda: _default("allow_suite_change"))
    # What tuning must achieve: METRIC (or SUITE/METRIC) -> least gain over the model
    # ``improve_over`` (default: the first of eval.models), significant under the same
    # paired test; judged in a second gate beside the baseline's.
    improve: dict[str, float] = field(default_factory=dict)
    improve_over: str | None = None

    def rule(self, suite: str, metric: str) -> dict[str, float]:
        """The rule for SUITE/METRIC, else for METRIC, else none."""
        return self.rules.get(f"{suite}/{metric}") or self.rules.get(metric) or {}


def gate_settings(section: dict[str, Any] | None = None, **overrides: Any) -> GateSettings:
    """GateSettings from an ``eval.gate`` mapping, then ``overrides`` (None leaves the value
    as the section or the default has it; ``rules`` are merged, overrides last)."""
    section = dict(section or {})
    known = {f.name for f in fields(GateSettings)}
    unknown = set(section) - known
    if unknown:
        raise ToolkitError(f"eval.gate: unknown key(s) {', '.join(sorted(unknown))}")
    s = GateSettings(**{k: v for k, v in section.items() if k not in ("rules", "improve")})
    s.rules = {k: dict(v) for k, v in (section.get("rules") or {}).items()}
    s.improve = {k: float(v) for k, v in (section.get("improve") or {}).items()}
    for k, v in overrides.items():
        if v is None:
            continue
        if k == "rules":
            for metric, rule in v.items():
                s.rules.setdefault(metric, {}).update(rule)
        else:
            setattr(s, k, v)
    if s.inconclusive not in ("warn", "fail"):
        raise ToolkitError(f"eval.gate.inconclusive: {s.inconclusive!r} is not warn or fail")
    if s.correction not in ("holm", "none"):
        raise ToolkitError(f"eval.gate.correction: {s.correction!r} is not holm or none")
    for metric, rule in s.rules.items():
        bad = set(rule) - set(RULE_KEYS)
        if bad:
            raise ToolkitError(
                f"eval.gate.rules.{metric}: unknown key(s) {', '.join(sorted(bad))} "
                f"(use {', '.join(RULE_KEYS)})"
            )
    return s


def improve_settings(s: GateSettings) -> GateSettings:
    """The second gate's settings: the ``improve`` gains as ``min_gain`` rules on top of
    the rules (max_drop guards still apply against the base model)."""
    from dataclasses import replace

    rules = {k: dict(v) for k, v in s.rules.items()}
    for metric, gain in s.improve.items():
        rules.setdefault(metric, {})["min_gain"] = gain
    return replace(s, rules=rules, improve={}, min_coverage=s.min_coverage)


@dataclass
class Row:
    suite: str
    metric: str
    baseline: float | None
    current: float | None
    delta: float | None
    p_value: float | None  # one-sided p that the candidate is worse (Holm-adjusted)
    paired_n: int
    test: str
    verdict: str  # pass | improved | inconclusive | regression | below floor | missing | ...
    note: str = ""
    coverage: dict[str, Any] = field(default_factory=dict)
    mdd: float | None = None  # minimum detectable drop at this n and level
    ci95: list[float] | None = None  # bootstrap interval of the mean difference
    p_raw: float | None = None
    p_better: float | None = None  # one-sided p that it is better (Holm-adjusted)
    failing: bool = False


@dataclass
class GateResult:
    rows: list[Row]
    settings: GateSettings
    new_suites: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return any(r.failing for r in self.rows)

    @property
    def inconclusive(self) -> int:
        return sum(r.verdict == "inconclusive" for r in self.rows)


def failed(result: GateResult) -> bool:
    return result.failed


def _suites(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["suite"]: s for s in report["suites"]}


def check_rules(rules: dict[str, dict[str, Any]], reports: list[dict[str, Any]]) -> None:
    """A rule for a metric or suite the reports do not have is an error naming the closest
    match (a typo must not switch a safety floor off)."""
    suites = {s["suite"] for r in reports for s in r["suites"]}
    metrics = {m["metric"] for r in reports for s in r["suites"] for m in s["metrics"]}
    pairs = {
        f"{s['suite']}/{m['metric']}" for r in reports for s in r["suites"] for m in s["metrics"]
    }
    for key in rules:
        suite, slash, metric = key.rpartition("/")
        if slash and suite not in suites:
            raise ToolkitError(
                f"gate rule {key!r}: no suite {suite!r} in the reports"
                + did_you_mean(suite, suites, "suites")
            )
        if (slash and key not in pairs) or (not slash and metric not in metrics):
            raise ToolkitError(
                f"gate rule {key!r}: no metric {key!r} in the reports"
                + did_you_mean(key, pairs if slash else metrics, "metrics")
            )


def gate(
    report_path: str | Path,
    baseline_path: str | Path,
    settings: GateSettings | None = None,
) -> GateResult:
    """Compare a report with a baseline report (see the module doc)."""
    report, baseline = read_report(report_path), read_report(baseline_path)
    return compare(
        report,
        baseline,
        lambda suite: read_items(report_path, suite),
        lambda suite: read_items(baseline_path, suite),
        settings or GateSettings(),
    )


ItemsOf = Callable[[dict[str, Any]], dict[str, dict[str, Any]]]


def compare(
    report: dict[str, Any],
    baseline: dict[str, Any],
    report_items: ItemsOf,
    baseline_items: ItemsOf,
    s: GateSettings,
) -> GateResult:
    """The gate on reports in memory; ``*_items(suite)`` gives a suite's per-item rows."""
    check_rules(s.rules, [report, baseline])
    cur_suites, base_suites = _suites(report), _suites(baseline)
    result = GateResult([], s, new_suites=[n for n in cur_suites if n not in base_suites])
    result.warnings += _provenance_warnings(report, baseline)
    tested: list[tuple[Row, list[float], list[float], bool, bool]] = []
    for sname, bsuite in base_suites.items():
        csuite = cur_suites.get(sname)
        b_items = baseline_items(bsuite)
        c_items = report_items(csuite) if csuite else {}
        if csuite is None:
            result.warnings.append(f"{sname}: the baseline has this suite, the report does not")
        changed = _suite_changed(bsuite, csuite, b_items, c_items)
        if changed and not s.allow_suite_change:
            result.rows.append(
                Row(sname, "*", None, None, None, None, 0, "-", "suite changed", changed)
            )
            continue
        if changed:
            result.warnings.append(f"{sname}: {changed} (allowed: --allow-suite-change)")
        cur_m = {m["metric"]: m for m in (csuite or {}).get("metrics", [])}
        for b in bsuite["metrics"]:
            metric = b["metric"]
            if metric in METRICS and not METRICS[metric].gated:
                continue  # e.g. length: shown in reports, neither better nor worse
            rule = s.rule(sname, metric)
            hib = metric_direction(metric, b)
            c = cur_m.get(metric)
            if c is None:
                result.rows.append(
                    Row(sname, metric, b["value"], None, None, None, 0, "-", "missing",
                        "the baseline has it, the report does not")
                )  # fmt: skip
                continue
            if b["value"] is None or c["value"] is None:
                who = " and ".join(
                    x for x, v in (("baseline", b["value"]), ("report", c["value"])) if v is None
                )
                result.rows.append(
                    Row(sname, metric, b["value"], c["value"], None, None, 0, "-", "no value",
                        f"cannot be computed in the {who} (no item has a value)")
                )  # fmt: skip
                continue
            per_item = metric not in METRICS or METRICS[metric].per_item is not None
            if not per_item:
                result.rows.append(_corpus_row(sname, metric, b, c, hib, rule, s))
                continue
            row, bv, cv = _paired(sname, metric, b, c, b_items, c_items, s)
            if row.verdict == "coverage":
                result.rows.append(row)
                continue
            binary = METRICS[metric].binary if metric in METRICS else False
            _test(row, bv, cv, hib, binary)
            tested.append((row, bv, cv, hib, binary))
            result.rows.append(row)
    _decide(tested, s)
    for r in result.rows:
        r.failing = r.verdict in FAILING or (
            r.verdict == "inconclusive" and s.inconclusive == "fail"
        )
    for r in result.rows:
        if r.metric != "*" and r.verdict not in ("missing", "no value", "suite changed"):
            _floor(r, s)
    return result


def _test(row: Row, bv: list[float], cv: list[float], hib: bool, binary: bool) -> None:
    """The paired test of one metric into ``row``: McNemar's exact test for 0/1 values, a
    sign-flip permutation test otherwise; the one-sided p-values and the delta's 95% CI."""
    from . import stats

    if binary:
        pw, pb, worse, better = stats.mcnemar(bv, cv, hib)
        row.test = f"McNemar exact ({worse} worse, {better} better)"
    else:
        pw, pb = stats.sign_flip(bv, cv, hib)
        exact = len(bv) <= stats.EXACT_MAX_N
        row.test = "sign-flip permutation" + (" (exact)" if exact else f" ({stats.MC_DRAWS} draws)")
    row.p_raw, row.p_better = pw, pb
    row.ci95 = stats.bootstrap_delta_ci(bv, cv)


def _paired(
    sname: str,
    metric: str,
    b: dict[str, Any],
    c: dict[str, Any],
    b_items: dict[str, dict[str, Any]],
    c_items: dict[str, dict[str, Any]],
    s: GateSettings,
) -> tuple[Row, list[float], list[float]]:
    """The row with its coverage, and the paired values."""
    base_ids = [i for i, it in b_items.items() if metric in it]
    cov: dict[str, Any] = {"baseline": len(base_ids), "paired": 0, "missing": 0, "changed": 0}
    bv, cv = [], []
    for i in base_ids:
        ci = c_items.get(i)
        if ci is None:
            cov["missing"] += 1
            continue
        bh, ch = b_items[i].get("hash"), ci.get("hash")
        if bh and ch and bh != ch:
            cov["changed"] += 1
            continue
        if metric not in ci:
            why = ci.get("excluded") or "not applicable"
            why = why.split(":", 1)[0]
            cov.setdefault("no_value", {})
            cov["no_value"][why] = cov["no_value"].get(why, 0) + 1
            continue
        bv.append(float(b_items[i][metric]))
        cv.append(float(ci[metric]))
    cov["paired"] = len(bv)
    denominator = cov["baseline"] - (cov["changed"] if s.allow_suite_change else 0)
    share = len(bv) / denominator if denominator else 0.0
    cov["share"] = round(share, 4)
    delta = (sum(cv) - sum(bv)) / len(bv) if bv else None
    row = Row(sname, metric, b["value"], c["value"], None if delta is None else round(delta, 4),
              None, len(bv), "-", "pass", coverage=cov)  # fmt: skip
    if not bv or share < s.min_coverage:
        row.verdict = "coverage"
        row.note = f"coverage {share:.0%} < min_coverage {s.min_coverage:.0%}"
    return row, bv, cv


def _decide(
    tested: list[tuple[Row, list[float], list[float], bool, bool]], s: GateSettings
) -> None:
    """Holm across the tested rows, then each row's verdict."""
    from . import stats

    m = len(tested)
    if s.correction == "holm":
        worse = stats.holm([t[0].p_raw for t in tested])
        better = stats.holm([t[0].p_better for t in tested])
    else:
        worse = [t[0].p_raw for t in tested]
        better = [t[0].p_better for t in tested]
    # the level the first Holm step tests at: what a single real drop among m must reach
    level = s.alpha / m if (m and s.correction == "holm") else s.alpha
    for (row, bv, cv, hib, binary), pw, pb in zip(tested, worse, better, strict=True):
        row.p_value, row.p_better = round(pw, 6), round(pb, 6)
        rule = s.rule(row.suite, row.metric)
        max_drop = float(rule.get("max_drop", s.max_drop))
        diffs = [(c - b) if hib else (b - c) for b, c in zip(bv, cv, strict=True)]
        row.mdd = stats.min_detectable_drop(diffs, len(bv), level, binary)
        worse_by = -row.delta if hib else row.delta
        if "min_gain" in rule:  # what tuning must achieve: a gain this big, significant
            gain, need = -worse_by, float(rule["min_gain"])
            if gain >= need and pb < s.alpha:
                row.verdict = "improved"
            else:
                row.verdict = "not improved"
                row.note = f"better by {gain:+.3f}, needs {need:+.3f} with p<{s.alpha} (p={pb:.3g})"
            continue
        if worse_by > max_drop and pw < s.alpha:
            row.verdict = "regression"
            row.note = f"worse by {worse_by:.3f} > max_drop {max_drop}"
        elif -worse_by > 0 and pb < s.alpha:
            row.verdict = "improved"
        elif (max_drop > 0 and row.mdd > max_drop) or math.isinf(row.mdd):
            row.verdict = "inconclusive"
            row.note = (
                f"cannot detect a drop of {max_drop} at n={len(bv)} "
                f"(minimum detectable {mdd_text(row.mdd)})"
            )
        elif worse_by > max_drop:
            row.note = f"worse by {worse_by:.3f}, not significant (p={pw:.3g})"


def _corpus_row(
    sname: str, metric: str, b: dict[str, Any], c: dict[str, Any], hib: bool,
    rule: dict[str, Any], s: GateSettings,
) -> Row:  # fmt: skip
    """A corpus metric (distinct-n, self-similarity) has no per-item pairs: its drop is
    compared with max_drop, untested."""
    delta = c["value"] - b["value"]
    worse_by = -delta if hib else delta
    max_drop = float(rule.get("max_drop", s.max_drop))
    row = Row(sname, metric, b["value"], c["value"], round(delta, 4), None, 0,
              "none (corpus metric)", "pass")  # fmt: skip
    if "min_gain" in rule:  # no per-item pairs to test: the gain itself must be there
        if -worse_by < float(rule["min_gain"]):
            row.verdict = "not improved"
            row.note = f"better by {-worse_by:+.3f}, needs {float(rule['min_gain']):+.3f}"
        else:
            row.verdict = "improved"
    elif worse_by > max_drop:
        row.verdict, row.note = "regression", f"worse by {worse_by:.3f} > max_drop {max_drop}"
    return row


def _floor(r: Row, s: GateSettings) -> None:
    rule = s.rule(r.suite, r.metric)
    hib = metric_direction(r.metric, {})
    floor = rule.get("min") if hib else rule.get("max")
    if floor is None or r.current is None:
        return
    if (hib and r.current < floor) or (not hib and r.current > floor):
        r.verdict, r.note, r.failing = "below floor", f"{'min' if hib else 'max'} {floor}", True


def _suite_changed(
    bsuite: dict[str, Any],
    csuite: dict[str, Any] | None,
    b_items: dict[str, dict[str, Any]],
    c_items: dict[str, dict[str, Any]],
) -> str:
    """Why the candidate's suite is not the baseline's questions ('' when it is). Items the
    candidate lacks are a coverage matter, not a change; an item whose content hash differs,
    or one the baseline never had, is a change. Reports without hashes are not judged."""
    if csuite is None:
        return ""
    bh, ch = bsuite.get("items_sha256"), csuite.get("items_sha256")
    if not bh or not ch or bh == ch:
        return ""
    differ = sum(
        1
        for i, it in c_items.items()
        if i in b_items and it.get("hash") and b_items[i].get("hash")
        and it["hash"] != b_items[i]["hash"]
    )  # fmt: skip
    extra = sum(1 for i in c_items if i not in b_items)
    if not differ and not extra:
        return ""
    parts = [f"{differ} items with other content"] if differ else []
    parts += [f"{extra} items the baseline does not have"] if extra else []
    return (
        f"item content differs from the baseline's ({', '.join(parts)}; "
        f"{bsuite.get('items_count')} items {bh[:12]} vs {csuite.get('items_count')} items "
        f"{ch[:12]})"
    )


GENERATION_KEYS = ("temperature", "max_tokens", "seed", "system_prompt", "chat_template_sha256")


def _provenance_warnings(report: dict[str, Any], baseline: dict[str, Any]) -> list[str]:
    """One line per generation setting that differs (a warning: the outputs may differ for
    that reason alone)."""
    out = []
    bp, cp = baseline.get("provenance") or {}, report.get("provenance") or {}
    if not bp:
        out.append("the baseline report has no provenance (written by an older evalkit)")
        return out
    diffs = []
    bg, cg = bp.get("generation") or {}, cp.get("generation") or {}
    for k in GENERATION_KEYS:
        if bg.get(k) != cg.get(k):
            diffs.append(f"{k} {bg.get(k)!r} -> {cg.get(k)!r}")
    for sname, bs in _suites(baseline).items():
        cs = _suites(report).get(sname)
        if cs and (bs.get("generation") or {}) != (cs.get("generation") or {}):
            diffs.append(f"{sname} {bs.get('generation')} -> {cs.get('generation')}")
    if diffs:
        out.append("generation settings differ from the baseline's: " + "; ".join(diffs))
    return out


def mdd_text(v: float | None) -> str:
    if v is None:
        return "-"
    return "none at this n" if math.isinf(v) else f"{v:.3f}"


def bless(report_path: str | Path, out: str | Path) -> Path:
    """Copy a report and its per-item files into ``out`` (the baseline directory)."""
    import shutil

    from corekit.runs import atomic_dir

    report = read_report(report_path)
    src = Path(report_path)
    src_dir = src if src.is_dir() else src.parent
    out = Path(out)
    with atomic_dir(out) as tmp:
        shutil.copy2(src_dir / "report.json" if src.is_dir() else src, tmp / "report.json")
        for s in report["suites"]:
            f = src_dir / s["items_file"]
            if not f.is_file():
                raise ToolkitError(f"{f}: the items of suite {s['suite']} are missing")
            shutil.copy2(f, tmp / s["items_file"])
    return out / "report.json"
