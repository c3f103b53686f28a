"""The ``data:`` section's checks beyond the schema (registered as the ``data`` entry point of
``finetune_toolkit.config_checks``; :mod:`corekit.config` runs them): steps' engines and
inputs, and (``full``) import sources that do not read and inputs nothing makes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from corekit.config import key_path
from corekit.errors import ToolkitError
from corekit.models import resolve_path


def check_section(
    cfg: dict[str, Any], lines: dict[tuple, int], base: Path, full: bool = False
) -> list[tuple[int, str]]:
    out = _step_problems(cfg, lines)
    if full:
        out += _import_problems(cfg, lines, base)
        out += _input_problems(cfg, lines, base)
    return out


def _step_problems(data: dict[str, Any], lines: dict[tuple, int]) -> list[tuple[int, str]]:
    """Steps' engine names, ops that need an engine, inputs an op cannot take."""
    from .ops import OPS
    from .ops.dedup import WITHIN_NEEDS_REFERENCES

    out: list[tuple[int, str]] = []
    engines = data.get("engines") if isinstance(data.get("engines"), dict) else {}
    section = data.get("data")
    if not isinstance(section, dict):
        return out
    steps = section.get("steps") if isinstance(section.get("steps"), list) else []
    for i, step in enumerate(steps):
        if not isinstance(step, dict) or step.get("op") not in OPS:
            continue  # the schema reports those
        op = OPS[step["op"]]
        at = ("data", "steps", i)
        for key in ("engine", "judge_engine", "teacher_engine"):
            ref = step.get(key)
            if isinstance(ref, str) and ref not in engines:
                known = ", ".join(engines) or "none defined"
                out.append(
                    (
                        lines.get(at + (key,), lines.get(at, 0)),
                        f"{key_path(at + (key,))}: {ref!r} is not in engines ({known})",
                    )
                )
        if op.roles and not step.get("engine"):
            out.append(
                (
                    lines.get(at, 0),
                    f"{key_path(at)}: op {op.name} calls a model ({', '.join(op.roles)}): "
                    "give it an engine",
                )
            )
        inputs = step.get("input")
        if isinstance(inputs, list) and len(inputs) > 1 and not op.many_inputs:
            out.append(
                (
                    lines.get(at + ("input",), 0),
                    f"{key_path(at + ('input',))}: {op.name} reads one input",
                )
            )
        params = step.get("params") if isinstance(step.get("params"), dict) else {}
        alone = not isinstance(inputs, list) or len(inputs) < 2
        if op.name == "dedup" and params.get("within") is False and alone:
            out.append(
                (
                    lines.get(at + ("params",), lines.get(at, 0)),
                    f"{key_path(at + ('params', 'within'))}: {WITHIN_NEEDS_REFERENCES}",
                )
            )
    return out


def dataset_names(data: dict[str, Any], base: Path) -> dict[str, str]:
    """Every dataset name a config can refer to, with what defines it: an import, a step's
    output (``NAME`` or, for ops with named outputs, ``NAME-train`` ...), or a dataset
    already in the data root."""
    from .ops import OPS

    out: dict[str, str] = {}
    section = data.get("data") if isinstance(data.get("data"), dict) else {}
    root = resolve_path(base, str(data.get("data_root") or "data"))
    if root.is_dir():
        for d in sorted(root.iterdir()):
            if d.is_dir() and not d.name.startswith("."):
                out[d.name] = "the data root"
    for imp in section.get("imports") or []:
        if isinstance(imp, dict) and isinstance(imp.get("name"), str):
            out[imp["name"]] = "an import"
    for step in section.get("steps") or []:
        if isinstance(step, dict) and isinstance(step.get("name"), str):
            op = OPS.get(step.get("op"))
            for suffix in (op.outputs if op else ()) or ("",):
                name = f"{step['name']}-{suffix}" if suffix else step["name"]
                out[name] = f"step {step['name']} ({step.get('op')})"
    return out


def unknown_dataset(ref: str, known: dict[str, str], at: tuple, lines: dict) -> tuple[int, str]:
    from corekit.errors import did_you_mean

    name = ref.split("@", 1)[0]
    return (
        lines.get(at, 0),
        f"{key_path(at)}: no dataset {name!r}: no import, step or data-root dataset makes it"
        + (did_you_mean(name, known, "datasets") if known else ""),
    )


def _first_record_problem(src: Path, fmt: str, kind: str | None) -> str | None:
    """Why the first record of ``src`` does not read as ``fmt`` (None when it does)."""
    from itertools import islice

    from .formats import read_source, validated

    try:
        src_kind, located = read_source(src, fmt, kind)
        list(islice(validated(located, src_kind, src), 1))
    except ToolkitError as e:
        return str(e).splitlines()[0]
    except (OSError, ValueError) as e:  # a reader's own error on a file of another format
        return f"{type(e).__name__}: {e}"
    return None


def _source_format_problem(src: Path, fmt: str, kind: str | None) -> str | None:
    """The import's format checked on the source's first record, the way `run` reads it;
    when it does not read, the formats that do are named (format detection)."""
    from .formats import IMPORT_FORMATS

    problem = _first_record_problem(src, fmt, kind)
    if problem is None:
        return None
    fits = [f for f in IMPORT_FORMATS if f != fmt and _first_record_problem(src, f, kind) is None]
    hint = f"; it reads as format: {' or '.join(fits)}" if fits else ""
    return f"does not read as format {fmt}: {problem}{hint}"


def _import_problems(
    data: dict[str, Any], lines: dict[tuple, int], base: Path
) -> list[tuple[int, str]]:
    """Import sources that are missing, unreadable, or not of their declared format."""
    out: list[tuple[int, str]] = []
    section = data.get("data") if isinstance(data.get("data"), dict) else {}
    for i, imp in enumerate(section.get("imports") or []):
        if not isinstance(imp, dict) or not isinstance(imp.get("source"), str):
            continue
        src = resolve_path(base, imp["source"])
        at = ("data", "imports", i, "source")
        if not src.is_file():
            out.append((lines.get(at, 0), f"{key_path(at)}: no such file {src}"))
        elif not os.access(src, os.R_OK):
            out.append((lines.get(at, 0), f"{key_path(at)}: cannot read {src}"))
        else:
            problem = _source_format_problem(src, imp.get("format", "jsonl"), imp.get("kind"))
            if problem:
                out.append((lines.get(at, 0), f"{key_path(at)}: {problem}"))
    return out


def _input_problems(
    data: dict[str, Any], lines: dict[tuple, int], base: Path
) -> list[tuple[int, str]]:
    """Step inputs that no import, step or data-root dataset makes."""
    out: list[tuple[int, str]] = []
    section = data.get("data") if isinstance(data.get("data"), dict) else {}
    known = dataset_names(data, base)
    for i, step in enumerate(section.get("steps") or []):
        if not isinstance(step, dict):
            continue
        refs = step.get("input")
        refs = [refs] if isinstance(refs, str) else refs if isinstance(refs, list) else []
        for k, ref in enumerate(refs):
            at = ("data", "steps", i, "input") + ((k,) if isinstance(step["input"], list) else ())
            if isinstance(ref, str) and ref.split("@", 1)[0] not in known:
                out.append(unknown_dataset(ref, known, at, lines))
    return out
