"""A stage's run directory: what identifies its run, and what to do with the run that is
there (skip it, resume it from its last checkpoint, replace it, or refuse).

A run's config hash covers the stage's own config and data and the identity of every model
upstream of it (the stage it continues, the reward model it scores with), so retraining
anything above a stage makes its run out of date.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from corekit import adapters
from corekit.errors import ToolkitError
from corekit.runs import config_hash, read_run
from datakit.store import DatasetStore

from .config import Stage

log = logging.getLogger(__name__)


def rank() -> int:
    """This process's rank under torchrun (0 alone)."""
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def last_checkpoint(run_dir: Path) -> Path | None:
    ckpts = []
    for p in (run_dir / "checkpoints").glob("checkpoint-*"):
        if p.is_dir() and p.name.split("-")[-1].isdigit() and (p / "trainer_state.json").is_file():
            ckpts.append((int(p.name.split("-")[-1]), p))
    return max(ckpts)[1] if ckpts else None


def model_identity(path: str | Path) -> dict[str, Any] | None:
    """What identifies the model at ``path`` as an input of a stage.

    A stage's final directory is identified by its run (config hash and when it finished),
    so retraining that stage, even with the same config, changes it; any other local
    directory by its files' names, sizes and modification times (a cheap fingerprint that
    changes when the model is replaced); a hub id by itself. None when it does not exist
    yet (the stage that makes it has not run).
    """
    p = Path(path)
    run = read_run(p.parent) if p.name == adapters.FINAL_DIR else None
    if run is not None:
        return {
            "run": str(p.parent),
            "config_hash": run.get("config_hash"),
            "finished": run.get("finished"),
        }
    if p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.is_file())
        stats = [(str(f.relative_to(p)), f.stat().st_size, f.stat().st_mtime_ns) for f in files]
        return {"path": str(p), "files": config_hash(stats)}
    if p.exists() or p.is_absolute():
        return None
    return {"hub": str(path)}


def upstream_identity(stage: Stage) -> dict[str, Any]:
    """The identity of every model the stage's result depends on besides its own config:
    the stage it continues (``from:``) and the reward model it scores with (``rl``). Each
    upstream stage's identity holds its own upstream's (its config hash does), so a change
    anywhere up the chain reaches every stage below it."""
    out: dict[str, Any] = {}
    if stage.from_stage:
        out["from"] = model_identity(stage.base_model)
    if stage.reward_model:
        out["reward_model"] = model_identity(stage.reward_model)
    return out


def stage_key(own: str | None, upstream: dict[str, Any]) -> str | None:
    """The run's config hash: its own config and data, and its upstream models' identity.
    A stage with no upstream keeps the hash of its own config alone."""
    return config_hash({"stage": own, "upstream": upstream}) if upstream else own


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def _what_differs(run_dir: Path, resolved: dict[str, Any]) -> str:
    """Which keys of the stage config differ from the run's config.json, for the error."""
    try:
        old = _flat(json.loads((run_dir / "config.json").read_text()))
    except (OSError, ValueError):
        return ""
    new = _flat(resolved)
    keys = sorted(k for k in old.keys() | new.keys() if old.get(k, "-") != new.get(k, "-"))
    if not keys:
        return "; same config, other data"

    def show(v: Any) -> str:
        text = json.dumps(v) if v is not None else "unset"
        return text if len(text) <= 30 else text[:27] + "..."

    parts = [
        f"{k} {show(old.get(k)) if k in old else 'absent'} -> "
        f"{show(new.get(k)) if k in new else 'absent'}"
        for k in keys[:4]
    ]
    more = f" and {len(keys) - 4} more" if len(keys) > 4 else ""
    return "; differs in " + ", ".join(parts) + more


@dataclass
class RunPlan:
    """Where a stage's run stands before it trains: its identity, and the checkpoint it
    resumes from (None: from the start)."""

    key: str  # the stage's config, data and upstream models together
    own: str  # the stage's own config and data
    upstream: dict[str, Any]
    resolved: dict[str, Any]
    resume: Path | None


def plan_run(stage: Stage, store: DatasetStore, force: bool) -> RunPlan | dict[str, Any]:
    """The run's plan, or the finished run's metrics when it is complete and unchanged.
    A run dir of another config is refused (unless ``force``); one whose upstream model
    was retrained is out of date and replaced."""
    run_dir = stage.run_dir
    versions = [store.resolve(ref) for ref, _ in stage.datasets]
    if stage.eval_dataset:
        versions.append(store.resolve(stage.eval_dataset))
    resolved = stage.resolved()
    own = config_hash({"stage": resolved, "data": [v.manifest()["sha256"] for v in versions]})
    upstream = upstream_identity(stage)
    key = stage_key(own, upstream)
    prev = read_run(run_dir)
    if prev and prev.get("config_hash") == key and prev.get("status") == "complete" and not force:
        return prev.get("metrics", {})
    stale = (
        prev is not None
        and prev.get("config_hash") != key
        and prev.get("stage_hash", prev.get("config_hash")) == own
    )
    if stale:
        # The stage's own config and data are unchanged; what it starts from (or the reward
        # model it scores with) was retrained: its run is out of date, not someone else's.
        log.info("%s: an upstream model changed since it trained; training it again", stage.name)
    if run_dir.exists() and prev is not None and prev.get("config_hash") != key and not force:
        if not stale:
            raise ToolkitError(
                f"{run_dir} holds a run of another config or dataset (stage {stage.name}"
                f"{_what_differs(run_dir, resolved)}); pass --force to replace it, or set "
                "another output_dir"
            )
    if (force or stale) and run_dir.exists() and rank() == 0:
        shutil.rmtree(run_dir)
    if stale:
        prev = None
    resume = last_checkpoint(run_dir) if prev and prev.get("config_hash") == key else None
    return RunPlan(key, own, upstream, resolved, resume)
