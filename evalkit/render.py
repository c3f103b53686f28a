"""Renderings of reports: Markdown (a CI job summary), JUnit XML (one test case per gated
metric) and a self-contained HTML page with charts (base vs tuned per suite, and the
training curves of the trainkit runs when given)."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

from .gate import GateResult, Row, mdd_text


def num(v: float | None) -> str:
    """A value for a table: 4 decimals, or "-" when there is none."""
    return "-" if v is None else f"{v:.4f}"


def coverage_text(r: Row) -> str:
    """``292/300, 8 missing`` (the candidate's items with a value of the baseline's)."""
    c = r.coverage
    if not c:
        return "-" if r.paired_n == 0 else str(r.paired_n)
    text = f"{c['paired']}/{c['baseline']}"
    lost = [f"{c[k]} {k}" for k in ("missing", "changed") if c.get(k)]
    lost += [f"{v} {k}" for k, v in (c.get("no_value") or {}).items()]
    return text + (", " + ", ".join(lost) if lost else "")


def verdict_line(result: GateResult) -> str:
    bad = sum(r.failing for r in result.rows)
    line = f"gate: {'FAIL' if bad else 'pass'} ({bad} of {len(result.rows)} metrics failed"
    if result.inconclusive:
        line += f", {result.inconclusive} inconclusive"
    return line + ")"


def p_text(r: Row) -> str:
    """The p-value the verdict rests on: that it is better for a gain, worse otherwise."""
    p = r.p_better if r.verdict in ("improved", "not improved") else r.p_value
    return "-" if p is None else f"{p:.4f}"


def format_table(result: GateResult) -> str:
    head = ("SUITE/METRIC", "BASELINE", "CURRENT", "DELTA", "P-VALUE", "N", "MDD", "VERDICT")
    body = [
        (
            f"{r.suite}/{r.metric}",
            num(r.baseline),
            num(r.current),
            "-" if r.delta is None else f"{r.delta:+.4f}",
            p_text(r),
            coverage_text(r),
            mdd_text(r.mdd),
            r.verdict
            + (" [fails]" if r.failing and r.verdict == "inconclusive" else "")
            + (f" ({r.note})" if r.note else ""),
        )
        for r in result.rows
    ]
    widths = [max(len(x[i]) for x in [head, *body]) for i in range(len(head) - 1)]
    lines = []
    for row in [head, *body]:
        lines.append(
            "  ".join(v.ljust(w) for v, w in zip(row[:-1], widths, strict=True)) + "  " + row[-1]
        )
    for sname in result.new_suites:
        lines.append(f"new suite (not gated, not in the baseline): {sname}")
    for w in result.warnings:
        lines.append(f"warning: {w}")
    return "\n".join(lines)


def _fmt(m: dict[str, Any]) -> str:
    if m.get("value") is None:
        return "-"
    ci = m.get("ci95")
    return f"{m['value']:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def side_by_side(
    reports: dict[str, dict[str, Any]],
) -> list[tuple[str, str, dict[str, dict[str, Any]]]]:
    """(suite, metric, {model label: metric entry}) rows over several reports."""
    rows: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for label, rep in reports.items():
        for s in rep["suites"]:
            for m in s["metrics"]:
                rows.setdefault((s["suite"], m["metric"]), {})[label] = m
    return [(s, m, v) for (s, m), v in rows.items()]


def markdown(
    reports: dict[str, dict[str, Any]],
    gate: GateResult | None = None,
    improve: GateResult | None = None,
    improve_over: str | None = None,
) -> str:
    labels = list(reports)
    lines = ["# Evaluation", ""]
    for label, rep in reports.items():
        model = rep.get("model") or {}
        lines.append(
            f"- **{label}**: `{model.get('path') or model.get('name') or rep.get('predictions')}`"
            + (f" (fingerprint `{model['fingerprint']}`)" if model.get("fingerprint") else "")
        )
    lines += [
        "",
        "| suite | metric | " + " | ".join(labels) + " | better |",
        "|---|---|" + "---|" * len(labels) + "---|",
    ]
    for suite, metric, by in side_by_side(reports):
        hib = next(iter(by.values())).get("higher_is_better", True)
        cells = " | ".join(_fmt(by[x]) if x in by else "-" for x in labels)
        lines.append(f"| {suite} | {metric} | {cells} | {'higher' if hib else 'lower'} |")
    lines.append("")
    lines.append("Values are means with 95% bootstrap confidence intervals.")
    counts = _counts_lines(reports)
    if counts:
        lines += ["", *counts]
    for title, g in ((f"What tuning must achieve (against {improve_over})", improve),
                     ("Regression gate", gate)):  # fmt: skip
        if g is None:
            continue
        lines += [
            "",
            f"## {title}",
            "",
            f"**{verdict_line(g)}**",
            "",
            "| suite/metric | baseline | current | delta | p | N | MDD | verdict |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in g.rows:
            lines.append(
                f"| {r.suite}/{r.metric} | {num(r.baseline)} | {num(r.current)} | "
                f"{'-' if r.delta is None else f'{r.delta:+.4f}'} | {p_text(r)} | "
                f"{coverage_text(r)} | {num(r.mdd) if r.mdd != float('inf') else 'none'} | "
                f"{r.verdict}{' (' + r.note + ')' if r.note else ''} |"
            )
        lines += [f"- new suite, not gated: {s}" for s in g.new_suites]
        lines += [f"- warning: {w}" for w in g.warnings]
    return "\n".join(lines) + "\n"


def _counts_lines(reports: dict[str, dict[str, Any]]) -> list[str]:
    """One line per model and suite that lost items to errors or truncation."""
    out = []
    for label, rep in reports.items():
        for s in rep["suites"]:
            c = s.get("counts") or {}
            if c.get("errors") or c.get("truncated"):
                out.append(
                    f"- {label} / {s['suite']}: {c['scored']} of {c['items']} items scored, "
                    f"{c.get('errors', 0)} errors, {c.get('truncated', 0)} truncated"
                    + (
                        " (left out)"
                        if (s.get("generation") or {}).get("truncated") != "score"
                        else " (truncated ones scored)"
                    )
                )
    return out


def junit(gate: GateResult, name: str = "evalkit.gate") -> str:
    """One testcase per gated metric; a regression, a floor, a missing or uncomputable
    metric, too little coverage or a changed suite fails."""
    from xml.sax.saxutils import quoteattr

    gate_rows = gate.rows
    bad = [r for r in gate_rows if r.failing]
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<testsuite name={quoteattr(name)} tests="{len(gate_rows)}" failures="{len(bad)}">',
    ]
    for r in gate_rows:
        case = f"<testcase classname={quoteattr(r.suite)} name={quoteattr(r.metric)}"
        if r in bad:
            msg = (
                f"{r.verdict}: baseline {num(r.baseline)}, current {num(r.current)}, "
                f"delta {r.delta}, p {r.p_value}, coverage {coverage_text(r)}, {r.test}. {r.note}"
            )
            out.append(f"{case}><failure message={quoteattr(msg)}/></testcase>")
        else:
            out.append(
                f"{case}><system-out>{html.escape(r.verdict + ' ' + r.test)}</system-out></testcase>"
            )
    out.append("</testsuite>")
    return "\n".join(out) + "\n"


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode()


def _suite_charts(rows: list[Any], labels: list[str]) -> list[tuple[str, str]]:
    """(suite, PNG as base64): one bar chart per suite, the models side by side with their
    95% CI whiskers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    charts = []
    for suite in dict.fromkeys(s for s, _, _ in rows):
        metrics = [(m, by) for s, m, by in rows if s == suite]
        fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(metrics), 2.8))
        width = 0.8 / max(1, len(labels))
        for i, label in enumerate(labels):
            xs, ys, err = [], [], [[], []]
            for j, (_, by) in enumerate(metrics):
                m = by.get(label)
                if not m or m.get("value") is None:
                    continue
                xs.append(j + i * width)
                ys.append(m["value"])
                ci = m.get("ci95") or [m["value"], m["value"]]
                err[0].append(max(0.0, m["value"] - ci[0]))
                err[1].append(max(0.0, ci[1] - m["value"]))
            ax.bar(xs, ys, width, yerr=err, capsize=3, label=label)
        ax.set_xticks([j + width * (len(labels) - 1) / 2 for j in range(len(metrics))])
        ax.set_xticklabels([m for m, _ in metrics], rotation=20, ha="right")
        ax.set_title(suite)
        ax.legend(fontsize=7)
        charts.append((suite, _png(fig)))
        plt.close(fig)
    return charts


