"""Direct preference optimisation (Rafailov et al. 2023) and IPO (Azar et al. 2023).

IPO is TRL's DPO trainer with ``loss_type="ipo"``; beta is IPO's tau. With an adapter the
reference model is the same network with the adapter switched off, so no second copy is
loaded.
"""

from __future__ import annotations

from typing import Any


def build(stage, model, tokenizer, data, common: dict[str, Any], callbacks: list) -> Any:
    from trl import DPOConfig, DPOTrainer

    extra: dict[str, Any] = {"beta": stage.params["beta"]}
    if stage.method == "ipo":
        extra["loss_type"] = ["ipo"]
    else:
        extra["loss_type"] = ["sigmoid"]
        extra["label_smoothing"] = stage.params["label_smoothing"]
    args = DPOConfig(**common, max_length=stage.args["max_length"], **extra)
    return DPOTrainer(
        model=model,
        args=args,
        train_dataset=data.train,
        eval_dataset=data.eval,
        processing_class=tokenizer,
        peft_config=data.peft_config,
        callbacks=callbacks,
    )
