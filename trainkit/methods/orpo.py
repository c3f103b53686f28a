"""Odds-ratio preference optimisation (Hong et al. 2024): SFT and preference in one loss,
from the base model, with no reference model and no separate SFT stage.
"""

from __future__ import annotations

from typing import Any


def build(stage, model, tokenizer, data, common: dict[str, Any], callbacks: list) -> Any:
    from trl.experimental.orpo import ORPOConfig, ORPOTrainer

    args = ORPOConfig(**common, max_length=stage.args["max_length"], beta=stage.params["beta"])
    return ORPOTrainer(
        model=model,
        args=args,
        train_dataset=data.train,
        eval_dataset=data.eval,
        processing_class=tokenizer,
        peft_config=data.peft_config,
        callbacks=callbacks,
    )
