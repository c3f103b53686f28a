"""Kahneman-Tversky optimisation (Ethayarajh et al. 2024) on unpaired good/bad answers.

Paired preference data is split into a desirable and an undesirable row per pair.
"""

from __future__ import annotations

from typing import Any


def build(stage, common: dict[str, Any], inputs: dict[str, Any]) -> Any:
    from trl import KTOConfig, KTOTrainer

    args = KTOConfig(
        **common,
        max_length=stage.args["max_length"],
        beta=stage.params["beta"],
        desirable_weight=stage.params["desirable_weight"],
        undesirable_weight=stage.params["undesirable_weight"],
    )
    return KTOTrainer(args=args, **inputs)
