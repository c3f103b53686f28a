"""The regression gate and paired comparisons.

Regression is judged on the items both runs share, paired: for per-item pass/fail metrics,
McNemar's exact test on the discordant items (passed before and failed now, or the other way
round); for continuous metrics, a paired bootstrap of the mean per-item difference. A metric
regresses when its drop is larger than the rule's ``max_drop`` *and* significant
(one-sided p < alpha), so noise does not trip it; an absolute ``min`` (or ``max`` for
lower-is-better metrics) fails on its own; a baseline metric the report lacks fails.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datakit.errors import DatakitError

from .metrics import METRICS
from .scoring import metric_direction, read_items, read_report

DEFAULT_MAX_DROP = 0.02
DEFAULT_ALPHA = 0.05


@dataclass
class Row:
    suite: str
    metric: str
    baseline: float | None
    current: float | None
    delta: float | None
    p_value: float | None
    paired_n: int
    test: str
    verdict: str  # pass | regression | below floor | missing | improved
    note: str = ""


def mcnemar_p(
    base: list[float], cur: list[float], higher_is_better: bool
) -> tuple[float, int, int]:
    """One-sided exact McNemar p-value that ``cur`` is worse than ``base``, and the
    discordant counts (worse, better)."""
    from scipy.stats import binomtest

    good = (lambda v: v >= 0.5) if higher_is_better else (lambda v: v < 0.5)
    worse = sum(1 for b, c in zip(base, cur, strict=True) if good(b) and not good(c))
    better = sum(1 for b, c in zip(base, cur, strict=True) if good(c) and not good(b))
    if worse + better == 0:
        return 1.0, 0, 0
    p = binomtest(worse, worse + better, 0.5, alternative="greater").pvalue
    return float(p), worse, better


def paired_bootstrap_p(
    base: list[float], cur: list[float], higher_is_better: bool, samples: int = 2000, seed: int = 0
) -> tuple[float, list[float]]:
    """One-sided bootstrap p-value that ``cur`` is worse than ``base`` (share of resampled
    mean differences on the better side of 0, doubled-free), and the 95% CI of cur - base."""
    import numpy as np

    d = np.asarray(cur, dtype=float) - np.asarray(base, dtype=float)
    if not higher_is_better:
        d = -d  # positive = better from here on
    if len(d) == 0 or np.all(d == 0):
        return 1.0, [0.0, 0.0]
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, len(d), size=(samples, len(d)))].mean(axis=1)
    p = float((np.sum(means >= 0) + 1) / (samples + 1))
    lo, hi = np.percentile(means, [2.5, 97.5])
    if not higher_is_better:
        lo, hi = -hi, -lo
    return p, [round(float(lo), 4), round(float(hi), 4)]


def _suite_metrics(report: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (s["suite"], m["metric"]): {**m, "_suite": s}
        for s in report["suites"]
        for m in s["metrics"]
    }


def gate(
    report_path: str | Path,
    baseline_path: str | Path,
    rules: dict[str, dict[str, Any]] | None = None,
    alpha: float = DEFAULT_ALPHA,
    default_max_drop: float = DEFAULT_MAX_DROP,
) -> list[Row]:
    """Compare a report with a baseline report, metric by metric (see the module doc).
    ``rules``: metric name (or "suite/metric") -> {max_drop, min, max}."""
    rules = rules or {}
    report, baseline = read_report(report_path), read_report(baseline_path)
    cur_m, base_m = _suite_metrics(report), _suite_metrics(baseline)
    rows: list[Row] = []
    for (suite, metric), b in base_m.items():
        if metric in METRICS and not METRICS[metric].gated:
            continue  # e.g. length: shown in reports, neither better nor worse
        rule = rules.get(f"{suite}/{metric}") or rules.get(metric) or {}
        hib = metric_direction(metric, b)
        c = cur_m.get((suite, metric))
        if c is None:
            rows.append(
                Row(
                    suite,
                    metric,
                    b["value"],
                    None,
                    None,
                    None,
                    0,
                    "-",
                    "missing",
                    "the baseline has it, the report does not",
                )
            )
            continue
        if b["value"] is None or c["value"] is None:
            continue
        b_items = read_items(baseline_path, b["_suite"])
        c_items = read_items(report_path, c["_suite"])
        shared = [
            i for i in b_items if i in c_items and metric in b_items[i] and metric in c_items[i]
        ]
        bv = [float(b_items[i][metric]) for i in shared]
        cv = [float(c_items[i][metric]) for i in shared]
        if shared:
            delta = (sum(cv) - sum(bv)) / len(shared)
        else:
            delta = c["value"] - b["value"]
        binary = METRICS[metric].binary if metric in METRICS else False
        if not shared:
            p, test = None, "none (no shared items)"
        elif binary:
            p, worse, better = mcnemar_p(bv, cv, hib)
            test = f"McNemar ({worse} worse, {better} better)"
        else:
            p, ci = paired_bootstrap_p(bv, cv, hib)
            test = f"paired bootstrap (95% CI of delta {ci[0]:+.3f}..{ci[1]:+.3f})"
        max_drop = float(rule.get("max_drop", default_max_drop))
        worse_by = -delta if hib else delta
        verdict, note = "pass", ""
        floor = rule.get("min") if hib else rule.get("max")
        if floor is not None and ((hib and c["value"] < floor) or (not hib and c["value"] > floor)):
            verdict, note = "below floor", f"{'min' if hib else 'max'} {floor}"
        elif worse_by > max_drop and (p is not None and p < alpha):
            verdict, note = "regression", f"worse by {worse_by:.3f} > max_drop {max_drop}"
        elif worse_by > max_drop and not shared:  # a corpus metric: no per-item pairs to test
            verdict, note = (
                "regression",
                f"worse by {worse_by:.3f} > max_drop {max_drop} (corpus metric, no test)",
            )
        elif worse_by > max_drop:
            note = f"worse by {worse_by:.3f}, not significant (p={p if p is not None else 'n/a'})"
        elif -worse_by > 0 and p is not None and (1 - p) < alpha:
            verdict = "improved"
        rows.append(
            Row(
                suite,
                metric,
                b["value"],
                c["value"],
                round(delta, 4),
                None if p is None else round(p, 4),
                len(shared),
                test,
                verdict,
                note,
            )
        )
    return rows


FAILING = ("regression", "below floor", "missing")


def num(v: float | None) -> str:
    """A value for a table: 4 decimals, or "-" when there is none."""
    return "-" if v is None else f"{v:.4f}"


def failed(rows: list[Row]) -> bool:
    return any(r.verdict in FAILING for r in rows)


def verdict_line(rows: list[Row]) -> str:
    bad = sum(r.verdict in FAILING for r in rows)
    return f"gate: {'FAIL' if bad else 'pass'} ({bad} of {len(rows)} metrics failed)"


def format_table(rows: list[Row]) -> str:
    head = ("SUITE/METRIC", "BASELINE", "CURRENT", "DELTA", "P-VALUE", "N", "VERDICT")
    body = [
        (
            f"{r.suite}/{r.metric}",
            num(r.baseline),
            num(r.current),
            "-" if r.delta is None else f"{r.delta:+.4f}",
            "-" if r.p_value is None else f"{r.p_value:.4f}",
            str(r.paired_n),
            r.verdict + (f" ({r.note})" if r.note else ""),
        )
        for r in rows
    ]
    widths = [max(len(x[i]) for x in [head, *body]) for i in range(len(head) - 1)]
    lines = []
    for row in [head, *body]:
        lines.append(
            "  ".join(v.ljust(w) for v, w in zip(row[:-1], widths, strict=True)) + "  " + row[-1]
        )
    return "\n".join(lines)


def bless(report_path: str | Path, out: str | Path) -> Path:
    """Copy a report and its per-item files into ``out`` (the baseline directory)."""
    import shutil

    from datakit.runs import atomic_dir

    report = read_report(report_path)
    src = Path(report_path)
    src_dir = src if src.is_dir() else src.parent
    out = Path(out)
    with atomic_dir(out) as tmp:
        shutil.copy2(src_dir / "report.json" if src.is_dir() else src, tmp / "report.json")
        for s in report["suites"]:
            f = src_dir / s["items_file"]
            if not f.is_file():
                raise DatakitError(f"{f}: the items of suite {s['suite']} are missing")
            shutil.copy2(f, tmp / s["items_file"])
    return out / "report.json"
