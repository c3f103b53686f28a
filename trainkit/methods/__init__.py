"""One small module per training method; each turns a resolved stage into a TRL trainer.

``build(stage, common, inputs)`` is the whole protocol: ``common`` holds the training
arguments every method shares (``trainkit.stage.common_args``), ``inputs`` the trainer
arguments every method shares (model, datasets, tokenizer, PEFT config, callbacks); a
method adds its config class and its own parameters.
"""

from __future__ import annotations

import importlib
from typing import Any

# Method name -> module. IPO is DPO with another loss; SimPO is CPO with another loss.
MODULES = {
    "sft": "sft",
    "dpo": "dpo",
    "ipo": "dpo",
    "kto": "kto",
    "orpo": "orpo",
    "simpo": "simpo",
    "reward": "reward",
    "rl": "rl",
}


def builder(method: str) -> Any:
    return importlib.import_module(f"{__name__}.{MODULES[method]}").build
