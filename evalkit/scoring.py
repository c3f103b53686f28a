"""Scoring prediction records and the reports made from them.

A prediction record: ``id``, ``output`` and, as the metrics need them, ``prompt``,
``references``, ``schema``, ``expected`` (comply/refuse), ``regex``. ``score`` gives one row
per record (each metric's value, the reasons for failures, the refusal label) and the
aggregates: mean, n and a 95% bootstrap confidence interval per metric.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
from pathlib import Path
from typing import Any

import orjson

from corekit.errors import ToolkitError

from .metrics import (
    METRICS,
    Metric,
    get_metrics,
)

REPORT_FORMAT = 1
BOOTSTRAP_SAMPLES = 1000


def read_predictions(path: str | Path) -> list[dict[str, Any]]:
    """JSONL prediction records; a bad line is one clear error naming file, line and field."""
    import orjson

    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ToolkitError(f"{path}: cannot read it ({e.strerror})") from None
    rows, seen = [], {}
    for n, line in enumerate(raw.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = orjson.loads(line)
        except orjson.JSONDecodeError as e:
            raise ToolkitError(f"{path}:{n}: not valid JSON ({e})") from None
        if not isinstance(row, dict):
            raise ToolkitError(f"{path}:{n}: a prediction must be a JSON object")
        rid = row.get("id", row.get("item_id"))
        if not isinstance(rid, (str, int)) or rid == "":
            raise ToolkitError(f"{path}:{n}: $.id: every prediction needs an id")
        rid = str(rid)
        if rid in seen:
            raise ToolkitError(f"{path}:{n}: $.id: {rid!r} repeats line {seen[rid]}")
        seen[rid] = n
        out = row.get("output")
        if not isinstance(out, str):
            raise ToolkitError(f"{path}:{n}: $.output: must be a string (the model's output)")
        for key, kind in (("references", list), ("schema", dict)):
            if key in row and not isinstance(row[key], kind):
                if key == "references" and isinstance(row[key], str):
                    continue
                raise ToolkitError(f"{path}:{n}: $.{key}: must be a {kind.__name__}")
        rows.append({**row, "id": rid})
    if not rows:
        raise ToolkitError(f"{path}: no predictions in it")
    return rows


def bootstrap_ci(
    values: list[float], samples: int = BOOTSTRAP_SAMPLES, seed: int = 0
) -> list[float] | None:
    """95% percentile bootstrap interval of the mean."""
    import numpy as np

    v = np.asarray(values, dtype=float)
    if len(v) == 0:
        return None
    if len(v) == 1 or np.all(v == v[0]):
        return [float(v[0]), float(v[0])]
    rng = np.random.default_rng(seed)
    uniq, counts = np.unique(v, return_counts=True)
    if len(uniq) <= 1024 and len(uniq) * 16 <= len(v):  # cheaper only for few distinct values
        # Resampling n items with replacement draws each distinct value a multinomial number
        # of times: the same bootstrap distribution, without an n-long draw per sample.
        draws = rng.multinomial(len(v), counts / len(v), size=samples)
        means = draws @ uniq / len(v)
    else:
        b = max(200, min(samples, 20_000_000 // len(v)))
        means = v[rng.integers(0, len(v), size=(b, len(v)))].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return [round(float(lo), 4), round(float(hi), 4)]


def score(
    rows: list[dict[str, Any]],
    metric_names: list[str],
    params: dict[str, Any] | None = None,
    truncated: str = "exclude",
) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """(items, aggregates) for prediction rows. ``params``: metric -> keyword arguments
    (``extract`` regex for exact_match/f1, ``regex`` for regex_match). A prediction whose
    request failed, or that ran out of tokens (unless ``truncated="score"``), is left out of
    every metric and kept in the items with its reason (``excluded``). Each aggregate says
    on how many items it was computed (``n``), how many it did not apply to (``skipped``)
    and how many were excluded."""
    import gc

    # Scoring allocates one small dict per item and per metric result and makes no cycles:
    # the cyclic collector would walk them all again and again (a third of the time at 100k).
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _score(rows, metric_names, params, truncated)
    finally:
        if enabled:
            gc.enable()


def content_hash(item: dict[str, Any]) -> str:
    """A short hash of what an item asks and how it is scored (prompt or messages,
    references, schema, expected): the gate pairs items by id *and* this hash."""
    h = item.get("item_hash")
    if h:
        return str(h)
    content = tuple(map(item.get, ITEM_CONTENT))
    return _blake2b(_dumps(content, option=_SORT_KEYS), digest_size=8).hexdigest()


ITEM_CONTENT = ("prompt", "messages", "references", "schema", "expected")
_dumps = orjson.dumps
_SORT_KEYS = orjson.OPT_SORT_KEYS
_blake2b = hashlib.blake2b


def exclusion(row: dict[str, Any], truncated: str = "exclude") -> str | None:
    """Why a prediction is left out of every metric: its request failed (``error: ...``) or
    ran out of tokens (``truncated``, unless ``truncated="score"``); None to score it."""
    if "error" not in row and "finish_reason" not in row and "meta" not in row:
        return None
    meta = row.get("meta") or {}
    err = row.get("error") or meta.get("error")
    finish = row.get("finish_reason") or meta.get("finish_reason")
    if err or finish == "error":
        return f"error: {err or 'the request failed'}"
    if finish == "length" and truncated == "exclude":
        return "truncated"
    return None


def _score(
    rows: list[dict[str, Any]],
    metric_names: list[str],
    params: dict[str, Any] | None,
    truncated: str = "exclude",
) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    metrics = get_metrics(metric_names)
    items = [{"id": row["id"], "hash": content_hash(row)} for row in rows]
    kept: list[int] = []
    for k, row in enumerate(rows):
        why = exclusion(row)
        if why == "truncated" and truncated == "score":
            items[k]["truncated"] = True  # scored as it is, and still counted
            why = None
        if why:
            items[k]["excluded"] = why
        else:
            kept.append(k)
    if len(kept) == len(rows):  # the common case: nothing excluded, no copies
        aggregates = _score_kept(rows, items, metrics, params or {})
    else:
        aggregates = _score_kept(
            [rows[k] for k in kept], [items[k] for k in kept], metrics, params or {}
        )
    excluded = len(rows) - len(kept)
    for a in aggregates.values():
        a["skipped"] = len(kept) - a["n"] if a.pop("_per_item") else 0
        a["excluded"] = excluded
    return items, aggregates


def _score_kept(
    rows: list[dict[str, Any]],
    items: list[dict[str, Any]],
    metrics: list[Metric],
    params: dict[str, Any],
) -> dict[str, dict[str, Any]]:
    """Each metric's value (and failure reason) into ``items``, one per row; the
    aggregates. Every metric is computed by its registered function; a metric's
    ``prepare`` first does the work it shares with others for all rows at once (SQuAD
    normalisation, the refusal detector), which the per-item functions then read."""
    per_item = [m for m in metrics if m.per_item]
    shared_rows: list[dict[str, Any]] = [{} for _ in rows]
    prepared: set[Any] = set()
    for m in per_item:
        if m.prepare is not None and m.prepare not in prepared:
            m.prepare(rows, shared_rows, params)
            prepared.add(m.prepare)
    # metric -> (values, reasons), one entry per row; None: the item does not apply
    results: dict[str, tuple[list[float | None], list[str | None]]] = {}
    for m in per_item:
        fn, kw = m.per_item, params.get(m.name, {})
        pairs = [
            fn(row, row["output"], sh, **kw) for row, sh in zip(rows, shared_rows, strict=True)
        ]
        results[m.name] = ([v for v, _ in pairs], [r for _, r in pairs])
    columns: dict[str, list[float]] = {}
    for name, (values, _reasons) in results.items():
        columns[name] = [v for v in values if v is not None]
        for item, value in zip(items, values, strict=True):
            if value is not None:
                item[name] = value
    for name, (values, reasons) in results.items():
        for item, value, reason in zip(items, values, reasons, strict=True):
            if reason and value is not None:
                item.setdefault("reasons", {})[name] = reason
    for item, sh in zip(items, shared_rows, strict=True):
        if "refusal" in sh:
            item["refusal"] = sh["refusal"]
    aggregates: dict[str, dict[str, Any]] = {}
    for m in metrics:
        if m.per_item:
            vals = columns[m.name]
            if not vals:
                aggregates[m.name] = _agg(m, None, 0, None, True)
                continue
            aggregates[m.name] = _agg(m, sum(vals) / len(vals), len(vals), bootstrap_ci(vals), True)
        else:
            outputs = [r["output"] for r in rows]
            value = m.corpus(outputs) if outputs else None
            aggregates[m.name] = _agg(m, value, len(outputs), None, False)
    return aggregates


def _agg(
    m: Metric, value: float | None, n: int, ci: list[float] | None, per_item: bool
) -> dict[str, Any]:
    return {
        "value": None if value is None else round(float(value), 4),
        "n": n,
        "ci95": ci,
        "higher_is_better": m.higher_is_better,
        "_per_item": per_item,
    }


def suite_entry(
    name: str,
    aggregates: dict[str, dict[str, Any]],
    items_file: str,
    dataset: str | None = None,
    items: list[dict[str, Any]] | None = None,
    generation: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A report's entry for one suite: its metrics and, from the scored ``items``, the
    content hash of its questions (what the gate checks it is comparing like with like) and
    how many items were scored, errored or truncated."""
    entry: dict[str, Any] = {
        "suite": name,
        "dataset": dataset,
        "items_file": items_file,
        "metrics": [{"metric": k, **v} for k, v in aggregates.items()],
    }
    if items is not None:
        entry.update(suite_provenance(items))
    if generation is not None:
        entry["generation"] = generation
    return entry


