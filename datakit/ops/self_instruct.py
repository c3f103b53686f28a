"""Self-Instruct (Wang et al. 2022): grow new instructions from a seed pool.

Each round asks the model to continue a numbered task list made of few-shot examples (by
default 6 human seeds and 2 machine-made instructions, as in the paper), drops candidates by
heuristics and by ROUGE-L novelty against everything pooled so far, then writes one instance
(input/output) per new instruction: output-first for classification tasks, input-first
otherwise. Every drop is counted by reason and kept in the rejects file.

A prompt set (eval_item records) grows into a prompt set: the new tasks are written as
eval_item prompts with no instance (what answers them is a later step's choice), and
``carry_meta`` passes a seed label on (``expected: refuse``, say) to a new task only when
every example in its few-shot prompt carries that same value: a list of safe requests
continues as safe requests more often than a mixed one keeps any label at all.

Accounting: every task the model proposes (one per "Task N:" piece of a continuation)
ends as exactly one output record or one reject; a round prompt whose request failed is
one ``engine_error`` reject.
"""

from __future__ import annotations

import re
import string
from typing import Any

from corekit.engines import Request
from corekit.novelty import NoveltyIndex

from .. import prompts
from ..records import exchange
from .context import OpContext, template_hash

BLACKLIST = (
    "image",
    "images",
    "graph",
    "graphs",
    "picture",
    "pictures",
    "file",
    "files",
    "map",
    "maps",
    "draw",
    "plot",
    "go to",
    "video",
    "audio",
    "music",
    "flowchart",
    "diagram",
)
_BLACKLIST_RE = re.compile(
    r"\b(" + "|".join(re.escape(w) for w in BLACKLIST) + r")\b", re.IGNORECASE
)
_TASK_SPLIT = re.compile(r"\n\s*Task\s*\d+\s*[:.]\s*")


def heuristic_reason(text: str, truncated: bool, min_words: int, max_words: int) -> str | None:
    """Why a candidate instruction is dropped before the novelty check, or None."""
    if truncated:
        return "truncated"
    if not text:
        return "empty"
    n = len(text.split())
    if n < min_words:
        return "too_few_words"
    if n > max_words:
        return "too_many_words"
    if _BLACKLIST_RE.search(text):
        return "blacklisted_word"
    if text[0] in string.punctuation:
        return "starts_with_punctuation"
    if not text[0].isascii():
        return "non_ascii_start"
    return None


def split_tasks(continuation: str) -> list[str]:
    """The model continues "Task 9:"; everything up to the next "Task N:" is one task."""
    return [" ".join(p.split()) for p in _TASK_SPLIT.split(continuation)]


def _parse_input_first(text: str) -> tuple[str, str] | None:
    head, sep, tail = text.partition("\nOutput:")
    if not sep:
        return None
    inp = head.strip()
    if inp.lower() in ("<none>", "none", "<noinput>", "n/a", ""):
        inp = ""
    out = re.split(r"\n\s*\n|\nTask:", tail, maxsplit=1)[0].strip()
    return (inp, out) if out else None


def _parse_output_first(text: str) -> tuple[str, str] | None:
    label, sep, tail = text.partition("\nInput:")
    if not sep:
        return None
    inp = re.split(r"\n\s*\n|\nTask:", tail, maxsplit=1)[0].strip()
    label = label.strip()
    return (inp, label) if label and inp else None


def run(
    records: list[dict[str, Any]],
    ctx: OpContext,
    num_instructions: int = 50,
    num_shots: int = 8,
    human_shots: int = 6,
    rouge_threshold: float = 0.7,
    min_words: int = 3,
    max_words: int = 150,
    max_rounds: int = 20,
    prompts_per_round: int = 16,
    temperature: float = 0.7,
    top_p: float = 0.5,
    max_tokens: int = 512,
    instance_max_tokens: int = 256,
    carry_meta: list[str] | None = None,
) -> list[dict[str, Any]]:
    prompt_set = any("instruction" not in r for r in records)  # eval_item records
    seeds = _seeds(records, prompt_set)
    seed_texts = list(seeds)
    index = NoveltyIndex(seed_texts, threshold=rouge_threshold)
    machine: list[Entry] = []

    for rnd in range(max_rounds):
        if len(machine) >= num_instructions:
            break
        requests, shot_parents = [], []
        grown = {m[0]: m[3] for m in machine}  # what each machine task carries
        for b in range(prompts_per_round):
            n_machine = min(num_shots - human_shots, len(machine))
            n_human = min(num_shots - n_machine, len(seed_texts))
            shots = ctx.rng.sample(seed_texts, n_human) + [
                m[0] for m in ctx.rng.sample(machine, n_machine)
            ]
            ctx.rng.shuffle(shots)
            examples = "\n".join(f"Task {i + 1}: {t}" for i, t in enumerate(shots))
            prompt = prompts.SELF_INSTRUCT_TASKS.format(examples=examples, next=len(shots) + 1)
            requests.append(
                Request(
                    prompt=prompt,
                    temperature=temperature,
                    top_p=top_p,
                    max_tokens=max_tokens,
                    seed=ctx.request_seed("self_instruct", rnd, b),
                )
            )
            carried = _shared_meta(shots, seeds, grown, carry_meta or ())
            shot_parents.append(([seeds[s]["id"] for s in shots if s in seeds], carried))
        results = ctx.generate(requests, desc=f"self-instruct round {rnd + 1}")
        candidates: list[Entry] = []
        for req, (parents, carried), res in zip(requests, shot_parents, results, strict=True):
            if not res.ok:
                ctx.reject({"prompt": req.prompt[-200:]}, "engine_error", error=res.error)
                continue
            comp = res.completions[0]
            parts = split_tasks(comp.text)
            for k, text in enumerate(parts):
                truncated = comp.finish_reason == "length" and k == len(parts) - 1
                reason = heuristic_reason(text, truncated, min_words, max_words)
                if reason:
                    ctx.reject({"instruction": text}, reason)
                else:
                    candidates.append((text, parents, req, carried))
        keep, maxes = index.filter([c[0] for c in candidates])
        for cand, ok, m in zip(candidates, keep, maxes, strict=True):
            if ok:
                machine.append(cand)
            else:
                ctx.reject({"instruction": cand[0]}, "too_similar", rouge_l=round(m, 4))
    # The last round may overshoot the target; every candidate gets its instance first, so
    # one whose instance fails is replaced by a surplus one instead of leaving the count short.
    out = _prompts(machine, ctx) if prompt_set else _instances(machine, ctx, instance_max_tokens)
    for rec in out[num_instructions:]:
        ctx.reject(rec, "surplus", num_instructions=num_instructions)
    return out[:num_instructions]


