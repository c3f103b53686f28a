"""Peak tensor memory of a training step, measured: what ``trainkit estimate`` is checked
against (``bench/estimate.py``, ``tests/trainkit/integration/test_estimate.py``).

torch's profiler records every tensor allocation and free with ``profile_memory=True``; its
memory timeline replayed in order gives the bytes of live tensors at each moment, whose
maximum is the step's peak: weights, gradients, optimizer state, saved activations and the
temporaries of forward, loss and backward, on any device, without the allocator's cache or
the process's other memory (which RSS would include).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def peak_from_timeline(timeline: list[tuple[Any, Any, Any, int]]) -> int:
    """The largest sum of live tensor bytes in a profiler memory timeline."""
    live = peak = 0
    for _, action, _, size in timeline:
        name = action.name
        if name in ("PREEXISTING", "CREATE"):
            live += size
        elif name == "DESTROY":
            live -= size
        peak = max(peak, live)
    return peak


def step_peak_callback(step: int, out: dict[str, int]) -> Any:
    """A TrainerCallback profiling optimizer step ``step`` (1-based; a later step than the
    first, whose optimizer state does not exist yet when it starts): its peak tensor bytes
    go to ``out["peak_bytes"]``."""
    from torch.profiler import ProfilerActivity, profile
    from transformers import TrainerCallback

    class StepPeak(TrainerCallback):
        prof = None

        def on_step_begin(self, args, state, control, **kw):
            if state.global_step + 1 == step:
                self.prof = profile(
                    activities=[ProfilerActivity.CPU],
                    profile_memory=True,
                    record_shapes=True,
                    with_stack=True,
                )
                self.prof.__enter__()

        def on_step_end(self, args, state, control, **kw):
            if self.prof is not None and state.global_step == step:
                self.prof.__exit__(None, None, None)
                out["peak_bytes"] = peak_from_timeline(self.prof._memory_profile().timeline)
                self.prof = None

    return StepPeak()


def measure_sft_peak(
    model_dir: str | Path,
    adapter: str,
    seq_len: int,
    batch: int,
    workdir: str | Path,
    optimizer: str = "adamw_torch_fused",
    info: dict[str, Any] | None = None,
) -> int:
    """Peak tensor bytes of step 2 of a trainkit SFT stage on ``model_dir``: ``adapter``
    (full, lora, qlora; rank 16 on all linear layers), rows of ``seq_len`` tokens, batch
    ``batch``, ``optimizer``, float32; ``info`` gets ``scored_tokens`` (see below)."""
    import random

    import yaml

    from corekit.adapters import load_tokenizer
    from datakit.store import DatasetStore

    from .config import plan
    from .data import load_stage_data
    from .model import load_base
    from .stage import build_trainer

    root = Path(workdir)
    store = DatasetStore(root / "data")
    rng = random.Random(0)
    words = "the a river bread chess winter robot garden train music light stone".split()
    records = [
        {
            "messages": [
                {"role": "user", "content": " ".join(rng.choice(words) for _ in range(10))},
                # one short record, so the length check passes; the rest are truncated
                {
                    "role": "assistant",
                    "content": " ".join(rng.choice(words) for _ in range(2 * seq_len if i else 3)),
                },
            ]
        }
        for i in range(2 * batch + 1)
    ]
    store.write("memory", records, "chat")
    stage_cfg = {
        "name": f"memory-{adapter}",
        "method": "sft",
        "dataset": "memory",
        "adapter": {"type": adapter, "r": 16, "dropout": 0.0},
        "args": {
            "max_length": seq_len,
            "batch_size": batch,
            "packing": False,
            "max_steps": 2,
            "report_to": [],
            "save_steps": 100,
            "seed": 0,
            "optimizer": optimizer,
        },
    }
    config = root / "memory.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "data_root": str(root / "data"),
                "runs_root": str(root / "runs"),
                "train": {"base_model": str(model_dir), "stages": [stage_cfg]},
            }
        )
    )
    stage = plan(config).stages[0]
    tok = load_tokenizer(stage.base_model)
    data = load_stage_data(store, "sft", "memory", tok, seq_len, assistant_only=True)
    out: dict[str, int] = {}
    full_length = data.train.select(range(1, len(data.train)))  # the short record aside
    trainer = build_trainer(
        stage, load_base(stage), tok, full_length, callbacks=[step_peak_callback(2, out)]
    )
    trainer.train()
    if info is not None:
        info["scored_tokens"] = _scored_tokens(trainer, batch)
    return out["peak_bytes"]


def _scored_tokens(trainer: Any, batch: int) -> int:
    """Supervised positions per batch (the mean row's, times ``batch``): the label positions
    after the one-token shift, as the loss head sees them (the prompts are not scored)."""
    collate = trainer.data_collator
    rows = [trainer.train_dataset[i] for i in range(len(trainer.train_dataset))]
    labels = collate(rows)["labels"]
    scored = int((labels[:, 1:] != -100).sum())
    return round(scored / len(rows) * batch)
