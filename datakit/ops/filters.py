"""Curation filters: keep or drop each record with a reason (drops go to the rejects file)."""

from __future__ import annotations

from typing import Any

from .context import OpContext


def quality_filter(
    records: list[dict[str, Any]], ctx: OpContext, min_quality: float = 0.7
) -> list[dict[str, Any]]:
    """Keep records whose judge quality (meta.judge.quality, 0..1) is at least ``min_quality``."""
    out = []
    for rec in records:
        judge = (rec.get("meta") or {}).get("judge") or {}
        q = judge.get("quality")
        if q is None:
            ctx.reject(rec, "not_judged", error=judge.get("error"))
        elif q < min_quality:
            ctx.reject(rec, "below_min_quality", quality=q)
        else:
            out.append(rec)
    return out
