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

from .model import adapter_base, is_adapter_dir, load_tokenizer, merged_from_adapter

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
