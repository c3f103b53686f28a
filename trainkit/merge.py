"""``trainkit merge RUN -o DIR``: fold a trained adapter into its base, save a plain model.

QLoRA adapters were trained against the 4-bit base, so they are merged into the
dequantised 4-bit weights (what the adapter actually saw), not into the original
full-precision weights; the quantisation is read from the adapter directory itself, so
merging a run dir or its bare adapter dir gives the same model. The result loads in
transformers and vLLM like any model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from datakit.errors import DatakitError
from datakit.runs import atomic_dir, read_run

from .model import (
    MERGED_FROM_FILE,
    adapter_base,
    is_adapter_dir,
    load_tokenizer,
    merged_from_adapter,
)

MERGEABLE = {"LORA", "IA3"}


def adapter_dir_of(run: str | Path) -> tuple[Path, dict[str, Any]]:
    """The adapter of a run dir (its final/) or an adapter dir itself, and the run's config."""
    run = Path(run)
    config: dict[str, Any] = {}
    info = read_run(run)
    if info is not None:
        if (run / "config.json").is_file():
            config = json.loads((run / "config.json").read_text())
        if info.get("status") != "complete":
            raise DatakitError(
                f"{run}: the run is not complete (status {info.get('status')}); finish it first"
            )
        adapter = run / "final"
    else:
        adapter = run
    if not is_adapter_dir(adapter):
        if (adapter / "config.json").is_file():
            raise DatakitError(f"{adapter}: holds a full model, not an adapter; use it as it is")
        raise DatakitError(f"{run}: neither a training run (run.json) nor an adapter directory")
    return adapter, config


def merge(run: str | Path, out: str | Path, force: bool = False) -> dict[str, Any]:
    adapter, _config = adapter_dir_of(run)
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not force:
        raise DatakitError(f"{out} exists and is not empty (use --force to replace it)")
    peft_type = json.loads((adapter / "adapter_config.json").read_text()).get("peft_type")
    if peft_type not in MERGEABLE:
        raise DatakitError(
            f"{adapter}: {peft_type} adapters add virtual tokens and cannot be merged into the "
            "weights; load the adapter with PEFT (or serve it unmerged)"
        )
    merged, dequantized = merged_from_adapter(adapter)
    with atomic_dir(out) as tmp:
        merged.save_pretrained(tmp)
        load_tokenizer(str(adapter)).save_pretrained(tmp)
    return {
        "adapter": str(adapter),
        "base": adapter_base(adapter),
        "peft_type": peft_type,
        "dequantized_4bit_base": dequantized,
        "out": str(out),
        "parameters": sum(p.numel() for p in merged.parameters()),
    }


# --- one LoRA on the original base for a chain of `from:` stages ------------------------

# adapter_config.json keys that change what a LoRA computes beyond A, B, alpha and r; a
# chain that sets any of them is merged instead of composed.
_UNCOMPOSABLE = (
    "use_dora",
    "modules_to_save",
    "rank_pattern",
    "alpha_pattern",
    "layers_to_transform",
    "trainable_token_indices",
    "fan_in_fan_out",
    "lora_bias",
)


def lora_chain(adapter: str | Path) -> tuple[str, list[Path]] | None:
    """(the plain base model, the LoRA adapters from first to last) when ``adapter`` is a
    LoRA trained on a model that is the merge of earlier LoRAs (a ``from:`` stage), all the
    way down to a plain model; None when any link is not a plain LoRA, a 4-bit one, or a
    merge whose adapter changed since."""
    from datakit.models import fingerprint

    chain: list[Path] = []
    cur = Path(adapter)
    while True:
        cfg_file = cur / "adapter_config.json"
        if not cfg_file.is_file():
            return None
        cfg = json.loads(cfg_file.read_text())
        if cfg.get("peft_type") != "LORA" or cfg.get("task_type") != "CAUSAL_LM":
            return None
        if any(cfg.get(k) for k in _UNCOMPOSABLE) or cfg.get("bias", "none") != "none":
            return None
        from .model import adapter_quantization

        if adapter_quantization(cur) is not None:
            return None
        chain.insert(0, cur)
        base = Path(cfg["base_model_name_or_path"])
        marker = base / MERGED_FROM_FILE
        if not marker.is_file():
            return (str(base), chain) if (base / "config.json").is_file() else None
        info = json.loads(marker.read_text())
        src = Path(info["adapter"])
        if info.get("dequantized") or info.get("dtype") != "torch.float32":
            return None  # merged into other weights than the base's own float32 ones
        if not src.is_dir() or fingerprint(src) != info["fingerprint"]:
            return None
        cur = src


def compose_lora(chain: list[Path], out: str | Path) -> dict[str, Any]:
    """One LoRA adapter equal to applying ``chain``'s adapters in turn (each trained on the
    merge of the ones before it): the weight deltas add up, so the composed adapter stacks
    the A matrices and the scaled B matrices (rank = the sum of the ranks, scaling 1).
    Served on the original base, it computes what the merged model computes, up to float32
    rounding; vLLM then serves base and tuned model from one engine."""
    import math

    import torch
    from safetensors.torch import load_file, save_file

    cfgs = [json.loads((a / "adapter_config.json").read_text()) for a in chain]
    weights = [load_file(str(a / "adapter_model.safetensors")) for a in chain]
    rank = sum(c["r"] for c in cfgs)
    modules = sorted({k.rsplit(".lora_", 1)[0] for w in weights for k in w if ".lora_A." in k})
    out_tensors: dict[str, Any] = {}
    for m in modules:
        a_parts, b_parts = [], []
        shape_a = shape_b = None
        for w in weights:
            if f"{m}.lora_A.weight" in w:
                shape_a = w[f"{m}.lora_A.weight"].shape[1]
                shape_b = w[f"{m}.lora_B.weight"].shape[0]
        for c, w in zip(cfgs, weights, strict=True):
            scale = c["lora_alpha"] / (math.sqrt(c["r"]) if c.get("use_rslora") else c["r"])
            a = w.get(f"{m}.lora_A.weight")
            b = w.get(f"{m}.lora_B.weight")
            if a is None:  # this adapter leaves the module alone: a zero block
                a = torch.zeros(c["r"], shape_a)
                b = torch.zeros(shape_b, c["r"])
            a_parts.append(a.float())
            b_parts.append(b.float() * scale)
        out_tensors[f"{m}.lora_A.weight"] = torch.cat(a_parts, 0).contiguous()
        out_tensors[f"{m}.lora_B.weight"] = torch.cat(b_parts, 1).contiguous()
    targets = sorted({t for c in cfgs for t in _as_list(c["target_modules"])})
    cfg = {
        **cfgs[-1],
        "base_model_name_or_path": json.loads((chain[0] / "adapter_config.json").read_text())[
            "base_model_name_or_path"
        ],
        "r": rank,
        "lora_alpha": rank,
        "use_rslora": False,
        "lora_dropout": 0.0,
        "target_modules": targets,
    }
    out = Path(out)
    with atomic_dir(out) as tmp:
        save_file(out_tensors, str(Path(tmp) / "adapter_model.safetensors"))
        (Path(tmp) / "adapter_config.json").write_text(json.dumps(cfg, indent=2))
        load_tokenizer(str(chain[-1])).save_pretrained(tmp)
    return {"adapters": [str(a) for a in chain], "rank": rank, "out": str(out)}


def _as_list(targets: Any) -> list[str]:
    return [targets] if isinstance(targets, str) else list(targets)
