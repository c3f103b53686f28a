"""One small module per training method; each turns a resolved stage into a TRL trainer.

``build(stage, common, inputs)`` is the whole protocol: ``common`` holds the training
arguments every method shares (``trainkit.stage.common_args``), ``inputs`` the trainer
arguments every method shares (model, datasets, tokenizer, PEFT config, callbacks); a
method adds its config class and its own parameters.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Method:
    """A training method: the one place it is declared (``make schema`` writes the
    schema's method list and learning-rate help from here)."""

    name: str
    module: str  # trainkit.methods.<module>.build makes its trainer
    kinds: tuple[str, ...]  # record kinds it trains on (conversions: datakit.trainer_rows)
    learning_rate: tuple[float, float]  # peak default: (full fine-tuning, adapters)
    summary: str  # what it is, in the schema's help


ANY_TEXT = ("chat", "instruction", "preference", "unpaired")
# Peak learning rates. Adapters train a few million parameters and tolerate ~10x the full
# fine-tuning rate.
#   sft     full 2e-5 (Alpaca, Vicuna recipes); LoRA/QLoRA 2e-4 (QLoRA paper, Dettmers 2023)
#   dpo/ipo full 5e-7 (DPO paper, Rafailov 2023; Zephyr), adapters 5e-6
#   kto     full 5e-7 (KTO paper, Ethayarajh 2024), adapters 5e-6
#   orpo    full 8e-6 (ORPO paper, Hong 2024, Mistral-7B), adapters 5e-5
#   simpo   full 5e-7 (SimPO paper, Meng 2024: 3e-7 .. 1e-6), adapters 5e-6
#   reward  full 1e-5 (InstructGPT-style RMs), adapters 1e-4
#   rl      full 1e-6 (GRPO/RLOO in TRL docs), adapters 1e-5
# IPO is DPO with another loss; SimPO is CPO with another loss.
METHODS = {
    m.name: m
    for m in (
        Method("sft", "sft", ANY_TEXT, (2e-5, 2e-4), "supervised fine-tuning"),
        Method("dpo", "dpo", ("preference",), (5e-7, 5e-6), "direct preference optimisation"),
        Method("ipo", "dpo", ("preference",), (5e-7, 5e-6), "DPO with the IPO loss"),
        Method("kto", "kto", ("unpaired", "preference"), (5e-7, 5e-6), "KTO on good/bad labels"),
        Method(
            "orpo", "orpo", ("preference",), (8e-6, 5e-5), "odds-ratio preference, no reference"
        ),
        Method("simpo", "simpo", ("preference",), (5e-7, 5e-6), "SimPO, length-normalised"),
        Method("reward", "reward", ("preference",), (1e-5, 1e-4), "a reward model"),
        Method(
            "rl", "rl", (*ANY_TEXT, "eval_item"), (1e-6, 1e-5), "GRPO/RLOO from a reward model"
        ),  # fmt: skip
    )
}


def builder(method: str) -> Any:
    from ..lm_head import score_labelled_positions_only

    # Before any trainer exists, so every stage of a process scores its loss the same way.
    score_labelled_positions_only()
    return importlib.import_module(f"{__name__}.{METHODS[method].module}").build