Entry = tuple[str, list[str], Request, dict[str, Any]]  # (task, seed ids, request, carried meta)


def _seeds(records: list[dict[str, Any]], prompt_set: bool) -> dict[str, dict[str, Any]]:
    """Seed task text -> its record (the first of equal texts): an instruction, or an
    eval_item's prompt."""
    seeds: dict[str, dict[str, Any]] = {}
    for r in records:
        text = exchange(r)[0] if prompt_set else r.get("instruction")
        if text:
            seeds.setdefault(text, r)
    return seeds


def _shared_meta(
    shots: list[str], seeds: dict[str, dict[str, Any]], grown: dict[str, dict[str, Any]], keys
) -> dict[str, Any]:
    """The ``keys`` whose value every shot carries alike (a seed's meta, or what a machine
    task carried itself)."""
    metas = [(seeds[s].get("meta") or {}) if s in seeds else grown.get(s, {}) for s in shots]
    out = {}
    for key in keys:
        values = [m[key] for m in metas if key in m]
        if metas and len(values) == len(metas) and all(v == values[0] for v in values):
            out[key] = values[0]
    return out


def _with(meta: dict[str, Any], carried: dict[str, Any]) -> dict[str, Any]:
    """``meta`` with the carried keys it does not set itself (its provenance wins)."""
    return {**carried, **meta}


def _prompts(machine: list[Entry], ctx: OpContext) -> list[dict[str, Any]]:
    """The new tasks as a prompt set (eval_item records), each with what it carried."""
    return [
        {
            "prompt": text,
            "meta": _with(
                ctx.meta(
                    "self_instruct",
                    req,
                    "SELF_INSTRUCT_TASKS",
                    prompts.SELF_INSTRUCT_TASKS,
                    parents=parents,
                    seed=req.seed,
                ),
                carried,
            ),
        }
        for text, parents, req, carried in machine
    ]


def _instances(machine: list[Entry], ctx: OpContext, max_tokens: int) -> list[dict[str, Any]]:
    """One input/output instance per instruction; classification tasks output-first."""
    if not machine:
        return []
    cls_reqs = [
        Request(
            prompt=prompts.SELF_INSTRUCT_IS_CLASSIFICATION.format(instruction=m[0]),
            choice=("yes", "no"),
            temperature=0.0,
            max_tokens=3,
            seed=ctx.request_seed("is_cls", m[0]),
        )
        for m in machine
    ]
    is_cls = [
        r.ok and r.text.strip().lower() == "yes"
        for r in ctx.generate(cls_reqs, desc="classify tasks")
    ]
    inst_reqs = []
    for (text, *_), c in zip(machine, is_cls, strict=True):
        tmpl = prompts.SELF_INSTRUCT_OUTPUT_FIRST if c else prompts.SELF_INSTRUCT_INPUT_FIRST
        inst_reqs.append(
            Request(
                prompt=tmpl.format(instruction=text),
                temperature=0.0,
                max_tokens=max_tokens,
                seed=ctx.request_seed("instance", text),
                stop=("\nTask:",),
            )
        )
    out = []
    for (text, parents, gen_req, carried), c, res in zip(
        machine, is_cls, ctx.generate(inst_reqs, desc="instances"), strict=True
    ):
        if not res.ok:
            ctx.reject({"instruction": text}, "engine_error", error=res.error)
            continue
        comp = res.completions[0]
        if comp.finish_reason == "length":
            ctx.reject({"instruction": text, "raw": comp.text[:500]}, "instance_truncated")
            continue
        parsed = (_parse_output_first if c else _parse_input_first)(comp.text)
        if parsed is None:
            ctx.reject({"instruction": text, "raw": comp.text[:500]}, "instance_unparseable")
            continue
        inp, output = parsed
        tname = "SELF_INSTRUCT_OUTPUT_FIRST" if c else "SELF_INSTRUCT_INPUT_FIRST"
        out.append(
            {
                "instruction": text,
                "input": inp,
                "output": output,
                "meta": _with(
                    ctx.meta(
                        "self_instruct",
                        gen_req,
                        "SELF_INSTRUCT_TASKS",
                        prompts.SELF_INSTRUCT_TASKS,
                        parents=parents,
                        is_classification=c,
                        instance_template={
                            "name": tname,
                            "hash": template_hash(prompts.template_text(tname)),
                        },
                        seed=gen_req.seed,
                    ),
                    carried,
                ),
            }
        )
    return out
