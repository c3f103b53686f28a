"""Generators on a real tiny model (transformers backend): pairwise preferences pair only
strict direct wins, and a model retrained in place re-runs its steps instead of answering
from the cache. First, what the generator tests stand on: the trained tiny model writes the
formats they ask for, whatever the CPU's kernels."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

DATAKIT = Path(sys.executable).parent / "datakit"


def test_the_trained_tiny_model_writes_instances_and_closes_json(vllm_server, tmp_path):
    """The session's tiny model (conftest ``tiny_trained``) learnt the exact prompts
    Self-Instruct sends for an instance and a few JSON answers (datakit.demo.tiny_corpus).
    Served as the tests serve it, it writes a parseable instance for most seed tasks and
    closes most JSON answers under a schema. A build that learnt only a bare
    "Task/Input/Output" text wrote none on one CPU and several on another, and a model
    that never saw JSON looped on the whitespace JSON allows; either fails here by name,
    not only as an empty step in a recipe's tiny run."""
    import jsonschema

    from corekit.engines import EngineSpec, Request, build_engine
    from datakit import prompts
    from datakit.demo import _is_classification, demo_format_tasks, demo_seeds
    from datakit.ops.self_instruct import _parse_input_first, _parse_output_first

    eng = build_engine(
        EngineSpec("openai", "tiny", {"base_url": vllm_server}), tmp_path / "c.jsonl", quiet=True
    )
    seeds = demo_seeds()
    kinds = [_is_classification(s) for s in seeds]
    reqs = [
        Request(
            prompt=(prompts.SELF_INSTRUCT_OUTPUT_FIRST if c else prompts.SELF_INSTRUCT_INPUT_FIRST)
            .format(instruction=s["instruction"]),
            temperature=0.0, max_tokens=100, stop=("\nTask:",),
        )
        for s, c in zip(seeds, kinds, strict=True)
    ]  # fmt: skip
    parsed = [
        (_parse_output_first if c else _parse_input_first)(r.text)
        for c, r in zip(kinds, eng.generate(reqs), strict=True)
    ]
    assert sum(p is not None for p in parsed) > len(seeds) / 2, parsed
    tasks = demo_format_tasks()
    reqs = [
        Request.chat([{"role": "user", "content": t["prompt"]}], json_schema=t["meta"]["schema"],
                     temperature=0.0, max_tokens=96)
        for t in tasks
    ]  # fmt: skip
    closed = 0
    for t, r in zip(tasks, eng.generate(reqs), strict=True):
        if r.completions[0].finish_reason == "stop":
            jsonschema.validate(json.loads(r.text), t["meta"]["schema"])
            closed += 1
    assert closed > len(tasks) / 2, closed


def test_pairwise_preferences_on_the_tiny_model(tmp_path, tiny_trained, monkeypatch):
    from corekit import judging
    from corekit.engines import EngineSpec
    from corekit.engines.pool import EnginePool
    from datakit.demo import demo_seeds
    from datakit.ops.step import run_step
    from datakit.records import instruction_text
    from datakit.store import DatasetStore

    store = DatasetStore(tmp_path / "data")
    seeds = demo_seeds()[:12]
    store.write("seeds", seeds, "instruction")
    seen = []  # every (instruction, a, b) -> verdict the real judge gave
    real_compare = judging.compare

    def recording(items, engine, desc="pairwise judge"):
        verdicts = real_compare(items, engine, desc)
        seen.extend(zip(items, verdicts, strict=True))
        return verdicts

    monkeypatch.setattr(judging, "compare", recording)
    spec = EngineSpec("transformers", str(tiny_trained), {})
    params = {"max_tokens": 48, "temperatures": [0.3, 1.0, 1.5], "judge": "pairwise"}
    pool = EnginePool(tmp_path / "cache", quiet=True)
    try:
        # the tiny model's samples often tie: an empty result is allowed here, the test is
        # about which comparisons made which pairs and rejects
        res = run_step(
            store, "prefs", "preferences", "seeds", params, {"engine": spec}, pool, allow_empty=True
        )
    finally:
        pool.close()
    out = list(res.version.records())
    rejects = [json.loads(x) for x in (res.version.path / "rejects.jsonl").read_text().splitlines()]
    assert seen, "the judge was asked"
    verdict = {(i, a, b): v for (i, a, b), v in seen}
    for rec in out:  # every emitted pair won its own comparison outright, in both orders
        c, r = rec["chosen"][0]["content"], rec["rejected"][0]["content"]
        inst = rec["prompt"][-1]["content"]
        assert verdict.get((inst, c, r)) == "a" or verdict.get((inst, r, c)) == "b"
    # A record whose comparisons all tied is a "tie" reject; nothing else is.
    by_inst: dict[str, set] = {}
    for (inst, _a, _b), v in seen:
        by_inst.setdefault(inst, set()).add(v)
    record_rejects = [r for r in rejects if r.get("unit") != "sample"]
    for r in record_rejects:
        inst = instruction_text(r["record"])  # what the judge was shown
        if r["reason"] == "tie":
            assert by_inst[inst] == {"tie"}
        else:
            assert r["reason"] in ("fewer_than_two_distinct_samples", "no_consistent_pair")
    assert len(seeds) == len(out) + len(record_rejects)  # every input accounted for


def test_a_model_retrained_in_place_reruns_its_step(tmp_path):
    from corekit.tiny import init_tiny
    from datakit.demo import tiny_corpus

    model = tmp_path / "models" / "tiny"
    init_tiny(model, tiny_corpus(0), seed=0)
    cfg = tmp_path / "pipeline.yaml"
    cfg.write_text(f"""
seed: 3
models:
  tiny: {{path: {model}}}
engines:
  hf: {{backend: transformers, model: tiny}}
data:
  imports:
    - {{name: seeds, source: {ROOT / "datakit/demo/seeds.jsonl"}, kind: instruction}}
  steps:
    - {{name: answers, op: respond, input: seeds, engine: hf, params: {{max_tokens: 8, drop_truncated: false}}}}
""")

    def run() -> dict:
        proc = subprocess.run(
            [str(DATAKIT), "run", str(cfg), "-q", "--json"],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=tmp_path,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        return json.loads(proc.stdout)["steps"][0]

    first = run()
    assert not first["skipped"] and first["engine"]["engine"]["model_calls"] > 0
    assert run()["skipped"]  # unchanged: nothing to do
    init_tiny(
        model, tiny_corpus(1), seed=1, force=True
    )  # retrained in place: same path, other weights
    again = run()
    assert not again["skipped"] and again["ref"] == "answers@v2"
    assert again["engine"]["engine"]["cache_hits"] == 0  # no stale answers from the cache
    old = (tmp_path / "data/answers/v1/records.jsonl").read_bytes()
    new = (tmp_path / "data/answers/v2/records.jsonl").read_bytes()
    assert old != new
