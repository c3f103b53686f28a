"""The dedup tools a user would pick instead of datakit's, run on the same records.

Installed by the optional ``bench`` extra (``pip install -e .[bench]``); each returns None
when its package is missing, so the benchmark prints a note instead of a figure.

- datatrove's MinHash dedup pipeline (signatures, buckets, clusters, filter: its four
  stages, each a ``LocalPipelineExecutor`` with one worker, as its own example runs them),
  with datatrove's default configuration (word 5-grams, 14 buckets x 8 hashes) and SHA-1
  hashing (its xxhash path calls ``xxh64_intdigest`` on a str, which xxhash 4 rejects).
  It stands against ``--method near``.
- semhash's ``self_deduplicate`` given the same MiniLM model (sentence-transformers, fp32)
  and the same 0.80 cosine threshold, against ``--method semantic``.

Each returns the set of dropped record indices and the wall time of the whole run (model
load excluded for both sides: the benchmark warms both up first).
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
import time
from typing import Any


def datatrove_minhash(texts: list[str]) -> tuple[set[int], float] | None:
    try:
        from datatrove.data import Document
        from datatrove.executor import LocalPipelineExecutor
        from datatrove.pipeline.dedup.minhash import (
            MinhashConfig,
            MinhashDedupBuckets,
            MinhashDedupCluster,
            MinhashDedupFilter,
            MinhashDedupSignature,
        )
        from datatrove.utils.hashing import HashConfig
        from loguru import logger
    except ImportError:
        return None
    logger.remove()  # datatrove logs every stage's statistics through loguru
    logging.getLogger("datatrove").setLevel(logging.ERROR)
    config = MinhashConfig(hash_config=HashConfig(hash_fc="sha1"))
    kept: list[int] = []

    def documents(data: Any = None, rank: int = 0, world_size: int = 1):
        for i, t in enumerate(texts):
            yield Document(text=t, id=str(i))

    def collect(data: Any, rank: int = 0, world_size: int = 1):
        for doc in data:
            kept.append(int(doc.id))
            yield doc

    start = time.perf_counter()
    # datatrove adds a loguru sink on stderr for every task: its statistics go nowhere here
    with tempfile.TemporaryDirectory() as d, contextlib.redirect_stderr(io.StringIO()):

        def stage(steps: list, tasks: int = 1) -> None:
            LocalPipelineExecutor(
                pipeline=steps,
                tasks=tasks,
                workers=1,
                logging_dir=f"{d}/logs-{len(steps)}-{tasks}-{id(steps)}",
                skip_completed=False,
            ).run()

        stage([documents, MinhashDedupSignature(output_folder=f"{d}/sigs", config=config)])
        stage(
            [MinhashDedupBuckets(input_folder=f"{d}/sigs", output_folder=f"{d}/b", config=config)],
            tasks=config.num_buckets,
        )
        stage([MinhashDedupCluster(input_folder=f"{d}/b", output_folder=f"{d}/r", config=config)])
        stage([documents, MinhashDedupFilter(input_folder=f"{d}/r"), collect])
    seconds = time.perf_counter() - start
    return set(range(len(texts))) - set(kept), seconds


def semhash_minilm(texts: list[str], threshold: float) -> tuple[set[int], float] | None:
    try:
        from semhash import SemHash
    except ImportError:
        return None
    from corekit.embeddings import _model, default_embedding_model

    model = _model(default_embedding_model())  # the same MiniLM, loaded before the clock
    records = [{"id": str(i), "text": t} for i, t in enumerate(texts)]
    start = time.perf_counter()
    result = SemHash.from_records(records, columns=["text"], model=model).self_deduplicate(
        threshold=threshold
    )
    seconds = time.perf_counter() - start
    return {int(d.record["id"]) for d in result.filtered}, seconds
