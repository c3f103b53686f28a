"""Online RL from a reward model, the third stage of RLHF.

TRL removed PPO; GRPO (Shao et al. 2024) and RLOO (Ahmadian et al. 2024) sample
``num_generations`` completions per prompt and use the reward model's scores, relative to
the group, as the advantage. ``args.max_length`` bounds prompt plus completion: prompts
longer than ``max_length - max_completion_length`` tokens are left out of the data (the
count is in the run's data stats). The reward model is a directory holding a sequence
classification model (a `reward` stage of the same config, or any such model).
"""

from __future__ import annotations

from typing import Any


def group_multiple(batch_size: int, num_generations: int) -> int:
    """The batch size rounded down to whole groups of ``num_generations``, at least one."""
    return max(num_generations, batch_size // num_generations * num_generations)


def prompt_budget(max_length: int, max_completion_length: int) -> int:
    """Tokens left for the prompt so prompt and completion fit ``args.max_length`` (TRL's
    GRPO/RLOO have no prompt limit of their own: longer prompts are dropped from the data)."""
    return max_length - max_completion_length


def build(stage, common: dict[str, Any], inputs: dict[str, Any]) -> Any:
    from transformers import AutoModelForSequenceClassification

    from corekit.adapters import load_tokenizer

    p = stage.params
    if p["algorithm"] == "grpo":
        from trl import GRPOConfig as Config
        from trl import GRPOTrainer as Trainer
    else:
        from trl import RLOOConfig as Config
        from trl import RLOOTrainer as Trainer
    # Train and eval batches must hold whole groups: multiples of the group size.
    common = dict(common)
    for key in ("per_device_train_batch_size", "per_device_eval_batch_size"):
        common[key] = group_multiple(common[key], p["num_generations"])
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
