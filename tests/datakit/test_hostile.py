"""Hostile and careless input, command by command: each gets one error line (no traceback:
the CLI runs with catch_exceptions=False, so one would fail the test), the error contract's
exit code (1 for bad input, 2 for a bad flag value), and nothing written."""

from __future__ import annotations

import json
import os

import pytest
import yaml

from datakit.cli import cli as datakit
from evalkit.cli import cli as evalkit
from trainkit.cli import cli as trainkit

BOMB = "\n".join(
    [
        'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]',
        *(
            f"{x}: &{x} [{', '.join([f'*{p}'] * 9)}]"
            for p, x in zip("abcdefgh", "bcdefghi", strict=True)
        ),
    ]
)  # 9 levels of 9-fold aliases: 9**9 strings once expanded


def one_line(out: str) -> str:
    lines = [x for x in out.splitlines() if x.strip()]
    assert len(lines) == 1, out
    assert "Traceback" not in out
    return lines[0]


def nothing_written(tmp_path) -> None:
    data = tmp_path / "data"
    assert not data.exists() or [p.name for p in data.iterdir() if p.name != ".lock"] == []


@pytest.mark.parametrize(
    "command, exit_code",
    [
        ((datakit, "config", "check"), 1),
        ((datakit, "run"), 1),
        ((trainkit, "run"), 1),
        ((evalkit, "run"), 2),  # evalkit: 1 is a failed gate, 2 unreadable input
    ],
    ids=["datakit config check", "datakit run", "trainkit run", "evalkit run"],
)
def test_a_yaml_alias_bomb_is_refused_by_every_command(cli, tmp_path, command, exit_code):
    """Before: each of these hung using 5-9 GB of memory."""
    (tmp_path / "bomb.yaml").write_text(BOMB)
    group, *args = command
    code, out = cli(group, *args, "bomb.yaml")
    assert code == exit_code
    assert one_line(out) == (
        "Error: bomb.yaml: its aliases expand to more than 100,000 nodes (an alias bomb?); refused"
    )
    nothing_written(tmp_path)


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "Error: c.yaml: empty config (expected sections such as data, train, eval)"),
        ("# only a comment\n", "Error: c.yaml: empty config (expected sections such as data, train, eval)"),
        ("data:\n  seed: 1\ntrain: {}\ndata:\n  seed: 2\n",
         "Error: c.yaml:4: key 'data' given twice (first at line 1)"),
        ("a: &a [*a]\n", "Error: c.yaml: invalid YAML: an alias refers to a node that contains it"),
        ("data:\n  seed: 1\x00\n", "Error: c.yaml:2: NUL byte"),
        ("data: [unclosed\n", "Error: c.yaml:2: invalid YAML: expected ',' or ']', but got '<stream end>'"),
    ],
    ids=["empty", "comment-only", "duplicate key", "recursive alias", "NUL byte", "unclosed"],
)  # fmt: skip
def test_config_files_that_are_not_configs(cli, tmp_path, text, message):
    (tmp_path / "c.yaml").write_text(text)
    code, out = cli(datakit, "config", "check", "c.yaml")
    assert (code, one_line(out)) == (1, message)


def test_anchors_within_the_limit_still_work(cli, tmp_path):
    (tmp_path / "c.yaml").write_text(
        "engines:\n  base: &e {backend: transformers, model: m}\n  other: *e\n"
    )
    code, out = cli(datakit, "config", "check", "c.yaml")
    assert "alias" not in out and "Traceback" not in out


# ------------------------------------------------------------------------------ import


def test_a_misspelled_csv_column_is_an_error_not_lost_data(cli, tmp_path):
    """Before: `inptu` was dropped without a word and the input text lost."""
    (tmp_path / "t.csv").write_text("instruction,inptu,output\nSay hi,to bob,Hi bob\n")
    code, out = cli(datakit, "import", "t.csv", "--format", "csv", "--name", "t")
    assert (code, one_line(out)) == (
        1,
        "Error: t.csv:1: column 'inptu' is not a field of instruction records; did you mean "
        "'input'?; --keep-unknown keeps such columns in meta.extra",
    )
    nothing_written(tmp_path)
    code, out = cli(
        datakit, "import", "t.csv", "--format", "csv", "--name", "t", "--keep-unknown", "--json"
    )
    assert code == 0
    rec = json.loads((tmp_path / "data" / "t" / "v1" / "records.jsonl").read_text())
    assert rec["meta"]["extra"] == {"inptu": "to bob"}


