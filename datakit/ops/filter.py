"""Curation filters: keep or drop each record, with the first reason that drops it (every
drop counted by reason and kept in the rejects file).

The checks, each off unless asked for: field values (``where``: a slice of a set, such as
the prompts of one label), judge quality (``meta.judge.quality``), length bounds
on the response (characters), a blocklist of words and a regex over the whole record text,
a cap on the share of non-ASCII letters (charset), responses that read like refusals (in
data that is not about safety, a refusal teaches the model to refuse), and responses that
must be JSON valid against a schema (format data).
"""

from __future__ import annotations

import json
import re
from typing import Any

from corekit.errors import ToolkitError

from ..records import field_value, response_text
from .context import OpContext
from .dedup import record_text

# Openings and phrases of refusals and deflections (English). A coarse screen for
# non-safety data; evalkit's refusal detector is the measured one.
_REFUSAL = re.compile(
    r"^\s*(i'?m sorry|i am sorry|sorry,? but|i apologi[sz]e|i can(?:no|')t|i cannot|"
    r"i won'?t|i will not|i'?m (?:not able|unable)|i am (?:not able|unable)|as an ai\b|"
    r"unfortunately,? i)",
    re.IGNORECASE,
)


def looks_like_refusal(text: str) -> bool:
    return bool(_REFUSAL.search(text))


