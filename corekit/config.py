"""Check ``pipeline.yaml`` against ``schemas/pipeline.json`` and fill its defaults.

The schema is the one place where each field's type, default and help live. Every error of a
config is reported together, each with its key path and YAML line; an unknown key gets a
"did you mean" hint from the keys the schema allows at that place. What a schema cannot say
(references between sections, files, models) each kit checks for its own section, registered
as an entry point of ``finetune_toolkit.config_checks`` named after the section, so this
module imports none of the kits. :class:`corekit.project.Project` is the loaded result.
"""

from __future__ import annotations

import copy
import difflib
from pathlib import Path
from typing import Any

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


def specific_error(err: Any) -> Any:
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


def schema_errors(schema: dict[str, Any], instance: Any) -> list[Any]:
    """Every way ``instance`` breaks ``schema``, each as the error of the form it was meant
    as (``specific_error``), with formats checked: a ``"format": "regex"`` value that does
    not compile is an error here, with the reason, before any work starts."""
    import jsonschema

    checker = jsonschema.Draft7Validator.FORMAT_CHECKER
    out = []
    for err in jsonschema.Draft7Validator(schema, format_checker=checker).iter_errors(instance):
        err = specific_error(err)
        if err.validator == "format" and err.cause is not None:
            err.message = f"{err.message}: {err.cause}"
        out.append(err)
    return out


def check_config(
    data: Any,
    lines: dict[tuple, int] | None = None,
    file: str = "pipeline.yaml",
    full: bool = False,
) -> list[str]:
    """Every problem of a config, one line each: ``file:line: key.path: message``.

    Always: the schema, engine names, and each section's references (its registered
    check). ``full`` adds what costs a look at the disk: files, models, datasets, every
    section's deeper checks (``datakit config check``, and the data stage before any work)."""
    lines = lines or {}
    if data is None:
        data = {}
    problems = _schema_problems(data, lines)
    if isinstance(data, dict):
        problems += _engine_problems(data, lines, Path(file).resolve().parent, full)
        problems += _section_problems(data, lines, file, full)
    problems.sort(key=lambda p: p[0])
    return [f"{file}:{ln}: {msg}" if ln else f"{file}: {msg}" for ln, msg in problems]


def _schema_problems(data: Any, lines: dict[tuple, int]) -> list[tuple[int, str]]:
    schema = load_schema("pipeline")
    problems: list[tuple[int, str]] = []
    for err in schema_errors(schema, data):
        path = tuple(err.absolute_path)
        if err.validator == "additionalProperties" and isinstance(err.instance, dict):
            problems += _unknown_keys(err, path, schema, lines)
        elif err.validator == "required":
            missing = err.message.split("'")[1] if "'" in err.message else err.message
            problems.append(
                (lines.get(path, 0), f"{key_path(path)}: missing required key {missing!r}")
            )
        else:
            problems.append((lines.get(path, 0), f"{key_path(path)}: {err.message}"))
    return problems


def _unknown_keys(
    err: Any, path: tuple, schema: dict, lines: dict[tuple, int]
) -> list[tuple[int, str]]:
    allowed = list(_subschema(err.schema, schema).get("properties", {}))
    out = []
    for key in (k for k in err.instance if k not in allowed):
        if path == ("data",) and key == "engines":
            continue  # a moved section: _engine_problems says where it went
        hint = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
        tip = (
            f"; did you mean {hint[0]!r}?"
            if hint
            else (f"; allowed here: {', '.join(allowed)}" if allowed else "")
        )
        at = lines.get(path + (key,), lines.get(path, 0))
        out.append((at, f"{key_path(path + (key,))}: unknown key{tip}"))
    return out


def _engine_problems(
    data: dict[str, Any], lines: dict[tuple, int], base: Path, full: bool
) -> list[tuple[int, str]]:
    """References to engines by name, the moved ``data.engines`` section, and (``full``)
    each engine's model and options."""
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
    if isinstance(section, dict) and "engines" in section:
        out.append(
            (
                lines.get(("data", "engines"), 0),
                "data.engines: moved to the top level: write `engines:` beside `models:` "
                "(same entries; every stage refers to them by name)",
            )
        )
    if full:
        for name, e in engines.items():
            if isinstance(e, dict) and isinstance(e.get("model"), str):
                out += _engine_resources(("engines", name), e, data, lines, base)
    return out


