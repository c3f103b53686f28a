"""The project's import rules, checked on every module's source (imports inside functions
included, since lazy imports are imports too):

1. no import cycle between modules;
2. no datakit module imports trainkit or evalkit (they build on datakit, not the reverse);
3. no module imports a command-line entry module (the console scripts of pyproject.toml);
   only the CLIs' own `__main__` may.
"""

from __future__ import annotations

import ast
from pathlib import Path

import tomllib

from tests.conftest import ROOT

PACKAGES = ("datakit", "trainkit", "evalkit")


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Project modules that ``name`` imports (resolving relative imports and submodules)."""
    is_pkg = path.name == "__init__.py"
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base[: len(base) - node.level + (1 if is_pkg else 0)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            for a in node.names:
                sub = f"{mod}.{a.name}"
                targets.append(sub if sub in modules else mod)
        for t in targets:
            while t and t not in modules:  # `import datakit.ops.runner as r` etc.
                t = t.rpartition(".")[0]
            if t and t != name:
                out.add(t)
    return out


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def test_the_walk_sees_the_project():
    g = _graph()
    assert "datakit.ops.runner" in g and "datakit.store" in g["datakit.ops.runner"]
    assert "datakit.trainer_rows" in g["trainkit.data"]
    assert "datakit.records" in g["datakit.trainer_rows"]


def test_no_import_cycles():
    g = _graph()
    state: dict[str, int] = {}  # 1 visiting, 2 done
    stack: list[str] = []

    def visit(n: str) -> None:
        state[n] = 1
        stack.append(n)
        for m in sorted(g[n]):
            if state.get(m) == 1:
                cycle = stack[stack.index(m) :] + [m]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if m not in state:
                visit(m)
        stack.pop()
        state[n] = 2

    for n in sorted(g):
        if n not in state:
            visit(n)


def test_datakit_imports_neither_trainkit_nor_evalkit():
    g = _graph()
    bad = [
        (a, b)
        for a, deps in g.items()
        if a.startswith("datakit")
        for b in deps
        if b.split(".")[0] in ("trainkit", "evalkit")
    ]
    assert bad == []


def test_no_module_imports_a_cli_entry_module():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    entries = {target.split(":")[0] for target in scripts.values()}
    assert entries == {"datakit.cli", "trainkit.cli", "evalkit.cli"}
    g = _graph()
    bad = [
        (a, b) for a, deps in g.items() if not a.endswith("__main__") for b in deps if b in entries
    ]
    assert bad == []
