"""Export of stored records to outside formats (trl, alpaca, sharegpt, openai):
``to_export_row`` converts one record, ``export_records`` writes a file atomically."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from corekit.errors import ToolkitError
from corekit.runs import atomic_file

from .records import Record, conversation, messages_to_instruction

EXPORT_FORMATS = ("trl", "alpaca", "sharegpt", "openai")
_ROLE_TO_SHAREGPT = {"user": "human", "assistant": "gpt", "system": "system", "tool": "observation"}


def _conversation(rec: Record, kind: str) -> list[dict[str, Any]]:
    if kind not in ("chat", "instruction"):
        raise ToolkitError(f"{kind} records have no conversation to export")
    return conversation(rec)


def _to_openai_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for m in messages:
        m2 = dict(m)
        if m.get("tool_calls"):
            m2["tool_calls"] = [
                {
                    **({"id": c["id"]} if "id" in c else {}),
                    "type": "function",
                    "function": {
                        "name": c["function"]["name"],
                        "arguments": json.dumps(c["function"]["arguments"], ensure_ascii=False),
                    },
                }
                for c in m["tool_calls"]
            ]
        out.append(m2)
    return out


def to_export_row(rec: Record, kind: str, fmt: str) -> dict[str, Any]:
    """One stored record in an export format (ids and meta stay behind)."""
    if fmt == "trl":
        from .trainer_rows import export_row

        return export_row(rec, kind)
    if fmt == "openai":
        out: dict[str, Any] = {"messages": _to_openai_messages(_conversation(rec, kind))}
        if rec.get("tools"):
            out["tools"] = rec["tools"]
        return out
    if fmt == "sharegpt":
        convs = []
        for m in _conversation(rec, kind):
            if m.get("tool_calls"):
                if m.get("content"):
                    convs.append({"from": "gpt", "value": m["content"]})
                for c in m["tool_calls"]:
                    convs.append(
                        {
                            "from": "function_call",
                            "value": json.dumps(
                                {
                                    "name": c["function"]["name"],
                                    "arguments": c["function"]["arguments"],
                                },
                                ensure_ascii=False,
                            ),
                        }
                    )
            else:
                convs.append(
                    {"from": _ROLE_TO_SHAREGPT[m["role"]], "value": m.get("content") or ""}
                )
        return {"conversations": convs}
    if fmt == "alpaca":
        if kind == "instruction":
            return {
                "instruction": rec["instruction"],
                "input": rec.get("input", ""),
                "output": rec["output"],
            }
        if kind == "chat":
            fields = messages_to_instruction(rec["messages"])
            if fields is None:
                raise ToolkitError(
                    f"record {rec.get('id')}: alpaca holds one user/assistant exchange; this conversation has "
                    f"{len(rec['messages'])} messages or tool calls (export it as sharegpt, openai or trl)"
                )
            return fields
        raise ToolkitError(f"alpaca export covers instruction and chat records, not {kind}")
    raise ToolkitError(f"unknown export format {fmt!r}; choose one of: {', '.join(EXPORT_FORMATS)}")


def export_records(records: Iterator[Record], kind: str, fmt: str, out_path: str | Path) -> int:
    """Write converted records to ``out_path`` (JSON array if it ends in .json, else JSONL).

    Written to a temporary file and renamed, so a failure leaves no partial output.
    """
    out = Path(out_path)
    if out.parent and not out.parent.exists():
        raise ToolkitError(f"{out}: directory {out.parent} does not exist")
    as_array = out.suffix == ".json"
    n = 0
    with atomic_file(out) as tmp, open(tmp, "wb") as f:
        if as_array:
            f.write(b"[\n")
        for rec in records:
            line = orjson.dumps(to_export_row(rec, kind, fmt))
            if as_array:
                f.write((b",\n" if n else b"") + line)
            else:
                f.write(line + b"\n")
            n += 1
        if as_array:
            f.write(b"\n]\n")
    return n
