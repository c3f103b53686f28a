"""Where dedup's heavy work runs: the embeddings, the nearest-neighbour candidate search and
the MinHash LSH buckets, in this process (``executor`` None) or on a Ray cluster
(``executor: ray``: an ``EngineSpec.ray``-style placement).

On Ray, Ray Data does the sharding and the retries; this module supplies the per-batch
functions, and the same ones run locally, so both executors compute the same numbers:

- **Embeddings**: texts are embedded in blocks of ``EMBED_BLOCK`` in input order, one block
  per call (locally one after another; on Ray each block is one row for an actor pool whose
  members each hold one encoder). A text's vector then never depends on where it ran.
- **Semantic candidates**: the vectors are cut into shards; each shard gets its own HNSW
  index (usearch) and every vector is searched in it (one Ray task per shard); the pairs
  found are merged. Locally: one index over all. Either way a candidate is only a proposal:
  dedup re-scores every pair exactly from the two vectors on the driver.
- **Near-duplicate candidates**: each record's MinHash signature is cut into the LSH bands
  that datasketch's index would use (the same bands and rows for the threshold); records
  sharing a band key are candidates. On Ray: signatures in ``map_batches``, the band keys
  grouped with a ``groupby`` (a hash shuffle), the pairs of each bucket emitted there.
  Locally: datasketch's own index. dedup confirms each pair on its exact Jaccard.
"""

from __future__ import annotations

from typing import Any

EMBED_BLOCK = 1024  # texts per embedding call: the unit of work on Ray, and locally
MAX_NEIGHBOURS = 4096


def embed_blocks(
    lists: list[list[str]], model: str | None, backend: str, executor: dict | None = None
) -> list[Any]:
    """The unit-length embeddings of each list of texts (float32, one row per text),
    computed block by block (``corekit.embeddings.embed_whole`` on each block)."""
    import numpy as np

    from corekit.embeddings import default_embedding_model, embed_whole

    model = model or default_embedding_model()
    blocks = [
        (n, start) for n, texts in enumerate(lists) for start in range(0, len(texts), EMBED_BLOCK)
    ]
    out: dict[tuple[int, int], Any] = {}
    if executor is None:
        for n, start in blocks:
            chunk = lists[n][start : start + EMBED_BLOCK]
            out[n, start] = embed_whole(chunk, model, backend).astype(np.float32)
    else:
        out = _embed_on_ray(lists, blocks, model, backend, executor)
    return [
        np.concatenate([out[n, s] for m, s in blocks if m == n])
        if texts
        else np.zeros((0, 0), np.float32)
        for n, texts in enumerate(lists)
    ]


class _Encoder:
    """One actor of the embedding pool: one encoder, one block of texts per call."""

    def __init__(self, model: str, backend: str, threads: int) -> None:
        from corekit.embeddings import load_runtime
        from corekit.engines.ray_backend import reserve_threads

        reserve_threads(threads)  # the encoder's threads follow torch's (embeddings._threads)
        load_runtime()
        self.model, self.backend = model, backend

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import numpy as np
        import orjson

        from corekit.embeddings import embed_whole

        vecs = np.empty(len(batch["texts"]), dtype=object)
        vecs[:] = [
            embed_whole(orjson.loads(bytes(b)), self.model, self.backend).astype(np.float32)
            for b in batch["texts"]
        ]
        return {"list": batch["list"], "start": batch["start"], "vecs": vecs}


def _embed_on_ray(
    lists: list[list[str]],
    blocks: list[tuple[int, int]],
    model: str,
    backend: str,
    executor: dict,
) -> dict[tuple[int, int], Any]:
    import orjson

    from corekit.engines.ray_backend import actor_map, connect

    connect(executor.get("address"))
    rows = [
        {"list": n, "start": s, "texts": orjson.dumps(lists[n][s : s + EMBED_BLOCK])}
        for n, s in blocks
    ]
    kwargs = {"model": model, "backend": backend, "threads": max(1, int(executor["num_cpus"]))}
    # one block of texts per call: the same batches as locally
    ds = actor_map(rows, _Encoder, kwargs, executor, 1, len(rows))
    return {(int(r["list"]), int(r["start"])): r["vecs"] for r in ds.iter_rows()}


