"""Load the base model (optionally 4-bit), tokenizer and the PEFT adapter of a stage."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from corekit import adapters
from corekit.adapters import (
    adapter_base,
    bnb_config,
    device_map,
    load_tokenizer,
    merged_from_adapter,
    write_merged_from,
)
from corekit.errors import ToolkitError
from corekit.models import is_adapter
from corekit.runs import atomic_dir

from .config import Stage

log = logging.getLogger(__name__)


def attn_implementation(name: str) -> str | None:
    """transformers' attention kernel for ``args.attn_implementation``; None keeps its own
    default (sdpa). auto is flash_attention_2 on a GPU where flash-attn is installed."""
    import importlib.util

    if name != "auto":
        return name
    if adapters.cuda() and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return None


def weights_dtype(stage: Stage) -> Any:
    """The dtype the stage's model is loaded in.

    Full fine-tuning keeps float32 master weights on every device (bf16 mixed precision on
    a GPU computes in bf16 under autocast): AdamW's updates at the preference methods'
    learning rates are far below bf16's resolution, so bf16 weights would not move (after
    one step at lr 5e-7, 98.4% of them unchanged). ``args.pure_bf16`` asks for bf16 weights
    anyway (half the memory of weights, gradients and optimizer state). A frozen base under
    an adapter is loaded in bf16 on a bf16 GPU; on a CPU everything is float32, its fast
    path.
    """
    import torch

    bf16_gpu = adapters.cuda() and torch.cuda.is_bf16_supported()
    if stage.args.get("pure_bf16"):
        return torch.bfloat16
    if stage.adapter["type"] == "full" or not bf16_gpu:
        return torch.float32
    return torch.bfloat16


def fp32_master_weights(model: Any) -> int:
    """Every trainable parameter in float32; returns how many were cast.

    TRL's trainers cast a quantised model's trainable parameters to bf16 (following the
    QLoRA paper): on a CPU, whose computation here is float32, that crashed the reward
    model (a bf16 score head fed float32 hidden states) and left LoRA updates at bf16
    resolution. On a GPU, bf16 autocast still computes in bf16; the weights AdamW updates
    stay float32, as PEFT itself keeps adapters by default.
    """
    import torch

    n = 0
    for p in model.parameters():
        if p.requires_grad and p.dtype != torch.float32:
            p.data = p.data.float()
            n += 1
    return n


def keep_4bit_layers_differentiable(model: Any) -> int:
    """Keep every bitsandbytes 4-bit layer on its dequantise-then-matmul path.

    On CPUs with AVX-512 BF16, bitsandbytes 0.50 repacks a ``Linear4bit`` weight in place
    for a BF16 kernel during its first eval-mode forward without gradients (an evaluation,
    early stopping); later training forwards then go through that kernel, which has no
    autograd, so no gradient flows back through any frozen 4-bit matmul and only the LoRA
    paths carry it (grad norm 0.71 instead of 1.54 on the tiny model). Evaluation then also
    runs the arithmetic training runs. Returns how many layers were set.
    """
    try:
        from bitsandbytes.nn import Linear4bit
    except ImportError:  # pragma: no cover - no 4-bit model without bitsandbytes
        return 0
    layers = [m for m in model.modules() if isinstance(m, Linear4bit)]
    for m in layers:
        m.support_avx512bf16_for_cpu = False
    return len(layers)


def continues_adapter(stage: Stage, path: str | Path) -> bool:
    """Whether a 4-bit stage starting from an adapter trains that adapter on, on the 4-bit
    base, instead of starting from the adapter merged into its base.

    Merging and quantising again throws the earlier stage away: its update is mostly
    smaller than half an NF4 step, so the re-quantised weights snap back to the base's
    (loss on a chat sample: 6.9176 base, 6.8874 SFT policy, 6.9179 merged and re-quantised).
    Continuing keeps the policy exactly; DPO, KTO and the RL trainers then take a frozen
    copy of the adapter (TRL's "ref" adapter) as the reference model, i.e. the earlier
    stage's policy. A reward stage needs a new score head, so it starts from the merge.
    """
    return bool(stage.quantization.get("load_in_4bit")) and stage.method != "reward"


def _continued_adapter(stage: Stage, path: str | Path, kwargs: dict[str, Any]) -> Any:
    from peft import PeftModel, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM

    log.info("%s trains on the adapter of %s, on its base in 4-bit", stage.name, path)
    base = AutoModelForCausalLM.from_pretrained(adapter_base(path), **kwargs)
    keep_4bit_layers_differentiable(base)
    base = prepare_model_for_kbit_training(
        base, use_gradient_checkpointing=stage.args["gradient_checkpointing"]
    )
    return PeftModel.from_pretrained(base, str(path), is_trainable=True)


def is_peft_model(model: Any) -> bool:
    try:
        from peft import PeftModel
    except ImportError:  # pragma: no cover
        return False
    return isinstance(model, PeftModel)


def load_base(stage: Stage, path: str | None = None) -> Any:
    """The stage's starting model. A `from` stage that produced an adapter is merged first,
    unless this stage is 4-bit: then it trains that adapter on (``continues_adapter``)."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    path = path or stage.base_model
    dtype = weights_dtype(stage)
    kwargs: dict[str, Any] = {"dtype": dtype}
    attn = attn_implementation(stage.args.get("attn_implementation", "auto"))
    if attn is not None:
        kwargs["attn_implementation"] = attn
    if stage.quantization.get("load_in_4bit"):
        kwargs["quantization_config"] = bnb_config(stage.quantization)
        kwargs["device_map"] = device_map()
    if is_adapter(path) and continues_adapter(stage, path):
        return _continued_adapter(stage, path, kwargs)
    if is_adapter(path):
        merged_dir = stage.run_dir / "merged-start"
        if not (merged_dir / "config.json").is_file():
            log.info("merging the adapter of %s into its base to start %s", path, stage.name)
            merged, dequantized = merged_from_adapter(path, dtype)
            with atomic_dir(merged_dir) as tmp:
                merged.save_pretrained(tmp)
                load_tokenizer(path).save_pretrained(tmp)
                write_merged_from(tmp, path, dequantized, str(merged.dtype))
            del merged
        path = str(merged_dir)
    if stage.method == "reward":
        tok = load_tokenizer(path)
        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, **kwargs)
        model.config.pad_token_id = tok.pad_token_id
    else:
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    if stage.quantization.get("load_in_4bit"):
        from peft import prepare_model_for_kbit_training

        keep_4bit_layers_differentiable(model)
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=stage.args["gradient_checkpointing"]
        )
    return model


