"""The engines of a run, each started once: ``EnginePool`` (datakit's steps, evalkit's
models and judges share it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..runs import config_hash
from . import CachedEngine, EngineSpec, build_engine, check_spec, spec_fingerprint


class EnginePool:
    """Engines are expensive to start (vLLM loads the model): build each spec once per run."""

    def __init__(self, cache_dir: Path, quiet: bool = False):
        self.cache_dir = cache_dir
        self.quiet = quiet
        self._engines: dict[str, CachedEngine] = {}
        self._options: dict[str, dict[str, Any]] = {}
        # how the last get() found its engine: started (built; an in-process backend loads
        # its model on the first request the cache cannot answer), running, swapped
        # (another model's running engine took this one's weights or adapter) or deferred
        # (another model's engine, not started yet, will start as this one)
        self.last = ""

    def get(
        self, spec: EngineSpec, batch_size: int = 256, where: str = "engine", swap: bool = False
    ) -> CachedEngine:
        """The engine for ``spec``, built on first use. With ``swap`` (one model after
        another, as evalkit does), a running engine of the same backend and options whose
        model has the same architecture and tokenizer takes ``spec``'s weights in place
        instead (one engine start for a base model and its fine-tunes), and a running
        engine that cannot is closed before the new one starts (two in-process vLLMs on one
        GPU run out of memory)."""
        key = config_hash([spec.backend, spec.model, spec.options])
        self.last = "running"
        if key not in self._engines:
            cache = self.cache_dir / f"{spec.backend}-{key}.jsonl"
            if swap:
                if self._swapped(spec, key, cache, where):
                    return self._engines[key]
                self.close()
            self.last = "started"
            self._engines[key] = build_engine(
                spec, cache, batch_size=batch_size, quiet=self.quiet, where=where
            )
            self._options[key] = dict(spec.options)
        return self._engines[key]

    def _swapped(self, spec: EngineSpec, key: str, cache: Path, where: str) -> bool:
        import sys

        from corekit.engines import RequestCache

        for old, engine in list(self._engines.items()):
            if engine.backend != spec.backend or _but_adapter(self._options[old]) != _but_adapter(
                spec.options
            ):
                continue
            check_spec(spec, where)
            adapter = spec.options.get("lora_adapter")
            running = engine.started
            if engine.swap(
                spec.model, adapter, spec_fingerprint(spec), lambda: RequestCache(cache)
            ):
                self.last = "swapped" if running else "deferred"
                if not running:  # not started yet: it starts on its first miss, as this spec
                    engine.engine.where = where
                elif not self.quiet:
                    how = (
                        f"serving the LoRA adapter {adapter} per request on"
                        if adapter
                        else f"loaded {spec.model}'s weights into"
                    )
                    print(f"{how} the running {spec.backend} engine (no new start)",
                          file=sys.stderr, flush=True)  # fmt: skip
                del self._engines[old]
                self._engines[key] = engine
                self._options[key] = self._options.pop(old)
                return True
        return False

    def close(self) -> None:
        for e in self._engines.values():
            e.close()
        self._engines.clear()
        self._options.clear()


def _but_adapter(options: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in options.items() if k != "lora_adapter"}