@pytest.mark.parametrize("fmt", ["csv", "xstest"])
def test_non_utf8_and_binary_tables_get_one_line_with_the_fix(cli, tmp_path, fmt):
    """Before: a UnicodeDecodeError traceback."""
    header = "prompt,label\n" if fmt == "xstest" else "instruction,output\n"
    row = "Caf\xe9 au lait?,safe\n" if fmt == "xstest" else "Caf\xe9,ok\n"
    (tmp_path / "l1.csv").write_bytes((header + row).encode("latin-1"))
    code, out = cli(datakit, "import", "l1.csv", "--format", fmt, "--name", "t")
    assert code == 1
    assert one_line(out).startswith("Error: l1.csv: not utf-8 (byte 0xe9 at offset ")
    assert one_line(out).endswith("pass --encoding (e.g. --encoding latin-1 or cp1252)")
    nothing_written(tmp_path)
    code, out = cli(
        datakit, "import", "l1.csv", "--format", fmt, "--name", "t", "--encoding", "latin-1"
    )
    assert code == 0, out
    text = (tmp_path / "data" / "t" / "v1" / "records.jsonl").read_text(encoding="utf-8")
    assert "Café" in text
    (tmp_path / "bin.csv").write_bytes(bytes(range(256)) * 4)
    code, out = cli(datakit, "import", "bin.csv", "--format", fmt, "--name", "b")
    assert code == 1 and one_line(out).startswith("Error: bin.csv: ")
    assert not (tmp_path / "data" / "b").exists()


def test_an_import_of_nothing_is_an_error(cli, tmp_path):
    """Before: `[]` as alpaca made an empty version and exited 0."""
    (tmp_path / "e.json").write_text("[]")
    code, out = cli(datakit, "import", "e.json", "--format", "alpaca", "--name", "e")
    assert (code, one_line(out)) == (1, "Error: e.json: holds no records; nothing imported")
    nothing_written(tmp_path)


def test_nul_bytes_and_four_byte_utf8(cli, tmp_path):
    (tmp_path / "n.jsonl").write_bytes(b'{"instruction": "a\x00b", "output": "x"}\n')
    code, out = cli(datakit, "import", "n.jsonl", "--name", "n")
    # a raw NUL is not JSON (an escaped one is data)
    assert (code, one_line(out)) == (
        1,
        "Error: n.jsonl:1: malformed JSON: unexpected control character in string",
    )
    smile = "\U0001f600"
    row = {"instruction": f"Say {smile} twice", "output": smile * 2}
    (tmp_path / "u.jsonl").write_text(json.dumps(row) + "\n", encoding="utf-8")
    code, out = cli(datakit, "import", "u.jsonl", "--name", f"emoji-{smile}")
    assert code == 1
    assert one_line(out).startswith(f"Error: invalid dataset name 'emoji-{smile}'")
    nothing_written(tmp_path)
    code, out = cli(datakit, "import", "u.jsonl", "--name", "u")
    assert code == 0, out


def test_a_data_root_that_cannot_be_created(cli, tmp_path):
    """Before: three tracebacks."""
    (tmp_path / "file").write_text("not a directory")
    (tmp_path / "t.jsonl").write_text('{"instruction": "a", "output": "b"}\n')
    code, out = cli(datakit, "import", "t.jsonl", "--name", "t", "--data-root", "file/sub")
    assert code == 1
    assert one_line(out).startswith("Error: file/sub")


def test_a_symlinked_data_root_works(cli, tmp_path):
    (tmp_path / "real").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "link")
    (tmp_path / "t.jsonl").write_text('{"instruction": "a", "output": "b"}\n')
    code, out = cli(datakit, "import", "t.jsonl", "--name", "t", "--data-root", "link")
    assert code == 0, out
    assert (tmp_path / "real" / "t" / "v1" / "records.jsonl").is_file()


def test_a_version_deleted_mid_read(cli, tmp_path):
    import shutil

    (tmp_path / "t.jsonl").write_text('{"instruction": "a", "output": "b"}\n')
    cli(datakit, "import", "t.jsonl", "--name", "t")
    shutil.rmtree(tmp_path / "data" / "t" / "v1")
    code, out = cli(datakit, "show", "t")
    assert code == 1 and one_line(out).startswith("Error: ")
    code, out = cli(datakit, "filter", "t", "-o", "f")
    assert code == 1 and one_line(out).startswith("Error: ")


