"""Embedding speed: datakit's default embedding backend against plain sentence-transformers.

Ours: ``corekit.embeddings.embed`` with its default backend (int8 ONNX when onnxruntime is
installed). Baseline: ``SentenceTransformer.encode`` in fp32 on the same texts, normalised,
at the better of batch sizes 16 and 32 (32 is its default; both timed, the faster kept), so
the baseline is the best plain use, not a strawman. Both are warmed up first (the model
load and the one-off ONNX build are not timed); each figure is the best of 3 runs.

Texts: the Self-Instruct seed tasks (instruction + input + output) from ../shared/data when
present, else instructions and answers written here, so lengths vary as in real data.

Prints `speedup_vs_fp32` (goal >= 2) and `mean_cosine_agreement` (goal >= 0.99) with the
fp32 embeddings, and the worst single cosine; then the static backend's texts per second and
every backend's precision/recall on bench/dedup.py's planted set (goals >= 0.95), the
figures that decide the default (the fastest backend that meets them).

Run: python bench/embed.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SEEDS = Path(__file__).resolve().parents[2] / "shared" / "data" / "self_instruct_seed_tasks.jsonl"


def texts(n: int) -> list[str]:
    out: list[str] = []
    if SEEDS.is_file():
        for line in SEEDS.read_text().splitlines():
            d = json.loads(line)
            inst = (d.get("instances") or [{}])[0]
            out.append(
                " ".join(
                    x for x in (d.get("instruction"), inst.get("input"), inst.get("output")) if x
                )
            )
    else:
        from bench.novelty import instruction

        rng = random.Random(0)
        for _ in range(n):
            body = " ".join(instruction(rng) for _ in range(rng.randint(1, 8)))
            out.append(body)
    return (out * (n // max(1, len(out)) + 1))[:n]


def best_of(fn, runs: int = 3) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(runs):
        t = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t)
    return best, result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="300 texts instead of 2,000")
    args = ap.parse_args()
    import numpy as np

    from corekit.embeddings import _model, backend_for, default_embedding_model, embed

    data = texts(300 if args.quick else 2_000)
    model = default_embedding_model()
    st = _model(model)
    backend = backend_for(model)
    t = time.perf_counter()
    embed(data[:32])  # warm-up (builds and caches the ONNX model on first use)
    warm = time.perf_counter() - t

    def plain(bs: int):
        return lambda: st.encode(
            data,
            batch_size=bs,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )

    st.encode(data[:32], batch_size=32)
    base_times = {bs: best_of(plain(bs)) for bs in (16, 32)}
    bs, (t_base, ref) = min(base_times.items(), key=lambda kv: kv[1][0])
    t_ours, ours = best_of(lambda: embed(data))
    cos = (np.asarray(ours) * np.asarray(ref)).sum(axis=1)
    print(
        f"texts: {len(data)} (mean {np.mean([len(x) for x in data]):.0f} chars), backend {backend}"
    )
    print(f"warm_up_seconds (model load, one-off ONNX build when not cached): {warm:.2f}")
    print(f"fp32_encode_seconds: {t_base:.2f} (batch {bs}), ours_seconds: {t_ours:.2f}")
    print(f"texts_per_second: {len(data) / t_ours:.0f} vs fp32 {len(data) / t_base:.0f}")
    print(f"speedup_vs_fp32: {t_base / t_ours:.2f} (goal >= 2)")
    print(f"mean_cosine_agreement: {cos.mean():.4f} (goal >= 0.99)")
    print(f"min_cosine_agreement: {cos.min():.4f}")
    # The static backend: token embeddings distilled here from the same model. Its vectors
    # live in another space (no agreement figure); its quality is the planted set's.
    from bench.dedup import quality_set, score

    embed(data[:32], backend="static")  # warm-up: distils the table once per model
    t_static, _ = best_of(lambda: embed(data, backend="static"))
    print(f"static_texts_per_second: {len(data) / t_static:.0f}; "
          f"static_speedup_vs_fp32: {t_base / t_static:.1f}")  # fmt: skip
    records, planted = quality_set()
    for name in (backend, "torch", "static"):
        got = score(records, planted, {"fields": "instruction", "embedding_backend": name})
        meets = got["recall"] >= 0.95 and got["precision"] >= 0.95
        print(f"planted_set_{name}: recall {got['recall']}, precision {got['precision']} "
              f"(goals >= 0.95: {'met' if meets else 'not met'})")  # fmt: skip


if __name__ == "__main__":
    main()
