"""Evol-Instruct (Xu et al. 2023): evolve instructions in depth and breadth, over rounds.

In-depth operations: add constraints, deepen, concretize, increase reasoning steps,
complicate input; in-breadth: a new, rarer instruction of the same domain. The operation mix
is configurable. After each round the elimination step drops an evolution that
- copies words of the evolution prompt ("#Rewritten Prompt#", "given prompt", ...),
- is only punctuation and stop words,
- brings no information gain over its original (asked of the LLM, equal / not_equal),
- gets a response that is a short apology ("sorry" in under 80 words).
An eliminated instruction's original goes back into the pool and is evolved again next round.
"""

from __future__ import annotations

import re
from typing import Any

from corekit.engines import Request

from .. import prompts
from ..records import exchange
from .context import OpContext
from .context import carry_meta as carry

STOP_WORDS = frozenset(
    "a an the and or but if then so of to in on at by for with from as is are was were be been being it its this that "
    "these those i you he she we they me him her us them my your his our their what which who whom whose when where why "
    "how all any both each few more most other some such no nor not only own same than too very can will just do does "
    "did done have has had having please".split()
)
DEFAULT_OPERATIONS = {
    "add_constraints": 1.0,
    "deepen": 1.0,
    "concretize": 1.0,
    "increase_reasoning": 1.0,
    "complicate_input": 1.0,
    "breadth": 1.0,
}


def _words(text: str) -> list[str]:
    return re.findall(r"[A-Za-z0-9']+", text.lower())


def elimination_reason(evolved: str) -> str | None:
    """The checks that need no model."""
    low = evolved.lower()
    if not evolved.strip():
        return "empty"
    if any(w in low for w in prompts.EVOL_TEMPLATE_WORDS):
        return "copies_template_words"
    if all(w in STOP_WORDS for w in _words(evolved)):
        return "only_stop_words_or_punctuation"
    return None


def is_apology(response: str) -> bool:
    return "sorry" in response.lower() and len(response.split()) < 80


def run(
    records: list[dict[str, Any]],
    ctx: OpContext,
    rounds: int = 3,
    operations: dict[str, float] | None = None,
    temperature: float = 0.7,
    max_tokens: int = 512,
    response_max_tokens: int = 512,
    keep_apologies: bool = False,
    carry_meta: list[str] | None = None,
) -> list[dict[str, Any]]:
    ops = dict(operations or DEFAULT_OPERATIONS)
    roots = {r["id"]: r for r in records}
    unknown = set(ops) - set(prompts.EVOL_METHODS) - {"breadth"}
    if unknown:
        from corekit.errors import ToolkitError

        raise ToolkitError(
            f"evol_instruct: unknown operation(s) {', '.join(sorted(unknown))}; known: {', '.join([*prompts.EVOL_METHODS, 'breadth'])}"
        )
    names, weights = list(ops), [ops[k] for k in ops]
    # Pool entries: (text, root id, chain of operations so far)
    pool: list[Entry] = [(exchange(r)[0], r["id"], []) for r in records]
    out: list[dict[str, Any]] = []
    for rnd in range(1, rounds + 1):
        chosen = [ctx.rng.choices(names, weights)[0] for _ in pool]
        reqs = [
            _rewrite_request(
                text,
                op,
                ctx.request_seed("evol", rnd - 1, root, len(chain), op),
                temperature,
                max_tokens,
            )
            for (text, root, chain), op in zip(pool, chosen, strict=True)
        ]
        evolved = [
            r.text.strip() if r.ok else "" for r in ctx.generate(reqs, desc=f"evolve round {rnd}")
        ]

        def drop(k, record, reason, rnd=rnd, pool=pool, chosen=chosen) -> None:
            ctx.reject(record, reason, original=pool[k][0], operation=chosen[k], round=rnd)

        gained = _eliminate(pool, chosen, evolved, ctx, drop)
        answers = _answers([evolved[k] for k in gained], ctx, response_max_tokens)
        next_pool = list(pool)
        for k, answer in zip(gained, answers, strict=True):
            if not answer or (is_apology(answer) and not keep_apologies):
                drop(k, {"instruction": evolved[k], "output": answer}, "apology_or_empty_response")
                continue
            text, root, chain = pool[k]
            next_pool[k] = (evolved[k], root, [*chain, chosen[k]])
            rec = _record(evolved[k], answer, reqs[k], chosen[k], rnd, next_pool[k], text, ctx)
            carry(rec["meta"], roots[root].get("meta"), carry_meta)
            out.append(rec)
        # survivors evolve further; the eliminated retry from their original
        pool = next_pool
    return out


Entry = tuple[str, str, list[str]]  # (text, root record id, chain of operations so far)


def _rewrite_request(text: str, op: str, seed: int, temperature: float, max_tokens: int) -> Request:
    prompt = (
        prompts.EVOL_BREADTH.format(instruction=text)
        if op == "breadth"
        else prompts.EVOL_DEPTH.format(method=prompts.EVOL_METHODS[op], instruction=text)
    )
    return Request.chat(
        [{"role": "user", "content": prompt}],
        temperature=temperature,
        max_tokens=max_tokens,
        seed=seed,
    )


def _eliminate(
    pool: list[Entry], chosen: list[str], evolved: list[str], ctx: OpContext, drop
) -> list[int]:
    """The elimination step: cheap checks first, then the model is asked whether each depth
    rewrite that survives them gained information. Returns the indices that pass."""
    alive = []
    for k, ev in enumerate(evolved):
        reason = elimination_reason(ev)
        if reason:
            drop(k, {"instruction": ev}, reason)
        else:
            alive.append(k)
    depth = [k for k in alive if chosen[k] != "breadth"]
    eq_reqs = [
        Request.chat(
            [{"role": "user", "content": prompts.EVOL_EQUAL.format(a=pool[k][0], b=evolved[k])}],
            choice=("equal", "not_equal"),
            temperature=0.0,
            max_tokens=4,
        )
        for k in depth
    ]
    verdicts = ctx.generate(eq_reqs, desc="information gain") if eq_reqs else []
    equal = {k for k, r in zip(depth, verdicts, strict=True) if r.text.strip() == "equal"}
    for k in sorted(equal):
        drop(k, {"instruction": evolved[k]}, "no_information_gain")
    return [k for k in alive if k not in equal]


def _answers(instructions: list[str], ctx: OpContext, max_tokens: int) -> list[str]:
    reqs = [
        Request.chat(
            [{"role": "user", "content": text}],
            temperature=0.0,
            max_tokens=max_tokens,
            seed=ctx.request_seed("evol_response", text),
        )
        for text in instructions
    ]
    results = ctx.generate(reqs, desc="respond to evolved") if reqs else []
    return [r.text.strip() if r.ok else "" for r in results]


def _record(
    instruction: str,
    answer: str,
    req: Request,
    op: str,
    rnd: int,
    entry: Entry,
    original: str,
    ctx: OpContext,
) -> dict[str, Any]:
    breadth = op == "breadth"
    return {
        "instruction": instruction,
        "input": "",
        "output": answer,
        "meta": ctx.meta(
            "evol",
            req,
            "EVOL_BREADTH" if breadth else "EVOL_DEPTH",
            prompts.EVOL_BREADTH if breadth else prompts.EVOL_DEPTH,
            parents=[entry[1]],
            evolution={"round": rnd, "operation": op, "chain": entry[2], "original": original},
        ),
    }
