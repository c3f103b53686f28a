"""A real `trainkit run` killed with SIGKILL resumes from its last checkpoint and ends where an
uninterrupted run ends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from tests.trainkit.integration.test_train import project  # noqa: F401  (module fixture)

BIN = Path(sys.executable).parent
STEPS = 30


def _config(project, name: str) -> Path:  # noqa: F811
    stage = {
        "name": "sft",
        "method": "sft",
        "dataset": "chat",
        "adapter": {"type": "lora", "r": 4, "alpha": 8},
        "args": {
            "max_steps": STEPS,
            "batch_size": 2,
            "max_length": 256,
            "packing": False,
            "logging_steps": 1,
            "save_steps": 5,
            "learning_rate": 1e-3,
        },
    }
    cfg = {
        "data_root": str(project["root"] / "data"),
        "runs_root": str(project["root"] / "runs" / name),
        "train": {"base_model": str(project["model"]), "stages": [stage]},
    }
    path = project["root"] / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _trainkit(*args: str, **kw) -> subprocess.Popen:
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1")
    return subprocess.Popen(
        [str(BIN / "trainkit"), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **kw,
    )


def _adapter(run_dir: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(run_dir / "final" / "adapter_model.safetensors")


@pytest.mark.numeric
def test_killed_run_resumes_from_its_last_checkpoint(project):  # noqa: F811
    killed_cfg = _config(project, "killed")
    run_dir = project["root"] / "runs" / "killed" / "train" / "sft"
    proc = _trainkit("run", str(killed_cfg), "-q")
    deadline = time.time() + 240
    while (
        time.time() < deadline
        and not (run_dir / "checkpoints" / "checkpoint-10" / "trainer_state.json").exists()
    ):
        assert proc.poll() is None, proc.stdout.read()
        time.sleep(0.05)
    # Killed as soon as checkpoint-10 is complete: 20 steps and two saves are still ahead,
    # so it dies mid-run however fast the steps are (one thread on a tiny model: ~30 ms).
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "running" and not (run_dir / "final").exists()

    out = _trainkit("run", str(killed_cfg)).communicate(timeout=300)[0]
    assert "stage sft (sft): resumed" in out, out
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "complete" and info["global_step"] == STEPS
    resumed_at = int(info["resumed_from"].split("-")[1])
    assert resumed_at >= 10 and resumed_at % 5 == 0
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == list(range(1, STEPS + 1)), (
        "each step logged once"
    )

    # The same run without the kill ends at the same weights (data order and RNG restored).
    whole_cfg = _config(project, "whole")
    out = _trainkit("run", str(whole_cfg), "-q").communicate(timeout=300)[0]
    whole = _adapter(project["root"] / "runs" / "whole" / "train" / "sft")
    resumed = _adapter(run_dir)
    assert whole.keys() == resumed.keys()
    # Both runs on this machine with the same kernels, the data order and RNG restored from
    # the checkpoint: the resumed run repeats the same arithmetic, so the adapters agree to
    # float32 rounding. A skipped or repeated step would move them by about lr (1e-3).
    for k in whole:
        torch.testing.assert_close(resumed[k], whole[k], rtol=1e-5, atol=1e-6, msg=k)
