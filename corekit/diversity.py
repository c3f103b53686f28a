"""How varied a set of texts is: distinct n-grams and mean pairwise ROUGE-L (datakit's
dataset stats and evalkit's diversity metrics both report them)."""

from __future__ import annotations

import random
from collections import Counter


def distinct_n(texts: list[str], n: int) -> float:
    """Unique n-grams over all n-grams (words, lowercased) across the texts."""
    grams: Counter = Counter()
    for t in texts:
        words = t.lower().split()
        grams.update(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
    total = sum(grams.values())
    return round(len(grams) / total, 4) if total else 0.0


def self_similarity(texts: list[str], sample: int = 300, seed: int = 0) -> float | None:
    """Mean ROUGE-L F over all pairs of (a seeded sample of at most ``sample``) texts: exact
    scores through the novelty filter's bit-parallel LCS."""
    from .novelty import NoveltyIndex

    texts = [t for t in texts if t.strip()]
    if len(texts) < 2:
        return None
    if len(texts) > sample:
        texts = random.Random(seed).sample(texts, sample)
    m = NoveltyIndex(texts).scores(texts)
    n = len(texts)
    return round(float((m.sum() - m.trace()) / (n * (n - 1))), 4)
