"""executor: ray against the local executor on the same generation work.

The same batch of requests (a small random Llama, transformers backend, one request per
forward pass so both sides do identical work) answered by one in-process engine, and by the
Ray executor with one and with two replicas on a local Ray cluster (every node on loopback).
Each side is timed whole: engine start (the model load, in each actor under Ray) and every
answer. Figures:

    ray_overhead_ratio   local seconds / Ray seconds, one replica (goal >= 0.8)
    replica_scaling      Ray seconds with 1 replica / with 2 (goal >= 1.6 where the machine
                         has the cores: each replica is one process using one CPU here)

The texts are compared too. Ray starts each replica with as many threads as CPUs it
reserves (one here), and a float32 sum over another thread count can tip a sampled token
at a near tie: so the Ray replicas must match each other and a local run at the replicas'
thread count exactly (``same_texts``), and the count that differ from the local run at
its default thread count is printed beside it, for the record.

    python bench/scale.py            # 2,000 requests (as issue 22 asks)
    python bench/scale.py --quick    # 120 requests, under a minute
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # nodes on loopback

from bench._common import llama_dims, random_llama  # noqa: E402 - after the path above


def _requests(n: int) -> list:
    from corekit.engines import Request

    return [
        Request.chat(
            [{"role": "user", "content": f"Say one thing about item {i}."}],
            max_tokens=16,
            temperature=0.8,
            seed=i,
        )  # fmt: skip
        for i in range(n)
    ]


def _run(model: Path, requests: list, ray: dict | None) -> tuple[float, list[str]]:
    from corekit.engines import EngineSpec, build_engine

    spec = EngineSpec("transformers", str(model), {"batch_size": 1}, ray)
    t0 = time.perf_counter()
    engine = build_engine(spec, None, batch_size=len(requests), quiet=True)
    texts = [r.text for r in engine.generate(requests)]
    seconds = time.perf_counter() - t0
    engine.close()
    return seconds, texts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="120 requests (under a minute)")
    args = ap.parse_args()
    n = 120 if args.quick else 2000
    import ray

    model = random_llama("datakit-bench-scale-llama", llama_dims(128, 2, 2, 344), 512)
    cores = os.cpu_count() or 1
    ray.init(num_cpus=max(2, cores), include_dashboard=False, log_to_driver=False)
    requests = _requests(n)
    settings = {"address": None, "num_cpus": 1, "num_gpus": 0, "batch_size": 16}
    local_s, local_texts = _run(model, requests, None)
    one_s, one_texts = _run(model, requests, {**settings, "replicas": 1})
    two_s, two_texts = _run(model, requests, {**settings, "replicas": 2})
    ray.shutdown()
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(settings["num_cpus"])  # the replicas' arithmetic, on 200 requests
    _, one_thread = _run(model, requests[:200], None)
    torch.set_num_threads(threads)
    same = one_texts == two_texts and one_thread == one_texts[:200]
    differ = sum(a != b for a, b in zip(local_texts, one_texts, strict=True))
    print(f"requests: {n}; cores: {cores}; ray {ray.__version__}")
    print(f"local_seconds: {local_s:.1f}")
    print(f"ray_1_replica_seconds: {one_s:.1f}")
    print(f"ray_2_replicas_seconds: {two_s:.1f}")
    print(f"ray_overhead_ratio: {local_s / one_s:.2f} (goal >= 0.8)")
    note = "" if cores >= 4 else f"; {cores} cores: the driver shares them with the replicas"
    print(f"replica_scaling: {one_s / two_s:.2f} (goal >= 1.6{note})")
    print(f"same_texts: {same} (goal True)")
    print(f"texts_differing_from_local_at_{threads}_threads: {differ}/{n}")
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
