"""Stored records as the rows TRL's trainers read: one conversion, used by trainkit when it
trains and by ``datakit export --format trl``, so an export is exactly what trainkit
trains on.

Per method (``trainkit.methods.METHODS`` lists the kinds each accepts):
- sft: chat as is; instruction -> user/assistant messages; preference -> prompt + chosen
  as prompt/completion ("SFT on the chosen answers"); unpaired -> its desirable rows.
- kto: unpaired as is; preference -> two unpaired rows (chosen desirable, rejected not).
- dpo, ipo, orpo, simpo, reward: preference as prompt/chosen/rejected.
- rl: only the prompt of any kind.

``chat`` (the model has a chat template) makes string prompts and answers one-turn
conversations, so the model sees the format it will be served with; a row is either all
conversation or all text, never a mix (TRL cannot load a mix).

Answers that hold the whole conversation (UltraFeedback's shape: ``chosen`` and
``rejected`` each repeat the user turn before the assistant's) are recognised: the turns
before the first assistant turn become the prompt, once.
"""

from __future__ import annotations

import json
from typing import Any

from corekit.errors import ToolkitError

from .records import as_turns, instruction_to_messages, prompt_messages

# The method whose rows an export of each record kind holds.
EXPORT_METHOD = {"chat": "sft", "instruction": "sft", "preference": "dpo", "unpaired": "kto"}


def clean_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Messages with only the keys templates read. Arrow types one column for all rows, so
    tool calls keep a fixed shape (arguments stay objects: a JSON string would break
    templates that iterate over them)."""
    out = []
    for m in messages:
        msg: dict[str, Any] = {"role": m["role"], "content": m.get("content") or ""}
        if m.get("tool_calls"):
            msg["tool_calls"] = m["tool_calls"]
        out.append(msg)
    return out


def _as_turns(value: Any, role: str, chat: bool) -> Any:
    """``value`` as TRL takes it: its turns, cleaned (records.as_turns), when it is a list
    or the rows are conversational; else the text as it is."""
    if not chat and not isinstance(value, list):
        return value
    return clean_messages(as_turns(value, role))


def _text(m: dict[str, Any]) -> str:
    return (m.get("content") or "").strip()


def split_whole_conversation(prompt: Any, answer: Any) -> tuple[Any, Any]:
    """(prompt, answer) with a prompt repeated at the head of a message-list answer moved
    out of it: when the answer's turns before its first assistant turn end with a user turn
    saying what the prompt's last user turn says, those turns are the prompt (a system
    turn among them is kept) and the rest is the answer. Anything else is left as is."""
    if not isinstance(answer, list) or not answer:
        return prompt, answer
    first = next((i for i, m in enumerate(answer) if m.get("role") == "assistant"), None)
    if not first:
        return prompt, answer
    head = answer[:first]
    users = [m for m in head if m.get("role") == "user"]
    asked = [m for m in _as_turns(prompt, "user", True) if m.get("role") == "user"]
    if users and asked and _text(users[-1]) == _text(asked[-1]) and head[-1] is users[-1]:
        return (head if isinstance(prompt, list) or len(head) > 1 else prompt), answer[first:]
    return prompt, answer


def preference_parts(rec: dict[str, Any]) -> tuple[Any, Any, Any]:
    """A preference record's (prompt, chosen, rejected), whole-conversation answers split."""
    prompt, chosen = split_whole_conversation(rec["prompt"], rec["chosen"])
    prompt2, rejected = split_whole_conversation(rec["prompt"], rec["rejected"])
    if isinstance(prompt2, list) and not isinstance(prompt, list):
        prompt = prompt2
    return prompt, chosen, rejected


def prompt_completion(prompt: Any, completion: Any, chat: bool) -> dict[str, Any]:
    prompt, completion = split_whole_conversation(prompt, completion)
    conversational = chat or isinstance(prompt, list) or isinstance(completion, list)
    return {
        "prompt": _as_turns(prompt, "user", conversational),
        "completion": _as_turns(completion, "assistant", conversational),
    }


