"""Run one generation or curation op over a dataset version and store the result.

A step's identity is its op, parameters (defaults filled in), input versions (with their
sha256), engine specs and seed; its hash goes into the output manifest. A step whose latest
output has the same hash is skipped, so a re-run of a finished pipeline does nothing. Engine
calls go through a request cache under ``<runs_root>/cache``, so an interrupted step
re-runs from the cache up to where it stopped.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from corekit.config import with_defaults
from corekit.engines import EngineSpec, check_spec, spec_fingerprint
from corekit.engines.pool import EnginePool
from corekit.errors import ToolkitError
from corekit.runs import config_hash
from corekit.schemas import load_schema

from ..store import DatasetStore, Version
from . import Op, get_op
from .context import OpContext

log = logging.getLogger(__name__)


def param_problems(op: str, params: dict[str, Any] | None) -> list[tuple[str, str]]:
    """(where, message) for each way an op's parameters break its schema; ``where`` starts
    with the parameter's name ("params" for the object as a whole)."""
    from corekit.config import schema_errors

    schema = load_schema("pipeline")["definitions"][f"params_{op}"]
    return [(_where(err), err.message) for err in schema_errors(schema, params or {})]


def _where(err: Any) -> str:
    """The parameter an error is about: its path, or for a missing dependency the parameter
    that needs it (jsonschema reports that against the whole object)."""
    path = ".".join(str(p) for p in err.absolute_path)
    if not path and err.validator == "dependencies":
        for key, needs in err.validator_value.items():
            if key in err.instance and any(n not in err.instance for n in needs):
                return str(key)
    return path or "params"


def op_params(op: str, params: dict[str, Any] | None) -> dict[str, Any]:
    """Check an op's parameters against its schema and fill in the defaults."""
    problems = param_problems(op, params)
    if problems:
        raise ToolkitError(f"{op}: " + "; ".join(f"{w}: {m}" for w, m in problems))
    root = load_schema("pipeline")
    return with_defaults(params or {}, root["definitions"][f"params_{op}"], root)


def roles_used(op: Op, engines: dict[str, EngineSpec | None]) -> dict[str, EngineSpec]:
    """The engines an op actually calls, by role: a named judge or teacher, else the main
    engine. Engines of other roles are not built (two in-process vLLMs on one GPU run out
    of memory) and do not enter the step's identity."""
    out = {}
    for role in op.roles:
        spec = engines.get(role) or engines.get("engine")
        if spec is not None:
            out[role] = spec
    return out


@dataclass
class StepResult:
    name: str
    op: str
    versions: dict[str, Version]  # output dataset name -> the version it has now
    skipped: bool
    drops: dict[str, int]
    engine_stats: dict[str, Any] | None = None
    seconds: float = 0.0  # wall time of the step, engine start included

    @property
    def version(self) -> Version:
        """The step's (first) output version."""
        return next(iter(self.versions.values()))

    def summary(self) -> dict[str, Any]:
        """What `datakit run` and `datakit generate` report for the step."""
        outs = []
        for v in self.versions.values():
            m = v.manifest()
            outs.append({"ref": v.ref, "count": m["count"], "kind": m["kind"]})
        return {
            "name": self.name,
            "op": self.op,
            **outs[0],
            "outputs": outs,
            "skipped": self.skipped,
            "drops": self.drops,
            "engine": self.engine_stats,
            "seconds": round(self.seconds, 1),
        }


def step_line(st: dict[str, Any]) -> str:
    """One line for a step's summary, as `datakit run` and `datakit generate` print it."""
    made = ", ".join(f"{o['ref']}, {o['count']} {o['kind']} records" for o in st["outputs"])
    line = f"step {st['name']} ({st['op']}): {made}"
    if st["skipped"]:
        return line + " (unchanged, skipped)"
    if st["drops"]:
        line += "; dropped " + ", ".join(
            f"{n} {r}" for r, n in sorted(st["drops"].items(), key=lambda x: -x[1])
        )
    for role, e in (st.get("engine") or {}).items():
        line += f"; {role}: {e['model_calls']:.0f} calls, {e['cache_hits']:.0f} cached, {e['tokens_per_s']} tok/s"
    return line


def run_step(*args: Any, **kwargs: Any) -> StepResult:
    """Run op ``op_name`` over the input versions; store its output(s); skip if unchanged
    (see ``_run_step``); the result carries the step's wall time."""
    import time

    t0 = time.perf_counter()
    res = _run_step(*args, **kwargs)
    res.seconds = time.perf_counter() - t0
    return res


