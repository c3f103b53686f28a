"""``evalkit run``: the ``eval:`` section of pipeline.yaml. For every model (e.g. the base and
the tuned one, side by side, so a loss of general ability shows), predict every suite through
the shared engine, score it, and write one report per model, then the renderings and, when a
baseline is configured, the gate.

Layout of ``eval.out`` (default <runs_root>/eval):

    <model>/report.json                 schemas/eval_report.json
    <model>/<suite>.items.jsonl         per-item values (what the gate pairs)
    <model>/<suite>.predictions.jsonl   the model's outputs
    summary.md, report.html             base vs tuned side by side (+ gate, training curves)
    gate.xml                            JUnit, one test case per gated metric (with a baseline)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from corekit.errors import ToolkitError
from corekit.project import Project

from .suites import Suite


@dataclass
class EvalResult:
    out: Path
    reports: dict[str, Path] = field(default_factory=dict)
    written: list[Path] = field(default_factory=list)
    gate: Any = None  # evalkit.gate.GateResult, when a baseline was there
    improve: Any = None  # the gate of eval.gate.improve against another model of the run
    improve_over: str | None = None
    gated: str | None = None  # the label the gates judge (eval.gate.model)
    gate_failed: bool = False
    notes: list[str] = field(default_factory=list)


def model_ref(ref: str, project: Project) -> str:
    """A model reference of the eval section: ``train:STAGE`` (that trainkit stage's run
    directory), a name in ``models:``, or a path."""
    if ref.startswith("train:"):
        run = project.train_dir / ref.split(":", 1)[1]
        if not (run / "run.json").is_file():
            raise ToolkitError(f"eval.models: {ref}: no trainkit run at {run} (make train first)")
        return str(run)
    return project.model(ref)


def plan_suites(project: Project) -> list[Suite]:
    """The suites of the eval section, resolved (default: qa, format, safety)."""
    from .suites import resolve

    suites = []
    for entry in project.eval.get("suites") or ["qa", "format", "safety"]:
        suite = resolve(entry, project.data_root, project.base)
        if not suite.metrics:
            raise ToolkitError(f"eval.suites: {suite.name}: give its metrics")
        suites.append(suite)
    return suites


def chat_template_sha256(model_path: str) -> str | None:
    """The hash of the chat template the engine renders prompts with (None when the model
    directory has none or is not local)."""
    import hashlib
    import json

    p = Path(model_path)
    for name in ("chat_template.jinja", "chat_template.json"):
        if (p / name).is_file():
            return hashlib.sha256((p / name).read_bytes()).hexdigest()
    cfg = p / "tokenizer_config.json"
    if cfg.is_file():
        try:
            t = json.loads(cfg.read_text()).get("chat_template")
        except ValueError:
            return None
        if t:
            return hashlib.sha256(json.dumps(t, sort_keys=True).encode()).hexdigest()
    return None


def run_eval(
    project: Project | str | Path,
    runs_root: str | Path | None = None,
    data_root: str | Path | None = None,
    quiet: bool = False,
    curves: bool = True,
) -> EvalResult:
    """The eval section of ``project`` (a Project, or a config path loaded with the roots
    given here): every model on every suite, reports, the gates, the summary pages."""
    project = Project.of(project, data_root, runs_root)
    ev = project.eval
    if not ev.get("models"):
        raise ToolkitError(f"{project.path}: eval.models: no model to evaluate")
    out = project.eval_dir
    if ev["engine"] not in project.engines:
        raise ToolkitError(f"{project.path}: eval.engine: no engine named {ev['engine']!r}")
    from .gate import gate_settings

    settings = gate_settings(project.gate)  # a bad gate section fails before any work
    res = EvalResult(out)
    suites = plan_suites(project)
    judge = _judge(project, "judge", quiet)
    refusal_judge = _judge(project, "refusal_judge", quiet)
    reports: dict[str, dict[str, Any]] = {}
    from corekit.engines.pool import EnginePool

    # One pool for the models, one after another: a fine-tune of the model before it is
    # loaded into the running engine (weights only) instead of starting a second one.
    pool = EnginePool(project.cache_dir, quiet=quiet)
    try:
        served, lora_bases = _served_models(project)
        for label in ev["models"]:
            reports[label] = _eval_model(
                label, served[label], lora_bases, project, suites, (judge, refusal_judge), pool
            )
            res.reports[label] = out / label / "report.json"
            res.written.append(out / label / "report.json")
    finally:
        pool.close()
        for j in (judge, refusal_judge):
            if j is not None:
                j[1].close()
    _gate(res, ev, settings, project.base, out)
    _render(res, reports, project, curves)
    return res


def _served_models(
    project: Project,
) -> tuple[dict[str, tuple[str, dict[str, Any]]], dict[str, int]]:
    """label -> (the model directory the engine serves, what it is), and for
    ``adapters: lora`` on vllm the base models that serve a LoRA adapter -> the LoRA slot
    rank their engine needs (so the base model's own engine serves its adapters too)."""
    import json

    from .predict import model_dir

    ev = project.eval
    spec, _ = project.engines[ev["engine"]]
    mode = ev["adapters"] if spec.backend == "vllm" else "merge"
    served = {
        label: model_dir(model_ref(ref, project), project.eval_dir / "models", mode)
        for label, ref in ev["models"].items()
    }
    lora_bases: dict[str, int] = {}
    for path, info in served.values():
        if info.get("lora"):
            from corekit.engines.vllm_backend import lora_rank_slot

            rank = json.loads((Path(info["lora"]) / "adapter_config.json").read_text())["r"]
            lora_bases[path] = max(lora_bases.get(path, 0), lora_rank_slot(rank))
    return served, lora_bases


def _model_engine(
    label: str,
    served: tuple[str, dict[str, Any]],
    lora_bases: dict[str, int],
    engine: tuple[Any, int],
    pool: Any,
) -> tuple[Any, Any]:
    """(spec, engine) serving one model: its own engine, or the running one with the model's
    weights swapped in or its LoRA adapter served per request (``info["engine_start"]``
    says which, once its answers are in)."""
    import dataclasses

    path, info = served
    configured, batch_size = engine
    options = dict(configured.options)
    if info.get("lora"):
        options["lora_adapter"] = info["lora"]
    if path in lora_bases:  # the base of a LoRA served per request: one engine for both
        options.update(enable_lora=True, max_lora_rank=lora_bases[path])
    spec = dataclasses.replace(configured, model=path, options=options)
    started = start_engine(pool, spec, batch_size, f"eval.models.{label}", swap=True)
    info["engine_start"] = pool.last  # final once the model's answers are in: _engine_start
    return spec, started


def _engine_start(how: str, engine: Any, lora: bool) -> str:
    """How the model's answers were served, for its report: by an engine started for it,
    by the running one (its weights swapped in, or its adapter per request), or by no
    engine at all (every answer was in the request cache: a deferred engine never starts)."""
    if not engine.started:
        return "none: every answer was in the request cache"
    if how == "swapped":
        return "adapter per request" if lora else "weights swapped in"
    return "running" if how == "running" else "started"


def _eval_model(
    label: str,
    served: tuple[str, dict[str, Any]],
    lora_bases: dict[str, int],
    project: Project,
    suites: list[Suite],
    judges: tuple[Any, Any],
    pool: Any,
) -> dict[str, Any]:
    """Predict, judge and score every suite with one model; its report, written."""
    import orjson

    from corekit.runs import atomic_write_bytes, atomic_write_json

    from .predict import predict
    from .scoring import make_report, score, suite_entry, write_scored

    judge, refusal_judge = judges
    path, info = served
    ev = project.eval
    model_out = project.eval_dir / label
    try:
        model_out.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # a runs root the user named that cannot hold directories
        raise ToolkitError(f"{model_out}: cannot create: {e.strerror or e}") from None
    spec, engine = _model_engine(label, served, lora_bases, project.engines[ev["engine"]], pool)
    temperature, seed = ev["temperature"], ev.get("seed", project.config["seed"])
    entries = []
    for suite in suites:
        preds = predict(
            engine,
            suite.items,
            max_tokens=suite.max_tokens,
            temperature=temperature,
            seed=seed,
            model_name=label,
            desc=f"{label}: {suite.name}",
        )
        metrics = suite.metrics
        if judge is not None:
            _judge_predictions(
                judge, preds, f"{label}: {suite.name} (judge)", ev.get("judge_rubric")
            )
            metrics = [*metrics, "judge_quality"] if "judge_quality" not in metrics else metrics
        if refusal_judge is not None:
            _judge_refusals(refusal_judge, preds, f"{label}: {suite.name} (refusal judge)")
        pf = model_out / f"{suite.name}.predictions.jsonl"
        atomic_write_bytes(pf, b"".join(orjson.dumps(p) + b"\n" for p in preds))
        items_scored, aggregates = score(preds, metrics, suite.params, suite.truncated)
        fname = write_scored(model_out, suite.name, items_scored)
        entry = suite_entry(
            suite.name, aggregates, fname, suite.source, items=items_scored,
            generation={"max_tokens": suite.max_tokens, "truncated": suite.truncated},
        )  # fmt: skip
        entry["predictions_file"] = pf.name
        entries.append(entry)
    info["engine_start"] = _engine_start(info["engine_start"], engine, bool(info.get("lora")))
    provenance = {
        "generation": {
            "temperature": temperature,
            "seed": seed,
            "system_prompt": None,
            "chat_template_sha256": chat_template_sha256(path),
        },
        "refusal_judge": ev.get("refusal_judge"),
    }
    if spec.ray is not None:  # executor: ray, as a data version's manifest records it
        from corekit.engines.ray_backend import cluster_info

        provenance["executor"] = cluster_info()
    report = make_report(
        entries, {**info, "name": label, "engine": spec.backend}, provenance=provenance
    )
    atomic_write_json(model_out / "report.json", report)
    return report


def start_engine(pool: Any, spec: Any, batch_size: int, where: str, swap: bool = False) -> Any:
    """The pool's engine for ``spec``. A spec the backend refuses before starting (a model
    directory that does not exist, an unknown option) is bad input (ToolkitError, exit 2);
    an engine that fails while starting is the tool failing (ToolFailure, exit 3), not a
    verdict on the model."""
    from corekit.engines import start_failure

    try:
        return pool.get(spec, batch_size=batch_size, where=where, swap=swap)
    except ToolkitError:
        raise
    except Exception as e:  # noqa: BLE001 - whatever the backend raised, one line
        raise start_failure(where, spec.backend, e) from e


def _gate(res: EvalResult, ev: dict[str, Any], settings: Any, base: Path, out: Path) -> None:
    from corekit.models import resolve_path
    from corekit.runs import atomic_write_bytes

    from .gate import gate, improve_settings
    from .render import junit

    which = settings.model or list(ev["models"])[-1]
    if which not in res.reports:
        raise ToolkitError(
            f"eval.gate.model: {which!r} is not one of eval.models ({', '.join(res.reports)})"
        )
    res.gated = which
    if settings.improve:
        over = settings.improve_over or next(iter(ev["models"]))
        if over not in res.reports or over == which:
            raise ToolkitError(
                f"eval.gate.improve_over: {over!r} must be another label of eval.models "
                f"({', '.join(res.reports)}) than the gated {which!r}"
            )
        res.improve_over = over
        res.improve = gate(res.reports[which], res.reports[over], improve_settings(settings))
        res.gate_failed = res.gate_failed or res.improve.failed
        atomic_write_bytes(out / "gate-improve.xml", junit(res.improve).encode())
        res.written.append(out / "gate-improve.xml")
    if not settings.baseline:
        return
    baseline = resolve_path(base, settings.baseline)
    if (baseline / "report.json").is_file() or baseline.is_file():
        res.gate = gate(res.reports[which], baseline, settings)
        res.gate_failed = res.gate_failed or res.gate.failed
        atomic_write_bytes(out / "gate.xml", junit(res.gate).encode())
        res.written.append(out / "gate.xml")
    else:
        res.notes.append(
            f"gate skipped: no baseline at {baseline} "
            f"(`evalkit baseline {out / which} -o {baseline}` blesses this run)"
        )


def _render(
    res: EvalResult, reports: dict[str, dict[str, Any]], project: Project, curves: bool
) -> None:
    from corekit.runs import atomic_write_bytes

    from .itemview import collect, markdown_changes
    from .render import html_report, markdown

    out = project.eval_dir
    labels = list(reports)
    cur = res.gated or labels[-1]
    ref = res.improve_over or next((x for x in labels if x != cur), None)
    items = collect(reports, out, ref, cur)
    md = markdown(reports, res.gate, res.improve, res.improve_over)
    if ref is not None:
        md += "\n".join(markdown_changes(items, ref, cur)) + "\n"
    atomic_write_bytes(out / "summary.md", md.encode())
    curve_files = {}
    if curves:
        for st in project.train.get("stages") or []:
            p = project.train_dir / st["name"] / "curves.png"
            if p.is_file():
                curve_files[st["name"]] = p
    page = html_report(
        reports, curve_files, res.gate, res.improve, res.improve_over, (items, ref, cur)
    )
    atomic_write_bytes(out / "report.html", page.encode())
    res.written += [out / "summary.md", out / "report.html"]


def _judge(project: Project, key: str, quiet: bool) -> Any:
    """(engine, pool) of eval.judge or eval.refusal_judge, built once for the whole run;
    None without one."""
    name = project.eval.get(key)
    if not name:
        return None
    from corekit.engines.pool import EnginePool

    if name not in project.engines:
        raise ToolkitError(f"eval.{key}: no engine named {name!r}")
    spec, batch_size = project.engines[name]
    pool = EnginePool(project.cache_dir, quiet=quiet)
    return start_engine(pool, spec, batch_size, f"eval.{key}"), pool


def _judge_predictions(
    judge: Any, preds: list[dict[str, Any]], desc: str, rubric: dict[str, str] | None = None
) -> None:
    """The judge's rubric scores on every (prompt, output): judge_quality per prediction."""
    from corekit.judging import score as judge_score

    engine, _pool = judge
    results = judge_score(
        [(p["prompt"], p["output"]) for p in preds],
        engine,
        desc=desc,
        rubric=rubric,
    )
    for p, r in zip(preds, results, strict=True):
        if "quality" in r:
            p["judge_quality"] = r["quality"]
            p.setdefault("meta", {})["judge"] = {k: r[k] for k in ("scores", "quality") if k in r}


def _judge_refusals(judge: Any, preds: list[dict[str, Any]], desc: str) -> None:
    """eval.refusal_judge: the judge engine labels every safety item's output with the
    refusal rubric (full, partial or none, constrained to those words); the label is kept
    on the prediction as ``refusal_label`` and the refusal metrics read it. An output the
    engine could not judge keeps the detector's label."""
    from corekit.judging import refusal_requests

    from .metrics import expected_behaviour

    engine, _pool = judge
    todo = [p for p in preds if expected_behaviour(p) and not p.get("error")]
    if not todo:
        return
    results = engine.generate(
        refusal_requests([(p["prompt"], p["output"]) for p in todo]), desc=desc
    )
    for p, r in zip(todo, results, strict=True):
        label = r.completions[0].text.strip().lower() if r.ok and r.completions else ""
        if label in ("full", "partial", "none"):
            p["refusal_label"] = label
