"""The judge op: pointwise rubric scores of every record (corekit.judging does the asking);
the judge's raw output and the rubric version go into ``meta.judge``."""

from __future__ import annotations

from typing import Any

from corekit.judging import rubric_version, score

from ..records import exchange
from .context import OpContext


def run(
    records: list[dict[str, Any]],
    ctx: OpContext,
    scale_min: int = 1,
    scale_max: int = 5,
    rubric: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Pointwise-judge every record; scores land in meta.judge, records are otherwise unchanged."""
    eng = ctx.engine_for("judge")
    results = score([exchange(r) for r in records], eng, (scale_min, scale_max), rubric=rubric)
    out = []
    for rec, res in zip(records, results, strict=True):
        judged = {
            **res,
            "rubric": rubric_version(rubric),
            "scale": [scale_min, scale_max],
            "engine": eng.backend,
            "model": eng.model,
        }
        meta = {**(rec.get("meta") or {}), "judge": judged}
        out.append({**rec, "meta": meta})
    return out
