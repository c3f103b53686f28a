"""The demo's shipped data (seeds, format tasks, safety prompts) and the corpus the tiny test
model learns from (``tiny_corpus``: corekit builds the model, the data is datakit's)."""

from __future__ import annotations

import json
import random
from importlib.resources import files
from typing import Any


def demo_seeds() -> list[dict[str, Any]]:
    """The demo's seed instructions (datakit/demo/seeds.jsonl)."""
    with files(__name__).joinpath("seeds.jsonl").open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def demo_texts() -> list[str]:
    """Every text field of the demo seeds."""
    return [
        v for rec in demo_seeds() for k in ("instruction", "input", "output") if (v := rec.get(k))
    ]


def tiny_corpus(seed: int = 0) -> Any:
    """What the tiny model learns from: its tokenizer from the seeds' text; its pretraining
    from the seeds as chat exchanges, in the instance format Self-Instruct asks for, and as
    Self-Instruct task lists (so it ends its turns and continues a list)."""
    from corekit.tiny import TinyCorpus

    from ..prompts import SELF_INSTRUCT_TASKS
    from ..records import instruction_to_messages

    rng = random.Random(seed)
    seeds = demo_seeds()
    docs: list[str | list[dict[str, Any]]] = [instruction_to_messages(rec) for rec in seeds]
    for rec in seeds:
        docs.append(
            f"Task: {rec['instruction']}\nInput: {rec.get('input') or '<none>'}\nOutput: {rec['output']}\n\nTask:"
        )
    for _ in range(len(seeds)):
        shots = rng.sample([r["instruction"] for r in seeds], 9)
        examples = "\n".join(f"Task {i + 1}: {t}" for i, t in enumerate(shots[:8]))
        docs.append(
            SELF_INSTRUCT_TASKS.format(examples=examples, next=9) + f" {shots[8]}\nTask 10:"
        )
    return TinyCorpus(texts=demo_texts(), documents=docs)
