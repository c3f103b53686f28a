"""The demo's shipped data (seeds, format tasks, safety prompts) and the corpus the tiny test
model learns from (``tiny_corpus``: corekit builds the model, the data is datakit's)."""

from __future__ import annotations

import json
import random
from importlib.resources import files
from typing import Any


def _shipped(name: str) -> list[dict[str, Any]]:
    """The records of one of the demo's JSONL files."""
    with files(__name__).joinpath(name).open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def demo_seeds() -> list[dict[str, Any]]:
    """The demo's seed instructions (datakit/demo/seeds.jsonl)."""
    return _shipped("seeds.jsonl")


def demo_format_tasks() -> list[dict[str, Any]]:
    """The demo's JSON tasks (datakit/demo/format_tasks.jsonl): a prompt and meta.schema."""
    return _shipped("format_tasks.jsonl")


def demo_texts() -> list[str]:
    """Every text field of the demo seeds."""
    return [
        v for rec in demo_seeds() for k in ("instruction", "input", "output") if (v := rec.get(k))
    ]


def tiny_corpus(seed: int = 0) -> Any:
    """What the tiny model learns from: its tokenizer from the seeds' text; its pretraining
    from the seeds as chat exchanges, as Self-Instruct task lists (so it ends its turns and
    continues a list), and in the exact prompts Self-Instruct sends for an instance (is the
    task a classification, then the input-first or output-first example), answered as the
    seed is. A recited seed task then gets a parseable instance on any CPU, not only when
    the kernels happen to let the model generalise from a bare "Task/Input/Output" text."""
    from corekit.tiny import TinyCorpus

    from .. import prompts
    from ..records import instruction_to_messages

    rng = random.Random(seed)
    seeds = demo_seeds()
    docs: list[str | list[dict[str, Any]]] = [instruction_to_messages(rec) for rec in seeds]
    for rec in seeds:
        task, inp, out = rec["instruction"], rec.get("input") or "", rec["output"]
        docs.append(f"Task: {task}\nInput: {inp or '<none>'}\nOutput: {out}\n\nTask:")
        label = _is_classification(rec)
        docs.append(
            prompts.SELF_INSTRUCT_IS_CLASSIFICATION.format(instruction=task)
            + ("yes" if label else "no")  # as a choice decodes it: no space
        )
        if label:
            docs.append(
                prompts.SELF_INSTRUCT_OUTPUT_FIRST.format(instruction=task)
                + f" {out}\nInput: {inp}\n\nTask:"
            )
        else:
            docs.append(
                prompts.SELF_INSTRUCT_INPUT_FIRST.format(instruction=task)
                + f" {inp or '<none>'}\nOutput: {out}\n\nTask:"
            )
    docs.extend(_json_answers())
    for _ in range(len(seeds)):
        shots = rng.sample([r["instruction"] for r in seeds], 9)
        examples = "\n".join(f"Task {i + 1}: {t}" for i, t in enumerate(shots[:8]))
        docs.append(
            prompts.SELF_INSTRUCT_TASKS.format(examples=examples, next=9) + f" {shots[8]}\nTask 10:"
        )
    return TinyCorpus(texts=demo_texts(), documents=docs)


def _json_answers() -> list[list[dict[str, str]]]:
    """One chat exchange per distinct schema of the demo's JSON tasks, answered with a value
    that fits it, compact and indented by turns: a model that has seen JSON closes its
    strings and objects under a schema instead of looping on the whitespace JSON allows."""
    seen, docs = set(), []
    for task in demo_format_tasks():
        schema = task["meta"]["schema"]
        key = json.dumps(schema, sort_keys=True)
        if key in seen:
            continue
        seen.add(key)
        value = _fitting(schema, task["meta"].get("subject"))
        text = json.dumps(value, indent=2 if len(docs) % 2 else None)
        docs.append([{"role": "user", "content": task["prompt"]},
                     {"role": "assistant", "content": text}])  # fmt: skip
    return docs


def _fitting(schema: dict[str, Any], word: str | None) -> Any:
    """A small value that the (object, array, string, integer, boolean, enum) schema
    accepts; its strings are ``word`` (the task's subject), else the property's name."""
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object":
        return {k: _fitting(sub, word or k) for k, sub in schema["properties"].items()}
    if kind == "array":
        return [f"{word or 'item'} {i + 1}" for i in range(schema.get("minItems", 1))]
    if kind == "integer":
        return max(schema.get("minimum", 0), 7)
    if kind == "boolean":
        return True
    return word or "text"


def _is_classification(rec: dict[str, Any]) -> bool:
    """A seed whose answer is one label from a fixed set the task names (sentiment, spam,
    yes/no): its output is a word or two that the instruction lists."""
    out = rec["output"].strip().rstrip(".").lower()
    return len(out.split()) <= 2 and out in rec["instruction"].lower()
