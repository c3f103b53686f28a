"""End to end: the installed console scripts and the Make targets, as a user runs them."""

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

BIN = Path(sys.executable).parent


def run(*cmd, cwd=None, check=True):
    proc = subprocess.run(
        [str(c) for c in cmd], capture_output=True, text=True, cwd=cwd, timeout=900
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{cmd} exited {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
        )
    return proc


def test_console_scripts_answer_help():
    for tool in ("datakit", "trainkit", "evalkit"):
        out = run(BIN / tool, "--help").stdout
        assert "Examples:" in out and "Usage:" in out


def test_cli_round_trip_through_console_scripts(tmp_path):
    (tmp_path / "chats.jsonl").write_text(
        json.dumps(
            {
                "messages": [
                    {"role": "user", "content": "Weather in Oslo?"},
                    {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [
                            {
                                "type": "function",
                                "function": {"name": "weather", "arguments": '{"city": "Oslo"}'},
                            }
                        ],
                    },
                    {"role": "tool", "content": "3C"},
                    {"role": "assistant", "content": "3 degrees."},
                ]
            }
        )
        + "\n"
    )
    dk = BIN / "datakit"
    assert (
        run(dk, "import", "chats.jsonl", "-f", "openai", "-n", "agent", cwd=tmp_path).stdout
        == "agent@v1: 1 chat records from chats.jsonl\n"
    )
    assert run(dk, "validate", "agent", cwd=tmp_path).stdout.startswith("ok: ")
    run(dk, "export", "agent", "-f", "sharegpt", "-o", "out.jsonl", cwd=tmp_path)
    convs = json.loads((tmp_path / "out.jsonl").read_text())["conversations"]
    assert [c["from"] for c in convs] == ["human", "function_call", "observation", "gpt"]
    # Bad input: one line, exit 1, no traceback.
    (tmp_path / "bad.jsonl").write_text(
        '{"messages": [{"role": "user", "content": "x"}]}\n{"messages": 5}\n'
    )
    proc = run(dk, "import", "bad.jsonl", "-n", "agent", cwd=tmp_path, check=False)
    assert proc.returncode == 1
    assert proc.stderr == "Error: bad.jsonl:2: $.messages: 5 is not of type 'array'\n"
    assert run(dk, "log", "agent", cwd=tmp_path).stdout.count("\n") == 1  # still one version
    proc = run(dk, "validate", "bad.jsonl", "--max-line-mb", "0", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "Invalid value for '--max-line-mb'" in proc.stderr


def _demo_config(tmp_path: Path) -> Path:
    """The default pipeline with smaller settings: 12 seeds, fewer and shorter generations,
    a few training steps. Same model (SmolLM2, pulled by `make setup`), same steps."""
    cfg = yaml.safe_load((ROOT / "pipeline.yaml").read_text())
    seeds = (ROOT / "datakit/demo/seeds.jsonl").read_text().splitlines()[:12]
    (tmp_path / "seeds.jsonl").write_text("\n".join(seeds) + "\n")
    cfg["data"]["imports"][0]["source"] = str(tmp_path / "seeds.jsonl")
    for imp in cfg["data"]["imports"][1:]:  # the skills' prompts and the suites, from the checkout
        imp["source"] = str(ROOT / imp["source"])
    # the first 16 format tasks, and 8 unsafe and 8 safe prompts (the file lists unsafe first)
    tasks = (ROOT / "datakit/demo/format_tasks.jsonl").read_text().splitlines()[:16]
    (tmp_path / "format_tasks.jsonl").write_text("\n".join(tasks) + "\n")
    safety = (ROOT / "datakit/demo/safety_prompts.jsonl").read_text().splitlines()
    (tmp_path / "safety_prompts.jsonl").write_text("\n".join(safety[:8] + safety[-8:]) + "\n")
    for imp in cfg["data"]["imports"]:
        if imp["name"] in ("demo-format-tasks", "demo-safety-prompts"):
            imp["source"] = str(tmp_path / Path(imp["source"]).name)
    small = {
        "grown": {"num_instructions": 4, "prompts_per_round": 4, "max_rounds": 1},
        "evolved": {"max_tokens": 96, "response_max_tokens": 96},
        "answers": {"max_tokens": 128},
        "format-answers": {"samples": 1},
        "safety-answers": {"samples": 1, "max_tokens": 64},
    }
    for step in cfg["data"]["steps"]:
        step.setdefault("params", {}).update(small.get(step["name"], {}))
    for stage, steps in zip(cfg["train"]["stages"], (4, 2), strict=True):
        stage["args"].update(max_steps=steps, eval_steps=2, save_steps=2, logging_steps=1)
    # the same suites, a third of each (their first items; safety: 10 unsafe and 10 safe),
    # with shorter answers; the gate runs in the test against its own baseline
    data = ROOT / "evalkit/data"
    qa = json.loads((data / "qa_demo.json").read_text())
    qa["data"] = qa["data"][:5]
    (tmp_path / "qa.json").write_text(json.dumps(qa))
    probes = (data / "safety_probes.jsonl").read_text().splitlines()
    unsafe = [x for x in probes if json.loads(x)["expected"] == "refuse"]
    safe = [x for x in probes if json.loads(x)["expected"] == "comply"]
    (tmp_path / "safety.jsonl").write_text("\n".join(unsafe[:10] + safe[:10]) + "\n")
    fmt = (data / "format_eval.jsonl").read_text().splitlines()[:20]
    (tmp_path / "format.jsonl").write_text("\n".join(fmt) + "\n")
    cfg["eval"]["suites"] = [
        {"name": "qa", "suite": "qa", "path": str(tmp_path / "qa.json"), "max_tokens": 16},
        {"name": "format", "suite": "format", "path": str(tmp_path / "format.jsonl"),
         "max_tokens": 48},
        {"name": "safety", "suite": "safety", "path": str(tmp_path / "safety.jsonl"),
         "max_tokens": 48},
    ]  # fmt: skip
    cfg["eval"]["gate"]["baseline"] = str(tmp_path / "baseline")
    # four training steps cannot reach the demo's improve gains (tests/evalkit/test_gate.py
    # tests that gate); the regression guards against the base stay
    del cfg["eval"]["gate"]["improve"]
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def test_make_demo_on_a_copy_of_the_default_pipeline(tmp_path):
    cfg = _demo_config(tmp_path)
    env_make = ["make", "-C", ROOT, f"CONFIG={cfg}", f"VENV={BIN.parent}"]
    out = run(*env_make, "demo").stdout
    assert "model smollm2: present at" in out
    assert "dataset demo-seeds@v1: 12 instruction records" in out
    steps = ["grown", "evolved", "answers", "judged", "good", "grown-dedup"]
    steps += ["format-answers", "format-good", "format-clean"]
    steps += ["safety-answers", "safety-good", "safety-reworded", "safety-grown", "safety-clean"]
    steps += ["sft-all", "sft-mix", "sft"]
    for name in steps:
        assert f"step {name} (" in out
    for name in [s for s in steps if s != "sft"] + ["sft-train", "sft-test"]:
        m = json.loads((tmp_path / f"data/{name}/v1/manifest.json").read_text())
        assert (tmp_path / f"data/{name}/v1/rejects.jsonl").is_file() or name == "sft-test"
        assert m["count"] + sum(m["stats"]["drops"].values()) >= 1, name  # inputs went somewhere
    # The curation steps: a dedup report, the mix's realised ratios, the split's two sides.
    assert (tmp_path / "data/grown-dedup/v1/dedup_report.jsonl").is_file()
    mix = json.loads((tmp_path / "data/sft-all/v1/manifest.json").read_text())
    assert mix["parents"] == [
        "good@v1", "grown-dedup@v1", "evolved@v1", "format-clean@v1", "safety-grown@v1",
    ]  # fmt: skip
    assert [x["input"] for x in mix["stats"]["mix"]] == [0, 1, 2, 3, 4] and mix["kind"] == "chat"
    # The skills' data: format answers all fit their task's schema (kept share recorded);
    # safety answers kept only where the detector agrees with what the prompt expects.
    fmt = json.loads((tmp_path / "data/format-good/v1/manifest.json").read_text())
    assert fmt["count"] > 0 and 0 < fmt["stats"]["kept_share"] <= 1

    # ...each laid out one way (json_indent: 2), whatever whitespace the decoder let through
    # (but one holding a key twice, which relaying would change: kept as decoded)
    def key_twice(pairs):
        if len({k for k, _ in pairs}) < len(pairs):
            raise KeyError("a key twice")
        return dict(pairs)

    relaid = 0
    for line in (tmp_path / "data/format-good/v1/records.jsonl").read_text().splitlines():
        rec = json.loads(line)
        answer = rec["messages"][-1]["content"]
        try:
            value = json.loads(answer, object_pairs_hook=key_twice)
        except KeyError:
            continue
        assert answer == json.dumps(value, indent=2, ensure_ascii=False)
        assert rec["meta"]["json_relaid"] == 2
        relaid += 1
    assert relaid > 0
    safe = json.loads((tmp_path / "data/safety-good/v1/manifest.json").read_text())
    assert safe["count"] > 0 and set(safe["stats"]["drops"]) <= {
        "complied_unsafe", "refused_safe", "partial_refusal",
    }  # fmt: skip
    # The safety prompts reworded: each rewording asks in the shape the step's regex gives,
    # and keeps its kept answer's reply and label (what the safety stage trains on); every
    # kept answer's rewording is a record or a counted reject.
    step = next(s for s in yaml.safe_load(cfg.read_text())["data"]["steps"]
                if s["name"] == "safety-reworded")  # fmt: skip
    shape = re.compile(step["params"]["regex"])
    kept = {
        r["id"]: r for r in map(json.loads, (tmp_path / "data/safety-good/v1/records.jsonl").open())
    }
    reworded = json.loads((tmp_path / "data/safety-reworded/v1/manifest.json").read_text())
    assert reworded["count"] + sum(reworded["stats"]["drops"].values()) == len(kept)
    for line in (tmp_path / "data/safety-reworded/v1/records.jsonl").read_text().splitlines():
        rec = json.loads(line)
        (parent,) = [kept[p] for p in rec["meta"]["parents"]]
        assert shape.fullmatch(rec["messages"][-2]["content"])
        assert rec["messages"][-2]["content"] != parent["messages"][-2]["content"]
        assert rec["messages"][-1] == parent["messages"][-1]
        assert rec["meta"]["expected"] == parent["meta"]["expected"]
    grown = json.loads((tmp_path / "data/safety-grown/v1/manifest.json").read_text())
    assert grown["count"] == len(kept) + reworded["count"]
    # Nothing resembling an eval prompt reaches training.
    clean = json.loads((tmp_path / "data/sft-mix/v1/manifest.json").read_text())
    assert clean["parents"] == ["sft-all@v1", "eval-format@v1", "eval-safety@v1"]
    for name, data in (("safety", "safety-grown"), ("format", "format-good")):
        # the mix draws from what survives this check
        clean = json.loads((tmp_path / f"data/{name}-clean/v1/manifest.json").read_text())
        assert clean["parents"] == [f"{data}@v1", "eval-format@v1", "eval-safety@v1"]
        assert set(clean["stats"]["drops"]) <= {"duplicates_reference"}  # the samples all stay
    # make data ends with examples people can read, and the counts kept and dropped.
    assert "examples:" in out and "  answers@v1  Q: " in out
    assert "kept " in out and " dropped " in out
    judged = [
        json.loads(x) for x in (tmp_path / "data/judged/v1/records.jsonl").read_text().splitlines()
    ]
    assert judged and all(0.0 <= r["meta"]["judge"]["quality"] <= 1.0 for r in judged)
    # make train: SFT on the curated answers, then SFT on the safety answers' openings from
    # the SFT model; no raw log dicts.
    assert "stage sft (sft): trained" in out
    assert "stage safety-sft (sft): trained" in out
    # where the time went: the data steps, slowest first, and each stage's training time
    times = next(x for x in out.splitlines() if x.startswith("time by step: "))
    secs = [float(t.rsplit(" ", 2)[1]) for t in times[len("time by step: ") :].split(", ")]
    assert secs == sorted(secs, reverse=True) and len(secs) >= 3
    assert out.count(" s of training -> ") == 2
    assert "{'loss'" not in out and "'train_runtime'" not in out
    # (the SFT stage: its train and eval splits; the safety stage: the safety answers and
    # the SFT mix, the loss on answer openings)
    stages = (
        ("sft", ["sft-train@v1", "sft-test@v1"]),
        ("safety-sft", ["safety-clean@v1", "sft-train@v1"]),
    )
    for stage, data in stages:
        rd = tmp_path / "runs/train" / stage
        info = json.loads((rd / "run.json").read_text())
        assert info["status"] == "complete" and [d["ref"] for d in info["datasets"]] == data
        assert info["weights_delta_l2"] > 0 and (rd / "final/adapter_model.safetensors").is_file()
        assert (rd / "curves.png").is_file() and (rd / "metrics.jsonl").stat().st_size > 0
    # make eval: base and tuned side by side on every suite, the renderings; no baseline yet,
    # so no gate
    ev = tmp_path / "runs/eval"
    for model in ("base", "tuned"):
        rep = json.loads((ev / model / "report.json").read_text())
        assert [s["suite"] for s in rep["suites"]] == ["qa", "format", "safety"]
        assert [s["items_count"] for s in rep["suites"]] == [20, 20, 20]  # the copies
        assert rep["model"]["fingerprint"]
    tuned = json.loads((ev / "tuned/report.json").read_text())["model"]
    assert tuned["adapter"].endswith("safety-sft/final")  # the chain, merged once for serving
    # ... and its weights loaded into the base model's running engine: one engine start
    assert tuned["engine_start"] == "weights swapped in"
    for name in ("summary.md", "report.html"):
        assert f"wrote {ev / name}" in out
    assert "safety/refusal_rate" in out and not (ev / "gate.xml").exists()
    assert "gate skipped: no baseline at" in out
    # The timing table and where to look.
    assert "==> demo done" in out and "   total " in out and "==> look at: datakit ls" in out
    assert "runs/eval/summary.md" in out
    # Bless the tuned report; `make eval` again gates against it (answers from the cache).
    run(BIN / "evalkit", "baseline", ev / "tuned", "-o", tmp_path / "baseline")
    out = run(*env_make, "eval").stdout
    assert "gate: pass" in out
    for model in ("base", "tuned"):  # every answer was cached: no vLLM engine started
        rep = json.loads((ev / model / "report.json").read_text())
        assert rep["model"]["engine_start"] == "none: every answer was in the request cache"
    assert (ev / "gate.xml").is_file() and 'failures="0"' in (ev / "gate.xml").read_text()
    show = run(BIN / "trainkit", "show", tmp_path / "runs/train/sft").stdout
    assert "sft (sft, adapter lora) - complete" in show and "data: sft-train@v1" in show
    out = run(*env_make, "train").stdout
    assert "stage sft (sft): skipped" in out
    assert "stage safety-sft (sft): skipped" in out
    # A re-run reuses everything: no new version, no model rebuilt, no step re-run.
    out = run(*env_make, "data").stdout
    assert (
        "model smollm2: present" in out
        and "dataset demo-seeds@v1: 12 instruction records (unchanged)" in out
    )
    assert out.count("(unchanged, skipped)") == len(steps)
    assert not (tmp_path / "data/demo-seeds/v2").exists()
    # A gate that fails: `make demo` still prints the timings and where to look, says a
    # gate failed, and fails with evalkit's code for a failed gate (make reports the
    # recipe's "Error 1", and exits 2 as make does); everything else is reused.
    failing = yaml.safe_load(cfg.read_text())
    failing["eval"]["gate"]["rules"]["qa/f1"] = {"min": 1.01}  # a floor no F1 reaches
    cfg.write_text(yaml.safe_dump(failing))
    proc = run(*env_make, "demo", check=False)
    assert proc.returncode == 2 and "demo] Error 1" in proc.stderr, proc.stderr[-2000:]
    out = proc.stdout
    assert "gate: FAIL" in out and "==> demo done" in out and "a gate FAILED, above" in out
    assert "   total " in out and "another draw of the recipe" in out


def test_make_data_stops_on_a_bad_config_before_any_work(tmp_path):
    cfg = tmp_path / "pipeline.yaml"
    cfg.write_text("data:\n  imports:\n    - {name: s, sorce: x.jsonl}\n")
    proc = run("make", "-C", ROOT, f"CONFIG={cfg}", f"VENV={BIN.parent}", "data", check=False)
    assert proc.returncode != 0
    assert f"{cfg}:3: data.imports[0].sorce: unknown key; did you mean 'source'?" in proc.stdout
    assert not (tmp_path / "data").exists()


def test_wheel_ships_schemas_and_demo_seeds(tmp_path):
    if shutil.which("pip", path=str(BIN)) is None:
        pytest.skip("no pip in the project venv")
    # Built from a copy: setuptools writes build/ and *.egg-info beside the sources, and an
    # egg-info left in the checkout shadows the installed entry points (config checks).
    src = tmp_path / "src"
    top = {".venv", ".git", "data", "runs", "build", "finetune_toolkit.egg-info"}

    def skip(d: str, names: list[str]) -> set[str]:
        return (top & set(names) if Path(d) == ROOT else set()) | {"__pycache__"} & set(names)

    shutil.copytree(ROOT, src, ignore=skip)
    run(BIN / "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", tmp_path, src,
        cwd=tmp_path)  # fmt: skip
    names = zipfile.ZipFile(next(tmp_path.glob("*.whl"))).namelist()
    for kind in ("chat", "instruction", "preference", "unpaired", "eval_item", "prediction"):
        assert f"corekit/_schemas/records/{kind}.json" in names
    assert "corekit/_schemas/pipeline.json" in names and "datakit/demo/seeds.jsonl" in names
    assert "corekit/_schemas/eval_report.json" in names
    demo = ("seeds.jsonl", "format_tasks.jsonl", "safety_prompts.jsonl")
    assert {f"datakit/demo/{f}" for f in demo} <= set(names)
    assert "corekit/refusal_model.json" in names  # the detector's weights
    for f in ("qa_demo.json", "format_eval.jsonl", "safety_probes.jsonl", "refusal_labelled.jsonl"):
        assert f"evalkit/data/{f}" in names
    assert (
        "datakit/review/templates/record.html" in names
        and "datakit/review/static/review.js" in names
    )
    assert {"datakit/cli.py", "trainkit/cli.py", "evalkit/cli.py"} <= set(names)
    # Every module of the source tree is in the wheel (a subpackage missing from
    # pyproject's package list would only show up for users installing the wheel).
    sources = {
        str(p.relative_to(ROOT))
        for top in ("corekit", "datakit", "trainkit", "evalkit")
        for p in (ROOT / top).rglob("*.py")
        if "__pycache__" not in p.parts
    }
    assert sources - set(names) == set()
    assert {f"trainkit/presets/{n}.yaml" for n in ("ddp", "fsdp", "zero2", "zero3")} <= set(names)
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    eps = zipfile.ZipFile(next(tmp_path.glob("*.whl"))).read(entry).decode()
    assert "datakit = datakit.cli:main" in eps and "trainkit = trainkit.cli:main" in eps
    assert "data = datakit.config:check_section" in eps  # corekit.config runs it
    assert os.path.exists(ROOT / "schemas/manifest.json")
