"""Validate JSONL record files against the record schemas.

Fast path: orjson parses each line and jsonschema-rs (a compiled Rust validator) gives the
verdict; only a record that fails is re-checked with Python ``jsonschema``'s
``Draft7Validator.iter_errors``, whose messages and JSON paths are the ones we report. Both
read the same schema file, so verdicts agree (a differential unit test and
bench/validate.py check this).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from corekit.errors import ToolkitError
from corekit.schemas import load_schema

from .records import check_kind, infer_kind

DEFAULT_MAX_LINE_BYTES = 64 * 1024 * 1024
_BOM = b"\xef\xbb\xbf"


@dataclass
class Problem:
    """One thing wrong with one line: where (line, JSON path) and what."""

    line: int | None
    path: str
    message: str

    def format(self, file: str) -> str:
        loc = f"{file}:{self.line}" if self.line is not None else file
        return f"{loc}: {self.path}: {self.message}" if self.path else f"{loc}: {self.message}"


@dataclass
class Report:
    file: str
    kind: str | None
    records: int = 0
    invalid: int = 0
    problems: list[Problem] = field(default_factory=list)
    truncated: bool = False

    @property
    def ok(self) -> bool:
        return self.invalid == 0 and not self.problems

    def summary(self) -> str:
        """The one-line verdict ``datakit validate`` prints after the problems."""
        verdict = "ok" if self.ok else "INVALID"
        if self.kind is None:  # not one line parsed, so no kind could be inferred
            return (
                f"{verdict}: {self.file}: no parseable record in {self.records} "
                f"non-blank line{'s' if self.records != 1 else ''}"
            )
        valid = self.records - self.invalid
        return f"{verdict}: {self.file}: {valid} of {self.records} {self.kind} records valid, {self.invalid} invalid"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["valid"] = self.records - self.invalid
        d["ok"] = self.ok
        return d


def json_path(parts: Any) -> str:
    out = "$"
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        elif isinstance(p, str) and p.isidentifier():
            out += f".{p}"
        else:
            out += f"[{orjson.dumps(p).decode()}]"
    return out


def _describe(err: Any) -> str:
    """jsonschema's message, sharpened for anyOf/oneOf where the bare message says little."""
    msg = err.message
    props = err.schema.get("properties") if isinstance(err.schema, dict) else None
    if err.validator == "additionalProperties" and isinstance(err.instance, dict) and props:
        import difflib

        extra = [k for k in err.instance if k not in props]
        if extra:
            hint = difflib.get_close_matches(str(extra[0]), list(props), n=1)
            more = f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""
            return f"unknown key {extra[0]!r}{more}" + (
                f"; did you mean {hint[0]!r}?" if hint else f" (allowed: {', '.join(props)})"
            )
    if err.validator == "required" and isinstance(err.instance, dict):
        import difflib

        missing = err.validator_value
        want = next((k for k in missing if k not in err.instance), None)
        unknown = [k for k in err.instance if not props or k not in props]
        close = difflib.get_close_matches(str(want), [str(k) for k in unknown], n=1)
        if want is not None and close:
            return f"{msg}; is {close[0]!r} a misspelling of {want!r}?"
    if err.validator in ("anyOf", "oneOf") and err.context:
        # The deepest sub-error usually names the actual problem (e.g. a bad role inside a
        # message list of a preference record).
        deepest = max(err.context, key=lambda e: len(e.absolute_path))
        if len(deepest.absolute_path) > len(err.absolute_path):
            return f"{json_path(deepest.absolute_path)}: {deepest.message}"
        types = [e.validator_value for e in err.context if e.validator == "type"]
        if types and len(types) == len(err.context):
            return f"{err.instance!r:.60} is not of type " + " or ".join(repr(t) for t in types)
        if (
            err.validator == "oneOf"
            and err.schema.get("oneOf")
            and all("required" in s for s in err.schema["oneOf"])
        ):
            names = " or ".join(repr(s["required"][0]) for s in err.schema["oneOf"])
            return f"needs exactly one of {names}"
    if len(msg) > 300:
        msg = msg[:300] + "..."
    return msg


class RecordValidator:
    """Checks records of one kind: ``is_valid`` is the fast verdict, ``errors`` the full list."""

    def __init__(self, kind: str):
        import jsonschema
        import jsonschema_rs

        self.kind = check_kind(kind)
        self._fast = jsonschema_rs.Draft7Validator(load_schema(kind))
        self._full = jsonschema.Draft7Validator(load_schema(kind))

    def is_valid(self, record: Any) -> bool:
        return self._fast.is_valid(record)

    def check(self, record: Any, where: str) -> None:
        """Raise the error contract's one line, ``WHERE: $.path: message``, for an invalid
        record (its first problem); nothing for a valid one."""
        if self._fast.is_valid(record):
            return
        if not isinstance(record, dict):
            raise ToolkitError(f"{where}: $: expected a JSON object, got {_json_type(record)}")
        path, msg = self.errors(record)[0]
        raise ToolkitError(f"{where}: {path}: {msg}")

    def errors(self, record: Any) -> list[tuple[str, str]]:
        errs = sorted(
            self._full.iter_errors(record), key=lambda e: [str(p) for p in e.absolute_path]
        )
        out = []
        seen = set()
        for e in errs:
            # The schema states some constraints twice (a property's type, then the stricter
            # branch of an if/then/else); one message per place and kind of check is enough.
            key = (tuple(e.absolute_path), e.validator)
            if key in seen:
                continue
            seen.add(key)
            msg = _describe(e)
            if msg.startswith("$"):
                path, _, msg = msg.partition(": ")
            else:
                path = json_path(e.absolute_path)
            out.append((path, msg))
        return out


