"""Per-method defaults that depend on more than one key (the schema holds the rest).

The schema (``schemas/pipeline.json``) documents each key's fixed default; what is here
depends on the method and the adapter together, so it cannot live in a JSON default.
"""

from __future__ import annotations

# Adapter types that leave the sequence intact (tokens are not prepended), so several
# samples can be packed into one row without changing what the model sees.
PACKING_SAFE_ADAPTERS = {"full", "lora", "dora", "qlora", "ia3"}


def learning_rate(method: str, adapter: str) -> float:
    """The method's peak learning rate (``trainkit.methods.METHODS``) for this adapter."""
    from .methods import METHODS

    full, adapted = METHODS[method].learning_rate
    return full if adapter == "full" else adapted


def packing_default(method: str, adapter: str) -> bool:
    return method == "sft" and adapter in PACKING_SAFE_ADAPTERS