def peft_config(stage: Stage) -> Any:
    """The PEFT config of the stage's adapter; None for full fine-tuning."""
    from peft import (
        IA3Config,
        LoraConfig,
        PrefixTuningConfig,
        PromptTuningConfig,
        TaskType,
    )

    a = stage.adapter
    task = TaskType.SEQ_CLS if stage.method == "reward" else TaskType.CAUSAL_LM
    kind = a["type"]
    if kind == "full":
        return None
    if kind in ("lora", "dora", "qlora"):
        return LoraConfig(
            r=a["r"],
            lora_alpha=a["alpha"],
            lora_dropout=a["dropout"],
            target_modules=a["target_modules"],
            use_dora=kind == "dora",
            task_type=task,
        )
    if kind == "ia3":
        targets = None if a["target_modules"] == "all-linear" else a["target_modules"]
        # PEFT's per-architecture defaults pick attention k/v and the MLP down projection.
        return IA3Config(
            target_modules=targets,
            feedforward_modules=[] if targets else None,
            task_type=task,
        )
    if kind == "prompt_tuning":
        return PromptTuningConfig(num_virtual_tokens=a["num_virtual_tokens"], task_type=task)
    if kind == "prefix_tuning":
        return PrefixTuningConfig(num_virtual_tokens=a["num_virtual_tokens"], task_type=task)
    raise ToolkitError(f"unknown adapter type {kind!r}")
