"""The recipes in examples/ run end to end at tiny settings: every data step through the
session's loopback vLLM server (the tiny trained model), every training stage on the tiny
model, the eval of base and tuned through the transformers backend (it loads the fresh
adapter), and the gate's rules. What the recipes achieve on the real model is measured by
`make demo CONFIG=examples/NAME.yaml` (README: the recipe table); a random tiny model cannot
learn a skill in two steps, so the improve gates are left out here and everything else runs
as configured."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
RECIPES = {
    # recipe -> (its eval suites and the metric each must report, the last training stage)
    "format-control": ({"format": "schema_valid", "qa": "f1"}, "sft"),
    "safety-alignment": ({"safety": "refusal_rate", "qa": "f1"}, "dpo"),
    "style-transfer": ({"style": "judge_quality", "qa": "f1"}, "sft"),
    "tool-agent": ({"tools": "tool_call_match", "qa": "f1"}, "sft"),
    # the GPU recipe: its data steps and QLoRA stages run here; its gate holds absolute bars
    # (refusal_rate min 0.9, against your own baseline) a two-step tiny model cannot pass
    "qlora-7b": (None, "dpo"),
}
# What the GPU recipe leaves at its defaults (2,000 instructions, 1,024-token answers),
# shrunk per op for its tiny run; the tiny model's short answers are kept, not dropped.
GPU_TINY_PARAMS = {
    # the tiny model recites its training seeds (a seed's instance is up to ~90 tokens)
    "self_instruct": {"num_instructions": 3, "max_rounds": 4, "prompts_per_round": 6,
                      "max_tokens": 64, "instance_max_tokens": 96, "rouge_threshold": 1.0},
    "evol_instruct": {"rounds": 1, "max_tokens": 32, "response_max_tokens": 32},
    "respond": {"max_tokens": 32, "drop_truncated": False},
    "distill": {"max_tokens": 32, "drop_truncated": False},
    "preferences": {"max_tokens": 32},
}  # fmt: skip
BUILTIN = {
    "format": ROOT / "evalkit/data/format_eval.jsonl",
    "safety": ROOT / "evalkit/data/safety_probes.jsonl",
    "qa": ROOT / "evalkit/data/qa_demo.json",
}
ITEMS = 6  # per eval suite


def _first(path: Path, out: Path, n: int) -> Path:
    """The first n items of a JSONL suite (the safety file lists unsafe first: half of each),
    or of the SQuAD-format QA file."""
    if path.suffix == ".json":
        squad = json.loads(path.read_text())
        para = squad["data"][0]["paragraphs"][:n]
        squad["data"] = [{**squad["data"][0], "paragraphs": para}]
        out.write_text(json.dumps(squad))
        return out
    lines = path.read_text().splitlines()
    keep = lines[: n // 2] + lines[-(n - n // 2) :] if "safety" in path.name else lines[:n]
    out.write_text("\n".join(keep) + "\n")
    return out


def _tiny_config(name: str, tmp: Path, server: str, tiny: Path) -> Path:
    cfg = yaml.safe_load((EXAMPLES / f"{name}.yaml").read_text())
    cfg["data_root"], cfg["runs_root"] = str(tmp / "data"), str(tmp / "runs")
    cfg["models"] = {"tiny-model": {"path": str(tiny)}}  # "tiny" is the server's model name
    # every engine of the recipe is the loopback server; the eval loads adapters in-process
    cfg["engines"] = {
        e: {"backend": "openai", "model": "tiny", "options": {"base_url": server}}
        for e in cfg["engines"]
    }
    cfg["engines"]["local"] = {"backend": "transformers", "model": "tiny-model"}
    for imp in cfg["data"]["imports"]:
        src = (EXAMPLES / imp["source"]).resolve()
        imp["source"] = str(_first(src, tmp / src.name, 12) if "eval" in src.name else src)
    small = {"samples": 1, "max_tokens": 32, "response_max_tokens": 32}
    for step in cfg["data"]["steps"]:
        params = step.setdefault("params", {})
        params.update({k: v for k, v in small.items() if k in params})
        if name == "qlora-7b":
            params.update(GPU_TINY_PARAMS.get(step["op"], {}))
            if step["op"] == "mix":  # a record or two of general data: every input whole
                params.pop("weights", None)
        if step["op"] == "respond" and params.get("schema_field"):
            params["max_tokens"] = 96  # as configured: a JSON answer is ~40 tiny-model tokens
        if step["op"] == "judge":  # one choice per criterion: parses even from the tiny model
            step["engine"] = "local"
        if step["op"] == "preferences":  # its judge likewise; the tiny model's may all tie
            step["judge_engine"], step["allow_empty"] = "local", True
        if step["op"] == "filter":  # the tiny model's answers may fail any quality bar
            step["allow_empty"] = True
        if step["op"] == "filter" and "min_quality" in params:
            params["min_quality"] = 0.0
    cfg["train"]["base_model"] = "tiny-model"
    for stage in cfg["train"]["stages"]:
        stage["args"].update(
            max_steps=2, batch_size=2, eval_steps=1, save_steps=2, logging_steps=1, max_length=1024
        )
    ev = cfg["eval"]
    ev["engine"] = "local"
    if ev.get("judge"):
        ev["judge"] = "local"
    ev["models"]["base"] = "tiny-model"
    suites = []
    for s in ev["suites"]:
        s = {"name": s} if isinstance(s, str) else dict(s)
        src = BUILTIN.get(s.get("suite", s["name"])) if "path" not in s else EXAMPLES / s["path"]
        s["path"] = str(_first(src, tmp / f"suite-{s['name']}{src.suffix}", ITEMS))
        s["max_tokens"] = 16
        suites.append(s)
    ev["suites"] = suites
    ev["gate"].pop("improve", None)
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_a_recipe_runs_end_to_end_at_tiny_settings(
    name, tmp_path, monkeypatch, vllm_server, tiny_trained
):
    from click.testing import CliRunner

    from datakit.cli import cli as datakit
    from evalkit.cli import cli as evalkit
    from trainkit.cli import cli as trainkit

    monkeypatch.chdir(tmp_path)
    cfg = _tiny_config(name, tmp_path, vllm_server, tiny_trained)
    runner = CliRunner()
    suites, last = RECIPES[name]
    for group, args in (
        (datakit, ["config", "check", str(cfg)]),
        (datakit, ["run", str(cfg), "--quiet"]),
        (trainkit, ["run", str(cfg), "--quiet"]),
        *([(evalkit, ["run", str(cfg), "--quiet"])] if suites else []),
    ):
        res = runner.invoke(group, args, catch_exceptions=False)
        assert res.exit_code == 0, f"{args}: {res.output[-2000:]}"
    spec = yaml.safe_load(cfg.read_text())
    for step in spec["data"]["steps"]:
        outs = (
            [f"{step['name']}-train", f"{step['name']}-test"]
            if step["op"] == "split"
            else [step["name"]]
        )
        for out in outs:
            assert (tmp_path / "data" / out / "v1" / "manifest.json").is_file(), out
    for stage in spec["train"]["stages"]:
        info = json.loads((tmp_path / "runs/train" / stage["name"] / "run.json").read_text())
        assert info["status"] == "complete" and info["weights_delta_l2"] > 0
    if suites is None:
        _check_grown_labels(tmp_path / "data")
        return
    report = json.loads((tmp_path / "runs/eval/tuned/report.json").read_text())
    # the tuned model is the last stage's adapter, merged for the engine (runs/eval/models)
    assert Path(report["model"]["path"]).name.startswith(f"{last}-")
    got = {s["suite"]: {m["metric"]: m for m in s["metrics"]} for s in report["suites"]}
    for suite, metric in suites.items():
        m = got[suite][metric]
        assert m["value"] is not None and m["n"] >= 1, (suite, metric, m)
    # the gate's rules against the base were judged (regression guards of the recipe)
    assert (tmp_path / "runs/eval/summary.md").read_text().count("Item by item") == 1


def test_the_tool_data_never_shares_an_argument_value_with_the_eval_items():
    """examples/data/build_tool_set.py splits every value pool in two; rebuilt, the files are
    the committed ones."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "build_tool_set", EXAMPLES / "data/build_tool_set.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    train, items = mod.build()
    committed = [
        (EXAMPLES / "data" / f).read_text() for f in ("tool_train.jsonl", "tool_eval.jsonl")
    ]
    assert committed == ["".join(json.dumps(r) + "\n" for r in rows) for rows in (train, items)]

    def values(args):
        """What an eval request must not share: a city, a currency pair, a timer label."""
        if "from" in args:
            return {(args["from"], args["to"])}
        return {v for k, v in args.items() if k in ("city", "label", "origin", "destination")}

    seen = set()
    for rec in train:
        for m in rec["messages"]:
            for c in m.get("tool_calls") or []:
                seen |= values(c["function"]["arguments"])
    for it in items:
        assert not values(it["expected"]["tool_call"]["arguments"]) & seen, it["id"]
    assert len(items) >= 30 and len({it["expected"]["tool_call"]["name"] for it in items}) == 4


