import json

from datakit.cli import cli as datakit
from tests.conftest import write_jsonl


def seeds(cli, tmp_path):
    write_jsonl(tmp_path / "s.jsonl", [{"instruction": "Say hi.", "output": "hi"}])
    assert cli(datakit, "import", "s.jsonl", "-n", "seeds")[0] == 0


def test_generate_flags(cli, tmp_path):
    seeds(cli, tmp_path)
    code, out = cli(datakit, "generate", "respond", "seeds", "-o", "a")
    assert (code, out.splitlines()[-1]) == (2, "Error: Missing option '--model'.")
    code, out = cli(
        datakit, "generate", "respond", "seeds", "-o", "a", "--backend", "openai", "--model", "m"
    )
    assert (code, out.splitlines()[-1]) == (2, "Error: --backend openai needs --base-url.")
    code, out = cli(
        datakit,
        "generate",
        "preferences",
        "seeds",
        "-o",
        "p",
        "--model",
        "m",
        "--temperatures",
        "0.3,hot",
    )
    assert (
        code == 2
        and "Invalid value for --temperatures: expected numbers separated by commas, got '0.3,hot'"
        in out
    )
    code, out = cli(
        datakit,
        "generate",
        "respond",
        "seeds",
        "-o",
        "a",
        "--model",
        "m",
        "--engine-option",
        "novalue",
    )
    assert code == 2 and "expected KEY=VALUE, got 'novalue'" in out
    # A JSON flag whose value parses but breaks the op's schema is a usage error too (exit 2,
    # the flag named), caught before any engine or dataset is touched.
    code, out = cli(
        datakit, "judge", "seeds", "-o", "j", "--model", "m", "--rubric", '{"a b": "q"}'
    )
    assert (code, out.splitlines()[-1]) == (
        2,
        "Error: Invalid value for '--rubric': 'a b' does not match '^[A-Za-z_][A-Za-z0-9_]*$'",
    )
    code, out = cli(datakit, "judge", "seeds", "-o", "j", "--model", "m", "--rubric", "[1]")
    assert code == 2 and "Invalid value for '--rubric': [1] is not of type 'object'" in out
    # a pattern that does not compile, with the reason (the schema's "format": "regex")
    code, out = cli(datakit, "generate", "augment", "seeds", "-o", "a", "--model", "m",
                    "--regex", "[a-")  # fmt: skip
    assert (code, out.splitlines()[-1]) == (
        2,
        "Error: Invalid value for '--regex': '[a-' is not a 'regex': "
        "unterminated character set at position 0",
    )
    # a value that fits none of a flag's forms (balance_by: a field or a list of them):
    # the error of the form it was meant as, not "not valid under any of the given schemas"
    code, out = cli(datakit, "mix", "seeds", "-o", "m", "--balance-by", "")
    assert (code, out.splitlines()[-1]) == (
        2,
        "Error: Invalid value for '--balance-by': '' should be non-empty",
    )
    # a flag that needs another (a schema dependency) names itself
    code, out = cli(datakit, "mix", "seeds", "-o", "m", "--balance-weights", '{"comply": 3}')
    assert (code, out.splitlines()[-1]) == (
        2,
        "Error: Invalid value for '--balance-weights': 'balance_by' is a dependency of "
        "'balance_weights'",
    )


