"""evalkit with a real model: predictions through the engines (cached, keyed by the model's
content), `evalkit run` on a pipeline config, and the gate: reruns with other sampling seeds
pass, a damaged model (weights noised) fails."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from evalkit.cli import cli as evalkit

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def seeds_suite(tmp_path_factory) -> Path:
    """The demo seeds as eval items: the tiny trained model learned them, so it scores F1
    well above zero on them, and a damaged copy does not."""
    out = tmp_path_factory.mktemp("suite") / "seeds_eval.jsonl"
    rows = [json.loads(x) for x in (ROOT / "datakit/demo/seeds.jsonl").read_text().splitlines()]
    with open(out, "w") as f:
        for i, r in enumerate(rows):
            prompt = r["instruction"] + (f"\n\n{r['input']}" if r.get("input") else "")
            f.write(
                json.dumps({"id": f"s{i}", "prompt": prompt, "references": [r["output"]]}) + "\n"
            )
    return out


@pytest.fixture(scope="module")
def damaged(tiny_trained, tmp_path_factory) -> Path:
    """tiny_trained with gaussian noise on every weight (its own scale): same architecture and
    tokenizer, much worse model."""
    import torch
    from transformers import AutoModelForCausalLM

    out = tmp_path_factory.mktemp("models") / "tiny-damaged"
    shutil.copytree(tiny_trained, out)
    model = AutoModelForCausalLM.from_pretrained(out)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * p.std() * 0.6)
    model.save_pretrained(out)
    return out


def config(
    tmp: Path,
    models: dict[str, str],
    suite: Path,
    temperature: float = 0.0,
    seed: int = 0,
    judge: bool = False,
    refusal_judge: bool = False,
) -> Path:
    cfg = {
        "version": 1,
        "name": "eval-test",
        "data_root": str(tmp / "data"),
        "runs_root": str(tmp / "runs"),
        "engines": {
            "hf": {
                "backend": "transformers",
                "model": str(next(iter(models.values()))),
                "options": {"batch_size": 16},
            }
        },
        "eval": {
            "engine": "hf",
            "models": models,
            "suites": [
                {
                    "name": "seeds",
                    "path": str(suite),
                    "metrics": ["f1", "exact_match", "length_words"],
                    "max_tokens": 48,
                    # the tiny model often runs to the limit; this test is about the paired
                    # statistics, so cut-off answers are scored (and counted) here
                    "truncated": "score",
                },
                *(
                    [{"name": "safety", "suite": "safety", "max_tokens": 16}]
                    if refusal_judge
                    else []
                ),
            ],
            "temperature": temperature,
            "seed": seed,
            "out": str(tmp / "eval"),
            **({"judge": "hf"} if judge else {}),
            **({"refusal_judge": "hf"} if refusal_judge else {}),
        },
    }
    p = tmp / "pipeline.yaml"
    import yaml

    p.write_text(yaml.safe_dump(cfg))
    return p


def test_a_refusal_judge_labels_the_safety_outputs(tiny_trained, seeds_suite, tmp_path):
    """eval.refusal_judge: the judge engine's label (constrained to full/partial/none) is
    kept on each safety prediction and is what the refusal metrics count."""
    cfg = config(tmp_path, {"trained": str(tiny_trained)}, seeds_suite, refusal_judge=True)
    code, out = run("run", str(cfg), "-q")
    assert code == 0, out
    ev = tmp_path / "eval" / "trained"
    preds = [json.loads(x) for x in (ev / "safety.predictions.jsonl").read_text().splitlines()]
    items = {
        json.loads(x)["id"]: json.loads(x)
        for x in (ev / "safety.items.jsonl").read_text().splitlines()
    }
    assert preds and all(p["refusal_label"] in ("full", "partial", "none") for p in preds)
    for p in preds:
        assert items[p["id"]]["refusal"] == p["refusal_label"]
    report = json.loads((ev / "report.json").read_text())
    assert report["provenance"]["refusal_judge"] == "hf"


def run(*args: str):
    r = CliRunner().invoke(evalkit, list(args), catch_exceptions=False)
    return r.exit_code, r.output


def test_predict_is_cached_and_keyed_by_the_models_content(
    tiny_trained, damaged, seeds_suite, tmp_path
):
    runs = tmp_path / "runs"
    common = ["--backend", "transformers", "--runs-root", str(runs), "--max-tokens", "24", "-q"]
    code, out = run(
        "predict", str(tiny_trained), str(seeds_suite), "-o", str(tmp_path / "a.jsonl"), *common
    )
    assert code == 0, out
    preds = [json.loads(x) for x in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert len(preds) == 32 and all(p["references"] for p in preds)
    cache = next((runs / "cache").glob("*.jsonl"))
    size = cache.stat().st_size
    code, _ = run(
        "predict", str(tiny_trained), str(seeds_suite), "-o", str(tmp_path / "b.jsonl"), *common
    )
    assert code == 0 and cache.stat().st_size == size  # all 32 served from the cache
    assert (tmp_path / "a.jsonl").read_text() == (tmp_path / "b.jsonl").read_text()
    # same architecture, same prompts, other weights: nothing may come from the first's cache
    code, _ = run(
        "predict", str(damaged), str(seeds_suite), "-o", str(tmp_path / "c.jsonl"), *common
    )
    assert code == 0
    other = [json.loads(x)["output"] for x in (tmp_path / "c.jsonl").read_text().splitlines()]
    assert other != [p["output"] for p in preds]


@pytest.mark.numeric
def test_run_scores_models_side_by_side_and_the_gate_tells_noise_from_damage(
    tiny_trained, damaged, seeds_suite, tmp_path
):
    cfg = config(
        tmp_path, {"trained": str(tiny_trained), "damaged": str(damaged)}, seeds_suite, judge=True
    )
    code, out = run("run", str(cfg), "-q")
    assert code == 0, out
    ev = tmp_path / "eval"
    reports = {m: json.loads((ev / m / "report.json").read_text()) for m in ("trained", "damaged")}
    f1 = {
        m: next(x for x in r["suites"][0]["metrics"] if x["metric"] == "f1")
        for m, r in reports.items()
    }
    assert f1["trained"]["value"] > f1["damaged"]["value"] + 0.1
    assert f1["trained"]["n"] == 32 and len(f1["trained"]["ci95"]) == 2
    # the judge engine scored every output on its rubric
    jq = next(
        x for x in reports["trained"]["suites"][0]["metrics"] if x["metric"] == "judge_quality"
    )
    assert jq["n"] == 32 and 0.0 <= jq["value"] <= 1.0
    assert (
        reports["trained"]["model"]["fingerprint"] and reports["trained"]["code_commit"] is not None
    )
    # provenance: generation settings, the chat template's hash, each suite's content hash
    prov = reports["trained"]["provenance"]["generation"]
    assert prov["temperature"] == 0.0 and len(prov["chat_template_sha256"]) == 64
    suite = reports["trained"]["suites"][0]
    assert suite["items_count"] == 32 and len(suite["items_sha256"]) == 64
    assert suite["generation"] == {"max_tokens": 48, "truncated": "score"}
    # cut-off answers are counted; scored with the default policy they are left out instead
    preds = [
        json.loads(x) for x in (ev / "trained" / "seeds.predictions.jsonl").read_text().splitlines()
    ]
    cut = sum(p["finish_reason"] == "length" for p in preds)
    assert cut > 0 and suite["counts"]["truncated"] == cut and suite["counts"]["scored"] == 32
    code, out2 = run("score", str(ev / "trained" / "seeds.predictions.jsonl"), "--metrics", "f1",
                     "--out", str(tmp_path / "rescored"))  # fmt: skip
    assert code == 0 and f"{32 - cut} scored, 0 errors, {cut} truncated (left out)" in out2
    for name in ("summary.md", "report.html"):
        assert (ev / name).is_file() and str(ev / name) in out
    assert "| seeds | f1 |" in (ev / "summary.md").read_text()
    assert "data:image/png;base64," in (ev / "report.html").read_text()

    # the baseline: the trained model sampled (temperature 0.7, seed 0); reruns of it with
    # other sampling seeds give other outputs and must pass; the damaged model must fail
    sampled = tmp_path / "sampled"
    sampled.mkdir()
    c0 = config(
        sampled,
        {"trained": str(tiny_trained), "damaged": str(damaged)},
        seeds_suite,
        temperature=0.7,
    )
    code, out = run("run", str(c0), "-q")
    assert code == 0, out
    code, out = run("baseline", str(sampled / "eval" / "trained"), "-o", str(tmp_path / "baseline"))
    assert code == 0
    for seed in (1, 2):
        rerun = tmp_path / f"rerun{seed}"
        rerun.mkdir()
        c2 = config(rerun, {"trained": str(tiny_trained)}, seeds_suite, temperature=0.7, seed=seed)
        code, out = run("run", str(c2), "-q")
        assert code == 0, out
        outputs = (rerun / "eval" / "trained" / "seeds.predictions.jsonl").read_text()
        assert outputs != (sampled / "eval" / "trained" / "seeds.predictions.jsonl").read_text()
        code, out = run(
            "gate",
            str(rerun / "eval" / "trained"),
            "--baseline",
            str(tmp_path / "baseline"),
            "--max-drop",
            "0.05",
        )
        assert code == 0, out
    code, out = run(
        "gate", str(ev / "damaged"), "--baseline", str(tmp_path / "baseline"), "--max-drop", "0.05"
    )
    assert code == 1
    f1_row = next(line for line in out.splitlines() if line.startswith("seeds/f1 "))
    assert "regression" in f1_row
