"""evalkit: score models or prediction files, write reports, gate CI on them.

    import evalkit

    items, aggregates = evalkit.score(rows, ["exact_match", "f1"])  # prediction rows
    result = evalkit.gate("runs/eval/tuned", "eval/baseline")  # paired tests
    evalkit.evaluate("pipeline.yaml")  # the eval: section, as `evalkit run`

``METRICS`` is the metric registry (``evalkit metrics``); ``GateSettings`` holds what the
gate allows (``max_drop``, ``alpha``, per-metric rules).
"""

from corekit._lazy import lazy_api

__all__ = ["METRICS", "GateSettings", "evaluate", "gate", "score"]

__getattr__, __dir__ = lazy_api(
    __name__,
    {
        "score": "evalkit.scoring:score",
        "METRICS": "evalkit.metrics:METRICS",
        "gate": "evalkit.gate:gate",
        "GateSettings": "evalkit.gate:GateSettings",
        "evaluate": "evalkit.stage:run_eval",
    },
)
