"""Packed batches that keep each pack as its own row.

TRL's best-fit-decreasing packing is padding-free: it concatenates the whole batch into one
row and relies on a varlen attention kernel (FlashAttention) to keep the packed samples
apart. Without such a kernel (CPU, SDPA, eager) that one row of batch x max_length tokens
costs attention over its full square. Here each pack stays a row of its own; position ids
restart at every sample and there is no attention mask, so transformers builds a
block-diagonal causal mask per row from the position ids: samples never see each other,
and attention costs batch x max_length^2 at most.
"""

from __future__ import annotations

from typing import Any


class RowPackedCollator:
    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        width = max(len(e["input_ids"]) for e in examples)
        n = len(examples)
        input_ids = torch.full((n, width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((n, width), -100, dtype=torch.long)
        position_ids = torch.zeros((n, width), dtype=torch.long)
        for i, e in enumerate(examples):
            ids = e["input_ids"]
            k = len(ids)
            input_ids[i, :k] = torch.tensor(ids)
            labels[i, :k] = torch.tensor(e.get("labels", ids))
            pos = []
            for length in e.get("seq_lengths") or [k]:
                pos.extend(range(length))
            position_ids[i, :k] = torch.tensor(pos)
            # The padded tail is one more "sample": isolated, and it carries no loss.
            position_ids[i, k:] = torch.arange(width - k)
        # A sample's first token is not predicted from the previous sample's last one.
        labels[position_ids == 0] = -100
        return {"input_ids": input_ids, "labels": labels, "position_ids": position_ids}


def uses_varlen_kernel(model: Any) -> bool:
    impl = getattr(getattr(model, "config", None), "_attn_implementation", None) or ""
    return "flash" in impl
