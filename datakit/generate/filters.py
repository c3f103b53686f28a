"""Curation filters: keep or drop each record with a reason (drops go to the rejects file)."""

from __future__ import annotations

from typing import Any

from .context import GenContext


def quality_filter(
    records: list[dict[str, Any]], ctx: GenContext, min_quality: float = 0.7
) -> list[dict[str, Any]]:
    """Keep records whose judge quality (meta.judge.quality, 0..1) is at least ``min_quality``."""
    out = []
    for rec in records:
        judge = (rec.get("meta") or {}).get("judge") or {}
        q = judge.get("quality")
        if q is None:
            ctx.reject("not_judged", rec, error=judge.get("error"))
        elif q < min_quality:
            ctx.reject("below_min_quality", rec, quality=q)
        else:
            out.append(rec)
    return out
