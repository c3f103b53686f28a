"""Every engine call goes through here: cache lookup, batching, progress, stats.

Misses are sent to the backend in chunks of ``batch_size`` and each finished chunk is
appended to the cache before the next starts, so a killed run loses at most one chunk and
an identical re-run makes no model calls at all.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .base import Engine, Request, Result
from .request_cache import RequestCache, request_key

log = logging.getLogger(__name__)


@dataclass
class EngineStats:
    requests: int = 0
    cache_hits: int = 0
    model_calls: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, float]:
        d = dict(self.__dict__)
        d["tokens_per_s"] = round(self.completion_tokens / self.seconds, 1) if self.seconds else 0.0
        return d


class CachedEngine:
    def __init__(
        self,
        engine: Engine,
        cache: RequestCache | None = None,
        batch_size: int = 256,
        quiet: bool = False,
        fingerprint: dict[str, Any] | None = None,
    ):
        self.engine = engine
        self.fingerprint = fingerprint
        self.cache = cache
        self.batch_size = max(1, batch_size)
        self.quiet = quiet
        self.stats = EngineStats()

    def swap(
        self,
        model: str,
        lora_adapter: str | None,
        fingerprint: dict[str, Any],
        cache: Callable[[], RequestCache],
    ) -> bool:
        """Serve ``model`` (with ``lora_adapter``, if any) from this engine, when the
        backend can without a new start (vLLM: another LoRA adapter per request, or the
        weights of the same architecture loaded in place); its answers are then cached
        under its own fingerprint. False, and nothing changed, otherwise."""
        swap_model = getattr(self.engine, "swap_model", None)
        if swap_model is None or not swap_model(model, lora_adapter):
            return False
        if self.cache is not None:
            self.cache.close()
            self.cache = cache()
        self.fingerprint = fingerprint
        return True

    @property
    def backend(self) -> str:
        return self.engine.backend

    @property
    def model(self) -> str:
        return self.engine.model

    def generate(self, requests: list[Request], desc: str = "generate") -> list[Result]:
        results: list[Result | None] = [None] * len(requests)
        keys = [
            request_key(self.engine.backend, self.engine.model, r, self.fingerprint)
            for r in requests
        ]
        pending: dict[str, list[int]] = {}
        for i, k in enumerate(keys):
            hit = self.cache.get(k) if self.cache is not None else None
            if hit is not None:
                results[i] = hit
                self.stats.cache_hits += 1
            else:
                pending.setdefault(k, []).append(i)  # identical requests are sent once
        self.stats.requests += len(requests)
        todo = list(pending)
        bar = None
        if todo:
            from tqdm import tqdm

            bar = tqdm(
                total=len(todo),
                desc=desc,
                unit=" req",
                disable=True if self.quiet else None,
                file=sys.stderr,
                dynamic_ncols=True,
            )
        try:
            for start in range(0, len(todo), self.batch_size):
                chunk = todo[start : start + self.batch_size]
                t0 = time.perf_counter()
                out = self.engine.generate([requests[pending[k][0]] for k in chunk])
                self.stats.seconds += time.perf_counter() - t0
                self.stats.model_calls += len(chunk)
                done = []
                for k, res in zip(chunk, out, strict=True):
                    for i in pending[k]:
                        results[i] = res
                    if res.ok:
                        done.append((k, res))
                        self.stats.prompt_tokens += res.prompt_tokens
                        self.stats.completion_tokens += sum(
                            c.completion_tokens for c in res.completions
                        )
                    else:
                        self.stats.errors += 1
                if self.cache is not None:
                    self.cache.put_many(done)
                if bar is not None:
                    bar.update(len(chunk))
                    if self.stats.seconds:
                        bar.set_postfix_str(
                            f"{self.stats.completion_tokens / self.stats.seconds:,.0f} tok/s"
                        )
        finally:
            if bar is not None:
                bar.close()
        return results  # type: ignore[return-value]

    def close(self) -> None:
        self.engine.close()
        if self.cache is not None:
            self.cache.close()