def run(
    records: list[dict[str, Any]],
    ctx: OpContext,
    min_quality: float | None = None,
    min_chars: int | None = None,
    max_chars: int | None = None,
    blocklist: list[str] | None = None,
    regex: str | None = None,
    max_non_ascii: float | None = None,
    drop_refusals: bool = False,
    response_schema: dict[str, Any] | None = None,
    schema_field: str | None = None,
    expected_field: str | None = None,
    cut_partial_refusals: bool = False,
    where: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Keep the records that pass every check asked for. ``schema_field`` checks each
    response against its own record's schema; the kept share goes into the manifest.
    ``cut_partial_refusals`` (with ``expected_field``): an answer that should refuse but
    refuses and then goes on (partial) is cut back to its shortest opening of whole
    sentences that the detector labels a full refusal, and kept so; dropped as before when
    there is none."""
    blocked = (
        re.compile(r"\b(" + "|".join(re.escape(w) for w in blocklist) + r")\b", re.IGNORECASE)
        if blocklist
        else None
    )
    pattern = re.compile(regex) if regex else None  # the schema's format checked it compiles
    validator = None
    if response_schema is not None:
        import jsonschema

        validator = jsonschema.Draft202012Validator(response_schema)
    per_record = _SchemaValidators(schema_field, ctx) if schema_field else None
    labels = _refusal_labels(records) if expected_field else None
    if cut_partial_refusals and not expected_field:
        raise ToolkitError(f"{ctx.step}: filter: cut_partial_refusals needs expected_field")
    if labels is not None and cut_partial_refusals:
        records, labels = _cut_partial_refusals(records, labels, expected_field, ctx)
    out = []
    for i, rec in enumerate(records):
        if where and (miss := _unmatched(rec, where)):
            ctx.reject(rec, "not_selected", field=miss, value=field_value(rec, miss))
            continue
        if labels is not None:
            reason = _behaviour(field_value(rec, expected_field), labels[i])
            if reason:
                ctx.reject(rec, reason, field=expected_field, label=labels[i])
                continue
        if per_record is not None:
            validator = per_record.get(rec)
            if validator is None:
                ctx.reject(rec, "format_no_schema", field=schema_field)
                continue
        reason, detail = _check(
            rec, min_quality, min_chars, max_chars, blocked, pattern, max_non_ascii,
            drop_refusals, validator,
        )  # fmt: skip
        if reason:
            ctx.reject(rec, reason, **detail)
        else:
            out.append(rec)
    if records:
        ctx.stats["kept_share"] = round(len(out) / len(records), 4)
    return out


def _unmatched(rec: dict[str, Any], where: dict[str, Any]) -> str | None:
    """The first ``where`` field whose value in ``rec`` is not the one asked for."""
    return next((f for f, want in where.items() if field_value(rec, f) != want), None)


def _refusal_labels(records: list[dict[str, Any]]) -> list[str]:
    """evalkit's refusal detector on every response at once: full, partial or none."""
    from corekit.refusal import classify_many

    return classify_many([response_text(r) or "" for r in records])


def _cut_partial_refusals(
    records: list[dict[str, Any]], labels: list[str], expected_field: str, ctx: OpContext
) -> tuple[list[dict[str, Any]], list[str]]:
    """Each partial refusal of a request that should be refused, cut back to its shortest
    opening of whole sentences labelled ``full`` (one detector call for every candidate);
    the record carries ``meta.cut_from_chars`` (the answer's length before). The shortest,
    not the longest: the detector lets a refusal carry a little substance, and a longer
    cut could keep the first step of what was refused."""
    from corekit.refusal import classify_many

    from ..records import editable_response, with_response
    from .respond import _SENTENCE_END

    todo: list[tuple[int, list[str]]] = []
    for i, rec in enumerate(records):
        text = editable_response(rec)  # None for a preference pair: judged whole, not cut
        if labels[i] != "partial" or field_value(rec, expected_field) != "refuse" or not text:
            continue
        cuts = [text[: m.end()].rstrip() for m in _SENTENCE_END.finditer(text)]
        cuts = [c for c in cuts if c and len(c) < len(text.rstrip())]
        if cuts:
            todo.append((i, cuts))
    verdicts = iter(classify_many([c for _, cuts in todo for c in cuts]))
    records, labels = list(records), list(labels)
    cut = 0
    for i, cuts in todo:
        full = [c for c in cuts if next(verdicts) == "full"]
        if not full:
            continue
        rec = with_response(records[i], full[0])
        rec["meta"] = {
            **(rec.get("meta") or {}),
            "cut_from_chars": len(response_text(records[i]) or ""),
        }
        records[i], labels[i] = rec, "full"
        cut += 1
    ctx.stats["cut_partial_refusals"] = cut
    return records, labels


def _behaviour(expected: Any, label: str) -> str | None:
    """Why a response does not do what its record expects (None when it does)."""
    if expected == "refuse":
        return (
            None if label == "full" else "complied_unsafe" if label == "none" else "partial_refusal"
        )
    if expected == "comply":
        return None if label == "none" else "refused_safe" if label == "full" else "partial_refusal"
    return "no_expected"


class _SchemaValidators:
    """One compiled validator per distinct schema (records of a task share theirs)."""

    def __init__(self, field: str, ctx: OpContext) -> None:
        self.field, self.ctx, self.cache = field, ctx, {}

    def get(self, rec: dict[str, Any]) -> Any:
        import jsonschema

        schema = field_value(rec, self.field)
        if not isinstance(schema, dict):
            return None
        key = json.dumps(schema, sort_keys=True)
        if key not in self.cache:
            try:
                jsonschema.Draft202012Validator.check_schema(schema)
            except jsonschema.SchemaError as e:
                raise ToolkitError(
                    f"{self.ctx.step}: filter: record {rec.get('id')}: {self.field} is not a "
                    f"valid JSON Schema: {e.message}"
                ) from None
            self.cache[key] = jsonschema.Draft202012Validator(schema)
        return self.cache[key]


def _check(
    rec, min_quality, min_chars, max_chars, blocked, pattern, max_non_ascii, refusals, validator
) -> tuple[str | None, dict[str, Any]]:
    if min_quality is not None:
        judge = (rec.get("meta") or {}).get("judge") or {}
        q = judge.get("quality")
        if q is None:
            return "not_judged", {"error": judge.get("error")}
        if q < min_quality:
            return "below_min_quality", {"quality": q}
    response = response_text(rec) or ""
    if min_chars is not None and len(response) < min_chars:
        return "too_short", {"chars": len(response)}
    if max_chars is not None and len(response) > max_chars:
        return "too_long", {"chars": len(response)}
    text = record_text(rec, "all")
    if blocked is not None and (m := blocked.search(text)):
        return "blocklisted", {"word": m.group(0)}
    if pattern is not None and (m := pattern.search(text)):
        return "regex", {"match": m.group(0)[:100]}
    if max_non_ascii is not None:
        letters = [c for c in text if c.isalpha()]
        share = sum(not c.isascii() for c in letters) / len(letters) if letters else 0.0
        if share > max_non_ascii:
            return "charset", {"non_ascii_share": round(share, 3)}
    if refusals and looks_like_refusal(response):
        return "refusal", {"response": response[:200]}
    if validator is not None:
        try:
            value = json.loads(response)
        except ValueError as e:
            return "format_not_json", {"error": str(e)[:200]}
        errors = sorted(validator.iter_errors(value), key=lambda e: list(e.absolute_path))
        if errors:
            return "format_schema", {"error": errors[0].message[:200]}
    return None, {}
