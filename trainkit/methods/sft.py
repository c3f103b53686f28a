"""Supervised fine-tuning (TRL SFTTrainer).

Loss on assistant tokens only for conversations (the chat template's {% generation %}
markers) and on the completion only for prompt/completion rows, unless the stage says
otherwise. Packing (best-fit decreasing, padding-free) is on by default where it is safe:
transformers isolates packed samples through their position ids.
"""

from __future__ import annotations

from typing import Any


def build(stage, common: dict[str, Any], inputs: dict[str, Any]) -> Any:
    from trl import SFTConfig, SFTTrainer

    from ..packing import OpeningLossCollator, RowPackedCollator, uses_varlen_kernel

    conversational = "messages" in inputs["train_dataset"].column_names
    args = SFTConfig(
        **common,
        max_length=stage.args["max_length"],
        packing=stage.args["packing"],
        assistant_only_loss=conversational and stage.params["assistant_only_loss"],
        completion_only_loss=stage.params["completion_only_loss"],
    )
    trainer = SFTTrainer(args=args, **inputs)
    if stage.args["packing"] and not uses_varlen_kernel(trainer.model):
        # Without a varlen attention kernel TRL's padding-free batch is one long row whose
        # attention costs (batch x max_length)^2: keep the packs as rows instead.
        trainer.data_collator = RowPackedCollator(inputs["processing_class"].pad_token_id)
    if stage.params["opening_loss_tokens"]:
        trainer.data_collator = OpeningLossCollator(
            trainer.data_collator, stage.params["opening_loss_tokens"]
        )
    return trainer
