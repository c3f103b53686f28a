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


class OpeningLossCollator:
    """``collate``'s batches with the loss kept on the first ``tokens`` tokens of each answer.

    An answer is a run of labelled tokens; a run ends at an unlabelled token (the prompt
    of the next sample, padding) or where the position ids restart (a packed sample). Used
    to fit a decision made in an answer's first tokens (refuse or answer) without the rest
    of the answer diluting its gradient.
    """

    def __init__(self, collate: Any, tokens: int):
        self.collate = collate
        self.tokens = tokens

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        batch = self.collate(examples)
        batch["labels"] = opening_labels(batch["labels"], self.tokens, batch.get("position_ids"))
        return batch


def opening_labels(labels: Any, tokens: int, position_ids: Any = None) -> Any:
    """``labels`` with every labelled token past the ``tokens``-th of its run set to -100."""
    import torch

    labelled = labels != -100
    starts = labelled.clone()
    starts[:, 1:] &= ~labelled[:, :-1] | (
        position_ids[:, 1:] == 0 if position_ids is not None else False
    )
    # Index within the run: positions since the run's start (a cumulative max of start
    # positions), for labelled tokens only.
    index = torch.arange(labels.shape[1], device=labels.device).expand_as(labels)
    run_start = torch.where(starts, index, torch.zeros_like(index)).cummax(dim=1).values
    keep = labelled & (index - run_start < tokens)
    return torch.where(keep, labels, torch.full_like(labels, -100))
