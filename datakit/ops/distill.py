"""Distillation: a teacher engine answers prompts for a student; the records are in the
student's format (without the teacher's system prompt). The answering is respond's."""

from __future__ import annotations

from typing import Any

from .context import OpContext
from .respond import answer


def run(
    records,
    ctx: OpContext,
    system_prompt: str | None = None,
    temperature: float = 0.7,
    top_p: float = 0.95,
    max_tokens: int = 512,
    drop_truncated: bool = True,
    output_kind: str = "chat",
    samples: int = 1,
    schema_field: str | None = None,
    regex_field: str | None = None,
    trim_truncated: bool = False,
    json_indent: int | None = None,
) -> list[dict[str, Any]]:
    """The teacher engine answers; records are in student format (without the teacher's system prompt)."""
    teacher = ctx.engine_for("teacher")
    return answer(
        records,
        ctx,
        "distill",
        system_prompt,
        False,
        temperature,
        top_p,
        max_tokens,
        drop_truncated,
        output_kind,
        engine=teacher,
        samples=samples,
        schema_field=schema_field,
        regex_field=regex_field,
        trim_truncated=trim_truncated,
        json_indent=json_indent,
    )
