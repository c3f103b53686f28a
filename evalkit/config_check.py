"""The eval: section's problems beyond the schema, for ``datakit config check`` (registered
as the ``eval`` entry point of ``finetune_toolkit.config_checks``): suites that do not
exist, suite files and datasets nothing provides, metrics evalkit does not have, models
that are neither named, nor a directory, nor an earlier trainkit stage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from corekit.config import key_path
from corekit.errors import did_you_mean
from datakit.config import dataset_names


def check_section(
    cfg: dict[str, Any], lines: dict[tuple, int], base: Path, full: bool = False
) -> list[tuple[int, str]]:
    if not full:
        return []  # `evalkit run` makes these checks as it plans; the data commands need none
    from corekit.errors import ToolkitError
    from corekit.models import check_model, resolve_model, resolve_path

    from .metrics import METRICS
    from .suites import SUITES

    ev = cfg.get("eval") or {}
    out: list[tuple[int, str]] = []

    def add(at: tuple, msg: str) -> None:
        out.append((lines.get(at, lines.get(at[:-1], 0)), f"{key_path(at)}: {msg}"))

    datasets = dataset_names(cfg, base)
    for i, s in enumerate(ev.get("suites") or []):
        at = ("eval", "suites", i)
        entry = {"name": s} if isinstance(s, str) else s
        builtin = entry.get("suite", entry["name"] if isinstance(s, str) else None)
        if builtin is not None and builtin not in SUITES:
            add(at if isinstance(s, str) else at + ("suite",),
                f"no built-in suite {builtin!r}" + did_you_mean(builtin, SUITES, "suites"))  # fmt: skip
        if entry.get("path") and not resolve_path(base, entry["path"]).is_file():
            add(at + ("path",), f"no such file {resolve_path(base, entry['path'])}")
        ds = entry.get("dataset")
        if ds and ds.split("@", 1)[0] not in datasets:
            add(at + ("dataset",), f"no dataset {ds.split('@', 1)[0]!r}"
                + did_you_mean(ds, datasets, "datasets"))  # fmt: skip
        for k, m in enumerate(entry.get("metrics") or []):
            if m not in METRICS:
                add(
                    at + ("metrics", k),
                    f"unknown metric {m!r}" + did_you_mean(m, METRICS, "metrics"),
                )
    stages = [s.get("name") for s in (cfg.get("train") or {}).get("stages") or []]
    models = cfg.get("models") or {}
    for label, ref in (ev.get("models") or {}).items():
        at = ("eval", "models", label)
        if not isinstance(ref, str):
            continue
        if ref.startswith("train:"):
            stage = ref.split(":", 1)[1]
            if stage not in stages:
                add(at, f"{ref}: no trainkit stage {stage!r}"
                    + did_you_mean(stage, stages, "stages") if stages else f"{ref}: no train: section")  # fmt: skip
        elif ref not in models:
            try:
                check_model(resolve_model(ref, models, base), key_path(at))
            except ToolkitError:
                add(at, f"{ref!r} is neither a name in models, a model directory, nor "
                    "train:STAGE" + (did_you_mean(ref, models, "models") if models else ""))  # fmt: skip
    gate = ev.get("gate") or {}
    if gate.get("model") and ev.get("models") and gate["model"] not in ev["models"]:
        add(("eval", "gate", "model"), f"{gate['model']!r} is not a label of eval.models"
            + did_you_mean(gate["model"], ev["models"], "labels"))  # fmt: skip
    for key in ("rules", "improve"):
        for rule in gate.get(key) or {}:
            metric = rule.rsplit("/", 1)[-1]
            if metric not in METRICS:
                add(("eval", "gate", key, rule),
                    f"unknown metric {metric!r}" + did_you_mean(metric, METRICS, "metrics"))  # fmt: skip
    over = gate.get("improve_over")
    if over and ev.get("models") and over not in ev["models"]:
        add(("eval", "gate", "improve_over"), f"{over!r} is not a label of eval.models"
            + did_you_mean(over, ev["models"], "labels"))  # fmt: skip
    return out
