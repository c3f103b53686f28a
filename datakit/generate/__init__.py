"""Generators that grow datasets through LLM engines: one module per method.

Each method is ``run(records, ctx, **params) -> records``: it takes the input version's
records and returns new records of its output kind, with drops recorded in ``ctx``.
"""

from __future__ import annotations

from .context import GenContext

OPS: dict[str, tuple[str, str, str]] = {
    # op: (module:function, input kinds (comma separated), output kind)
    "self_instruct": ("datakit.generate.self_instruct:run", "instruction", "instruction"),
    "evol_instruct": ("datakit.generate.evol:run", "instruction,chat", "instruction"),
    "respond": ("datakit.generate.respond:respond", "instruction,chat,eval_item", "chat"),
    "distill": ("datakit.generate.respond:distill", "instruction,chat,eval_item", "chat"),
    "augment": ("datakit.generate.augment:run", "instruction", "instruction"),
    "critique_revise": ("datakit.generate.critique:run", "chat,instruction", "preference"),
    "preferences": ("datakit.generate.preferences:run", "instruction,chat,eval_item", "preference"),
    "judge": ("datakit.generate.judge:run", "instruction,chat", "same"),
    "filter": ("datakit.generate.filters:quality_filter", "instruction,chat,preference", "same"),
}

# The engine roles each op calls. "judge" and "teacher" fall back to the step's main engine
# when the step names none; only these roles' engines are built (an in-process vLLM each).
OP_ROLES: dict[str, tuple[str, ...]] = {
    "self_instruct": ("engine",),
    "evol_instruct": ("engine",),
    "respond": ("engine",),
    "distill": ("teacher",),
    "augment": ("engine",),
    "critique_revise": ("engine",),
    "preferences": ("engine", "judge"),
    "judge": ("judge",),
    "filter": (),
}

__all__ = ["OPS", "OP_ROLES", "GenContext"]
