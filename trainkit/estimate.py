"""``trainkit estimate``: peak training memory of an SFT step from a model's config.json, no
weights loaded.

Precision (``--precision``), as trainkit trains:
    mixed        the GPU default: bf16 compute (autocast) and activations; full fine-tuning
                 keeps fp32 master weights, fp32 gradients and fp32 AdamW moments
                 (4 + 4 + 8 = 16 bytes per parameter); a frozen base under an adapter is
                 bf16.
    pure_bf16    full fine-tuning with bf16 weights, gradients and moments (torch's AdamW
                 keeps its moments in the parameter's dtype: 2 + 2 + 4 = 8 bytes).
    float32      the CPU: everything float32 (16 bytes per fully trained parameter).
Parts:
    weights      full/lora: every parameter as above. qlora: linear layers in NF4 = 4 bits
                 + one fp32 absmax per 64-block (0.5 bit), or with double quantisation an
                 8-bit absmax plus one fp32 per 256 absmaxes (4 + 8/64 + 32/(64*256) =
                 4.127 bits); embeddings, head and norms in fp32, as
                 ``prepare_model_for_kbit_training`` upcasts them (0.49 GiB more than bf16
                 on Llama-2-7B). Adapters are fp32.
    gradients    one per trainable parameter, in its dtype.
    optimizer    AdamW: two moments per trainable parameter.
    activations  what autograd keeps for the backward pass inside the decoder, per layer
                 and token: two RMSNorms (full fine-tuning: input, normalised input and
                 output, 3h each; frozen: 2h, no normalised input), q/k/v after RoPE and the
                 attention output of a fused kernel that keeps no s*s scores (plus its fp32
                 log-sum-exp per head), and the MLP's gate, up, activation and product (4i;
                 2i for an ungated MLP), all in the activation dtype; with LoRA also each
                 adapted linear's fp32 rank-r intermediate, and the first layer's input norm
                 keeps only its output (the frozen embedding wants no gradient). Plus RoPE's
                 cos/sin and the final norm. Within 5% of the tensors autograd saves, for
                 full fine-tuning and LoRA (tests/trainkit/integration/test_estimate.py; Korthikanti
                 et al. 2022 give 34h bytes for a GPT layer with dropout). With gradient
                 checkpointing only each layer's input is kept, plus one layer's
                 activations during recomputation.
    head         TRL's chunked log-prob kernel (SFT and DPO) never materialises the logits:
                 it projects tiles of up to 4096 tokens x 32768 vocabulary entries into one
                 buffer; without Triton (the CPU) the backward's torch fallback also holds
                 about 7 tile-sized fp32 temporaries at once. It projects the positions the
                 loss scores (``scored_tokens``: by default every position, the bound; SFT
                 with unsupervised prompts scores fewer, and trainkit.lm_head makes the CPU
                 skip the rest as Triton does).
                 When the head trains (full fine-tuning) its fp32 gradient accumulator
                 (vocabulary x hidden) exists from the start of the backward pass.
    peak         the larger of the two moments a step peaks at: the start of the backward
                 pass (weights, optimizer state, activations and the head's backward) and
                 the optimizer step (weights, optimizer state, gradients, and with
                 ``adamw_torch``'s single-tensor loop two temporaries the size of the
                 largest parameter; the fused AdamW, trainkit's default, makes none).
Checked against the peak of live tensors in real trainkit SFT steps on CPU (the profiler's
memory timeline, ``trainkit.memory``): within 10% for full fine-tuning and QLoRA on the tiny
model and on SmolLM2-135M (``bench/estimate.py`` prints the errors; the tiny model's are
tests). Not included: the allocator's cache and fragmentation, the CUDA context, and a
GPU's foreach/fused optimizer temporaries: leave 10-20% headroom on a GPU.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from corekit.errors import ToolkitError

DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
GIB = 2**30


@dataclass
class Shape:
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    tied: bool
    gated_mlp: bool

    @property
    def attn_linear(self) -> int:
        q_out = self.heads * self.head_dim
        kv_out = self.kv_heads * self.head_dim
        return self.hidden * q_out * 2 + self.hidden * kv_out * 2  # q, o, k, v

    @property
    def mlp_linear(self) -> int:
        return (3 if self.gated_mlp else 2) * self.hidden * self.intermediate

    @property
    def linear_params(self) -> int:
        return self.layers * (self.attn_linear + self.mlp_linear)

    @property
    def other_params(self) -> int:
        emb = self.vocab * self.hidden * (1 if self.tied else 2)
        return emb + self.layers * 2 * self.hidden + self.hidden  # embeddings, head, norms

    @property
    def params(self) -> int:
        return self.linear_params + self.other_params

    def lora_params(self, r: int) -> int:
        q_out, kv_out = self.heads * self.head_dim, self.kv_heads * self.head_dim
        h, i = self.hidden, self.intermediate
        per_layer = (h + q_out) * 2 + (h + kv_out) * 2  # q, o, k, v: r * (in + out) each
        per_layer += (h + i) * (3 if self.gated_mlp else 2)
        return self.layers * r * per_layer


def shape_from_config(cfg: dict[str, Any], where: str = "config.json") -> Shape:
    cfg = cfg.get("text_config", cfg)  # multimodal configs nest the language model

    def need(*names: str) -> int:
        # transformers' usual name first, then the GPT-2-style one
        for n in names:
            if cfg.get(n):
                return cfg[n]
        raise ToolkitError(f"{where}: no {names[0]} (not a decoder-only transformer config?)")

    hidden = need("hidden_size", "n_embd")
    layers = need("num_hidden_layers", "n_layer")
    heads = need("num_attention_heads", "n_head")
    vocab = need("vocab_size")
    head_dim = cfg.get("head_dim") or hidden // heads
    gated = cfg.get("hidden_act", cfg.get("activation_function", "silu")) in (
        "silu",
        "swiglu",
        "gelu_pytorch_tanh",
    ) and ("intermediate_size" in cfg)
    return Shape(
        hidden=hidden,
        layers=layers,
        heads=heads,
        kv_heads=cfg.get("num_key_value_heads") or heads,
        head_dim=head_dim,
        intermediate=cfg.get("intermediate_size") or cfg.get("n_inner") or 4 * hidden,
        vocab=vocab,
        tied=bool(cfg.get("tie_word_embeddings", False)),
        gated_mlp=gated,
    )


def model_config_path(model: str | Path) -> Path:
    p = Path(model)
    return p / "config.json" if p.is_dir() else p


def load_model_config(model: str | Path) -> dict[str, Any]:
    path = model_config_path(model)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ToolkitError(
            f"{model}: no config.json (give a model directory or its config.json)"
        ) from None
    except ValueError as e:
        raise ToolkitError(f"{path}: not valid JSON ({e})") from None


# Precision -> (activation bytes, fully trained weight bytes, frozen base weight bytes).
PRECISIONS = {"mixed": (2, 4, 2), "pure_bf16": (2, 2, 2), "float32": (4, 4, 4)}
# AdamW implementation -> parameter-sized temporaries of its step: torch's single-tensor
# loop makes two (sqrt and quotient) for each parameter in turn, so the largest counts; the
# fused kernel none.
OPTIMIZERS = {"adamw_torch_fused": 0, "adamw_torch": 2}
# TRL 1.16's chunked log-prob kernel (trl/kernels/chunked_logprob.py, trl/trainer/utils.py).
HEAD_TOKEN_TILE = 4096
HEAD_VOCAB_TILE = 32768
HEAD_CPU_TEMPORARIES = 7.25  # y, z, log p, p, grad, 1[target] (bool and float), a difference


@dataclass
class Estimate:
    method: str
    precision: str
    parameters: int
    trainable_parameters: int
    weights_bytes: int
    gradients_bytes: int
    optimizer_bytes: int
    activations_bytes: int
    head_bytes: int
    total_bytes: int

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(
            {
                k.replace("_bytes", "_gib"): round(v / GIB, 3)
                for k, v in d.items()
                if k.endswith("_bytes")
            }
        )
        return d


def head_bytes(tokens: int, vocab: int, act_bytes: int, cpu: bool) -> int:
    """The loss head's memory at the start of the backward pass (see the module docstring)."""
    rows = min(tokens, HEAD_TOKEN_TILE)
    buffer = rows * HEAD_VOCAB_TILE * act_bytes
    if not cpu:
        return buffer
    return buffer + int(HEAD_CPU_TEMPORARIES * rows * min(vocab, HEAD_VOCAB_TILE) * 4)


