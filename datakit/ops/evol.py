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

from ..engines import Request
from ..records import exchange
from . import prompts
from .context import OpContext

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
) -> list[dict[str, Any]]:
    ops = dict(operations or DEFAULT_OPERATIONS)
    unknown = set(ops) - set(prompts.EVOL_METHODS) - {"breadth"}
    if unknown:
        from ..errors import DatakitError

        raise DatakitError(
            f"evol_instruct: unknown operation(s) {', '.join(sorted(unknown))}; known: {', '.join([*prompts.EVOL_METHODS, 'breadth'])}"
        )
    names, weights = list(ops), [ops[k] for k in ops]
    # Pool entries: (text, root id, chain of operations so far)
    pool: list[tuple[str, str, list[str]]] = [(exchange(r)[0], r["id"], []) for r in records]
    out: list[dict[str, Any]] = []
    for rnd in range(rounds):
        ops_chosen = [ctx.rng.choices(names, weights)[0] for _ in pool]
        reqs = []
        for (text, root, chain), op in zip(pool, ops_chosen, strict=True):
            tmpl = (
                prompts.EVOL_BREADTH.format(instruction=text)
                if op == "breadth"
                else prompts.EVOL_DEPTH.format(method=prompts.EVOL_METHODS[op], instruction=text)
            )
            reqs.append(
                Request.chat(
                    [{"role": "user", "content": tmpl}],
                    temperature=temperature,
                    max_tokens=max_tokens,
                    seed=ctx.request_seed("evol", rnd, root, len(chain), op),
                )
            )
        evolved = [
            r.text.strip() if r.ok else ""
            for r in ctx.generate(reqs, desc=f"evolve round {rnd + 1}")
        ]
        # Cheap checks first; the model is asked only about what survives them.
        alive = []
        for k, ev in enumerate(evolved):
            reason = elimination_reason(ev)
            if reason:
                ctx.reject(
                    {"instruction": ev},
                    reason,
                    original=pool[k][0],
                    operation=ops_chosen[k],
                    round=rnd + 1,
                )
            else:
                alive.append(k)
        eq_reqs = [
            Request.chat(
                [
                    {
                        "role": "user",
                        "content": prompts.EVOL_EQUAL.format(a=pool[k][0], b=evolved[k]),
                    }
                ],
                choice=("equal", "not_equal"),
                temperature=0.0,
                max_tokens=4,
            )
            for k in alive
            if ops_chosen[k] != "breadth"
        ]
        eq_iter = iter(ctx.generate(eq_reqs, desc="information gain") if eq_reqs else [])
        gained = []
        for k in alive:
            if ops_chosen[k] != "breadth" and next(eq_iter).text.strip() == "equal":
                ctx.reject(
                    {"instruction": evolved[k]},
                    "no_information_gain",
                    original=pool[k][0],
                    operation=ops_chosen[k],
                    round=rnd + 1,
                )
            else:
                gained.append(k)
        resp_reqs = [
            Request.chat(
                [{"role": "user", "content": evolved[k]}],
                temperature=0.0,
                max_tokens=response_max_tokens,
                seed=ctx.request_seed("evol_response", evolved[k]),
            )
            for k in gained
        ]
        responses = ctx.generate(resp_reqs, desc="respond to evolved") if resp_reqs else []
        next_pool = list(pool)
        for k, res in zip(gained, responses, strict=True):
            answer = res.text.strip() if res.ok else ""
            if not answer or is_apology(answer):
                ctx.reject(
                    {"instruction": evolved[k], "output": answer},
                    "apology_or_empty_response",
                    original=pool[k][0],
                    operation=ops_chosen[k],
                    round=rnd + 1,
                )
                continue
            text, root, chain = pool[k]
            new_chain = [*chain, ops_chosen[k]]
            out.append(
                {
                    "instruction": evolved[k],
                    "input": "",
                    "output": answer,
                    "meta": ctx.meta(
                        "evol",
                        reqs[k],
                        "EVOL_BREADTH" if ops_chosen[k] == "breadth" else "EVOL_DEPTH",
                        prompts.EVOL_BREADTH if ops_chosen[k] == "breadth" else prompts.EVOL_DEPTH,
                        parents=[root],
                        evolution={
                            "round": rnd + 1,
                            "operation": ops_chosen[k],
                            "chain": new_chain,
                            "original": text,
                        },
                    ),
                }
            )
            next_pool[k] = (
                evolved[k],
                root,
                new_chain,
            )  # survivors evolve further; the eliminated retry from their original
        pool = next_pool
    return out
