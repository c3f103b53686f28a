"""Validation speed: datakit's validator against the two usual jsonschema loops.

Headline: speedup_vs_reused_validator, against one Draft7Validator built once and reused
(the fair baseline); the per-record jsonschema.validate() loop is printed for scale.

All three read the same JSONL file of chat records (1% invalid), parse every line and
validate it; the figures are per-record times and their ratios, plus whether all three
reach the same verdict for every record. Run: python bench/validate.py [--quick] [-n N]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

WORDS = "the a model data train answer question tool weather city number list sort add explain why how what when summary code python function return value table row column".split()


def sentence(rng: random.Random, lo: int, hi: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi))).capitalize() + "."


def make_records(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        msgs = []
        if rng.random() < 0.3:
            msgs.append({"role": "system", "content": sentence(rng, 5, 15)})
        for _ in range(rng.randint(1, 3)):
            msgs.append({"role": "user", "content": sentence(rng, 5, 40)})
            msgs.append({"role": "assistant", "content": sentence(rng, 10, 80)})
        rec = {"id": f"r{i}", "messages": msgs, "meta": {"source": "bench"}}
        if i % 100 == 7:  # 1% invalid, in different ways
            bad = rng.randrange(4)
            if bad == 0:
                msgs[-1]["role"] = "robot"
            elif bad == 1:
                rec["messages"] = []
            elif bad == 2:
                msgs[0]["content"] = 42
            else:
                del msgs[0]["content"]
        out.append(rec)
    return out


def run_ours(path: Path) -> tuple[float, list[bool]]:
    from datakit.validate import validate_file

    t = time.perf_counter()
    report = validate_file(path, "chat", max_problems=10**9)
    elapsed = time.perf_counter() - t
    bad_lines = {p.line for p in report.problems}
    return elapsed, [i + 1 not in bad_lines for i in range(report.records)]


def run_reused_validator(path: Path, schema: dict) -> tuple[float, list[bool]]:
    import jsonschema

    validator = jsonschema.Draft7Validator(schema)
    verdicts = []
    t = time.perf_counter()
    with open(path, encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            try:
                validator.validate(rec)
                verdicts.append(True)
            except jsonschema.ValidationError:
                verdicts.append(False)
    return time.perf_counter() - t, verdicts


def run_validate_per_record(path: Path, schema: dict) -> tuple[float, list[bool]]:
    import jsonschema

    verdicts = []
    t = time.perf_counter()
    with open(path, encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            try:
                jsonschema.validate(rec, schema)
                verdicts.append(True)
            except jsonschema.ValidationError:
                verdicts.append(False)
    return time.perf_counter() - t, verdicts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="5,000 records (under a minute)")
    ap.add_argument("-n", type=int, default=None, help="number of records (default 100,000)")
    args = ap.parse_args()
    n = args.n or (5_000 if args.quick else 100_000)

    from corekit.schemas import load_schema

    schema = load_schema("chat")
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "chat.jsonl"
        with open(path, "w", encoding="utf-8") as f:
            for rec in make_records(n):
                f.write(json.dumps(rec) + "\n")
        # Warm up imports and compiled validators on a small file so no run pays start-up.
        warm = Path(d) / "warm.jsonl"
        warm.write_text("".join(json.dumps(r) + "\n" for r in make_records(200, seed=1)))
        run_ours(warm), run_reused_validator(warm, schema), run_validate_per_record(warm, schema)

        t_ours, v_ours = run_ours(path)
        t_reused, v_reused = run_reused_validator(path, schema)
        t_naive, v_naive = run_validate_per_record(path, schema)

    identical = int(v_ours == v_reused == v_naive)
    us = 1e6 / n
    print(f"records: {n} (invalid {v_naive.count(False)})")
    print(f"datakit_us_per_record: {t_ours * us:.2f}")
    print(f"reused_validator_us_per_record: {t_reused * us:.1f}")
    print(f"jsonschema_validate_us_per_record: {t_naive * us:.0f}")
    # Headline first: the reused validator is what a competent user writes; calling
    # jsonschema.validate() per record re-checks the schema every time (shown for scale).
    print(f"speedup_vs_reused_validator: {t_reused / t_ours:.1f}x (goal >= 10x)")
    print(f"speedup_vs_jsonschema_validate: {t_naive / t_ours:.0f}x (goal >= 100x)")
    print(f"verdicts_identical: {identical} (goal 1)")
    if not identical:
        sys.exit(1)


if __name__ == "__main__":
    main()