def suite_provenance(items: list[dict[str, Any]]) -> dict[str, Any]:
    import hashlib

    lines = sorted(f"{i['id']}\t{i.get('hash', '')}" for i in items)
    excluded = [i["excluded"] for i in items if i.get("excluded")]
    return {
        "items_count": len(items),
        "items_sha256": hashlib.sha256("\n".join(lines).encode()).hexdigest(),
        "counts": {
            "items": len(items),
            "scored": len(items) - len(excluded),
            "errors": sum(e.startswith("error") for e in excluded),
            "truncated": sum(e == "truncated" for e in excluded)
            + sum(1 for i in items if i.get("truncated")),
        },
    }


def make_report(
    suites: list[dict[str, Any]], model: dict[str, Any] | None = None, **extra: Any
) -> dict[str, Any]:
    from corekit.runs import git_commit, library_versions

    return {
        "format_version": REPORT_FORMAT,
        "evalkit_version": _package_version(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "model": model,
        "code_commit": git_commit(Path(__file__).resolve().parent),
        "libraries": {k: v for k, v in library_versions().items() if v},
        "suites": suites,
        **extra,
    }


def _package_version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("finetune-toolkit")
    except PackageNotFoundError:
        return None


def write_scored(
    out_dir: Path, name: str, items: list[dict[str, Any]], fname: str | None = None
) -> str:
    """Write the per-item rows atomically as ``fname`` (default ``<name>.items.jsonl``);
    returns the file name (relative to the report)."""
    import orjson

    from corekit.runs import atomic_write_bytes

    fname = fname or f"{name}.items.jsonl"
    atomic_write_bytes(out_dir / fname, b"".join(orjson.dumps(i) + b"\n" for i in items))
    return fname


def check_report(report: Any, where: str) -> dict[str, Any]:
    """Validate a report against schemas/eval_report.json (one clear error)."""
    import jsonschema

    from corekit.schemas import load_schema

    try:
        jsonschema.validate(report, load_schema("eval_report"))
    except jsonschema.ValidationError as e:
        path = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in e.absolute_path)
        raise ToolkitError(f"{where}: {path}: {e.message}") from None
    return report


def read_report(path: str | Path) -> dict[str, Any]:
    import json

    path = Path(path)
    if path.is_dir():
        path = path / "report.json"
    try:
        report = json.loads(path.read_text())
    except OSError as e:
        raise ToolkitError(f"{path}: cannot read it ({e.strerror})") from None
    except ValueError as e:
        raise ToolkitError(f"{path}: not valid JSON ({e})") from None
    return check_report(report, str(path))


def read_items(report_path: str | Path, suite: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The per-item rows of one suite of a report, by item id."""
    import orjson

    base = Path(report_path)
    base = base if base.is_dir() else base.parent
    p = base / suite["items_file"]
    try:
        return {r["id"]: r for r in map(orjson.loads, p.read_bytes().splitlines()) if r}
    except OSError as e:
        raise ToolkitError(
            f"{p}: cannot read the items of suite {suite['suite']} ({e.strerror})"
        ) from None


def metric_direction(name: str, entry: dict[str, Any]) -> bool:
    if name in METRICS:
        return METRICS[name].higher_is_better
    return bool(entry.get("higher_is_better", True))
