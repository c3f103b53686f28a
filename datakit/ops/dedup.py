"""Deduplication: exact (normalised text hash), near-duplicate (MinHash LSH) and semantic
(sentence embeddings in an HNSW index) clusters; semantic is the default, the one that meets
recall and precision >= 0.95 on the planted benchmark set (bench/dedup.py).

The text of a record is chosen by ``fields``: ``instruction`` (what was asked), ``prompt_response``
(asked and answered) or ``all`` (every content field). Near duplicates: character 5-gram
shingles of the normalised text, 128-permutation MinHash, and an LSH index (datasketch) whose bands and
rows come from the Jaccard threshold (0.8 by default), so candidates are found without an
all-pairs step (the index is tuned for recall); each candidate pair is then confirmed on the exact Jaccard similarity of the
two shingle sets. Semantic candidates from the index are re-scored exactly (float32 cosine of
the two vectors, an index stored in float32 on every machine). A record longer than the
encoder's window is embedded in windows (corekit.embeddings.embed_whole); with ``fields:
prompt_response`` two records are duplicates only when their prompts and their responses
both are (the lower cosine counts), so a long shared prompt does not hide different answers.

Keep-one (the default, ``cluster: greedy``): records take their place in the ``keep`` order
(``first``; ``longest`` = ``longest:response``, or ``longest:instruction`` / ``longest:text``;
``best_score``, the judge's quality in ``meta.judge``); a record is dropped only for a kept
record (or a reference) it is itself similar to, so no chain of small edits drops a record
for one it does not resemble. ``cluster: connected`` keeps the old transitive clusters
(union-find, one record per component), labelled as such in the report. Further inputs are
reference sets ("against"): a record is dropped when it is itself similar to a reference.
``within: false`` drops only those: records alike among themselves all stay (two sampled
answers to one prompt, say), so a set is checked against an eval suite and nothing else.

Every dropped record is a reject with the id it was dropped for, the method, the clustering
and that pair's own similarity; ``dedup_report.jsonl`` in the version lists the same, one
row per dropped record.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from corekit.errors import ToolkitError

from ..records import exchange
from .context import OpContext

_PUNCT = re.compile(r"[^\w\s]", re.UNICODE)
NEAR_THRESHOLD = 0.8  # shingle Jaccard
# Embedding cosine (MiniLM), calibrated on bench/dedup.py's planted set (80 duplicates, 400
# records). 0.80 is the value that meets recall and precision >= 0.95 on both embedding
# backends: int8 ONNX (the default) recall 0.963 / precision 0.975, fp32 torch 0.963 / 0.975;
# at 0.82 int8 recall falls to 0.938, at 0.78 precision to 0.92 (0.87 on fp32).
SEMANTIC_THRESHOLD = 0.80


def default_threshold(method: str, backend: str | None = None, model: str | None = None) -> float:
    """The similarity a pair needs by default: Jaccard for near, the cosine calibrated for
    the embedding backend for semantic (static embeddings score unrelated texts higher)."""
    if method != "semantic":
        return NEAR_THRESHOLD
    from corekit.embeddings import STATIC_THRESHOLD, backend_for

    return STATIC_THRESHOLD if backend_for(model, backend) == "static" else SEMANTIC_THRESHOLD


def normalize(text: str) -> str:
    """Lowercase, drop punctuation, collapse whitespace."""
    return " ".join(_PUNCT.sub(" ", text.lower()).split())


def record_text(rec: dict[str, Any], fields: str) -> str:
    if fields == "instruction":
        return exchange(rec)[0] if _has_exchange(rec) else _all(rec)
    if fields == "prompt_response":
        if _has_exchange(rec):
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
    t = normalize(text)
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
    texts: list[str],
    threshold: float,
    model: str | None = None,
    neighbours: int = 16,
    vecs: Any = None,
    parts: tuple[list[str], list[str]] | None = None,
    backend: str | None = None,
    executor: dict[str, Any] | None = None,
) -> list[tuple[int, int, float]]:
    """Pairs whose embeddings' cosine similarity is at least ``threshold``: each text's
    nearest neighbours come from an HNSW index (usearch), not from an all-pairs product.
    ``vecs``: the texts' embeddings when the caller has them already. ``parts``: each
    text's prompt and response; a pair's score is then the lower of its prompts' and its
    responses' cosines (both must match: a shared prompt with other answers is no
    duplicate), the whole text's only where a response is missing. ``backend``: the
    embedding backend (None: the default). ``executor``: a Ray placement to embed and
    search on a cluster (dedup_search), the same pairs as locally."""
    import numpy as np

    from corekit.embeddings import backend_for

    from .dedup_search import candidate_pairs, embed_blocks

    if len(texts) < 2:
        return []
    backend = backend_for(model, backend)
    lists = [] if vecs is not None else [texts]
    if parts:
        lists += [parts[0], [r or "-" for r in parts[1]]]
    embedded = embed_blocks(lists, model, backend, executor)
    vecs = (embedded.pop(0) if vecs is None else vecs).astype(np.float32)
    # The index proposes candidates; each pair's score is its own cosine, recomputed in
    # float32 from the two vectors (the same number whichever way the pair was found).
    # A small margin below the threshold keeps a pair the index's distance rounds away.
    margin = PART_MARGIN if parts else 1e-3
    candidates = candidate_pairs(vecs, threshold - margin, neighbours, executor)
    if parts:
        prompts, responses = parts
        p_vecs, r_vecs = embedded
    out = []
    for i, j in sorted(candidates):
        if parts and responses[i] and responses[j]:
            sim = min(float(np.dot(p_vecs[i], p_vecs[j])), float(np.dot(r_vecs[i], r_vecs[j])))
        else:
            sim = float(np.dot(vecs[i], vecs[j]))
        if sim >= threshold:
            out.append((i, j, round(sim, 4)))
    return out


# Candidates for a prompt/response comparison come from the whole texts' index with this
# much slack below the threshold: a pair whose prompts and responses both pass can sit a
# little lower on the whole text.
PART_MARGIN = 0.05


def exchange_parts(records: list[dict[str, Any]], texts: list[str]) -> tuple[list[str], list[str]]:
    """(prompt, response) of each record; a record without an exchange (an eval item, a
    plain text) is all prompt, no response."""
    prompts, responses = [], []
    for rec, text in zip(records, texts, strict=True):
        if _has_exchange(rec):
            p, r = exchange(rec)
            prompts.append(p)
            responses.append(r)
        else:
            prompts.append(text)
            responses.append("")
    return prompts, responses


def duplicate_pairs(
    texts: list[str],
    method: str = "near",
    threshold: float = 0.8,
    shingle_size: int = 5,
    num_perm: int = 128,
    embedding_model: str | None = None,
    parts: tuple[list[str], list[str]] | None = None,
    embedding_backend: str | None = None,
    executor: dict[str, Any] | None = None,
) -> list[tuple[int, int, float]]:
    """(i, j, similarity) for every pair of duplicates found, i < j. ``threshold`` is the
    shingle Jaccard for near, the embedding cosine for semantic (``parts``: see
    :func:`semantic_pairs`). ``executor``: a Ray placement for the embeddings, the
    signatures and the candidate search (exact: always here, a hash per record)."""
    if method == "semantic":
        return semantic_pairs(
            texts, threshold, embedding_model, parts=parts, backend=embedding_backend,
            executor=executor,
        )  # fmt: skip
    if method == "exact":
        from ..records import FirstCopies

        copies = FirstCopies()
        pairs = []
        for i, t in enumerate(texts):
            first = copies.copy_of(hashlib.sha256(normalize(t).encode()).hexdigest(), i)
            if first is not None:
                pairs.append((first, i, 1.0))
        return pairs
    from .dedup_search import lsh_candidates

    sets = [shingles(t, shingle_size) for t in texts]
    # Candidates are confirmed on the exact Jaccard below, so a false positive only costs a
    # set comparison while a false negative is a missed duplicate: the index is tuned for
    # recall (a lower threshold, false negatives weighted 4:1).
    candidates = lsh_candidates(sets, num_perm, max(0.05, threshold - 0.1), executor)
    pairs = []
    for i, j in sorted(candidates):
        sim = len(sets[i] & sets[j]) / len(sets[i] | sets[j])
        if sim >= threshold:
            pairs.append((i, j, round(sim, 4)))
    return pairs


def _score(rec: dict[str, Any]) -> float:
    judge = (rec.get("meta") or {}).get("judge") or {}
    q = judge.get("quality")
    return float(q) if isinstance(q, (int, float)) else float("-inf")


KEEP_FIELDS = ("response", "instruction", "text")


def keep_order(records: list[dict[str, Any]], texts: list[str], keep: str) -> list[int]:
    """The order in which records claim their place: ``first`` (input order), ``longest``
    / ``longest:FIELD`` (the longest FIELD first: ``response`` by default, ``instruction``,
    or ``text``, the text compared), ``best_score`` (the judge's quality first)."""
    rule, _, field = keep.partition(":")
    n = len(records)
    if rule == "first":
        return list(range(n))
    if rule == "best_score":
        return sorted(range(n), key=lambda i: (-_score(records[i]), i))
    if rule == "longest":
        field = field or "response"
        if field not in KEEP_FIELDS:
            raise ToolkitError(
                f"dedup keep: {keep!r}: longest measures one of {', '.join(KEEP_FIELDS)}"
            )

        def size(i: int) -> int:
            if field == "text":
                return len(texts[i])
            prompt, response = exchange(records[i]) if _has_exchange(records[i]) else (texts[i], "")
            return len(response if field == "response" else prompt)

        return sorted(range(n), key=lambda i: (-size(i), i))
    raise ToolkitError(f"dedup keep: {keep!r} is not first, longest[:FIELD] or best_score")


def _has_exchange(rec: dict[str, Any]) -> bool:
    return "instruction" in rec or "messages" in rec


def keep_one(
    n: int,
    n_refs: int,
    pairs: list[tuple[int, int, float]],
    order: list[int],
    cluster: str = "greedy",
) -> dict[int, tuple[int, float, bool]]:
    """Which records to drop, each with the record it is dropped for, that pair's own
    similarity and whether the two are a direct pair. Indexes ``n .. n + n_refs - 1`` are references, kept from the start.

    ``greedy`` (the default): records take their place in ``order``; a record is dropped
    only for a kept record or a reference that it is itself similar to (a pair at or above
    the threshold), the most similar one; otherwise it is kept. No chains: twelve records
    each one word from the next keep every record that is not close to a kept one.
    ``connected``: the duplicate pairs' connected components (transitive), one record kept
    per component (the first in ``order``; a component with a reference keeps none of the
    records), each dropped record reported with its most similar kept record or reference
    in the component when it has a direct pair with one, else with the kept record and the
    similarity of its best direct match (labelled transitive)."""
    neighbours: dict[int, dict[int, float]] = {}
    for i, j, sim in pairs:
        neighbours.setdefault(i, {})[j] = sim
        neighbours.setdefault(j, {})[i] = sim
    kept = set(range(n, n + n_refs))
    drop: dict[int, tuple[int, float, bool]] = {}
    if cluster == "greedy":
        for i in order:
            near = [(sim, -k, k) for k, sim in neighbours.get(i, {}).items() if k in kept]
            if near:
                sim, _, k = max(near)
                drop[i] = (k, sim, True)
            else:
                kept.add(i)
        return drop
    clusters = Clusters(n + n_refs)
    for i, j, _ in pairs:
        clusters.union(i, j)
    rank = {i: r for r, i in enumerate(order)}
    members: dict[int, list[int]] = {}
    for i in range(n + n_refs):
        members.setdefault(clusters.find(i), []).append(i)
    for idx in members.values():
        if len(idx) < 2:
            continue
        refs = [i for i in idx if i >= n]
        own = sorted((i for i in idx if i < n), key=rank.__getitem__)
        keepers = refs or own[:1]
        for i in own:
            if i in keepers:
                continue
            direct = [(neighbours[i][k], k) for k in keepers if k in neighbours.get(i, {})]
            if direct:
                sim, k = max(direct)
                drop[i] = (k, sim, True)
            else:
                drop[i] = (keepers[0], max(neighbours[i].values()), False)
    return drop


def keep_one_exact(
    n: int, n_refs: int, pairs: list[tuple[int, int, float]], order: list[int], within: bool
) -> dict[int, tuple[int, float, bool]]:
    """:func:`keep_one` for exact copies. Their pairs link each copy to the first one only
    (a group of k copies is k - 1 pairs, not k(k - 1)/2), so the greedy rule would keep a
    copy whose first copy was dropped; copies are all alike, so each group is one
    ``connected`` component: it keeps one record, the first in ``order``, or none when a
    reference is among them (``within`` false: a group without a reference keeps every
    record). Every drop is a direct copy of its keeper."""
    drop = keep_one(n, n_refs, pairs, order, "connected")
    return {i: (k, 1.0, True) for i, (k, _, _) in drop.items() if within or k >= n}


# The one rule of ``within: false`` (also checked by ``datakit config check``).
WITHIN_NEEDS_REFERENCES = (
    "false drops only records similar to a reference: list the reference sets as inputs "
    "after the first"
)


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
    cluster: str = "greedy",
    embedding_backend: str = "auto",
    within: bool = True,
) -> list[dict[str, Any]]:
    records, references = inputs[0], [r for refs in inputs[1:] for r in refs]
    if not within and not references:
        raise ToolkitError(f"{ctx.step}: within: {WITHIN_NEEDS_REFERENCES}")
    everything = records + references
    texts = [record_text(r, fields) for r in everything]
    if threshold is None:
        threshold = default_threshold(method, embedding_backend, embedding_model)
    parts = exchange_parts(everything, texts) if fields == "prompt_response" else None
    pairs = duplicate_pairs(
        texts,
        method,
        threshold,
        shingle_size,
        num_perm,
        embedding_model,
        parts=parts,
        embedding_backend=embedding_backend,
        executor=ctx.executor,
    )
    if method == "semantic":
        from corekit.embeddings import backend_for

        ctx.stats["embedding_backend"] = backend_for(embedding_model, embedding_backend)
        ctx.stats["threshold"] = threshold
    n = len(records)
    order = keep_order(records, texts[:n], keep)
    if method == "exact":
        drop = keep_one_exact(n, len(references), pairs, order, within)
    else:
        if not within:  # only a record's likeness to a reference counts
            pairs = [(i, j, sim) for i, j, sim in pairs if (i < n) != (j < n)]
        drop = keep_one(n, len(references), pairs, order, cluster)
    out, report = [], []
    for i, rec in enumerate(records):
        if i not in drop:
            out.append(rec)
            continue
        kept, sim, direct = drop[i]
        reason = "duplicates_reference" if kept >= n else "duplicate"
        row = {
            "dropped": rec.get("id"),
            "kept": everything[kept].get("id"),
            "cluster": everything[kept].get("id"),
            "method": method,
            "clustering": cluster,
            "similarity": sim,
        }
        if not direct:  # connected components: dropped through a chain, not a direct match
            row["transitive"] = True
        report.append(row)
        ctx.reject(rec, reason, **{k: v for k, v in row.items() if k != "dropped"})
    ctx.files["dedup_report.jsonl"] = report
    return out


def explain(version: Any, record_id: str) -> list[dict[str, Any]]:
    """The duplicate cluster of ``record_id`` in a dedup output version: every row of its
    dedup_report.jsonl whose dropped, kept or cluster id is that record's cluster."""
    import orjson

    from corekit.errors import ToolkitError

    path = version.path / "dedup_report.jsonl"
    if not path.is_file():
        raise ToolkitError(f"{version.ref} was not made by dedup (no dedup_report.jsonl)")
    rows = [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]
    clusters = {r["cluster"] for r in rows if record_id in (r["dropped"], r["kept"], r["cluster"])}
    return [r for r in rows if r["cluster"] in clusters]
