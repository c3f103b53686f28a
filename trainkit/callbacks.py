"""The trainer callbacks a stage adds: the warmup note, metrics.jsonl and the terminal's
progress, the adapter's weight delta, and the clock of each phase."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from .config import Stage
from .plot import read_metrics

log = logging.getLogger("trainkit.stage")


def warmup_note(warmup: int, total: int) -> str | None:
    """The warning for a run whose warmup is a large part of it (None otherwise): a
    scheduler with warmup runs its first step at learning rate 0, so a 2-step run with a
    1-step warmup reports the same loss before and after."""
    if warmup <= 0 or total <= 0 or 2 * warmup < total:
        return None
    return (
        f"warmup is {warmup} of this run's {total} steps (the first at learning rate 0, "
        "the peak reached only at the end of the warmup); set args.warmup_ratio: 0, or "
        "train longer"
    )


def warmup_callback() -> Any:
    from transformers import TrainerCallback

    class WarmupCheck(TrainerCallback):
        """Says once, at the start, when warmup takes half of the run or more."""

        def on_train_begin(self, args, state, control, **kw):
            if state.is_world_process_zero:
                note = warmup_note(args.get_warmup_steps(state.max_steps), state.max_steps)
                if note:
                    log.warning(note)

    return WarmupCheck()


def metrics_callback(stage: Stage, resume_step: int) -> Any:
    from transformers import TrainerCallback

    run_dir = stage.run_dir
    path = run_dir / "metrics.jsonl"

    class MetricsLog(TrainerCallback):
        """Every logged value to metrics.jsonl and TensorBoard (rank 0 only)."""

        def __init__(self) -> None:
            self.writer = None

        def on_train_begin(self, args, state, control, **kw):
            if not state.is_world_process_zero:
                return
            # A resumed run re-logs the steps after its checkpoint: drop the stale lines.
            kept = [r for r in read_metrics(path) if r.get("step", 0) <= resume_step]
            path.write_text("".join(json.dumps(r) + "\n" for r in kept))
            if "tensorboard" not in stage.args["report_to"]:
                return
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(
                log_dir=str(run_dir / "tensorboard"), purge_step=resume_step + 1
            )

        def on_log(self, args, state, control, logs=None, **kw):
            if not state.is_world_process_zero or not logs:
                return
            row = {"step": state.global_step, "epoch": round(state.epoch or 0.0, 4), **logs}
            with path.open("a") as f:
                f.write(json.dumps(row, default=float) + "\n")
            if self.writer is not None:
                for k, v in logs.items():
                    if isinstance(v, (int, float)):
                        self.writer.add_scalar(
                            k.replace("eval_", "eval/") if k.startswith("eval_") else f"train/{k}",
                            v,
                            state.global_step,
                        )
                self.writer.flush()

        def on_train_end(self, args, state, control, **kw):
            if self.writer is not None:
                self.writer.close()

    return MetricsLog()


# Snapshot trainable weights up to this many elements (adapters always fit; full
# fine-tuning of a large model would double its memory, so it is not tracked).
DELTA_MAX_ELEMENTS = 50_000_000


def terminal_output(trainer: Any, name: str) -> None:
    """What a person sees while a stage trains: one progress bar with the latest loss, and no
    raw dictionaries of trainer logs (those go to metrics.jsonl and TensorBoard)."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)
    if not any(isinstance(c, ProgressCallback) for c in trainer.callback_handler.callbacks):
        return  # quiet: no bar at all

    class StageProgress(ProgressCallback):
        def on_train_begin(self, args, state, control, **kw):
            from tqdm.auto import tqdm

            if state.is_world_process_zero:
                self.training_bar = tqdm(
                    total=state.max_steps, dynamic_ncols=True, desc=f"train {name}"
                )
            self.current_step = 0

        def on_log(self, args, state, control, logs=None, **kw):
            if self.training_bar is not None and logs and "loss" in logs:
                self.training_bar.set_postfix_str(f"loss {float(logs['loss']):.3f}")
            if self.training_bar is not None and logs and "eval_loss" in logs:
                self.training_bar.set_postfix_str(f"eval loss {float(logs['eval_loss']):.3f}")

        def on_prediction_step(self, args, state, control, eval_dataloader=None, **kw):
            pass  # evaluation shows as the eval loss on the training bar, not a bar of its own

        def on_evaluate(self, args, state, control, **kw):
            pass

        def on_predict(self, args, state, control, **kw):
            pass

    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(StageProgress())


def delta_callback(info: dict[str, Any]) -> Any:
    from transformers import TrainerCallback

    class WeightsDelta(TrainerCallback):
        """How far the trainable weights moved (L2 norm of the update): 0 means a silent bug."""

        def on_train_begin(self, args, state, control, model=None, **kw):
            params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
            info["trainable_parameters"] = sum(p.numel() for _, p in params)
            info["total_parameters"] = sum(p.numel() for p in model.parameters())
            self.start = None
            if info["trainable_parameters"] <= DELTA_MAX_ELEMENTS:
                self.start = {n: p.detach().float().clone() for n, p in params}

        def on_train_end(self, args, state, control, model=None, **kw):
            if self.start is None:
                return
            total = 0.0
            for n, p in model.named_parameters():
                if n in self.start:
                    total += float((p.detach().float() - self.start[n]).pow(2).sum())
            info["weights_delta_l2"] = total**0.5
            self.start = None

    return WeightsDelta()


class PhaseClock:
    """Wall seconds per phase of a stage (run.json ``phase_seconds``): where a stage's time
    goes besides training (bench/train.py prints them beside a plain TRL script's)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.mark = time.perf_counter()

    def lap(self, phase: str) -> float:
        now = time.perf_counter()
        spent = now - self.mark
        self.seconds[phase] = self.seconds.get(phase, 0.0) + spent
        self.mark = now
        return spent

    def rounded(self) -> dict[str, float]:
        return {k: round(v, 3) for k, v in self.seconds.items()}
