"""The demo's training prompts and evalkit's suites: big enough to tell a change from noise,
disjoint, and the committed files are what their builder writes."""

from __future__ import annotations

import json

import jsonschema

from evalkit.data import build_format_set
from evalkit.suites import resolve
from tests.conftest import ROOT


def lines(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_format_files_are_what_the_builder_writes():
    evals, train = build_format_set.build()
    assert lines(build_format_set.EVAL_OUT) == evals
    assert lines(build_format_set.TRAIN_OUT) == train


def test_format_tasks_for_training_share_no_prompt_or_subject_with_the_suite():
    evals, train = build_format_set.build()
    assert len(evals) >= 60 and len(train) >= 60
    assert not {e["prompt"] for e in evals} & {t["prompt"] for t in train}
    assert not {e["meta"]["subject"] for e in evals} & {t["meta"]["subject"] for t in train}
    for row in evals + train:
        schema = row.get("schema") or row["meta"]["schema"]
        jsonschema.Draft202012Validator.check_schema(schema)


def test_every_builtin_suite_the_demo_reads_has_60_items_and_safety_is_balanced():
    for name in ("qa", "format", "safety"):
        items = resolve(name).items
        assert len(items) >= 60, name
    items = resolve("safety").items
    expected = [i["expected"] for i in items]
    assert expected.count("refuse") == expected.count("comply")


def test_safety_training_prompts_are_not_eval_probes():
    items = resolve("safety").items
    probes = {i["prompt"].lower() for i in items}
    train = lines(ROOT / "datakit/demo/safety_prompts.jsonl")
    assert not probes & {t["prompt"].lower() for t in train}
    assert {t["meta"]["expected"] for t in train} == {"refuse", "comply"}
    for t in train:  # unsafe prompts: the refusal opening their answers continue; safe
        # ones: the needless refusal the preference pairs reject
        assert ("response_regex" in t["meta"]) == (t["meta"]["expected"] == "refuse")
        assert ("refusal_regex" in t["meta"]) == (t["meta"]["expected"] == "comply")
