"""The paired tests the gate uses, chosen so that their false-fail rate on reruns of the same
model is at most alpha at every sample size:

- pass/fail metrics: McNemar's exact test (the discordant items are a fair coin under the
  null: a one-sided binomial tail on them, no large-sample approximation);
- continuous metrics: the paired sign-flip permutation test on the per-item differences
  (under the null each difference is as likely negative as positive), exact by enumerating
  every sign pattern up to ``EXACT_MAX_N`` items and Monte Carlo above, with the
  ``(hits + 1) / (draws + 1)`` p-value that keeps a random test valid;
- several metrics at once: Holm's step-down adjustment (family-wise error at most alpha);
- the minimum detectable drop (MDD) at that n and level: the smallest mean drop the test
  could flag, so a gate that cannot see the drop it is asked to guard says so.

The bootstrap interval of the mean difference is kept as the reported interval: it describes
the size of a change, the tests above decide whether there is one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

EXACT_MAX_N = 16  # 2**16 sign patterns: exact below, Monte Carlo above
MC_DRAWS = 9999
POWER = 0.8  # the MDD is the drop detected with this probability


def mcnemar(
    base: Sequence[float], cur: Sequence[float], higher_is_better: bool
) -> tuple[float, float, int, int]:
    """(p_worse, p_better, worse, better): one-sided exact McNemar p-values that ``cur`` is
    worse (better) than ``base``, and the discordant counts. A value counts as a pass when
    it is at least 0.5 (for lower-is-better metrics, below 0.5)."""
    worse = better = 0
    for b, c in zip(base, cur, strict=True):
        gb, gc = (b >= 0.5, c >= 0.5) if higher_is_better else (b < 0.5, c < 0.5)
        worse += gb and not gc
        better += gc and not gb
    k = worse + better
    return binom_upper(worse, k), binom_upper(better, k), worse, better


def binom_upper(x: int, n: int) -> float:
    """P(X >= x) for X ~ Binomial(n, 1/2), exactly."""
    if n == 0 or x <= 0:
        return 1.0
    if x > n:
        return 0.0
    return sum(math.comb(n, i) for i in range(x, n + 1)) / 2**n


def sign_flip(
    base: Sequence[float], cur: Sequence[float], higher_is_better: bool, seed: int = 0
) -> tuple[float, float]:
    """(p_worse, p_better): one-sided paired sign-flip permutation p-values of the mean
    difference ``cur - base`` (oriented so that worse is negative)."""
    import numpy as np

    d = np.asarray(cur, dtype=np.float64) - np.asarray(base, dtype=np.float64)
    if not higher_is_better:
        d = -d
    d = d[d != 0]  # a zero difference is the same under every sign
    n = len(d)
    if n == 0:
        return 1.0, 1.0
    observed = d.sum()
    a = np.abs(d)
    tol = 1e-9 * max(1.0, float(a.sum()))  # sums of the same numbers in another order
    if n <= EXACT_MAX_N:
        patterns = ((np.arange(2**n)[:, None] >> np.arange(n)) & 1) * 2 - 1
        sums = patterns @ a
        total = len(sums)
        low = int(np.sum(sums <= observed + tol))
        high = int(np.sum(sums >= observed - tol))
        return low / total, high / total
    sums = _random_signs(n, seed) @ a.astype(np.float32)
    tol += 1e-5 * float(a.sum())  # float32 sums: a tie is counted as a tie (conservative)
    low = int(np.sum(sums <= observed + tol))
    high = int(np.sum(sums >= observed - tol))
    return (low + 1) / (MC_DRAWS + 1), (high + 1) / (MC_DRAWS + 1)


_SIGNS: dict[int, Any] = {}


def _random_signs(n: int, seed: int) -> Any:
    """MC_DRAWS random sign patterns of length n (float32). One matrix per seed, grown as
    needed and sliced: the columns are independent fair signs whatever n is, the test is
    as valid with the same draws each time, and deterministic."""
    import numpy as np

    have = _SIGNS.get(seed)
    if have is None or have.shape[1] < n:
        width = max(n, 2 * (have.shape[1] if have is not None else 256))
        rng = np.random.default_rng(seed)
        have = _SIGNS[seed] = (
            rng.integers(0, 2, size=(MC_DRAWS, width), dtype=np.int8) * 2 - 1
        ).astype(np.float32)
    return have[:, :n]


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjusted p-values (None stays None and is not counted)."""
    idx = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    m = len(idx)
    out: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(idx):
        running = max(running, min(1.0, (m - rank) * p))
        out[i] = running
    return out


def min_worse_items(alpha: float) -> int:
    """How many items must all go one way before a one-sided sign test can reach p < alpha
    (the same bound holds for McNemar and for the sign-flip test): 2**-k < alpha."""
    return max(1, math.floor(math.log2(1 / alpha)) + 1)


def min_detectable_drop(diffs: Sequence[float], n: int, alpha: float, binary: bool) -> float:
    """The smallest mean drop the paired test could flag at level ``alpha`` on ``n`` items
    (``inf`` when no outcome at this n could be significant): the larger of

    - the discreteness floor: at least ``min_worse_items(alpha)`` items must be worse, each
      by at most 1 for a pass/fail metric (so ``k / n``), and for a continuous metric there
      must be that many items at all;
    - the drop found with 80% power given the spread of the observed per-item differences,
      ``(z[1-alpha] + z[power]) * sd / sqrt(n)`` (normal approximation).
    """
    from statistics import NormalDist

    if n <= 0:
        return math.inf
    k = min_worse_items(alpha)
    if k > n:
        return math.inf
    floor = k / n if binary else 0.0
    if len(diffs) > 1:
        mean = sum(diffs) / len(diffs)
        sd = math.sqrt(sum((x - mean) ** 2 for x in diffs) / (len(diffs) - 1))
    else:
        sd = 0.0
    z = NormalDist().inv_cdf(1 - alpha) + NormalDist().inv_cdf(POWER)
    return max(floor, z * sd / math.sqrt(n))


def bootstrap_delta_ci(base: Sequence[float], cur: Sequence[float]) -> list[float] | None:
    """95% percentile bootstrap interval of the mean of ``cur - base`` (items resampled)."""
    from .scoring import bootstrap_ci

    return bootstrap_ci([c - b for b, c in zip(base, cur, strict=True)])