@functools.cache
def validator_for(kind: str) -> RecordValidator:
    return RecordValidator(kind)


def iter_lines(
    path: str | Path,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    on_bytes: Callable[[int], None] | None = None,
) -> Iterator[tuple[int, Any, Problem | None]]:
    """Yield ``(line_no, obj, None)`` per parsed line or ``(line_no, None, problem)``.

    Blank lines are skipped. A line longer than ``max_line_bytes`` is reported and skipped
    without being held in memory. ``on_bytes(n)`` is called with the bytes read since its last
    call, every few thousand lines (for progress bars). Raises ToolkitError for a missing or
    unreadable file.
    """
    p = Path(path)
    if not p.exists():
        raise ToolkitError(f"{path}: no such file")
    if p.is_dir():
        raise ToolkitError(f"{path}: is a directory, expected a JSONL file")
    try:
        f = open(p, "rb")
    except OSError as e:
        raise ToolkitError(f"{path}: cannot read: {e.strerror}") from None
    with f:
        lineno = 0
        reported = 0
        while True:
            raw = f.readline(max_line_bytes + 1)
            if not raw:
                if on_bytes is not None:
                    on_bytes(f.tell() - reported)
                return
            lineno += 1
            if on_bytes is not None and lineno % 4096 == 0:
                pos = f.tell()
                on_bytes(pos - reported)
                reported = pos
            if lineno == 1 and raw.startswith(_BOM):
                raw = raw[len(_BOM) :]
            if len(raw) > max_line_bytes and not raw.endswith(b"\n"):
                size = len(raw)
                while chunk := f.readline(1 << 20):  # skip the rest of the line
                    size += len(chunk)
                    if chunk.endswith(b"\n"):
                        break
                yield (
                    lineno,
                    None,
                    Problem(
                        lineno,
                        "",
                        f"line is {size / 2**20:.1f} MiB, over the {max_line_bytes / 2**20:.0f} MiB limit per record (--max-line-mb)",
                    ),
                )
                continue
            if not raw.strip():
                continue
            try:
                obj = orjson.loads(raw)
            except orjson.JSONDecodeError as e:
                if lineno == 1 and raw.lstrip().startswith(b"["):
                    raise ToolkitError(
                        f"{path}:1: the file holds one JSON array, not JSON Lines (one object "
                        f"per line); convert it first, e.g. jq -c '.[]' {path} > records.jsonl"
                    ) from None
                if not raw.endswith(b"\n") and not f.read(1):
                    msg = "truncated last line (no newline at the end; was the file cut off?): "
                    yield lineno, None, Problem(lineno, "", msg + _parse_problem(raw, e))
                    continue
                yield lineno, None, Problem(lineno, "", _parse_problem(raw, e))
                continue
            yield lineno, obj, None


def _parse_problem(raw: bytes, err: Exception) -> str:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as u:
        return f"invalid UTF-8 at byte {u.start} of the line"
    msg = str(err).split(": line")[0]
    return f"malformed JSON: {msg}"


def validate_file(
    path: str | Path,
    kind: str | None = None,
    max_problems: int = 1000,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    on_bytes: Callable[[int], None] | None = None,
) -> Report:
    """Validate every line of a JSONL file; the kind is inferred from the first record if None.

    Collects at most ``max_problems`` problems (counts stay exact beyond that).
    """
    report = Report(file=str(path), kind=kind)
    validator = validator_for(kind) if kind else None
    seen_ids: dict[str, int] = {}

    def add(problem: Problem) -> None:
        if len(report.problems) < max_problems:
            report.problems.append(problem)
        else:
            report.truncated = True

    for lineno, obj, problem in iter_lines(path, max_line_bytes, on_bytes):
        report.records += 1
        if problem is not None:
            report.invalid += 1
            add(problem)
            continue
        if validator is None:
            guessed = infer_kind(obj)
            if guessed is None:
                keys = ", ".join(sorted(obj)[:8]) if isinstance(obj, dict) else type(obj).__name__
                raise ToolkitError(
                    f"{path}:{lineno}: cannot tell the record kind from the keys ({keys}); pass --schema KIND"
                )
            report.kind = guessed
            validator = validator_for(guessed)
        if validator.is_valid(obj):
            rid = obj.get("id")
            if rid is not None:
                first = seen_ids.setdefault(rid, lineno)
                if first != lineno:
                    report.invalid += 1
                    add(Problem(lineno, "$.id", f"duplicate id {rid!r} (first on line {first})"))
            continue
        report.invalid += 1
        if not isinstance(obj, dict):
            add(Problem(lineno, "$", f"expected a JSON object, got {_json_type(obj)}"))
            continue
        for jpath, msg in validator.errors(obj):
            add(Problem(lineno, jpath, msg))
    if report.records == 0:
        raise ToolkitError(f"{path}: file is empty (no records)")
    return report


def _json_type(obj: Any) -> str:
    return {
        list: "an array",
        str: "a string",
        int: "a number",
        float: "a number",
        bool: "a boolean",
    }.get(type(obj), "null" if obj is None else type(obj).__name__)
