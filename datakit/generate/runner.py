"""Run one generation or curation op over a dataset version and store the result.

A step's identity is its op, parameters (defaults filled in), input versions (with their
sha256), engine specs and seed; its hash goes into the output manifest. A step whose latest
output has the same hash is skipped, so a re-run of a finished pipeline does nothing. Engine
calls go through a request cache under ``<runs_root>/cache``, so an interrupted step
re-runs from the cache up to where it stopped.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import with_defaults
from ..engines import CachedEngine, EngineSpec, build_engine, check_spec, spec_fingerprint
from ..errors import DatakitError
from ..schemas import load_schema
from ..store import DatasetStore, Version, config_hash
from . import OP_ROLES, OPS
from .context import GenContext

log = logging.getLogger(__name__)


def op_params(op: str, params: dict[str, Any] | None) -> dict[str, Any]:
    """Check an op's parameters against its schema and fill in the defaults."""
    import jsonschema

    root = load_schema("pipeline")
    schema = root["definitions"][f"params_{op}"]
    problems = []
    for err in jsonschema.Draft7Validator(schema).iter_errors(params or {}):
        where = ".".join(str(p) for p in err.absolute_path) or "params"
        problems.append(f"{where}: {err.message}")
    if problems:
        raise DatakitError(f"{op}: " + "; ".join(problems))
    return with_defaults(params or {}, schema, root)


def op_function(op: str) -> Any:
    mod, _, fn = OPS[op][0].partition(":")
    return getattr(importlib.import_module(mod), fn)


def output_kind(op: str, input_kind: str, params: dict[str, Any]) -> str:
    kind = OPS[op][2]
    if kind == "same":
        return input_kind
    if op == "preferences" and params.get("emit") == "unpaired":
        return "unpaired"
    if (
        op in ("respond", "distill")
        and params.get("output_kind") == "instruction"
        and input_kind == "instruction"
    ):
        return "instruction"
    return kind


def roles_used(op: str, engines: dict[str, EngineSpec | None]) -> dict[str, EngineSpec]:
    """The engines an op actually calls, by role: a named judge or teacher, else the main
    engine. Engines of other roles are not built (two in-process vLLMs on one GPU run out
    of memory) and do not enter the step's identity."""
    out = {}
    for role in OP_ROLES[op]:
        spec = engines.get(role) or engines.get("engine")
        if spec is not None:
            out[role] = spec
    return out


class EnginePool:
    """Engines are expensive to start (vLLM loads the model): build each spec once per run."""

    def __init__(self, cache_dir: Path, quiet: bool = False):
        self.cache_dir = cache_dir
        self.quiet = quiet
        self._engines: dict[str, CachedEngine] = {}

    def get(self, spec: EngineSpec, batch_size: int = 256, where: str = "engine") -> CachedEngine:
        key = config_hash([spec.backend, spec.model, spec.options])
        if key not in self._engines:
            cache = self.cache_dir / f"{spec.backend}-{key}.jsonl"
            self._engines[key] = build_engine(
                spec, cache, batch_size=batch_size, quiet=self.quiet, where=where
            )
        return self._engines[key]

    def close(self) -> None:
        for e in self._engines.values():
            e.close()
        self._engines.clear()


@dataclass
class StepResult:
    name: str
    op: str
    version: Version
    skipped: bool
    drops: dict[str, int]
    engine_stats: dict[str, Any] | None = None

    def summary(self) -> dict[str, Any]:
        """What `datakit run` and `datakit generate` report for the step."""
        m = self.version.manifest()
        return {
            "name": self.name,
            "op": self.op,
            "ref": self.version.ref,
            "count": m["count"],
            "kind": m["kind"],
            "skipped": self.skipped,
            "drops": self.drops,
            "engine": self.engine_stats,
        }


def run_step(
    store: DatasetStore,
    name: str,
    op: str,
    input_ref: str,
    params: dict[str, Any] | None,
    engines: dict[str, EngineSpec | None],
    pool: EnginePool | None,
    seed: int = 0,
    quiet: bool = False,
    force: bool = False,
    batch_size: int = 256,
) -> StepResult:
    """``engines`` maps role (engine, judge, teacher) to a spec; roles may be None."""
    if op not in OPS:
        raise DatakitError(f"unknown op {op!r}; choose one of: {', '.join(OPS)}")
    params = op_params(op, params)
    src = store.resolve(input_ref)
    in_kind = src.kind
    allowed = OPS[op][1].split(",")
    if in_kind not in allowed:
        raise DatakitError(
            f"{name}: {op} reads {' or '.join(allowed)} records, but {src.ref} holds {in_kind} records"
        )
    specs = roles_used(op, engines)
    if OP_ROLES[op] and not specs:
        raise DatakitError(f"{name}: {op} needs an engine")
    for role, s in specs.items():
        check_spec(s, where=f"{name}: {role}")
    config = {
        "op": op,
        "params": params,
        "inputs": [{"ref": src.ref, "sha256": src.manifest()["sha256"]}],
        "seed": seed,
        "engines": {
            role: {
                "backend": s.backend,
                "model": s.model,
                "options": s.options,
                # a model or adapter retrained in place must re-run the step
                "fingerprint": spec_fingerprint(s),
            }
            for role, s in sorted(specs.items())
        },
    }
    chash = config_hash(config)
    versions = store.versions(name)
    if versions and not force and versions[-1].manifest()["step"].get("config_hash") == chash:
        return StepResult(
            name, op, versions[-1], True, versions[-1].manifest()["stats"].get("drops", {})
        )
    records = list(src.records())
    if not records:
        raise DatakitError(f"{name}: input {src.ref} is empty")
    built = (
        {role: pool.get(s, batch_size, where=f"{name}: {role}") for role, s in specs.items()}
        if pool
        else {}
    )
    ctx = GenContext(built.get("engine"), seed=seed, quiet=quiet, engines=built, step=name)
    before = {role: e.stats.as_dict() for role, e in built.items()}
    kind = output_kind(op, in_kind, params)
    out = _dedupe(op_function(op)(records, ctx, **params), kind, ctx)
    stats: dict[str, Any] = {"drops": dict(sorted(ctx.drops.items())), "input_count": len(records)}
    if built:
        stats["engine"] = {
            role: _delta(before[role], e.stats.as_dict()) for role, e in built.items()
        }
    v = store.write(
        name,
        out,
        kind,
        parents=[src.ref],
        step=op,
        config=config,
        source=f"{name} ({op})",
        extra_files={"rejects.jsonl": ctx.rejects},
        extra_stats=stats,
    )
    return StepResult(name, op, v, False, stats["drops"], stats.get("engine"))


def _dedupe(records: list[dict[str, Any]], kind: str, ctx: GenContext) -> list[dict[str, Any]]:
    """Two inputs can yield the same output (same content, same id): keep the first."""
    from ..records import record_id

    seen: set[str] = set()
    out = []
    for rec in records:
        rid = rec.get("id") or record_id(rec, kind)
        if rid in seen:
            ctx.reject("duplicate", rec, id=rid)
            continue
        seen.add(rid)
        out.append(rec if "id" in rec else {"id": rid, **rec})  # the store needn't hash again
    return out


def _delta(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    d = {k: round(b[k] - a[k], 3) for k in b if k != "tokens_per_s"}
    d["tokens_per_s"] = round(d["completion_tokens"] / d["seconds"], 1) if d.get("seconds") else 0.0
    return d
