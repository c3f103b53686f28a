"""A ``pipeline.yaml`` loaded once: the typed view every stage and command works from.

    from corekit import Project

    project = Project.load("pipeline.yaml")          # checked; defaults from the schema
    project.data_root, project.runs_root             # flag > env > config, resolved
    spec, batch = project.engines["gen"]             # EngineSpec, models resolved
    project.steps, project.train, project.eval       # the sections, defaults filled

Paths in the config are relative to its directory (``project.base``). The roots take, in
this order: an argument of :meth:`Project.load` (a CLI flag), the environment
(``DATAKIT_DATA_ROOT``, ``DATAKIT_RUNS_ROOT``), the config's ``data_root`` / ``runs_root``
(whose defaults live in the schema, like every other default).
"""

from __future__ import annotations

import dataclasses
import functools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .models import resolve_model, resolve_path

if TYPE_CHECKING:
    from .engines import EngineSpec

ROOT_ENV = {"data_root": "DATAKIT_DATA_ROOT", "runs_root": "DATAKIT_RUNS_ROOT"}


@dataclass(frozen=True)
class Project:
    path: Path  # the config file
    config: dict[str, Any]  # checked, every schema default filled in
    data_root: Path
    runs_root: Path
    lines: dict[tuple, int] = field(default_factory=dict, repr=False, compare=False)
    full: bool = field(default=False, repr=False, compare=False)  # disk checks made too

    @classmethod
    def load(
        cls,
        path: str | Path = "pipeline.yaml",
        *,
        data_root: str | Path | None = None,
        runs_root: str | Path | None = None,
        full: bool = False,
    ) -> Project:
        """Load and check ``path`` (every problem in one ToolkitError). ``full`` adds the
        checks that look at the disk (files, models, datasets; ``datakit config check``)."""
        from .config import load_config

        path = Path(path)
        config, lines = load_config(path, full=full)
        base = path.resolve().parent
        given = {"data_root": data_root, "runs_root": runs_root}
        roots = {}
        for key, env in ROOT_ENV.items():
            value = given[key] if given[key] is not None else os.environ.get(env)
            roots[key] = Path(value) if value else resolve_path(base, config[key])
        return cls(path, config, roots["data_root"], roots["runs_root"], lines, full)

    @classmethod
    def of(
        cls,
        project: Project | str | Path,
        data_root: str | Path | None = None,
        runs_root: str | Path | None = None,
    ) -> Project:
        """``project`` itself, or the config at that path loaded (the Python API takes
        either); roots given here override a loaded project's too."""
        if not isinstance(project, Project):
            return cls.load(project, data_root=data_root, runs_root=runs_root)
        if data_root is not None:
            project = dataclasses.replace(project, data_root=Path(data_root))
        if runs_root is not None:
            project = dataclasses.replace(project, runs_root=Path(runs_root))
        return project

    def checked(self) -> Project:
        """This project with the checks that look at the disk made (files, models,
        datasets, every section's): what a stage needs before it does any work."""
        if self.full:
            return self
        from .config import check_config, raise_problems

        raise_problems(check_config(self.config, self.lines, str(self.path), full=True), self.path)
        return dataclasses.replace(self, full=True)

    @property
    def base(self) -> Path:
        """The config's directory: relative paths in it start here."""
        return self.path.resolve().parent

    def resolve(self, p: str | Path) -> Path:
        return resolve_path(self.base, str(p))

    @property
    def models(self) -> dict[str, Any]:
        return self.config.get("models") or {}

    def model(self, ref: str, served: bool = False) -> str:
        """A model reference (a name in ``models``, a directory, a hub id) resolved."""
        return resolve_model(ref, self.models, self.base, served=served)

    @functools.cached_property
    def engines(self) -> dict[str, tuple[EngineSpec, int]]:
        """Each top-level engine as (EngineSpec, batch size), its model resolved."""
        from .engines import EngineSpec

        out = {}
        for name, e in (self.config.get("engines") or {}).items():
            model = self.model(e["model"], served=e["backend"] == "openai")
            spec = EngineSpec(e["backend"], model, dict(e.get("options") or {}))
            spec.ray = self.ray_settings(e.get("ray"))
            out[name] = (spec, e["batch_size"])
        return out

    @property
    def executor(self) -> dict[str, Any]:
        """``executor:``: where model calls run (type local or ray), defaults filled in."""
        return self.config.get("executor") or {"type": "local"}

    def ray_settings(self, engine: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """An engine's Ray placement (the executor's, then the engine's own ``ray:``), or
        None under the local executor."""
        from .engines.ray_backend import placement

        return placement(self.executor, engine)

    def with_executor(self, kind: str | None, address: str | None = None) -> Project:
        """This project with ``executor.type`` (and ``address``) set, as --executor does."""
        if kind is None:
            return self
        ex = {**self.executor, "type": kind}
        if address:
            ex["address"] = address
        return dataclasses.replace(self, config={**self.config, "executor": ex})

    @property
    def data(self) -> dict[str, Any]:
        return self.config.get("data") or {}

    @property
    def imports(self) -> list[dict[str, Any]]:
        return self.data.get("imports") or []

    @property
    def steps(self) -> list[dict[str, Any]]:
        return self.data.get("steps") or []

    @property
    def train(self) -> dict[str, Any]:
        return self.config.get("train") or {}

    @property
    def eval(self) -> dict[str, Any]:
        return self.config.get("eval") or {}

    def _out(self, section: dict[str, Any], key: str, default: str) -> Path:
        out = section.get(key)
        return self.resolve(out) if out else self.runs_root / default

    @property
    def train_dir(self) -> Path:
        """Where the train stages write: ``train.output_dir``, else <runs_root>/train."""
        return self._out(self.train, "output_dir", "train")

    @property
    def eval_dir(self) -> Path:
        """Where the eval writes: ``eval.out``, else <runs_root>/eval."""
        return self._out(self.eval, "out", "eval")

    @property
    def gate(self) -> dict[str, Any]:
        """The ``eval.gate`` section, defaults filled in."""
        return self.eval.get("gate") or {}

    @property
    def cache_dir(self) -> Path:
        """The request cache every engine pool shares."""
        return self.runs_root / "cache"
