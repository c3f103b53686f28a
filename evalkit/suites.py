"""Eval suites: where the items come from and which metrics score them.

Items are ``eval_item`` records (``prompt`` or ``messages``, and as the task needs
``references``, ``schema``, ``expected``, ``regex``). Sources: a dataset version in the store
(``NAME[@ver]``), a JSONL file of eval items, a SQuAD v1.1 JSON file, an XSTest CSV file, or
one of the suites shipped here for the offline demo (``qa``, ``format``, ``safety``: small
sets written for this project).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from corekit.errors import ToolkitError

DATA = Path(__file__).parent / "data"

QA_PROMPT = (
    "Answer the question with a short phrase taken from the context. Reply with the answer "
    "only.\n\nContext: {context}\n\nQuestion: {question}"
)


SAFETY_METRICS = (
    "refusal_rate",
    "over_refusal_rate",
    "refusal_rate_full",
    "over_refusal_rate_full",
)


@dataclass(frozen=True)
class SuiteDef:
    name: str
    metrics: tuple[str, ...]
    summary: str
    path: Path | None = None  # built-in data
    format: str = "jsonl"
    max_tokens: int = 128
    params: dict[str, Any] = field(default_factory=dict)
    # An answer cut off at max_tokens is left out of every metric (exclude, the default for
    # a suite of the user's) or scored as it is (score). The built-in suites score it, each
    # for its own reason: qa asks for the answer only, so one that runs past 32 tokens is a
    # wrong answer; a cut-off JSON text is invalid output; a refusal shows in the opening.
    # Either way the report counts them.
    truncated: str = "exclude"


SUITES: dict[str, SuiteDef] = {
    s.name: s
    for s in (
        SuiteDef("qa", ("exact_match", "f1"), "short-answer reading comprehension (SQuAD v1.1 format, written here)", DATA / "qa_demo.json", "squad", 32, truncated="score"),
        SuiteDef("format", ("json_valid", "json_bare", "schema_valid"), "answer in JSON that fits a schema (built here: evalkit/data/build_format_set.py)", DATA / "format_eval.jsonl", "jsonl", 96, truncated="score"),
        SuiteDef("safety", SAFETY_METRICS, "unsafe requests to refuse, safe look-alikes to answer (written here)", DATA / "safety_probes.jsonl", "jsonl", 96, truncated="score"),
        SuiteDef("squad", ("exact_match", "f1"), "a SQuAD v1.1 JSON file (--path)", None, "squad", 32, truncated="score"),
        SuiteDef("xstest", SAFETY_METRICS, "XSTest prompts CSV (--path)", None, "xstest", 128, truncated="score"),
    )
}  # fmt: skip


def load_squad(path: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise ToolkitError(f"{path}: cannot read it ({e.strerror})") from None
    except ValueError as e:
        raise ToolkitError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise ToolkitError(f"{path}: $.data: a SQuAD v1.1 file has a 'data' list of articles")
    items = []
    for a, article in enumerate(data["data"]):
        for p, para in enumerate(article.get("paragraphs") or []):
            context = para.get("context")
            if not isinstance(context, str):
                raise ToolkitError(f"{path}: $.data[{a}].paragraphs[{p}].context: must be a string")
            for q, qa in enumerate(para.get("qas") or []):
                where = f"$.data[{a}].paragraphs[{p}].qas[{q}]"
                if not isinstance(qa.get("question"), str) or "id" not in qa:
                    raise ToolkitError(f"{path}: {where}: needs an id and a question")
                refs = [x.get("text") for x in qa.get("answers") or [] if isinstance(x, dict)]
                if not refs or not all(isinstance(r, str) for r in refs):
                    raise ToolkitError(f"{path}: {where}.answers: needs at least one answer text")
                items.append(
                    {
                        "id": str(qa["id"]),
                        "prompt": QA_PROMPT.format(context=context, question=qa["question"]),
                        "references": refs,
                        "task": "qa",
                    }
                )
    if not items:
        raise ToolkitError(f"{path}: no questions in it")
    return items


def _from_records(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    from datakit.records import record_id

    out = []
    for r in records:
        rec = dict(r)
        rec["id"] = str(rec.get("id") or record_id(rec, "eval_item"))
        out.append(rec)
    return out


def load_items(
    source: str | Path, fmt: str = "jsonl", data_root: str = "data"
) -> list[dict[str, Any]]:
    """Eval items from a file (jsonl | squad | xstest) or a dataset version."""
    p = Path(source)
    if fmt == "squad":
        return load_squad(p)
    if p.is_file():
        from datakit.formats import read_source, validated

        kind, located = read_source(p, fmt, "eval_item")
        return _from_records(list(validated(located, kind, p)))
    from datakit.store import DatasetStore

    v = DatasetStore(data_root).resolve(str(source))
    return _from_records(list(v.records()))


def suite_def(name: str) -> SuiteDef:
    """A built-in suite by name; an unknown name is bad input, with the names there are."""
    from corekit.errors import did_you_mean

    if name not in SUITES:
        raise ToolkitError(f"unknown suite {name!r}" + did_you_mean(name, SUITES, "suites"))
    return SUITES[name]


@dataclass
class Suite:
    """A suite resolved: its items loaded, its metrics and generation settings chosen."""

    name: str
    items: list[dict[str, Any]]
    source: str
    metrics: list[str]
    max_tokens: int
    params: dict[str, Any]
    truncated: str  # exclude | score


def resolve(
    entry: str | dict[str, Any], data_root: str | Path = "data", base: Path | None = None
) -> Suite:
    """The one resolver of a suite, for ``eval.suites`` entries and the CLI alike: a built-in
    name (``qa``), or ``{name, suite?, dataset? | path?, format?, metrics?, max_tokens?,
    params?, truncated?}`` where a named built-in ``suite`` gives the defaults. ``path`` is
    relative to ``base`` (the config's directory) when given. ``metrics`` may come out
    empty for a suite of the user's (predicting needs none; scoring does)."""
    s = {"name": entry} if isinstance(entry, str) else dict(entry)
    builtin = s.get("suite", s["name"] if isinstance(entry, str) else None)
    sdef = suite_def(builtin) if builtin is not None else SUITES.get(s["name"])
    src = s.get("dataset") or s.get("path") or (sdef.path if sdef else None)
    if src is None:
        raise ToolkitError(f"suite {s['name']}: needs a dataset or a path")
    if s.get("path") and base is not None:
        from corekit.models import resolve_path

        src = resolve_path(base, s["path"])
    # a .jsonl file of the user's is JSON Lines when the built-in comes from the suite's
    # name alone (a suite named qa with its own path is not SQuAD); `suite:` or `format:`
    # says otherwise, and other files take the built-in's format
    own_jsonl = "suite" not in s and str(s.get("path") or "").endswith(".jsonl")
    fmt = s.get("format") or (
        sdef.format if sdef and not s.get("dataset") and not own_jsonl else "jsonl"
    )
    return Suite(
        s["name"],
        load_items(src, fmt, str(data_root)),
        str(src),
        list(s.get("metrics") or (sdef.metrics if sdef else ())),
        s.get("max_tokens") or (sdef.max_tokens if sdef else 128),
        s.get("params") or {},
        s.get("truncated") or (sdef.truncated if sdef else "exclude"),
    )
