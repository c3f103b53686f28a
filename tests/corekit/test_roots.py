"""DATAKIT_DATA_ROOT and DATAKIT_RUNS_ROOT are honoured by every command that reads or
writes datasets or runs, `datakit run` and `trainkit run` included."""

import json

import click
import pytest

from datakit.cli import cli as datakit
from tests.conftest import ROOT, write_jsonl
from trainkit.cli import cli as trainkit


def _commands(group, prefix=()):
    for name, cmd in group.commands.items():
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, prefix + (name,))
        else:
            yield prefix + (name,), cmd


@pytest.mark.parametrize("group", [datakit, trainkit], ids=["datakit", "trainkit"])
def test_every_root_option_reads_its_environment_variable(group):
    seen = 0
    for path, cmd in _commands(group):
        for p in cmd.params:
            if p.name == "data_root":
                assert p.envvar == "DATAKIT_DATA_ROOT", path
                seen += 1
            if p.name == "runs_root":
                assert p.envvar == "DATAKIT_RUNS_ROOT", path
    assert seen  # the walk found the options


def test_datakit_run_writes_under_the_environment_roots(tmp_path, monkeypatch):
    from click.testing import CliRunner

    write_jsonl(tmp_path / "s.jsonl", [{"instruction": "Say hi.", "output": "hi"}])
    (tmp_path / "p.yaml").write_text(
        "data_root: cfg-data\nruns_root: cfg-runs\n"
        "data:\n  imports:\n    - {name: seeds, source: s.jsonl}\n"
    )
    monkeypatch.setenv("DATAKIT_DATA_ROOT", str(tmp_path / "env-data"))
    res = CliRunner().invoke(datakit, ["run", str(tmp_path / "p.yaml"), "--json"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "env-data" / "seeds" / "v1" / "records.jsonl").is_file()
    assert not (tmp_path / "cfg-data").exists()
    # ... and the other commands read the same root.
    res = CliRunner().invoke(datakit, ["ls", "--json"])
    assert [r["name"] for r in json.loads(res.output)] == ["seeds"]


def test_trainkit_run_reads_the_environment_roots(tmp_path, monkeypatch):
    from click.testing import CliRunner

    (tmp_path / "p.yaml").write_text(
        f"data_root: cfg-data\ntrain:\n  base_model: {ROOT}\n"
        "  stages:\n    - {name: s, method: sft, dataset: nothing-here}\n"
    )
    monkeypatch.setenv("DATAKIT_DATA_ROOT", str(tmp_path / "env-data"))
    monkeypatch.setenv("DATAKIT_RUNS_ROOT", str(tmp_path / "env-runs"))
    res = CliRunner().invoke(trainkit, ["run", str(tmp_path / "p.yaml")])
    assert res.exit_code == 1
    assert (
        f"no dataset named 'nothing-here'; {tmp_path / 'env-data'} holds no datasets" in res.output
    )
    from trainkit.config import plan

    p = plan(tmp_path / "p.yaml", runs_root=tmp_path / "env-runs")
    assert p.stages[0].run_dir == tmp_path / "env-runs" / "train" / "s"


def test_project_roots_take_the_argument_then_the_environment_then_the_config(
    tmp_path, monkeypatch
):
    """One place applies the overrides: Project.load, which every stage and command uses."""
    from corekit.project import Project

    (tmp_path / "p.yaml").write_text("data_root: cfg-data\n")
    monkeypatch.delenv("DATAKIT_DATA_ROOT", raising=False)
    monkeypatch.delenv("DATAKIT_RUNS_ROOT", raising=False)
    p = Project.load(tmp_path / "p.yaml")
    # the config's value, relative to the config; the other root is the schema's default
    assert (p.data_root, p.runs_root) == (tmp_path / "cfg-data", tmp_path / "runs")
    monkeypatch.setenv("DATAKIT_DATA_ROOT", str(tmp_path / "env-data"))
    assert Project.load(tmp_path / "p.yaml").data_root == tmp_path / "env-data"
    flag = Project.load(tmp_path / "p.yaml", data_root=tmp_path / "flag-data")
    assert flag.data_root == tmp_path / "flag-data"
    # a loaded project given to a stage with a root overrides just that root
    again = Project.of(flag, runs_root=tmp_path / "r")
    assert (again.data_root, again.runs_root) == (tmp_path / "flag-data", tmp_path / "r")
    assert Project.of(flag) is flag


def test_project_resolves_engines_and_output_dirs_once(tmp_path, monkeypatch):
    from corekit.project import Project

    monkeypatch.delenv("DATAKIT_RUNS_ROOT", raising=False)
    (tmp_path / "p.yaml").write_text(
        "models:\n  tiny: {path: models/tiny, init_tiny: {seed: 0}}\n"
        "engines:\n  gen: {backend: transformers, model: tiny}\n"
        "  api: {backend: openai, model: tiny-served, batch_size: 8}\n"
        "train:\n  output_dir: out/train\n"
    )
    p = Project.load(tmp_path / "p.yaml")
    spec, batch = p.engines["gen"]
    assert (spec.backend, spec.model, batch) == ("transformers", str(tmp_path / "models/tiny"), 256)
    assert p.engines["api"][0].model == "tiny-served" and p.engines["api"][1] == 8
    assert p.train_dir == tmp_path / "out/train"
    assert p.eval_dir == tmp_path / "runs" / "eval" and p.cache_dir == tmp_path / "runs" / "cache"


def test_project_checked_makes_the_disk_checks_a_plain_load_skips(tmp_path):
    from corekit.errors import ToolkitError
    from corekit.project import Project

    (tmp_path / "p.yaml").write_text("data:\n  imports:\n    - {name: s, source: missing.jsonl}\n")
    p = Project.load(tmp_path / "p.yaml")  # the schema holds: loads
    with pytest.raises(ToolkitError, match=r"data\.imports\[0\]\.source: no such file"):
        p.checked()
    with pytest.raises(ToolkitError, match="no such file"):
        Project.load(tmp_path / "p.yaml", full=True)


def test_gate_defaults_are_the_schemas():
    from corekit.schemas import load_schema
    from evalkit.gate import GateSettings

    gate = load_schema("pipeline")["definitions"]["eval"]["properties"]["gate"]["properties"]
    s = GateSettings()
    for key, sub in gate.items():
        if "default" in sub:
            assert getattr(s, key) == sub["default"], key
