"""Answer prompts with an engine (respond), or with a teacher for a student (distill)."""

from __future__ import annotations

from typing import Any

from ..engines import Request
from ..records import prompt_messages
from .context import OpContext


def _answer(
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
) -> list[dict[str, Any]]:
    convs = [prompt_messages(r) for r in records]
    reqs = []
    for rec, msgs in zip(records, convs, strict=True):
        full = ([{"role": "system", "content": system_prompt}] if system_prompt else []) + msgs
        reqs.append(
            Request.chat(
                full,
                temperature=temperature,
                top_p=top_p,
                max_tokens=max_tokens,
                seed=ctx.request_seed(source, rec["id"]),
            )
        )
    out = []
    for rec, msgs, req, res in zip(
        records, convs, reqs, ctx.generate(reqs, desc=source, engine=engine), strict=True
    ):
        if not res.ok:
            ctx.reject(rec, "engine_error", error=res.error)
            continue
        comp = res.completions[0]
        text = comp.text.strip()
        if not text:
            ctx.reject(rec, "empty_response")
            continue
        if drop_truncated and comp.finish_reason == "length":
            ctx.reject(rec, "truncated", response=text[:500])
            continue
        meta = ctx.meta(
            source, req, parents=[rec["id"]], engine=engine, finish_reason=comp.finish_reason
        )
        if system_prompt:
            meta["system_prompt"] = system_prompt
        if output_kind == "instruction" and "instruction" in rec:
            out.append(
                {
                    "instruction": rec["instruction"],
                    "input": rec.get("input", ""),
                    "output": text,
                    "meta": meta,
                }
            )
        else:
            prefix = (
                [{"role": "system", "content": system_prompt}]
                if system_prompt and keep_system
                else []
            )
            out.append(
                {"messages": prefix + msgs + [{"role": "assistant", "content": text}], "meta": meta}
            )
    return out


def respond(
    records,
    ctx: OpContext,
    system_prompt: str | None = None,
    temperature: float = 0.7,
    top_p: float = 0.95,
    max_tokens: int = 512,
    drop_truncated: bool = True,
    output_kind: str = "chat",
) -> list[dict[str, Any]]:
    """Answer every prompt; the system prompt, if any, stays in the chat records."""
    return _answer(
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
    )


def distill(
    records,
    ctx: OpContext,
    system_prompt: str | None = None,
    temperature: float = 0.7,
    top_p: float = 0.95,
    max_tokens: int = 512,
    drop_truncated: bool = True,
    output_kind: str = "chat",
) -> list[dict[str, Any]]:
    """The teacher engine answers; records are in student format (without the teacher's system prompt)."""
    teacher = ctx.engine_for("teacher")
    return _answer(
        records,
        ctx,
        "distill",
        system_prompt,
        False,
        temperature,
        top_p,
        max_tokens,
        drop_truncated,
        output_kind,
        engine=teacher,
    )
