"""Record kinds, stable content ids and conversions between record shapes.

One JSON object per JSONL line; the shapes follow TRL's dataset formats (see
``schemas/records/``). Every record carries a stable ``id`` (a hash of its content fields)
and a ``meta`` object with its provenance.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

import orjson

from corekit.errors import ToolkitError
from corekit.schemas import RECORD_KINDS, content_fields

Record = dict[str, Any]

# Keys whose presence identifies a kind, most specific first. Used when --schema/--kind is
# omitted; the schema check still runs afterwards, so a wrong guess surfaces as field errors.
_KIND_SIGNATURES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("prediction", ("item_id",)),
    ("preference", ("chosen",)),
    ("preference", ("rejected",)),
    ("unpaired", ("completion",)),
    ("unpaired", ("label",)),
    ("eval_item", ("references",)),
    ("eval_item", ("expected",)),
    ("instruction", ("instruction",)),
    ("chat", ("messages",)),
    ("eval_item", ("prompt",)),
)

ID_LENGTH = 16  # hex chars of sha256: 64 bits, collision-free far beyond dataset sizes in use


def infer_kind(record: Any) -> str | None:
    """Guess the record kind from its keys; None when nothing matches."""
    if not isinstance(record, dict):
        return None
    for kind, keys in _KIND_SIGNATURES:
        if all(k in record for k in keys):
            return kind
    return None


def check_kind(kind: str) -> str:
    if kind not in RECORD_KINDS:
        raise ToolkitError(
            f"unknown record kind {kind!r}; choose one of: {', '.join(RECORD_KINDS)}"
        )
    return kind


def record_id(record: Record, kind: str) -> str:
    """Stable id: sha256 over the canonical JSON of the record's content fields.

    ``id`` and ``meta`` are left out, so the same content made by two different steps gets
    the same id, which is what ``datakit diff`` compares.
    """
    content = {k: record[k] for k in content_fields(kind) if k in record}
    blob = orjson.dumps(content, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(blob).hexdigest()[:ID_LENGTH]


class FirstCopies:
    """Exact duplicates by a key: the first item with each key is kept, every later one is a
    copy of it. The one helper of every exact-duplicate rule (import: the content id; a
    step's outputs: the record id; the dedup op's exact method: the normalised text's
    hash); each rule gives its own key."""

    def __init__(self) -> None:
        self._first: dict[Any, Any] = {}

    def copy_of(self, key: Any, where: Any) -> Any | None:
        """None for the first item with ``key`` (remembered as ``where``); for a later
        one, the first one's ``where``."""
        if key in self._first:
            return self._first[key]
        self._first[key] = where
        return None


def with_id(record: Record, kind: str) -> Record:
    """Return the record with ``id`` first and ``meta`` present (copies; input untouched)."""
    out: Record = {"id": record.get("id") or record_id(record, kind)}
    for k, v in record.items():
        if k not in ("id", "meta"):
            out[k] = v
    out["meta"] = dict(record.get("meta") or {})
    return out


# ------------------------------------------------------------------------ record views
#
# Every consumer (generators, judges, trainkit's data conversion, exports, the tiny model's
# pretraining text) reads records through these views, so all agree on one rule for
# conversations: the prompt is everything before the final assistant turn, and the response
# is that turn. A conversation that does not end with an assistant turn is all prompt.


def instruction_text(rec: Record) -> str:
    """An instruction record's instruction, with its input (if any) after a blank line."""
    text = rec["instruction"]
    return f"{text}\n\n{rec['input']}" if rec.get("input") else text


def instruction_to_messages(rec: Record) -> list[dict[str, str]]:
    """Alpaca instruction (+ optional input) and output as a user/assistant exchange."""
    return [
        {"role": "user", "content": instruction_text(rec)},
        {"role": "assistant", "content": rec.get("output") or ""},
    ]


def conversation(rec: Record) -> list[dict[str, Any]]:
    """The messages of a chat record, or an instruction record as a two-turn chat."""
    if "messages" in rec:
        return rec["messages"]
    if "instruction" in rec:
        return instruction_to_messages(rec)
    raise ToolkitError(f"record {rec.get('id')}: has no conversation (no messages or instruction)")


