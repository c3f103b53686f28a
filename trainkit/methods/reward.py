"""Reward model (Bradley-Terry on chosen/rejected pairs), the second stage of RLHF.

The model is the base with a one-output score head (sequence classification).
"""

from __future__ import annotations

from typing import Any


def build(stage, common: dict[str, Any], inputs: dict[str, Any]) -> Any:
    from trl import RewardConfig, RewardTrainer

    args = RewardConfig(
        **common,
        max_length=stage.args["max_length"],
        center_rewards_coefficient=stage.params["center_rewards_coefficient"],
    )
    return RewardTrainer(args=args, **inputs)
