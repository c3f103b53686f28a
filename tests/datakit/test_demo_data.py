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


def test_the_tiny_corpus_holds_the_prompts_the_generators_send_answered_as_decoded():
    """What the tiny test model learns (datakit.demo.tiny_corpus): for every seed, the
    classification question answered as a yes/no choice decodes it (no leading space) and
    the instance prompt Self-Instruct sends for that answer, continued with the seed's own
    input and output up to the op's stop; a JSON answer that fits each distinct demo
    schema, with its task's prompt."""
    from datakit import prompts
    from datakit.demo import demo_format_tasks, demo_seeds, tiny_corpus
    from datakit.ops.self_instruct import _parse_input_first, _parse_output_first

    docs = tiny_corpus(0).documents
    texts = [d for d in docs if isinstance(d, str)]
    labels = {}
    for seed in demo_seeds():
        task = seed["instruction"]
        asked = prompts.SELF_INSTRUCT_IS_CLASSIFICATION.format(instruction=task)
        (answer,) = [t[len(asked) :] for t in texts if t.startswith(asked)]
        assert answer in ("yes", "no"), answer
        labels[task] = answer
        tmpl = (
            prompts.SELF_INSTRUCT_OUTPUT_FIRST
            if answer == "yes"
            else prompts.SELF_INSTRUCT_INPUT_FIRST
        )
        head = tmpl.format(instruction=task)
        (doc,) = [t for t in texts if t.startswith(head)]
        cont = doc[len(head) :]
        assert cont.endswith("\n\nTask:")  # the op stops at "\nTask:"
        parse = _parse_output_first if answer == "yes" else _parse_input_first
        inp, out = parse(cont.removesuffix("\nTask:"))
        # the op keeps an output's first paragraph (one seed's email has several)
        assert (inp, out) == (seed.get("input") or "", seed["output"].split("\n\n")[0]), task
    # the seeds that are label tasks (sentiment, an animal's class, prime, spam), no others
    assert sorted(t for t, a in labels.items() if a == "yes") == sorted(
        s["instruction"] for s in demo_seeds()
        if s["instruction"].startswith(("Classify", "Detect", "Is the number"))
    )  # fmt: skip
    tasks = {t["prompt"]: t["meta"]["schema"] for t in demo_format_tasks()}
    chats = [d for d in docs if not isinstance(d, str) and d[0]["content"] in tasks]
    assert len({json.dumps(tasks[c[0]["content"]], sort_keys=True) for c in chats}) == len(
        {json.dumps(s, sort_keys=True) for s in tasks.values()}
    )
    for c in chats:
        jsonschema.validate(json.loads(c[1]["content"]), tasks[c[0]["content"]])
