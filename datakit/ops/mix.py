"""Mixing and held-out splits.

``mix``: draw from several inputs in given proportions (synthetic with real data, a share of
general data against forgetting, a share of safety data against the alignment tax). With
``total`` the mix has that many records, each input contributing round(weight x total)
(largest remainders first), sampled without replacement; an input too small for its share
is an error that says the largest total the inputs allow, unless ``best_effort`` (then it is
taken whole and the shortfall is reported). Weights without a total draw the largest mix
the weights allow (the input that is smallest for its weight is taken whole and sets the
size); neither: every input whole. The asked and realised ratios go into the manifest
(``stats.mix``: asked, ratio, wanted, taken); the parents are all inputs.

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

import logging
import random
from typing import Any

from corekit.errors import ToolkitError

from ..records import field_value
from .context import OpContext
from .dedup import (
    Clusters,
    duplicate_pairs,
    normalise,
    record_text,
    semantic_pairs,
    shingles,
)


def mix(
    inputs: list[list[dict[str, Any]]],
    ctx: OpContext,
    weights: list[float] | None = None,
    total: int | None = None,
    best_effort: bool = False,
    balance_by: str | None = None,
    balance_weights: dict[str, float] | None = None,
) -> list[dict[str, Any]]:
    rng = random.Random(ctx.seed)
    if balance_by and balance_weights:
        held = {str(_field(r, balance_by)) for recs in inputs for r in recs}
        unknown = sorted(set(balance_weights) - held)
        if unknown:
            # a typo draws evenly without a word; with best_effort (take what there is) a
            # value this run's data lacks is said and recorded instead
            said = (
                f"{ctx.step}: mix balance_weights names {', '.join(map(repr, unknown))}, which "
                f"no input holds in {balance_by} (values: {', '.join(sorted(held))})"
            )
            if not best_effort:
                raise ToolkitError(said)
            logging.getLogger(__name__).warning(said)
            ctx.stats["balance_weights_unmatched"] = unknown
    w = list(weights or [1.0] * len(inputs))
    if len(w) != len(inputs):
        raise ToolkitError(f"{ctx.step}: mix has {len(inputs)} inputs but {len(w)} weights")
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
        short = [k for k, (n, want) in enumerate(zip(sizes, wanted, strict=True)) if n < want]
        if short and not best_effort:
            k = short[0]
            most = min(int(n / x + 1e-9) for n, x in zip(sizes, norm, strict=True))
            raise ToolkitError(
                f"{ctx.step}: mix total {total} at ratios "
                f"{'/'.join(f'{x:.2g}' for x in norm)} needs {wanted[k]} records of input "
                f"{k + 1}, which holds {sizes[k]}; these inputs allow total {most} at these "
                "ratios (or best_effort / --best-effort takes every short input whole and "
                "records the realised ratios)"
            )
    out: list[dict[str, Any]] = []
    realised = []
    for k, (recs, want) in enumerate(zip(inputs, wanted, strict=True)):
        if balance_by:
            chosen = sorted(_balanced(recs, min(want, len(recs)), balance_by, rng, balance_weights))
        else:
            chosen = sorted(rng.sample(range(len(recs)), min(want, len(recs))))
        out.extend(recs[i] for i in chosen)
        realised.append(
            {"input": k, "weight": norm[k], "asked": round(norm[k], 4), "wanted": want,
             "taken": len(chosen)}
        )  # fmt: skip
        if balance_by:
            counts: dict[str, int] = {}
            for i in chosen:
                key = str(_field(recs[i], balance_by))
                counts[key] = counts.get(key, 0) + 1
            realised[-1]["by_" + balance_by] = dict(sorted(counts.items()))
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


def _balanced(
    recs: list[dict[str, Any]],
    n: int,
    path: str,
    rng: random.Random,
    weights: dict[str, float] | None = None,
) -> list[int]:
    """``n`` indices of ``recs`` drawn across the values of field ``path`` (records without it
    form a group of their own): evenly, or in proportion to ``weights`` (value -> weight,
    1 for a value it does not name); a group too small gives all it has and the others share
    its remainder in their proportions."""
    groups: dict[str, list[int]] = {}
    for i, rec in enumerate(recs):
        groups.setdefault(str(_field(rec, path)), []).append(i)
    for idx in groups.values():
        rng.shuffle(idx)
    weight = {g: float((weights or {}).get(g, 1.0)) for g in groups}
    # the groups shortest for their weight first: they give all they have, the rest share
    order = sorted(groups, key=lambda g: len(groups[g]) / weight[g])
    out: list[int] = []
    left = n
    for j, g in enumerate(order):
        rest = sum(weight[h] for h in order[j:])
        share = min(len(groups[g]), int(left * weight[g] / rest + 1e-9))
        out.extend(groups[g][:share])
        left -= share
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
    v = field_value(rec, path)
    return v if isinstance(v, (str, int, float, bool)) or v is None else str(v)


def split(
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

    counts = Counter(_field(records[i], stratify) for i in group)
    best = max(counts.values())
    return next(
        _field(records[i], stratify) for i in group if counts[_field(records[i], stratify)] == best
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
        train_keys = {normalise(texts[i]) for i in train_idx}
        leaks = sum(normalise(texts[i]) in train_keys for i in test_idx)
        return {"test_records_with_a_close_train_record": leaks, "checked": True}
    sets = {i: shingles(texts[i], 5) for i in (*test_idx, *train_idx)}
    leaks = 0
    for i in test_idx:
        a = sets[i]
        if any(a and len(a & sets[j]) / len(a | sets[j]) >= threshold for j in train_idx):
            leaks += 1
    return {"test_records_with_a_close_train_record": leaks, "checked": True}
