"""What every op gets: its engines by role, a seeded RNG, provenance and the rejects log."""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from corekit.engines import CachedEngine, Request, Result
from corekit.errors import ToolkitError


def template_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass
class OpContext:
    """What an op runs with: its engines by role (none for curation ops), a seeded RNG,
    and the one place it reports drops (``reject``)."""

    engines: dict[str, CachedEngine] = field(default_factory=dict)  # role -> engine
    seed: int = 0
    quiet: bool = False
    step: str = "step"
    rejects: list[dict[str, Any]] = field(default_factory=list)
    drops: Counter = field(default_factory=Counter)
    files: dict[str, list[Any]] = field(default_factory=dict)  # extra JSONL files to store
    stats: dict[str, Any] = field(default_factory=dict)  # extra manifest stats
    # executor: ray's placement for an op's own heavy work (dedup's embeddings and
    # search); None: this process
    executor: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.sampling: dict[str, Any] = {}  # a generator's own sampling summary, for meta

    @property
    def engine(self) -> CachedEngine | None:
        """The step's main engine (role ``engine``), if it has one."""
        return self.engines.get("engine")

    def engine_for(self, role: str) -> CachedEngine:
        """The engine of ``role`` (judge, teacher), else the main engine."""
        eng = self.engines.get(role) or self.engine
        if eng is None:
            raise ToolkitError(f"{self.step}: this op needs an engine ({role})")
        return eng

    def request_seed(self, *parts: Any) -> int:
        """A per-request seed from the run seed and the request's identity.

        Independent of batch order, so a resumed run asks exactly the same requests.
        """
        h = hashlib.sha256(repr((self.seed, parts)).encode()).digest()
        return int.from_bytes(h[:4], "big") & 0x7FFFFFFF

    def generate(
        self, requests: list[Request], desc: str, engine: CachedEngine | None = None
    ) -> list[Result]:
        return (engine or self.engine_for("engine")).generate(requests, desc=desc)

    def reject(self, record: dict[str, Any], reason: str, **detail: Any) -> None:
        """Drop ``record`` for ``reason``: counted, and kept in the version's rejects.jsonl."""
        self.drops[reason] += 1
        self.rejects.append({"reason": reason, **detail, "record": record})

    def meta(
        self,
        source: str,
        request: Request | None,
        template: str | None = None,
        template_text: str | None = None,
        parents: list[str] | None = None,
        engine: CachedEngine | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        eng = engine or self.engine
        m: dict[str, Any] = {"source": source}
        if eng is not None:
            m.update(engine=eng.backend, model=eng.model)
        if request is not None:
            m["sampling"] = request.sampling()
        if template is not None:
            m["template"] = {"name": template, "hash": template_hash(template_text or "")}
        if parents:
            m["parents"] = parents
        m.update(extra)
        return m


def carry_meta(meta: dict[str, Any], parent: dict[str, Any] | None, keys: Any) -> dict[str, Any]:
    """``meta`` with each of ``keys`` that the parent record's meta holds and ``meta`` does
    not (an op's ``carry_meta``: a grown or reworded record keeps its seed's label)."""
    for key in keys or ():
        if parent and key in parent and key not in meta:
            meta[key] = parent[key]
    return meta
