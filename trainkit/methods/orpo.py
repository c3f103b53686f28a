"""Odds-ratio preference optimisation (Hong et al. 2024): SFT and preference in one loss,
from the base model, with no reference model and no separate SFT stage.
"""

from __future__ import annotations

from typing import Any


def build(stage, common: dict[str, Any], inputs: dict[str, Any]) -> Any:
    from trl.experimental.orpo import ORPOConfig, ORPOTrainer

    args = ORPOConfig(**common, max_length=stage.args["max_length"], beta=stage.params["beta"])
    return ORPOTrainer(args=args, **inputs)
