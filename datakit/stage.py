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

from corekit.errors import ToolkitError
from corekit.models import model_entry_path
from corekit.project import Project

from .formats import import_file
from .store import DatasetStore

log = logging.getLogger(__name__)


@dataclass
class RunSummary:
    data_root: str = "data"
    models: list[dict[str, Any]] = field(default_factory=list)
    datasets: list[dict[str, Any]] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)


def run_data(
    project: Project | str | Path,
    data_root: str | Path | None = None,
    quiet: bool = False,
    only: list[str] | None = None,
    force: bool = False,
    runs_root: str | Path | None = None,
    allow_empty: bool = False,
) -> RunSummary:
    """The data section of ``project`` (a Project, or a config path loaded with the roots
    given here): models built, imports, then the steps in order (``only``: those named)."""
    project = Project.of(project, data_root, runs_root).checked()  # before any work
    store = DatasetStore(project.data_root)
    summary = RunSummary(str(store.root))
    _check_steps(project, only)  # bad references fail before any work
    from corekit.model_sources import ensure_models

    from .demo import tiny_corpus

    summary.models.extend(
        ensure_models(project.config, project.base, quiet=quiet, tiny_corpus=tiny_corpus)
    )
    for imp in project.imports:
        res = import_file(
            store,
            imp["name"],
            project.resolve(imp["source"]),
            imp["format"],
            imp.get("kind"),
            config_source=imp["source"],
        )
        v = res.version
        summary.datasets.append(
            {
                "ref": v.ref,
                "kind": res.kind,
                "count": v.manifest()["count"],
                "reused": v.reused,
                "duplicates": res.duplicates,
            }
        )
    _run_steps(project, store, summary, quiet, only, force, allow_empty)
    return summary


def _check_steps(project: Project, only: list[str] | None) -> None:
    """What needs the resolved engines: --only names real steps, and every engine that is
    not built by this run is usable (step references were checked with the config)."""
    from corekit.engines import check_spec

    names = [s["name"] for s in project.steps]
    unknown = [n for n in (only or []) if n not in names]
    if unknown:
        raise ToolkitError(f"no step named {', '.join(unknown)} (steps: {', '.join(names)})")
    built_here = {
        str(model_entry_path(m, project.base))
        for m in project.models.values()
        if "init_tiny" in m or "gguf_wheel" in m
    }
    for name, (spec, _) in project.engines.items():
        # A model that this run builds cannot be checked yet; all else can.
        if spec.model not in built_here:
            check_spec(spec, where=f"engines.{name}")


def _run_steps(
    project: Project,
    store: DatasetStore,
    summary: RunSummary,
    quiet: bool,
    only: list[str] | None,
    force: bool,
    allow_empty: bool = False,
) -> None:
    from corekit.engines.pool import EnginePool

    from .ops.step import run_step

    steps, specs = project.steps, project.engines
    if not steps:
        return
    pool = EnginePool(project.cache_dir, quiet=quiet)
    roles = (("engine", "engine"), ("judge", "judge_engine"), ("teacher", "teacher_engine"))
    try:
        for step in steps:
            if only and step["name"] not in only:
                continue
            engines = {role: specs[step[key]][0] if step.get(key) else None for role, key in roles}
            batch = specs[step["engine"]][1] if step.get("engine") else 256
            res = run_step(
                store,
                step["name"],
                step["op"],
                step["input"],
                step.get("params"),
                engines,
                pool,
                seed=step.get("seed", project.config["seed"]),
                quiet=quiet,
                force=force,
                batch_size=batch,
                allow_empty=step["allow_empty"] or allow_empty,
                max_error_share=step["max_error_share"],
                executor=project.ray_settings(),
            )
            summary.steps.append(res.summary())
    finally:
        pool.close()
