"""trainkit: fine-tune on dataset versions with TRL (SFT, DPO and its kin, reward models,
RL), LoRA, QLoRA and other PEFT adapters, or full fine-tuning.

    import trainkit

    plan = trainkit.plan("pipeline.yaml")            # the stages, checked, nothing loaded
    plan, results = trainkit.train("pipeline.yaml")  # the train: section (`trainkit run`)
    trainkit.merge("runs/train/sft", "merged/")      # an adapter folded into its base
"""

from corekit._lazy import lazy_api

__all__ = ["merge", "plan", "train"]

__getattr__, __dir__ = lazy_api(
    __name__,
    {
        "plan": "trainkit.config:plan",
        "train": "trainkit.stage:run_train",
        "merge": "corekit.adapters:merge",
    },
)
