"""What the benchmarks share: a random Llama built like the tiny one, at a chosen size."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any


def llama_dims(hidden: int, layers: int, heads: int, intermediate: int) -> dict[str, int]:
    """A Llama's shape for random_llama (as many key/value heads as query heads)."""
    return dict(
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        intermediate_size=intermediate,
    )


def random_llama(name: str, dims: dict[str, Any], max_positions: int) -> Path:
    """A randomly initialised Llama with the demo BPE tokenizer and chat template, saved once
    under the temp dir as ``name`` (reused by later runs)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from corekit.tiny import CHAT_TEMPLATE, build_tokenizer
    from datakit.demo import demo_texts

    out = Path(tempfile.gettempdir()) / name
    if (out / "config.json").is_file():
        return out
    tok = build_tokenizer(demo_texts(), 1024)
    tok.chat_template = CHAT_TEMPLATE
    cfg = LlamaConfig(
        vocab_size=len(tok),
        head_dim=64,
        max_position_embeddings=max_positions,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=False,
        dtype="float32",
        **dims,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out
