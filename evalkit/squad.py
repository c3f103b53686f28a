"""SQuAD v1.1 exact match and F1, as the official evaluation script defines them: lowercase,
drop ASCII punctuation, drop the articles a/an/the, collapse whitespace; F1 over the token
multiset; the maximum over several references. The normalisation is done with one
precompiled ``str.translate`` table and one regex, in batches (identical results, see
tests/evalkit/test_metrics.py)."""

from __future__ import annotations

import re
import string
from collections import Counter

_PUNCT = str.maketrans("", "", string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_SPACE = re.compile(r"\s+")
_SEP_SPACE = re.compile(r" ?\x00 ?")


def normalize_answer(s: str) -> str:
    """SQuAD v1.1 normalisation (lower, no punctuation, no articles, single spaces)."""
    return " ".join(_ARTICLES.sub(" ", s.lower().translate(_PUNCT)).split())


_ARTICLE_WORDS = frozenset(("a", "an", "the"))
_PUNCT_BYTES = string.punctuation.encode()
_ODD = re.compile(r"[^\w\s\x00]")  # after punctuation removal: anything but word, space, NUL


def normalize_many(texts: list[str]) -> list[str]:
    """``normalize_answer`` of many strings in a few C-level passes over one joined string
    (lowercasing and punctuation removal are per character, and the NUL separator is
    neither a letter nor punctuation nor space, so the results are the same). Repeated
    strings are normalised once."""
    uniq = list(dict.fromkeys(texts))  # answers repeat ("1990", "two"): normalise each once
    if len(uniq) < len(texts):
        done = dict(zip(uniq, _normalize_unique(uniq), strict=True))
        return [done[t] for t in texts]
    return _normalize_unique(texts)


def _normalize_unique(texts: list[str]) -> list[str]:
    if any("\x00" in t for t in texts):
        return [normalize_answer(t) for t in texts]
    joined = "\x00".join(texts).lower()
    if joined.isascii():
        joined = joined.encode().translate(None, _PUNCT_BYTES).decode()
        if _ODD.search(joined) is None:
            # Every non-space character is now a word character, so the article regex
            # \b(a|an|the)\b matches exactly the whitespace-separated tokens a, an, the:
            # drop those tokens, and whitespace collapses in the same split.
            tokens = joined.replace("\x00", " \x00 ").split()
            kept = " ".join(t for t in tokens if t not in _ARTICLE_WORDS)
            return [p.strip() for p in kept.split("\x00")]
    else:
        joined = joined.translate(_PUNCT)
    joined = _ARTICLES.sub(" ", joined)
    # str.split() and re's \s agree on what whitespace is (str.isspace); runs become one
    # space, and none is left next to a separator or at either end
    joined = _SEP_SPACE.sub("\x00", _SPACE.sub(" ", joined)).strip()
    return joined.split("\x00")


def squad_many(predictions: list[str], references: list[list[str]]) -> list[tuple[float, float]]:
    """``squad_scores`` for many items at once (batch normalisation)."""
    flat = [r for refs in references for r in refs]
    norm = normalize_many(list(predictions) + flat)
    n = len(predictions)
    out = []
    append = out.append
    k = n
    for p, refs in zip(norm[:n], references, strict=True):
        m = len(refs)
        if m == 1:
            r = norm[k]
            k += 1
            if r == p:  # the common case: one reference, exact
                append((1.0, 1.0) if p else (1.0, 0.0))
                continue
            append(_squad_normalized(p, [r]))
        else:
            append(_squad_normalized(p, norm[k : k + m]))
            k += m
    return out


def _squad_normalized(p: str, refs: list[str]) -> tuple[float, float]:
    if p in refs:  # exact on one reference: EM 1, and F1 1 (0 for an empty answer, as v1.1)
        return 1.0, (1.0 if p else 0.0)
    p_tokens = p.split()
    if not p_tokens:
        return 0.0, 0.0
    p_set = set(p_tokens)
    unique_p = len(p_set) == len(p_tokens)
    f1 = 0.0
    for r in refs:
        r_tokens = r.split()
        if p_set.isdisjoint(r_tokens):
            continue
        r_set = set(r_tokens)
        if unique_p and len(r_set) == len(r_tokens):
            same = len(p_set & r_set)  # no repeated token: the multiset meet is the set meet
        else:
            same = sum((Counter(p_tokens) & Counter(r_tokens)).values())
        precision, recall = same / len(p_tokens), same / len(r_tokens)
        f1 = max(f1, 2 * precision * recall / (precision + recall))
    return 0.0, f1


def squad_scores(prediction: str, references: list[str]) -> tuple[float, float]:
    """(EM, F1), each the max over the references; the prediction is normalised once."""
    return _squad_normalized(
        normalize_answer(prediction), [normalize_answer(r) for r in references]
    )
