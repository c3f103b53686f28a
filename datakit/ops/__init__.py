"""The op registry: every step `datakit run` and the `datakit` commands can run.

An op is ``function(records, ctx, **params) -> records`` (or, for ops over several inputs,
``function(inputs, ctx, **params)`` with one record list per input; for ops with named
outputs, a dict of output suffix -> records). It reports every drop with
``ctx.reject(record, reason)``. Its entry here says what it reads and writes, which engine
roles it calls, and how the CLI presents it; its parameters (names, types, defaults, help)
live in ``schemas/pipeline.json`` under ``definitions/params_<op>``, the one place the
config check, the CLI options and the docs read them from. docs/architecture.md says how to
add one.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from corekit.errors import ToolkitError

from .context import OpContext


@dataclass(frozen=True)
class Op:
    name: str
    function: str  # "module:function", imported only when the op runs
    inputs: tuple[str, ...]  # record kinds it reads
    output: str | Callable[[dict[str, Any], str], str]  # a kind, "same", or f(params, kind)
    summary: str  # one line: the help of its command and its row in `datakit ops`
    example: str
    roles: tuple[str, ...] = ()  # engine roles it calls; judge/teacher fall back to engine
    command: str = "generate"  # "generate": `datakit generate NAME`; "top": `datakit NAME`
    many_inputs: bool = False  # function takes one record list per input
    outputs: tuple[str, ...] = ()  # named outputs, written as <step>-<suffix>
    same_kind_inputs: bool = False  # every input holds the same record kind
    explain: str | None = None  # "module:function(version, record_id) -> rows": --explain ID
    on_ray: bool = False  # runs its own heavy work on executor: ray (no engine needed)

    @property
    def cli_name(self) -> str:
        return self.name.replace("_", "-")

    def output_kind(self, params: dict[str, Any], input_kind: str) -> str:
        if callable(self.output):
            return self.output(params, input_kind)
        return input_kind if self.output == "same" else self.output

    @property
    def output_label(self) -> str:
        """What it writes, for people: a kind, or the rule (the rule's docstring)."""
        if callable(self.output):
            return (self.output.__doc__ or "").strip()
        return "same kind as its input" if self.output == "same" else self.output

    def load(self) -> Callable[..., Any]:
        mod, _, fn = self.function.partition(":")
        return getattr(importlib.import_module(mod), fn)


def _answer_kind(params: dict[str, Any], input_kind: str) -> str:
    """chat (instruction with output_kind: instruction)"""
    keep = params.get("output_kind") == "instruction" and input_kind == "instruction"
    return "instruction" if keep else "chat"


def _grown_kind(params: dict[str, Any], input_kind: str) -> str:
    """instruction (eval_item from eval_item: a prompt set grows a prompt set)"""
    return "eval_item" if input_kind == "eval_item" else "instruction"


def _preference_kind(params: dict[str, Any], input_kind: str) -> str:
    """preference (unpaired with emit: unpaired)"""
    return "unpaired" if params.get("emit") == "unpaired" else "preference"


_PROMPTS = ("instruction", "chat", "eval_item")
_ANY = ("instruction", "chat", "preference", "unpaired", "eval_item")
_M = "--model runs/models/tiny"

OPS: dict[str, Op] = {
    op.name: op
    for op in (
        Op(
            "self_instruct",
            "datakit.ops.self_instruct:run",
            ("instruction", "eval_item"),
            _grown_kind,
            "Grow new instructions (or prompts, from a prompt set) from seeds (Self-Instruct).",
            f"datakit generate self-instruct seeds -o grown {_M} --num-instructions 100\n"
            f"datakit generate self-instruct look-alikes -o look-alikes-grown {_M} "
            "--num-instructions 50 --carry-meta expected",
            roles=("engine",),
        ),
        Op(
            "evol_instruct",
            "datakit.ops.evol_instruct:run",
            _PROMPTS,
            "instruction",
            "Evolve instructions in depth and breadth, with elimination (Evol-Instruct).",
            f"datakit generate evol-instruct seeds -o evolved {_M} --rounds 2",
            roles=("engine",),
        ),
        Op(
            "respond",
            "datakit.ops.respond:respond",
            _PROMPTS,
            _answer_kind,
            "Answer every prompt of INPUT with an engine (chat or instruction records).",
            "datakit generate respond grown -o answers --backend openai --model llama "
            "--base-url http://127.0.0.1:8000/v1",
            roles=("engine",),
        ),
        Op(
            "distill",
            "datakit.ops.distill:run",
            _PROMPTS,
            _answer_kind,
            "A teacher answers INPUT's prompts; student-format chat records.",
            "datakit generate distill prompts -o distilled --teacher-model /models/big "
            "--model /models/big",
            roles=("teacher",),
        ),
        Op(
            "augment",
            "datakit.ops.augment:run",
            _PROMPTS,
            "same",
            "Rephrase what each record asks, keeping its answer and labels (similarity check).",
            f"datakit generate augment seeds -o rephrased {_M} --variants 2\n"
            f"datakit generate augment safety-good -o safety-reworded {_M} "
            "--regex 'How (do|can) I [a-z][^?]{8,80}\\?' --carry-meta expected",
            roles=("engine",),
        ),
        Op(
            "critique_revise",
            "datakit.ops.critique_revise:run",
            ("chat", "instruction"),
            "preference",
            "Critique responses against principles and revise them into preference pairs.",
            f"datakit generate critique-revise answers -o safety-prefs {_M}",
            roles=("engine",),
        ),
        Op(
            "preferences",
            "datakit.ops.preferences:run",
            _PROMPTS,
            _preference_kind,
            "Sample responses at several temperatures, judge them, pair best with worst.",
            f"datakit generate preferences seeds -o prefs {_M} --temperatures 0.3,0.7,1.0",
            roles=("engine", "judge"),
        ),
        Op(
            "behaviour_pairs",
            "datakit.ops.behaviour_pairs:run",
            ("chat",),
            "preference",
            "Pair answers that do what meta.expected says (refuse / comply) with ones that do "
            "not, per prompt: refusal over compliance, real answer over needless refusal.",
            "datakit behaviour-pairs safety-answers safety-refusals -o safety-prefs",
            command="top",
            many_inputs=True,
        ),
        Op(
            "judge",
            "datakit.ops.judge:run",
            ("instruction", "chat"),
            "same",
            "Score every record with an LLM judge (rubric scores into meta.judge).",
            f"datakit judge answers -o judged {_M}",
            roles=("judge",),
            command="top",
        ),
        Op(
            "filter",
            "datakit.ops.filter:run",
            ("instruction", "chat", "preference", "eval_item"),
            "same",
            "Keep records that pass every check asked for: field values, judge quality, "
            "length, blocklist, regex, charset, refusal-like responses, a response JSON schema.",
            "datakit filter judged -o good --min-quality 0.7\n"
            'datakit filter safety-prompts -o look-alikes --where \'{"meta.expected": "comply"}\'\n'
            "datakit filter safety-answers -o safety-good --expected-field meta.expected "
            "--cut-partial-refusals",
            command="top",
        ),
        Op(
            "dedup",
            "datakit.ops.dedup:run",
            _ANY,
            "same",
            "Drop duplicate records, each only for a kept record it resembles: semantic "
            "(embeddings + HNSW, the default), near (MinHash LSH) or exact; further inputs "
            "are sets to dedup against.",
            "datakit dedup grown -o grown-dedup --method near --threshold 0.8\n"
            "datakit dedup answers eval-set -o answers-clean --no-within"
            "   # only what resembles eval-set",
            command="top",
            many_inputs=True,
            explain="datakit.ops.dedup:explain",
            on_ray=True,
        ),
        Op(
            "mix",
            "datakit.ops.mix:mix",
            _ANY,
            "same",
            "Mix datasets in given proportions (INPUT:WEIGHT), optionally to a total size.",
            "datakit mix synthetic:0.8 general:0.2 -o train-mix --total 1000 --seed 1\n"
            "datakit mix safety -o safety-mix --total 150 --balance-by meta.expected "
            '--balance-weights \'{"comply": 3, "refuse": 2}\'\n'
            "datakit mix format:0.4 safety:0.6 -o sft-mix --total 160 "
            "--balance-by meta.category --balance-by meta.expected",
            command="top",
            many_inputs=True,
            same_kind_inputs=True,
        ),
        Op(
            "split",
            "datakit.ops.split:run",
            _ANY,
            "same",
            "Split into NAME-train and NAME-test, seeded, optionally stratified; "
            "duplicates and paraphrases stay on one side, and a leakage check says so.",
            "datakit split answers -o answers --test 0.1 --stratify meta.source --seed 1",
            command="top",
            outputs=("train", "test"),
        ),
    )
}


def get_op(name: str) -> Op:
    if name not in OPS:
        import difflib

        hint = difflib.get_close_matches(name, list(OPS), n=1)
        tip = f"; did you mean {hint[0]!r}?" if hint else f"; choose one of: {', '.join(OPS)}"
        raise ToolkitError(f"unknown op {name!r}{tip}")
    return OPS[name]


__all__ = ["OPS", "Op", "OpContext", "get_op"]