def as_turns(value: Any, role: str) -> list[dict[str, Any]]:
    """A prompt or answer given as text or as turns, as turns (copied): text becomes one
    turn of ``role``."""
    return (
        [dict(m) for m in value] if isinstance(value, list) else [{"role": role, "content": value}]
    )


def prompt_messages(rec: Record) -> list[dict[str, Any]]:
    """What a model is asked, as messages, for every record kind: an instruction as one user
    turn; a conversation without its final assistant turn; a ``prompt`` field (eval items,
    preference and unpaired records) as given, or as one user turn if it is a string."""
    if "instruction" in rec:
        return [{"role": "user", "content": instruction_text(rec)}]
    if rec.get("messages"):
        msgs = [dict(m) for m in rec["messages"]]
        if msgs[-1].get("role") == "assistant":
            msgs.pop()
        return msgs
    return as_turns(rec["prompt"], "user")


def answer_text(value: Any) -> str:
    """An answer given as text or as turns, as text: the last assistant turn's content, else
    every turn's content (or string) on its own line."""
    if isinstance(value, list):
        last = next(
            (
                m.get("content") or ""
                for m in reversed(value)
                if isinstance(m, dict) and m.get("role") == "assistant"
            ),
            "",
        )
        return last or "\n".join(
            str(m.get("content") or "") if isinstance(m, dict) else str(m) for m in value
        )
    return "" if value is None else str(value)


def response_text(rec: Record) -> str | None:
    """The answer a record holds, as text, for every record kind: an instruction's output, a
    conversation's final assistant turn, a preference's chosen answer, an unpaired
    completion. None for a record without one (an eval item, a conversation that ends with
    the user)."""
    if "instruction" in rec:
        return rec.get("output") or ""
    if "messages" in rec:
        msgs = rec.get("messages") or []
        if msgs and msgs[-1].get("role") == "assistant":
            return msgs[-1].get("content") or ""
        return None
    for key in ("chosen", "completion"):
        if key in rec:
            return answer_text(rec[key])
    return None


def editable_response(rec: Record) -> str | None:
    """The one answer a record holds that can be rewritten in place (``response_text``):
    None for a preference pair, whose two answers are judged together, and for a record
    without an answer."""
    return None if "chosen" in rec else response_text(rec)


def with_response(rec: Record, text: str) -> Record:
    """A copy of ``rec`` whose answer (``editable_response``: an instruction's output, a
    conversation's final assistant turn, an unpaired completion) is ``text``, without its
    content id (the content changed)."""
    if editable_response(rec) is None:
        raise ValueError("a record without one answer to rewrite (a preference pair, an eval item)")
    out = {k: v for k, v in rec.items() if k != "id"}
    if "instruction" in rec:
        out["output"] = text
    elif isinstance(rec.get("completion"), str):
        out["completion"] = text
    else:
        key = "completion" if "completion" in rec else "messages"
        out[key] = [*rec[key][:-1], {**rec[key][-1], "content": text}]
    return out


def _asked_turn(rec: Record) -> tuple[str, int | None]:
    """Where a record's request is: ("instruction", None), ("prompt", None) for a prompt
    given as text, or (key, index) of the last user turn of its messages or prompt turns
    (a conversation's last before its final answer)."""
    if "instruction" in rec:
        return "instruction", None
    key = "messages" if "messages" in rec else "prompt"
    turns = rec.get(key)
    if isinstance(turns, str):
        return key, None
    users = [k for k, m in enumerate(turns or []) if m.get("role") == "user"]
    return key, (users[-1] if users else None)


def asked_text(rec: Record) -> str:
    """What a record asks, as text: an instruction (without its input), a prompt given as
    text, or the last user turn of its messages or prompt turns ("" for none)."""
    key, k = _asked_turn(rec)
    if key == "instruction":
        return rec["instruction"]
    if k is None:
        return rec[key] if isinstance(rec.get(key), str) else ""
    return str(rec[key][k].get("content") or "")


