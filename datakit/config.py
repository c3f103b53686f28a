"""Load and check ``pipeline.yaml`` against ``schemas/pipeline.json``.

The schema is the one place where each field's type, default and help live. Every error of a
config is reported together, each with its key path and YAML line; an unknown key gets a
"did you mean" hint from the keys the schema allows at that place.
"""

from __future__ import annotations

import copy
import difflib
import os
from pathlib import Path
from typing import Any

from corekit.errors import ToolkitError
from corekit.models import resolve_path
from corekit.yaml_load import load_yaml

from .schemas import load_schema


def key_path(parts: Any) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "(top level)"


def _subschema(schema: dict, root: dict) -> dict:
    while "$ref" in schema:
        name = schema["$ref"].split("/")[-1]
        schema = root["definitions"][name]
    return schema


def _specific(err: Any) -> Any:
    """For a value that matches none of a oneOf/anyOf's forms, the error of the form it
    was meant as (the one whose type it has): "weight: -1 is less than or equal to the
    minimum of 0" rather than "not valid under any of the given schemas"."""
    while err.validator in ("oneOf", "anyOf") and err.context:
        meant = [e for e in err.context if e.validator != "type" or e.relative_path]
        if not meant:
            break
        import jsonschema

        err = jsonschema.exceptions.best_match(meant)
    return err


def check_config(
    data: Any,
    lines: dict[tuple, int] | None = None,
    file: str = "pipeline.yaml",
    sections: bool = False,
) -> list[str]:
    """Every problem of a config, one line each: ``file:line: key.path: message``.

    ``sections`` adds the checks the kits register for their sections (``datakit config
    check``; the data commands do not need trainkit's, and trainkit makes them itself)."""
    import jsonschema

    lines = lines or {}
    schema = load_schema("pipeline")
    if data is None:
        data = {}
    problems: list[tuple[int, str]] = []
    for err in jsonschema.Draft7Validator(schema).iter_errors(data):
        err = _specific(err)
        path = tuple(err.absolute_path)
        if err.validator == "additionalProperties" and isinstance(err.instance, dict):
            allowed = list(_subschema(err.schema, schema).get("properties", {}))
            extra = [k for k in err.instance if k not in allowed]
            for key in extra:
                if path == ("data",) and key == "engines":
                    continue  # a moved section: _reference_problems says where it went
                hint = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
                tip = (
                    f"; did you mean {hint[0]!r}?"
                    if hint
                    else (f"; allowed here: {', '.join(allowed)}" if allowed else "")
                )
                problems.append(
                    (
                        lines.get(path + (key,), lines.get(path, 0)),
                        f"{key_path(path + (key,))}: unknown key{tip}",
                    )
                )
            continue
        if err.validator == "required":
            missing = err.message.split("'")[1] if "'" in err.message else err.message
            problems.append(
                (lines.get(path, 0), f"{key_path(path)}: missing required key {missing!r}")
            )
            continue
        problems.append((lines.get(path, 0), f"{key_path(path)}: {err.message}"))
    if isinstance(data, dict):
        problems += _reference_problems(data, lines)
    if sections and isinstance(data, dict):
        base = Path(file).resolve().parent
        problems += _resource_problems(data, lines, base)
        problems += _section_problems(data, lines, file)
    problems.sort(key=lambda p: p[0])
    return [f"{file}:{ln}: {msg}" if ln else f"{file}: {msg}" for ln, msg in problems]


def _section_problems(
    data: dict[str, Any], lines: dict[tuple, int], file: str
) -> list[tuple[int, str]]:
    """The checks other kits register for their sections (entry points in the group
    ``finetune_toolkit.config_checks``, named after the section), e.g. trainkit's of the
    train: section: references between stages, method and adapter combinations, args this
    install cannot honour. Each returns (line, message) pairs."""
    from importlib.metadata import entry_points

    out: list[tuple[int, str]] = []
    for ep in entry_points(group="finetune_toolkit.config_checks"):
        if data.get(ep.name):
            out += ep.load()(with_defaults(data), lines, Path(file).resolve().parent)
    return out


def _reference_problems(data: dict[str, Any], lines: dict[tuple, int]) -> list[tuple[int, str]]:
    """What the schema cannot say: moved sections, engine names, ops that need an engine."""
    from .ops import OPS

    out: list[tuple[int, str]] = []
    engines = data.get("engines") if isinstance(data.get("engines"), dict) else {}
    ev = data.get("eval")
    for key in ("engine", "judge", "refusal_judge"):
        if isinstance(ev, dict) and isinstance(ev.get(key), str) and ev[key] not in engines:
            known = ", ".join(engines) or "none defined"
            out.append(
                (
                    lines.get(("eval", key), 0),
                    f"eval.{key}: {ev[key]!r} is not in engines ({known})",
                )
            )
    section = data.get("data")
    if not isinstance(section, dict):
        return out
    if "engines" in section:
        out.append(
            (
                lines.get(("data", "engines"), 0),
                "data.engines: moved to the top level: write `engines:` beside `models:` "
                "(same entries; every stage refers to them by name)",
            )
        )
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
                out[f"{step['name']}-{suffix}" if suffix else step["name"]] = "a step"
    return out


def _unknown_dataset(ref: str, known: dict[str, str], at: tuple, lines: dict) -> tuple[int, str]:
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


