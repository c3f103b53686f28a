"""Importers of outside dataset formats into our record kinds (datakit/export.py writes
them back out).

``read_source(path, fmt)`` yields ``(location, record)`` pairs of one kind, raising
ToolkitError naming the file, line (or item) and field of the first bad input;
``import_file`` stores them as a version.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from corekit.errors import ToolkitError

from .readers import (
    Located,
    read_alpaca,
    read_csv,
    read_jsonl,
    read_openai,
    read_self_instruct,
    read_sharegpt,
    read_xstest,
)
from .records import (
    FirstCopies,
    Record,
    check_kind,
    record_id,
)
from .validate import validator_for

IMPORT_FORMATS = ("jsonl", "alpaca", "sharegpt", "openai", "self-instruct", "xstest", "csv")


def read_source(
    path: str | Path,
    fmt: str,
    kind: str | None = None,
    encoding: str = "utf-8",
    keep_unknown: bool = False,
) -> tuple[str, Iterator[Located]]:
    """Open an outside file; return its record kind and an iterator of located records.
    ``encoding`` and ``keep_unknown`` (unknown CSV columns to ``meta.extra`` instead of an
    error) apply to the CSV formats."""
    p = Path(path)
    if not p.exists():
        raise ToolkitError(f"{path}: no such file")
    if p.is_dir():
        raise ToolkitError(f"{path}: is a directory, expected a file")
    if p.stat().st_size == 0:
        raise ToolkitError(f"{path}: file is empty (no records)")
    if kind is not None:
        check_kind(kind)
    fixed = {
        "alpaca": ("instruction", read_alpaca),
        "sharegpt": ("chat", read_sharegpt),
        "openai": ("chat", read_openai),
        "self-instruct": ("instruction", read_self_instruct),
        "xstest": ("eval_item", read_xstest),
    }
    if fmt == "jsonl":
        return read_jsonl(p, kind)
    if fmt == "csv":
        return read_csv(p, kind, encoding, keep_unknown)
    if fmt in fixed:
        fkind, reader = fixed[fmt]
        if kind is not None and kind != fkind:
            raise ToolkitError(f"--format {fmt} makes {fkind} records, not {kind}")
        return fkind, (reader(p, encoding) if fmt == "xstest" else reader(p))
    raise ToolkitError(f"unknown import format {fmt!r}; choose one of: {', '.join(IMPORT_FORMATS)}")


def validated(records: Iterator[Located], kind: str, path: str | Path) -> Iterator[Record]:
    """Check each record against its kind's schema, raising with file:location: field."""
    v = validator_for(kind)
    for loc, rec in records:
        v.check(rec, f"{path}:{loc}")
        yield rec


def without_exact_duplicates(
    records: Iterator[Located], kind: str, rejects: list[dict[str, Any]]
) -> Iterator[Located]:
    """Keep the first copy of records with the same content (the same content id); each
    later copy goes to ``rejects`` with the id it repeats and where it was. A record whose
    own ``id`` repeats an earlier one with other content is left for the store to refuse."""
    copies = FirstCopies()  # content id -> where its first copy was
    for loc, rec in records:
        if isinstance(rec, dict):
            cid = record_id(rec, kind)
            first = copies.copy_of(cid, loc)
            if first is not None and (rec.get("id") in (None, cid) or rec.get("id") == first):
                rejects.append(
                    {
                        "reason": "duplicate",
                        "duplicate_of": cid,
                        "at": loc,
                        "first_at": first,
                        "record": rec,
                    }
                )
                continue
            if "id" not in rec:
                rec = {"id": cid, **rec}  # the store would hash the same content again
        yield loc, rec


@dataclass
class Imported:
    version: Any  # store.Version
    kind: str
    duplicates: int


def _not_empty(records: Iterator[Record], src: str | Path) -> Iterator[Record]:
    """The records, and an error at the end when there were none (an import of nothing is
    a mistake, not a new empty version)."""
    n = 0
    for rec in records:
        n += 1
        yield rec
    if not n:
        raise ToolkitError(f"{src}: holds no records; nothing imported")


def import_file(
    store: Any,
    name: str,
    src: str | Path,
    fmt: str,
    kind: str | None = None,
    *,
    message: str | None = None,
    config_source: str | None = None,
    wrap: Any = None,
    encoding: str = "utf-8",
    keep_unknown: bool = False,
) -> Imported:
    """Read ``src`` in format ``fmt``, check every record, drop exact duplicate records (kept
    in the version's rejects.jsonl) and store the rest as the next version of ``name``, or
    reuse the latest version if it holds the same records. ``wrap`` may wrap the record
    iterator (a progress bar)."""
    src_kind, located = read_source(src, fmt, kind, encoding, keep_unknown)
    rejects: list[dict[str, Any]] = []
    records = _not_empty(
        validated(without_exact_duplicates(located, src_kind, rejects), src_kind, src), src
    )
    version = store.write(
        name,
        wrap(records) if wrap else records,
        src_kind,
        step="import",
        config={"source": config_source or str(src), "format": fmt},
        message=message,
        source=str(src),
        reuse_identical=True,
        prevalidated=True,  # `validated` just checked each record and names its file:line
        extra_files={"rejects.jsonl": rejects},
        extra_stats=lambda: {"drops": {"duplicate": len(rejects)}} if rejects else {},
    )
    return Imported(version, src_kind, len(rejects))
