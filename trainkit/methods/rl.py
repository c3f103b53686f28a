"""Online RL from a reward model, the third stage of RLHF.

TRL removed PPO; GRPO (Shao et al. 2024) and RLOO (Ahmadian et al. 2024) sample
``num_generations`` completions per prompt and use the reward model's scores, relative to
the group, as the advantage. The reward model is a directory holding a sequence
classification model (a `reward` stage of the same config, or any such model).
"""

from __future__ import annotations

from typing import Any


def build(stage, common: dict[str, Any], inputs: dict[str, Any]) -> Any:
    from transformers import AutoModelForSequenceClassification

    from ..model import load_tokenizer

    p = stage.params
    if p["algorithm"] == "grpo":
        from trl import GRPOConfig as Config
        from trl import GRPOTrainer as Trainer
    else:
        from trl import RLOOConfig as Config
        from trl import RLOOTrainer as Trainer
    # The effective batch must be a multiple of the group size.
    common = dict(common)
    common["per_device_train_batch_size"] = max(
        p["num_generations"],
        (common["per_device_train_batch_size"] // p["num_generations"]) * p["num_generations"],
    )
    args = Config(
        **common,
        num_generations=p["num_generations"],
        max_completion_length=p["max_completion_length"],
        beta=p["beta"],
        temperature=p["temperature"],
    )
    reward_tok = load_tokenizer(stage.reward_model)
    reward = AutoModelForSequenceClassification.from_pretrained(stage.reward_model, num_labels=1)
    reward.config.pad_token_id = reward_tok.pad_token_id
    return Trainer(
        args=args, reward_funcs=[reward], reward_processing_classes=[reward_tok], **inputs
    )