def _run_step(
    store: DatasetStore,
    name: str,
    op_name: str,
    inputs: str | list[str],
    params: dict[str, Any] | None,
    engines: dict[str, EngineSpec | None] | None = None,
    pool: EnginePool | None = None,
    seed: int = 0,
    quiet: bool = False,
    force: bool = False,
    batch_size: int = 256,
    allow_empty: bool = False,
    max_error_share: float = 0.5,
    executor: dict[str, Any] | None = None,
) -> StepResult:
    """Run op ``op_name`` over the input versions; store its output(s); skip if unchanged.

    ``engines`` maps role (engine, judge, teacher) to a spec; roles may be None, and ops
    without roles (curation) need none. An op with named outputs writes ``<name>-<suffix>``.
    A step whose non-empty input gives no records, or that loses more than
    ``max_error_share`` of its input to engine errors, fails and writes nothing unless
    ``allow_empty``. ``executor``: the Ray placement (``ray_backend.placement``) for an op
    that runs its own work on Ray (dedup); None: here.
    """
    op = get_op(op_name)
    params = op_params(op_name, params)
    srcs, as_chat = _inputs(store, name, op, inputs)
    specs = roles_used(op, engines or {})
    if op.roles and not specs:
        raise ToolkitError(f"{name}: {op_name} needs an engine")
    for role, s in specs.items():
        check_spec(s, where=f"{name}: {role}")
    config = _step_config(op_name, params, srcs, seed, specs)
    chash = config_hash(config)
    out_names = [f"{name}-{suffix}" for suffix in op.outputs] or [name]
    previous = [store.versions(n) for n in out_names]
    if not force and all(
        v and v[-1].manifest()["step"].get("config_hash") == chash for v in previous
    ):
        latest = {n: v[-1] for n, v in zip(out_names, previous, strict=True)}
        first = next(iter(latest.values()))
        return StepResult(name, op_name, latest, True, first.manifest()["stats"].get("drops", {}))
    records = [list(src.records()) for src in srcs]
    if op.same_kind_inputs and as_chat:
        records = [[_as_chat(r) for r in recs] for recs in records]
    for src, recs in zip(srcs, records, strict=True):
        # A model has nothing to work from in an empty input; curation ops pass it on (an
        # empty generation result must not stop the dedup/mix/split steps after it).
        if not recs and op.roles:
            raise ToolkitError(f"{name}: input {src.ref} is empty")
    built = (
        {role: pool.get(s, batch_size, where=f"{name}: {role}") for role, s in specs.items()}
        if pool
        else {}
    )
    on_ray = executor if op.on_ray else None
    if on_ray is not None:
        from corekit.engines.ray_backend import ray_module

        ray_module()  # one line without the package, before any work
    ctx = OpContext(built, seed=seed, quiet=quiet, step=name, executor=on_ray)
    meter = _EngineMeter(built)
    kind = "chat" if op.same_kind_inputs and as_chat else op.output_kind(params, srcs[0].kind)
    result = op.load()(records if op.many_inputs else records[0], ctx, **params)
    produced = {f"{name}-{k}": v for k, v in result.items()} if op.outputs else {name: result}
    stats: dict[str, Any] = {"input_count": sum(len(r) for r in records)}
    if built:
        stats["engine"] = meter.used()
    if on_ray is not None or any(s.ray is not None for s in specs.values()):
        from corekit.engines.ray_backend import cluster_info

        stats["executor"] = cluster_info()
    deduped = {n: _dedupe(recs, kind, ctx) for n, recs in produced.items()}
    if not allow_empty:
        _check_not_gutted(name, op_name, stats["input_count"], deduped, ctx.drops, max_error_share)
    versions = _write_outputs(store, deduped, kind, srcs, f"{name} ({op_name})", config, ctx, stats)
    first_drops = next(iter(versions.values())).manifest()["stats"]["drops"]
    return StepResult(name, op_name, versions, False, first_drops, stats.get("engine"))


def _inputs(store: DatasetStore, name: str, op: Any, inputs: str | list[str]) -> tuple[list, bool]:
    """The step's input versions, checked against what the op reads; and whether they mix
    as chat (instruction and chat inputs: an instruction is a two-turn chat; other kinds
    do not mix)."""
    refs = [inputs] if isinstance(inputs, str) else list(inputs)
    if len(refs) != 1 and not op.many_inputs:
        raise ToolkitError(f"{name}: {op.name} reads one input, got {len(refs)}")
    srcs = [store.resolve(r) for r in refs]
    as_chat = {s.kind for s in srcs} == {"instruction", "chat"}
    if op.same_kind_inputs and len({s.kind for s in srcs}) > 1 and not as_chat:
        kinds = ", ".join(f"{s.ref} ({s.kind})" for s in srcs)
        raise ToolkitError(
            f"{name}: {op.name} needs inputs of one record kind (or instruction and chat, "
            f"mixed as chat), got {kinds}"
        )
    for src in srcs:
        if src.kind not in op.inputs:
            raise ToolkitError(
                f"{name}: {op.name} reads {' or '.join(op.inputs)} records, but {src.ref} "
                f"holds {src.kind} records"
            )
    return srcs, as_chat


