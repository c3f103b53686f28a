"""Dataset versions in, TRL-ready ``datasets.Dataset`` out, with the problems caught first.

Each method reads the record kinds its entry in ``trainkit.methods.METHODS`` lists; the conversion of a
record to the method's rows is ``datakit.trainer_rows`` (the same one ``datakit export
--format trl`` writes), so what is exported is what is trained on.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

from corekit.errors import ToolkitError
from datakit.store import DatasetStore, Version
from datakit.trainer_rows import fold_tool_calls, trainer_rows

from .methods import METHODS

log = logging.getLogger(__name__)


@dataclass
class StageData:
    train: Any  # datasets.Dataset
    eval: Any | None
    refs: list[dict[str, Any]]  # name@version + sha256 of each version used
    stats: dict[str, Any]


def _rows(version: Version, method: str, chat: bool) -> list[dict[str, Any]]:
    kind = version.kind
    kinds = METHODS[method].kinds
    if kind not in kinds:
        raise ToolkitError(
            f"{version.ref}: {method} trains on {' or '.join(kinds)} records, "
            f"this version holds {kind} records"
        )
    rows: list[dict[str, Any]] = []
    for rec in version.records():
        rows.extend(trainer_rows(rec, kind, method, chat))
    if not rows:
        why = " (no record has label true)" if method == "sft" and kind == "unpaired" else ""
        raise ToolkitError(f"{version.ref}: no training rows{why}; the dataset is empty")
    return rows


_GENERATION = re.compile(r"{%-?\s*generation\s*-?%}")


def has_generation_markers(tokenizer: Any) -> bool:
    """Whether the chat template marks assistant text ({% generation %}), which TRL's
    assistant-only loss needs."""
    return bool(_GENERATION.search(getattr(tokenizer, "chat_template", None) or ""))


def assistant_turns_as_completions(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Conversation rows as prompt/completion rows, one per assistant turn: the turn is the
    completion, everything before it the prompt. With completion-only loss every assistant
    turn is supervised once and nothing else is: assistant-only loss for chat templates
    without generation markers (SmolLM2's, Llama's, ...)."""
    out = []
    for row in rows:
        msgs = row["messages"]
        for i, m in enumerate(msgs):
            if m["role"] == "assistant" and i > 0:
                pc: dict[str, Any] = {"prompt": msgs[:i], "completion": [m]}
                if "tools" in row:
                    pc["tools"] = row["tools"]
                out.append(pc)
    return out


def _ref(version: Version) -> dict[str, Any]:
    m = version.manifest()
    return {"ref": version.ref, "kind": m["kind"], "count": m["count"], "sha256": m["sha256"]}


def weighted(rows: list[dict[str, Any]], weight: float, seed: int) -> list[dict[str, Any]]:
    """round(weight x len(rows)) rows: every row int(weight) times, plus a seeded sample of
    the rows for the fractional part."""
    import random

    whole = int(weight)
    extra = round((weight - whole) * len(rows))
    return rows * whole + random.Random(seed).sample(rows, extra)


def _split_indices(n: int, test_size: float, seed: int) -> tuple[list[int], list[int]]:
    """The train and test indices ``datasets.Dataset.train_test_split`` picks for n rows."""
    import datasets

    split = datasets.Dataset.from_dict({"i": list(range(n))}).train_test_split(
        test_size=test_size, seed=seed
    )
    return split["train"]["i"], split["test"]["i"]


def load_stage_data(
    store: DatasetStore,
    method: str,
    dataset: str | list[tuple[str, float]],
    tokenizer: Any,
    max_length: int,
    eval_dataset: str | None = None,
    eval_split: float = 0.0,
    seed: int = 0,
    assistant_only: bool = False,
    max_prompt_length: int | None = None,
) -> StageData:
    """Resolve, convert and check the stage's data; split off eval rows if asked.

    ``dataset`` is one ref or several (ref, weight): each contributes round(weight x its
    rows) rows (``weighted``); with ``eval_split`` each is split first, so a repeated row
    never lands on both sides. ``assistant_only`` (SFT's assistant_only_loss): when the
    chat template has no generation markers, conversations become one prompt/completion
    row per assistant turn. ``max_prompt_length`` (RL): rows whose prompt is longer are
    left out."""
    import datasets

    parts = [(dataset, 1.0)] if isinstance(dataset, str) else list(dataset)
    reader = _Rows(method, tokenizer, assistant_only, max_prompt_length)
    train_rows, eval_rows, every, refs = _gather(
        store, parts, reader, eval_split if not eval_dataset else 0.0, seed
    )
    stats = check_lengths(every, tokenizer, max_length, refs[0]["ref"])
    if max_prompt_length is not None:
        stats["prompts_over_budget"] = sum(reader.dropped.values())
    train = datasets.Dataset.from_list(train_rows)
    ev = datasets.Dataset.from_list(eval_rows) if eval_rows else None
    if eval_dataset:
        ev_version = store.resolve(eval_dataset)
        ev = datasets.Dataset.from_list(reader.rows(ev_version))
        refs.append(_ref(ev_version))
    stats.update({"train_rows": len(train), "eval_rows": len(ev) if ev is not None else 0})
    if reader.split_turns:
        stats["assistant_turns_as_completions"] = True
    if reader.folded:
        stats["tool_calls_as_text"] = reader.folded
    return StageData(train, ev, refs, stats)


