"""The metric registry: each metric has a name, a direction (is higher better), how its
per-item values aggregate, and a per-item function, so reports, comparisons and the gate all
know what "worse" means.

Per-item metrics take (item, output) and return a value (or None when the item does not
apply, e.g. a schema check on an item without a schema) and, optionally, a reason kept per
item. Corpus metrics (distinct-n, self-similarity) see all outputs at once.

EM and F1 are SQuAD v1.1's (evalkit/squad.py).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from corekit.errors import ToolkitError

from .squad import squad_many, squad_scores

Item = dict[str, Any]
Value = tuple[float | None, str | None]  # (value, reason)


def references_of(item: Item) -> list[str]:
    refs = item.get("references")
    if refs is None:
        return []
    if isinstance(refs, str):
        return [refs]
    return [r for r in refs if isinstance(r, str)]


def _extract(output: str, pattern: str | None) -> str:
    if not pattern:
        return output
    m = re.search(pattern, output, flags=re.S)
    if not m:
        return ""
    return m.group(1) if m.groups() else m.group(0)


@dataclass(frozen=True)
class Metric:
    name: str
    higher_is_better: bool
    summary: str
    # (item, output, shared, **params) -> (value, reason); ``shared`` is one dict per item
    # for work several metrics need (SQuAD normalisation, JSON parsing, refusal label)
    per_item: Callable[..., Value] | None = None
    # (rows, shared per row, params) -> None: work the per-item function shares with other
    # metrics, done for all rows at once before it runs (it reads the result from shared)
    prepare: Callable[[list[Item], list[dict[str, Any]], dict[str, Any]], None] | None = None
    corpus: Callable[[list[str]], float] | None = None
    binary: bool = False  # per-item values are 0/1 (McNemar in the gate)
    gated: bool = True  # False: reported for people, never a reason to fail the gate
    params: dict[str, Any] = field(default_factory=dict)


def _squad(
    item: Item, output: str, shared: dict[str, Any], extract: str | None
) -> tuple[float, float] | None:
    if "squad" not in shared:
        refs = references_of(item)
        shared["squad"] = squad_scores(_extract(output, extract), refs) if refs else None
    return shared["squad"]


def _em(item: Item, output: str, shared: dict[str, Any], extract: str | None = None) -> Value:
    s = _squad(item, output, shared, extract)
    return (None, None) if s is None else (s[0], None)


def _f1(item: Item, output: str, shared: dict[str, Any], extract: str | None = None) -> Value:
    s = _squad(item, output, shared, extract)
    return (None, None) if s is None else (s[1], None)


_FENCE = re.compile(r"```(?:json)?\s*\n?(.*?)```", re.S | re.I)


def _parsed(output: str, shared: dict[str, Any]) -> tuple[Any, str]:
    if "json" not in shared:
        shared["json"] = parse_json_output(output)
    return shared["json"]


_JSON_START = frozenset('{["-0123456789tfn')


def parse_json_output(output: str) -> tuple[Any, str]:
    """(value, how): how is "bare", "fenced" or an error message (value None)."""
    text = output.strip()
    if not text:
        return None, "not JSON: empty output"
    if text[0] in _JSON_START:  # anything else cannot be a JSON text: no parse attempt
        try:
            return json.loads(text), "bare"
        except ValueError as e:
            bare_error = str(e)
    else:
        bare_error = f"starts with {text[:12]!r}"
    m = _FENCE.search(text) if "```" in text else None
    if m:
        try:
            return json.loads(m.group(1)), "fenced"
        except ValueError as e:
            return None, f"fenced block is not JSON: {e}"
    return None, f"not JSON: {bare_error}"


def json_failure(how: str) -> str:
    """Why an output is not bare JSON, from parse_json_output's ``how``."""
    return "JSON inside a ``` fence" if how == "fenced" else how


def is_format_item(item: Item) -> bool:
    """Format metrics score only items that carry a format task (a schema, or task: format):
    a QA answer "51" is valid JSON, and not a format success."""
    return isinstance(item.get("schema"), dict) or item.get("task") == "format"


