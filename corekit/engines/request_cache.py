"""Append-only, crash-safe request cache.

One JSONL file per run directory: ``{"k": <key>, "r": <result>}`` per line, appended and
fsynced batch by batch. A process killed mid-append can leave only a torn last line; on open
it is cut off (the file is truncated back to the last complete line), so the cache never
holds a corrupt entry and an interrupted run resumes from what was finished.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any

import orjson

from .base import Request, Result

log = logging.getLogger(__name__)


def request_key(
    backend: str, model: str, request: Request, fingerprint: dict[str, Any] | None = None
) -> str:
    """The cache key: backend, model, the model's content fingerprint and the whole request.

    With the fingerprint, a model retrained in place never answers from its old entries.
    """
    key: dict[str, Any] = {"backend": backend, "model": model, "request": request.to_dict()}
    if fingerprint:
        key["fingerprint"] = fingerprint
    blob = orjson.dumps(key, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(blob).hexdigest()


class RequestCache:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._entries: dict[str, dict[str, Any]] = {}
        self._load()
        self._f = open(self.path, "ab")

    def _load(self) -> None:
        if not self.path.exists():
            return
        good = 0
        with open(self.path, "rb") as f:
            for raw in f:
                if not raw.endswith(b"\n"):
                    break
                try:
                    entry = orjson.loads(raw)
                    self._entries[entry["k"]] = entry["r"]
                except (orjson.JSONDecodeError, KeyError, TypeError):
                    break
                good += len(raw)
        size = self.path.stat().st_size
        if good < size:
            log.warning("%s: dropping a torn entry at byte %d (interrupted write)", self.path, good)
            with open(self.path, "r+b") as f:
                f.truncate(good)

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> Result | None:
        d = self._entries.get(key)
        return Result.from_dict(d) if d is not None else None

    def put_many(self, items: list[tuple[str, Result]], sync: bool = True) -> None:
        """Append ``items``; ``sync``: fsync now (else the next sync does; a killed
        process loses nothing written, only a machine's crash would)."""
        if not items:
            return
        buf = bytearray()
        for key, result in items:
            d = result.to_dict()
            self._entries[key] = d
            buf += orjson.dumps({"k": key, "r": d}) + b"\n"
        self._f.write(bytes(buf))
        self._f.flush()
        if sync:
            os.fsync(self._f.fileno())

    def sync(self) -> None:
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()
