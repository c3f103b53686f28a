"""Sizes a reader can hold in their head: no module over 500 lines, no function over 80
(of corekit, datakit, trainkit and evalkit; a long one is split along its concerns)."""

from __future__ import annotations

import ast

from tests.conftest import ROOT
from tests.corekit.test_imports import PACKAGES

MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80


def _sources():
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            yield path.relative_to(ROOT).as_posix(), path.read_text()


def test_no_module_is_over_500_lines():
    long = {p: n for p, src in _sources() if (n := len(src.splitlines())) > MAX_MODULE_LINES}
    assert long == {}


def test_no_function_is_over_80_lines():
    seen = {}
    for path, src in _sources():
        for node in ast.walk(ast.parse(src, path)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    seen[f"{path}:{node.name}"] = n
    assert seen == {}, "over 80 lines: split it along its concerns"
