"""Refusal detection: evalkit's detector against the published keyword lists.

Sets (all labelled full / partial / none, written for this project):
- validation: the validation part of evalkit/data/refusal_set.jsonl (request topics the
  detector was never fitted on);
- heldout: evalkit/data/refusal_heldout.jsonl (written after the rules were frozen, never
  trained on);
- families: evalkit/data/refusal_families.jsonl (74 completions in the manner of Llama-2-chat,
  Mistral-Instruct, GPT-3.5/4, Claude, Gemma and Vicuna on XSTest-like requests; used while
  developing the training styles, so its figure is a development figure);
- families_heldout: evalkit/data/refusal_families_heldout.jsonl (45 more in the same manner,
  on other requests, written after the features and training set were frozen; it informed
  one choice, how the two layers combine, between two options).

Ours: ``corekit.refusal.classify_many`` (the learned detector) and ``classify_rules`` (its
rules alone). Baselines: GCG's refusal prefixes, AdvBench's phrase list (both "a phrase
anywhere in the completion") and XSTest's string match ("the completion starts with one").
Binary accuracy counts full and partial refusals as refusals (as XSTest does); the keyword
lists have no 3-way answer.

Prints per set: `<set>_<detector>_binary`, `<set>_<detector>_3way` (ours), the margin of
ours over the best keyword list (goal > 0), and our throughput in completions per second.

Run: python bench/refusal.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DATA = ROOT / "evalkit" / "data"


def load(name: str, split: str | None = None) -> list[dict]:
    rows = [json.loads(x) for x in (DATA / name).read_text().splitlines() if x.strip()]
    return [r for r in rows if split is None or r.get("split") == split]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="the validation split's first 100 rows")
    args = ap.parse_args()
    from corekit.refusal import BASELINES, classify_many, classify_rules
    from corekit.runs import format_cpu_info

    print(format_cpu_info())
    sets = {
        "validation": load("refusal_set.jsonl", "validation"),
        "heldout": load("refusal_heldout.jsonl"),
        "families": load("refusal_families.jsonl"),
        "families_heldout": load("refusal_families_heldout.jsonl"),
    }
    if args.quick:
        sets["validation"] = sets["validation"][:100]
    classify_many(["warm-up: load the encoder"])
    for name, rows in sets.items():
        texts = [r["completion"] for r in rows]
        truth = [r["label"] for r in rows]
        t = time.perf_counter()
        ours = classify_many(texts)
        seconds = time.perf_counter() - t
        rules = [classify_rules(x) for x in texts]
        n = len(rows)

        def binary(pred: list[str], truth: list[str] = truth) -> float:
            return sum(
                (p != "none") == (g != "none") for p, g in zip(pred, truth, strict=True)
            ) / len(truth)

        def three(pred: list[str], truth: list[str] = truth) -> float:
            return sum(p == g for p, g in zip(pred, truth, strict=True)) / len(truth)

        print(f"{name}: {n} completions")
        print(f"{name}_detector_binary: {binary(ours):.3f} (goal > every keyword list)")
        print(f"{name}_detector_3way: {three(ours):.3f}")
        print(f"{name}_rules_only_binary: {binary(rules):.3f}")
        print(f"{name}_rules_only_3way: {three(rules):.3f}")
        best = 0.0
        for base, refuses in BASELINES.items():
            acc = sum(refuses(x) == (g != "none") for x, g in zip(texts, truth, strict=True)) / n
            best = max(best, acc)
            print(f"{name}_{base}_binary: {acc:.3f}")
        print(f"{name}_margin_over_best_keyword_list: {binary(ours) - best:+.3f} (goal > 0)")
        print(f"{name}_detector_completions_per_second: {n / seconds:.0f}")


if __name__ == "__main__":
    main()
