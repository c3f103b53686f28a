"""Every engine call goes through here: cache lookup, batching, progress, stats.

Misses are sent to the backend in chunks of ``batch_size`` and each finished chunk is
appended to the cache before the next starts, so a killed run loses at most one chunk and
an identical re-run makes no model calls at all. An engine that streams its results back
(``stream``: the Ray executor) gets every miss at once, and each result is appended as it
arrives: a killed run loses only what was in flight.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import ToolkitError
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
    def started(self) -> bool:
        """Whether the backend is running (a deferred one starts on its first miss)."""
        return bool(getattr(self.engine, "started", True))

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
            start = getattr(self.engine, "start", None)
            if start is not None:  # a deferred engine starts before its first request is timed
                start()
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
            if hasattr(self.engine, "stream"):
                self._stream(requests, todo, pending, results, bar)
            else:
                for start in range(0, len(todo), self.batch_size):
                    chunk = todo[start : start + self.batch_size]
                    t0 = time.perf_counter()
                    out = self.engine.generate([requests[pending[k][0]] for k in chunk])
                    self.stats.seconds += time.perf_counter() - t0
                    done = [
                        self._record(k, res, pending, results)
                        for k, res in zip(chunk, out, strict=True)
                    ]
                    if self.cache is not None:
                        self.cache.put_many([d for d in done if d is not None])
                    self._advance(bar, len(chunk))
        finally:
            if bar is not None:
                bar.close()
        return results  # type: ignore[return-value]

    def _record(
        self, key: str, res: Result, pending: dict[str, list[int]], results: list[Any]
    ) -> tuple[str, Result] | None:
        """A finished request: its result in every slot that asked it, counted; the cache
        entry to store (None for an error, which a re-run asks again)."""
        self.stats.model_calls += 1
        for i in pending[key]:
            results[i] = res
        if not res.ok:
            self.stats.errors += 1
            return None
        self.stats.prompt_tokens += res.prompt_tokens
        self.stats.completion_tokens += sum(c.completion_tokens for c in res.completions)
        return key, res

    def _stream(
        self,
        requests: list[Request],
        todo: list[str],
        pending: dict[str, list[int]],
        results: list[Any],
        bar: Any,
    ) -> None:
        """Every miss in one call of an engine that streams its results back (Ray): each is
        written to the cache as it arrives (fsynced at most every second and at the end),
        so a driver killed mid-step asks none of them again."""
        t0 = last_sync = time.perf_counter()
        base = self.stats.seconds
        try:
            for n, res in self.engine.stream([requests[pending[k][0]] for k in todo]):
                entry = self._record(todo[n], res, pending, results)
                if self.cache is not None and entry is not None:
                    now = time.perf_counter()
                    self.cache.put_many([entry], sync=now - last_sync >= 1.0)
                    last_sync = now if now - last_sync >= 1.0 else last_sync
                self.stats.seconds = base + time.perf_counter() - t0
                self._advance(bar, 1)
            missing = sum(results[pending[k][0]] is None for k in todo)
            if missing:
                raise ToolkitError(f"{self.backend}: {missing} requests came back without a result")
        finally:
            if self.cache is not None:
                self.cache.sync()

    def _advance(self, bar: Any, n: int) -> None:
        if bar is not None:
            bar.update(n)
            if self.stats.seconds:
                bar.set_postfix_str(
                    f"{self.stats.completion_tokens / self.stats.seconds:,.0f} tok/s"
                )

    def close(self) -> None:
        self.engine.close()
        if self.cache is not None:
            self.cache.close()
