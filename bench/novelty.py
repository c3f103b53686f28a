"""Novelty filter speed: datakit's ROUGE-L filter against rouge_score pair by pair.

A pool of instructions and a list of candidates; each candidate is kept if its ROUGE-L F
against every pooled instruction and every candidate kept before it is at most 0.7 (the
Self-Instruct rule). The baseline is the fair port of the reference filter (Self-Instruct's
bootstrap script): every instruction is tokenised once with rouge_score's own tokenizer, and
each candidate x pool pair is scored with rouge_score's LCS routine on those tokens
(``rouge_scorer._score_lcs``), so the baseline pays for LCS, not for re-tokenising. Figures:
time of each, the ratio, and whether all keep/drop decisions agree.
Run: python bench/novelty.py [--quick]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

VERBS = "write explain list describe summarise classify translate compare suggest give create rewrite find name convert sort".split()
WORDS = (
    "a short poem story email list recipe plan summary the of about for with three two five best simple new old city river "
    "dog cat ocean history science music game book film friend teacher student office garden winter summer data model "
    "python function table sentence paragraph review question answer reason example tips ideas steps"
).split()


def instruction(rng: random.Random) -> str:
    return (
        f"{rng.choice(VERBS).capitalize()} "
        + " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 16)))
        + "."
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="pool 1,000 x 200 candidates (seconds)")
    ap.add_argument("--pool", type=int, default=None)
    ap.add_argument("--candidates", type=int, default=None)
    args = ap.parse_args()
    n_pool = args.pool or (1000 if args.quick else 5000)
    n_cand = args.candidates or (200 if args.quick else 1000)
    rng = random.Random(0)
    pool = [instruction(rng) for _ in range(n_pool)]
    cands = [instruction(rng) for _ in range(n_cand)]
    cands[::10] = [p + " now" for p in pool[: len(cands[::10])]]  # some near copies

    from rouge_score import rouge_scorer

    from corekit.novelty import NoveltyIndex

    t = time.perf_counter()
    keep, _ = NoveltyIndex(pool, threshold=0.7).filter(cands)
    t_ours = time.perf_counter() - t

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    t = time.perf_counter()
    tokenize = scorer._tokenizer.tokenize
    ref_pool = [tokenize(p) for p in pool]  # once per instruction, as the reference does
    ref_keep = []
    for c in cands:
        ct = tokenize(c)
        best = max(rouge_scorer._score_lcs(ct, pt).fmeasure for pt in ref_pool)
        ref_keep.append(best <= 0.7)
        if best <= 0.7:
            ref_pool.append(ct)
    t_ref = time.perf_counter() - t

    pairs = n_pool * n_cand
    print(f"pool: {n_pool}, candidates: {n_cand}, kept: {sum(keep)}")
    print(f"datakit_seconds: {t_ours:.3f}")
    print(f"pretokenised_rouge_score_seconds: {t_ref:.1f} ({t_ref / pairs * 1e6:.0f} us per pair)")
    print(f"speedup_vs_pretokenised_rouge_score: {t_ref / t_ours:.0f}x (goal >= 100x)")
    print(f"decisions_identical: {int(keep == ref_keep)} (goal 1)")
    if keep != ref_keep:
        sys.exit(1)


if __name__ == "__main__":
    main()
