"""Write the registry-made parts of ``schemas/pipeline.json`` (``make schema``).

Each op, training method and metric is declared once, in its registry (``datakit.ops.OPS``,
``trainkit.methods.METHODS``, ``evalkit.metrics.METRICS``); the schema's lists of them come
from there: the op and method enums, the if/then that picks each one's parameter schema, the
methods' help and learning-rate defaults, the metric names in the help. An op's or method's
parameters keep their one home in the schema (``definitions/params_<op>``,
``definitions/method_<name>``: types, defaults, help), which the tests hold the functions to.

    python tools/schema.py           # rewrite schemas/pipeline.json
    python tools/schema.py --check   # exit 1 when the committed schema is not current
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any

SCHEMA = Path(__file__).resolve().parent.parent / "schemas" / "pipeline.json"


def _exp(x: float) -> str:
    return f"{x:.0e}".replace("e-0", "e-")


def _pick(key: str, names: list[str], prefix: str) -> list[dict[str, Any]]:
    """The if/then list that gives each choice of ``key`` its parameter schema."""
    return [
        {
            "if": {"properties": {key: {"const": n}}, "required": [key]},
            "then": {"properties": {"params": {"$ref": f"#/definitions/{prefix}{n}"}}},
        }
        for n in names
    ]


def _declared(defs: dict[str, Any], prefix: str, names: list[str], what: str) -> list[str]:
    have = {k.removeprefix(prefix) for k in defs if k.startswith(prefix)}
    out = [f"{what} {n}: no definitions/{prefix}{n} in the schema" for n in names if n not in have]
    out += [f"definitions/{prefix}{n}: no {what} {n} in the registry" for n in have - set(names)]
    return out


def generate(schema: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The schema with its registry-made parts rewritten, and what does not line up."""
    from datakit.ops import OPS
    from evalkit.metrics import METRICS
    from trainkit.methods import METHODS

    out = copy.deepcopy(schema)
    defs = out["definitions"]
    ops, methods = list(OPS), list(METHODS)
    problems = _declared(defs, "params_", ops, "op") + _declared(defs, "method_", methods, "method")
    step = defs["step"]
    step["properties"]["op"]["enum"] = ops
    step["allOf"] = _pick("op", ops, "params_")
    stage = defs["stage"]
    stage["properties"]["method"]["enum"] = methods
    stage["properties"]["method"]["description"] = (
        "; ".join(f"{m.name}: {m.summary}" for m in METHODS.values()) + " (trainkit.methods)."
    )
    stage["allOf"] = _pick("method", methods, "method_")
    rates = "; ".join(
        f"{m.name} {_exp(m.learning_rate[0])} / {_exp(m.learning_rate[1])}"
        for m in METHODS.values()
    )
    defs["train_args"]["properties"]["learning_rate"]["description"] = (
        f"Peak learning rate. Default per method, full fine-tuning / adapters: {rates} "
        "(trainkit/methods/__init__.py, with the papers they follow)."
    )
    suite = next(
        f for f in defs["eval"]["properties"]["suites"]["items"]["anyOf"] if "properties" in f
    )
    suite["properties"]["metrics"]["description"] = (
        f"Metric names (evalkit metrics): {', '.join(METRICS)}."
    )
    return out, problems


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    current = SCHEMA.read_text(encoding="utf-8")
    new, problems = generate(json.loads(current))
    for p in problems:
        print(f"{SCHEMA}: {p}", file=sys.stderr)
    if problems:
        return 1
    if "--check" in argv:
        if render(new) != current:
            print(
                f"{SCHEMA} is not current with the registries: run `make schema`", file=sys.stderr
            )
            return 1
        return 0
    if render(new) != current:
        SCHEMA.write_text(render(new), encoding="utf-8")
        print(f"wrote {SCHEMA}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(SCHEMA.parent.parent))
    sys.exit(main(sys.argv[1:]))
