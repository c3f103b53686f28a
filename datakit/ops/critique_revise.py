"""Critique and revise (constitutional style): a response is critiqued against a written
principle and revised; (revised, original) becomes a preference pair."""

from __future__ import annotations

from typing import Any

from corekit.engines import Request

from .. import prompts
from ..records import exchange
from .context import OpContext


def run(
    records: list[dict[str, Any]],
    ctx: OpContext,
    principles: list[str] | None = None,
    temperature: float = 0.7,
    max_tokens: int = 512,
) -> list[dict[str, Any]]:
    rules = list(principles or prompts.DEFAULT_PRINCIPLES)
    items = [
        (rec, *exchange(rec), ctx.rng.choice(rules)) for rec in records
    ]  # one principle per record, sampled
    crit_reqs = [
        Request.chat(
            [
                {
                    "role": "user",
                    "content": prompts.CRITIQUE.format(principle=p, prompt=q, response=a),
                }
            ],
            temperature=temperature,
            max_tokens=max_tokens,
            seed=ctx.request_seed("critique", rec["id"], p),
        )
        for rec, q, a, p in items
    ]
    critiques = ctx.generate(crit_reqs, desc="critique")
    rev_reqs = [
        Request.chat(
            [
                {
                    "role": "user",
                    "content": prompts.REVISE.format(
                        principle=p, prompt=q, response=a, critique=c.text.strip()
                    ),
                }
            ],
            temperature=temperature,
            max_tokens=max_tokens,
            seed=ctx.request_seed("revise", rec["id"], p),
        )
        for (rec, q, a, p), c in zip(items, critiques, strict=True)
    ]
    out = []
    for (rec, q, a, p), crit, req, rev in zip(
        items, critiques, rev_reqs, ctx.generate(rev_reqs, desc="revise"), strict=True
    ):
        revised = rev.text.strip() if rev.ok else ""
        if not crit.ok or not rev.ok:
            ctx.reject(rec, "engine_error", error=crit.error or rev.error)
        elif not revised or rev.completions[0].finish_reason == "length":
            ctx.reject(rec, "empty_or_truncated_revision")
        elif revised == a.strip():
            ctx.reject(rec, "no_change")
        else:
            prompt = [{"role": "user", "content": q}]
            out.append(
                {
                    "prompt": prompt,
                    "chosen": [{"role": "assistant", "content": revised}],
                    "rejected": [{"role": "assistant", "content": a}],
                    "meta": ctx.meta(
                        "critique_revise",
                        req,
                        "REVISE",
                        prompts.REVISE,
                        parents=[rec["id"]],
                        principle=p,
                        critique=crit.text.strip(),
                    ),
                }
            )
    return out
