"""executor: ray on a real Ray cluster on loopback (a head and one worker node): a generation
step writes the same version as the local executor, and still does when the worker node is
lost mid-step (Ray retries its tasks)."""

from __future__ import annotations

import json
import os
import threading
import time

import pytest

from tests.conftest import write_jsonl

# Every node on loopback: Ray otherwise names a node by the address it would reach the
# internet from (no packet is sent, but the nodes would then talk over that interface).
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def cluster():
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    worker = c.add_node(num_cpus=1)
    assert c.address.startswith("127.0.0.1:")
    ray.init(address=c.address, include_dashboard=False, log_to_driver=False)
    yield c, worker
    ray.shutdown()
    c.shutdown()


def _project(tmp_path, model, executor: str, address: str | None = None, words=None):
    from corekit.project import Project

    prompts = [
        {"instruction": f"Name thing {i}: it is {w}.", "output": "-"}
        for i, w in enumerate(words or WORDS)
    ]
    write_jsonl(tmp_path / "seeds.jsonl", prompts)
    ray_part = f"executor: {{type: ray, address: '{address}', replicas: 2, batch_size: 3}}\n"
    (tmp_path / "p.yaml").write_text(
        (ray_part if executor == "ray" else "")
        + "engines:\n"
        # one request per forward pass: the transformers backend's output then does not
        # depend on which requests share a batch (vLLM's does not either)
        + f"  gen: {{backend: transformers, model: {model}, options: {{batch_size: 1}}}}\n"
        + "data:\n  imports:\n    - {name: seeds, source: seeds.jsonl}\n"
        + "  steps:\n    - name: answers\n      op: respond\n      input: seeds\n"
        + "      engine: gen\n      params: {max_tokens: 12, temperature: 0.9, drop_truncated: false}\n"
    )
    return Project.load(tmp_path / "p.yaml")


WORDS = ["red", "cold", "loud", "soft", "tiny", "old", "fast", "round", "sweet", "dark"] * 3


def _run_local(project):
    """The local executor at the replicas' thread count (Ray gives an actor as many threads
    as CPUs it reserves: one): a float32 sum over another thread count may tip a sampled
    token at a near tie (bench/scale.py counts them), which is not what is tested here."""
    import torch

    from datakit.stage import run_data

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return run_data(project, quiet=True)
    finally:
        torch.set_num_threads(threads)


def _version_bytes(project) -> tuple[bytes, bytes]:
    v = project.data_root / "answers" / "v1"
    return (v / "records.jsonl").read_bytes(), (v / "rejects.jsonl").read_bytes()


def test_a_step_on_ray_writes_what_the_local_executor_writes(tmp_path, tiny_model, cluster):
    from datakit.stage import run_data

    cluster, _ = cluster
    (tmp_path / "local").mkdir()
    (tmp_path / "ray").mkdir()
    local = _project(tmp_path / "local", tiny_model, "local")
    on_ray = _project(tmp_path / "ray", tiny_model, "ray", cluster.address)
    assert on_ray.engines["gen"][0].ray["replicas"] == 2
    _run_local(local)
    summary = run_data(on_ray, quiet=True)
    step = summary.steps[0]
    assert step["count"] + sum(step["drops"].values()) == len(WORDS) and step["count"] > 0
    assert _version_bytes(on_ray) == _version_bytes(local)
    manifest = json.loads((on_ray.data_root / "answers" / "v1" / "manifest.json").read_text())
    assert manifest["stats"]["executor"] == {"type": "ray", "nodes": 2, "ray": ray.__version__}
    # a re-run on Ray answers from the driver's request cache: no model call
    again = run_data(on_ray, quiet=True, force=True)
    assert again.steps[0]["engine"]["engine"]["model_calls"] == 0


TOPICS = ["tides", "rainbows", "volcanoes", "vaccines", "compilers", "glaciers", "bread yeast",
          "solar panels", "credit scores", "jet engines", "photosynthesis", "earthquakes"]  # fmt: skip


def _dedup_project(tmp_path, executor: str, address: str | None = None):
    """Records with planted duplicates (a copy, a light edit, a paraphrase of some), deduped
    semantically and by MinHash."""
    from corekit.project import Project

    rows = []
    for n, t in enumerate(TOPICS):
        ask = f"Explain how {t} work, in three sentences for a curious child."
        answer = f"Here is how {t} work: step one, step two, and the result {n}."
        rows.append({"instruction": ask, "output": answer})
        rows.append({"instruction": ask + " ", "output": answer})  # a copy
        if n % 2:
            rows.append({"instruction": ask.replace("curious", "bright"), "output": answer})
        if n % 3 == 0:
            rows.append({"instruction": f"In three sentences, tell a child how {t} work.",
                         "output": f"This is how {t} work: step one, step two, result {n}."})  # fmt: skip
        rows.append({"instruction": f"List {n + 2} facts about {t}.", "output": f"{t} fact."})
    write_jsonl(tmp_path / "seeds.jsonl", rows)
    ray_part = f"executor: {{type: ray, address: '{address}', replicas: 2}}\n"
    (tmp_path / "p.yaml").write_text(
        (ray_part if executor == "ray" else "")
        + "data:\n  imports:\n    - {name: seeds, source: seeds.jsonl}\n  steps:\n"
        + "    - {name: semantic, op: dedup, input: seeds}\n"
        + "    - {name: near, op: dedup, input: seeds, params: {method: near, threshold: 0.7}}\n"
        + "    - {name: connected, op: dedup, input: seeds,"
        + " params: {cluster: connected, fields: instruction, keep: longest}}\n"
    )
    return Project.load(tmp_path / "p.yaml")


