"""Kahneman-Tversky optimisation (Ethayarajh et al. 2024) on unpaired good/bad answers.

Paired preference data is split into a desirable and an undesirable row per pair.

KTO's KL term is estimated on mismatched (prompt, completion) pairs, which TRL builds once,
before training, by rotating the completions within each run of ``batch_size`` rows in
dataset order: row j is paired with row j-1's completion (the first with the last's). Rows
of one pair sit next to each other (and ``datakit generate preferences --emit unpaired``
writes them that way), so every "mismatched" pair would share its prompt. The rows (train
and eval) are therefore shuffled with the stage's seed and arranged so that rotation pairs
rows of different prompts.
"""

from __future__ import annotations

import heapq
import json
import random
from typing import Any


def prompt_key(row: dict[str, Any]) -> str:
    return json.dumps(row["prompt"], sort_keys=True, ensure_ascii=False)


def kl_pairs(keys: list[str], batch_size: int) -> list[tuple[int, int]]:
    """(row, row whose completion it gets for the KL term), as TRL rotates within batches."""
    pairs = []
    for start in range(0, len(keys), batch_size):
        idx = list(range(start, min(start + batch_size, len(keys))))
        pairs += [(j, idx[(k - 1) % len(idx)]) for k, j in enumerate(idx)]
    return pairs


def same_prompt_kl_pairs(keys: list[str], batch_size: int) -> int:
    return sum(keys[a] == keys[b] for a, b in kl_pairs(keys, batch_size))


def kl_order(keys: list[str], batch_size: int, seed: int) -> list[int]:
    """A row order in which KL pairs (``kl_pairs``) do not share a prompt.

    Batch by batch, each position takes a row of the prompt with the most rows left, among
    the prompts other than the previous row's in the batch (and, at the batch's last
    position, the first row's, which it pairs with); seeded ties. Taking the most plentiful
    prompt first is what keeps a lone prompt from being left over at the end. Preference
    pairs come out with no shared-prompt KL pair; a few may remain where one prompt holds
    a large share of a small dataset, or a batch holds a single row. O(n log p).
    """
    rng = random.Random(seed)
    rows: dict[str, list[int]] = {}
    for i in rng.sample(range(len(keys)), len(keys)):
        rows.setdefault(keys[i], []).append(i)
    rank = {k: r for r, k in enumerate(rng.sample(sorted(rows), len(rows)))}
    heap = [(-len(v), rank[k], k) for k, v in rows.items()]
    heapq.heapify(heap)
    order: list[int] = []
    while heap:
        batch: list[str] = []
        size = min(batch_size, sum(len(v) for v in rows.values()))
        for pos in range(size):
            avoid = {batch[-1]} if batch else set()
            if pos == size - 1 and size > 1:
                avoid.add(batch[0])
            held = []
            while heap and heap[0][2] in avoid:
                held.append(heapq.heappop(heap))
            _, _, key = heapq.heappop(heap) if heap else held.pop(0)
            for item in held:
                heapq.heappush(heap, item)
            order.append(rows[key].pop())
            batch.append(key)
            if rows[key]:
                heapq.heappush(heap, (-len(rows[key]), rank[key], key))
            else:
                del rows[key]
    return order


def build(stage, common: dict[str, Any], inputs: dict[str, Any]) -> Any:
    from trl import KTOConfig, KTOTrainer

    args = KTOConfig(
        **common,
        max_length=stage.args["max_length"],
        beta=stage.params["beta"],
        desirable_weight=stage.params["desirable_weight"],
        undesirable_weight=stage.params["undesirable_weight"],
    )
    inputs = dict(inputs)
    for split in ("train_dataset", "eval_dataset"):
        rows = inputs.get(split)
        if rows is not None:
            keys = [prompt_key(r) for r in rows]
            inputs[split] = rows.select(
                kl_order(keys, stage.args["batch_size"], stage.args["seed"])
            )
    return KTOTrainer(args=args, **inputs)
