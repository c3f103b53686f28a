"""The project's import rules, checked on every module's source (imports inside functions
included, since lazy imports are imports too). The layers, bottom up:

    corekit    errors, run plumbing, CLI pieces, engines and their pool, models and
               adapters, embeddings, the judge, the refusal detector, text measures
    datakit    records, schemas, validation, the store, formats, ops, review, the data stage
    trainkit   evalkit   (side by side)

1. no import cycle between modules;
2. corekit imports none of the kits;
3. no datakit module imports trainkit or evalkit (they build on datakit, not the reverse);
4. trainkit and evalkit use datakit's data layer only, never its ops, data stage, CLI or
   review web app;
5. evalkit imports no trainkit module (merging an adapter is corekit.adapters);
6. no module imports a command-line entry module (the console scripts of pyproject.toml);
   only the CLIs' own `__main__` may.
"""

from __future__ import annotations

import ast
from pathlib import Path

import tomllib

from tests.conftest import ROOT

PACKAGES = ("corekit", "datakit", "trainkit", "evalkit")

# datakit modules that are not its data layer: the kits above it never import these.
NOT_DATA_LAYER = (
    "datakit.ops",
    "datakit.stage",
    "datakit.cli",
    "datakit.review.app",
    "datakit.review.site",
)


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
            while t and t not in modules:  # `import datakit.ops.step as r` etc.
                t = t.rpartition(".")[0]
            if t and t != name:
                out.add(t)
    return out


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def test_the_walk_sees_the_project():
    g = _graph()
    assert "datakit.ops.step" in g and "datakit.store" in g["datakit.ops.step"]
    assert "datakit.trainer_rows" in g["trainkit.data"]
    assert "datakit.records" in g["datakit.trainer_rows"]
    assert (
        "corekit.engines" in g["corekit.engines.pool"] and "corekit.errors" in g["corekit.models"]
    )


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


def _breaches(frm: str, to) -> list[tuple[str, str]]:
    return sorted(
        (a, b) for a, deps in _graph().items() if a.startswith(frm) for b in deps if to(b)
    )


def test_corekit_imports_none_of_the_kits():
    assert _breaches("corekit", lambda b: not b.startswith("corekit")) == []


def test_trainkit_and_evalkit_use_only_datakits_data_layer():
    def not_data(b: str) -> bool:
        return any(b == m or b.startswith(m + ".") or b.startswith(m + "_") for m in NOT_DATA_LAYER)

    assert _breaches("trainkit", not_data) + _breaches("evalkit", not_data) == []


def test_evalkit_imports_no_trainkit_module():
    assert _breaches("evalkit", lambda b: b.startswith("trainkit")) == []


def test_no_module_imports_a_cli_entry_module():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    entries = {target.split(":")[0] for target in scripts.values()}
    assert entries == {"datakit.cli", "trainkit.cli", "evalkit.cli"}
    g = _graph()
    bad = [
        (a, b) for a, deps in g.items() if not a.endswith("__main__") for b in deps if b in entries
    ]
    assert bad == []