def neighbour_pairs(
    index: Any, vecs: Any, floor: float, k: int, size: int | None = None
) -> list[tuple[int, int]]:
    """(i, j) for every j among query i's nearest neighbours in ``index`` (of ``size``
    vectors: all of ``vecs`` unless a shard) with cosine >= ``floor``. The search adapts: a
    query whose k-th neighbour is still above the floor may have more, so it is searched
    again with four times k (and a search effort to match), until its list ends below the
    floor; a record with more than 15 close matches loses none."""
    n = len(vecs) if size is None else size
    out: list[tuple[int, int]] = []
    todo = list(range(len(vecs)))
    k = min(k, n)
    while todo and k:
        index.expansion_search = max(64, 2 * k)
        found = index.search(vecs[todo], k)
        # one query row comes back as a single Matches (flat keys), many as BatchMatches
        counts = getattr(found, "counts", None)
        keys_of, dists_of = found.keys, found.distances
        if counts is None:
            counts, keys_of, dists_of = [len(found.keys)], [found.keys], [found.distances]
        again = []
        for row, i in enumerate(todo):
            count = int(counts[row])
            keys, dists = keys_of[row][:count], dists_of[row][:count]
            for j, dist in zip(keys, dists, strict=True):
                if int(j) != i and 1.0 - float(dist) >= floor:
                    out.append((i, int(j)))
            if count == k and k < n and 1.0 - float(dists[-1]) >= floor:
                again.append(i)
        if not again or k >= min(n, MAX_NEIGHBOURS):
            break
        # these rows start over with a longer list (their pairs so far are found again)
        redo = set(again)
        out = [p for p in out if p[0] not in redo]
        todo, k = again, min(n, MAX_NEIGHBOURS, 4 * k)
    return out


def _index(vecs: Any, lo: int = 0, hi: int | None = None) -> Any:
    """An HNSW index of ``vecs[lo:hi]`` keyed by row number, stored in float32: usearch's
    default follows the CPU (BF16 where AVX-512 BF16 exists, cosines off by up to 2.4e-4),
    which would make a pair near the threshold a duplicate on one machine and not on
    another."""
    import numpy as np

    from corekit.embeddings import load_runtime

    # onnxruntime must be loaded before usearch: the other order crashes the process
    # (usearch 2.x + onnxruntime 1.32, segfault in onnxruntime's module init)
    load_runtime()
    from usearch.index import Index

    hi = len(vecs) if hi is None else hi
    index = Index(ndim=vecs.shape[1], metric="cos", dtype="f32")
    index.add(np.arange(lo, hi), vecs[lo:hi])
    return index


def _search_shard(vecs: Any, lo: int, hi: int, floor: float, k: int) -> list[tuple[int, int]]:
    return neighbour_pairs(_index(vecs, lo, hi), vecs, floor, k, size=hi - lo)