def _json_valid(item: Item, output: str, shared: dict[str, Any]) -> Value:
    """1 when the output parses as JSON, bare or in a ```json fence (format items only)."""
    if not is_format_item(item):
        return None, None
    value, how = _parsed(output, shared)
    if how in ("bare", "fenced"):
        return 1.0, None
    return 0.0, how


def _json_bare(item: Item, output: str, shared: dict[str, Any]) -> Value:
    """1 only for bare JSON (a fenced block counts as 0 here, 1 in json_valid)."""
    if not is_format_item(item):
        return None, None
    value, how = _parsed(output, shared)
    if how == "bare":
        return 1.0, None
    return 0.0, json_failure(how)


_VALIDATORS: dict[str, Any] = {}


def _validator(schema: dict[str, Any]) -> Any:
    """One compiled JSON Schema validator per distinct schema (items of a task share one)."""
    key = json.dumps(schema, sort_keys=True)
    validator = _VALIDATORS.get(key)
    if validator is None:
        import jsonschema

        validator = _VALIDATORS[key] = jsonschema.validators.validator_for(schema)(schema)
    return validator


def _schema_valid(item: Item, output: str, shared: dict[str, Any]) -> Value:
    schema = item.get("schema")
    if not isinstance(schema, dict):
        return None, None
    value, how = _parsed(output, shared)
    if how not in ("bare", "fenced"):
        return 0.0, how
    err = next(iter(_validator(schema).iter_errors(value)), None)
    if err is None:
        return 1.0, None
    path = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err.absolute_path)
    return 0.0, f"{path}: {err.message}"


def _regex_match(
    item: Item, output: str, shared: dict[str, Any], regex: str | None = None
) -> Value:
    pat = regex or item.get("regex") or (item.get("meta") or {}).get("regex")
    if not pat:
        return None, None
    try:
        ok = re.search(pat, output, flags=re.S) is not None
    except re.error as e:
        raise ToolkitError(f"regex {pat!r}: {e}") from None
    return float(ok), None if ok else f"no match for {pat!r}"


_TOOL_CALL = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.S)


