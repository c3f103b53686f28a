import random

import pytest

from corekit.novelty import NoveltyIndex, rouge_tokens

rouge_scorer = pytest.importorskip("rouge_score.rouge_scorer")

WORDS = "write a short poem about the sea explain how tides work list three facts give an example of why do birds sing Über café naïve 42 x-ray".split()


def texts(rng, n):
    return [
        " ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 14)))
        + rng.choice(["", ".", "?", "!!"])
        for _ in range(n)
    ]


def test_scores_equal_rouge_score_exactly():
    rng = random.Random(0)
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    pool, cands = texts(rng, 60), texts(rng, 40)
    got = NoveltyIndex(pool).scores(cands)
    for i, c in enumerate(cands):
        for j, p in enumerate(pool):
            assert got[i, j] == scorer.score(c, p)["rougeL"].fmeasure, (c, p)


def test_tokens_follow_rouge_score():
    from rouge_score import tokenize

    rng = random.Random(1)
    for t in texts(rng, 200) + ["Ünïcode—dash_under score", "", "  ", "a\nb\tc"]:
        assert rouge_tokens(t) == tokenize.tokenize(t, None)


def test_filter_matches_sequential_reference():
    rng = random.Random(2)
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    pool, cands = texts(rng, 80), texts(rng, 80)
    # Near copies of the pool must go; so must a repeat of a candidate kept earlier.
    cands += [pool[0], pool[1] + " now", "zebra quantum harmonica", "Zebra, quantum harmonica!"]
    keep, maxes = NoveltyIndex(pool, threshold=0.7).filter(cands)
    ref_pool, ref_keep = list(pool), []
    for c in cands:
        m = max(scorer.score(c, p)["rougeL"].fmeasure for p in ref_pool)
        ref_keep.append(m <= 0.7)
        if m <= 0.7:
            ref_pool.append(c)
    assert keep == ref_keep
    assert keep[-4:] == [False, False, True, False] and any(keep[:-4]) and not all(keep[:-4])
