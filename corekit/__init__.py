"""corekit: what datakit, trainkit and evalkit share (errors, run plumbing, engines, models
and adapters, embeddings, the judge, the refusal detector). It imports none of the kits.

    from corekit import Project, ToolkitError, build_engine, EngineSpec, Request

    project = Project.load("pipeline.yaml")   # checked once; roots, engines, sections typed

``ToolkitError`` is bad input (the CLIs exit 1), ``ToolFailure`` the tool's own failure (3);
``merge`` folds a trained adapter into its base.
"""

from ._lazy import lazy_api

__all__ = [
    "EngineSpec",
    "Project",
    "Request",
    "ToolFailure",
    "ToolkitError",
    "build_engine",
    "merge",
]

__getattr__, __dir__ = lazy_api(
    __name__,
    {
        "Project": "corekit.project:Project",
        "ToolkitError": "corekit.errors:ToolkitError",
        "ToolFailure": "corekit.errors:ToolFailure",
        "EngineSpec": "corekit.engines:EngineSpec",
        "Request": "corekit.engines:Request",
        "build_engine": "corekit.engines:build_engine",
        "merge": "corekit.adapters:merge",
    },
)
