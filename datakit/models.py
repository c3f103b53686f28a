"""Model references: a cheap content fingerprint of a model or adapter directory.

The request cache and the step skip key hold it, so retraining a model (or an adapter) in
place is noticed: its weight files get new sizes or modification times and its config may
change. Small text files (config, tokenizer, chat template, adapter config) are hashed by
content; large files (weights) by name, size and mtime, which costs a stat, not a read.
A model that is not a local directory (a hub id, a served model name) is its own name.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

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
