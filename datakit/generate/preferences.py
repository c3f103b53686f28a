"""Preference pairs: sample k responses at several temperatures, judge them, pair best/worst.

Identical samples and ties never make a pair (chosen == rejected would teach nothing); they
are dropped with their reason. ``emit: unpaired`` writes KTO records instead (the best
response labelled desirable, the worst undesirable).
"""

from __future__ import annotations

from typing import Any

from ..engines import Request
from . import judge as judge_mod
from .context import GenContext
from .respond import prompt_messages


def run(
    records: list[dict[str, Any]],
    ctx: GenContext,
    temperatures: list[float] = (0.3, 0.7, 1.0),  # type: ignore[assignment]
    samples_per_temperature: int = 1,
    max_tokens: int = 512,
    judge: str = "pointwise",
    min_margin: float = 0.0,
    emit: str = "preference",
) -> list[dict[str, Any]]:
    ctx.sampling = {
        "temperatures": list(temperatures),
        "n": samples_per_temperature,
        "max_tokens": max_tokens,
        "top_p": 1.0,
    }
    convs = [prompt_messages(r) for r in records]
    reqs = [
        Request.chat(
            msgs,
            temperature=t,
            top_p=1.0,
            max_tokens=max_tokens,
            n=samples_per_temperature,
            seed=ctx.request_seed("preferences", rec["id"], t),
        )
        for rec, msgs in zip(records, convs, strict=True)
        for t in temperatures
    ]
    res = ctx.generate(reqs, desc="sample responses")
    per = len(temperatures)
    cands: list[list[tuple[str, float]]] = []
    for k in range(len(records)):
        seen: dict[str, float] = {}
        for t, r in zip(temperatures, res[k * per : (k + 1) * per], strict=True):
            for c in r.completions if r.ok else []:
                text = c.text.strip()
                if text and c.finish_reason != "length":
                    seen.setdefault(text, t)
        cands.append(list(seen.items()))
    out: list[dict[str, Any]] = []
    if judge == "pointwise":
        flat = [
            (convs[k][-1]["content"], text) for k in range(len(records)) for text, _ in cands[k]
        ]
        scores = iter(judge_mod.score(flat, ctx, desc="judge samples"))
        for k, rec in enumerate(records):
            scored = [(text, t, next(scores)) for text, t in cands[k]]
            if len(scored) < 2:
                ctx.reject("fewer_than_two_distinct_samples", rec, samples=len(scored))
                continue
            errors = [s[2]["error"] for s in scored if "quality" not in s[2]]
            scored = [s for s in scored if "quality" in s[2]]
            if len(scored) < 2:
                ctx.reject("judge_error", rec, errors=errors)
                continue
            scored.sort(key=lambda s: -s[2]["quality"])
            best, worst = scored[0], scored[-1]
            if best[2]["quality"] - worst[2]["quality"] <= min_margin:
                ctx.reject("tie", rec, quality=best[2]["quality"])
                continue
            out.extend(
                _emit(
                    rec,
                    convs[k],
                    best,
                    worst,
                    ctx,
                    emit,
                    {
                        "judge": "pointwise",
                        "chosen_quality": best[2]["quality"],
                        "rejected_quality": worst[2]["quality"],
                    },
                )
            )
    else:
        items, owners = [], []
        for k, rec in enumerate(records):
            inst = convs[k][-1]["content"]
            c = cands[k]
            if len(c) < 2:
                ctx.reject("fewer_than_two_distinct_samples", rec, samples=len(c))
                continue
            for i in range(len(c)):
                for j in range(i + 1, len(c)):
                    items.append((inst, c[i][0], c[j][0]))
                    owners.append((k, i, j))
        verdicts = judge_mod.compare(items, ctx)
        wins: dict[int, list[float]] = {}
        for (k, i, j), v in zip(owners, verdicts, strict=True):
            w = wins.setdefault(k, [0.0] * len(cands[k]))
            if v == "a":
                w[i] += 1
            elif v == "b":
                w[j] += 1
            else:
                w[i] += 0.5
                w[j] += 0.5
        for k, w in sorted(wins.items()):
            best_i = max(range(len(w)), key=lambda i: w[i])
            worst_i = min(range(len(w)), key=lambda i: w[i])
            if w[best_i] - w[worst_i] <= min_margin:
                ctx.reject("tie", records[k], wins=w)
                continue
            best, worst = (*cands[k][best_i], {}), (*cands[k][worst_i], {})
            out.extend(
                _emit(
                    records[k], convs[k], best, worst, ctx, emit, {"judge": "pairwise", "wins": w}
                )
            )
    return out


def _emit(
    rec, msgs, best, worst, ctx: GenContext, emit: str, judged: dict[str, Any]
) -> list[dict[str, Any]]:
    meta = ctx.meta(
        "preferences",
        None,
        sampling={
            **ctx.sampling,
            "seeds": {
                str(t): ctx.request_seed("preferences", rec["id"], t)
                for t in ctx.sampling["temperatures"]
            },
        },
        parents=[rec["id"]],
        chosen_temperature=best[1],
        rejected_temperature=worst[1],
        **judged,
    )
    if emit == "unpaired":
        return [
            {
                "prompt": msgs,
                "completion": [{"role": "assistant", "content": best[0]}],
                "label": True,
                "meta": meta,
            },
            {
                "prompt": msgs,
                "completion": [{"role": "assistant", "content": worst[0]}],
                "label": False,
                "meta": meta,
            },
        ]
    return [
        {
            "prompt": msgs,
            "chosen": [{"role": "assistant", "content": best[0]}],
            "rejected": [{"role": "assistant", "content": worst[0]}],
            "meta": meta,
        }
    ]
