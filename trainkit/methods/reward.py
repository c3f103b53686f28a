"""Reward model (Bradley-Terry on chosen/rejected pairs), the second stage of RLHF.

The model is the base with a one-output score head (sequence classification).
"""

from __future__ import annotations

from typing import Any


def build(stage, model, tokenizer, data, common: dict[str, Any], callbacks: list) -> Any:
    from trl import RewardConfig, RewardTrainer

    args = RewardConfig(
        **common,
        max_length=stage.args["max_length"],
        center_rewards_coefficient=stage.params["center_rewards_coefficient"],
    )
    return RewardTrainer(
        model=model,
        args=args,
        train_dataset=data.train,
        eval_dataset=data.eval,
        processing_class=tokenizer,
        peft_config=data.peft_config,
        callbacks=callbacks,
    )
