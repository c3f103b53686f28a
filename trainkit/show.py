"""``trainkit show RUN``: what a run directory holds, in a few lines."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from corekit.runs import read_run

from .plot import read_metrics


def summarize(run_dir: str | Path) -> dict[str, Any]:
    run_dir = Path(run_dir)
    info = read_run(run_dir, required=True)
    config = {}
    if (run_dir / "config.json").is_file():
        config = json.loads((run_dir / "config.json").read_text())
    rows = read_metrics(run_dir / "metrics.jsonl")
    losses = [(r["step"], r["loss"]) for r in rows if isinstance(r.get("loss"), (int, float))]
    evals = [
        (r["step"], r["eval_loss"]) for r in rows if isinstance(r.get("eval_loss"), (int, float))
    ]
    curve: dict[str, Any] = {"logged_steps": len(losses)}
    if losses:
        curve.update(first_loss=losses[0][1], last_loss=losses[-1][1])
    if evals:
        best = min(evals, key=lambda x: x[1])
        curve.update(last_eval_loss=evals[-1][1], best_eval_loss=best[1], best_eval_step=best[0])
    files = {
        name: (run_dir / name).exists()
        for name in ("config.json", "metrics.jsonl", "tensorboard", "curves.png", "final")
    }
    return {
        "run_dir": str(run_dir),
        "name": info.get("name"),
        "method": info.get("method"),
        "status": info.get("status"),
        "base_model": info.get("base_model"),
        "adapter": config.get("adapter", {}).get("type"),
        "datasets": info.get("datasets", []),
        "global_step": info.get("global_step"),
        "seconds": info.get("seconds"),
        "resumed_from": info.get("resumed_from"),
        "final": info.get("final"),
        "final_kind": info.get("final_kind"),
        "git": info.get("git"),
        "libraries": info.get("libraries", {}),
        "trainable_parameters": info.get("trainable_parameters"),
        "total_parameters": info.get("total_parameters"),
        "weights_delta_l2": info.get("weights_delta_l2"),
        "curve": curve,
        "metrics": info.get("metrics", {}),
        "files": files,
    }


def format_summary(s: dict[str, Any]) -> str:
    lines = [
        f"run {s['run_dir']}: {s['name']} ({s['method']}, adapter {s['adapter']}) - {s['status']}",
        f"  base model: {s['base_model']}",
    ]
    for d in s["datasets"]:
        lines.append(
            f"  data: {d['ref']} ({d['count']} {d['kind']} records, sha256 {d['sha256'][:12]})"
        )
    if s["global_step"] is not None:
        resumed = f", resumed from {s['resumed_from']}" if s["resumed_from"] else ""
        lines.append(f"  steps: {s['global_step']} in {s['seconds']} s{resumed}")
    if s["trainable_parameters"]:
        share = s["trainable_parameters"] / max(1, s["total_parameters"] or 1)
        moved = s["weights_delta_l2"]
        moved_txt = f", update norm {moved:.4g}" if moved is not None else ""
        lines.append(
            f"  trainable: {s['trainable_parameters']:,} of {s['total_parameters']:,} parameters ({share:.2%}){moved_txt}"
        )
    c = s["curve"]
    if "first_loss" in c:
        lines.append(
            f"  train loss: {c['first_loss']:.4f} -> {c['last_loss']:.4f} ({c['logged_steps']} logged steps)"
        )
    if "last_eval_loss" in c:
        lines.append(
            f"  eval loss: last {c['last_eval_loss']:.4f}, best {c['best_eval_loss']:.4f} at step {c['best_eval_step']}"
        )
    if s["final"]:
        lines.append(f"  output: {s['final']} ({s['final_kind']})")
    lib = s["libraries"]
    lines.append(
        "  libraries: "
        + ", ".join(
            f"{k} {v}"
            for k, v in lib.items()
            if v and k in ("torch", "transformers", "trl", "peft")
        )
    )
    if s["git"]:
        lines.append(f"  git: {s['git']['commit'][:12]}{' (dirty)' if s['git']['dirty'] else ''}")
    missing = [k for k, ok in s["files"].items() if not ok]
    if missing and s["status"] == "complete":
        lines.append(f"  missing: {', '.join(missing)}")
    return "\n".join(lines)