def prompt_of(rec: dict[str, Any], chat: bool) -> Any:
    """The prompt (records.prompt_messages), as messages for chat data, else as text."""
    msgs = prompt_messages(rec)
    if chat or "messages" in rec or isinstance(rec.get("prompt"), list):
        return clean_messages(msgs)
    return msgs[-1]["content"]  # one user turn: the plain-text prompt


def trainer_rows(rec: dict[str, Any], kind: str, method: str, chat: bool) -> list[dict[str, Any]]:
    """One stored record as zero or more rows of the method's TRL dataset format."""
    if method == "rl":
        return [{"prompt": prompt_of(rec, chat)}]
    if method == "sft":
        if kind == "chat":
            row: dict[str, Any] = {"messages": clean_messages(rec["messages"])}
            if rec.get("tools"):
                row["tools"] = rec["tools"]
            return [row]
        if kind == "instruction":
            return [{"messages": instruction_to_messages(rec)}]
        if kind == "preference":
            prompt, chosen, _ = preference_parts(rec)
            return [prompt_completion(prompt, chosen, chat)]
        if kind == "unpaired":
            return (
                [prompt_completion(rec["prompt"], rec["completion"], chat)] if rec["label"] else []
            )
    if method == "kto":
        if kind == "unpaired":
            row = prompt_completion(rec["prompt"], rec["completion"], chat)
            row["label"] = bool(rec["label"])
            return [row]
        prompt, chosen, rejected = preference_parts(rec)
        good = prompt_completion(prompt, chosen, chat)
        bad = prompt_completion(prompt, rejected, chat)
        return [{**good, "label": True}, {**bad, "label": False}]
    if kind != "preference":
        raise ToolkitError(f"{method} trains on preference records, not {kind}")
    # dpo, ipo, orpo, simpo, reward: preference
    prompt, chosen, rejected = preference_parts(rec)
    conversational = chat or any(isinstance(x, list) for x in (prompt, chosen, rejected))
    return [
        {
            "prompt": _as_turns(prompt, "user", conversational),
            "chosen": _as_turns(chosen, "assistant", conversational),
            "rejected": _as_turns(rejected, "assistant", conversational),
        }
    ]


def tool_call_text(call: dict[str, Any]) -> str:
    """A tool call as text: ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``, the
    form evalkit's tool_call_match reads back."""
    fn = call.get("function", call)
    body = {"name": fn.get("name"), "arguments": fn.get("arguments", {})}
    return "<tool_call>" + json.dumps(body, ensure_ascii=False) + "</tool_call>"


def fold_tool_calls(rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """For chat templates that do not render ``tool_calls`` (they would drop the calls and
    train the model on an empty turn): every assistant turn's calls appended to its content
    as ``tool_call_text``. (rows, the number of calls folded)."""
    folded = 0

    def fold(msgs: Any) -> Any:
        nonlocal folded
        if not isinstance(msgs, list):
            return msgs
        out = []
        for m in msgs:
            calls = m.get("tool_calls") if isinstance(m, dict) else None
            if calls:
                text = "\n".join(tool_call_text(c) for c in calls)
                content = m.get("content") or ""
                m = {k: v for k, v in m.items() if k != "tool_calls"}
                m["content"] = f"{content}\n{text}" if content else text
                folded += len(calls)
            out.append(m)
        return out

    return [{k: fold(v) for k, v in r.items()} for r in rows], folded


def export_row(rec: dict[str, Any], kind: str) -> dict[str, Any]:
    """A record as ``datakit export --format trl`` writes it: the row trainkit trains on
    for a chat model (``EXPORT_METHOD``)."""
    if kind not in EXPORT_METHOD:
        raise ToolkitError(
            f"trl export covers chat, instruction, preference and unpaired records, not {kind}"
        )
    (row,) = trainer_rows(rec, kind, EXPORT_METHOD[kind], chat=True)
    return row