def _resource_problems(
    data: dict[str, Any], lines: dict[tuple, int], base: Path
) -> list[tuple[int, str]]:
    """What `run` would trip on later, found now (config check): engine models that are
    neither in `models` nor a model directory, engine options the backend does not take,
    import sources that cannot be read, step inputs and training datasets nothing makes."""
    from corekit.errors import did_you_mean
    from corekit.models import check_model, resolve_model

    out: list[tuple[int, str]] = []
    models = data.get("models") if isinstance(data.get("models"), dict) else {}
    engines = data.get("engines") if isinstance(data.get("engines"), dict) else {}
    for name, e in engines.items():
        if not isinstance(e, dict) or not isinstance(e.get("model"), str):
            continue
        at = ("engines", name)
        served = e.get("backend") == "openai"
        if e["model"] not in models and not served:
            try:
                where = f"{key_path(at)}.model"
                if check_model(resolve_model(e["model"], models, base), where) == "adapter":
                    from corekit.engines import adapter_as_model

                    out.append((lines.get(at + ("model",), 0), adapter_as_model(where, e["model"])))
            except ToolkitError as err:
                msg = str(err)
                if "/" not in e["model"]:  # a bare name: most likely a misspelt model name
                    msg = (
                        f"{key_path(at)}.model: {e['model']!r} is neither a name in models "
                        "nor a model directory"
                    )
                hint = did_you_mean(e["model"], models, "models") if models else ""
                out.append((lines.get(at + ("model",), 0), f"{msg}{hint}"))
        options = e.get("options")
        lora = options.get("lora_adapter") if isinstance(options, dict) else None
        if isinstance(lora, str):
            where = f"{key_path(at + ('options', 'lora_adapter'))}"
            try:
                kind = check_model(str(resolve_path(base, lora)), where)
            except ToolkitError as err:
                kind, msg = "", str(err)
            else:
                msg = f"{where}: {lora} is not a LoRA adapter (no adapter_config.json)"
            if kind != "adapter":
                out.append((lines.get(at + ("options", "lora_adapter"), 0), msg))
        if isinstance(options, dict) and e.get("backend") in ("vllm", "transformers", "openai"):
            import importlib.util

            from corekit.engines import BACKENDS, unknown_options

            if importlib.util.find_spec(BACKENDS[e["backend"]][1]) is not None:
                for key, hint in unknown_options(e["backend"], options):
                    out.append(
                        (
                            lines.get(at + ("options", key), 0),
                            f"{key_path(at + ('options', key))}: unknown option for the "
                            f"{e['backend']} backend{hint}",
                        )
                    )
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
    known = dataset_names(data, base)
    for i, step in enumerate(section.get("steps") or []):
        if not isinstance(step, dict):
            continue
        refs = step.get("input")
        refs = [refs] if isinstance(refs, str) else refs if isinstance(refs, list) else []
        for k, ref in enumerate(refs):
            at = ("data", "steps", i, "input") + ((k,) if isinstance(step["input"], list) else ())
            if isinstance(ref, str) and ref.split("@", 1)[0] not in known:
                out.append(_unknown_dataset(ref, known, at, lines))
    train = data.get("train") if isinstance(data.get("train"), dict) else {}
    for i, stage in enumerate(train.get("stages") or []):
        if not isinstance(stage, dict):
            continue
        for key in ("dataset", "eval_dataset"):
            value = stage.get(key)
            items = [(value, ())] if isinstance(value, str) else []
            if isinstance(value, list):
                items = [
                    (d.get("name"), (k, "name")) for k, d in enumerate(value) if isinstance(d, dict)
                ]
            for ref, sub in items:
                if isinstance(ref, str) and ref.split("@", 1)[0] not in known:
                    at = ("train", "stages", i, key) + sub
                    out.append(_unknown_dataset(ref, known, at, lines))
    return out


def with_defaults(
    data: dict[str, Any], schema: dict | None = None, root: dict | None = None
) -> dict[str, Any]:
    """Fill schema defaults into a (checked) config; returns a copy."""
    root = root or load_schema("pipeline")
    schema = _subschema(schema or root, root)
    out = copy.deepcopy(data)
    for key, sub in schema.get("properties", {}).items():
        sub = _subschema(sub, root)
        if key not in out and "default" in sub:
            out[key] = copy.deepcopy(sub["default"])
        if (
            isinstance(out.get(key), dict)
            and sub.get("type", "object") == "object"
            and "properties" in sub
        ):
            out[key] = with_defaults(out[key], sub, root)
        elif isinstance(out.get(key), list) and "items" in sub:
            item_schema = _subschema(sub["items"], root)
            out[key] = [
                with_defaults(x, item_schema, root) if isinstance(x, dict) else x for x in out[key]
            ]
    if isinstance(schema.get("additionalProperties"), dict):
        item_schema = _subschema(schema["additionalProperties"], root)
        for key, val in out.items():
            if key not in schema.get("properties", {}) and isinstance(val, dict):
                out[key] = with_defaults(val, item_schema, root)
    return out


def load_config(path: str | Path, full: bool = False) -> dict[str, Any]:
    """Load, check (all errors together, one ToolkitError) and fill defaults. ``full``: the
    checks of `datakit config check` too (files, models, datasets, every section's)."""
    data, lines = load_yaml(path)
    if data is not None and not isinstance(data, dict):
        raise ToolkitError(
            f"{path}:1: the config must be a mapping of sections (data, train, eval)"
        )
    problems = check_config(data, lines, str(path), sections=full)
    if problems:
        n = len(problems)
        raise ToolkitError(f"{n} problem{'s' if n > 1 else ''} in {path}:\n" + "\n".join(problems))
    return with_defaults(data or {})
