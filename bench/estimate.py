"""How close ``trainkit estimate`` is to the memory a real SFT step holds at its peak.

For each case, the estimate (from config.json alone, precision float32: the CPU) against
the peak of live tensors in step 2 of trainkit's own SFT stage (TRL's trainer; the
profiler's memory timeline, ``trainkit.memory``), for full fine-tuning and QLoRA, on the
tiny model and on SmolLM2-135M-Instruct (when `make setup` has put it in the model cache).
The baseline is the figure a competent user would otherwise reach for: the mixed-precision
rule of thumb, 16 bytes per trained parameter (2 + 0.5 per parameter for QLoRA's NF4
base), plus the activations the estimate models; its error is printed beside ours.
One line per figure: ``estimate_error_<model>_<method>_<seq>x<batch>: <+x.x%> (goal
within +-10%)``.
Run: python bench/estimate.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def models(quick: bool) -> dict[str, Path]:
    from corekit.tiny import init_tiny
    from datakit.demo import tiny_corpus

    tiny = Path(tempfile.gettempdir()) / "trainkit-bench-tiny"
    if not (tiny / "config.json").is_file():
        init_tiny(tiny, tiny_corpus(0), seed=0)
    out = {"tiny": tiny}
    if not quick:
        from corekit.model_sources import ensure_models
        from corekit.project import Project

        root = Path(__file__).resolve().parent.parent
        try:
            cfg = Project.load(root / "pipeline.yaml").config
            (row,) = ensure_models(cfg, root, ["smollm2"], offline=True, quiet=True)
            out["smollm2"] = Path(row["path"])
        except Exception as e:  # noqa: BLE001 - the bench runs on what is there
            print(f"smollm2: skipped ({e})")
    return out


def rule_of_thumb(cfg: dict, method: str, acts: int) -> int:
    from trainkit.estimate import shape_from_config

    s = shape_from_config(cfg)
    if method == "full":
        return 16 * s.params + acts
    return int(0.5 * s.linear_params + 2 * s.other_params) + acts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="the tiny model only (under a minute)")
    args = ap.parse_args()
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    from trainkit.estimate import estimate
    from trainkit.memory import measure_sft_peak

    fused = "adamw_torch_fused"
    cases = {
        "tiny": [
            ("full", 256, 4, fused),
            ("full", 256, 4, "adamw_torch"),
            ("qlora", 256, 4, fused),
            ("qlora", 128, 2, fused),
        ],
        "smollm2": [
            ("full", 256, 1, fused),
            ("full", 256, 1, "adamw_torch"),
            ("qlora", 256, 1, fused),
            ("qlora", 512, 2, fused),
        ],
    }
    for name, path in models(args.quick).items():
        cfg = json.loads((path / "config.json").read_text())
        for method, seq, batch, optim in cases[name]:
            info: dict = {}
            with tempfile.TemporaryDirectory() as work:
                peak = measure_sft_peak(path, method, seq, batch, work, optimizer=optim, info=info)
            est = estimate(
                cfg,
                method,
                seq_len=seq,
                batch=batch,
                precision="float32",
                lora_r=16,
                optimizer=optim,
                scored_tokens=info["scored_tokens"],  # the loss scores the answers only
            )
            base = rule_of_thumb(cfg, method, est.activations_bytes)
            key = f"{name}_{method}_{seq}x{batch}" + ("" if optim == fused else f"_{optim}")
            print(f"measured_peak_mib_{key}: {peak / 2**20:.1f}")
            print(f"estimate_mib_{key}: {est.total_bytes / 2**20:.1f}")
            print(
                f"estimate_error_{key}: {100 * (est.total_bytes / peak - 1):+.1f}% (goal within +-10%)"
            )
            print(f"rule_of_thumb_error_{key}: {100 * (base / peak - 1):+.1f}%")
            print(
                f"estimate_vs_rule_of_thumb_abs_error_ratio_{key}: "
                f"{abs(base / peak - 1) / max(abs(est.total_bytes / peak - 1), 1e-4):.1f}x"
            )


if __name__ == "__main__":
    main()
