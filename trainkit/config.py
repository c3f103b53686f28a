"""The ``train:`` section of ``pipeline.yaml``, resolved into runnable stages.

The schema check (all errors together, "did you mean") is datakit's; this module adds what
a schema cannot say: references between stages (``from``, ``reward_model``), the base model
resolved through ``models``, and defaults that depend on the method and the adapter.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from corekit.adapters import final_dir
from corekit.errors import ToolkitError
from corekit.models import resolve_model, resolve_path
from corekit.project import Project

from . import defaults


@dataclass
class Stage:
    name: str
    method: str
    dataset: str
    base_model: str  # resolved path or hub id; for `from` stages the earlier stage's output
    run_dir: Path
    adapter: dict[str, Any]
    quantization: dict[str, Any]
    args: dict[str, Any]
    params: dict[str, Any]
    early_stopping: dict[str, Any] | None
    datasets: list[tuple[str, float]] = field(default_factory=list)  # (ref, weight)
    eval_dataset: str | None = None
    eval_split: float = 0.0
    from_stage: str | None = None
    reward_model: str | None = None  # rl: resolved path (a stage's final dir or a directory)

    def resolved(self) -> dict[str, Any]:
        """Everything that decides the result, as written to the run's config.json."""
        return {
            "name": self.name,
            "method": self.method,
            "dataset": self.dataset,
            "eval_dataset": self.eval_dataset,
            "eval_split": self.eval_split,
            "base_model": self.base_model,
            "from": self.from_stage,
            "adapter": self.adapter,
            "quantization": self.quantization,
            "args": self.args,
            "params": self.params,
            "early_stopping": self.early_stopping,
            "reward_model": self.reward_model,
        }


@dataclass
class TrainPlan:
    project: Project
    output_dir: Path
    stages: list[Stage]
    models: list[str] = field(default_factory=list)  # names under models: the stages use

    @property
    def data_root(self) -> Path:
        return self.project.data_root


def plan(
    project: Project | str | Path,
    output_dir: str | Path | None = None,
    runs_root: str | Path | None = None,
    data_root: str | Path | None = None,
) -> TrainPlan:
    """Resolve every stage of ``project`` (a Project, or a config path loaded with the
    roots given here). Raises ToolkitError on any problem.

    ``output_dir`` overrides the project's (train.output_dir, else <runs_root>/train)."""
    project = Project.of(project, data_root, runs_root)
    out = Path(output_dir) if output_dir is not None else project.train_dir
    stages = resolve_stages(project.config, project.base, out)
    train = project.train
    refs = {train.get("base_model")} | {r.get("base_model") for r in train.get("stages", [])}
    refs |= {r.get("params", {}).get("reward_model") for r in train.get("stages", [])}
    used = [name for name in project.models if name in refs]
    return TrainPlan(project, out, stages, used)


def _settings(raw: dict[str, Any], base: Path) -> tuple[dict, dict, dict, dict, list[str]]:
    """A stage's adapter, quantization, args and method params with the defaults that
    depend on the method and adapter together, and what does not go together."""
    method = raw["method"]
    adapter = copy.deepcopy(raw["adapter"])
    quant = copy.deepcopy(raw["quantization"])
    args = copy.deepcopy(raw["args"])
    kind = adapter["type"]
    problems = []
    if kind == "qlora":
        quant["load_in_4bit"] = True
    elif quant.get("load_in_4bit") and kind == "full":
        problems.append("a 4-bit base cannot be fully fine-tuned; use adapter type qlora or lora")
    if method == "reward" and kind in ("prompt_tuning", "prefix_tuning"):
        problems.append(
            "a reward model needs its score head trained; use full, lora, dora or qlora"
        )
    args.setdefault("learning_rate", defaults.learning_rate(method, kind))
    if args.get("packing") is None:
        args["packing"] = defaults.packing_default(method, kind)
    elif args["packing"] and method != "sft":
        problems.append("args.packing applies to sft only")
    elif args["packing"] and kind not in defaults.PACKING_SAFE_ADAPTERS:
        problems.append(
            f"args.packing is unsafe with {kind} (virtual tokens are "
            "prepended to each row, so packed samples would share them)"
        )
    if kind == "prefix_tuning" and args["gradient_checkpointing"]:
        # The prefix lives in the KV cache, and transformers drops the cache under
        # gradient checkpointing: the attention mask then no longer fits the keys.
        problems.append("prefix_tuning cannot be combined with gradient_checkpointing")
    params = _method_params(method, copy.deepcopy(raw.get("params") or {}))
    problems += _args_problems(args, base)
    if raw.get("early_stopping") is not None and not (
        raw.get("eval_dataset") or raw.get("eval_split")
    ):
        problems.append("early_stopping needs eval_dataset or eval_split")
    if method == "rl" and params["max_completion_length"] >= args["max_length"]:
        problems.append(
            f"params.max_completion_length ({params['max_completion_length']}) "
            f"leaves no room for the prompt in args.max_length ({args['max_length']})"
        )
    return adapter, quant, args, params, problems


