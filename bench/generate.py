"""Generation overhead: datakit's vllm backend against a bare ``vllm.LLM.generate`` call.

One vLLM engine, one set of chat prompts, one sampling setup with per-request seeds (so
both paths produce the same tokens); datakit's path adds chat-template rendering, request
building, the request cache and result conversion. The model is randomly initialised and
built like the tiny one but big enough (~85M parameters) that engine time dominates. Runs
alternate (bare first, then datakit first, ...) and the best of each is reported.
Run: python bench/generate.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import llama_dims  # noqa: E402 - after the path above

SIZES = {
    # hidden, layers, heads, intermediate: ~85M parameters (full) / ~4M (quick)
    "full": llama_dims(768, 12, 12, 2048),
    "quick": llama_dims(256, 4, 4, 704),
}


def build_model(size: str) -> Path:
    from bench._common import random_llama

    return random_llama(f"datakit-bench-llama-{size}", SIZES[size], max_positions=1024)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument(
        "--quick", action="store_true", help="small model, 16 prompts x 32 tokens (under a minute)"
    )
    ap.add_argument("--repeats", type=int, default=None)
    args = ap.parse_args()
    size = "quick" if args.quick else "full"
    n_prompts, max_tokens = (16, 32) if args.quick else (64, 128)
    repeats = args.repeats or (2 if args.quick else 4)
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")
    model_dir = build_model(size)

    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    from corekit.engines import CachedEngine, Request, RequestCache
    from corekit.engines.vllm_backend import VLLMEngine

    engine = VLLMEngine(str(model_dir), max_model_len=512)
    n_params = sum(
        p.numel()
        for p in __import__("transformers")
        .AutoModelForCausalLM.from_pretrained(model_dir)
        .parameters()
    )
    topics = ["rivers", "bread", "chess", "winter", "robots", "gardens", "trains", "music"]
    requests = [
        Request.chat(
            [{"role": "user", "content": f"Write a short note about {topics[i % 8]} number {i}."}],
            temperature=0.8,
            top_p=0.95,
            max_tokens=max_tokens,
            seed=i,
        )
        for i in range(n_prompts)
    ]
    tok = engine.tokenizer
    bare_prompts = [
        TokensPrompt(
            prompt_token_ids=tok(
                tok.apply_chat_template(
                    list(r.messages), add_generation_prompt=True, tokenize=False
                ),
                add_special_tokens=False,
            )["input_ids"]
        )
        for r in requests
    ]
    bare_params = [
        SamplingParams(
            temperature=r.temperature, top_p=r.top_p, max_tokens=r.max_tokens, seed=r.seed
        )
        for r in requests
    ]

    def bare() -> tuple[float, int, list[str]]:
        t = time.perf_counter()
        outs = engine.llm.generate(bare_prompts, bare_params, use_tqdm=False)
        return (
            time.perf_counter() - t,
            sum(len(o.outputs[0].token_ids) for o in outs),
            [o.outputs[0].text for o in outs],
        )

    def ours(k: int) -> tuple[float, int, list[str]]:
        with tempfile.TemporaryDirectory() as d:  # a fresh cache: every request goes to the model
            ce = CachedEngine(engine, RequestCache(Path(d) / "cache.jsonl"), quiet=True)
            t = time.perf_counter()
            res = ce.generate(requests)
            el = time.perf_counter() - t
            ce.cache.close()
        return el, sum(r.completions[0].completion_tokens for r in res), [r.text for r in res]

    engine.llm.generate(bare_prompts[:2], bare_params[:2], use_tqdm=False)  # warm-up
    best_bare = best_ours = 0.0
    same = True
    for k in range(repeats):
        # Alternate which path goes first, so neither always inherits a warmer engine.
        if k % 2 == 0:
            tb, nb, xb = bare()
            to, no, xo = ours(k)
        else:
            to, no, xo = ours(k)
            tb, nb, xb = bare()
        print(f"run {k}: bare {nb / tb:.0f} tok/s, datakit {no / to:.0f} tok/s", file=sys.stderr)
        same &= xb == xo and nb == no
        best_bare = max(best_bare, nb / tb)
        best_ours = max(best_ours, no / to)
    engine.close()
    print(
        f"model_parameters: {n_params / 1e6:.1f}M, prompts: {n_prompts}, max_tokens: {max_tokens}, repeats: {repeats}"
    )
    print(f"bare_vllm_tokens_per_s: {best_bare:.0f}")
    print(f"datakit_tokens_per_s: {best_ours:.0f}")
    print(f"throughput_ratio_vs_raw_vllm: {best_ours / best_bare:.3f} (goal >= 0.95)")
    print(f"outputs_identical: {int(same)} (goal 1)")
    if not same:
        sys.exit("outputs differ between the bare vLLM call and datakit's path")


if __name__ == "__main__":
    main()