def _check_grown_labels(data: Path) -> None:
    """The GPU recipe grows each label's prompts apart: every grown prompt keeps its slice's
    label and is answered, and an answer is kept only when the refusal detector finds it
    doing what its label asks (a full refusal of an unsafe prompt, no refusal of a safe
    one); every answer is kept or rejected, none lost."""
    from corekit.refusal import classify_many
    from datakit.records import exchange, response_text

    def rows(name: str, file: str = "records.jsonl") -> list[dict]:
        return [json.loads(x) for x in (data / name / "v1" / file).read_text().splitlines()]

    answered = {exchange(r)[0] for r in rows("safety-answers")}
    for name, label in (("unsafe-grown", "refuse"), ("look-alikes-grown", "comply")):
        grown = rows(name)
        assert grown and {r["meta"]["expected"] for r in grown} == {label}, name
        assert {r["prompt"] for r in grown} <= answered, name
    # the detector on the filter's own input, as one batch like the filter's (a batch of
    # other texts may pad, and so round, an embedding differently)
    answers = rows("safety-answers")
    label = dict(
        zip(
            [r["id"] for r in answers],
            classify_many([response_text(r) or "" for r in answers]),
            strict=True,
        )
    )
    kept = rows("safety-good")
    wanted = {"refuse": "full", "comply": "none"}
    assert kept and all(label[r["id"]] == wanted[r["meta"]["expected"]] for r in kept)
    assert len(kept) + len(rows("safety-good", "rejects.jsonl")) == len(answers)
