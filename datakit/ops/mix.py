"""Mixing datasets in given proportions.

``mix``: draw from several inputs in given proportions (synthetic with real data, a share of
general data against forgetting, a share of safety data against the alignment tax). With
``total`` the mix has that many records, each input contributing round(weight x total)
(largest remainders first), sampled without replacement; an input too small for its share
is an error that says the largest total the inputs allow, unless ``best_effort`` (then it is
taken whole and the shortfall is reported). Weights without a total draw the largest mix
the weights allow (the input that is smallest for its weight is taken whole and sets the
size); neither: every input whole. The asked and realised ratios go into the manifest
(``stats.mix``: asked, ratio, wanted, taken); the parents are all inputs.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from typing import Any

from corekit.errors import ToolkitError

from ..records import field_value
from .context import OpContext


def mix(
    inputs: list[list[dict[str, Any]]],
    ctx: OpContext,
    weights: list[float] | None = None,
    total: int | None = None,
    best_effort: bool = False,
    balance_by: str | list[str] | None = None,
    balance_weights: dict[str, float] | None = None,
) -> list[dict[str, Any]]:
    rng = random.Random(ctx.seed)
    # each record's group, once: the weights check, the draw and the counts all read it
    groups = [[_group(r, balance_by) for r in recs] for recs in inputs] if balance_by else []
    if balance_by and balance_weights:
        held = {g for keys in groups for g in keys}
        unknown = sorted(set(balance_weights) - held)
        if unknown:
            # a typo draws evenly without a word; with best_effort (take what there is) a
            # value this run's data lacks is said and recorded instead
            said = (
                f"{ctx.step}: mix balance_weights names {', '.join(map(repr, unknown))}, which "
                f"no input holds in {_said(balance_by)} (values: {', '.join(sorted(held))})"
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
            chosen = sorted(_balanced(groups[k], min(want, len(recs)), rng, balance_weights))
        else:
            chosen = sorted(rng.sample(range(len(recs)), min(want, len(recs))))
        out.extend(recs[i] for i in chosen)
        realised.append(
            {"input": k, "weight": norm[k], "asked": round(norm[k], 4), "wanted": want,
             "taken": len(chosen)}
        )  # fmt: skip
        if balance_by:
            counts = Counter(groups[k][i] for i in chosen)
            realised[-1]["by_" + _said(balance_by)] = dict(sorted(counts.items()))
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


def _group(rec: dict[str, Any], by: str | list[str]) -> str:
    """A record's group for ``balance_by``: the value of the field, or of the first of the
    fields the record holds (one list can name each input's field: the safety answers' label,
    the format answers' task category); "None" when it holds none."""
    for path in [by] if isinstance(by, str) else by:
        value = scalar_field(rec, path)
        if value is not None:
            return str(value)
    return "None"


def _said(by: str | list[str]) -> str:
    return by if isinstance(by, str) else "|".join(by)


def _balanced(
    keys: list[str],
    n: int,
    rng: random.Random,
    weights: dict[str, float] | None = None,
) -> list[int]:
    """``n`` indices of records drawn across their groups (``keys``: each record's group,
    ``_group``): evenly, or in proportion to ``weights`` (value -> weight, 1 for a value it
    does not name); a group too small gives all it has and the others share its remainder
    in their proportions."""
    groups: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
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


def scalar_field(rec: dict[str, Any], path: str) -> Any:
    v = field_value(rec, path)
    return v if isinstance(v, (str, int, float, bool)) or v is None else str(v)