def with_asked(rec: Record, text: str) -> Record:
    """A copy of ``rec`` asking ``text`` instead (``asked_text``'s place; the pair of
    ``with_response``), without its id and meta (the content changed)."""
    key, k = _asked_turn(rec)
    if k is None and not (key == "instruction" or isinstance(rec.get(key), str)):
        raise ValueError("a record that asks nothing to reword (no user turn)")
    out = {k: v for k, v in rec.items() if k not in ("id", "meta")}
    if k is None:
        out[key] = text
    else:
        out[key] = [dict(m) for m in rec[key]]
        out[key][k]["content"] = text
    return out


def exchange(rec: Record) -> tuple[str, str]:
    """(what was asked, what was answered) as text: the instruction (with its input) and
    output, or a conversation's last user turn before its final assistant turn and that
    turn. Empty strings where there is none."""
    if "instruction" in rec:
        return instruction_text(rec), rec.get("output") or ""
    response = response_text(rec) if "messages" in rec else None
    return asked_text(rec), response or ""


def preview(rec: Record, width: int = 160) -> str:
    """One line for people: what was asked and answered (or chosen over rejected)."""

    def short(text: Any) -> str:
        if isinstance(text, list):
            text = " / ".join(str(m.get("content") or "") for m in text)
        text = " ".join(str(text).split())
        return text if len(text) <= width else text[: width - 3] + "..."

    if "chosen" in rec:
        asked = prompt_messages(rec)[-1].get("content") or ""
        return f"Q: {short(asked)} | chosen: {short(rec['chosen'])} | rejected: {short(rec['rejected'])}"
    if "completion" in rec:
        good = "good" if rec.get("label") else "bad"
        return f"Q: {short(prompt_messages(rec)[-1].get('content'))} | {good}: {short(rec['completion'])}"
    asked, answered = exchange(rec)
    return f"Q: {short(asked)} | A: {short(answered)}"


def messages_to_instruction(messages: list[dict[str, Any]]) -> dict[str, str] | None:
    """A single user/assistant exchange (optionally after a system turn) as Alpaca fields.

    Returns None for conversations that do not fit (several turns, tool calls).
    """
    turns = [m for m in messages if m.get("role") != "system"]
    if len(turns) != 2 or turns[0].get("role") != "user" or turns[1].get("role") != "assistant":
        return None
    if turns[1].get("tool_calls"):
        return None
    return {
        "instruction": turns[0].get("content") or "",
        "input": "",
        "output": turns[1].get("content") or "",
    }


class StatsAccumulator:
    """Small per-version statistics for the manifest and ``datakit show``, one record at a time.

    Kept apart from writing: the store feeds it the records it writes, in the same pass.
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._fields = content_fields(kind)
        self.n = 0
        self.chars = 0
        self.turns = 0
        self.tool_calls = 0
        self.sources: dict[str, int] = {}

    def add(self, rec: Record) -> None:
        self.n += 1
        meta = rec.get("meta")
        src = meta.get("source") if meta else None
        if src:
            self.sources[src] = self.sources.get(src, 0) + 1
        for f in self._fields:
            v = rec.get(f)
            if isinstance(v, str):
                self.chars += len(v)
            elif isinstance(v, list):
                for m in v:
                    if isinstance(m, dict):
                        self.chars += len(m.get("content") or "")
                        calls = m.get("tool_calls")
                        if calls:
                            self.tool_calls += len(calls)
                        self.turns += 1

    def result(self) -> dict[str, Any]:
        n = self.n
        out: dict[str, Any] = {"records": n, "mean_chars": round(self.chars / n, 1) if n else 0.0}
        if self.kind == "chat":
            out["mean_turns"] = round(self.turns / n, 2) if n else 0.0
            out["tool_calls"] = self.tool_calls
        if self.sources:
            out["sources"] = dict(sorted(self.sources.items()))
        return out


def stats(records: Iterable[Record], kind: str) -> dict[str, Any]:
    """Statistics of a whole iterable of records (see :class:`StatsAccumulator`)."""
    acc = StatsAccumulator(kind)
    for rec in records:
        acc.add(rec)
    return acc.result()


def field_value(rec: dict[str, Any], path: str) -> Any:
    """The value at a dotted path of a record (``meta.schema``); None where it is missing."""
    v: Any = rec
    for part in path.split("."):
        v = v.get(part) if isinstance(v, dict) else None
    return v
