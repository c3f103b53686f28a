"""ROUGE-L novelty filter (Self-Instruct's "is this instruction new?" check), fast and exact.

Self-Instruct drops a candidate instruction whose ROUGE-L F against any instruction already
in the pool exceeds a threshold (0.7), comparing pair by pair with ``rouge_score``, which
takes minutes for thousands of instructions. Here each text is tokenised the way rouge_score
tokenises without a stemmer (lowercase, every run of characters other than a-z/0-9 is a
separator), tokens are mapped to one character each, and rapidfuzz's bit-parallel LCS gives
the LCS lengths of whole candidate x pool blocks at once. F is then computed with the same
floating-point expression rouge_score uses, 2PR/(P+R), so scores and decisions are identical.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import numpy as np

_SEPARATORS = re.compile(r"[^a-z0-9]+")


def rouge_tokens(text: str) -> list[str]:
    return [t for t in _SEPARATORS.sub(" ", text.lower()).split(" ") if t]


def _fmeasure(lcs: np.ndarray, len_a: np.ndarray, len_b: np.ndarray) -> np.ndarray:
    """ROUGE-L F from LCS lengths; 0 where either side has no tokens (as rouge_score)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        p = lcs / len_b
        r = lcs / len_a
        f = 2 * p * r / (p + r)
    return np.where((len_a > 0) & (len_b > 0) & (lcs > 0), f, 0.0)


class NoveltyIndex:
    """A pool of instructions; ``filter`` keeps the candidates novel enough to join it."""

    def __init__(self, texts: Iterable[str] = (), threshold: float = 0.7):
        self.threshold = threshold
        self._vocab: dict[str, int] = {}
        self._docs: list[str] = []
        self._lens: list[int] = []
        self.texts: list[str] = []
        self.add(texts)

    def _encode(self, text: str) -> str:
        out = []
        for tok in rouge_tokens(text):
            i = self._vocab.get(tok)
            if i is None:
                i = self._vocab[tok] = len(self._vocab)
            # One code point per token, skipping the surrogate range.
            out.append(chr(i + 1 if i + 1 < 0xD800 else i + 1 + 0x800))
        return "".join(out)

    def __len__(self) -> int:
        return len(self._docs)

    def add(self, texts: Iterable[str]) -> None:
        for t in texts:
            enc = self._encode(t)
            self._docs.append(enc)
            self._lens.append(len(enc))
            self.texts.append(t)

    def scores(self, candidates: list[str]) -> np.ndarray:
        """ROUGE-L F of every candidate against every pooled text (candidates x pool)."""
        enc = [self._encode(c) for c in candidates]
        return self._scores(enc, self._docs, self._lens)

    @staticmethod
    def _scores(enc: list[str], docs: list[str], lens: list[int]) -> np.ndarray:
        from rapidfuzz.distance import LCSseq
        from rapidfuzz.process import cdist

        if not enc or not docs:
            return np.zeros((len(enc), len(docs)))
        lcs = cdist(enc, docs, scorer=LCSseq.similarity, dtype=np.int32, workers=1)
        la = np.array([len(e) for e in enc], dtype=np.float64)[:, None]
        lb = np.array(lens, dtype=np.float64)[None, :]
        return _fmeasure(lcs.astype(np.float64), la, lb)

    def filter(self, candidates: list[str], add: bool = True) -> tuple[list[bool], list[float]]:
        """Keep/drop per candidate, in order, each also checked against the ones kept before it.

        Returns (keep flags, the max ROUGE-L F each candidate reached). Kept candidates join
        the pool when ``add`` is true.
        """
        enc = [self._encode(c) for c in candidates]
        vs_pool = self._scores(enc, self._docs, self._lens)
        vs_self = self._scores(enc, enc, [len(e) for e in enc])
        best = vs_pool.max(axis=1) if len(self._docs) else np.zeros(len(enc))
        keep: list[bool] = []
        kept_idx: list[int] = []
        maxes: list[float] = []
        for i in range(len(enc)):
            m = float(best[i])
            if kept_idx:
                m = max(m, float(vs_self[i, kept_idx].max()))
            maxes.append(m)
            ok = m <= self.threshold
            keep.append(ok)
            if ok:
                kept_idx.append(i)
        if add:
            for i in kept_idx:
                self._docs.append(enc[i])
                self._lens.append(len(enc[i]))
                self.texts.append(candidates[i])
        return keep, maxes
