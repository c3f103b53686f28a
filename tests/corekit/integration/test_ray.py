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
