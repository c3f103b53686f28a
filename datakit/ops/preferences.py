"""Preference pairs: sample k responses at several temperatures, judge them, pair best/worst.

Identical samples and ties never make a pair (chosen == rejected would teach nothing); they
are dropped with their reason. ``emit: unpaired`` writes KTO records instead (the best
response labelled desirable, the worst undesirable).

Accounting, at two levels. Records: every input ends as one output (a pair; two with
``emit: unpaired``) or one reject. Samples: every sample asked for (inputs x temperatures x
``samples_per_temperature``) is a candidate or a reject with ``unit: sample`` (failed,
empty, truncated, or a duplicate of an earlier sample).
"""

from __future__ import annotations

from typing import Any

from corekit import judging
from corekit.engines import Request

from ..records import prompt_messages
from .context import OpContext


def run(
    records: list[dict[str, Any]],
    ctx: OpContext,
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
    cands = _candidates(records, convs, ctx, temperatures, samples_per_temperature, max_tokens)
    pick = _pointwise if judge == "pointwise" else _pairwise
    out: list[dict[str, Any]] = []
    for k, best, worst, judged in pick(records, convs, cands, ctx, min_margin):
        out.extend(_emit(records[k], convs[k], best, worst, ctx, emit, judged))
    return out


Candidates = list[list[tuple[str, float]]]  # per record: (distinct text, its temperature)


def _candidates(
    records, convs, ctx: OpContext, temperatures, samples_per_temperature: int, max_tokens: int
) -> Candidates:
    """Sample every record at every temperature; keep distinct, finished, non-empty texts."""
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
    cands: Candidates = []
    for k, rec in enumerate(records):
        seen: dict[str, float] = {}
        for t, r in zip(temperatures, res[k * per : (k + 1) * per], strict=True):
            if not r.ok:
                for _ in range(samples_per_temperature):
                    _sample_reject(ctx, "sample_failed", rec, t, error=r.error)
                continue
            for c in r.completions:
                text = c.text.strip()
                if not text:
                    _sample_reject(ctx, "sample_empty", rec, t)
                elif c.finish_reason == "length":
                    _sample_reject(ctx, "sample_truncated", rec, t, response=text[:500])
                elif text in seen:
                    _sample_reject(ctx, "sample_duplicate", rec, t, response=text[:500])
                else:
                    seen[text] = t
        cands.append(list(seen.items()))
    return cands


def _pointwise(records, convs, cands: Candidates, ctx: OpContext, min_margin: float):
    """Rubric-score every candidate; pair the best with the worst if they differ enough."""
    flat = [(convs[k][-1]["content"], text) for k in range(len(records)) for text, _ in cands[k]]
    scores = iter(judging.score(flat, ctx.engine_for("judge"), desc="judge samples"))
    for k, rec in enumerate(records):
        scored = [(text, t, next(scores)) for text, t in cands[k]]
        if len(scored) < 2:
            ctx.reject(rec, "fewer_than_two_distinct_samples", samples=len(scored))
            continue
        errors = [s[2]["error"] for s in scored if "quality" not in s[2]]
        scored = [s for s in scored if "quality" in s[2]]
        if len(scored) < 2:
            ctx.reject(rec, "judge_error", errors=errors)
            continue
        scored.sort(key=lambda s: -s[2]["quality"])
        best, worst = scored[0], scored[-1]
        if best[2]["quality"] - worst[2]["quality"] <= min_margin:
            ctx.reject(rec, "tie", quality=best[2]["quality"])
            continue
        judged = {
            "judge": "pointwise",
            "chosen_quality": best[2]["quality"],
            "rejected_quality": worst[2]["quality"],
        }
        yield k, best, worst, judged


def _pairwise(records, convs, cands: Candidates, ctx: OpContext, min_margin: float):
    """Compare every two candidates (both orders); pair only a strict direct win."""
    items, owners = [], []
    for k, rec in enumerate(records):
        inst, c = convs[k][-1]["content"], cands[k]
        if len(c) < 2:
            ctx.reject(rec, "fewer_than_two_distinct_samples", samples=len(c))
            continue
        for i in range(len(c)):
            for j in range(i + 1, len(c)):
                items.append((inst, c[i][0], c[j][0]))
                owners.append((k, i, j))
    per_record: dict[int, dict[tuple[int, int], str]] = {}
    for (k, i, j), v in zip(owners, judging.compare(items, ctx.engine_for("judge")), strict=True):
        per_record.setdefault(k, {})[(i, j)] = v
    for k, direct in sorted(per_record.items()):
        pair, wins, reason = pick_pair(len(cands[k]), direct, min_margin)
        if pair is None:
            ctx.reject(records[k], reason, wins=wins)
            continue
        best, worst = (*cands[k][pair[0]], {}), (*cands[k][pair[1]], {})
        yield k, best, worst, {"judge": "pairwise", "wins": wins, "pair": list(pair)}


def _sample_reject(ctx: OpContext, reason: str, rec, temperature: float, **detail: Any) -> None:
    """A sample that cannot be a candidate; ``unit: sample`` keeps it apart from record drops."""
    ctx.reject(rec, reason, unit="sample", temperature=temperature, **detail)


def pick_pair(
    n: int, direct: dict[tuple[int, int], str], min_margin: float = 0.0
) -> tuple[tuple[int, int] | None, list[float], str]:
    """Chosen/rejected indices from pairwise verdicts, or None and the reason.

    ``direct[(i, j)]`` (i < j) is "a" (i won), "b" (j won) or "tie", each already asked in
    both orders. Only a pair whose own comparison is a strict win can be emitted: the
    candidates are ranked by total wins (a tie counts half), and the strictly won pair with
    the largest gap in total wins is taken, if that gap exceeds ``min_margin``. So a cycle
    A-B tie, A>C, C>B never pairs A over B, although A has the most wins and B the fewest.
    Reasons: ``tie`` (no comparison was won outright) or ``no_consistent_pair`` (every
    outright win goes against the ranking by at least ``min_margin``).
    """
    wins = [0.0] * n
    strict: list[tuple[int, int]] = []  # (winner, loser)
    for (i, j), v in direct.items():
        if v == "a":
            wins[i] += 1
            strict.append((i, j))
        elif v == "b":
            wins[j] += 1
            strict.append((j, i))
        else:
            wins[i] += 0.5
            wins[j] += 0.5
    if not strict:
        return None, wins, "tie"
    w, lo = max(strict, key=lambda p: (wins[p[0]] - wins[p[1]], wins[p[0]], -p[0], -p[1]))
    if wins[w] - wins[lo] <= min_margin:
        return None, wins, "no_consistent_pair"
    return (w, lo), wins, ""


def _emit(
    rec, msgs, best, worst, ctx: OpContext, emit: str, judged: dict[str, Any]
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
