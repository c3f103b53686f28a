"""A package's public names, imported on first use (PEP 562), so that importing a kit
stays instant (``datakit --help``) while ``datakit.Store`` still just works."""

from __future__ import annotations

import importlib
from typing import Any


def lazy_api(package: str, names: dict[str, str]) -> tuple[Any, Any]:
    """(``__getattr__``, ``__dir__``) for a package whose public names live in submodules:
    ``names`` maps each to "module:attribute"."""

    def getattr_(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module, _, attr = names[name].partition(":")
        return getattr(importlib.import_module(module), attr)

    def dir_() -> list[str]:
        return sorted(names)

    return getattr_, dir_