def test_dedup_on_ray_writes_what_the_local_executor_writes(tmp_path, cluster, monkeypatch):
    """Embeddings by an actor pool (blocks of 16 texts: several per replica), the semantic
    candidates from two ANN shards, MinHash band keys grouped by Ray Data: the same records,
    rejects and dedup report as in this process."""
    import torch

    from datakit.ops import dedup_search
    from datakit.stage import run_data

    cluster, _ = cluster
    monkeypatch.setattr(dedup_search, "EMBED_BLOCK", 16)
    (tmp_path / "local").mkdir()
    (tmp_path / "ray").mkdir()
    local = _dedup_project(tmp_path / "local", "local")
    on_ray = _dedup_project(tmp_path / "ray", "ray", cluster.address)
    from corekit import embeddings

    # the replicas' thread count (see _run_local), in an encoder session made for it (the
    # session keeps the thread count it was made with)
    embeddings._onnx.cache_clear()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_data(local, quiet=True)
    finally:
        torch.set_num_threads(threads)
        embeddings._onnx.cache_clear()
    run_data(on_ray, quiet=True)
    for step in ("semantic", "near", "connected"):
        files = ("records.jsonl", "rejects.jsonl", "dedup_report.jsonl")
        mine, theirs = (p.data_root / step / "v1" for p in (on_ray, local))
        assert [(mine / f).read_bytes() for f in files] == [
            (theirs / f).read_bytes() for f in files
        ]
        kept = len((mine / "records.jsonl").read_bytes().splitlines())
        assert 0 < kept < 5 * len(TOPICS), step  # something was dropped, not everything
        manifest = json.loads((mine / "manifest.json").read_text())
        assert manifest["stats"]["executor"]["type"] == "ray"


