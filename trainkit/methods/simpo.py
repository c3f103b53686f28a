"""SimPO (Meng et al. 2024): length-normalised log-likelihood reward with a target margin,
no reference model.

TRL has no SimPO trainer; it is CPOTrainer with ``loss_type="simpo"``. CPO's default
``cpo_alpha=1.0`` adds a behaviour-cloning term (a CPO/SimPO hybrid); plain SimPO needs
``cpo_alpha=0``.
"""

from __future__ import annotations

from typing import Any


def build(stage, common: dict[str, Any], inputs: dict[str, Any]) -> Any:
    from trl.experimental.cpo import CPOConfig, CPOTrainer

    from .template_tokens import conversational, with_template_tokens_only

    args = CPOConfig(
        **common,
        max_length=stage.args["max_length"],
        loss_type="simpo",
        cpo_alpha=0.0,
        beta=stage.params["beta"],
        simpo_gamma=stage.params["gamma"],
    )
    trainer = CPOTrainer
    if conversational(inputs["train_dataset"]):
        trainer = with_template_tokens_only(CPOTrainer)
    return trainer(args=args, **inputs)