def activations_bytes(
    s: Shape,
    method: str,
    seq_len: int,
    batch: int,
    wb: int,
    lora_r: int,
    gradient_checkpointing: bool,
) -> int:
    """What autograd keeps for the backward pass (see the module docstring), in bytes."""
    tokens = seq_len * batch
    h, q_out, kv_out = s.hidden, s.heads * s.head_dim, s.kv_heads * s.head_dim
    mlp = (4 if s.gated_mlp else 2) * s.intermediate  # gate, up, activation, product
    attn = 2 * q_out + 2 * kv_out  # q, k, v after RoPE, and the attention output
    lse = 4 * s.heads  # the fused kernel's fp32 log-sum-exp per head
    if method == "full":
        norm = 3 * h * wb + 4  # input, normalised input (for the weight's grad), output; rstd
        per_token = 2 * norm + (attn + mlp) * wb + lse
        first_layer_saving = 0
        final = 3 * h * wb + 4
    else:
        # Frozen norms keep no normalised input; each adapted linear keeps its fp32 rank-r
        # intermediate; the first layer's input norm needs nothing but its output, since
        # the frozen embedding below it wants no gradient.
        norm = 2 * h * wb + 4
        adapted = 4 + (3 if s.gated_mlp else 2)
        per_token = 2 * norm + (attn + mlp) * wb + lse + adapted * lora_r * 4
        first_layer_saving = h * wb + 4
        final = 2 * h * wb + 4
    per_layer = tokens * per_token
    if gradient_checkpointing:
        acts = s.layers * tokens * h * wb + per_layer
    else:
        acts = s.layers * per_layer - tokens * first_layer_saving
    rope = 2 * seq_len * s.head_dim * wb  # cos and sin, shared by all layers
    return acts + rope + tokens * final


