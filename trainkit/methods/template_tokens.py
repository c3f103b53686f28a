"""Rows that carry the chat template's tokens and no others, for TRL's ORPO and CPO/SimPO.

Those trainers render prompt and answers through the chat template, then put a BOS token in
front of the prompt when its first token is not BOS, and an EOS token after each answer
when its last token is not EOS. A template that opens without BOS (ChatML, the tiny
model's) gets a BOS it never emits, and one that ends a turn with its end token and a
newline (SmolLM2's ``<|im_end|>\\n``) gets a second end token: the model would learn to
say ``<|im_end|>`` twice. For conversational rows the template already marks where a turn
ends, so a BOS or EOS it did not write is taken out again; text rows (no template) keep
them, as they need an end.
"""

from __future__ import annotations

from typing import Any

SEQUENCES = ("chosen_", "rejected_")


def template_tokens_only(row: dict[str, Any], feature: dict[str, Any], tok: Any) -> dict[str, Any]:
    """The tokenised row without the BOS/EOS the trainer added to the rendered texts."""
    bos, eos = tok.bos_token_id, tok.eos_token_id
    if (
        bos is not None
        and row["prompt_input_ids"][:1] == [bos]
        and not feature["prompt"].startswith(tok.bos_token)
    ):
        for key in ("prompt_input_ids", "prompt_attention_mask"):
            row[key] = row[key][1:]
        for side in SEQUENCES:
            for key in ("input_ids", "attention_mask", "labels"):
                row[side + key] = row[side + key][1:]
    for side in SEQUENCES:
        text = feature[side.rstrip("_")]
        if (
            eos is not None
            and row[side + "input_ids"][-1:] == [eos]
            and not text.endswith(tok.eos_token)
        ):
            for key in ("input_ids", "attention_mask", "labels"):
                row[side + key] = row[side + key][:-1]
    return row


def with_template_tokens_only(trainer_cls: type) -> type:
    """``trainer_cls`` (ORPOTrainer, CPOTrainer) tokenising conversational rows with the
    template's tokens only."""

    class TemplateTokensOnly(trainer_cls):
        def tokenize_row(self, feature, model=None):
            row = super().tokenize_row(feature, model)
            if getattr(self, "is_encoder_decoder", False):
                return row
            return template_tokens_only(row, feature, self.processing_class)

    TemplateTokensOnly.__name__ = trainer_cls.__name__
    return TemplateTokensOnly


def conversational(dataset: Any) -> bool:
    return dataset is not None and len(dataset) > 0 and isinstance(dataset[0]["prompt"], list)