def _models(
    raw: dict[str, Any],
    params: dict[str, Any],
    seen: dict[str, Stage],
    cfg: dict[str, Any],
    base: Path,
) -> tuple[str, str | None, list[str]]:
    """(base model, reward model for rl, problems): ``from`` an earlier stage's output or
    the configured base; a reward model by stage name or model reference."""
    models = cfg.get("models", {})
    train = cfg.get("train") or {}
    problems = []
    base_model = resolve_model(raw.get("base_model") or train.get("base_model") or "", models, base)
    from_stage = raw.get("from")
    if from_stage is not None:
        if from_stage not in seen:
            known = ", ".join(seen) or "none before this one"
            problems.append(f"from {from_stage!r} is not an earlier stage ({known})")
        else:
            if seen[from_stage].method == "reward":
                problems.append(
                    f"from {from_stage!r} is a reward model, not a policy to train further"
                )
            base_model = str(final_dir(seen[from_stage].run_dir))
    if not base_model:
        problems.append("no model: set train.base_model or the stage's base_model")
    reward_model = None
    if raw["method"] == "rl":
        rm = params["reward_model"]
        if rm in seen:
            if seen[rm].method != "reward":
                problems.append(f"reward_model {rm!r} is a {seen[rm].method} stage")
            reward_model = str(final_dir(seen[rm].run_dir))
        else:
            reward_model = resolve_model(rm, models, base)
    return base_model, reward_model, problems


def resolve_stages(cfg: dict[str, Any], base: Path, out: Path) -> list[Stage]:
    """Every stage of the train section resolved, its defaults filled; one ToolkitError
    with every problem (each naming its stage)."""
    problems: list[str] = []
    seen: dict[str, Stage] = {}
    stages: list[Stage] = []
    for i, raw in enumerate((cfg.get("train") or {}).get("stages", [])):
        where = f"train.stages[{i}] ({raw['name']})"
        if raw["name"] in seen:
            problems.append(f"{where}: a stage named {raw['name']!r} already exists")
            continue
        adapter, quant, args, params, found = _settings(raw, base)
        base_model, reward_model, more = _models(raw, params, seen, cfg, base)
        problems += [f"{where}: {p}" for p in found + more]
        stage = Stage(
            name=raw["name"],
            method=raw["method"],
            dataset=raw["dataset"],
            datasets=stage_datasets(raw["dataset"]),
            base_model=base_model,
            run_dir=out / raw["name"],
            adapter=adapter,
            quantization=quant,
            args=args,
            params=params,
            early_stopping=raw.get("early_stopping"),
            eval_dataset=raw.get("eval_dataset"),
            eval_split=raw["eval_split"],
            from_stage=raw.get("from"),
            reward_model=reward_model,
        )
        seen[stage.name] = stage
        stages.append(stage)
    if problems:
        n = len(problems)
        raise ToolkitError(f"{n} problem{'s' if n > 1 else ''} in train:\n" + "\n".join(problems))
    return stages


def check_section(
    cfg: dict[str, Any], lines: dict[tuple, int], base: Path, full: bool = False
) -> list[tuple[int, str]]:
    """The train: section's problems beyond the schema, each at its stage's line, for
    ``datakit config check`` (registered as the ``train`` entry point of
    ``finetune_toolkit.config_checks``; only ``full``: the data commands do not need them);
    ``trainkit run`` makes the same checks in ``plan``."""
    if not full:
        return []
    out = _dataset_problems(cfg, lines, base)
    try:
        resolve_stages(cfg, base, base / "runs")
    except ToolkitError as e:
        for line in str(e).splitlines()[1:] or [str(e)]:
            i = line.split("]", 1)[0].removeprefix("train.stages[")
            out.append((lines.get(("train", "stages", int(i)), 0) if i.isdigit() else 0, line))
    return out


def _dataset_problems(
    cfg: dict[str, Any], lines: dict[tuple, int], base: Path
) -> list[tuple[int, str]]:
    """Training and eval datasets that no import, step or data-root dataset makes."""
    from datakit.config import dataset_names, unknown_dataset

    known = dataset_names(cfg, base)
    out = []
    for i, stage in enumerate((cfg.get("train") or {}).get("stages") or []):
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
                    out.append(unknown_dataset(ref, known, at, lines))
    return out


def stage_datasets(value: Any) -> list[tuple[str, float]]:
    """A stage's ``dataset``: one ref, or several refs each with a weight."""
    if isinstance(value, str):
        return [(value, 1.0)]
    return [(d["name"], float(d.get("weight", 1.0))) for d in value]


def _args_problems(args: dict[str, Any], base: Path) -> list[str]:
    """What the schema cannot check in a stage's args; ``chat_template`` becomes the
    template's text (read from its file), so its content is part of the stage's identity."""
    import importlib.util

    out = []
    for sink in args.get("report_to", []):
        if sink != "tensorboard" and importlib.util.find_spec(sink) is None:
            out.append(f"args.report_to: {sink} is not installed (pip install {sink})")
    template = args.get("chat_template")
    if template is not None:
        if "{{" not in template and "{%" not in template:
            path = resolve_path(base, template)
            if not path.is_file():
                return out + [f"args.chat_template: no such file {path}"]
            template = path.read_text(encoding="utf-8")
        import jinja2

        try:
            jinja2.Environment().parse(template)
        except jinja2.TemplateSyntaxError as e:
            out.append(
                f"args.chat_template: not a valid Jinja template (line {e.lineno}: {e.message})"
            )
        args["chat_template"] = template
    return out


def _method_params(method: str, params: dict[str, Any]) -> dict[str, Any]:
    """Fill the method's parameter defaults from the schema (method_<name>)."""
    from corekit.config import with_defaults
    from corekit.schemas import load_schema

    root = load_schema("pipeline")
    return with_defaults(params, root["definitions"][f"method_{method}"], root)
