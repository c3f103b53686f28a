import pytest

from corekit.errors import ToolkitError
from corekit.project import Project
from datakit.cli import cli as datakit
from tests.conftest import ROOT

BAD = """\
version: 1
nmae: demo
models:
  tiny:
    path: m
    init_tiny: {seed: -1}
data:
  imports:
    - name: seeds
      sorce: seeds.jsonl
      format: yaml
trian:
  base_model: tiny
"""


def test_all_errors_reported_together_with_lines_and_hints(tmp_path, cli):
    (tmp_path / "p.yaml").write_text(BAD)
    code, out = cli(datakit, "config", "check", "p.yaml")
    assert code == 1
    assert out.splitlines() == [
        "p.yaml:2: nmae: unknown key; did you mean 'name'?",
        "p.yaml:6: models.tiny.init_tiny.seed: -1 is less than the minimum of 0",
        "p.yaml:9: data.imports[0]: missing required key 'source'",
        "p.yaml:10: data.imports[0].sorce: unknown key; did you mean 'source'?",
        "p.yaml:11: data.imports[0].format: 'yaml' is not one of ['jsonl', 'alpaca', 'sharegpt', 'openai', 'self-instruct', 'xstest', 'csv']",
        "p.yaml:12: trian: unknown key; did you mean 'train'?",
        "p.yaml: 6 problems",
    ]


def test_an_op_parameter_that_needs_another_is_named_with_its_line(tmp_path, cli):
    (tmp_path / "s.jsonl").write_text('{"instruction": "Say hi.", "output": "hi"}\n')
    (tmp_path / "p.yaml").write_text(
        "version: 1\ndata:\n  imports:\n    - {name: s, source: s.jsonl}\n  steps:\n"
        "    - name: m\n      op: mix\n      input: [s]\n"
        "      params: {total: 10, balance_weights: {comply: 3}}\n"
    )
    code, out = cli(datakit, "config", "check", "p.yaml")
    assert (code, out.splitlines()) == (
        1,
        [
            "p.yaml:9: data.steps[0].params: 'balance_by' is a dependency of 'balance_weights'",
            "p.yaml: 1 problem",
        ],
    )


def test_unknown_key_without_close_match_lists_allowed_keys(tmp_path, cli):
    (tmp_path / "p.yaml").write_text("data:\n  zzz: 1\n")
    code, out = cli(datakit, "config", "check", "p.yaml")
    assert (code, out.splitlines()[0]) == (
        1,
        "p.yaml:2: data.zzz: unknown key; allowed here: imports, steps",
    )


def test_yaml_syntax_error_names_the_line(tmp_path, cli):
    (tmp_path / "p.yaml").write_text("data:\n  imports: [\n")
    code, out = cli(datakit, "config", "check", "p.yaml")
    assert code == 1 and out.startswith("Error: p.yaml:3: invalid YAML:")


def test_not_a_mapping(tmp_path, cli):
    (tmp_path / "p.yaml").write_text("- a\n- b\n")
    code, out = cli(datakit, "config", "check", "p.yaml")
    assert (code, out) == (
        1,
        "Error: p.yaml:1: the config must be a mapping of sections (data, train, eval)\n",
    )


def test_default_pipeline_is_valid_and_defaults_come_from_the_schema(cli):
    code, out = cli(datakit, "config", "check", str(ROOT / "pipeline.yaml"))
    assert code == 0 and out.startswith("ok: ")
    cfg = Project.load(ROOT / "pipeline.yaml").config
    assert cfg["data"]["imports"][0]["format"] == "jsonl"


def test_defaults_fill_in(tmp_path):
    (tmp_path / "p.yaml").write_text("data:\n  imports:\n    - {name: s, source: s.jsonl}\n")
    cfg = Project.load(tmp_path / "p.yaml").config
    assert (
        cfg["data_root"],
        cfg["runs_root"],
        cfg["seed"],
        cfg["data"]["imports"][0]["format"],
    ) == ("data", "runs", 0, "jsonl")


def test_load_config_raises_with_every_problem(tmp_path):
    (tmp_path / "p.yaml").write_text(BAD)
    with pytest.raises(ToolkitError) as e:
        Project.load(tmp_path / "p.yaml")
    assert str(e.value).startswith("6 problems in ")


def test_config_schema_prints_json(cli):
    import json

    code, out = cli(datakit, "config", "schema")
    assert code == 0 and json.loads(out)["title"] == "pipeline"


@pytest.mark.parametrize(
    "name",
    ["pipeline.yaml", *sorted(f"examples/{p.name}" for p in (ROOT / "examples").glob("*.yaml"))],
)
def test_shipped_configs_pass_the_check(name, cli):
    """The full `config check` (sources read, references resolved), from any directory."""
    code, out = cli(datakit, "config", "check", str(ROOT / name))
    assert (code, out) == (0, f"ok: {ROOT / name}\n")


def test_eval_engine_must_name_an_engine(tmp_path):
    from corekit.config import check_config
    from corekit.yaml_load import load_yaml

    p = tmp_path / "p.yaml"
    p.write_text(
        "engines:\n  e: {backend: vllm, model: m}\neval:\n  engine: gen\n  models: {a: m}\n"
    )
    data, lines = load_yaml(p)
    assert check_config(data, lines, str(p)) == [f"{p}:4: eval.engine: 'gen' is not in engines (e)"]


def test_eval_refusal_judge_and_gate_settings_are_checked(tmp_path):
    from corekit.config import check_config
    from corekit.yaml_load import load_yaml

    p = tmp_path / "p.yaml"
    p.write_text(
        "engines:\n  e: {backend: vllm, model: m}\neval:\n  engine: e\n  models: {a: m}\n"
        "  refusal_judge: big\n  gate: {min_coverage: 1.5, inconclusive: fail}\n"
    )
    data, lines = load_yaml(p)
    problems = check_config(data, lines, str(p))
    assert f"{p}:6: eval.refusal_judge: 'big' is not in engines (e)" in problems
    assert any("eval.gate.min_coverage" in x for x in problems) and len(problems) == 2


def test_named_outputs_are_shown_by_ops_and_config_check(cli):
    """`sft-train` in pipeline.yaml is declared by the split op: `datakit ops` says what it
    writes and `config check --json` lists every dataset name the config makes."""
    import json

    code, out = cli(datakit, "ops", "--json")
    split = next(r for r in json.loads(out) if r["name"] == "split")
    assert split["writes"] == ["NAME-train", "NAME-test"]
    code, out = cli(datakit, "config", "check", str(ROOT / "pipeline.yaml"), "--json")
    made = json.loads(out)["datasets"]
    assert code == 0 and made["sft-train"] == made["sft-test"] == "step sft (split)"
    assert made["demo-seeds"] == "an import"
