"""The engine protocol: a batch of generation requests in, one result per request out.

Backends (vllm, openai, transformers) implement ``generate``; everything else (caching,
batching, progress) is shared and lives in :mod:`corekit.engines.cached_engine`.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import orjson

from ..errors import ToolkitError


@dataclass(frozen=True)
class Request:
    """One generation request: chat ``messages`` or a raw ``prompt``, sampling, constraint.

    ``json_schema``, ``choice`` and ``regex`` are mutually exclusive structured-output
    constraints; the output then always parses (vllm and vLLM servers guarantee it).
    """

    messages: tuple[dict[str, Any], ...] | None = None
    prompt: str | None = None
    temperature: float = 0.7
    top_p: float = 1.0
    max_tokens: int = 256
    n: int = 1
    seed: int | None = None
    json_schema: dict[str, Any] | None = None
    choice: tuple[str, ...] | None = None
    regex: str | None = None
    stop: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if (self.messages is None) == (self.prompt is None):
            raise ToolkitError("a request needs exactly one of messages or prompt")
        if sum(x is not None for x in (self.json_schema, self.choice, self.regex)) > 1:
            raise ToolkitError("a request takes at most one of json_schema, choice, regex")
        if self.n < 1 or self.max_tokens < 1:
            raise ToolkitError("a request needs n >= 1 and max_tokens >= 1")

    @classmethod
    def chat(cls, messages: list[dict[str, Any]], **kw: Any) -> Request:
        return cls(messages=tuple(dict(m) for m in messages), **kw)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items() if v is not None}

    def effective_seed(self) -> int:
        """The seed this request samples with: its own, or one derived from its content.

        Never the batch's or the engine's global RNG state, so a request gives the same
        output whichever requests share its batch (what exact resume relies on).
        """
        if self.seed is not None:
            return self.seed
        blob = orjson.dumps(self.to_dict(), option=orjson.OPT_SORT_KEYS)
        return int.from_bytes(hashlib.sha256(blob).digest()[:4], "big") & 0x7FFFFFFF

    def sampling(self) -> dict[str, Any]:
        """The sampling part, as recorded in a generated record's meta."""
        return {k: getattr(self, k) for k in ("temperature", "top_p", "max_tokens", "n", "seed")}


@dataclass
class Completion:
    text: str
    finish_reason: str  # "stop" or "length" (cut off at max_tokens)
    completion_tokens: int = 0


@dataclass
class Result:
    completions: list[Completion]
    prompt_tokens: int = 0
    cached: bool = False
    error: str | None = None  # set when the backend gave up on this request

    @property
    def text(self) -> str:
        return self.completions[0].text if self.completions else ""

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.completions)

    def to_dict(self) -> dict[str, Any]:
        return {
            "completions": [asdict(c) for c in self.completions],
            "prompt_tokens": self.prompt_tokens,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Result:
        return cls(
            [Completion(**c) for c in d["completions"]], d.get("prompt_tokens", 0), cached=True
        )


class Engine(Protocol):
    """A generation backend. ``name`` is the backend, ``model`` what it serves."""

    backend: str
    model: str

    def generate(self, requests: list[Request]) -> list[Result]: ...

    def close(self) -> None: ...


@dataclass
class EngineSpec:
    """How to build an engine: the ``engines:`` entries of pipeline.yaml."""

    backend: str
    model: str
    options: dict[str, Any] = field(default_factory=dict)
    # executor: ray: where the engine runs (RaySettings' fields: address, replicas,
    # num_cpus, num_gpus, batch_size); None: in this process. Not part of what it answers.
    ray: dict[str, Any] | None = None
