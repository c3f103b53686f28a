"""Data-parallel training on CPU: `torchrun --nproc_per_node 2 -m trainkit run` (gloo)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from tests.trainkit.integration.test_train import FAST, project, write_config  # noqa: F401

BIN = Path(sys.executable).parent


def test_two_processes_train_one_run(project):  # noqa: F811
    stage = {
        "name": "sft",
        "method": "sft",
        "dataset": "chat",
        "args": dict(FAST, max_steps=4, batch_size=2),
    }
    cfg = write_config(project, "ddp", [stage])
    with socket.socket() as s:  # a free port for the rendezvous
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}

    def launch(port: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(BIN / "torchrun"), "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
             "--master_port", port, "-m", "trainkit", "run", str(cfg)],
            capture_output=True, text=True, timeout=600, env=env, cwd=project["root"],
        )  # fmt: skip

    proc = launch(port)
    if proc.returncode != 0 and "terminate called without an active exception" in proc.stderr:
        # Seen once in a whole-suite run (not in 8 runs alone, loaded or not): a gloo worker
        # thread aborting a rank (SIGABRT) right after the first step. One fresh attempt on
        # a new port tells that crash from a real failure, which fails both times.
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            proc = launch(str(s.getsockname()[1]))
    assert proc.returncode == 0, proc.stderr[-4000:]
    # Only rank 0 reports and writes the run directory.
    assert proc.stdout.count("stage sft (sft): trained") == 1, proc.stdout
    run_dir = project["root"] / "runs" / "ddp" / "train" / "sft"
    info = json.loads((run_dir / "run.json").read_text())
    assert info["world_size"] == 2 and info["ddp_backend"] == "gloo"
    # the world, checked on both ranks (all_gather), said once by rank 0
    world = info["world"]
    assert world["ranks"] == 2 and [d.split(":")[0] for d in world["devices"]] == ["cpu"]
    devices = ", ".join(world["devices"])
    line = f"world: 2 ranks (gloo) on 1 host, devices {devices}; every rank reads chat@v1"
    assert world["line"] == line and proc.stderr.count("world: ") == 1
    assert (
        info["status"] == "complete" and info["global_step"] == 4 and info["weights_delta_l2"] > 0
    )
    assert (run_dir / "final" / "adapter_model.safetensors").is_file()