class _Rows:
    """A version's rows for one method and tokenizer: converted, tool calls folded into text
    when the template cannot render them, over-long prompts dropped (RL), conversations
    split per assistant turn (assistant-only loss without generation markers)."""

    def __init__(
        self, method: str, tokenizer: Any, assistant_only: bool, max_prompt_length: int | None
    ) -> None:
        template = getattr(tokenizer, "chat_template", None) or ""
        self.method, self.tokenizer = method, tokenizer
        self.chat = bool(template)
        self.split_turns = assistant_only and self.chat and not has_generation_markers(tokenizer)
        # a template that does not render tool calls would train on empty assistant turns
        self.fold = self.chat and "tool_calls" not in template
        self.max_prompt_length = max_prompt_length
        self.dropped: dict[str, int] = {}
        self.folded = 0

    def rows(self, v: Version) -> list[dict[str, Any]]:
        rows = _rows(v, self.method, self.chat)
        if self.fold:
            rows, n = fold_tool_calls(rows)
            self.folded += n
        if self.max_prompt_length is not None:
            rows, self.dropped[v.ref] = drop_long_prompts(
                rows, self.tokenizer, self.max_prompt_length, v.ref
            )
        if self.split_turns and "messages" in rows[0]:
            rows = assistant_turns_as_completions(rows)
            if not rows:
                raise ToolkitError(f"{v.ref}: no assistant turn to train on")
        return rows


def _gather(
    store: DatasetStore,
    parts: list[tuple[str, float]],
    reader: _Rows,
    eval_split: float,
    seed: int,
) -> tuple[list[dict], list[dict], list[dict], list[dict[str, Any]]]:
    """(train rows, eval rows, every row, refs) of the weighted parts: each part split
    first (``eval_split``), then weighted, so a repeated row never lands on both sides;
    every part must give rows of one shape."""
    refs: list[dict[str, Any]] = []
    every: list[dict[str, Any]] = []
    train_rows: list[dict[str, Any]] = []
    eval_rows: list[dict[str, Any]] = []
    shape: tuple[str, set[str]] | None = None
    for k, (ref, weight) in enumerate(parts):
        version = store.resolve(ref)
        rows = reader.rows(version)
        _check_chat_template(rows, reader.tokenizer, version.ref)
        keys = set(rows[0])
        if shape is not None and keys != shape[1]:
            raise ToolkitError(
                f"{version.ref}: its {reader.method} rows hold {', '.join(sorted(keys))}, those "
                f"of {shape[0]} {', '.join(sorted(shape[1]))}; one stage trains on one row shape"
            )
        shape = shape or (version.ref, keys)
        every += rows
        if eval_split:
            if len(rows) < 2:
                raise ToolkitError(
                    f"{version.ref}: eval_split needs at least 2 rows, found {len(rows)}"
                )
            tr, te = _split_indices(len(rows), eval_split, seed)
            eval_rows += [rows[i] for i in te]
            rows = [rows[i] for i in tr]
        taken = weighted(rows, weight, seed + k) if weight != 1.0 else rows
        train_rows += taken
        ref_info = _ref(version)
        if len(parts) > 1 or weight != 1.0:
            ref_info.update(weight=weight, rows=len(taken))
        refs.append(ref_info)
    return train_rows, eval_rows, every, refs


