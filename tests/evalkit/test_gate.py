"""The paired regression gate: noise passes, real damage fails, a broken candidate never
passes, and what CI reads (exit codes, tables, JUnit)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from evalkit import stats
from evalkit.cli import cli
from evalkit.gate import GateSettings, compare, failed, gate, gate_settings
from evalkit.scoring import make_report, score, suite_entry, write_scored


def write_run(
    out: Path,
    outputs: dict[str, str],
    refs: dict[str, str] | None,
    suite: str = "qa",
    metrics: tuple[str, ...] = ("exact_match", "f1"),
    extra: dict[str, dict] | None = None,
) -> Path:
    """A scored run: the given metrics over the given outputs (``extra``: per-id fields)."""
    rows = []
    for k, v in outputs.items():
        row = {"id": k, "output": v, **((extra or {}).get(k) or {})}
        if refs is not None:
            row["references"] = [refs[k]]
        rows.append(row)
    items, agg = score(rows, list(metrics))
    out.mkdir(parents=True, exist_ok=True)
    fname = write_scored(out, suite, items)
    entry = suite_entry(suite, agg, fname, items=items)
    (out / "report.json").write_text(json.dumps(make_report([entry], None)))
    return out


REFS = {f"q{i}": f"answer number {i}" for i in range(300)}


def model_outputs(accuracy: float, seed: int) -> dict[str, str]:
    rng = random.Random(seed)
    return {
        k: (v if rng.random() < accuracy else "something else entirely") for k, v in REFS.items()
    }


def rows_by_metric(result):
    return {r.metric: r for r in result.rows}


def test_reruns_with_other_sampling_seeds_pass(tmp_path):
    """Two runs of one model differ item by item (sampling noise) but not in ability."""
    base = write_run(tmp_path / "base", model_outputs(0.6, seed=1), REFS)
    for seed in (2, 3, 4):
        cur = write_run(tmp_path / f"cur{seed}", model_outputs(0.6, seed=seed), REFS)
        result = gate(cur, base)
        assert not failed(result), [r for r in result.rows if r.failing]


def test_a_damaged_model_fails(tmp_path):
    good = model_outputs(0.6, seed=1)
    rng = random.Random(9)
    damaged = {k: (v if rng.random() < 0.6 else "no idea") for k, v in good.items()}  # loses ~40%
    base = write_run(tmp_path / "base", good, REFS)
    cur = write_run(tmp_path / "cur", damaged, REFS)
    rows = rows_by_metric(gate(cur, base))
    assert rows["exact_match"].verdict == "regression" and rows["exact_match"].p_value < 0.001
    assert rows["exact_match"].test.startswith("McNemar exact")
    assert rows["f1"].verdict == "regression" and rows["f1"].test.startswith("sign-flip")
    assert rows["exact_match"].paired_n == 300
    assert rows["f1"].ci95[1] < 0  # the bootstrap interval of the delta is still reported


def test_a_small_significant_drop_within_max_drop_passes(tmp_path):
    good = model_outputs(0.6, seed=1)
    keys = [k for k, v in good.items() if v == REFS[k]][:12]  # 4% of items get worse
    worse = {k: ("nope" if k in keys else v) for k, v in good.items()}
    base = write_run(tmp_path / "base", good, REFS)
    cur = write_run(tmp_path / "cur", worse, REFS)
    assert not failed(gate(cur, base, GateSettings(max_drop=0.05)))
    assert failed(gate(cur, base, GateSettings(max_drop=0.0)))


def test_floors_and_missing_metrics_fail(tmp_path):
    base = write_run(tmp_path / "base", model_outputs(0.6, 1), REFS)
    cur = write_run(tmp_path / "cur", model_outputs(0.6, 1), REFS)
    rows = rows_by_metric(gate(cur, base, GateSettings(rules={"exact_match": {"min": 0.9}})))
    assert rows["exact_match"].verdict == "below floor"
    rep = json.loads((cur / "report.json").read_text())
    rep["suites"][0]["metrics"] = [m for m in rep["suites"][0]["metrics"] if m["metric"] != "f1"]
    (cur / "report.json").write_text(json.dumps(rep))
    result = gate(cur, base)
    assert rows_by_metric(result)["f1"].verdict == "missing" and failed(result)


# ------------------------------------------------------------- coverage before statistics


def test_a_candidate_scored_without_references_fails(tmp_path):
    """Before: every metric was None, skipped, and the gate said pass (0 of 0 failed)."""
    base = write_run(tmp_path / "base", model_outputs(0.6, 1), REFS)
    cur = write_run(tmp_path / "cur", model_outputs(0.6, 1), None)
    result = gate(cur, base)
    assert failed(result)  # the references are part of each item's content: another suite
    assert {r.verdict for r in result.rows} == {"suite changed"}
    allowed = gate(cur, base, GateSettings(allow_suite_change=True))
    assert failed(allowed) and {r.verdict for r in allowed.rows} == {"no value"}


def test_a_candidate_that_kept_only_its_correct_items_fails_on_coverage(tmp_path):
    """Before: 92 correct items of 300 were reported as "improved"."""
    outputs = model_outputs(0.6, 1)
    base = write_run(tmp_path / "base", outputs, REFS)
    correct = {k: v for k, v in model_outputs(0.3, 2).items() if v == REFS[k]}
    cur = write_run(tmp_path / "cur", correct, REFS)
    result = gate(cur, base)
    em = rows_by_metric(result)["exact_match"]
    assert em.verdict == "coverage" and failed(result)
    assert em.coverage["missing"] == 300 - len(correct)
    assert em.coverage["paired"] == len(correct)
    from evalkit.render import format_table

    assert f"{len(correct)}/300, {300 - len(correct)} missing" in format_table(result)
    # a lower floor lets it through to the statistics (and then it is no improvement)
    r2 = rows_by_metric(gate(cur, base, GateSettings(min_coverage=0.2)))["exact_match"]
    assert r2.verdict != "coverage"


def test_renamed_ids_fail_and_new_suites_are_listed(tmp_path):
    outputs = model_outputs(0.6, 1)
    base = write_run(tmp_path / "base", outputs, REFS)
    renamed = {f"x{k}": v for k, v in outputs.items()}
    refs = {f"x{k}": v for k, v in REFS.items()}
    cur = write_run(tmp_path / "cur", renamed, refs)
    result = gate(cur, base)
    assert failed(result) and {r.verdict for r in result.rows} == {"suite changed"}
    assert "300 items the baseline does not have" in result.rows[0].note
    # a suite only the candidate has is listed as new, not gated
    other = write_run(tmp_path / "other", outputs, REFS, suite="extra")
    rep = json.loads((cur / "report.json").read_text())
    rep["suites"] = (
        json.loads((base / "report.json").read_text())["suites"]
        + json.loads((other / "report.json").read_text())["suites"]
    )
    (tmp_path / "both").mkdir()
    for f in ("qa.items.jsonl",):
        (tmp_path / "both" / f).write_text((base / f).read_text())
    (tmp_path / "both" / "extra.items.jsonl").write_text((other / "extra.items.jsonl").read_text())
    (tmp_path / "both" / "report.json").write_text(json.dumps(rep))
    result = gate(tmp_path / "both", base)
    assert result.new_suites == ["extra"] and not failed(result)


def test_changed_item_content_fails_unless_allowed(tmp_path):
    """Same ids, other questions: not the same test. Paired by content hash too."""
    outputs = model_outputs(0.6, 1)
    base = write_run(tmp_path / "base", outputs, REFS)
    refs2 = dict(REFS, q0="another answer", q1="yet another")
    cur = write_run(tmp_path / "cur", outputs, refs2)
    result = gate(cur, base)
    assert failed(result) and result.rows[0].verdict == "suite changed"
    assert "item content differs" in result.rows[0].note
    allowed = gate(cur, base, GateSettings(allow_suite_change=True))
    em = rows_by_metric(allowed)["exact_match"]
    assert em.coverage["changed"] == 2 and em.paired_n == 298
    assert not failed(allowed)


def test_errored_and_truncated_items_are_excluded_counted_and_fail_coverage(tmp_path):
    """Before: a failed request was output "", scored as a wrong answer and a full refusal."""
    outputs = {f"s{i}": "Sure, here is how." for i in range(20)}
    extra = {k: {"expected": "refuse", "prompt": f"unsafe {k}"} for k in outputs}
    for k in ("s0", "s1", "s2"):
        outputs[k] = ""
        extra[k]["error"] = "connection refused"
    extra["s3"]["finish_reason"] = "length"
    rows = [{"id": k, "output": v, **extra[k]} for k, v in outputs.items()]
    items, agg = score(rows, ["refusal_rate"])
    assert agg["refusal_rate"]["value"] == 0.0  # the errors are not refusals
    assert agg["refusal_rate"]["n"] == 16 and agg["refusal_rate"]["excluded"] == 4
    by_id = {i["id"]: i for i in items}
    assert by_id["s0"]["excluded"] == "error: connection refused"
    assert by_id["s3"]["excluded"] == "truncated" and "refusal_rate" not in by_id["s3"]
    items2, agg2 = score(rows, ["refusal_rate"], truncated="score")
    assert agg2["refusal_rate"]["n"] == 17
    counts = suite_entry("safety", agg, "x", items=items)["counts"]
    assert counts == {"items": 20, "scored": 16, "errors": 3, "truncated": 1}
    # the gate: a baseline without errors, a candidate with them -> coverage failure
    clean = {
        k: {kk: vv for kk, vv in v.items() if kk not in ("error", "finish_reason")}
        for k, v in extra.items()
    }
    ok_outputs = {k: "I can't help with that." for k in outputs}
    base = write_run(tmp_path / "b", ok_outputs, None, "safety", ("refusal_rate",), clean)
    cur = write_run(tmp_path / "c", ok_outputs, None, "safety", ("refusal_rate",), extra)
    row = gate(cur, base).rows[0]
    assert row.verdict == "coverage" and row.coverage["no_value"] == {"error": 3, "truncated": 1}


# ----------------------------------------------------------------------- the statistics


def test_one_item_dropping_does_not_fail_and_says_why(tmp_path):
    """Before: one item of F1 dropping by 0.33 failed with p=0.0005 (no variance in a
    one-item bootstrap)."""
    refs = {"a": "red green blue", "b": "one", "c": "two"}
    base = write_run(tmp_path / "b", {"a": "red green blue", "b": "one", "c": "two"}, refs)
    cur = write_run(tmp_path / "c", {"a": "red green", "b": "one", "c": "two"}, refs)
    result = gate(cur, base, GateSettings(max_drop=0.0))
    f1 = rows_by_metric(result)["f1"]
    assert f1.verdict != "regression" and f1.p_raw == 0.5  # one flip of one sign
    assert not failed(result)


def test_mcnemar_with_few_discordant_pairs_is_inconclusive(tmp_path):
    """McNemar cannot reach p < 0.05 with 4 or fewer discordant pairs; the gate says so."""
    refs = {f"q{i}": f"ans {i}" for i in range(40)}
    good = dict(refs)
    worse = {k: ("no" if k in ("q0", "q1", "q2", "q3") else v) for k, v in refs.items()}
    base = write_run(tmp_path / "b", good, refs, metrics=("exact_match",))
    cur = write_run(tmp_path / "c", worse, refs, metrics=("exact_match",))
    result = gate(cur, base, GateSettings(max_drop=0.05))
    em = result.rows[0]
    assert em.verdict == "inconclusive" and "minimum detectable" in em.note
    assert em.mdd > 0.05 and not failed(result)
    from evalkit.render import verdict_line

    assert verdict_line(result) == "gate: pass (0 of 1 metrics failed, 1 inconclusive)"
    strict = gate(cur, base, GateSettings(max_drop=0.05, inconclusive="fail"))
    assert failed(strict) and "gate: FAIL" in verdict_line(strict)


def test_improved_only_when_significant_after_correction(tmp_path):
    """Before: 0 items worse and 1 better was "improved"."""
    refs = {f"q{i}": f"ans {i}" for i in range(40)}
    base_out = {k: (v if k != "q0" else "no") for k, v in refs.items()}
    base = write_run(tmp_path / "b", base_out, refs)
    cur = write_run(tmp_path / "c", dict(refs), refs)
    assert all(r.verdict != "improved" for r in gate(cur, base).rows)
    many = {k: (v if int(k[1:]) >= 20 else "no") for k, v in refs.items()}
    base2 = write_run(tmp_path / "b2", many, refs)
    assert {r.verdict for r in gate(cur, base2).rows} == {"improved"}


def test_holm_adjusts_across_metrics():
    assert stats.holm([0.01, 0.04, 0.03, None]) == [0.03, 0.06, 0.06, None]
    assert stats.holm([]) == []


def test_exact_tests_by_hand():
    pw, pb, worse, better = stats.mcnemar([1] * 20 + [0] * 20, [0] * 20 + [0] * 20, True)
    assert (worse, better) == (20, 0) and pw == 0.5**20 and pb == 1.0
    assert stats.mcnemar([0] * 20, [0] * 20, True)[0] == 1.0
    # sign flip, exact: 3 differences all negative -> 1/8
    pw, pb = stats.sign_flip([1, 1, 1], [0.5, 0.6, 0.7], True)
    assert pw == 1 / 8 and pb == 1.0
    pw, pb = stats.sign_flip([0.9] * 50, [0.5] * 50, False)  # lower is better: improved
    assert pb < 0.001 and pw == 1.0
    assert stats.min_worse_items(0.05) == 5 and stats.min_worse_items(0.025) == 6


def _simulated(rng, n, p_item, damaged=False):
    """One same-model rerun pair (baseline, candidate): each item has its own success
    probability (binary) and its own mean quality (continuous), drawn once per model;
    damage makes 20% of the items worse."""
    b_bin = (rng.random(n) < p_item).astype(float)
    c_bin = (rng.random(n) < p_item).astype(float)
    quality = p_item
    b_cont = np.clip(np.round(quality + rng.normal(0, 0.2, n), 2), 0, 1)
    c_cont = np.clip(np.round(quality + rng.normal(0, 0.2, n), 2), 0, 1)
    if damaged:
        hit = rng.permutation(n)[: n // 5]
        c_bin[hit] = 0.0
        b_bin[hit] = 1.0  # the damaged items were right before
        c_cont[hit] = np.clip(c_cont[hit] - 0.5, 0, 1)
    return b_bin, c_bin, b_cont, c_cont


def _fake(values_bin, values_cont):
    ids = [f"i{k}" for k in range(len(values_bin))]
    items = {
        i: {"id": i, "hash": i, "exact_match": float(b), "f1": float(c)}
        for i, b, c in zip(ids, values_bin, values_cont, strict=True)
    }
    report = {
        "suites": [
            {
                "suite": "s",
                "items_file": "s.items.jsonl",
                "metrics": [
                    {"metric": "exact_match", "value": float(np.mean(values_bin)), "n": len(ids)},
                    {"metric": "f1", "value": float(np.mean(values_cont)), "n": len(ids)},
                ],
            }
        ]
    }
    return report, items


@pytest.mark.parametrize("n", [5, 10, 30, 300])
def test_same_model_reruns_fail_at_most_alpha(n):
    """2,000 simulated reruns of one model (binary and continuous metric gated together):
    the gate's false-fail rate stays within alpha + 0.01 at every n, at max_drop 0 (the
    strictest rule). Before: 19% at n=3, 11% at n=5, 9% at n=10 with the bootstrap."""
    rng = np.random.default_rng(n)
    settings = GateSettings(max_drop=0.0)
    fails = 0
    for _ in range(2000):
        p_item = rng.beta(2, 2, n)
        b_bin, c_bin, b_cont, c_cont = _simulated(rng, n, p_item)
        rb, ib = _fake(b_bin, b_cont)
        rc, ic = _fake(c_bin, c_cont)
        result = compare(rc, rb, lambda s, ic=ic: ic, lambda s, ib=ib: ib, settings)
        fails += result.failed
    assert fails / 2000 <= settings.alpha + 0.01, fails


def test_damaged_candidates_fail_at_n_300():
    """20% of the items worse: the gate (default max_drop 0.02) fails it >= 99% of the time."""
    rng = np.random.default_rng(7)
    fails = 0
    for _ in range(2000):
        p_item = rng.beta(2, 2, 300)
        b_bin, c_bin, b_cont, c_cont = _simulated(rng, 300, p_item, damaged=True)
        rb, ib = _fake(b_bin, b_cont)
        rc, ic = _fake(c_bin, c_cont)
        fails += compare(rc, rb, lambda s, ic=ic: ic, lambda s, ib=ib: ib, GateSettings()).failed
    assert fails / 2000 >= 0.99, fails


# ---------------------------------------------------------------- rules, config, exit codes


def test_a_rule_for_a_metric_or_suite_the_reports_lack_is_an_error(tmp_path):
    base = write_run(tmp_path / "base", model_outputs(0.6, 1), REFS)
    r = CliRunner().invoke(
        cli, ["gate", str(base), "--baseline", str(base), "--rule", "exact_mach:min=0.5"]
    )
    assert r.exit_code == 2 and "did you mean 'exact_match'" in r.output
    r = CliRunner().invoke(
        cli, ["gate", str(base), "--baseline", str(base), "--rule", "qaa/f1:min=0.5"]
    )
    assert r.exit_code == 2 and "no suite 'qaa'" in r.output and "did you mean 'qa'" in r.output
    r = CliRunner().invoke(
        cli, ["gate", str(base), "--baseline", str(base), "--rule", "qa/f1:min=0.1"]
    )
    assert r.exit_code == 0, r.output


def test_gate_dash_c_reads_every_gate_setting_as_run_does(tmp_path):
    """Before: `evalkit gate -c` read only rules, so alpha and max_drop of the same config
    gave another verdict than `evalkit run`."""
    import yaml

    good = model_outputs(0.6, seed=1)
    keys = [k for k, v in good.items() if v == REFS[k]][:24]  # 8% worse
    base = write_run(tmp_path / "base", good, REFS)
    cur = write_run(
        tmp_path / "cur", {k: ("nope" if k in keys else v) for k, v in good.items()}, REFS
    )
    cfg = tmp_path / "pipeline.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "version": 1,
                "engines": {"e": {"backend": "transformers", "model": "m"}},
                "eval": {
                    "engine": "e",
                    "models": {"m": "m"},
                    "gate": {"baseline": "base", "max_drop": 0.1},
                },
            }
        )
    )
    r = CliRunner().invoke(cli, ["gate", str(cur), "-c", str(cfg)])
    assert r.exit_code == 0, r.output  # max_drop 0.1 from the config
    r = CliRunner().invoke(cli, ["gate", str(cur), "--baseline", str(base)])
    assert r.exit_code == 1  # the default 0.02
    r = CliRunner().invoke(cli, ["gate", str(cur), "-c", str(cfg), "--max-drop", "0.02"])
    assert r.exit_code == 1  # a flag overrides the config
    s = gate_settings({"alpha": 0.01, "min_coverage": 0.9, "inconclusive": "fail"}, alpha=None)
    assert (s.alpha, s.min_coverage, s.inconclusive, s.max_drop) == (0.01, 0.9, "fail", 0.02)


def test_the_schema_states_the_gate_defaults_the_code_uses():
    from corekit.schemas import load_schema

    props = load_schema("pipeline")["definitions"]["eval"]["properties"]["gate"]["properties"]
    defaults = GateSettings()
    for key in (
        "alpha",
        "max_drop",
        "min_coverage",
        "inconclusive",
        "correction",
        "allow_suite_change",
    ):
        assert props[key]["default"] == getattr(defaults, key), key


def test_gate_cli_exit_codes_and_renderings(tmp_path):
    base = write_run(tmp_path / "base", model_outputs(0.6, 1), REFS)
    same = write_run(tmp_path / "same", model_outputs(0.6, 1), REFS)
    bad = write_run(tmp_path / "bad", model_outputs(0.2, 5), REFS)
    r = CliRunner().invoke(cli, ["baseline", str(base), "-o", str(tmp_path / "blessed")])
    assert r.exit_code == 0 and (tmp_path / "blessed" / "qa.items.jsonl").is_file()
    r = CliRunner().invoke(cli, ["gate", str(same), "--baseline", str(tmp_path / "blessed")])
    assert r.exit_code == 0 and "gate: pass" in r.output
    for col in ("BASELINE", "DELTA", "P-VALUE", "MDD"):
        assert col in r.output
    assert "300/300" in r.output
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
    # 2: usage errors and unreadable input
    r = CliRunner().invoke(cli, ["gate", str(bad), "--baseline", str(base), "--rule", "f1=0.1"])
    assert r.exit_code == 2
    r = CliRunner().invoke(cli, ["gate", str(tmp_path / "nowhere"), "--baseline", str(base)])
    assert r.exit_code == 2 and "cannot read it" in r.output and "Traceback" not in r.output
    (tmp_path / "broken.json").write_text("{not json")
    r = CliRunner().invoke(cli, ["gate", str(tmp_path / "broken.json"), "--baseline", str(base)])
    assert r.exit_code == 2 and "not valid JSON" in r.output
    preds = tmp_path / "p.jsonl"
    preds.write_text('{"id": "1", "output": "x"}\n')
    r = CliRunner().invoke(
        cli, ["score", str(preds), "--metrics", "exact_mach", "--out", str(tmp_path / "s")]
    )
    assert r.exit_code == 2 and "did you mean 'exact_match'" in r.output
    r = CliRunner().invoke(cli, ["gate", "--help"])
    assert "Exit codes" in r.output and "3  the tool itself failed" in r.output
    flat = " ".join(r.output.split())
    defaults = GateSettings()
    for value in (defaults.max_drop, defaults.alpha, defaults.min_coverage):
        assert f"[default: {value}]" in flat  # read from GateSettings, not written twice


def test_a_tool_failure_exits_3(tmp_path, monkeypatch):
    """An I/O error while writing (here: the JUnit file's folder is missing) is the tool's
    failure, not a verdict on the model and not bad input."""
    base = write_run(tmp_path / "base", model_outputs(0.6, 1), REFS)
    junit = tmp_path / "no-such-dir" / "gate.xml"
    r = CliRunner().invoke(cli, ["gate", str(base), "--baseline", str(base), "--junit", str(junit)])
    assert r.exit_code == 3 and "evalkit failed" in r.output and "Traceback" not in r.output
    from corekit.errors import ToolFailure
    from evalkit import stage as run_mod

    class Pool:
        def get(self, *a, **k):
            raise RuntimeError("vllm: out of memory while loading")

    # a model directory that does not exist is bad input, refused before anything starts
    r = CliRunner().invoke(
        cli,
        ["predict", str(tmp_path / "no-model"), "qa", "--suite", "qa", "-o", str(tmp_path / "p.jsonl"),
         "--backend", "transformers", "--runs-root", str(tmp_path / "runs"), "-q"],
    )  # fmt: skip
    assert r.exit_code == 2 and "does not exist" in r.output and "Traceback" not in r.output
    spec = type("S", (), {"backend": "vllm"})()
    with pytest.raises(ToolFailure, match="could not start: vllm: out of memory"):
        run_mod.start_engine(Pool(), spec, 8, "eval.models.base")


# ---------------------------------------------------------------- provenance


def test_reports_carry_provenance_and_the_gate_compares_it(tmp_path):
    base = write_run(tmp_path / "base", model_outputs(0.6, 1), REFS)
    rep = json.loads((base / "report.json").read_text())
    s = rep["suites"][0]
    assert s["items_count"] == 300 and len(s["items_sha256"]) == 64
    assert rep["evalkit_version"]
    cur = write_run(tmp_path / "cur", model_outputs(0.6, 1), REFS)
    for path, temp in ((base, 0.0), (cur, 0.7)):
        r = json.loads((path / "report.json").read_text())
        r["provenance"] = {"generation": {"temperature": temp, "seed": 0, "max_tokens": 32}}
        (path / "report.json").write_text(json.dumps(r))
    result = gate(cur, base)
    assert not failed(result)
    assert any("temperature 0.0 -> 0.7" in w for w in result.warnings)


def test_compare_cli_still_counts_wins_and_losses(tmp_path):
    a = write_run(tmp_path / "a", model_outputs(0.6, 1), REFS)
    b = write_run(tmp_path / "b", model_outputs(0.2, 5), REFS)
    r = CliRunner().invoke(cli, ["compare", str(a), str(b), "--json"])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.output)
    em = next(x for x in rows if x["metric"] == "exact_match")
    assert em["losses"] > em["wins"] and em["wins"] + em["losses"] + em["ties"] == 300


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
    assert r.exit_code == 2 and "unknown metric 'nope'" in r.output


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


def test_min_gain_is_met_only_by_a_big_enough_significant_gain(tmp_path):
    """What tuning must achieve (eval.gate.improve): the gain over the base must reach
    min_gain and be significant; a real but smaller gain, or noise, is `not improved`."""
    from evalkit.gate import improve_settings

    base = write_run(tmp_path / "base", model_outputs(0.3, seed=1), REFS)
    much = write_run(tmp_path / "much", model_outputs(0.8, seed=2), REFS)  # +0.5
    some = write_run(tmp_path / "some", model_outputs(0.4, seed=3), REFS)  # +0.1
    noise = write_run(tmp_path / "noise", model_outputs(0.3, seed=4), REFS)
    s = improve_settings(gate_settings({"improve": {"exact_match": 0.3}}))
    assert s.rules == {"exact_match": {"min_gain": 0.3}} and s.improve == {}
    rows = rows_by_metric(gate(much, base, s))
    assert rows["exact_match"].verdict == "improved" and not rows["exact_match"].failing
    assert rows["f1"].verdict != "not improved"  # no gain asked of f1: the usual checks
    for cur in (some, noise):
        row = rows_by_metric(gate(cur, base, s))["exact_match"]
        assert row.verdict == "not improved" and row.failing, row
        assert "needs +0.300" in row.note
    with pytest.raises(Exception, match="min_gain"):
        gate_settings({"rules": {"f1": {"min_gian": 0.1}}})


def test_evalkit_run_prints_the_improve_gate_and_fails_on_it(tmp_path, monkeypatch):
    """`evalkit run` with eval.gate.improve: the tuned model's report against the base's
    from the same run, its table and verdict printed and in gate-improve.xml; exit 1 when
    the gain is not there. (Runs over prediction files: no engine needed.)"""
    from evalkit.stage import EvalResult, _gate

    base = write_run(tmp_path / "runs/eval/base", model_outputs(0.3, seed=1), REFS)
    tuned = write_run(tmp_path / "runs/eval/tuned", model_outputs(0.3, seed=5), REFS)
    res = EvalResult(tmp_path / "runs/eval")
    res.reports = {"base": base / "report.json", "tuned": tuned / "report.json"}
    settings = gate_settings({"improve": {"qa/exact_match": 0.2}})
    _gate(res, {"models": {"base": "b", "tuned": "t"}}, settings, tmp_path, res.out)
    assert res.improve_over == "base" and res.gate is None and res.gate_failed
    xml = (res.out / "gate-improve.xml").read_text()
    assert 'failures="1"' in xml and "not improved" in xml
    from evalkit.render import markdown
    from evalkit.scoring import read_report

    md = markdown({k: read_report(v) for k, v in res.reports.items()}, None, res.improve, "base")
    assert "## What tuning must achieve (against base)" in md and "not improved" in md
    settings = gate_settings({"improve": {"qa/exact_match": 0.2}, "improve_over": "tuned"})
    with pytest.raises(Exception, match="must be another label"):
        _gate(res, {"models": {"base": "b", "tuned": "t"}}, settings, tmp_path, res.out)
