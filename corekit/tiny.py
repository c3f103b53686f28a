"""Build a tiny Llama-architecture causal LM for offline tests and the demo pipeline.

The model is random (it learns a little from the demo's training steps) but has every part a
real model has: a byte-level BPE tokenizer trained on local text, special tokens, a chat
template with ``{% generation %}`` markers (TRL's assistant-only loss needs them), and a
config that vLLM's CPU backend accepts (head_dim 64: head_dim 16 is refused there).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from corekit.errors import ToolkitError
from corekit.runs import atomic_dir

log = logging.getLogger(__name__)

SPECIAL_TOKENS = [
    "<|pad|>",
    "<|begin|>",
    "<|end|>",
    "<|system|>",
    "<|user|>",
    "<|assistant|>",
    "<|tool|>",
]

# Turns are "<|role|>\n...<|end|>\n"; the assistant's text and its closing <|end|> (the eos)
# sit inside {% generation %} so assistant-only loss trains the model to stop. Tool calls are
# rendered as JSON after the text.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{%- if message['role'] == 'assistant' %}"
    "{{- '<|assistant|>\\n' }}"
    "{%- generation %}"
    "{{- message['content'] if message['content'] is string else '' }}"
    "{%- if message['tool_calls'] is defined and message['tool_calls'] %}"
    "{%- for call in message['tool_calls'] %}"
    "{{- '<tool_call>' + (call['function'] | tojson) + '</tool_call>' }}"
    "{%- endfor %}"
    "{%- endif %}"
    "{{- '<|end|>' }}"
    "{%- endgeneration %}"
    "{{- '\\n' }}"
    "{%- else %}"
    "{{- '<|' + message['role'] + '|>\\n' + (message['content'] if message['content'] is string else '') + '<|end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|assistant|>\\n' }}{%- endif %}"
)

# Sized so engine and trainer code paths all run in seconds on two CPU cores.
TINY_ARCH: dict[str, Any] = dict(
    hidden_size=128,
    intermediate_size=256,
    num_hidden_layers=2,
    num_attention_heads=2,
    num_key_value_heads=1,
    head_dim=64,
    max_position_embeddings=1024,
)


@dataclass(frozen=True)
class TinyCorpus:
    """What a tiny model learns from: ``texts`` train its tokenizer; ``documents`` (plain
    text, or a conversation rendered with the model's chat template) are its pretraining
    data. The project's own corpus is ``datakit.demo.tiny_corpus()``."""

    texts: list[str]
    documents: list[str | list[dict[str, Any]]] = field(default_factory=list)


def _rendered(tokenizer: Any, documents: list[str | list[dict[str, Any]]]) -> list[str]:
    return [
        d if isinstance(d, str) else tokenizer.apply_chat_template(d, tokenize=False)
        for d in documents
    ]


def pretrain(
    model: Any,
    tokenizer: Any,
    documents: list[str | list[dict[str, Any]]],
    steps: int,
    seed: int,
    lr: float = 3e-3,
    batch_size: int = 8,
    show_progress: bool = False,
) -> list[float]:
    """A few hundred steps of language modelling on ``documents``, so the tiny model ends its
    turns and continues task lists (a random model only babbles until max_tokens)."""
    import random

    import torch

    texts = _rendered(tokenizer, documents)
    enc = [
        tokenizer(t, add_special_tokens=False, truncation=True, max_length=512)["input_ids"]
        for t in texts
    ]
    rng = random.Random(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    pad = tokenizer.pad_token_id
    losses = []
    model.train()
    from corekit.clikit import progress

    bar = progress(range(steps), not show_progress, desc="init-tiny: training", unit=" step")
    for _ in bar:
        batch = rng.sample(enc, min(batch_size, len(enc)))
        width = max(len(x) for x in batch)
        ids = torch.tensor([x + [pad] * (width - len(x)) for x in batch])
        labels = torch.tensor([x + [-100] * (width - len(x)) for x in batch])
        loss = model(input_ids=ids, attention_mask=(labels != -100).long(), labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
        if show_progress:
            bar.set_postfix(loss=f"{losses[-1]:.3f}", refresh=False)
    model.eval()
    return losses


def _texts_from_files(paths: Iterable[str | Path]) -> list[str]:
    texts: list[str] = []
    for p in paths:
        try:
            texts.extend(
                line for line in Path(p).read_text(encoding="utf-8").splitlines() if line.strip()
            )
        except FileNotFoundError:
            raise ToolkitError(f"{p}: no such file") from None
        except UnicodeDecodeError as e:
            raise ToolkitError(f"{p}: invalid UTF-8 at byte {e.start}") from None
    return texts


def build_tokenizer(texts: list[str], vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|begin|>",
        eos_token="<|end|>",
        pad_token="<|pad|>",
        chat_template=CHAT_TEMPLATE,
        model_max_length=TINY_ARCH["max_position_embeddings"],
    )


def init_tiny(
    out_dir: str | Path,
    corpus: TinyCorpus,
    seed: int = 0,
    vocab_size: int = 1024,
    text_files: Iterable[str | Path] = (),
    force: bool = False,
    train_steps: int = 0,
    show_progress: bool = False,
) -> dict[str, Any]:
    """Write a tiny random Llama + tokenizer to ``out_dir``; deterministic for a seed.

    Its tokenizer is trained on ``corpus.texts`` (and ``text_files``); with ``train_steps``
    the model is first trained that many steps on ``corpus.documents``. Written to a
    sibling temp directory and renamed, so a crash leaves no half model. Returns a summary
    (parameters, vocabulary, path, training loss).
    """
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not force:
        raise ToolkitError(f"{out}: directory exists and is not empty (use --force to replace it)")
    if not 300 <= vocab_size <= 65536:
        raise ToolkitError(f"vocab_size {vocab_size}: must be between 300 and 65536")
    texts = list(corpus.texts) + _texts_from_files(text_files)

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    tokenizer = build_tokenizer(texts, vocab_size)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
        dtype="float32",
        **TINY_ARCH,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    # Deterministic per seed: the same seed gives the same bytes on a machine.
    torch.use_deterministic_algorithms(True, warn_only=True)
    losses = (
        pretrain(model, tokenizer, corpus.documents, train_steps, seed, show_progress=show_progress)
        if train_steps
        else []
    )
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        summary = {
            "path": str(out),
            "parameters": sum(p.numel() for p in model.parameters()),
            "vocab_size": len(tokenizer),
            "seed": seed,
            "train_steps": train_steps,
            "loss_first": round(losses[0], 4) if losses else None,
            "loss_last": round(losses[-1], 4) if losses else None,
            "architecture": "LlamaForCausalLM",
            **TINY_ARCH,
        }
        (tmp / "tiny_model.json").write_text(json.dumps(summary, indent=2) + "\n")
    log.info("tiny model at %s: %d parameters", out, summary["parameters"])
    return summary
