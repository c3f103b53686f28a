"""Per-method defaults that depend on more than one key (the schema holds the rest).

The schema (``schemas/pipeline.json``) documents each key's fixed default; what is here
depends on the method and the adapter together, so it cannot live in a JSON default.
"""

from __future__ import annotations

# Peak learning rates. Adapters train a few million parameters and tolerate ~10x the full
# fine-tuning rate.
#   sft     full 2e-5 (Alpaca, Vicuna recipes); LoRA/QLoRA 2e-4 (QLoRA paper, Dettmers 2023)
#   dpo/ipo full 5e-7 (DPO paper, Rafailov 2023; Zephyr), adapters 5e-6
#   kto     full 5e-7 (KTO paper, Ethayarajh 2024), adapters 5e-6
#   orpo    full 8e-6 (ORPO paper, Hong 2024, Mistral-7B), adapters 5e-5
#   simpo   full 5e-7 (SimPO paper, Meng 2024: 3e-7 .. 1e-6), adapters 5e-6
#   reward  full 1e-5 (InstructGPT-style RMs), adapters 1e-4
#   rl      full 1e-6 (GRPO/RLOO in TRL docs), adapters 1e-5
LEARNING_RATE = {
    "sft": (2e-5, 2e-4),
    "dpo": (5e-7, 5e-6),
    "ipo": (5e-7, 5e-6),
    "kto": (5e-7, 5e-6),
    "orpo": (8e-6, 5e-5),
    "simpo": (5e-7, 5e-6),
    "reward": (1e-5, 1e-4),
    "rl": (1e-6, 1e-5),
}

# Adapter types that leave the sequence intact (tokens are not prepended), so several
# samples can be packed into one row without changing what the model sees.
PACKING_SAFE_ADAPTERS = {"full", "lora", "dora", "qlora", "ia3"}

# Which record kinds each method accepts. Conversions are in trainkit.data.
METHOD_KINDS = {
    "sft": ("chat", "instruction", "preference", "unpaired"),
    "dpo": ("preference",),
    "ipo": ("preference",),
    "kto": ("unpaired", "preference"),
    "orpo": ("preference",),
    "simpo": ("preference",),
    "reward": ("preference",),
    "rl": ("chat", "instruction", "preference", "unpaired", "eval_item"),
}


def learning_rate(method: str, adapter: str) -> float:
    full, adapted = LEARNING_RATE[method]
    return full if adapter == "full" else adapted


def packing_default(method: str, adapter: str) -> bool:
    return method == "sft" and adapter in PACKING_SAFE_ADAPTERS
