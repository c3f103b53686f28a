"""The Python API: each kit's public names, and the README's "From Python" example run as
a user would paste it into a notebook."""

from __future__ import annotations

import contextlib
import io
import re

import pytest

from tests.conftest import ROOT


def _readme_examples() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## From Python", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_the_readme_example_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DATAKIT_DATA_ROOT", raising=False)
    (tmp_path / "base").mkdir()
    (tmp_path / "seeds.jsonl").write_text('{"instruction": "Say hi.", "output": "Hi."}\n')
    (tmp_path / "pipeline.yaml").write_text(
        "data:\n  imports:\n    - {name: imported, source: seeds.jsonl}\n"
        "train:\n  base_model: base\n  stages:\n    - {name: sft, method: sft, dataset: seeds}\n"
    )
    out = io.StringIO()
    first, second = _readme_examples()
    with contextlib.redirect_stdout(out):
        scope: dict = {}
        exec(compile(first, "README.md:From Python", "exec"), scope)
        exec(compile(second, "README.md:From Python (stages)", "exec"), scope)
    lines = out.getvalue().splitlines()
    assert lines[2] == "['imported@v1'] ['sft']"
    # the too-short answer filtered, the exact duplicate (same answer, same words) dropped
    assert lines[0] == "clean@v1 {'too_short': 1} -> deduped@v1 {'duplicate': 1}"
    assert lines[1] == "0.5 [1.0, 0.5]"
    assert (tmp_path / "data" / "deduped" / "v1" / "records.jsonl").is_file()


@pytest.mark.parametrize("kit", ["corekit", "datakit", "trainkit", "evalkit"])
def test_every_public_name_resolves_and_is_documented(kit):
    import importlib

    mod = importlib.import_module(kit)
    assert sorted(mod.__all__) == dir(mod)
    for name in mod.__all__:
        assert getattr(mod, name) is not None
        assert re.search(rf"\b{name}\b", mod.__doc__), f"{kit}.{name} is not in its docstring"
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        mod.nope  # noqa: B018


def test_importing_a_kit_loads_none_of_its_modules():
    import subprocess
    import sys

    code = (
        "import sys, datakit, trainkit, evalkit, corekit; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('datakit', 'trainkit', 'evalkit', 'corekit')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['corekit', 'corekit._lazy', 'datakit', 'evalkit', 'trainkit']"
