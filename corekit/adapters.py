"""Adapters (PEFT directories beside their base model): what one is, where a run keeps it,
its base, its 4-bit quantisation, and folding it into its base (``trainkit merge``, a
``from:`` stage, evalkit's tuned model on an engine that cannot serve the adapter).

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

from .errors import ToolkitError
from .models import fingerprint, is_adapter
from .runs import atomic_dir, read_run

FINAL_DIR = "final"


def final_dir(run_dir: str | Path) -> Path:
    """Where a training run keeps its trained adapter or model."""
    return Path(run_dir) / FINAL_DIR


def cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def device_map() -> Any:
    """Where a 4-bit model is placed: the first GPU, else the CPU."""
    return {"": 0} if cuda() else "cpu"


def load_tokenizer(path: str) -> Any:
    from transformers import AutoTokenizer

    src = path
    if is_adapter(path) and not (Path(path) / "tokenizer_config.json").is_file():
        src = adapter_base(path)
    tok = AutoTokenizer.from_pretrained(src)
    if tok.pad_token is None:
        # Causal LMs often ship without one; the EOS token is the usual stand-in.
        tok.pad_token = tok.eos_token
    return tok


def adapter_base(path: str | Path) -> str:
    with open(Path(path) / "adapter_config.json") as f:
        return json.load(f)["base_model_name_or_path"]


def compute_dtype(name: str) -> Any:
    """The 4-bit layers' matmul dtype: auto is bfloat16 on a GPU that supports it (the
    QLoRA paper's), else float32 (bf16 matmuls are slow on CPUs without native bf16, and
    the CPU's float32 path is what the rest of training uses)."""
    import torch

    if name == "auto":
        return torch.bfloat16 if cuda() and torch.cuda.is_bf16_supported() else torch.float32
    return getattr(torch, name)


def bnb_config(quant: dict[str, Any]) -> Any:
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=quant["quant_type"],
        bnb_4bit_use_double_quant=quant["double_quant"],
        bnb_4bit_compute_dtype=compute_dtype(quant["compute_dtype"]),
    )


BASE_QUANTIZATION_FILE = "base_quantization.json"


def adapter_quantization(adapter_dir: str | Path) -> dict[str, Any] | None:
    """How the adapter's base was quantised while it trained (QLoRA), or None.

    Read from the adapter directory itself (``base_quantization.json``, written beside the
    adapter at the end of training), so it holds wherever the adapter is copied; for
    adapters saved before that file existed, from the run's config.json one level up.
    """
    d = Path(adapter_dir)
    own = d / BASE_QUANTIZATION_FILE
    if own.is_file():
        quant = json.loads(own.read_text())
    elif (d.parent / "run.json").is_file() and (d.parent / "config.json").is_file():
        quant = json.loads((d.parent / "config.json").read_text()).get("quantization") or {}
    else:
        return None
    return quant if quant.get("load_in_4bit") else None


def merged_from_adapter(adapter_dir: str | Path, dtype: Any = None) -> tuple[Any, bool]:
    """A trained LoRA/IA3 adapter folded into its base, as a plain model; and whether the
    base was the dequantised 4-bit one.

    A QLoRA adapter was trained against the 4-bit base, so it is merged into the
    dequantised 4-bit weights (what the adapter actually saw), not into the original
    full-precision weights; every way in (``trainkit merge`` on a run or an adapter
    directory, a ``from:`` stage) goes through here.
    """
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    quant = adapter_quantization(adapter_dir)
    with open(Path(adapter_dir) / "adapter_config.json") as f:
        task = json.load(f).get("task_type")
    kwargs: dict[str, Any] = {}
    auto = AutoModelForCausalLM
    if task == "SEQ_CLS":  # a reward model: the base with a score head (saved in the adapter)
        auto = AutoModelForSequenceClassification
        kwargs["num_labels"] = 1
    if quant:
        base = auto.from_pretrained(
            adapter_base(adapter_dir),
            quantization_config=bnb_config({**quant, "compute_dtype": "float32"}),
            device_map=device_map(),
            **kwargs,
        )
        base = base.dequantize().to(dtype or torch.float32)
    else:
        base = auto.from_pretrained(adapter_base(adapter_dir), dtype=dtype, **kwargs)
    if task == "SEQ_CLS":
        base.config.pad_token_id = load_tokenizer(str(adapter_dir)).pad_token_id
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    if getattr(merged.config, "quantization_config", None) is not None:
        del merged.config.quantization_config
    return merged, quant is not None


MERGED_FROM_FILE = "merged_from.json"
"""Written into a ``merged-start`` directory: the adapter it was merged from, so the chain
base -> adapter -> merged-start -> adapter can be read back as one adapter on the base."""


def write_merged_from(
    merged_dir: str | Path, adapter: str | Path, dequantized: bool, dtype: str
) -> None:
    info = {
        "adapter": str(Path(adapter).resolve()),
        "fingerprint": fingerprint(adapter),
        "dequantized": dequantized,
        "dtype": dtype,
    }
    (Path(merged_dir) / MERGED_FROM_FILE).write_text(json.dumps(info))


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
            raise ToolkitError(
                f"{run}: the run is not complete (status {info.get('status')}); finish it first"
            )
        adapter = final_dir(run)
    else:
        adapter = run
    if not is_adapter(adapter):
        if (adapter / "config.json").is_file():
            raise ToolkitError(f"{adapter}: holds a full model, not an adapter; use it as it is")
        raise ToolkitError(f"{run}: neither a training run (run.json) nor an adapter directory")
    return adapter, config


def merge(run: str | Path, out: str | Path, force: bool = False) -> dict[str, Any]:
    adapter, _config = adapter_dir_of(run)
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not force:
        raise ToolkitError(f"{out} exists and is not empty (use --force to replace it)")
    peft_type = json.loads((adapter / "adapter_config.json").read_text()).get("peft_type")
    if peft_type not in MERGEABLE:
        raise ToolkitError(
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