def html_report(
    reports: dict[str, dict[str, Any]],
    curves: dict[str, Path] | None = None,
    gate: GateResult | None = None,
    improve: GateResult | None = None,
    improve_over: str | None = None,
    items: tuple[dict[str, Any], str | None, str | None] | None = None,
) -> str:
    """One self-contained page: the side-by-side table, both gates, one bar chart per suite
    (models side by side, CI whiskers), the training curves of the given runs, and every
    item (prompt, each model's output, metric values, the detector's label), filterable to
    the items that changed and searchable (evalkit/itemview.py)."""
    labels = list(reports)
    rows = side_by_side(reports)
    charts = _suite_charts(rows, labels)
    curve_imgs = []
    for name, path in (curves or {}).items():
        p = Path(path)
        if p.is_file():
            curve_imgs.append((name, base64.b64encode(p.read_bytes()).decode()))
    e = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>evalkit report</title>",
        "<style>body{font-family:sans-serif;margin:2rem}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:.3rem .6rem;vertical-align:top}img{max-width:100%}"
        ".txt{white-space:pre-wrap;max-width:28rem;font-size:.85rem}.st-won{color:#080}"
        ".st-lost{color:#b00}</style></head><body>",
        "<h1>Evaluation</h1><table><tr><th>suite</th><th>metric</th>"
        + "".join(f"<th>{e(x)}</th>" for x in labels)
        + "</tr>",
    ]
    for suite, metric, by in rows:
        parts.append(
            f"<tr><td>{e(suite)}</td><td>{e(metric)}</td>"
            + "".join(f"<td>{e(_fmt(by[x])) if x in by else '-'}</td>" for x in labels)
            + "</tr>"
        )
    parts.append("</table><p>Means with 95% bootstrap confidence intervals.</p>")
    gates = ((f"What tuning must achieve (against {improve_over})", improve),
             ("Regression gate", gate))  # fmt: skip
    for title, g in gates:
        if g is None:
            continue
        parts.append(
            f"<h2>{e(title)}</h2><p><b>{e(verdict_line(g))}</b></p>"
            "<table><tr><th>metric</th><th>baseline</th><th>current</th>"
            "<th>delta</th><th>p</th><th>N</th><th>verdict</th></tr>"
        )
        for r in g.rows:
            parts.append(
                f"<tr><td>{e(r.suite)}/{e(r.metric)}</td><td>{num(r.baseline)}</td><td>{num(r.current)}</td>"
                f"<td>{'-' if r.delta is None else f'{r.delta:+.4f}'}</td><td>{p_text(r)}</td>"
                f"<td>{e(coverage_text(r))}</td><td>{e(r.verdict)} {e(r.note)}</td></tr>"
            )
        parts.append("</table>")
        parts += [f"<p>warning: {e(w)}</p>" for w in g.warnings]
    for suite, img in charts:
        parts.append(f"<h2>{e(suite)}</h2><img alt='{e(suite)}' src='data:image/png;base64,{img}'>")
    for name, img in curve_imgs:
        parts.append(
            f"<h2>training: {e(name)}</h2><img alt='{e(name)} curves' src='data:image/png;base64,{img}'>"
        )
    if items is not None and items[0]:
        from .itemview import html_items

        parts.append(html_items(items[0], labels, items[1], items[2]))
    parts.append("</body></html>")
    return "\n".join(parts)
