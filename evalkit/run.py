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

from datakit.errors import DatakitError


@dataclass
class EvalResult:
    out: Path
    reports: dict[str, Path] = field(default_factory=dict)
    written: list[Path] = field(default_factory=list)
    gate_rows: list[Any] | None = None
    gate_failed: bool = False
    notes: list[str] = field(default_factory=list)


def model_ref(ref: str, cfg: dict[str, Any], base: Path, runs: Path) -> str:
    """A model reference of the eval section: ``train:STAGE`` (that trainkit stage's run
    directory), a name in ``models:``, or a path."""
    from datakit.models import resolve_model, resolve_path

    if ref.startswith("train:"):
        train = cfg.get("train") or {}
        out = resolve_path(base, train["output_dir"]) if train.get("output_dir") else runs / "train"
        run = out / ref.split(":", 1)[1]
        if not (run / "run.json").is_file():
            raise DatakitError(f"eval.models: {ref}: no trainkit run at {run} (make train first)")
        return str(run)
    return resolve_model(ref, cfg.get("models", {}), base)


def run_eval(
    config_path: str | Path,
    runs_root: str | Path | None = None,
    data_root: str | Path | None = None,
    quiet: bool = False,
    curves: bool = True,
) -> EvalResult:
    from datakit.config import load_config
    from datakit.engines import EngineSpec
    from datakit.models import resolve_path
    from datakit.ops.runner import EnginePool
    from datakit.runs import atomic_write_bytes

    from .gate import failed, gate
    from .predict import model_dir, predict
    from .render import html_report, junit, markdown
    from .scoring import make_report, score, suite_entry, write_scored
    from .suites import SUITES, load_items

    config_path = Path(config_path)
    cfg = load_config(config_path)
    base = config_path.resolve().parent
    ev = cfg.get("eval") or {}
    if not ev.get("models"):
        raise DatakitError(f"{config_path}: eval.models: no model to evaluate")
    runs = Path(runs_root) if runs_root else resolve_path(base, cfg["runs_root"])
    data = Path(data_root) if data_root else resolve_path(base, cfg["data_root"])
    out = resolve_path(base, ev["out"]) if ev.get("out") else runs / "eval"
    engine_cfg = (cfg.get("engines") or {}).get(ev["engine"])
    if engine_cfg is None:
        raise DatakitError(f"{config_path}: eval.engine: no engine named {ev['engine']!r}")
    res = EvalResult(out)
    suites = []
    for s in ev.get("suites") or ["qa", "format", "safety"]:
        s = {"name": s} if isinstance(s, str) else dict(s)
        sdef = SUITES.get(s.get("suite", s["name"]))
        src = s.get("dataset") or s.get("path") or (sdef.path if sdef else None)
        if src is None:
            raise DatakitError(f"eval.suites: {s['name']}: needs a dataset or a path")
        if s.get("path"):
            src = str(resolve_path(base, s["path"]))
        fmt = s.get("format") or (sdef.format if sdef and not s.get("dataset") else "jsonl")
        items = load_items(src, fmt, str(data))
        metrics = s.get("metrics") or (list(sdef.metrics) if sdef else None)
        if not metrics:
            raise DatakitError(f"eval.suites: {s['name']}: give its metrics")
        suites.append(
            (
                s["name"],
                items,
                str(src),
                metrics,
                s.get("max_tokens") or (sdef.max_tokens if sdef else 128),
                s.get("params") or {},
            )
        )
    judge = _judge(cfg, ev, base, runs, quiet)
    reports: dict[str, dict[str, Any]] = {}
    for label, ref in ev["models"].items():
        resolved = model_ref(ref, cfg, base, runs)
        path, info = model_dir(resolved, out / "models")
        spec = EngineSpec(engine_cfg["backend"], path, dict(engine_cfg.get("options") or {}))
        pool = EnginePool(runs / "cache", quiet=quiet)
        model_out = out / label
        model_out.mkdir(parents=True, exist_ok=True)
        entries = []
        try:
            engine = pool.get(
                spec, batch_size=engine_cfg.get("batch_size", 256), where=f"eval.models.{label}"
            )
            for name, items, src, metrics, max_tokens, params in suites:
                preds = predict(
                    engine,
                    items,
                    max_tokens=max_tokens,
                    temperature=ev.get("temperature", 0.0),
                    seed=ev.get("seed", cfg["seed"]),
                    model_name=label,
                    desc=f"{label}: {name}",
                )
                import orjson

                if judge is not None:
                    _judge_predictions(judge, preds, f"{label}: {name} (judge)")
                    metrics = (
                        [*metrics, "judge_quality"] if "judge_quality" not in metrics else metrics
                    )
                pf = model_out / f"{name}.predictions.jsonl"
                atomic_write_bytes(pf, b"".join(orjson.dumps(p) + b"\n" for p in preds))
                items_scored, aggregates = score(preds, metrics, params)
                fname = write_scored(model_out, name, items_scored)
                entry = suite_entry(name, aggregates, fname, src)
                entry["predictions_file"] = pf.name
                entries.append(entry)
        finally:
            pool.close()
        report = make_report(entries, {**info, "name": label, "engine": spec.backend})
        from datakit.runs import atomic_write_json

        atomic_write_json(model_out / "report.json", report)
        reports[label] = report
        res.reports[label] = model_out / "report.json"
        res.written.append(model_out / "report.json")
    if judge is not None:
        judge[1].close()
    g = ev.get("gate") or {}
    if g.get("baseline"):
        baseline = resolve_path(base, g["baseline"])
        which = g.get("model") or list(ev["models"])[-1]
        if (baseline / "report.json").is_file() or baseline.is_file():
            res.gate_rows = gate(
                res.reports[which],
                baseline,
                g.get("rules") or {},
                alpha=g.get("alpha", 0.05),
                default_max_drop=g.get("max_drop", 0.02),
            )
            res.gate_failed = failed(res.gate_rows)
            atomic_write_bytes(out / "gate.xml", junit(res.gate_rows).encode())
            res.written.append(out / "gate.xml")
        else:
            res.notes.append(
                f"gate skipped: no baseline at {baseline} "
                f"(`evalkit baseline {out / which} -o {baseline}` blesses this run)"
            )
    atomic_write_bytes(out / "summary.md", markdown(reports, res.gate_rows).encode())
    curve_files = {}
    if curves:
        train = cfg.get("train") or {}
        tout = (
            resolve_path(base, train["output_dir"]) if train.get("output_dir") else runs / "train"
        )
        for st in train.get("stages") or []:
            p = tout / st["name"] / "curves.png"
            if p.is_file():
                curve_files[st["name"]] = p
    atomic_write_bytes(
        out / "report.html", html_report(reports, curve_files, res.gate_rows).encode()
    )
    res.written += [out / "summary.md", out / "report.html"]
    return res


