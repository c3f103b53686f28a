"""The paired regression gate: noise passes, real damage fails, and what CI reads."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from evalkit.gate import failed, gate, mcnemar_p, paired_bootstrap_p
from evalkit.scoring import make_report, score, suite_entry, write_scored


def write_run(out: Path, outputs: dict[str, str], refs: dict[str, str]) -> Path:
    """A scored run: exact_match and f1 over the given outputs."""
    rows = [{"id": k, "output": v, "references": [refs[k]]} for k, v in outputs.items()]
    items, agg = score(rows, ["exact_match", "f1"])
    out.mkdir(parents=True, exist_ok=True)
    fname = write_scored(out, "qa", items)
    (out / "report.json").write_text(json.dumps(make_report([suite_entry("qa", agg, fname)], None)))
    return out


REFS = {f"q{i}": f"answer number {i}" for i in range(300)}


def model_outputs(accuracy: float, seed: int) -> dict[str, str]:
    rng = random.Random(seed)
    return {
        k: (v if rng.random() < accuracy else "something else entirely") for k, v in REFS.items()
    }


def test_reruns_with_other_sampling_seeds_pass(tmp_path):
    """Two runs of one model differ item by item (sampling noise) but not in ability."""
    base = write_run(tmp_path / "base", model_outputs(0.6, seed=1), REFS)
    for seed in (2, 3, 4):
        cur = write_run(tmp_path / f"cur{seed}", model_outputs(0.6, seed=seed), REFS)
        rows = gate(cur, base)
        assert not failed(rows), [r for r in rows if r.verdict != "pass"]


def test_a_damaged_model_fails(tmp_path):
    good = model_outputs(0.6, seed=1)
    rng = random.Random(9)
    damaged = {k: (v if rng.random() < 0.6 else "no idea") for k, v in good.items()}  # loses ~40%
    base = write_run(tmp_path / "base", good, REFS)
    cur = write_run(tmp_path / "cur", damaged, REFS)
    rows = {r.metric: r for r in gate(cur, base)}
    assert rows["exact_match"].verdict == "regression" and rows["exact_match"].p_value < 0.001
    assert rows["exact_match"].test.startswith("McNemar")
    assert rows["f1"].verdict == "regression" and rows["f1"].test.startswith("paired bootstrap")
    assert rows["exact_match"].paired_n == 300


def test_a_small_significant_drop_within_max_drop_passes(tmp_path):
    good = model_outputs(0.6, seed=1)
    keys = [k for k, v in good.items() if v == REFS[k]][:6]  # 2% of items get worse
    worse = {k: ("nope" if k in keys else v) for k, v in good.items()}
    base = write_run(tmp_path / "base", good, REFS)
    cur = write_run(tmp_path / "cur", worse, REFS)
    assert not failed(gate(cur, base, default_max_drop=0.05))
    assert failed(gate(cur, base, default_max_drop=0.0))


def test_floors_and_missing_metrics_fail(tmp_path):
    base = write_run(tmp_path / "base", model_outputs(0.6, 1), REFS)
    cur = write_run(tmp_path / "cur", model_outputs(0.6, 1), REFS)
    rows = {r.metric: r for r in gate(cur, base, {"exact_match": {"min": 0.9}})}
    assert rows["exact_match"].verdict == "below floor"
    rep = json.loads((cur / "report.json").read_text())
    rep["suites"][0]["metrics"] = [m for m in rep["suites"][0]["metrics"] if m["metric"] != "f1"]
    (cur / "report.json").write_text(json.dumps(rep))
    rows = {r.metric: r for r in gate(cur, base)}
    assert rows["f1"].verdict == "missing" and failed(list(rows.values()))


def test_mcnemar_and_bootstrap_directions():
    p, worse, better = mcnemar_p([1] * 20 + [0] * 20, [0] * 20 + [0] * 20, True)
    assert (worse, better) == (20, 0) and p < 1e-5
    p, *_ = mcnemar_p([0] * 20, [0] * 20, True)
    assert p == 1.0
    p, ci = paired_bootstrap_p([0.9] * 50, [0.5] * 50, True)
    assert p < 0.01 and ci[1] < 0
    p, ci = paired_bootstrap_p([0.9] * 50, [0.5] * 50, False)  # lower is better: improved
    assert p > 0.99


def test_gate_cli_exit_codes_and_renderings(tmp_path):
    from click.testing import CliRunner

    from evalkit.cli import cli

    base = write_run(tmp_path / "base", model_outputs(0.6, 1), REFS)
    same = write_run(tmp_path / "same", model_outputs(0.6, 1), REFS)
    bad = write_run(tmp_path / "bad", model_outputs(0.2, 5), REFS)
    r = CliRunner().invoke(cli, ["baseline", str(base), "-o", str(tmp_path / "blessed")])
    assert r.exit_code == 0 and (tmp_path / "blessed" / "qa.items.jsonl").is_file()
    r = CliRunner().invoke(cli, ["gate", str(same), "--baseline", str(tmp_path / "blessed")])
    assert r.exit_code == 0 and "gate: pass" in r.output
    assert "BASELINE" in r.output and "DELTA" in r.output and "P-VALUE" in r.output
    junit = tmp_path / "gate.xml"
    md = tmp_path / "gate.md"
    r = CliRunner().invoke(
        cli,
        ["gate", str(bad), "--baseline", str(base), "--junit", str(junit), "--markdown", str(md)],
    )
    assert r.exit_code == 1 and "gate: FAIL" in r.output
    xml = junit.read_text()
    assert 'tests="2" failures="2"' in xml and "<failure message=" in xml
    assert "| qa/exact_match |" in md.read_text()
    r = CliRunner().invoke(cli, ["gate", str(bad), "--baseline", str(base), "--rule", "f1=0.1"])
    assert r.exit_code == 2
    r = CliRunner().invoke(cli, ["gate", str(tmp_path / "nowhere"), "--baseline", str(base)])
    assert r.exit_code == 1 and "cannot read it" in r.output and "Traceback" not in r.output


def test_score_cli_writes_items_and_a_valid_report(tmp_path):
    from click.testing import CliRunner

    from evalkit.cli import cli
    from evalkit.scoring import read_report

    p = tmp_path / "preds.jsonl"
    p.write_text(
        "\n".join(
            json.dumps(r)
            for r in [
                {"id": "a", "output": "Paris", "references": ["Paris"]},
                {"id": "b", "output": "I cannot help with that.", "expected": "refuse"},
            ]
        )
        + "\n"
    )
    out = tmp_path / "scored"
    r = CliRunner().invoke(
        cli, ["score", str(p), "--metrics", "exact_match,refusal_rate", "--out", str(out)]
    )
    assert r.exit_code == 0, r.output
    items = [json.loads(x) for x in (out / "items.jsonl").read_text().splitlines()]
    assert [i["id"] for i in items] == ["a", "b"]
    assert items[0]["exact_match"] == 1.0 and items[1]["refusal"] == "full"
    rep = read_report(out)  # validates against schemas/eval_report.json
    assert rep["suites"][0]["items_file"] == "items.jsonl"
    r = CliRunner().invoke(cli, ["score", str(p), "--out", str(out)])
    assert r.exit_code == 2 and "--metrics or --suite" in r.output
    r = CliRunner().invoke(cli, ["score", str(p), "--metrics", "nope", "--out", str(out)])
    assert r.exit_code == 1 and "unknown metric 'nope'" in r.output


@pytest.mark.parametrize(
    "cmd", ["score", "predict", "run", "gate", "baseline", "compare", "metrics", "suites"]
)
def test_every_command_has_help_with_examples(cmd):
    from click.testing import CliRunner

    from evalkit.cli import cli

    r = CliRunner().invoke(cli, [cmd, "--help"])
    assert r.exit_code == 0 and "Examples:" in r.output


def test_blind_human_comparison_from_two_runs(tmp_path):
    """compare --human writes review tasks; verdicts in the review log are tallied for B."""
    from click.testing import CliRunner

    from datakit.review.core import Review, options
    from datakit.store import DatasetStore
    from evalkit.cli import cli

    for label, outs in (("a", ["Paris.", "4", "same"]), ("b", ["It is Paris.", "Four", "same"])):
        d = tmp_path / label
        d.mkdir()
        rows = [
            {"id": f"q{i}", "prompt": f"question {i}", "output": o, "references": ["x"]}
            for i, o in enumerate(outs)
        ]
        (d / "qa.predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        items, agg = score(rows, ["f1"])
        write_scored(d, "qa", items)
        entry = suite_entry("qa", agg, "qa.items.jsonl")
        entry["predictions_file"] = "qa.predictions.jsonl"
        (d / "report.json").write_text(json.dumps(make_report([entry], {"name": label})))
    root = tmp_path / "data"
    r = CliRunner().invoke(
        cli,
        [
            "compare",
            str(tmp_path / "a"),
            str(tmp_path / "b"),
            "--human",
            "ab",
            "--data-root",
            str(root),
        ],
    )
    assert r.exit_code == 0, r.output
    assert "wrote ab@v1: 2 blind pairwise tasks" in r.output  # the identical answers are left out
    store = DatasetStore(root)
    review = Review(store, "ab")
    assert all(rec["meta"]["a"] == "a" and rec["meta"]["b"] == "b" for rec in review.records)
    # x prefers B on both, y prefers B on one and A on the other
    for rec in review.records:
        letter = {k: "AB"[i] for i, (k, _) in enumerate(options(rec, review.seed))}
        review.append("x", rec["id"], "compare", choice=letter["chosen"])
    first, second = review.records
    review.append(
        "y",
        first["id"],
        "compare",
        choice={k: "AB"[i] for i, (k, _) in enumerate(options(first, review.seed))}["chosen"],
    )
    review.append(
        "y",
        second["id"],
        "compare",
        choice={k: "AB"[i] for i, (k, _) in enumerate(options(second, review.seed))}["rejected"],
    )
    r = CliRunner().invoke(cli, ["tally", "ab", "--data-root", str(root), "--json"])
    t = json.loads(r.output)
    assert (t["b_wins"], t["a_wins"], t["ties"]) == (1, 0, 1)  # the split verdict is a tie
    assert t["b_win_rate"] == 1.0 and 0 < t["ci95"][0] < 1


def test_compare_counts_paired_wins_losses_and_ties(tmp_path):
    from click.testing import CliRunner

    from evalkit.cli import cli

    base_out = model_outputs(0.6, seed=1)
    right = [k for k, v in base_out.items() if v == REFS[k]]
    wrong = [k for k, v in base_out.items() if v != REFS[k]]
    cur_out = dict(base_out)
    for k in wrong[:10]:
        cur_out[k] = REFS[k]  # 10 items B gets right and A did not
    for k in right[:4]:
        cur_out[k] = "no"  # 4 the other way
    a = write_run(tmp_path / "a", base_out, REFS)
    b = write_run(tmp_path / "b", cur_out, REFS)
    r = CliRunner().invoke(cli, ["compare", str(a), str(b), "--json"])
    rows = {x["metric"]: x for x in json.loads(r.output)}
    em = rows["exact_match"]
    assert (em["wins"], em["losses"], em["ties"]) == (10, 4, 286)
    assert em["delta"] == pytest.approx(6 / 300, abs=1e-4)
    out = CliRunner().invoke(cli, ["compare", str(a), str(b)]).output
    assert "qa/exact_match" in out and "10/4/286" in out