def test_generate_bad_input_and_engine_fail_before_work(cli, tmp_path):
    seeds(cli, tmp_path)
    code, out = cli(
        datakit,
        "generate",
        "respond",
        "nope",
        "-o",
        "a",
        "--backend",
        "transformers",
        "--model",
        "m",
    )
    assert (code, out) == (1, "Error: no dataset named 'nope'; datasets under data: seeds\n")
    code, out = cli(
        datakit,
        "generate",
        "respond",
        "seeds",
        "-o",
        "a",
        "--backend",
        "transformers",
        "--model",
        str(tmp_path / "missing"),
    )
    assert (code, out) == (
        1,
        f"Error: a: engine: model directory {tmp_path / 'missing'} does not exist\n",
    )
    code, out = cli(
        datakit,
        "generate",
        "respond",
        "seeds",
        "-o",
        "a",
        "--backend",
        "openai",
        "--model",
        "m",
        "--base-url",
        "http://127.0.0.1:9/v1",
        "--engine-option",
        "retries=3",
    )
    assert code == 1 and out.startswith(
        "Error: a: engine: unknown option 'retries' for the openai backend"
    )
    code, out = cli(
        datakit,
        "generate",
        "self-instruct",
        "seeds",
        "-o",
        "g",
        "--backend",
        "transformers",
        "--model",
        "m",
        "--num-shots",
        "0",
    )
    # a flag value out of the schema's range is a usage error: exit 2, Click's message
    assert code == 2 and out.endswith(
        "Error: Invalid value for '--num-shots': 0 is not in the range 1<=x<=32.\n"
    )
    assert not (tmp_path / "data" / "a").exists() and not (tmp_path / "data" / "g").exists()


def test_run_checks_step_references_before_any_work(cli, tmp_path):
    write_jsonl(tmp_path / "s.jsonl", [{"instruction": "Say hi.", "output": "hi"}])
    (tmp_path / "p.yaml").write_text(
        "models:\n  tiny: {path: m, init_tiny: {seed: 0}}\n"
        "engines:\n  e: {backend: transformers, model: tiny}\n"
        "data:\n  imports:\n    - {name: seeds, source: s.jsonl}\n"
        "  steps:\n    - {name: answers, op: respond, input: seeds, engine: big}\n"
        "    - {name: more, op: respond, input: seeds}\n"
    )
    code, out = cli(datakit, "run", "p.yaml")
    assert (code, out) == (
        1,
        "Error: 2 problems in p.yaml:\n"
        "p.yaml:9: data.steps[0].engine: 'big' is not in engines (e)\n"
        "p.yaml:10: data.steps[1]: op respond calls a model (engine): give it an engine\n",
    )
    assert (
        not (tmp_path / "m").exists() and not (tmp_path / "data").exists()
    )  # no model built, nothing imported


def test_data_engines_moved_to_the_top_level(cli, tmp_path):
    (tmp_path / "p.yaml").write_text(
        "data:\n  engines:\n    e: {backend: transformers, model: m}\n  steps: []\n"
    )
    code, out = cli(datakit, "config", "check", "p.yaml")
    assert code == 1
    assert out.splitlines() == [
        "p.yaml:2: data.engines: moved to the top level: write `engines:` beside `models:` "
        "(same entries; every stage refers to them by name)",
        "p.yaml: 1 problem",
    ]


def test_run_unknown_op_param_is_a_config_error(cli, tmp_path):
    (tmp_path / "p.yaml").write_text(
        "data:\n  steps:\n    - {name: good, op: filter, input: x, params: {min_qualty: 0.5}}\n"
    )
    code, out = cli(datakit, "config", "check", "p.yaml")
    assert (
        code == 1
        and "p.yaml:3: data.steps[0].params.min_qualty: unknown key; did you mean 'min_quality'?"
        in out
    )


def test_filter_command(cli, tmp_path):
    rows = [
        {
            "messages": [
                {"role": "user", "content": f"q{i}"},
                {"role": "assistant", "content": f"a{i}"},
            ],
            "meta": {"judge": {"quality": q}},
        }
        for i, q in enumerate([0.9, 0.5, 0.75])
    ]
    rows.append(
        {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    )
    write_jsonl(tmp_path / "j.jsonl", rows)
    cli(datakit, "import", "j.jsonl", "-n", "judged")
    code, out = cli(datakit, "filter", "judged", "-o", "good", "--min-quality", "0.7")
    assert (code, out) == (
        0,
        "step good (filter): good@v1, 2 chat records; dropped 1 below_min_quality, 1 not_judged\n",
    )
    code, out = cli(datakit, "filter", "judged", "-o", "good", "--min-quality", "0.7", "--json")
    assert code == 0 and json.loads(out)["skipped"] is True