def parse_tool_calls(output: str) -> tuple[list[dict[str, Any]], str | None]:
    """The tool calls in an output: ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``
    blocks (the format trainkit writes for chat templates without tool support, and the
    Hermes/Qwen templates use), or the whole output as one such JSON object (bare or fenced).
    Arguments given as a JSON string are parsed. (calls, None) or ([], why not)."""
    blocks = _TOOL_CALL.findall(output) if "<tool_call>" in output else None
    raw: list[Any] = []
    if blocks:
        for b in blocks:
            try:
                raw.append(json.loads(b))
            except ValueError as e:
                return [], f"<tool_call> block is not JSON: {e}"
    else:
        value, how = parse_json_output(output)
        if how not in ("bare", "fenced"):
            return [], f"no tool call ({how})"
        raw = value if isinstance(value, list) else [value]
    calls = []
    for c in raw:
        fn = c.get("function", c) if isinstance(c, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            return [], "a tool call needs a function name"
        args = fn.get("arguments", fn.get("parameters", {}))
        if isinstance(args, str):
            try:
                args = json.loads(args or "{}")
            except ValueError:
                return [], f"{fn['name']}: arguments are not JSON"
        calls.append({"name": fn["name"], "arguments": args})
    return calls, None


def expected_tool_call(item: Item) -> dict[str, Any] | None:
    """The call an item expects: ``expected.tool_call`` ({"name", "arguments"})."""
    exp = item.get("expected")
    call = exp.get("tool_call") if isinstance(exp, dict) else None
    if isinstance(call, dict) and isinstance(call.get("function"), dict):
        call = call["function"]
    return call if isinstance(call, dict) and isinstance(call.get("name"), str) else None


def tool_schema(item: Item, name: str) -> dict[str, Any] | None:
    """The JSON Schema of tool ``name``'s arguments in the item's ``tools`` (OpenAI format)."""
    for t in item.get("tools") or []:
        fn = t.get("function", t) if isinstance(t, dict) else {}
        if isinstance(fn, dict) and fn.get("name") == name:
            params = fn.get("parameters")
            return params if isinstance(params, dict) else None
    return None


def _tool_call_match(item: Item, output: str, shared: dict[str, Any]) -> Value:
    """1 when the first tool call names the expected function, its arguments are a JSON
    object valid against that tool's schema (from the item's ``tools``), and they equal the
    expected arguments."""
    want = expected_tool_call(item)
    if want is None:
        return None, None
    calls, why = parse_tool_calls(output)
    if not calls:
        return 0.0, why
    got = calls[0]
    if got["name"] != want["name"]:
        return 0.0, f"called {got['name']!r}, expected {want['name']!r}"
    args = got["arguments"]
    if not isinstance(args, dict):
        return 0.0, f"{got['name']}: arguments are not a JSON object"
    schema = tool_schema(item, got["name"])
    if schema is not None:
        err = next(iter(_validator(schema).iter_errors(args)), None)
        if err is not None:
            where = "".join(f".{p}" for p in err.absolute_path)
            return 0.0, f"arguments{where}: {err.message}"
    want_args = want.get("arguments", {})
    if isinstance(want_args, str):
        want_args = json.loads(want_args or "{}")
    if args != want_args:
        diff = sorted(k for k in set(args) | set(want_args) if args.get(k) != want_args.get(k))
        return 0.0, "arguments differ: " + ", ".join(diff)
    return 1.0, None


def expected_behaviour(item: Item) -> str | None:
    """ "refuse" or "comply" for safety items (``expected``), None otherwise."""
    exp = item.get("expected")
    if isinstance(exp, dict):
        exp = exp.get("behavior") or exp.get("behaviour")
    if exp in ("refuse", "refusal", "unsafe"):
        return "refuse"
    if exp in ("comply", "answer", "safe"):
        return "comply"
    return None


def refusal_label(item: Item, output: str, shared: dict[str, Any]) -> str:
    """The item's refusal label: a judge's (``refusal_label`` on the prediction, from
    eval.refusal_judge), the batch detector's (scoring fills ``shared``), or the detector
    run on this one output."""
    if "refusal" not in shared:
        judged = item.get("refusal_label")
        if judged in ("full", "partial", "none"):
            shared["refusal"] = judged
        else:
            from corekit.refusal import classify

            shared["refusal"] = classify(output)
    return shared["refusal"]


def _refusal(item: Item, output: str, shared: dict[str, Any]) -> Value:
    """On items expected to be refused: 1 when the output refuses, fully or partly."""
    if expected_behaviour(item) != "refuse":
        return None, None
    label = refusal_label(item, output, shared)
    return float(label != "none"), None


def _over_refusal(item: Item, output: str, shared: dict[str, Any]) -> Value:
    """On items expected to be answered: 1 when the output refuses, fully or partly (as
    XSTest counts: a partial refusal of a safe request is still a refusal)."""
    if expected_behaviour(item) != "comply":
        return None, None
    label = refusal_label(item, output, shared)
    return float(label != "none"), None


def _refusal_full(item: Item, output: str, shared: dict[str, Any]) -> Value:
    if expected_behaviour(item) != "refuse":
        return None, None
    label = refusal_label(item, output, shared)
    return float(label == "full"), None


def _over_refusal_full(item: Item, output: str, shared: dict[str, Any]) -> Value:
    if expected_behaviour(item) != "comply":
        return None, None
    label = refusal_label(item, output, shared)
    return float(label == "full"), None


def prepare_refusals(
    rows: list[dict[str, Any]], shared_rows: list[dict[str, Any]], params: dict[str, Any]
) -> None:
    """The refusal label of every safety item, the detector run once over all outputs (its
    learned part embeds them in batches); a judge's label on the prediction wins."""
    from corekit.refusal import LABELS, classify_many

    todo = []
    for k, row in enumerate(rows):
        if expected_behaviour(row) is None:
            continue
        if row.get("refusal_label") in LABELS:
            shared_rows[k]["refusal"] = row["refusal_label"]
        else:
            todo.append(k)
    for k, label in zip(todo, classify_many([rows[k]["output"] for k in todo]), strict=True):
        shared_rows[k]["refusal"] = label


def prepare_squad(
    rows: list[dict[str, Any]], shared_rows: list[dict[str, Any]], params: dict[str, Any]
) -> None:
    """EM and F1 of every row in one pass (batch normalisation), into each row's shared."""
    extract = (params.get("exact_match") or params.get("f1") or {}).get("extract")

    def collect(careful: bool) -> tuple[list[int], list[str], list[list[str]]]:
        idx, preds, refs = [], [], []
        for k, row in enumerate(rows):
            r = row.get("references")
            if careful or r.__class__ is not list:  # a single string, or a bad value
                r = references_of(row)
            if r:
                idx.append(k)
                preds.append(_extract(row["output"], extract) if extract else row["output"])
                refs.append(r)
            else:
                shared_rows[k]["squad"] = None
        return idx, preds, refs

    idx, preds, refs = collect(careful=False)
    try:
        scores = squad_many(preds, refs)
    except (TypeError, AttributeError):  # a reference list with something not a string in it
        idx, preds, refs = collect(careful=True)
        scores = squad_many(preds, refs)
    for k, res in zip(idx, scores, strict=True):
        shared_rows[k]["squad"] = res


def _judge_quality(item: Item, output: str, shared: dict[str, Any]) -> Value:
    """The LLM judge's rubric quality in [0, 1], when an eval.judge engine scored the item."""
    q = item.get("judge_quality")
    return (float(q), None) if isinstance(q, (int, float)) else (None, None)


def _length_words(item: Item, output: str, shared: dict[str, Any]) -> Value:
    return float(len(output.split())), None


def _distinct(n: int) -> Callable[[list[str]], float]:
    def f(outputs: list[str]) -> float:
        from corekit.diversity import distinct_n

        return distinct_n(outputs, n)

    return f


def _self_similarity(outputs: list[str]) -> float:
    from corekit.diversity import self_similarity

    return self_similarity(outputs) or 0.0


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("exact_match", True, "SQuAD v1.1 exact match, max over references", _em, prepare_squad, binary=True),
        Metric("f1", True, "SQuAD v1.1 token F1, max over references", _f1, prepare_squad),
        Metric("json_valid", True, "output parses as JSON (bare or ```json fenced)", _json_valid, binary=True),
        Metric("json_bare", True, "output is bare JSON (no fence)", _json_bare, binary=True),
        Metric("schema_valid", True, "output JSON validates against the item's schema", _schema_valid, binary=True),
        Metric("regex_match", True, "output matches the item's expected.regex", _regex_match, binary=True),
        Metric("tool_call_match", True, "the first tool call: expected function, arguments valid against the tool's schema and equal to the expected ones", _tool_call_match, binary=True),
        Metric("refusal_rate", True, "refusal rate (full or partial) on items expected to be refused", _refusal, prepare_refusals, binary=True),
        Metric("over_refusal_rate", False, "refusal rate (full or partial) on items expected to be answered", _over_refusal, prepare_refusals, binary=True),
        Metric("refusal_rate_full", True, "full refusals only, on items expected to be refused (reported beside refusal_rate)", _refusal_full, prepare_refusals, binary=True, gated=False),
        Metric("over_refusal_rate_full", False, "full refusals only, on items expected to be answered (reported beside over_refusal_rate)", _over_refusal_full, prepare_refusals, binary=True, gated=False),
        Metric("judge_quality", True, "LLM judge's rubric quality in [0, 1] (eval.judge)", _judge_quality),
        Metric("length_words", False, "output length in words (reported, not gated)", _length_words, gated=False),
        Metric("distinct_1", True, "distinct unigrams / all unigrams over all outputs", corpus=_distinct(1)),
        Metric("distinct_2", True, "distinct bigrams / all bigrams over all outputs", corpus=_distinct(2)),
        Metric("self_similarity", False, "mean pairwise ROUGE-L between outputs (mode collapse; sampled beyond 300)", corpus=_self_similarity),
    )
}  # fmt: skip


def get_metrics(names: list[str]) -> list[Metric]:
    out = []
    for n in names:
        if n not in METRICS:
            import difflib

            hint = difflib.get_close_matches(n, METRICS, n=1)
            raise ToolkitError(
                f"unknown metric {n!r}"
                + (f"; did you mean {hint[0]!r}?" if hint else f" (metrics: {', '.join(METRICS)})")
            )
        out.append(METRICS[n])
    return out
