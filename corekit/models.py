"""Model references: what a name in a config or on a command line points at, and a cheap
content fingerprint of what it points at.

A model reference is one of:
- a named model: an entry of the config's ``models:`` (its ``path``, or the shared cache
  for a model built from a gguf_wheel);
- a local directory: a model (``config.json``) or a PEFT adapter (``adapter_config.json``);
  a reference that starts with ``.``, ``/`` or ``~``, or names something that exists
  relative to the config, is a path;
- a hub id (``org/name``), for machines that reach a hub;
- a served model name, for the openai backend (any string the server knows).
``resolve_model`` turns a reference into a path or id, ``check_model`` classifies it and
checks a local one, with a one-line error naming where it came from. Every stage uses these
two; nothing else decides what a model reference is.

Fingerprint:

The request cache and the step skip key hold it, so retraining a model (or an adapter) in
place is noticed: its weight files get new sizes or modification times and its config may
change. Small text files (config, tokenizer, chat template, adapter config) are hashed by
content; large files (weights) by name, size and mtime, which costs a stat, not a read.
A model that is not a local directory (a hub id, a served model name) is its own name.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any

from .errors import ToolkitError


def resolve_path(base: Path, p: str) -> Path:
    """A config path: absolute as it is, relative to the config's directory otherwise."""
    path = Path(p).expanduser()
    return path if path.is_absolute() else base / path


def is_adapter(path: str | Path) -> bool:
    """A PEFT adapter directory (``adapter_config.json``), as opposed to a full model."""
    return (Path(path) / "adapter_config.json").is_file()


def cache_dir() -> Path:
    """The shared cache of built models and downloaded wheels (kept across `make clean`)."""
    root = os.environ.get("FINETUNE_CACHE")
    if root:
        return Path(root).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "finetune-toolkit"


def norm_package(package: str) -> str:
    return re.sub(r"[-_.]+", "_", package).lower()


def model_entry_path(entry: dict[str, Any], base: Path) -> Path:
    """The directory of a ``models:`` entry: its ``path``, or for a gguf_wheel model without
    one, its place in the shared cache (by package, version and file)."""
    if entry.get("path"):
        return resolve_path(base, entry["path"])
    spec = entry["gguf_wheel"]
    stem = Path(spec["file"]).stem
    return cache_dir() / "models" / f"{norm_package(spec['package'])}-{spec['version']}" / stem


def _looks_like_path(ref: str) -> bool:
    return ref.startswith((".", "/", "~")) or ref.count("/") != 1


def resolve_model(ref: str, models: dict[str, Any], base: Path, served: bool = False) -> str:
    """A named model -> its path; a path -> resolved against ``base``; a hub id or a served
    model name (``served``: the openai backend) -> as it is."""
    if not ref:
        return ""
    if ref in models:
        return str(model_entry_path(models[ref], base))
    if served:
        return ref
    p = resolve_path(base, ref)
    if ref.startswith((".", "/", "~")) or p.exists():
        return str(p)
    return ref


def check_model(ref: str, where: str, served: bool = False) -> str:
    """Classify a resolved reference: "model" or "adapter" (a local directory, checked),
    "hub" (an org/name id) or "served" (a name on a server). Raises a one-line
    ToolkitError naming ``where`` for a local reference that is not a model."""
    if not ref:
        raise ToolkitError(f"{where}: model is empty")
    if served:
        return "served"
    p = Path(ref).expanduser()
    if not p.exists() and not _looks_like_path(ref):
        return "hub"
    if not p.is_dir():
        raise ToolkitError(f"{where}: model directory {ref} does not exist")
    if is_adapter(p):
        return "adapter"
    if (p / "config.json").is_file():
        return "model"
    raise ToolkitError(f"{where}: {ref} is not a model directory (no config.json)")


_CONTENT_LIMIT = 4 * 2**20  # hash files up to this size by content; bigger ones by stat


def fingerprint(model: str | os.PathLike[str] | None) -> str | None:
    """16 hex chars for a local directory, the name itself otherwise (None for None)."""
    if model is None:
        return None
    p = Path(model).expanduser()
    if not p.is_dir():
        return str(model)
    h = hashlib.sha256()
    for f in sorted(x for x in p.rglob("*") if x.is_file()):
        rel = f.relative_to(p)
        if any(part.startswith(".") for part in rel.parts):
            continue
        st = f.stat()
        h.update(f"{rel.as_posix()}\0{st.st_size}\0".encode())
        if st.st_size <= _CONTENT_LIMIT:
            h.update(f.read_bytes())
        else:
            h.update(str(st.st_mtime_ns).encode())
        h.update(b"\0")
    return h.hexdigest()[:16]