def _engine_resources(
    at: tuple, e: dict[str, Any], data: dict[str, Any], lines: dict[tuple, int], base: Path
) -> list[tuple[int, str]]:
    """An engine's model (a name in ``models`` or a model directory, not an adapter), its
    ``lora_adapter``, and options its backend does not take."""
    from .errors import ToolkitError, did_you_mean
    from .models import check_model, resolve_model, resolve_path

    out: list[tuple[int, str]] = []
    models = data.get("models") if isinstance(data.get("models"), dict) else {}
    if e["model"] not in models and e.get("backend") != "openai":
        where = f"{key_path(at)}.model"
        try:
            if check_model(resolve_model(e["model"], models, base), where) == "adapter":
                from .engines import adapter_as_model

                out.append((lines.get(at + ("model",), 0), adapter_as_model(where, e["model"])))
        except ToolkitError as err:
            msg = str(err)
            if "/" not in e["model"]:  # a bare name: most likely a misspelt model name
                msg = f"{where}: {e['model']!r} is neither a name in models nor a model directory"
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

        from .engines import BACKENDS, unknown_options

        if importlib.util.find_spec(BACKENDS[e["backend"]][1]) is not None:
            for key, hint in unknown_options(e["backend"], options):
                where = at + ("options", *key.split("."))  # a vLLM config class's own key
                out.append(
                    (
                        lines.get(where, 0),
                        f"{key_path(where)}: unknown option for the {e['backend']} backend{hint}",
                    )
                )
    return out


def _section_problems(
    data: dict[str, Any], lines: dict[tuple, int], file: str, full: bool
) -> list[tuple[int, str]]:
    """The checks the kits register for their sections (entry points in the group
    ``finetune_toolkit.config_checks``, named after the section), e.g. datakit's of step
    references, trainkit's of references between stages. Each is called with the config
    (defaults in), the YAML lines, the config's directory and ``full``, and returns (line,
    message) pairs."""
    from importlib.metadata import entry_points

    out: list[tuple[int, str]] = []
    filled = None
    for ep in entry_points(group="finetune_toolkit.config_checks"):
        if isinstance(data.get(ep.name), dict):
            filled = filled if filled is not None else with_defaults(data)
            out += ep.load()(filled, lines, Path(file).resolve().parent, full)
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
            and ("properties" in sub or isinstance(sub.get("additionalProperties"), dict))
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


def schema_default(*keys: str) -> Any:
    """The schema's default of the field at ``keys`` (e.g. ``"eval", "gate", "alpha"``):
    code that needs a default reads it here rather than restating it."""
    root = load_schema("pipeline")
    node = root
    for key in keys:
        node = _subschema(node, root)["properties"][key]
    return copy.deepcopy(_subschema(node, root)["default"])


def load_config(path: str | Path, full: bool = False) -> tuple[dict[str, Any], dict[tuple, int]]:
    """Load and check a config (all errors together, one ToolkitError); returns it with its
    defaults filled, and the YAML line of every key. ``full``: see :func:`check_config`."""
    from .errors import ToolkitError
    from .yaml_load import load_yaml

    data, lines = load_yaml(path)
    if data is not None and not isinstance(data, dict):
        raise ToolkitError(
            f"{path}:1: the config must be a mapping of sections (data, train, eval)"
        )
    raise_problems(check_config(data, lines, str(path), full=full), path)
    return with_defaults(data or {}), lines


def raise_problems(problems: list[str], path: str | Path) -> None:
    """One ToolkitError that lists every problem (none: nothing happens)."""
    from .errors import ToolkitError

    if problems:
        n = len(problems)
        raise ToolkitError(f"{n} problem{'s' if n > 1 else ''} in {path}:\n" + "\n".join(problems))
