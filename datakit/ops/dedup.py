"""Deduplication: exact (normalised text hash), near-duplicate (MinHash LSH) and semantic
(sentence embeddings in an HNSW index) clusters; semantic is the default, the one that meets
recall and precision >= 0.95 on the planted benchmark set (bench/dedup.py).

The text of a record is chosen by ``fields``: ``instruction`` (what was asked), ``prompt_response``
(asked and answered) or ``all`` (every content field). Near duplicates: character 5-gram
shingles of the normalised text, 128-permutation MinHash, and an LSH index (datasketch) whose bands and
rows come from the Jaccard threshold (0.8 by default), so candidates are found without an
all-pairs step (the index is tuned for recall); each candidate pair is then confirmed on the exact Jaccard similarity of the
two shingle sets. Duplicate pairs form clusters (union-find); each cluster keeps exactly one
record by the ``keep`` rule (``first``, ``longest`` or ``best_score``, the judge's quality in
``meta.judge``), never none. Further inputs are reference sets ("against"): a record that
duplicates any of their records is dropped (generated data against an eval set).

Every dropped record is a reject with the id it duplicates, its cluster, the method and the
similarity; ``dedup_report.jsonl`` in the version lists the same, one row per dropped record.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from ..records import exchange
from .context import OpContext

_PUNCT = re.compile(r"[^\w\s]", re.UNICODE)
NEAR_THRESHOLD = 0.8  # shingle Jaccard
# Embedding cosine (MiniLM), calibrated on bench/dedup.py's planted set (80 duplicates, 400
# records). 0.80 is the value that meets recall and precision >= 0.95 on both embedding
# backends: int8 ONNX (the default) recall 0.963 / precision 0.975, fp32 torch 0.963 / 0.975;
# at 0.82 int8 recall falls to 0.938, at 0.78 precision to 0.92 (0.87 on fp32).
SEMANTIC_THRESHOLD = 0.80


def normalise(text: str) -> str:
    """Lowercase, drop punctuation, collapse whitespace."""
    return " ".join(_PUNCT.sub(" ", text.lower()).split())


def record_text(rec: dict[str, Any], fields: str) -> str:
    if fields == "instruction":
        return exchange(rec)[0] if ("instruction" in rec or "messages" in rec) else _all(rec)
    if fields == "prompt_response":
        if "instruction" in rec or "messages" in rec:
            return "\n".join(exchange(rec))
        return _all(rec)
    return _all(rec)


def _all(rec: dict[str, Any]) -> str:
    parts: list[str] = []

    def walk(v: Any) -> None:
        if isinstance(v, str):
            parts.append(v)
        elif isinstance(v, list):
            for x in v:
                walk(x)
        elif isinstance(v, dict):
            walk(v.get("content") if "content" in v else list(v.values()))

    for k, v in rec.items():
        if k not in ("id", "meta"):
            walk(v)
    return "\n".join(parts)


def shingles(text: str, size: int) -> set[str]:
    """Character ``size``-grams of the normalised text (robust to a changed word in the short
    texts instructions are, where word n-grams lose most of their overlap)."""
    t = normalise(text)
    if len(t) <= size:
        return {t} if t else set()
    return {t[i : i + size] for i in range(len(t) - size + 1)}


class Clusters:
    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def semantic_pairs(
    texts: list[str], threshold: float, model: str | None = None, neighbours: int = 16
) -> list[tuple[int, int, float]]:
    """Pairs whose embeddings' cosine similarity is at least ``threshold``: each text's
    nearest neighbours come from an HNSW index (usearch), not from an all-pairs product."""
    import numpy as np

    from ..embeddings import embed, load_runtime

    if len(texts) < 2:
        return []
    # onnxruntime must be loaded before usearch: the other order crashes the process
    # (usearch 2.x + onnxruntime 1.32, segfault in onnxruntime's module init)
    load_runtime()
    from usearch.index import Index

    vecs = embed(texts, model).astype(np.float32)
    # float32 storage: usearch's default follows the CPU (BF16 where AVX-512 BF16 exists,
    # cosines off by up to 2.4e-4), which would make a pair near the threshold a duplicate
    # on one machine and not on another. In float32 the distances differ between machines
    # only by the rounding of a 384-term sum taken in another order.
    index = Index(ndim=vecs.shape[1], metric="cos", dtype="f32")
    index.add(np.arange(len(texts)), vecs)
    found = index.search(vecs, min(neighbours, len(texts)))
    pairs = set()
    for i in range(len(texts)):
        for j, dist in zip(found.keys[i], found.distances[i], strict=True):
            j = int(j)
            sim = 1.0 - float(dist)
            if j != i and sim >= threshold:
                pairs.add((min(i, j), max(i, j), round(sim, 4)))
    best: dict[tuple[int, int], float] = {}
    for i, j, sim in pairs:
        best[(i, j)] = max(sim, best.get((i, j), 0.0))
    return sorted((i, j, s) for (i, j), s in best.items())


def duplicate_pairs(
    texts: list[str],
    method: str = "near",
    threshold: float = 0.8,
    shingle_size: int = 5,
    num_perm: int = 128,
    embedding_model: str | None = None,
) -> list[tuple[int, int, float]]:
    """(i, j, similarity) for every pair of duplicates found, i < j. ``threshold`` is the
    shingle Jaccard for near, the embedding cosine for semantic."""
    if method == "semantic":
        return semantic_pairs(texts, threshold, embedding_model)
    if method == "exact":
        first: dict[str, int] = {}
        pairs = []
        for i, t in enumerate(texts):
            h = hashlib.sha256(normalise(t).encode()).hexdigest()
            if h in first:
                pairs.append((first[h], i, 1.0))
            else:
                first[h] = i
        return pairs
    from datasketch import MinHash, MinHashLSH

    sets = [shingles(t, shingle_size) for t in texts]
    hashes = MinHash.bulk(([s.encode() for s in sh] for sh in sets), num_perm=num_perm, seed=1)
    # Candidates are confirmed on the exact Jaccard below, so a false positive only costs a
    # set comparison while a false negative is a missed duplicate: the index is tuned for
    # recall (a lower threshold, false negatives weighted 4:1).
    lsh = MinHashLSH(threshold=max(0.05, threshold - 0.1), num_perm=num_perm, weights=(0.2, 0.8))
    pairs = []
    for i, (sh, mh) in enumerate(zip(sets, hashes, strict=True)):
        if not sh:
            continue
        for j in lsh.query(mh):
            other = sets[j]
            sim = len(sh & other) / len(sh | other)
            if sim >= threshold:
                pairs.append((j, i, round(sim, 4)))
        lsh.insert(i, mh)
    return pairs


def _score(rec: dict[str, Any]) -> float:
    judge = (rec.get("meta") or {}).get("judge") or {}
    q = judge.get("quality")
    return float(q) if isinstance(q, (int, float)) else float("-inf")


def run(
    inputs: list[list[dict[str, Any]]],
    ctx: OpContext,
    method: str = "semantic",
    fields: str = "prompt_response",
    keep: str = "first",
    threshold: float | None = None,
    shingle_size: int = 5,
    num_perm: int = 128,
    embedding_model: str | None = None,
) -> list[dict[str, Any]]:
    records, references = inputs[0], [r for refs in inputs[1:] for r in refs]
    everything = records + references
    texts = [record_text(r, fields) for r in everything]
    if threshold is None:
        threshold = SEMANTIC_THRESHOLD if method == "semantic" else NEAR_THRESHOLD
    pairs = duplicate_pairs(texts, method, threshold, shingle_size, num_perm, embedding_model)
    if method == "semantic":
        from ..embeddings import backend_for

        ctx.stats["embedding_backend"] = backend_for(embedding_model)
    n = len(records)
    clusters = Clusters(len(everything))
    best_sim: dict[int, tuple[int, float]] = {}
    for i, j, sim in pairs:
        clusters.union(i, j)
        for a, b in ((i, j), (j, i)):
            if a < n and sim >= best_sim.get(a, (-1, -1.0))[1]:
                best_sim[a] = (b, sim)
    members: dict[int, list[int]] = {}
    for i in range(len(everything)):
        members.setdefault(clusters.find(i), []).append(i)
    drop: dict[int, tuple[int, str]] = {}  # index -> (kept index, reason)
    for idx in members.values():
        if len(idx) < 2:
            continue
        refs = [i for i in idx if i >= n]
        own = [i for i in idx if i < n]
        if refs:  # duplicates another dataset: none of ours stays
            for i in own:
                drop[i] = (refs[0], "duplicates_reference")
            continue
        if keep == "longest":
            kept = max(own, key=lambda i: (len(texts[i]), -i))
        elif keep == "best_score":
            kept = max(own, key=lambda i: (_score(records[i]), -i))
        else:
            kept = min(own)
        for i in own:
            if i != kept:
                drop[i] = (kept, "duplicate")
    out, report = [], []
    for i, rec in enumerate(records):
        if i not in drop:
            out.append(rec)
            continue
        kept, reason = drop[i]
        kept_id = everything[kept].get("id")
        sim = best_sim.get(i, (kept, 1.0))[1]
        row = {
            "dropped": rec.get("id"),
            "kept": kept_id,
            "cluster": everything[clusters.find(i)].get("id"),
            "method": method,
            "similarity": sim,
        }
        report.append(row)
        ctx.reject(rec, reason, **{k: v for k, v in row.items() if k != "dropped"})
    ctx.files["dedup_report.jsonl"] = report
    return out


def explain(version: Any, record_id: str) -> list[dict[str, Any]]:
    """The duplicate cluster of ``record_id`` in a dedup output version: every row of its
    dedup_report.jsonl whose dropped, kept or cluster id is that record's cluster."""
    import orjson

    from ..errors import DatakitError

    path = version.path / "dedup_report.jsonl"
    if not path.is_file():
        raise DatakitError(f"{version.ref} was not made by dedup (no dedup_report.jsonl)")
    rows = [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]
    clusters = {r["cluster"] for r in rows if record_id in (r["dropped"], r["kept"], r["cluster"])}
    return [r for r in rows if r["cluster"] in clusters]