def _at_one_thread(fn, *args, **kwargs):
    """``fn`` at the replicas' thread count (see _run_local)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return fn(*args, **kwargs)
    finally:
        torch.set_num_threads(threads)


def test_a_judge_step_on_ray_writes_what_the_local_executor_writes(tmp_path, tiny_model, cluster):
    """The judge's constrained choices (one label per criterion) through the actor pool:
    the same scores, kept records and rejects."""
    from corekit.project import Project
    from datakit.stage import run_data

    cluster, _ = cluster
    rows = [{"instruction": f"Describe a {w} thing.", "output": f"It is {w} {i}."}
            for i, w in enumerate(WORDS[:16])]  # fmt: skip
    projects = {}
    for executor in ("local", "ray"):
        d = tmp_path / executor
        d.mkdir()
        write_jsonl(d / "seeds.jsonl", rows)
        ray_part = (
            f"executor: {{type: ray, address: '{cluster.address}', replicas: 2, batch_size: 4}}\n"
        )
        (d / "p.yaml").write_text(
            (ray_part if executor == "ray" else "")
            + f"engines:\n  gen: {{backend: transformers, model: {tiny_model}, options: {{batch_size: 1}}}}\n"
            + "data:\n  imports:\n    - {name: seeds, source: seeds.jsonl}\n  steps:\n"
            + "    - {name: judged, op: judge, input: seeds, engine: gen}\n"
        )
        projects[executor] = Project.load(d / "p.yaml")
    _at_one_thread(run_data, projects["local"], quiet=True)
    run_data(projects["ray"], quiet=True)
    mine, theirs = (projects[e].data_root / "judged" / "v1" for e in ("ray", "local"))
    for f in ("records.jsonl", "rejects.jsonl"):
        assert (mine / f).read_bytes() == (theirs / f).read_bytes(), f
    judged = [json.loads(x) for x in (mine / "records.jsonl").read_text().splitlines()]
    judged += [json.loads(x)["record"] for x in (mine / "rejects.jsonl").read_text().splitlines()]
    assert len(judged) == 16 and all("judge" in r["meta"] for r in judged)


def test_eval_predictions_on_ray_are_the_local_executors(tmp_path, tiny_model, cluster):
    """`evalkit run` with executor: ray: the same predictions file and report metrics."""
    import yaml

    from evalkit.stage import run_eval

    cluster, _ = cluster
    suite = tmp_path / "facts.jsonl"
    write_jsonl(suite, [{"id": f"q{i}", "prompt": f"What is {w}?", "references": [w]}
                        for i, w in enumerate(WORDS[:12])])  # fmt: skip
    out = {}
    for executor in ("local", "ray"):
        d = tmp_path / executor
        cfg = {
            "engines": {
                "hf": {
                    "backend": "transformers",
                    "model": str(tiny_model),
                    "options": {"batch_size": 1},
                }
            },  # fmt: skip
            "eval": {
                "engine": "hf",
                "models": {"tiny": str(tiny_model)},
                "out": str(d / "eval"),
                "suites": [
                    {
                        "name": "facts",
                        "path": str(suite),
                        "metrics": ["f1"],
                        "max_tokens": 8,
                        "truncated": "score",
                    }
                ],
            },  # fmt: skip
            "runs_root": str(d / "runs"),
        }
        if executor == "ray":
            cfg["executor"] = {"type": "ray", "address": cluster.address, "replicas": 2}
        d.mkdir()
        (d / "p.yaml").write_text(yaml.safe_dump(cfg))
        run = run_eval if executor == "ray" else lambda *a, **k: _at_one_thread(run_eval, *a, **k)
        run(d / "p.yaml", quiet=True, curves=False)
        out[executor] = d / "eval" / "tiny"
    preds = [(out[e] / "facts.predictions.jsonl").read_bytes() for e in ("ray", "local")]
    assert preds[0] == preds[1] and len(preds[0].splitlines()) == 12
    reports = [json.loads((out[e] / "report.json").read_text()) for e in ("ray", "local")]
    assert reports[0]["suites"] == reports[1]["suites"]
    assert reports[0]["provenance"]["executor"]["nodes"] == 2
    assert "executor" not in reports[1]["provenance"]


def _cached(project) -> int:
    return sum(len(p.read_bytes().splitlines()) for p in project.cache_dir.glob("*.jsonl"))


def test_a_killed_driver_resumes_without_asking_a_finished_request_again(
    tmp_path, tiny_model, cluster
):
    """The driver writes each result to the request cache as it streams back: kill the
    `datakit run` process mid-step, and the re-run sends only what was not finished."""
    import signal
    import subprocess
    import sys

    from datakit.stage import run_data

    cluster, _ = cluster
    words = WORDS * 2
    on_ray = _project(tmp_path, tiny_model, "ray", cluster.address, words)
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    cmd = [sys.executable, "-m", "datakit.cli", "run", str(tmp_path / "p.yaml"), "-q"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 180
    while _cached(on_ray) < 4:
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, "no result reached the cache"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    cached = _cached(on_ray)
    assert 4 <= cached < len(words)  # killed mid-step, with finished requests cached
    assert not (on_ray.data_root / "answers").exists()  # and no version written
    summary = run_data(on_ray, quiet=True)
    used = summary.steps[0]["engine"]["engine"]
    assert used["cache_hits"] == cached
    assert used["model_calls"] == len(words) - cached


def test_a_replica_whose_engine_cannot_start_is_one_line(tmp_path, tiny_model, cluster):
    """A model the driver can read but a replica cannot load (its weights cut short):
    `datakit run` says so in one line, exit 1, and writes no version."""
    import shutil

    from click.testing import CliRunner

    from datakit.cli import cli

    cluster, _ = cluster
    broken = tmp_path / "broken-model"
    shutil.copytree(tiny_model, broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    project = _project(tmp_path, broken, "ray", cluster.address)
    res = CliRunner().invoke(cli, ["run", str(tmp_path / "p.yaml"), "-q"])
    assert res.exit_code == 1, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "did not start on a replica" in lines[0], res.output
    assert "broken-model" in lines[0] and "Traceback" not in res.output
    assert not (project.data_root / "answers").exists()


def test_a_lost_worker_node_mid_step_changes_nothing(tmp_path, tiny_model, cluster):
    """(The module's last test: it leaves the cluster with its head node alone.)"""
    from datakit.stage import run_data

    cluster, worker = cluster
    (tmp_path / "local").mkdir()
    (tmp_path / "ray").mkdir()
    local = _project(tmp_path / "local", tiny_model, "local")
    _run_local(local)
    on_ray = _project(tmp_path / "ray", tiny_model, "ray", cluster.address)
    done: dict = {}
    t = threading.Thread(target=lambda: done.update(s=run_data(on_ray, quiet=True)))
    t.start()
    # Remove the node once one of the step's actors holds its CPU (starting or answering).
    from ray._private.state import available_resources_per_node

    deadline = time.monotonic() + 120

    def worker_busy() -> bool:  # Ray leaves out a resource none is left of
        free = available_resources_per_node().get(worker.node_id)
        return free is not None and free.get("CPU", 0) < 1

    while not worker_busy():
        assert time.monotonic() < deadline and "s" not in done, "no actor on the worker node"
        time.sleep(0.2)
    assert "s" not in done  # mid-step
    cluster.remove_node(worker)
    t.join(timeout=600)
    assert "s" in done, "the step did not finish after the node was lost"
    assert _version_bytes(on_ray) == _version_bytes(local)
