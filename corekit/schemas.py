"""Access to the JSON Schemas in ``schemas/`` (shipped in the wheel as ``corekit._schemas``).

The JSON files are the single source of truth for record kinds, the dataset manifest and the
pipeline config; Python code reads them instead of restating them.
"""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any

from corekit.errors import ToolkitError

RECORD_KINDS = ("chat", "instruction", "preference", "unpaired", "eval_item", "prediction")


@functools.cache
def schema_dir() -> Path:
    # A source checkout (and an editable install) keeps the schemas at the repository root; a
    # wheel install carries the same files as corekit/_schemas.
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "schemas", here / "_schemas"):
        if (candidate / "manifest.json").is_file():
            return candidate
    raise ToolkitError(f"schema files not found next to {here} (broken install?)")


@functools.cache
def _load(rel: str) -> dict[str, Any]:
    with open(schema_dir() / rel, encoding="utf-8") as f:
        return json.load(f)


def load_schema(name: str) -> dict[str, Any]:
    """Load a schema by name: a record kind (``chat``), ``manifest`` or ``pipeline``.

    Returns a fresh copy, so no caller (or validator library) can change the cached one.
    """
    if name in RECORD_KINDS:
        return copy.deepcopy(_load(f"records/{name}.json"))
    if name in ("manifest", "pipeline", "eval_report"):
        return copy.deepcopy(_load(f"{name}.json"))
    raise ToolkitError(
        f"unknown schema {name!r}; choose one of: "
        f"{', '.join(RECORD_KINDS + ('manifest', 'pipeline', 'eval_report'))}"
    )


@functools.cache
def content_fields(kind: str) -> tuple[str, ...]:
    """The fields that make up a record's content (everything but ``id`` and ``meta``).

    Cached: it sits on the per-record hot path of every store write (ids, stats).
    """
    if kind not in RECORD_KINDS:
        load_schema(kind)  # raises the usual "unknown schema" error
    props = _load(f"records/{kind}.json")["properties"]
    return tuple(k for k in props if k not in ("id", "meta"))
