"""Held-out splits.

``split``: a seeded held-out split into ``train`` and ``test`` outputs, optionally
stratified by a field. Records are grouped with the dedup machinery (semantic by default, the
same threshold, on the whole record: asked and answered), and a group stays on one side (a
paraphrase of a test item in train would leak it). Per stratum the largest groups are placed
first and a group that would overshoot stays in train, so each stratum's test share is
within one record of what was asked where its groups allow it. The manifest reports the
realised share overall and per stratum, and the leakage check: test records whose closest
train record is at or above the threshold, by exact search (goal 0).
"""

from __future__ import annotations

import random
from typing import Any

from .context import OpContext
from .dedup import Clusters, duplicate_pairs, normalize, record_text, semantic_pairs, shingles
from .mix import scalar_field


def run(
    records: list[dict[str, Any]],
    ctx: OpContext,
    test: float = 0.1,
    stratify: str | None = None,
    group_method: str = "semantic",
    group_threshold: float | None = None,
) -> dict[str, list[dict[str, Any]]]:
    from .dedup import NEAR_THRESHOLD, SEMANTIC_THRESHOLD

    rng = random.Random(ctx.seed)
    texts = [record_text(r, "prompt_response") for r in records]
    if group_threshold is None:
        group_threshold = SEMANTIC_THRESHOLD if group_method == "semantic" else NEAR_THRESHOLD
    vecs = None
    if group_method == "semantic" and len(records) > 1:
        import numpy as np

        from corekit.embeddings import embed_whole

        # the whole record, not prompt and response apart: a test item whose question sits
        # in train with another answer still leaks
        vecs = embed_whole(texts).astype(np.float32)
        pairs = semantic_pairs(texts, group_threshold, vecs=vecs)
    else:
        pairs = duplicate_pairs(texts, group_method, group_threshold)
    # groups are connected components: no duplicate pair may straddle the split
    clusters = Clusters(len(records))
    for i, j, _ in pairs:
        clusters.union(i, j)
    groups: dict[int, list[int]] = {}
    for i in range(len(records)):
        groups.setdefault(clusters.find(i), []).append(i)
    strata: dict[Any, list[list[int]]] = {}
    for g in groups.values():
        strata.setdefault(_stratum(records, g, stratify), []).append(g)
    test_idx: set[int] = set()
    shares = {}
    for key in sorted(strata, key=str):
        chosen, size = _hold_out(strata[key], test, rng)
        test_idx.update(chosen)
        shares[str(key)] = {
            "records": size,
            "test": len(chosen),
            "share": round(len(chosen) / size, 4) if size else 0.0,
        }
    train = [i for i in range(len(records)) if i not in test_idx]
    ctx.stats["split"] = {
        "test": len(test_idx),
        "train": len(train),
        "asked": test,
        "realised": round(len(test_idx) / len(records), 4) if records else 0.0,
        "grouping": {"method": group_method, "threshold": group_threshold,
                     "groups": len(groups)},
        **({"strata": shares} if stratify else {}),
        "leakage": _leakage(texts, sorted(test_idx), train, group_method, group_threshold, vecs),
    }  # fmt: skip
    return {
        "train": [records[i] for i in train],
        "test": [records[i] for i in sorted(test_idx)],
    }


def _stratum(records: list[dict[str, Any]], group: list[int], stratify: str | None) -> Any:
    """A group's stratum: the value most of its members have (ties: the first in order)."""
    if not stratify:
        return None
    from collections import Counter

    counts = Counter(scalar_field(records[i], stratify) for i in group)
    best = max(counts.values())
    return next(
        scalar_field(records[i], stratify)
        for i in group
        if counts[scalar_field(records[i], stratify)] == best
    )


def _hold_out(groups: list[list[int]], test: float, rng: random.Random) -> tuple[list[int], int]:
    """The held-out records of one stratum: largest groups first (seeded order among equal
    sizes), a group that would overshoot the asked count stays in train, so the count is
    within one record of round(size x test) whenever the groups allow it; a stratum of two or
    more groups holds out at least one record, and always keeps one group in train."""
    size = sum(len(g) for g in groups)
    want = round(size * test)
    if len(groups) < 2:
        return [], size
    want = max(want, 1)
    order = list(groups)
    rng.shuffle(order)
    order.sort(key=len, reverse=True)
    chosen: list[int] = []
    taken_groups = 0
    for g in order:
        if len(chosen) >= want:
            break
        if len(chosen) + len(g) <= want and taken_groups < len(groups) - 1:
            chosen.extend(g)
            taken_groups += 1
    return chosen, size


def _leakage(
    texts: list[str],
    test_idx: list[int],
    train_idx: list[int],
    method: str,
    threshold: float,
    vecs: Any,
) -> dict[str, Any]:
    """How many test records have a train record at or above the threshold (exact search,
    not the index's candidates: the check the grouping must pass). Goal 0."""
    if not test_idx or not train_idx:
        return {"test_records_with_a_close_train_record": 0, "checked": True}
    if method == "semantic" and vecs is not None:
        import numpy as np

        train = vecs[train_idx]
        leaks = 0
        for start in range(0, len(test_idx), 1024):
            block = vecs[test_idx[start : start + 1024]] @ train.T
            leaks += int(np.sum(block.max(axis=1) >= threshold))
        return {"test_records_with_a_close_train_record": leaks, "checked": True}
    if len(test_idx) * len(train_idx) > 4_000_000:
        return {"test_records_with_a_close_train_record": None, "checked": False}
    if method == "exact":
        train_keys = {normalize(texts[i]) for i in train_idx}
        leaks = sum(normalize(texts[i]) in train_keys for i in test_idx)
        return {"test_records_with_a_close_train_record": leaks, "checked": True}
    sets = {i: shingles(texts[i], 5) for i in (*test_idx, *train_idx)}
    leaks = 0
    for i in test_idx:
        a = sets[i]
        if any(a and len(a & sets[j]) / len(a | sets[j]) >= threshold for j in train_idx):
            leaks += 1
    return {"test_records_with_a_close_train_record": leaks, "checked": True}
