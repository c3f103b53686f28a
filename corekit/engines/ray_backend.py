"""The engine protocol on a Ray cluster: the requests of a batch become a Ray Dataset, and a
pool of actors, each holding one engine built from the same ``EngineSpec`` (vLLM,
transformers, or the openai backend pointed at a fleet), answers them with ``map_batches``.

Ray Data does the sharding, streaming, retries and placement; this module only supplies the
per-batch function. Results come back in request order, and every request samples with its
own seed (``Request.effective_seed``), so the output does not depend on how Ray shards or
retries the work: a step run on Ray writes the same records as one run in-process. The
request cache stays on the driver (``CachedEngine`` wraps this engine as any other).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from ..errors import ToolkitError
from .base import Completion, EngineSpec, Request, Result

INSTALL = 'pip install -e ".[ray]" (or make setup EXTRAS=ray)'


@dataclass(frozen=True)
class RaySettings:
    """``executor:`` of pipeline.yaml with ``type: ray``, and an engine's placement (the
    defaults are the schema's: Project.ray_settings and the CLI fill them in)."""

    address: str | None  # auto, ray://host:10001, or None: a local cluster
    replicas: int  # actors, each holding one engine
    num_cpus: float  # per actor
    num_gpus: float  # per actor
    batch_size: int  # requests per actor call


PLACEMENT = ("replicas", "num_cpus", "num_gpus", "batch_size")


def placement(
    executor: dict[str, Any] | None, engine: dict[str, Any] | None = None
) -> dict[str, Any] | None:
    """An engine's Ray placement (``EngineSpec.ray``): the executor's address and
    placement, then the engine's own ``ray:``; None unless ``executor.type`` is ray.
    ``executor`` has the schema's defaults filled in (pipeline.yaml's, or --executor's)."""
    if not executor or executor.get("type") != "ray":
        return None
    out = {"address": executor.get("address"), **{k: executor[k] for k in PLACEMENT}}
    return {**out, **(engine or {})}


def ray_module() -> Any:
    """``ray``, or one clear line saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ToolkitError(f"executor: ray needs the ray package: {INSTALL}") from None
    return ray


@contextlib.contextmanager
def _held_stderr() -> Iterator[None]:
    """File descriptor 2 (where native code writes) held in a temporary file for the
    duration; written out after all if the block raises, so no error is lost."""
    import sys
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            held.seek(0)
            sys.stderr.write(held.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def connect(address: str | None) -> Any:
    """The Ray cluster at ``address`` (joined once per process), or a local one."""
    import logging

    ray = ray_module()
    if not ray.is_initialized():
        # Ray's own driver-side lines (its C++ core's notices, "Started a local Ray
        # instance") would interleave with the tool's output; its logs keep them.
        os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
        with _held_stderr():  # the C++ core says at start which level it read from there
            ray.init(address=address, include_dashboard=False, log_to_driver=False,
                     ignore_reinit_error=True, logging_level=logging.WARNING)  # fmt: skip
    from ray.data import DataContext

    # The request cache's own bar shows the progress (and -q hides it): Ray Data's bars,
    # per-operator progress lines and its notice that they are off would repeat it.
    DataContext.get_current().enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    return ray


def cluster_info() -> dict[str, Any]:
    """What a version made on Ray records in its manifest: the executor, the cluster's live
    node count, the Ray version."""
    ray = ray_module()
    nodes = sum(1 for n in ray.nodes() if n.get("Alive")) if ray.is_initialized() else 0
    return {"type": "ray", "nodes": nodes, "ray": ray.__version__}


def request_to_bytes(r: Request) -> bytes:
    return orjson.dumps(r.to_dict())


def request_from_bytes(blob: bytes) -> Request:
    d = orjson.loads(blob)
    for key in ("messages", "choice", "stop"):
        if key in d:
            d[key] = tuple(d[key])
    return Request(**d)


def result_to_bytes(r: Result) -> bytes:
    return orjson.dumps({**r.to_dict(), "error": r.error})


def result_from_bytes(blob: bytes) -> Result:
    d = orjson.loads(blob)
    comps = [Completion(**c) for c in d["completions"]]
    return Result(comps, d.get("prompt_tokens", 0), error=d.get("error"))


def reserve_threads(threads: int) -> None:
    """Compute with as many threads as CPUs the actor reserves, whatever OMP_NUM_THREADS
    the cluster was started with (the output then matches a local run at that count)."""
    import torch

    torch.set_num_threads(threads)


def first_line(exc: BaseException) -> str:
    """An exception as one line: its type and its message's first line."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


