"""Answer prompts with an engine (respond); distill (distill.py) answers with a teacher
the same way."""

from __future__ import annotations

import json
import re
from typing import Any

from corekit.engines import Request

from ..records import field_value, prompt_messages
from .context import OpContext

# What an answer keeps of its prompt record's meta: what the prompt is about (its schema for
# a format check, its expected behaviour and source for curation and mixing).
CARRIED_META = ("schema", "expected", "source", "subject", "category")

# The end of a sentence: . ! or ? (not after a digit: "1." opens a list item), any closing
# quotes or brackets, then white space or the end of the text.
_SENTENCE_END = re.compile(r"(?<![0-9])[.!?][\"'’”)\]]*(?=\s|$)")


def trim_to_sentence(text: str) -> str | None:
    """An answer cut off at max_tokens, back to its last complete sentence outside a code
    block; None when no complete sentence remains."""
    if text.count("```") % 2:  # cut inside a code block: drop the block
        text = text[: text.rfind("```")]
    ends = list(_SENTENCE_END.finditer(text))
    if not ends:
        return None
    kept = text[: ends[-1].end()].rstrip()
    if kept.count("```") % 2:
        return None
    return kept or None


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if len(set(keys)) < len(keys):
        raise ValueError("duplicate key")  # relaying would silently keep only the last
    return dict(pairs)


def relay_json(text: str, indent: int) -> str | None:
    """A structured answer laid out one way: parsed and written again with ``indent``
    spaces (0: one line, no spaces), keys and values as the model wrote them; None when
    the text is not JSON, or holds an object with a key twice (a filter after it judges)."""
    try:
        value = json.loads(text, object_pairs_hook=_unique_keys)
    except ValueError:
        return None
    if indent == 0:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return json.dumps(value, ensure_ascii=False, indent=indent)


def answer(
    records,
    ctx: OpContext,
    source: str,
    system_prompt: str | None,
    keep_system: bool,
    temperature: float,
    top_p: float,
    max_tokens: int,
    drop_truncated: bool,
    output_kind: str,
    engine=None,
    samples: int = 1,
    schema_field: str | None = None,
    regex_field: str | None = None,
    trim_truncated: bool = False,
    json_indent: int | None = None,
) -> list[dict[str, Any]]:
    convs = [prompt_messages(r) for r in records]
    reqs = []
    for rec, msgs in zip(records, convs, strict=True):
        full = ([{"role": "system", "content": system_prompt}] if system_prompt else []) + msgs
        schema = field_value(rec, schema_field) if schema_field else None
        regex = field_value(rec, regex_field) if regex_field else None
        reqs.append(
            Request.chat(
                full,
                temperature=temperature,
                top_p=top_p,
                max_tokens=max_tokens,
                n=samples,
                seed=ctx.request_seed(source, rec["id"]),
                json_schema=schema if isinstance(schema, dict) else None,
                regex=regex if isinstance(regex, str) and not isinstance(schema, dict) else None,
            )
        )
    out = []
    for rec, msgs, req, res in zip(
        records, convs, reqs, ctx.generate(reqs, desc=source, engine=engine), strict=True
    ):
        if not res.ok:
            ctx.reject(rec, "engine_error", error=res.error)
            continue
        for k, comp in enumerate(res.completions):
            made = _record(rec, msgs, req, comp, k, ctx, source, system_prompt, keep_system,
                           drop_truncated, output_kind, engine, samples > 1,
                           trim_truncated, json_indent)  # fmt: skip
            if made is not None:
                out.append(made)
    return out


def _record(rec, msgs, req, comp, k, ctx, source, system_prompt, keep_system, drop_truncated,
            output_kind, engine, numbered, trim_truncated=False,
            json_indent=None) -> dict[str, Any] | None:  # fmt: skip
    """One response as a record, or None (rejected with the reason)."""
    text = comp.text.strip()
    if not text:
        ctx.reject(rec, "empty_response", sample=k)
        return None
    trimmed = False
    if comp.finish_reason == "length" and trim_truncated and req.json_schema is None:
        cut = trim_to_sentence(text)
        if cut is not None:
            text, trimmed = cut, True
    if drop_truncated and comp.finish_reason == "length" and not trimmed:
        ctx.reject(rec, "truncated", response=text[:500], sample=k)
        return None
    relaid = None
    if json_indent is not None and req.json_schema is not None:
        relaid = relay_json(text, json_indent)
        if relaid is not None:
            text = relaid
    meta = ctx.meta(
        source, req, parents=[rec["id"]], engine=engine, finish_reason=comp.finish_reason
    )
    if trimmed:
        meta["trimmed_to_sentence"] = True
    if relaid is not None:
        meta["json_relaid"] = json_indent
    if numbered:
        meta["sample"] = k
    if system_prompt:
        meta["system_prompt"] = system_prompt
    carried = {key: v for key, v in (rec.get("meta") or {}).items() if key in CARRIED_META}
    meta.update({key: v for key, v in carried.items() if key not in meta})
    if output_kind == "instruction" and "instruction" in rec:
        return {
            "instruction": rec["instruction"],
            "input": rec.get("input", ""),
            "output": text,
            "meta": meta,
        }
    prefix = [{"role": "system", "content": system_prompt}] if system_prompt and keep_system else []
    return {"messages": prefix + msgs + [{"role": "assistant", "content": text}], "meta": meta}


def respond(
    records,
    ctx: OpContext,
    system_prompt: str | None = None,
    temperature: float = 0.7,
    top_p: float = 0.95,
    max_tokens: int = 512,
    drop_truncated: bool = True,
    output_kind: str = "chat",
    samples: int = 1,
    schema_field: str | None = None,
    regex_field: str | None = None,
    trim_truncated: bool = False,
    json_indent: int | None = None,
) -> list[dict[str, Any]]:
    """Answer every prompt; the system prompt, if any, stays in the chat records."""
    return answer(
        records,
        ctx,
        "respond",
        system_prompt,
        True,
        temperature,
        top_p,
        max_tokens,
        drop_truncated,
        output_kind,
        samples=samples,
        schema_field=schema_field,
        regex_field=regex_field,
        trim_truncated=trim_truncated,
        json_indent=json_indent,
    )
