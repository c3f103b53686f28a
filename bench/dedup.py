"""Dedup quality and scaling.

Quality: a benchmark set written here. Instructions from topic x task templates, each task
with several phrasings; planted duplicates of three kinds: exact copies (case, spacing and
punctuation changed), light edits (a word changed, dropped or added, a typo) and paraphrases
(the same task in another phrasing); hard negatives are the other tasks on the same topic
(same words, different request). `recall` is the share of planted duplicates dropped and
`precision` the share of drops that were planted duplicates, for the default settings
(semantic: MiniLM embeddings, cosine 0.80), per kind of duplicate too, and for near
(character 5-gram MinHash, Jaccard 0.8), which template-like instructions fool.

Scaling: the same op on n and 4n random instructions (5% planted light edits), semantic and
near; `time_ratio_4x_records` = time(4n) / time(n) (an all-pairs step would give ~16).

Backends: the planted set's precision/recall and the records per second of semantic dedup
for each embedding backend (int8 ONNX, fp32 torch, static embeddings distilled here).

Peers (the optional `bench` extra, bench/_peers.py): datatrove's MinHash pipeline against
`--method near` and semhash with the same MiniLM against `--method semantic`, on the planted
set (precision, recall, wall time) and on scale records (wall time).

Recall at scale: on 20,000 and 100,000 such records (`--quick`: 5,000), the share of the
pairs above the semantic threshold by exact all-pairs search that the HNSW candidate step
proposes (goal >= 0.99; its neighbour list widens for records whose list is full).

Run: python bench/dedup.py [--quick]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TOPICS = (
    "tides volcanoes sourdough chess photosynthesis bicycles glaciers vaccines compilers "
    "coral-reefs jazz rainbows bees solar-panels the-roman-empire earthquakes recycling "
    "black-holes coffee the-printing-press tea kites lighthouses owls wind-turbines bread "
    "submarines the-internet honey auroras spiders tornadoes origami trains deserts "
    "penguins fungi bridges clocks comets"
).split()
TASKS = [  # each task in several phrasings: phrasings of one task are paraphrases
    [
        "Explain how {t} work to a ten year old.",
        "Describe, for a ten-year-old child, how {t} work.",
    ],
    ["Write a short poem about {t}.", "Compose a brief poem on the subject of {t}."],
    [
        "List three surprising facts about {t}.",
        "Give me three facts about {t} that most people do not know.",
    ],
    [
        "Summarise the history of {t} in one paragraph.",
        "In a single paragraph, give a summary of the history of {t}.",
    ],
    [
        "What are the main risks associated with {t}?",
        "Which dangers are most commonly linked to {t}?",
    ],
    ["Write a product description for a book about {t}.", "Draft the blurb for a new book on {t}."],
    [
        "Compare {t} with something from everyday life.",
        "Make an everyday comparison that explains {t}.",
    ],
    [
        "Suggest a science-fair project involving {t}.",
        "Propose a school science project about {t}.",
    ],
]


def _edit(text: str, rng: random.Random) -> str:
    words = text.split()
    k = rng.randrange(len(words))
    op = rng.randrange(4)
    if op == 0:
        words[k] = words[k] + "s"  # a changed word
    elif op == 1 and len(words) > 4:
        del words[k]  # a dropped word
    elif op == 2:
        words.insert(k, rng.choice(["really", "please", "just", "very"]))  # an added word
    else:
        w = words[k]
        if len(w) > 3:
            i = rng.randrange(len(w) - 1)
            words[k] = w[:i] + w[i + 1] + w[i] + w[i + 2 :]  # a typo (swapped letters)
    return " ".join(words)


def quality_set(seed: int = 0) -> tuple[list[dict], dict[int, tuple[int, str]]]:
    """Records and the planted duplicates: index -> (index of its original, kind)."""
    rng = random.Random(seed)
    texts = []
    for t in TOPICS:
        for task in TASKS:
            texts.append(task[0].format(t=t.replace("-", " ")))
    planted: dict[int, tuple[int, str]] = {}
    originals = rng.sample(range(len(texts)), len(texts) // 4)
    for n, i in enumerate(originals):
        kind = ("exact", "light_edit", "paraphrase")[n % 3]
        if kind == "exact":
            dup = "  " + texts[i].upper().replace(".", " !") + " "
        elif kind == "light_edit":
            dup = _edit(texts[i], rng)
        else:
            t_i, k_i = divmod(i, len(TASKS))
            dup = TASKS[k_i][1].format(t=TOPICS[t_i].replace("-", " "))
        planted[len(texts)] = (i, kind)
        texts.append(dup)
    return [{"instruction": x, "input": "", "output": ""} for x in texts], planted


def score(records: list[dict], planted: dict[int, tuple[int, str]], params: dict) -> dict:
    from datakit.ops import OpContext
    from datakit.ops.dedup import run

    recs = [{**r, "id": str(i)} for i, r in enumerate(records)]
    ctx = OpContext()
    t = time.perf_counter()
    run([recs], ctx, **params)
    seconds = time.perf_counter() - t
    dropped = {int(r["record"]["id"]) for r in ctx.rejects}
    return {**precision_recall(dropped, planted), "seconds": seconds}


def precision_recall(dropped: set[int], planted: dict[int, tuple[int, str]]) -> dict:
    # A planted pair counts as found when one of its two records is dropped.
    found = {d for d, (o, _) in planted.items() if d in dropped or o in dropped}
    planted_members = set(planted) | {o for o, _ in planted.values()}
    correct = len(dropped & planted_members)
    by_kind = {}
    for kind in ("exact", "light_edit", "paraphrase"):
        mine = [d for d, (_, k) in planted.items() if k == kind]
        by_kind[kind] = round(sum(d in found for d in mine) / len(mine), 3)
    return {
        "recall": round(len(found) / len(planted), 3),
        "precision": round(correct / len(dropped), 3) if dropped else 1.0,
        "by_kind": by_kind,
        "dropped": len(dropped),
    }


def scale_records(n: int, seed: int = 0) -> list[dict]:
    from bench.novelty import instruction

    rng = random.Random(seed)
    texts = [instruction(rng) + f" {i}" for i in range(n)]
    texts += [_edit(texts[i], rng) for i in rng.sample(range(n), n // 20)]
    return [
        {"instruction": t, "input": "", "output": "", "id": str(i)} for i, t in enumerate(texts)
    ]


def timed(records: list[dict], method: str) -> float:
    from datakit.ops import OpContext
    from datakit.ops.dedup import run

    t = time.perf_counter()
    run([records], OpContext(), fields="instruction", method=method)
    return time.perf_counter() - t


def ann_recall(n: int) -> tuple[float, int, float]:
    """(recall, exact pairs, seconds of the candidate step): the share of the pairs at or
    above the threshold by exact all-pairs search (chunked matrix products) that the HNSW
    candidate step (datakit's own neighbour_pairs, with its adaptive widening) proposes."""
    import numpy as np

    from corekit.embeddings import embed_whole, load_runtime
    from datakit.ops.dedup import SEMANTIC_THRESHOLD
    from datakit.ops.dedup_search import neighbour_pairs

    load_runtime()  # onnxruntime before usearch: the other order crashes the process
    from usearch.index import Index

    texts = [r["instruction"] for r in scale_records(n, seed=7)]
    vecs = embed_whole(texts).astype(np.float32)
    exact = set()
    for start in range(0, len(vecs), 2048):
        block = vecs[start : start + 2048] @ vecs.T
        rows, cols = np.nonzero(block >= SEMANTIC_THRESHOLD)
        for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
            i = start + r
            if i < c:
                exact.add((i, c))
    t = time.perf_counter()
    index = Index(ndim=vecs.shape[1], metric="cos", dtype="f32")
    index.add(np.arange(len(vecs)), vecs)
    found = {
        (min(i, j), max(i, j))
        for i, j in neighbour_pairs(index, vecs, SEMANTIC_THRESHOLD - 1e-3, 16)
    }
    seconds = time.perf_counter() - t
    return (len(found & exact) / len(exact) if exact else 1.0), len(exact), seconds


def backends() -> list[str]:
    from corekit.embeddings import _fast_path_installed

    return (["onnx-int8"] if _fast_path_installed() else []) + ["torch", "static"]


def peers(records: list[dict], planted: dict, default: dict, near: dict) -> None:
    """datatrove against near, semhash (same MiniLM, same threshold) against semantic."""
    from bench import _peers
    from datakit.ops.dedup import SEMANTIC_THRESHOLD

    texts = [r["instruction"] for r in records]
    for name, ours, run in (
        ("datatrove_minhash", near, lambda: _peers.datatrove_minhash(texts)),
        ("semhash_minilm", default, lambda: _peers.semhash_minilm(texts, SEMANTIC_THRESHOLD)),
    ):
        if run() is None:  # also the warm-up
            print(f"{name}: not installed (pip install -e .[bench])")
            continue
        dropped, seconds = run()
        theirs = precision_recall(dropped, planted)
        print(f"{name}_recall: {theirs['recall']} vs ours {ours['recall']} (goal: ours >= theirs)")
        print(f"{name}_precision: {theirs['precision']} vs ours {ours['precision']} "
              "(goal: ours >= theirs)")  # fmt: skip
        print(f"{name}_seconds: {seconds:.2f} vs ours {ours['seconds']:.2f}; "
              f"time_ratio_ours_vs_{name}: {ours['seconds'] / seconds:.2f} (goal <= 1)")  # fmt: skip


def peers_at_scale(n: int) -> None:
    """The same comparison's wall time on n scale records (no planted labels there)."""
    from bench import _peers
    from datakit.ops.dedup import SEMANTIC_THRESHOLD

    records = scale_records(n, seed=3)
    texts = [r["instruction"] for r in records]
    for name, method, run in (
        ("datatrove_minhash", "near", lambda: _peers.datatrove_minhash(texts)),
        ("semhash_minilm", "semantic", lambda: _peers.semhash_minilm(texts, SEMANTIC_THRESHOLD)),
    ):
        got = run()
        if got is None:
            continue
        ours = timed(records, method)
        print(f"{name}_seconds_{len(records)}_records: {got[1]:.2f} vs ours ({method}) "
              f"{ours:.2f}; ratio {ours / got[1]:.2f} (goal <= 1)")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="scaling on 500 / 2,000 records")
    args = ap.parse_args()
    records, planted = quality_set()
    score(records, planted, {"fields": "instruction"})  # warm-up: model load, ONNX build
    default = score(records, planted, {"fields": "instruction"})
    near = score(records, planted, {"fields": "instruction", "method": "near"})
    print(f"benchmark_set: {len(records)} records, {len(planted)} planted duplicates")
    print(f"recall: {default['recall']} (goal >= 0.95)")
    print(f"precision: {default['precision']} (goal >= 0.95)")
    for kind, r in default["by_kind"].items():
        print(f"recall_{kind}: {r}")
    print(f"near_recall: {near['recall']}, near_precision: {near['precision']}")
    for backend in backends():
        params = {"fields": "instruction", "embedding_backend": backend}
        score(records, planted, params)  # warm-up (the static table is built once)
        got = score(records, planted, params)
        meets = got["recall"] >= 0.95 and got["precision"] >= 0.95
        print(f"backend_{backend}: recall {got['recall']}, precision {got['precision']} "
              f"(goals >= 0.95: {'met' if meets else 'not met'}), {got['seconds']:.2f} s")  # fmt: skip
    peers(records, planted, default, near)
    n = 500 if args.quick else 5_000
    peers_at_scale(n)
    from datakit.ops import OpContext
    from datakit.ops.dedup import run

    for backend in backends():
        recs = scale_records(n, seed=2)
        t = time.perf_counter()
        run([recs], OpContext(), fields="instruction", embedding_backend=backend)
        print(f"semantic_{backend}_records_per_second: {len(recs) / (time.perf_counter() - t):.0f}")
    for method in ("semantic", "near", "exact"):
        timed(scale_records(200), method)  # warm-up: imports, model load
        t1 = timed(scale_records(n), method)
        big = scale_records(4 * n, seed=1)
        t4 = timed(big, method)
        print(f"{method}_seconds_{n}_vs_{4 * n}_records: {t1:.2f} vs {t4:.2f}")
        print(f"{method}_time_ratio_4x_records: {t4 / t1:.2f} (goal <= 5)")
        print(f"{method}_records_per_second: {len(big) / t4:.0f}")
    for size in (5_000,) if args.quick else (20_000, 100_000):
        recall, pairs, seconds = ann_recall(size)
        print(f"ann_candidate_recall_{size}_records: {recall:.4f} of {pairs} exact pairs "
              f"(goal >= 0.99); candidate step {seconds:.1f} s")  # fmt: skip


if __name__ == "__main__":
    main()
