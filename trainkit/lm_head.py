"""TRL's fused LM head, scoring only the labelled positions on CPU too.

TRL 1.16's SFT and online-RL trainers compute per-token log-probabilities through a chunked
LM head (``trl.trainer.utils.add_fused_lm_head``). With Triton it projects only the
positions whose label is not -100; without Triton it projects every position, so that a
graph compiler (Neuron) sees one tile shape per batch. On CPU in eager mode nothing is
recompiled, and the projections of prompt and padding positions are thrown away: on
SmolLM2 (49,152-token vocabulary) the head was a third of a training step of the demo's
safety-sft stage (56-token rows, ~45 of them prompt). The loss is the same sum over the same
labelled positions either way; only its float32 rounding may differ.
"""

from __future__ import annotations

_MARK = "_trainkit_compact_on_cpu"


def score_labelled_positions_only() -> bool:
    """Make TRL's fused head project only labelled positions on CPU. Idempotent; returns
    whether the patch is in place (False when this TRL has no such switch)."""
    try:
        import trl.trainer.utils as utils
    except ImportError:  # pragma: no cover - TRL is a required dependency
        return False
    decide = getattr(utils, "_use_triton", None)
    if decide is None:
        return False
    if getattr(decide, _MARK, False):
        return True

    def compact(device) -> bool:
        # Used by the fused forward only to choose between "labelled rows" and "every row";
        # the kernel module keeps its own check to pick Triton or torch code.
        return getattr(device, "type", device) == "cpu" or decide(device)

    setattr(compact, _MARK, True)
    utils._use_triton = compact
    return True