def drop_long_prompts(
    rows: list[dict[str, Any]], tokenizer: Any, limit: int, ref: str
) -> tuple[list[dict[str, Any]], int]:
    """The rows whose prompt, as the model sees it, is at most ``limit`` tokens; and how
    many were left out. An error when none is left."""
    texts = [_prompt_text(r["prompt"], tokenizer) for r in rows]
    lengths = [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    kept = [r for r, n in zip(rows, lengths, strict=True) if n <= limit]
    if not kept:
        raise ToolkitError(
            f"{ref}: every prompt is longer than {limit} tokens (args.max_length minus "
            f"params.max_completion_length; shortest {min(lengths)}); raise max_length"
        )
    if len(kept) < len(rows):
        log.warning(
            "%s: %d of %d prompts are longer than %d tokens (max_length - "
            "max_completion_length) and are left out",
            ref,
            len(rows) - len(kept),
            len(rows),
            limit,
        )
    return kept, len(rows) - len(kept)


def _check_chat_template(rows: list[dict[str, Any]], tokenizer: Any, ref: str) -> None:
    row = rows[0]
    needs = any(isinstance(v, list) for v in row.values() if not isinstance(v, bool))
    if needs and not getattr(tokenizer, "chat_template", None):
        raise ToolkitError(
            f"{ref}: the records are conversations but the model's tokenizer has no chat "
            "template; add one to tokenizer_config.json (or train from a chat model)"
        )


def _text_of(row: dict[str, Any], tokenizer: Any) -> list[str]:
    """The texts whose token counts decide truncation (one per sequence the trainer builds)."""

    def render(msgs: Any) -> str:
        if isinstance(msgs, str):
            return msgs
        return tokenizer.apply_chat_template(msgs, tokenize=False)

    if "messages" in row:
        return [render(row["messages"])]
    if "completion" in row:
        p, c = row["prompt"], row["completion"]
        return [render(p + c) if isinstance(p, list) else p + c]
    if "chosen" in row:
        p = row["prompt"]
        return [
            render(p + row[k]) if isinstance(p, list) else p + row[k]
            for k in ("chosen", "rejected")
        ]
    return [render(row["prompt"])]


def _prompt_text(prompt: Any, tokenizer: Any) -> str:
    """A prompt (text or messages) as the model sees it, up to where its answer starts."""
    if isinstance(prompt, str):
        return prompt
    return tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)


def _prompt_of(row: dict[str, Any], tokenizer: Any) -> str | None:
    """The text before the first trained token (a conversation's first assistant turn, a
    completion, a preference pair's answers), or None when the row trains no answer."""
    if "messages" in row:
        first = next((i for i, m in enumerate(row["messages"]) if m["role"] == "assistant"), 0)
        return _prompt_text(row["messages"][:first], tokenizer) if first else None
    if "completion" in row or "chosen" in row:
        return _prompt_text(row["prompt"], tokenizer)
    return None


def _some_answer_fits(rows: list[dict[str, Any]], tokenizer: Any, max_length: int) -> bool:
    """Whether some sequence keeps answer tokens after truncation: its prompt is shorter than
    max_length. Training on answer openings (every sequence cut, every prompt whole) is a
    recipe; every prompt cut is a mistake."""
    prompts = [p for p in (_prompt_of(r, tokenizer) for r in rows) if p is not None]
    if not prompts:
        return False
    ids = tokenizer(prompts, add_special_tokens=False)["input_ids"]
    return any(len(x) < max_length for x in ids)


def check_lengths(
    rows: list[dict[str, Any]], tokenizer: Any, max_length: int, ref: str
) -> dict[str, Any]:
    """Token lengths; an error when every sequence is longer than max_length."""
    texts = [text for row in rows for text in _text_of(row, tokenizer)]
    # One batched call: a fast tokenizer encodes the batch in parallel in Rust.
    lengths = [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    over = sum(1 for n in lengths if n > max_length)
    if over == len(lengths) and not _some_answer_fits(rows, tokenizer, max_length):
        raise ToolkitError(
            f"{ref}: all {len(lengths)} sequences are longer than args.max_length={max_length} "
            f"tokens (shortest {min(lengths)}); raise max_length or use shorter data"
        )
    if over:
        log.warning(
            "%s: %d of %d sequences exceed max_length=%d and will be truncated",
            ref,
            over,
            len(lengths),
            max_length,
        )
    lengths.sort()
    return {
        "sequences": len(lengths),
        "tokens": sum(lengths),
        "truncated": over,
        "length_p50": lengths[len(lengths) // 2],
        "length_max": lengths[-1],
    }