class _EngineMeter:
    """What each engine did during the step (calls, tokens, seconds), one entry per engine
    even when it serves several roles (judge = engine: "engine+judge")."""

    def __init__(self, built: dict[str, Any]) -> None:
        shared: dict[int, list[str]] = {}
        for role, e in built.items():
            shared.setdefault(id(e), []).append(role)
        self.built = built
        self.roles_of = {roles[0]: "+".join(roles) for roles in shared.values()}
        self.before = {role: built[role].stats.as_dict() for role in self.roles_of}

    def used(self) -> dict[str, Any]:
        return {
            self.roles_of[role]: _delta(self.before[role], self.built[role].stats.as_dict())
            for role in self.roles_of
        }


def _write_outputs(
    store: DatasetStore,
    outputs: dict[str, list[dict[str, Any]]],
    kind: str,
    srcs: list[Any],
    source: str,
    config: dict[str, Any],
    ctx: OpContext,
    stats: dict[str, Any],
) -> dict[str, Any]:
    """Each output as a new version; the step's rejects and drop counts go with the first."""
    versions = {}
    for i, (out_name, out) in enumerate(outputs.items()):
        versions[out_name] = store.write(
            out_name,
            out,
            kind,
            parents=[s.ref for s in srcs],
            step=config["op"],
            config=config,
            source=source,
            extra_files={"rejects.jsonl": ctx.rejects, **ctx.files} if i == 0 else {},
            extra_stats={
                **stats,
                **ctx.stats,
                "drops": dict(sorted(ctx.drops.items())) if i == 0 else {},
            },
        )
    return versions


def _as_chat(rec: dict[str, Any]) -> dict[str, Any]:
    """An instruction record as the chat record it trains as (its id follows the content)."""
    if "instruction" not in rec:
        return rec
    from ..records import conversation, with_id

    return with_id({"messages": conversation(rec), "meta": rec.get("meta") or {}}, "chat")


def _check_not_gutted(
    name: str,
    op_name: str,
    n_in: int,
    outputs: dict[str, list[Any]],
    drops: dict[str, int],
    max_error_share: float,
) -> None:
    """An empty or gutted result is a failure, not a new version: CI cannot tell "0
    records, 9 engine errors" from success by the exit code otherwise."""
    if not n_in:
        return
    why = ", ".join(f"{v} {k}" for k, v in sorted(drops.items(), key=lambda kv: -kv[1]))
    why = f" (dropped {why})" if why else ""
    fix = "nothing written; --allow-empty (allow_empty: true on the step) writes it anyway"
    if not any(outputs.values()):
        raise ToolkitError(
            f"{name}: {op_name} made no records from {n_in} input records{why}; {fix}"
        )
    errors = drops.get("engine_error", 0)
    if errors > max_error_share * n_in:
        raise ToolkitError(
            f"{name}: {op_name} lost {errors} of {n_in} input records to engine errors "
            f"(more than max_error_share {max_error_share:g}){why}; {fix}"
        )


def _step_config(
    op: str,
    params: dict[str, Any],
    srcs: list[Version],
    seed: int,
    specs: dict[str, EngineSpec],
) -> dict[str, Any]:
    """A step's identity: what its output hash (and so its skip) depends on."""
    return {
        "op": op,
        "params": params,
        "inputs": [{"ref": s.ref, "sha256": s.manifest()["sha256"]} for s in srcs],
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


def _dedupe(records: list[dict[str, Any]], kind: str, ctx: OpContext) -> list[dict[str, Any]]:
    """Two inputs can yield the same output (same content, same id): keep the first."""
    from ..records import FirstCopies, record_id

    copies = FirstCopies()
    out = []
    for rec in records:
        rid = rec.get("id") or record_id(rec, kind)
        if copies.copy_of(rid, rid) is not None:
            ctx.reject(rec, "duplicate", id=rid)
            continue
        out.append(rec if "id" in rec else {"id": rid, **rec})  # the store needn't hash again
    return out


def _delta(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    d = {k: round(b[k] - a[k], 3) for k in b if k != "tokens_per_s"}
    d["tokens_per_s"] = round(d["completion_tokens"] / d["seconds"], 1) if d.get("seconds") else 0.0
    return d
