"""Kahneman-Tversky optimisation (Ethayarajh et al. 2024) on unpaired good/bad answers.

Paired preference data is split into a desirable and an undesirable row per pair.
"""

from __future__ import annotations

from typing import Any


def build(stage, model, tokenizer, data, common: dict[str, Any], callbacks: list) -> Any:
    from trl import KTOConfig, KTOTrainer

    args = KTOConfig(
        **common,
        max_length=stage.args["max_length"],
        beta=stage.params["beta"],
        desirable_weight=stage.params["desirable_weight"],
        undesirable_weight=stage.params["undesirable_weight"],
    )
    return KTOTrainer(
        model=model,
        args=args,
        train_dataset=data.train,
        eval_dataset=data.eval,
        processing_class=tokenizer,
        peft_config=data.peft_config,
        callbacks=callbacks,
    )