# ------------------------------------------------------------------- steps and flags


def seeds(cli, tmp_path, n=3):
    rows = [{"instruction": f"Say {i}", "output": str(i)} for i in range(n)]
    (tmp_path / "s.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert cli(datakit, "import", "s.jsonl", "--name", "s")[0] == 0


def test_a_step_that_keeps_nothing_fails_and_writes_nothing(cli, tmp_path):
    """Before: `filter --min-quality` on an unjudged set wrote an empty version, exit 0."""
    seeds(cli, tmp_path)
    code, out = cli(datakit, "filter", "s", "-o", "f", "--min-quality", "0.5")
    assert (code, one_line(out)) == (
        1,
        "Error: f: filter made no records from 3 input records (dropped 3 not_judged); "
        "nothing written; --allow-empty (allow_empty: true on the step) writes it anyway",
    )
    assert not (tmp_path / "data" / "f").exists()
    code, out = cli(datakit, "filter", "s", "-o", "f", "--min-quality", "0.5", "--allow-empty")
    assert code == 0 and "f@v1, 0 instruction records" in out


def test_an_unreachable_server_is_not_a_success(cli, tmp_path):
    """Before: `0 chat records; dropped 3 engine_error` and exit 0."""
    seeds(cli, tmp_path)
    args = ["generate", "respond", "s", "-o", "r", "--backend", "openai", "--model", "m",
            "--base-url", "http://127.0.0.1:9/v1", "--engine-option", "max_retries=0"]  # fmt: skip
    code, out = cli(datakit, *args)
    assert code == 1
    assert out.splitlines()[-1] == (
        "Error: r: respond made no records from 3 input records (dropped 3 engine_error); "
        "nothing written; --allow-empty (allow_empty: true on the step) writes it anyway"
    )
    assert "Traceback" not in out and not (tmp_path / "data" / "r").exists()


def test_a_mix_total_the_inputs_cannot_meet(cli, tmp_path):
    """Before: 17 records written for --total 100 and a realised 0.47/0.53 for 0.8/0.2."""
    seeds(cli, tmp_path, 9)
    rows = [{"instruction": f"Other {i}", "output": str(i)} for i in range(8)]
    (tmp_path / "o.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cli(datakit, "import", "o.jsonl", "--name", "o")
    code, out = cli(datakit, "mix", "s:0.8", "o:0.2", "-o", "m", "--total", "100")
    assert (code, one_line(out)) == (
        1,
        "Error: m: mix total 100 at ratios 0.8/0.2 needs 80 records of input 1, which holds 9; "
        "these inputs allow total 11 at these ratios (or best_effort / --best-effort takes "
        "every short input whole and records the realised ratios)",
    )
    assert not (tmp_path / "data" / "m").exists()
    code, out = cli(datakit, "mix", "s:0.8", "o:0.2", "-o", "m", "--total", "100", "--best-effort")
    assert code == 0, out


@pytest.mark.parametrize(
    "args, flag",
    [
        (["generate", "respond", "s", "-o", "r", "--model", "m", "--temperature", "-1"], "--temperature"),
        (["filter", "s", "-o", "f", "--min-quality", "3"], "--min-quality"),
        (["dedup", "s", "-o", "d", "--threshold", "7"], "--threshold"),
        (["dedup", "s", "-o", "d", "--embedding-backend", "fasttext"], "--embedding-backend"),
    ],
    ids=["temperature", "min-quality", "threshold", "embedding-backend"],
)  # fmt: skip
def test_bad_flag_values_exit_2(cli, tmp_path, args, flag):
    """Before: exit 1 (the schema's bounds were checked after Click)."""
    seeds(cli, tmp_path)
    code, out = cli(datakit, *args)
    assert code == 2 and f"Invalid value for '{flag}'" in out
    assert [p.name for p in (tmp_path / "data").iterdir() if p.name != ".lock"] == ["s"]


def test_evalkit_bad_metric_exits_2(cli, tmp_path):
    (tmp_path / "p.jsonl").write_text('{"id": "a", "output": "x", "references": ["x"]}\n')
    code, out = cli(evalkit, "score", "p.jsonl", "--metrics", "exact_mach", "--out", "s")
    assert code == 2 and "did you mean 'exact_match'?" in out
    assert not (tmp_path / "s").exists()


def test_an_unknown_engine_option_is_one_line_before_any_start(cli, tmp_path):
    """Before: `--engine-option foo=1` was a 51-line vLLM traceback after a model load."""
    seeds(cli, tmp_path)
    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text("{}")
    base = ["generate", "respond", "s", "-o", "r", "--backend", "transformers",
            "--model", str(model)]  # fmt: skip
    code, out = cli(datakit, *base, "--engine-option", "batch_sise=4")
    assert (code, one_line(out)) == (
        1,
        "Error: r: engine: unknown option 'batch_sise' for the transformers backend; "
        "did you mean 'batch_size'?",
    )
    assert not (tmp_path / "data" / "r").exists()


# ----------------------------------------------------------------- config check, run


def misspelt_pipeline(tmp_path):
    """The shipped pipeline.yaml with one misspelling in every kind of reference."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    text = (root / "pipeline.yaml").read_text()
    text = text.replace("source: datakit/demo/", f"source: {root}/datakit/demo/")
    text = text.replace("source: evalkit/data/", f"source: {root}/evalkit/data/")
    edits = [
        ("    backend: vllm ", "    backend: transformers "),
        ("    model: smollm2\n    options: {max_model_len: 2048}",
         "    model: tinee\n    options: {batch_sise: 4}"),
        (f"source: {root}/datakit/demo/format_tasks.jsonl", "source: nowhere/format_tasks.jsonl"),
        ("      op: judge\n      input: answers", "      op: judge\n      input: answrs"),
        ('regex: "(How (do', 'regex: "((How (do'),  # a pattern that does not compile
        ("dataset: sft-train", "dataset: sft-trian"),
        ("from: sft", "from: sfft"),
        ('tuned: "train:safety-sft"', 'tuned: "train:safety-sfft"'),
        ("suites: [qa, format, safety]", "suites: [qa, formatt, safety]"),
        ("      qa/f1: {max_drop: 0.05}", "      qa/f11: {max_drop: 0.05}"),
    ]  # fmt: skip
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new)
    (tmp_path / "p.yaml").write_text(text)


WANT = [
    "engines.smol.model: 'tinee' is neither a name in models nor a model directory (models: smollm2)",
    "engines.smol.options.batch_sise: unknown option for the transformers backend; did you mean 'batch_size'?",
    "data.imports[1].source: no such file {tmp}/nowhere/format_tasks.jsonl",
    "data.steps[3].input: no dataset 'answrs': no import, step or data-root dataset makes it; did you mean 'answers'?",
    "data.steps[11].params.regex: {rx!r} is not a 'regex': missing ), unterminated subpattern at position 0",
    "train.stages[0].dataset: no dataset 'sft-trian': no import, step or data-root dataset makes it; did you mean 'sft-train'?",
    "train.stages[1] (safety-sft): from 'sfft' is not an earlier stage (sft)",
    "eval.models.tuned: train:safety-sfft: no trainkit stage 'safety-sfft'; did you mean 'safety-sft'?",
    "eval.suites[1]: no built-in suite 'formatt'; did you mean 'format'?",
    "eval.gate.rules.qa/f11: unknown metric 'f11'; did you mean 'f1'?",
]  # fmt: skip


def test_config_check_finds_every_reference_run_would_trip_on(cli, tmp_path):
    """Before: `ok` for this config; `datakit run` then failed on one at a time, after
    writing the imports."""
    misspelt_pipeline(tmp_path)
    code, out = cli(datakit, "config", "check", "p.yaml")
    assert code == 1
    got = [line.split(": ", 1)[1] for line in out.splitlines()[:-1]]
    steps = yaml.safe_load((tmp_path / "p.yaml").read_text())["data"]["steps"]
    rx = steps[11]["params"]["regex"]
    assert got == [w.format(tmp=tmp_path, rx=rx) for w in WANT]
    assert all(line.startswith("p.yaml:") and line.split(":")[1].isdigit()
               for line in out.splitlines()[:-1])  # fmt: skip
    assert out.splitlines()[-1] == "p.yaml: 10 problems"
    code, out = cli(datakit, "run", "p.yaml")
    assert code == 1 and out.startswith("Error: 10 problems in p.yaml:")
    assert "Traceback" not in out
    nothing_written(tmp_path)


def test_config_check_reads_each_source_as_its_format_and_names_what_fits(cli, tmp_path):
    """A source whose first record does not read in the stated format is found by config
    check (not half-way through `run`), with the formats it does read as; an engine whose
    model is a LoRA adapter directory, or whose lora_adapter is not one, is named too."""
    chats = {"messages": [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello."}]}  # fmt: skip
    (tmp_path / "chats.jsonl").write_text(json.dumps(chats) + "\n")
    (tmp_path / "alpaca.json").write_text(json.dumps([{"instruction": "Say hi.", "output": "Hi."}]))
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text('{"r": 8}')
    base = tmp_path / "base"
    base.mkdir()
    (base / "config.json").write_text("{}")
    (tmp_path / "p.yaml").write_text(
        "engines:\n"
        f"  a: {{backend: vllm, model: {adapter}}}\n"
        f"  b: {{backend: vllm, model: {base}, options: {{lora_adapter: {base}}}}}\n"
        f"  c: {{backend: vllm, model: {base}, options: {{lora_adapter: {adapter}}}}}\n"
        "data:\n  imports:\n"
        "    - {name: chats, source: chats.jsonl, format: alpaca}\n"
        "    - {name: inst, source: alpaca.json, format: alpaca}\n"
        "    - {name: more, source: alpaca.json, format: sharegpt}\n"
    )
    code, out = cli(datakit, "config", "check", "p.yaml")
    assert code == 1, out
    lines = out.splitlines()
    assert lines[-1] == "p.yaml: 4 problems"
    assert lines[0] == (
        f"p.yaml:2: engines.a.model: {adapter} is an adapter; give its base model as the "
        "model and the adapter as options.lora_adapter (vllm), or merge it first "
        "(trainkit merge)"
    )
    assert lines[1] == (
        f"p.yaml:3: engines.b.options.lora_adapter: {base} is not a LoRA adapter "
        "(no adapter_config.json)"
    )
    assert lines[2].startswith("p.yaml:7: data.imports[0].source: does not read as format alpaca: ")
    assert lines[2].endswith("; it reads as format: jsonl or openai"), lines[2]
    assert lines[3].startswith(
        "p.yaml:9: data.imports[2].source: does not read as format sharegpt: "
    )
    assert lines[3].endswith("; it reads as format: jsonl or alpaca"), lines[3]
    code, out = cli(datakit, "run", "p.yaml")
    assert code == 1 and out.startswith("Error: 4 problems in p.yaml:")
    nothing_written(tmp_path)


def test_config_check_names_a_misspelt_key_inside_a_vllm_config_option(cli, tmp_path):
    """A key inside one of vLLM's config-class options (structured_outputs_config,
    compilation_config, ...) is checked with the option names: before, a misspelt one passed
    config check, and `datakit run` ran the steps before the engine's first use, then failed
    as the tool's error (exit 3) when vLLM refused it on start."""
    pytest.importorskip("vllm")
    base = tmp_path / "base"
    base.mkdir()
    (base / "config.json").write_text("{}")
    (tmp_path / "p.yaml").write_text(
        "engines:\n"
        "  g:\n"
        "    backend: vllm\n"
        f"    model: {base}\n"
        "    options:\n"
        "      max_model_len: 2048\n"
        "      structured_outputs_config:\n"
        "        backend: xgrammar\n"
        "        disable_any_whitespac: true\n"
        "      hf_overrides: {free: 1}\n"
    )
    code, out = cli(datakit, "config", "check", "p.yaml")
    assert (code, out.splitlines()) == (
        1,
        [
            "p.yaml:9: engines.g.options.structured_outputs_config.disable_any_whitespac: "
            "unknown option for the vllm backend; did you mean 'disable_any_whitespace'?",
            "p.yaml: 1 problem",
        ],
    )
    text = (tmp_path / "p.yaml").read_text().replace("whitespac:", "whitespace:")
    (tmp_path / "p.yaml").write_text(text)
    code, out = cli(datakit, "config", "check", "p.yaml")
    assert code == 0, out


def test_evalkit_run_with_a_runs_root_that_cannot_hold_directories(cli, tmp_path):
    """Before: an OSError traceback from mkdir; now one line naming the directory, exit 2
    (unreadable input in evalkit's codes), before any engine starts."""
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}")
    (tmp_path / "runsfile").write_text("")
    (tmp_path / "p.yaml").write_text(
        "runs_root: runsfile/x\nengines:\n  e: {backend: transformers, model: m}\n"
        "eval:\n  engine: e\n  models: {base: m}\n  suites: [qa]\n"
    )
    code, out = cli(evalkit, "run", "p.yaml")
    where = tmp_path / "runsfile/x/eval/base"
    assert (code, out) == (2, f"Error: {where}: cannot create: Not a directory\n")