class _Replica:
    """One actor of the pool: builds its engine once, then answers batches of requests.

    An engine that fails to start is not raised from the constructor (Ray would restart
    the actor and print each death's traceback): every batch then comes back marked with
    the failure, and the driver stops the step with that one line."""

    def __init__(
        self, target: str, model: str, options: dict[str, Any], threads: int | None = None
    ) -> None:
        import importlib

        self.failed = ""
        if threads:
            reserve_threads(threads)
        try:
            module, _, name = target.partition(":")  # the backend's "module:Class"
            self.engine = getattr(importlib.import_module(module), name)(model, **options)
        except Exception as e:  # noqa: BLE001 - reported to the driver as one line
            self.failed = first_line(e)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        out = np.empty(len(batch["request"]), dtype=object)
        if self.failed:
            out[:] = [b""] * len(out)
        else:
            requests = [request_from_bytes(bytes(b)) for b in batch["request"]]
            out[:] = [result_to_bytes(r) for r in self.engine.generate(requests)]
        failed = np.array([self.failed] * len(out), dtype=object)
        return {"index": batch["index"], "result": out, "failed": failed}


def actor_map(
    rows: list[dict[str, Any]],
    actor: type,
    kwargs: dict[str, Any],
    placed: dict[str, Any],
    batch_size: int,
    blocks: int,
) -> Any:
    """``rows`` through a pool of ``placed["replicas"]`` actors of class ``actor`` (built
    with ``kwargs``, each reserving ``num_cpus`` / ``num_gpus``), ``batch_size`` rows per
    call, as a Ray Dataset to iterate: the one actor pool the engines and the embeddings use."""
    import ray.data

    return ray.data.from_items(rows, override_num_blocks=blocks).map_batches(
        actor,
        fn_constructor_kwargs=kwargs,
        batch_size=batch_size,
        compute=ray.data.ActorPoolStrategy(size=placed["replicas"]),
        num_cpus=placed["num_cpus"],
        num_gpus=placed["num_gpus"],
        batch_format="numpy",
    )


class RayEngine:
    """The engine of ``spec`` served by ``settings.replicas`` Ray actors."""

    def __init__(self, spec: EngineSpec, settings: RaySettings, target: str) -> None:
        """``target``: the backend's engine class as "module:Class" (engines.BACKENDS)."""
        self.target = target
        self.backend = spec.backend
        self.model = spec.model
        self.spec = spec
        self.settings = settings
        self.ray = connect(settings.address)

    def generate(self, requests: list[Request]) -> list[Result]:
        results: list[Result | None] = [None] * len(requests)
        for i, result in self.stream(requests):
            results[i] = result
        missing = [i for i, r in enumerate(results) if r is None]
        if missing:
            raise ToolkitError(f"ray: {len(missing)} requests came back without a result")
        return results  # type: ignore[return-value]

    def stream(self, requests: list[Request]) -> Iterator[tuple[int, Result]]:
        """(index, result) of each request as the replicas finish it, in no set order
        (the request cache stores each one as it comes: a killed driver loses none)."""
        if not requests:
            return
        s = self.settings
        rows = [{"index": i, "request": request_to_bytes(r)} for i, r in enumerate(requests)]
        kwargs = {
            "target": self.target,
            "model": self.spec.model,
            "options": dict(self.spec.options),
            # torch backends: threads = reserved CPUs (openai: no torch to load)
            "threads": max(1, int(s.num_cpus)) if self.backend != "openai" else None,
        }
        placed = {"replicas": s.replicas, "num_cpus": s.num_cpus, "num_gpus": s.num_gpus}
        blocks = max(1, min(len(rows), s.replicas * 4))
        out = actor_map(rows, _Replica, kwargs, placed, s.batch_size, blocks)
        # A replica whose engine did not start marks its rows at once. The pool is let
        # finish (what the other replicas answer is cached) before the step stops: left
        # early, Ray kills actors with batches queued, and prints each killed task on the
        # driver's stdout, beside the one line the user should see.
        failed = ""
        for row in out.iter_rows():
            if row["failed"]:
                failed = failed or row["failed"]
                continue
            yield int(row["index"]), result_from_bytes(bytes(row["result"]))
        if failed:
            raise ToolkitError(
                f"executor ray: the {self.backend} engine of {self.model} did not start "
                f"on a replica: {failed}"
            )

    def close(self) -> None:
        pass  # the actors end with the dataset; the cluster is the user's
