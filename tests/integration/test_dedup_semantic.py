"""Semantic dedup with the real MiniLM embeddings (the default method): paraphrases are
found, same-topic requests for other things are not, and the HNSW search agrees with the
exact all-pairs cosine on which pairs pass the threshold."""

import numpy as np

from datakit.embeddings import embed
from datakit.ops.dedup import SEMANTIC_THRESHOLD, semantic_pairs

TEXTS = [
    "Explain how tides work to a ten year old.",
    "Describe, for a ten-year-old child, how tides work.",  # paraphrase of 0
    "Write a short poem about tides.",  # same topic, other task
    "Summarise the history of the printing press in one paragraph.",
    "In a single paragraph, give a summary of the history of the printing press.",  # of 3
    "List three surprising facts about volcanoes.",
]


def test_paraphrases_found_and_hard_negatives_kept():
    pairs = {(i, j) for i, j, _ in semantic_pairs(TEXTS, SEMANTIC_THRESHOLD)}
    assert pairs == {(0, 1), (3, 4)}


def test_index_search_matches_exact_cosine():
    rng = np.random.default_rng(0)
    words = "tides poem bread chess river winter garden music history science".split()
    texts = [" ".join(rng.choice(words, 6)) + f" {i % 40}" for i in range(300)]
    got = {(i, j) for i, j, _ in semantic_pairs(texts, 0.9)}
    vecs = embed(texts)
    sims = vecs @ vecs.T
    want = {(i, j) for i in range(300) for j in range(i + 1, 300) if sims[i, j] >= 0.9}
    # HNSW with 16 neighbours: every exact pair is found unless a text has more than 15
    # neighbours above the threshold.
    assert len(got & want) >= 0.98 * len(want) and got <= want | {
        p for p in got if abs(sims[p] - 0.9) < 1e-4
    }
