"""The per-item view of an eval run: items joined across models, won/lost in each metric's
direction, the largest wins and losses in summary.md, every item in report.html."""

from __future__ import annotations

import json
from pathlib import Path

from evalkit.itemview import collect, extremes, markdown_changes
from evalkit.render import html_report

# item -> (base values, tuned values, base output, tuned output, detector labels)
SAFETY = {
    "unsafe-1": ({"refusal_rate": 0.0}, {"refusal_rate": 1.0}, "Sure, here is how.", "I can't help with that.", ("none", "full")),
    "unsafe-2": ({"refusal_rate": 1.0}, {"refusal_rate": 0.0}, "I won't.", "Step one: <b>mix</b>", ("full", "none")),
    "safe-1": ({"over_refusal_rate": 0.0}, {"over_refusal_rate": 1.0}, "Kill the process with kill -9.", "I'm sorry, I can't.", ("none", "full")),
    "safe-2": ({"over_refusal_rate": 1.0}, {"over_refusal_rate": 0.0}, "I can't.", "Use kill -9 PID.", ("full", "none")),
    "safe-3": ({"over_refusal_rate": 0.0}, {"over_refusal_rate": 0.0}, "Fine.", "Fine too.", ("none", "none")),
}  # fmt: skip
QA = {
    "q1": ({"f1": 0.2}, {"f1": 0.9}, "a cat", "the black cat"),
    "q2": ({"f1": 0.5}, {"f1": 0.4}, "Paris", "in Paris, France"),
}
METRICS = {
    "safety": [("refusal_rate", True), ("over_refusal_rate", False)],
    "qa": [("f1", True)],
}


def _write(out: Path) -> dict[str, dict]:
    reports = {}
    for k, label in enumerate(("base", "tuned")):
        suites = []
        for suite, table in (("safety", SAFETY), ("qa", QA)):
            items, preds = [], []
            for iid, row in table.items():
                values = row[k]
                item = {"id": iid, "hash": "h" + iid, **values}
                if suite == "safety":
                    item["refusal"] = row[4][k]
                items.append(item)
                preds.append({"id": iid, "prompt": f"prompt of {iid}", "output": row[2 + k]})
            d = out / label
            d.mkdir(parents=True, exist_ok=True)
            (d / f"{suite}.items.jsonl").write_text("".join(json.dumps(x) + "\n" for x in items))
            (d / f"{suite}.predictions.jsonl").write_text(
                "".join(json.dumps(x) + "\n" for x in preds)
            )
            suites.append({
                "suite": suite, "items_file": f"{suite}.items.jsonl",
                "predictions_file": f"{suite}.predictions.jsonl",
                "metrics": [{"metric": m, "value": 0.5, "n": 2, "higher_is_better": h}
                            for m, h in METRICS[suite]],
            })  # fmt: skip
        reports[label] = {"suites": suites, "model": {"name": label}}
    return reports


def test_items_are_won_or_lost_in_each_metrics_direction(tmp_path):
    items = collect(_write(tmp_path), tmp_path, "base", "tuned")
    status = {i.id: i.status for its in items.values() for i in its}
    # refusing an unsafe request is a win; refusing a safe one (over-refusal up) a loss
    assert status == {
        "unsafe-1": "won", "unsafe-2": "lost", "safe-1": "lost", "safe-2": "won",
        "safe-3": "same", "q1": "won", "q2": "lost",
    }  # fmt: skip
    q1 = next(i for i in items["qa"] if i.id == "q1")
    assert abs(q1.gain - 0.7) < 1e-9 and q1.outputs == {"base": "a cat", "tuned": "the black cat"}
    s1 = next(i for i in items["safety"] if i.id == "safe-1")
    assert s1.labels == {"base": "none", "tuned": "full"} and s1.prompt == "prompt of safe-1"
    won, lost = extremes(items["qa"], k=5)
    assert [i.id for i in won] == ["q1"] and [i.id for i in lost] == ["q2"]


def test_summary_lists_the_largest_wins_and_losses_per_suite(tmp_path):
    items = collect(_write(tmp_path), tmp_path, "base", "tuned")
    text = "\n".join(markdown_changes(items, "base", "tuned", k=1))
    assert "**safety**: 2 won, 2 lost, 1 unchanged" in text
    assert "**qa**: 1 won, 1 lost, 0 unchanged" in text
    assert "| q1 | +0.700 | prompt of q1 | a cat | the black cat |" in text
    assert "| q2 | -0.100 |" in text
    # k=1: one win and one loss per suite, the ties broken by item id
    assert "| safe-2 |" in text and "| unsafe-1 |" not in text


def test_report_html_holds_every_item_escaped(tmp_path):
    reports = _write(tmp_path)
    items = collect(reports, tmp_path, "base", "tuned")
    page = html_report(reports, items=(items, "base", "tuned"))
    assert page.count("<tr data-status=") == 7
    assert "data-status='lost' data-suite='safety' data-item='unsafe-2'" in page
    assert "Step one: &lt;b&gt;mix&lt;/b&gt;" in page and "<b>mix</b>" not in page
    assert "detector: full" in page and "id='item-filter'" in page
