"""Blind human comparison of two models: `evalkit compare A B --human NAME` writes one
pairwise task per item both answered (differently) as a `preference` dataset version that
`datakit review NAME` shows side by side, in random order, without the models' names;
`evalkit tally NAME` counts the annotators' verdicts with a confidence interval.

In a task record ``chosen`` holds B's output and ``rejected`` A's (the review UI hides both
labels and shuffles the order); a verdict for "chosen" is a win for B.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from corekit.errors import ToolkitError

from .scoring import read_report


def _predictions(report_path: str | Path) -> tuple[str, dict[str, dict[str, dict[str, Any]]]]:
    import orjson

    base = Path(report_path)
    base = base if base.is_dir() else base.parent
    rep = read_report(report_path)
    label = (rep.get("model") or {}).get("name") or str(base)
    out = {}
    for s in rep["suites"]:
        pf = s.get("predictions_file")
        if not pf:
            raise ToolkitError(
                f"{report_path}: suite {s['suite']} has no predictions file (a report of `evalkit run` has)"
            )
        rows = [orjson.loads(x) for x in (base / pf).read_bytes().splitlines() if x.strip()]
        out[s["suite"]] = {r["id"]: r for r in rows}
    return label, out


def human_tasks(
    a: str | Path, b: str | Path, store: Any, name: str, limit: int | None = None
) -> Any:
    label_a, pa = _predictions(a)
    label_b, pb = _predictions(b)
    records = []
    for suite in pa.keys() & pb.keys():
        for item_id in sorted(pa[suite].keys() & pb[suite].keys()):
            ra, rb = pa[suite][item_id], pb[suite][item_id]
            if not ra["output"].strip() or not rb["output"].strip() or ra["output"] == rb["output"]:
                continue
            records.append(
                {
                    "prompt": ra.get("prompt") or "",
                    "chosen": rb["output"],
                    "rejected": ra["output"],
                    "meta": {
                        "source": "evalkit-compare",
                        "suite": suite,
                        "item_id": item_id,
                        "a": label_a,
                        "b": label_b,
                    },
                }
            )
    records = [r for r in records if r["prompt"]]
    if limit:
        records = records[:limit]
    if not records:
        raise ToolkitError("no item where both models answered, differently: nothing to compare")
    return store.write(
        name,
        records,
        "preference",
        step="compare-human",
        config={"a": str(a), "b": str(b), "limit": limit},
        source=f"{a} vs {b}",
    )


def tally(store: Any, ref: str) -> dict[str, Any]:
    """B wins / A wins / ties over the records with a majority verdict, B's win rate among
    decided records with its 95% Wilson interval, and the two-sided sign-test p-value."""
    from collections import Counter

    from scipy.stats import binomtest

    from datakit.review.core import Review

    review = Review(store, ref)
    counts: Counter = Counter()
    for s in review.state().values():
        votes = Counter(s.verdicts.values())
        if not votes:
            continue
        (top, n), *rest = votes.most_common()
        counts["tie" if (rest and rest[0][1] == n) else top] += 1
    b, a, ties = counts["chosen"], counts["rejected"], counts["tie"]
    decided = a + b
    out: dict[str, Any] = {
        "ref": review.version.ref,
        "b_wins": b,
        "a_wins": a,
        "ties": ties,
        "judged": decided + ties,
        "records": len(review.records),
    }
    if decided:
        test = binomtest(b, decided, 0.5)
        ci = test.proportion_ci(confidence_level=0.95, method="wilson")
        out.update(
            b_win_rate=round(b / decided, 4),
            ci95=[round(float(ci.low), 4), round(float(ci.high), 4)],
            p_value=round(float(test.pvalue), 4),
        )
    return out
