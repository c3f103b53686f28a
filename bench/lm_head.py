"""The SFT loss head on CPU: trainkit.lm_head (project only the supervised positions) against
TRL 1.16's default without Triton (project every position, then mask), in one process.

Both run TRL's own chunked log-prob kernel (forward and backward) on the shape of the demo's
safety-sft stage: SmolLM2's head (49,152 x 576), rows of 56 tokens of which the first 44 are
prompt (no loss), batch 8; --quick: batch 4. The baseline is exactly what TRL's fused
forward does without Triton (every row of hidden states, labels clamped, the result masked);
ours is what it does with Triton, and what trainkit.lm_head turns on for the CPU.

- head_speedup_vs_trl_cpu_default: TRL's seconds / ours, best of the repeats.
- loss_relative_difference: the two losses (the same positions) agree up to float32
  rounding.
Run: python bench/lm_head.py [--quick]
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()

    import torch
    from trl.trainer.utils import _CHUNKED_LOGPROB_CHUNK_SIZE, _ChunkedLogProbFunction

    vocab, hidden, seq, prompt = 49152, 576, 56, 44
    batch, repeats = (4, 3) if args.quick else (8, 5)
    gen = torch.Generator().manual_seed(0)
    weight = torch.randn(vocab, hidden, generator=gen) * 0.02
    states = torch.randn(batch, seq - 1, hidden, generator=gen)  # positions 0..seq-2
    labels = torch.randint(0, vocab, (batch, seq - 1), generator=gen)
    labels[:, : prompt - 1] = -100  # the prompt's next tokens are not scored
    mask = labels != -100

    def head(compact: bool) -> tuple[float, torch.Tensor]:
        h = states.clone().requires_grad_(True)
        start = time.perf_counter()
        if compact:  # what trainkit.lm_head turns on for the CPU
            x, y = h[mask], labels[mask]
        else:  # TRL's path without Triton: every position
            x, y = h.reshape(-1, hidden), labels.clamp(min=0).reshape(-1)
        args_ = (weight, None, y, 1.0, _CHUNKED_LOGPROB_CHUNK_SIZE, None, 1.0)
        logp = _ChunkedLogProbFunction.apply(x, *args_, ("log_probs", "entropy", "is_top1"))[0]
        if compact:
            logp = logp.new_zeros(mask.shape).masked_scatter(mask, logp)
        else:
            logp = logp.view(mask.shape).masked_fill(~mask, 0)
        loss = -logp.sum() / mask.sum()
        loss.backward()
        return time.perf_counter() - start, loss.detach()

    head(True), head(False)  # warm-up
    ours, trl = [], []
    for _ in range(repeats):
        t, loss_ours = head(True)
        ours.append(t)
        t, loss_trl = head(False)
        trl.append(t)
    print(f"positions_scored: {int(mask.sum())} of {mask.numel()}")
    print(f"trl_cpu_default_seconds: {min(trl):.3f}")
    print(f"trainkit_seconds: {min(ours):.3f}")
    print(f"head_speedup_vs_trl_cpu_default: {min(trl) / min(ours):.2f}x (goal >= 2)")
    rel = abs(float(loss_ours - loss_trl)) / abs(float(loss_trl))
    print(f"loss_relative_difference: {rel:.1e} (goal <= 1e-5)")


if __name__ == "__main__":
    main()
