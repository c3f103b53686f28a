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