def estimate(
    cfg: dict[str, Any],
    method: str = "lora",
    seq_len: int = 1024,
    batch: int = 1,
    precision: str = "mixed",
    lora_r: int = 16,
    gradient_checkpointing: bool = False,
    double_quant: bool = True,
    where: str = "config.json",
    optimizer: str = "adamw_torch_fused",
    scored_tokens: int | None = None,
) -> Estimate:
    if optimizer not in OPTIMIZERS:
        raise ToolkitError(f"unknown optimizer {optimizer!r}; choose {', '.join(OPTIMIZERS)}")
    if precision not in PRECISIONS:
        raise ToolkitError(f"unknown precision {precision!r}; choose {', '.join(PRECISIONS)}")
    s = shape_from_config(cfg, where)
    act, trained_b, frozen_b = PRECISIONS[precision]
    if method == "full":
        weights = s.params * trained_b
        trainable = s.params
        grad_b = trained_b
        largest = max(s.vocab * s.hidden, s.hidden * s.intermediate)
    elif method in ("lora", "dora", "qlora"):
        trainable = s.lora_params(lora_r)
        if method == "qlora":
            bits = 4 + (8 / 64 + 32 / (64 * 256) if double_quant else 32 / 64)
            weights = int(s.linear_params * bits / 8) + s.other_params * 4
        else:
            weights = s.params * frozen_b
        weights += trainable * 4  # adapters are kept in fp32
        grad_b = 4
        largest = lora_r * max(s.hidden, s.intermediate)
    else:
        raise ToolkitError(f"unknown method {method!r}; choose full, lora, dora or qlora")
    gradients = trainable * grad_b
    moments = trainable * 2 * grad_b
    acts = activations_bytes(s, method, seq_len, batch, act, lora_r, gradient_checkpointing)
    scored = seq_len * batch if scored_tokens is None else min(scored_tokens, seq_len * batch)
    head = head_bytes(scored, s.vocab, act, cpu=precision == "float32")
    if method == "full":
        head += s.vocab * s.hidden * 4  # the head's fp32 gradient accumulator, from the start
    backward_start = acts + head
    optimizer_step = gradients + OPTIMIZERS[optimizer] * largest * grad_b
    total = weights + moments + max(backward_start, optimizer_step)
    return Estimate(
        method,
        precision,
        s.params,
        trainable,
        int(weights),
        int(gradients),
        int(moments),
        int(acts),
        int(head),
        int(total),
    )