def _judge(cfg: dict[str, Any], ev: dict[str, Any], base: Path, runs: Path, quiet: bool) -> Any:
    """(engine, pool) of eval.judge, built once for the whole run; None without one."""
    if not ev.get("judge"):
        return None
    from datakit.engines import EngineSpec
    from datakit.models import resolve_model
    from datakit.ops.runner import EnginePool

    e = cfg["engines"][ev["judge"]]
    model = resolve_model(e["model"], cfg.get("models", {}), base, served=e["backend"] == "openai")
    pool = EnginePool(runs / "cache", quiet=quiet)
    spec = EngineSpec(e["backend"], model, dict(e.get("options") or {}))
    return pool.get(spec, batch_size=e.get("batch_size", 256), where="eval.judge"), pool


def _judge_predictions(judge: Any, preds: list[dict[str, Any]], desc: str) -> None:
    """The judge's rubric scores on every (prompt, output): judge_quality per prediction."""
    from datakit.ops import OpContext
    from datakit.ops.judge import score as judge_score

    engine, _pool = judge
    results = judge_score(
        [(p["prompt"], p["output"]) for p in preds], OpContext(engines={"judge": engine}), desc=desc
    )
    for p, r in zip(preds, results, strict=True):
        if "quality" in r:
            p["judge_quality"] = r["quality"]
            p.setdefault("meta", {})["judge"] = {k: r[k] for k in ("scores", "quality") if k in r}
