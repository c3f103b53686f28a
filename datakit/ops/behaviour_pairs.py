"""Preference pairs from what answers do (safety DPO data, made by the pipeline).

The inputs hold several sampled answers per prompt (chat records whose ``meta.expected`` says
what the answer should do: ``refuse`` an unsafe request, ``comply`` with a safe look-alike).
The refusal detector (corekit/refusal.py, the one evalkit scores with) labels every answer;
for each prompt an answer that does what is expected is paired, as chosen, with one that
does not, as rejected: a refusal over a compliance (or a refusal that then helps anyway) for
an unsafe request, a real answer over a needless refusal for a safe look-alike, so the
preference stage trains against over-refusal as much as for refusal. A prompt without both
kinds of answer makes no pair (``no_contrast``, counted per prompt).
"""

from __future__ import annotations

import random
from collections import defaultdict
from typing import Any

from ..records import field_value, prompt_messages
from .context import OpContext
from .filter import _behaviour, _refusal_labels


def run(
    inputs: list[list[dict[str, Any]]],
    ctx: OpContext,
    expected_field: str = "meta.expected",
    pairs_per_prompt: int = 1,
) -> list[dict[str, Any]]:
    records = [r for recs in inputs for r in recs if r.get("messages")]
    labels = _refusal_labels(records)
    groups: dict[str, list[tuple[dict[str, Any], str]]] = defaultdict(list)
    for rec, label in zip(records, labels, strict=True):
        key = repr(prompt_messages(rec))
        groups[key].append((rec, label))
    rng = random.Random(ctx.seed)
    out = []
    for key in sorted(groups):
        members = groups[key]
        expected = field_value(members[0][0], expected_field)
        if expected not in ("refuse", "comply"):
            ctx.reject(members[0][0], "no_expected", field=expected_field)
            continue
        good = [r for r, lab in members if _behaviour(expected, lab) is None]
        bad = [r for r, lab in members if _behaviour(expected, lab) is not None]
        if not good or not bad:
            ctx.reject(members[0][0], "no_contrast", expected=expected,
                       answers=len(members), doing_it=len(good))  # fmt: skip
            continue
        rng.shuffle(good)
        rng.shuffle(bad)
        for chosen, rejected in list(zip(good, bad, strict=False))[:pairs_per_prompt]:
            meta = {
                "source": "behaviour_pairs",
                "expected": expected,
                "parents": [chosen["id"], rejected["id"]],
            }
            out.append(
                {
                    "prompt": prompt_messages(chosen),
                    "chosen": [chosen["messages"][-1]],
                    "rejected": [rejected["messages"][-1]],
                    "meta": meta,
                }
            )
    return out
