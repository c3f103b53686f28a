"""datakit: grow, curate and version training data.

    import datakit

    store = datakit.Store("data")                      # versioned datasets under data/
    store.write("seeds", records, "instruction")       # -> seeds@v1, validated, atomic
    datakit.run_step(store, "clean", "filter", "seeds", {"min_chars": 20})
    datakit.run("pipeline.yaml")                       # the data: section (`datakit run`)

``Store`` holds ``Version`` objects (``store.resolve("seeds@v1")``); ``OPS`` is the op registry
(what ``datakit ops`` lists). Every name here is imported on first use, so ``import
datakit`` costs nothing.
"""

from corekit._lazy import lazy_api

__all__ = ["OPS", "Store", "Version", "run", "run_step"]

__getattr__, __dir__ = lazy_api(
    __name__,
    {
        "Store": "datakit.store:DatasetStore",
        "Version": "datakit.store:Version",
        "OPS": "datakit.ops:OPS",
        "run_step": "datakit.ops.step:run_step",
        "run": "datakit.stage:run_data",
    },
)