def candidate_pairs(
    vecs: Any, floor: float, k: int, executor: dict | None = None
) -> set[tuple[int, int]]:
    """(i, j), i < j, for the pairs the nearest-neighbour search finds at cosine >= floor:
    one index locally; on Ray, one index per shard (one shard per replica: each shard costs
    a search of every vector), every vector searched in each."""
    if executor is None:
        found = neighbour_pairs(_index(vecs), vecs, floor, k)
    else:
        from corekit.engines.ray_backend import connect

        ray = connect(executor.get("address"))
        n = len(vecs)
        shards = max(1, min(n, executor["replicas"]))  # one per replica (docs/scaling.md)
        edges = [n * s // shards for s in range(shards + 1)]
        search = ray.remote(_search_shard).options(num_cpus=executor["num_cpus"])
        shared = ray.put(vecs)
        tasks = [
            search.remote(shared, lo, hi, floor, k)
            for lo, hi in zip(edges[:-1], edges[1:], strict=True)
        ]
        found = [p for part in ray.get(tasks) for p in part]
    return {(min(i, j), max(i, j)) for i, j in found}


def lsh_candidates(
    sets: list[set[str]], num_perm: int, lsh_threshold: float, executor: dict | None = None
) -> set[tuple[int, int]]:
    """(i, j), i < j, for records whose MinHash signatures share an LSH band (datasketch's
    bands and rows for ``lsh_threshold``, false negatives weighted 4:1); empty sets none."""
    from datasketch import MinHashLSH

    lsh = MinHashLSH(threshold=lsh_threshold, num_perm=num_perm, weights=(0.2, 0.8))
    if executor is None:
        hashes = _signatures(sets, num_perm)
        pairs = set()
        for i, (sh, mh) in enumerate(zip(sets, hashes, strict=True)):
            if sh:
                pairs.update((j, i) for j in lsh.query(mh))
                lsh.insert(i, mh)
        return pairs
    return _lsh_on_ray(sets, num_perm, lsh.b, lsh.r, executor)


def _signatures(sets: list[set[str]], num_perm: int) -> list[Any]:
    from datasketch import MinHash

    return MinHash.bulk(([s.encode() for s in sh] for sh in sets), num_perm=num_perm, seed=1)


def _band_keys(batch: dict[str, Any], num_perm: int, bands: int, rows: int) -> dict[str, Any]:
    """Each record's LSH band keys: (band, its rows of the signature), one output row each."""
    import numpy as np
    import orjson

    sets = [set(orjson.loads(bytes(b))) for b in batch["shingles"]]
    keys, ids = [], []
    for i, sh, mh in zip(batch["i"], sets, _signatures(sets, num_perm), strict=True):
        if not sh:
            continue
        for b in range(bands):
            keys.append(f"{b}:{mh.hashvalues[b * rows : (b + 1) * rows].tobytes().hex()}")
            ids.append(int(i))
    return {"key": np.array(keys, dtype=object), "i": np.array(ids, dtype=np.int64)}


def _bucket_pairs(group: dict[str, Any]) -> dict[str, Any]:
    """Every pair of records in one band bucket."""
    import numpy as np

    ids = sorted(set(int(i) for i in group["i"]))
    a = [x for n, x in enumerate(ids) for _ in ids[n + 1 :]]
    b = [y for n, _ in enumerate(ids) for y in ids[n + 1 :]]
    return {"a": np.array(a, dtype=np.int64), "b": np.array(b, dtype=np.int64)}


def _lsh_on_ray(
    sets: list[set[str]], num_perm: int, bands: int, rows: int, executor: dict
) -> set[tuple[int, int]]:
    import orjson

    from corekit.engines.ray_backend import connect

    connect(executor.get("address"))
    import ray.data
    from ray.data.context import DataContext, ShuffleStrategy

    # The sort-based shuffle runs as plain tasks; the hash shuffle's aggregator actors
    # reserve CPUs of their own, and on a small cluster wait for the map tasks' forever.
    DataContext.get_current().shuffle_strategy = ShuffleStrategy.SORT_SHUFFLE_PULL_BASED
    items = [{"i": i, "shingles": orjson.dumps(sorted(sh))} for i, sh in enumerate(sets)]
    blocks = max(1, min(len(items), executor["replicas"] * 4))
    ds = (
        ray.data.from_items(items, override_num_blocks=blocks)
        .map_batches(
            _band_keys,
            fn_kwargs={"num_perm": num_perm, "bands": bands, "rows": rows},
            batch_size=EMBED_BLOCK,
            num_cpus=executor["num_cpus"],
            batch_format="numpy",
        )
        .groupby("key")
        .map_groups(_bucket_pairs, batch_format="numpy")
    )
    return {(int(r["a"]), int(r["b"])) for r in ds.iter_rows()}
