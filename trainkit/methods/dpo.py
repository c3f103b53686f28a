"""Direct preference optimisation (Rafailov et al. 2023) and IPO (Azar et al. 2023).

IPO is TRL's DPO trainer with ``loss_type="ipo"``; beta is IPO's tau. With an adapter the
reference model is the same network with the adapter switched off, so no second copy is
loaded.
"""

from __future__ import annotations

from typing import Any


def build(stage, common: dict[str, Any], inputs: dict[str, Any]) -> Any:
    from trl import DPOConfig, DPOTrainer

    extra: dict[str, Any] = {"beta": stage.params["beta"]}
    if stage.method == "ipo":
        extra["loss_type"] = ["ipo"]
    else:
        extra["loss_type"] = ["sigmoid"]
        extra["label_smoothing"] = stage.params["label_smoothing"]
    args = DPOConfig(**common, max_length=stage.args["max_length"], **extra)
    return DPOTrainer(args=args, **inputs)
