"""Readers of outside dataset formats (JSONL, Alpaca, ShareGPT, OpenAI, Self-Instruct,
XSTest, CSV): each yields ``(location, record)`` pairs of one kind and raises ToolkitError
naming the file, the line (or item) and the field of the first bad input. ``formats.
read_source`` picks the reader."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from corekit.errors import ToolkitError
from corekit.schemas import load_schema

from .records import Record, check_kind, infer_kind
from .validate import iter_lines

# ShareGPT speaker names seen in the wild, mapped to our roles.
_SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "model": "assistant",
    "chatgpt": "assistant",
    "bing": "assistant",
    "bard": "assistant",
    "system": "system",
    "tool": "tool",
    "observation": "tool",
    "function_response": "tool",
}

Located = tuple[str, Record]  # ("line 3" / "item 3", record)


def _items(path: Path) -> Iterator[tuple[str, Any]]:
    """Items of a JSON array file or a JSONL file, each with its location."""
    with open(path, "rb") as f:
        head = f.read(4096).lstrip()
    if head.startswith(b"\xef\xbb\xbf"):
        head = head[3:].lstrip()
    if head.startswith(b"["):
        try:
            data = orjson.loads(path.read_bytes().removeprefix(b"\xef\xbb\xbf"))
        except orjson.JSONDecodeError as e:
            raise ToolkitError(f"{path}: malformed JSON: {str(e).split(': line')[0]}") from None
        for i, obj in enumerate(data, 1):
            yield f"item {i}", obj
        return
    for lineno, obj, problem in iter_lines(path):
        if problem is not None:
            raise ToolkitError(problem.format(str(path)))
        yield str(lineno), obj


def _need(obj: Any, field: str, loc: str, path: Path, types: type | tuple[type, ...] = str) -> Any:
    if not isinstance(obj, dict):
        raise ToolkitError(f"{path}:{loc}: expected a JSON object")
    if field not in obj:
        raise ToolkitError(f"{path}:{loc}: {field}: missing field")
    val = obj[field]
    if not isinstance(val, types):
        raise ToolkitError(
            f"{path}:{loc}: {field}: expected {getattr(types, '__name__', types)}, got {type(val).__name__}"
        )
    return val


def _origin(
    meta: dict[str, Any] | None, fmt: str, path: Path, source: str = "import"
) -> dict[str, Any]:
    m = dict(meta or {})
    m.setdefault("source", source)
    m.setdefault("origin", {"format": fmt, "file": path.name})
    return m


def read_jsonl(path: Path, kind: str | None) -> tuple[str, Iterator[Located]]:
    it = iter(_items(path))
    try:
        loc, first = next(it)
    except StopIteration:
        raise ToolkitError(f"{path}: file is empty (no records)") from None
    if kind is None:
        kind = infer_kind(first)
        if kind is None:
            keys = ", ".join(sorted(first)[:8]) if isinstance(first, dict) else type(first).__name__
            raise ToolkitError(
                f"{path}:{loc}: cannot tell the record kind from the keys ({keys}); pass --kind"
            )

    def gen() -> Iterator[Located]:
        yield loc, first
        yield from it

    def tagged() -> Iterator[Located]:
        for loc_, obj in gen():
            if isinstance(obj, dict):
                obj = {
                    **obj,
                    "meta": _origin(
                        obj.get("meta"),
                        "jsonl",
                        path,
                        (obj.get("meta") or {}).get("source", "import"),
                    ),
                }
            yield loc_, obj

    return kind, tagged()


def read_alpaca(path: Path) -> Iterator[Located]:
    for loc, obj in _items(path):
        rec = {
            "instruction": _need(obj, "instruction", loc, path),
            "input": obj.get("input") or "",
            "output": _need(obj, "output", loc, path),
        }
        if not isinstance(rec["input"], str):
            raise ToolkitError(
                f"{path}:{loc}: input: expected str, got {type(rec['input']).__name__}"
            )
        yield loc, {**rec, "meta": _origin(None, "alpaca", path)}


def read_sharegpt(path: Path) -> Iterator[Located]:
    for loc, obj in _items(path):
        convs = _need(obj, "conversations", loc, path, list)
        messages = []
        if isinstance(obj.get("system"), str) and obj["system"]:
            messages.append({"role": "system", "content": obj["system"]})
        for j, turn in enumerate(convs):
            field = f"conversations[{j}]"
            if not isinstance(turn, dict):
                raise ToolkitError(
                    f"{path}:{loc}: {field}: expected an object with 'from' and 'value'"
                )
            speaker = turn.get("from")
            value = turn.get("value")
            if speaker == "function_call":
                call = _parse_json_field(value, f"{field}.value", loc, path)
                msg = {
                    "role": "assistant",
                    "content": "",
                    "tool_calls": [_tool_call(call, f"{field}.value", loc, path)],
                }
                if (
                    messages
                    and messages[-1]["role"] == "assistant"
                    and messages[-1].get("tool_calls")
                    and not messages[-1]["content"]
                ):
                    messages[-1]["tool_calls"].extend(msg["tool_calls"])
                else:
                    messages.append(msg)
                continue
            if speaker not in _SHAREGPT_ROLES:
                raise ToolkitError(
                    f"{path}:{loc}: {field}.from: unknown speaker {speaker!r} (known: {', '.join(sorted(_SHAREGPT_ROLES))}, function_call)"
                )
            if not isinstance(value, str):
                raise ToolkitError(f"{path}:{loc}: {field}.value: expected a string")
            messages.append({"role": _SHAREGPT_ROLES[speaker], "content": value})
        yield loc, {"messages": messages, "meta": _origin(None, "sharegpt", path)}


def _parse_json_field(value: Any, field: str, loc: str, path: Path) -> Any:
    if isinstance(value, (dict, list)):
        return value
    try:
        return json.loads(value)
    except (TypeError, ValueError):
        raise ToolkitError(
            f"{path}:{loc}: {field}: expected JSON text, got {str(value)[:40]!r}"
        ) from None


def _tool_call(call: Any, field: str, loc: str, path: Path) -> dict[str, Any]:
    """Normalise a tool call to {"type": "function", "function": {"name", "arguments": {...}}}."""
    if not isinstance(call, dict):
        raise ToolkitError(f"{path}:{loc}: {field}: expected an object")
    fn = call.get("function", call)
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
        raise ToolkitError(f"{path}:{loc}: {field}: a tool call needs a function name")
    args = fn.get("arguments", {})
    if isinstance(args, str):
        args = _parse_json_field(args or "{}", f"{field}.arguments", loc, path)
    if not isinstance(args, dict):
        raise ToolkitError(f"{path}:{loc}: {field}.arguments: expected a JSON object")
    out: dict[str, Any] = {"type": "function", "function": {"name": fn["name"], "arguments": args}}
    if isinstance(call.get("id"), str):
        out = {"id": call["id"], **out}
    return out


def read_openai(path: Path) -> Iterator[Located]:
    """OpenAI chat fine-tuning format: {"messages": [...], "tools"?: [...]}."""
    for loc, obj in _items(path):
        msgs = _need(obj, "messages", loc, path, list)
        out = []
        for j, m in enumerate(msgs):
            field = f"messages[{j}]"
            if not isinstance(m, dict):
                raise ToolkitError(f"{path}:{loc}: {field}: expected an object")
            msg = {k: m[k] for k in ("role", "content", "tool_call_id", "name") if k in m}
            if isinstance(msg.get("content"), list):  # content parts: keep the text parts
                msg["content"] = "".join(
                    p.get("text", "") for p in msg["content"] if isinstance(p, dict)
                )
            if m.get("tool_calls"):
                msg["tool_calls"] = [
                    _tool_call(c, f"{field}.tool_calls[{k}]", loc, path)
                    for k, c in enumerate(m["tool_calls"])
                ]
            out.append(msg)
        rec: Record = {"messages": out}
        if obj.get("tools"):
            rec["tools"] = obj["tools"]
        yield loc, {**rec, "meta": _origin(None, "openai", path)}


def read_self_instruct(path: Path) -> Iterator[Located]:
    """Self-Instruct seed tasks: one instruction record per instance."""
    for loc, obj in _items(path):
        instruction = _need(obj, "instruction", loc, path)
        instances = _need(obj, "instances", loc, path, list)
        if not instances:
            raise ToolkitError(f"{path}:{loc}: instances: empty list")
        for j, inst in enumerate(instances):
            out = _need(inst, "output", f"{loc}: instances[{j}]", path)
            meta = _origin(None, "self-instruct", path, "seed")
            meta.update(
                task_name=obj.get("name"),
                task_id=obj.get("id"),
                is_classification=bool(obj.get("is_classification")),
            )
            yield (
                loc,
                {
                    "instruction": instruction,
                    "input": inst.get("input") or "",
                    "output": out,
                    "meta": meta,
                },
            )


def _decode_error(path: Path, e: UnicodeDecodeError, encoding: str) -> ToolkitError:
    return ToolkitError(
        f"{path}: not {encoding} (byte 0x{e.object[e.start]:02x} at offset {e.start}); "
        "pass --encoding (e.g. --encoding latin-1 or cp1252)"
    )


def _open_text(path: Path, encoding: str) -> Any:
    enc = "utf-8-sig" if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else encoding
    try:
        return open(path, newline="", encoding=enc)
    except LookupError:
        raise ToolkitError(f"--encoding {encoding}: unknown encoding") from None


def _csv_rows(
    path: Path, required: tuple[str, ...] = (), encoding: str = "utf-8"
) -> Iterator[tuple[str, dict[str, str]]]:
    with _open_text(path, encoding) as f:
        reader = csv.DictReader(f)
        try:
            header = reader.fieldnames or []
        except UnicodeDecodeError as e:
            raise _decode_error(path, e, encoding) from None
        except csv.Error as e:
            raise ToolkitError(f"{path}:1: unreadable CSV: {e}") from None
        missing = [c for c in required if c not in header]
        if missing:
            raise ToolkitError(
                f"{path}:1: missing column(s) {', '.join(missing)} (header: {', '.join(header)})"
            )
        try:
            for row in reader:
                if None in row:  # more cells than the header names
                    raise ToolkitError(
                        f"{path}:{reader.line_num}: {len(header) + len(row[None])} cells, "
                        f"the header names {len(header)}"
                    )
                yield str(reader.line_num), row
        except UnicodeDecodeError as e:
            raise _decode_error(path, e, encoding) from None
        except csv.Error as e:
            raise ToolkitError(f"{path}:{reader.line_num + 1}: unreadable CSV: {e}") from None


def read_xstest(path: Path, encoding: str = "utf-8") -> Iterator[Located]:
    """XSTest prompts: safe prompts should be answered (comply), unsafe ones refused."""
    for loc, row in _csv_rows(path, ("prompt", "label"), encoding):
        label = (row.get("label") or "").strip()
        if label not in ("safe", "unsafe"):
            raise ToolkitError(f"{path}:{loc}: label: expected 'safe' or 'unsafe', got {label!r}")
        meta = _origin(None, "xstest", path)
        meta.update({k: row[k] for k in ("type", "focus", "note") if row.get(k)})
        if row.get("id"):
            meta["xstest_id"] = row["id"]
        yield (
            loc,
            {
                "prompt": row["prompt"],
                "expected": "refuse" if label == "unsafe" else "comply",
                "task": "xstest",
                "meta": meta,
            },
        )


_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f"}


def read_csv(
    path: Path, kind: str | None, encoding: str = "utf-8", keep_unknown: bool = False
) -> tuple[str, Iterator[Located]]:
    with _open_text(path, encoding) as f:
        try:
            header = next(csv.reader(f), None)
        except UnicodeDecodeError as e:
            raise _decode_error(path, e, encoding) from None
        except csv.Error as e:
            raise ToolkitError(f"{path}:1: unreadable CSV: {e}") from None
    if not header:
        raise ToolkitError(f"{path}: file is empty (no header row)")
    kind = kind or infer_kind({h: None for h in header})
    if kind is None:
        raise ToolkitError(
            f"{path}:1: cannot tell the record kind from the columns ({', '.join(header)}); pass --kind"
        )
    props = load_schema(check_kind(kind))["properties"]
    known = [c for c in props if c != "meta"]
    unknown = [h for h in header if h not in props and h != "id"]
    if unknown and not keep_unknown:
        from corekit.errors import did_you_mean

        col = unknown[0]
        more = f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""
        raise ToolkitError(
            f"{path}:1: column {col!r}{more} is not a field of {kind} records"
            f"{did_you_mean(col, known, 'fields')}; --keep-unknown keeps such columns "
            "in meta.extra"
        )

    def gen() -> Iterator[Located]:
        for loc, row in _csv_rows(path, (), encoding):
            rec: Record = {}
            extra = {c: row[c] for c in unknown if row.get(c) not in (None, "")}
            for col, val in row.items():
                if col not in props or col in ("id",) or val is None or val == "":
                    continue
                typ = props[col].get("type")
                if col == "label" or typ == "boolean":
                    low = val.strip().lower()
                    if low not in _TRUE | _FALSE:
                        raise ToolkitError(f"{path}:{loc}: {col}: expected true/false, got {val!r}")
                    rec[col] = low in _TRUE
                elif (
                    typ in ("array", "object")
                    or "$ref" in props[col]
                    or col in ("messages", "meta")
                ):
                    stripped = val.strip()
                    if col == "references" and not stripped.startswith("["):
                        rec[col] = [val]
                    else:
                        rec[col] = _parse_json_field(val, col, loc, path)
                else:
                    rec[col] = val
            rec["meta"] = _origin(rec.get("meta"), "csv", path)
            if extra:
                rec["meta"]["extra"] = extra
            yield loc, rec

    return kind, gen()
