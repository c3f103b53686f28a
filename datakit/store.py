"""Versioned, immutable JSONL datasets under a data root.

Layout (plain files, so git-lfs or DVC can track it too)::

    <root>/<name>/v<N>/records.jsonl   one record per line, ids filled in
    <root>/<name>/v<N>/manifest.json   schemas/manifest.json
    <root>/<name>/tags.json            {"tag": N}
    <root>/<name>/.lock                writers serialise on it (filelock)

A version is written into a hidden temporary directory first and renamed into place under
the dataset's lock, so readers never see a half-written version, a killed writer leaves only
a hidden temp directory (swept by the next writer), and concurrent writers get distinct
version numbers.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import logging
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from corekit.errors import ToolkitError
from corekit.runs import atomic_write_bytes, config_hash

from .records import Record, StatsAccumulator, check_kind, with_id
from .validate import iter_lines, validator_for

log = logging.getLogger(__name__)

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_VERSION_DIR = re.compile(r"^v([1-9][0-9]*)$")
_TMP_PREFIX = ".tmp-"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _before_rename_hook(tmp: Path) -> None:
    """Called inside the lock, after the manifest is written and before the rename.

    Empty; tests replace it to hold writers inside the critical section or kill them there.
    """


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data + b"\n")
        f.flush()
        os.fsync(f.fileno())


def _write_extra(tmp: Path, fname: str, rows: Iterable[Any]) -> None:
    if "/" in fname or fname in ("records.jsonl", "manifest.json"):
        raise ToolkitError(f"invalid extra file name {fname!r}")
    with open(tmp / fname, "wb") as f:
        for row in rows:
            f.write(orjson.dumps(row, option=orjson.OPT_NON_STR_KEYS) + b"\n")
        f.flush()
        os.fsync(f.fileno())


@dataclass
class _Written:
    sha256: str
    size: int
    stats: dict[str, Any]


_FLUSH_BYTES = 1 << 20


def _write_records(
    path: Path, records: Iterable[Record], kind: str, source: str, check: bool = True
) -> _Written:
    """One pass: id, schema check, duplicate check, stats, sha256 and the (buffered) write."""
    validator = validator_for(kind)
    acc = StatsAccumulator(kind)
    h = hashlib.sha256()
    size = 0
    seen: set[str] = set()
    buf = bytearray()
    with open(path, "wb") as out:
        for i, raw in enumerate(records, 1):
            if not isinstance(raw, dict):
                raise ToolkitError(f"{source}: record {i}: expected a JSON object")
            rec = with_id(raw, kind)
            if check:
                validator.check(rec, f"{source}: record {i}")
            rid = rec["id"]
            if rid in seen:
                raise ToolkitError(f"{source}: record {i}: $.id: duplicate id {rid!r}")
            seen.add(rid)
            acc.add(rec)
            buf += orjson.dumps(rec)
            buf += b"\n"
            if len(buf) >= _FLUSH_BYTES:
                h.update(buf)
                size += len(buf)
                out.write(buf)
                buf.clear()
        h.update(buf)
        size += len(buf)
        out.write(buf)
        out.flush()
        os.fsync(out.fileno())
    return _Written(h.hexdigest(), size, acc.result())


@dataclass(frozen=True)
class Version:
    """One stored dataset version."""

    name: str
    version: int
    path: Path
    reused: bool = field(default=False, compare=False)  # write() found identical content

    @property
    def ref(self) -> str:
        return f"{self.name}@v{self.version}"

    @property
    def records_path(self) -> Path:
        return self.path / "records.jsonl"

    @property
    def manifest_path(self) -> Path:
        return self.path / "manifest.json"

    def manifest(self) -> dict[str, Any]:
        try:
            return orjson.loads(self.manifest_path.read_bytes())
        except (OSError, orjson.JSONDecodeError) as e:
            raise ToolkitError(f"{self.manifest_path}: unreadable manifest: {e}") from None

    @property
    def kind(self) -> str:
        return self.manifest()["kind"]

    def records(self) -> Iterator[Record]:
        for _lineno, obj, problem in iter_lines(self.records_path):
            if problem is not None:
                raise ToolkitError(problem.format(str(self.records_path)))
            yield obj

    def head(self, n: int) -> list[Record]:
        """The first ``n`` records."""
        import itertools

        return list(itertools.islice(self.records(), n))

    def verify(self) -> None:
        """Raise ToolkitError if records.jsonl no longer matches the manifest's sha256."""
        h = hashlib.sha256()
        with open(self.records_path, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        if h.hexdigest() != self.manifest()["sha256"]:
            raise ToolkitError(
                f"{self.records_path}: sha256 does not match the manifest (file modified?)"
            )


class DatasetStore:
    """All datasets under one data root."""

    def __init__(self, root: str | Path = "data"):
        self.root = Path(root)

    # ------------------------------------------------------------------ reading

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(
            p.name
            for p in self.root.iterdir()
            if p.is_dir() and NAME_RE.match(p.name) and self._version_numbers(p.name)
        )

    def _version_numbers(self, name: str) -> list[int]:
        d = self.root / name
        if not d.is_dir():
            return []
        nums = []
        for p in d.iterdir():
            m = _VERSION_DIR.match(p.name)
            if m and (p / "manifest.json").is_file():
                nums.append(int(m.group(1)))
        return sorted(nums)

    def versions(self, name: str) -> list[Version]:
        return [Version(name, n, self.root / name / f"v{n}") for n in self._version_numbers(name)]

    def tags(self, name: str) -> dict[str, int]:
        p = self.root / name / "tags.json"
        if not p.is_file():
            return {}
        try:
            return orjson.loads(p.read_bytes())
        except orjson.JSONDecodeError as e:
            raise ToolkitError(f"{p}: unreadable tags file: {e}") from None

    def resolve(self, ref: str) -> Version:
        """``name`` (latest), ``name@v3``, ``name@3``, ``name@latest`` or ``name@<tag>``."""
        name, _, sel = ref.partition("@")
        if not NAME_RE.match(name):
            raise ToolkitError(
                f"{ref!r} is not a dataset reference (expected NAME, NAME@vN or NAME@TAG)"
            )
        nums = self._version_numbers(name)
        if not nums:
            known = self.names()
            hint = (
                f"; datasets under {self.root}: {', '.join(known)}"
                if known
                else f"; {self.root} holds no datasets"
            )
            raise ToolkitError(f"no dataset named {name!r}{hint}")
        if not sel or sel == "latest":
            n = nums[-1]
        elif re.fullmatch(r"v?[0-9]+", sel):
            n = int(sel.lstrip("v"))
            if n not in nums:
                raise ToolkitError(
                    f"{name} has no version v{n} (versions: {', '.join(f'v{x}' for x in nums)})"
                )
        else:
            tags = self.tags(name)
            if sel not in tags:
                have = ", ".join(sorted(tags)) or "none"
                raise ToolkitError(f"{name} has no tag {sel!r} (tags: {have})")
            n = tags[sel]
        return Version(name, n, self.root / name / f"v{n}")

    def listing(self) -> list[dict[str, Any]]:
        """Every dataset with its latest version, kind, size and tags (``datakit ls``)."""
        rows = []
        for name in self.names():
            versions = self.versions(name)
            m = versions[-1].manifest()
            rows.append(
                {
                    "name": name,
                    "latest": versions[-1].ref,
                    "versions": len(versions),
                    "kind": m["kind"],
                    "count": m["count"],
                    "tags": self.tags(name),
                }
            )
        return rows

    def history(self, name: str) -> list[dict[str, Any]]:
        """The versions of ``name``, newest first, with what made each (``datakit log``)."""
        self.resolve(name.split("@")[0])  # a clear error for an unknown name
        tags_by_version: dict[int, list[str]] = {}
        for t, n in self.tags(name).items():
            tags_by_version.setdefault(n, []).append(t)
        rows = []
        for v in reversed(self.versions(name)):
            m = v.manifest()
            rows.append(
                {
                    "ref": v.ref,
                    "created": m["created"],
                    "kind": m["kind"],
                    "count": m["count"],
                    "step": m["step"]["name"],
                    "parents": m["parents"],
                    "tags": sorted(tags_by_version.get(v.version, [])),
                    "message": m.get("message"),
                }
            )
        return rows

    # ------------------------------------------------------------------ writing

    def _lock(self, name: str):
        from filelock import FileLock

        return FileLock(str(self.root / name / ".lock"), timeout=600)

    def write(
        self,
        name: str,
        records: Iterable[Record],
        kind: str,
        *,
        parents: Iterable[str] = (),
        step: str = "write",
        config: Any = None,
        message: str | None = None,
        source: str = "<records>",
        reuse_identical: bool = False,
        extra_files: dict[str, Iterable[Any]] | None = None,
        extra_stats: dict[str, Any] | Callable[[], dict[str, Any]] | None = None,
        prevalidated: bool = False,
    ) -> Version:
        """Validate and store ``records`` as the next version of ``name``; atomic.

        Records get their content-hash ``id`` and a ``meta`` object if missing. An invalid
        record or a duplicate id raises ToolkitError and leaves no version behind. With
        ``reuse_identical``, records byte-identical to the latest version (same kind) return
        that version, marked ``reused``, instead of adding a copy. ``extra_files`` (name ->
        JSON rows, e.g. the rejects of a curation step) are written beside records.jsonl,
        inside the same atomic rename; ``extra_stats`` are merged into the manifest stats (a
        callable is asked after the records are written, for counts made while reading them).
        ``prevalidated`` skips the schema check for records the caller has just checked
        against the same kind's validator (the importer does, to name file:line).
        """
        if not NAME_RE.match(name):
            raise ToolkitError(
                f"invalid dataset name {name!r}: use letters, digits, '.', '_' or '-'"
            )
        check_kind(kind)
        ds_dir = self.root / name
        created = not ds_dir.exists()
        try:
            ds_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ToolkitError(f"{ds_dir}: cannot create: {e.strerror or e}") from None
        tmp = ds_dir / f"{_TMP_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            written = _write_records(
                tmp / "records.jsonl", records, kind, source, check=not prevalidated
            )
            for fname, rows in (extra_files or {}).items():
                _write_extra(tmp, fname, rows)
            st = written.stats
            st.update((extra_stats() if callable(extra_stats) else extra_stats) or {})
            manifest: dict[str, Any] = {
                "format_version": 1,
                "name": name,
                "version": 0,
                "kind": kind,
                "count": st["records"],
                "sha256": written.sha256,
                "bytes": written.size,
                "parents": list(parents),
                "step": {"name": step, "config": config, "config_hash": config_hash(config)},
                "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "stats": st,
            }
            if message:
                manifest["message"] = message
            return self._commit(name, tmp, manifest, reuse_identical)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            if created:  # a failed first version leaves no empty dataset behind
                with contextlib.suppress(OSError):
                    ds_dir.rmdir()
            raise

    def _commit(
        self, name: str, tmp: Path, manifest: dict[str, Any], reuse_identical: bool
    ) -> Version:
        """Number the version, write its manifest and rename it into place, under the lock."""
        ds_dir = tmp.parent
        with self._lock(name):
            self._sweep_stale_tmp(ds_dir)
            nums = self._version_numbers(name)
            if reuse_identical and nums:
                latest = Version(name, nums[-1], ds_dir / f"v{nums[-1]}")
                lm = latest.manifest()
                if lm["sha256"] == manifest["sha256"] and lm["kind"] == manifest["kind"]:
                    shutil.rmtree(tmp, ignore_errors=True)
                    return Version(name, latest.version, latest.path, reused=True)
            n = (nums[-1] if nums else 0) + 1
            manifest["version"] = n
            _write_file(tmp / "manifest.json", orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
            _before_rename_hook(tmp)
            final = ds_dir / f"v{n}"
            os.rename(tmp, final)
            _fsync_dir(ds_dir)
        log.info("wrote %s@v%d (%d records)", name, n, manifest["count"])
        return Version(name, n, final)

    def _sweep_stale_tmp(self, ds_dir: Path) -> None:
        """Remove temp directories left by writers that died (their pid is gone)."""
        for p in ds_dir.glob(f"{_TMP_PREFIX}*"):
            try:
                pid = int(p.name[len(_TMP_PREFIX) :].split("-")[0])
            except ValueError:
                continue
            if pid != os.getpid() and not _pid_alive(pid):
                shutil.rmtree(p, ignore_errors=True)

    def tag(self, ref: str, tag: str, force: bool = False) -> Version:
        if not NAME_RE.match(tag) or re.fullmatch(r"v?[0-9]+|latest", tag):
            raise ToolkitError(
                f"invalid tag {tag!r}: a tag is a name (not 'latest' and not like v3)"
            )
        v = self.resolve(ref)
        with self._lock(v.name):
            tags = self.tags(v.name)
            if tag in tags and tags[tag] != v.version and not force:
                raise ToolkitError(
                    f"tag {tag!r} already points to {v.name}@v{tags[tag]}; use --force to move it"
                )
            tags[tag] = v.version
            atomic_write_bytes(
                self.root / v.name / "tags.json",
                orjson.dumps(tags, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n",
            )
        return v

    # ------------------------------------------------------------------ comparing

    def diff(self, a: str, b: str) -> dict[str, Any]:
        """Records added, removed and changed from a to b, matched by id.

        A record with the same id whose content fields differ is ``changed``; one whose
        content is equal but whose ``meta`` differs is ``meta_changed`` (two imports of the
        same rows from different files differ only in ``meta.origin``), with a count of the
        meta keys that differ in ``meta_keys``.
        """
        va, vb = self.resolve(a), self.resolve(b)
        ra = {r["id"]: r for r in va.records()}
        added, changed, meta_changed = [], [], []
        meta_keys: dict[str, int] = {}
        seen = 0
        ids_b: set[str] = set()
        for rec in vb.records():
            ids_b.add(rec["id"])
            old = ra.get(rec["id"])
            if old is None:
                added.append(rec)
                continue
            seen += 1
            if old == rec:
                continue
            if {k: v for k, v in old.items() if k != "meta"} != {
                k: v for k, v in rec.items() if k != "meta"
            }:
                changed.append((old, rec))
                continue
            meta_changed.append((old, rec))
            ma, mb = old.get("meta") or {}, rec.get("meta") or {}
            for k in sorted(set(ma) | set(mb)):
                if ma.get(k) != mb.get(k):
                    meta_keys[k] = meta_keys.get(k, 0) + 1
        removed = [r for i, r in ra.items() if i not in ids_b]
        return {
            "a": va.ref,
            "b": vb.ref,
            "added": added,
            "removed": removed,
            "changed": changed,
            "meta_changed": meta_changed,
            "meta_keys": dict(sorted(meta_keys.items())),
            "unchanged": seen - len(changed) - len(meta_changed),
        }
