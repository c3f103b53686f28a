"""Odds-ratio preference optimisation (Hong et al. 2024): SFT and preference in one loss,
from the base model, with no reference model and no separate SFT stage.
"""

from __future__ import annotations

from typing import Any


def build(stage, common: dict[str, Any], inputs: dict[str, Any]) -> Any:
    from trl.experimental.orpo import ORPOConfig, ORPOTrainer

    from .template_tokens import conversational, with_template_tokens_only

    args = ORPOConfig(**common, max_length=stage.args["max_length"], beta=stage.params["beta"])
    trainer = ORPOTrainer
    if conversational(inputs["train_dataset"]):
        trainer = with_template_tokens_only(ORPOTrainer)
    return trainer(args=args, **inputs)
