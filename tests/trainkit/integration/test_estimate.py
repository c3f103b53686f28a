"""`trainkit estimate` against what torch really holds: exact parameter counts from
instantiated models, activations against the tensors autograd saves on CPU, the peak of
live tensors in real trainkit SFT steps (full fine-tuning and QLoRA), and the published 7B
figures."""

from __future__ import annotations

import json

import pytest
import torch

from trainkit.estimate import GIB, estimate, shape_from_config


def _saved_bytes(model, ids) -> int:
    """Bytes of every distinct storage autograd keeps for the backward pass (weights excluded)."""
    seen: dict[int, int] = {}

    def pack(t):
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(input_ids=ids, labels=ids)
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    return sum(v for k, v in seen.items() if k not in weights)


@pytest.mark.numeric
@pytest.mark.parametrize(
    "dims,seq,batch",
    [
        ({}, 256, 4),  # the project's tiny model shape
        (
            {
                "hidden_size": 512,
                "intermediate_size": 1376,
                "num_attention_heads": 8,
                "num_key_value_heads": 8,
                "num_hidden_layers": 4,
            },
            512,
            8,
        ),
        (
            {
                "hidden_size": 256,
                "intermediate_size": 688,
                "num_attention_heads": 4,
                "num_key_value_heads": 2,
                "num_hidden_layers": 3,
                "tie_word_embeddings": True,
            },
            128,
            16,
        ),
    ],
)
def test_estimate_matches_torch_on_cpu(tiny_model, dims, seq, batch):
    from transformers import AutoConfig, LlamaForCausalLM

    cfg = AutoConfig.from_pretrained(tiny_model)
    for k, v in dims.items():
        setattr(cfg, k, v)
    cfg.head_dim = cfg.hidden_size // cfg.num_attention_heads
    cfg._attn_implementation = "sdpa"
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg)
    as_dict = json.loads(cfg.to_json_string())
    est = estimate(as_dict, "full", seq_len=seq, batch=batch, precision="float32")
    assert est.parameters == sum(p.numel() for p in model.parameters())
    assert est.weights_bytes == 4 * est.parameters and est.optimizer_bytes == 8 * est.parameters
    ids = torch.randint(0, cfg.vocab_size, (batch, seq))
    # transformers' own loss keeps the fp32 log-probabilities, which TRL's chunked head does
    # not (the estimate's head term covers that instead): measured without them.
    log_probs = batch * seq * cfg.vocab_size * 4
    measured = _saved_bytes(model, ids) - log_probs
    print(
        f"activations estimated {est.activations_bytes / 2**20:.1f} MiB, saved by autograd {measured / 2**20:.1f} MiB"
    )
    # The docstring's claim: within 5% of what autograd saves, full fine-tuning ...
    assert est.activations_bytes == pytest.approx(measured, rel=0.05), (
        est.activations_bytes / GIB,
        measured / GIB,
    )

    from peft import LoraConfig, get_peft_model

    lora = get_peft_model(model, LoraConfig(r=8, target_modules="all-linear"))
    trainable = sum(p.numel() for p in lora.parameters() if p.requires_grad)
    est_lora = estimate(as_dict, "lora", lora_r=8, seq_len=seq, batch=batch, precision="float32")
    assert est_lora.trainable_parameters == trainable
    # ... and LoRA on a frozen base.
    measured_lora = _saved_bytes(lora, ids) - log_probs
    assert est_lora.activations_bytes == pytest.approx(measured_lora, rel=0.05), (
        est_lora.activations_bytes / GIB,
        measured_lora / GIB,
    )


LLAMA2_7B = {
    "hidden_size": 4096,
    "intermediate_size": 11008,
    "num_attention_heads": 32,
    "num_key_value_heads": 32,
    "num_hidden_layers": 32,
    "vocab_size": 32000,
    "hidden_act": "silu",
    "tie_word_embeddings": False,
}


def test_published_7b_figures():
    assert shape_from_config(LLAMA2_7B).params == 6_738_415_616  # Llama-2-7B's parameter count
    pure = estimate(LLAMA2_7B, "full", precision="pure_bf16")
    assert pure.weights_bytes / 1e9 == pytest.approx(13.5, abs=0.1)  # "~14 GB in bf16"
    # Standard mixed precision: fp32 master weights, gradients and two AdamW moments are
    # 16 bytes per parameter; pure bf16 is 8.
    mixed = estimate(LLAMA2_7B, "full")
    n = mixed.parameters
    assert mixed.weights_bytes + mixed.gradients_bytes + mixed.optimizer_bytes == 16 * n
    assert pure.weights_bytes + pure.gradients_bytes + pure.optimizer_bytes == 8 * n
    q = estimate(LLAMA2_7B, "qlora")
    lora = estimate(LLAMA2_7B, "lora", lora_r=16)
    assert lora.trainable_parameters == 39_976_960  # PEFT's count for r=16 on all linear layers
    # NF4 linears ("~4 GB in 4-bit", QLoRA paper and model cards with a bf16 rest) plus the
    # fp32 upcast of embeddings, head and norms prepare_model_for_kbit_training makes:
    # 0.49 GiB more than bf16 on Llama-2-7B.
    s = shape_from_config(LLAMA2_7B)
    nf4 = q.weights_bytes - s.other_params * 4 - q.trainable_parameters * 4
    assert 3.2e9 < nf4 + s.other_params * 2 < 4.3e9
    assert s.other_params * 2 / GIB == pytest.approx(0.49, abs=0.005)
    # Gradient checkpointing cuts activations by about the layer count.
    ckpt = estimate(LLAMA2_7B, "qlora", seq_len=2048, gradient_checkpointing=True)
    plain = estimate(LLAMA2_7B, "qlora", seq_len=2048)
    assert ckpt.activations_bytes < plain.activations_bytes / 4


@pytest.mark.parametrize(
    "adapter,seq,batch,optimizer",
    [
        ("full", 256, 4, "adamw_torch_fused"),
        ("full", 256, 4, "adamw_torch"),  # the single-tensor loop's step temporaries
        ("qlora", 256, 4, "adamw_torch_fused"),
        ("qlora", 128, 2, "adamw_torch_fused"),
    ],
)
def test_estimate_is_within_10_percent_of_a_real_sft_step(
    tiny_model, tmp_path, adapter, seq, batch, optimizer
):
    """The estimated peak against the peak of live tensors in step 2 of trainkit's own SFT
    stage on CPU (TRL's trainer, profiler memory timeline: trainkit.memory)."""
    from trainkit.memory import measure_sft_peak

    info: dict = {}
    measured = measure_sft_peak(
        tiny_model, adapter, seq, batch, tmp_path, optimizer=optimizer, info=info
    )
    assert 0 < info["scored_tokens"] < seq * batch  # the prompts are not scored
    cfg = json.loads((tiny_model / "config.json").read_text())
    est = estimate(
        cfg,
        adapter,
        seq_len=seq,
        batch=batch,
        precision="float32",
        lora_r=16,
        optimizer=optimizer,
        scored_tokens=info["scored_tokens"],
    )
    print(
        f"{adapter} seq {seq} x {batch} {optimizer}: estimate {est.total_bytes / 2**20:.1f} "
        f"MiB, measured {measured / 2**20:.1f} MiB"
    )
    assert est.total_bytes == pytest.approx(measured, rel=0.10)
