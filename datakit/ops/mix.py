"""Mixing and held-out splits.

``mix``: draw from several inputs in given proportions (synthetic with real data, a share of
general data against forgetting, a share of safety data against the alignment tax). With
``total`` the mix has that many records, each input contributing round(weight x total)
(largest remainders first), sampled without replacement (an input too small for its share
is taken whole, and the shortfall is reported). Weights without a total draw the largest mix
the weights allow (the input that is smallest for its weight is taken whole and sets the
size); neither: every input whole. The asked and realised ratios go into the manifest
(``stats.mix``: asked, ratio, wanted, taken); the parents are all inputs.

``split``: a seeded held-out split into ``train`` and ``test`` outputs, optionally
stratified by a field, with near-duplicate clusters kept on one side (a paraphrase of a test
item in train would leak it).
"""

from __future__ import annotations

import random
from typing import Any

from .context import OpContext
from .dedup import Clusters, duplicate_pairs, record_text


def mix(
    inputs: list[list[dict[str, Any]]],
    ctx: OpContext,
    weights: list[float] | None = None,
    total: int | None = None,
) -> list[dict[str, Any]]:
    rng = random.Random(ctx.seed)
    w = list(weights or [1.0] * len(inputs))
    if len(w) != len(inputs):
        from ..errors import DatakitError

        raise DatakitError(f"{ctx.step}: mix has {len(inputs)} inputs but {len(w)} weights")
    norm = [x / sum(w) for x in w]
    sizes = [len(recs) for recs in inputs]
    if total is None and weights is None:
        wanted = sizes  # no proportions asked: every input whole
    else:
        if total is None:
            # weights without a total: the largest mix the weights allow, every input giving
            # its share without running short (the smallest input for its weight sets it)
            total = min(int(n / x + 1e-9) for n, x in zip(sizes, norm, strict=True))
        wanted = _shares(total, norm)
    out: list[dict[str, Any]] = []
    realised = []
    for k, (recs, want) in enumerate(zip(inputs, wanted, strict=True)):
        take = rng.sample(range(len(recs)), min(want, len(recs)))
        chosen = sorted(take)
        out.extend(recs[i] for i in chosen)
        realised.append(
            {"input": k, "weight": norm[k], "asked": round(norm[k], 4), "wanted": want,
             "taken": len(chosen)}
        )  # fmt: skip
        taken = set(chosen)
        for i, rec in enumerate(recs):
            if i not in taken:
                ctx.reject(rec, "not_drawn", input=k)
    n = len(out)
    for row in realised:
        row["ratio"] = round(row["taken"] / n, 4) if n else 0.0
        if weights is None and total is None:
            row["asked"] = None  # nothing was asked: the inputs' own sizes
    ctx.stats["mix"] = realised
    rng.shuffle(out)
    return out


def _shares(total: int, norm: list[float]) -> list[int]:
    """round(weight x total) per input, the largest remainders taking the leftover."""
    exact = [total * x for x in norm]
    wanted = [int(x) for x in exact]
    for k in sorted(range(len(exact)), key=lambda k: -(exact[k] - wanted[k]))[
        : total - sum(wanted)
    ]:
        wanted[k] += 1
    return wanted


def _field(rec: dict[str, Any], path: str) -> Any:
    v: Any = rec
    for part in path.split("."):
        v = v.get(part) if isinstance(v, dict) else None
    return v if isinstance(v, (str, int, float, bool)) or v is None else str(v)


def split(
    records: list[dict[str, Any]],
    ctx: OpContext,
    test: float = 0.1,
    stratify: str | None = None,
    group_threshold: float = 0.8,
) -> dict[str, list[dict[str, Any]]]:
    rng = random.Random(ctx.seed)
    texts = [record_text(r, "instruction") for r in records]
    clusters = Clusters(len(records))
    for i, j, _ in duplicate_pairs(texts, "near", group_threshold):
        clusters.union(i, j)
    groups: dict[int, list[int]] = {}
    for i in range(len(records)):
        groups.setdefault(clusters.find(i), []).append(i)
    strata: dict[Any, list[list[int]]] = {}
    for g in groups.values():
        key = _field(records[g[0]], stratify) if stratify else None
        strata.setdefault(key, []).append(g)
    test_idx: set[int] = set()
    for key in sorted(strata, key=str):
        gs = strata[key]
        rng.shuffle(gs)
        size = sum(len(g) for g in gs)
        want = round(size * test)
        got = 0
        for g in gs:
            if got >= want:
                break
            test_idx.update(g)
            got += len(g)
    ctx.stats["split"] = {"test": len(test_idx), "train": len(records) - len(test_idx)}
    return {
        "train": [r for i, r in enumerate(records) if i not in test_idx],
        "test": [r for i, r in enumerate(records) if i in test_idx],
    }
