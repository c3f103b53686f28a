import json
import subprocess
import sys

import click
import pytest

from datakit.cli import cli as datakit
from evalkit.cli import cli as evalkit
from tests.conftest import write_jsonl
from trainkit.cli import cli as trainkit


def all_commands():
    def walk(group, prefix):
        yield prefix, group
        if isinstance(group, click.Group):
            for name, cmd in group.commands.items():
                yield from walk(cmd, prefix + [name])

    for top, group in (("datakit", datakit), ("trainkit", trainkit), ("evalkit", evalkit)):
        for path, cmd in walk(group, []):
            yield top, group, path, cmd


@pytest.mark.parametrize(
    "top,group,path,cmd", list(all_commands()), ids=lambda x: x if isinstance(x, str) else None
)
def test_every_command_has_help_with_examples(cli, top, group, path, cmd):
    code, out = cli(group, *path, "--help")
    assert code == 0
    assert cmd.help and len(cmd.help.split("\n")[0]) > 10, f"{top} {path}: no summary line"
    assert "Examples:" in out, f"{top} {' '.join(path)} --help has no Examples block"


def test_help_does_not_import_heavy_libraries():
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from datakit.cli import cli\n"
        "from trainkit.cli import cli as t\n"
        "from evalkit.cli import cli as e\n"
        "for g, args in ((cli, ['--help']), (cli, ['validate', '--help']), (cli, ['import', '--help']), (t, ['init-tiny', '--help']), (t, ['--help']), (t, ['run', '--help']), (t, ['estimate', '--help']), (e, ['--help'])):\n"
        "    assert CliRunner().invoke(g, args).exit_code == 0\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'vllm', 'trl', 'peft', 'datasets', 'sentence_transformers', 'jsonschema', 'jsonschema_rs', 'yaml') if m in sys.modules)\n"
        "print(heavy)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_bad_flag_exits_2(cli):
    code, out = cli(datakit, "export", "x", "--format", "parquet", "-o", "a.jsonl")
    assert code == 2 and "Invalid value for '--format' / '-f': 'parquet' is not one of" in out
    code, out = cli(datakit, "import", "a.jsonl")
    assert code == 2 and "Missing option '--name' / '-n'" in out


def test_import_show_log_tag_diff_ls(cli, tmp_path):
    write_jsonl(
        tmp_path / "a.jsonl",
        [{"instruction": "Add 1 and 2", "output": "3"}, {"instruction": "Say hi", "output": "hi"}],
    )
    code, out = cli(datakit, "import", "a.jsonl", "--name", "seeds")
    assert (code, out) == (0, "seeds@v1: 2 instruction records from a.jsonl\n")
    code, out = cli(datakit, "import", "a.jsonl", "--name", "seeds")
    assert (code, out) == (0, "unchanged: seeds@v1 already holds these 2 instruction records\n")
    write_jsonl(
        tmp_path / "b.jsonl",
        [
            {"instruction": "Add 1 and 2", "output": "3"},
            {"instruction": "Say bye", "output": "bye"},
        ],
    )
    code, out = cli(datakit, "import", "b.jsonl", "--name", "seeds", "-m", "second batch")
    assert (code, out) == (0, "seeds@v2: 2 instruction records from b.jsonl\n")

    code, out = cli(datakit, "tag", "seeds@v1", "golden")
    assert (code, out) == (0, "seeds@golden -> seeds@v1\n")

    code, out = cli(datakit, "log", "seeds")
    lines = out.splitlines()
    assert code == 0 and len(lines) == 2
    assert lines[0].startswith("seeds@v2  ") and lines[0].endswith(
        "import  2 instruction  second batch"
    )
    assert lines[1].startswith("seeds@v1 [golden]  ")

    code, out = cli(datakit, "show", "seeds@golden", "-n", "1")
    assert code == 0 and out.startswith(
        "seeds@v1  (data/seeds/v1)\n  kind     instruction\n  records  2 "
    )
    assert '"instruction":"Add 1 and 2"' in out and "Say hi" not in out

    code, out = cli(datakit, "show", "seeds", "--json", "-n", "0")
    assert code == 0 and json.loads(out)["manifest"]["parents"] == []

    code, out = cli(datakit, "diff", "seeds@v1", "seeds@v2")
    # "Add 1 and 2" keeps its id (same content) but its meta.origin names the other file.
    assert (
        code == 0
        and out.splitlines()[0]
        == "seeds@v1 -> seeds@v2: +1 added, -1 removed, ~0 changed, 1 meta-only changes, 0 unchanged"
    )
    assert "meta keys that differ: origin (1)" in out
    assert "m " in out and '"file":"b.jsonl"' in out
    assert "+ " in out and "Say bye" in out and "- " in out

    code, out = cli(datakit, "ls")
    assert code == 0 and out.splitlines()[1].split() == [
        "seeds",
        "v2",
        "instruction",
        "2",
        "golden=v1",
    ]


def test_missing_dataset_and_file_errors(cli, tmp_path):
    code, out = cli(datakit, "show", "nope")
    assert (code, out) == (1, "Error: no dataset named 'nope'; data holds no datasets\n")
    code, out = cli(datakit, "import", "missing.jsonl", "--name", "x")
    assert (code, out) == (1, "Error: missing.jsonl: no such file\n")
    code, out = cli(datakit, "validate", "missing.jsonl")
    assert (code, out) == (1, "Error: missing.jsonl: no such file\n")


def test_import_of_bad_record_writes_nothing(cli, tmp_path):
    write_jsonl(
        tmp_path / "bad.jsonl",
        [
            {"messages": [{"role": "user", "content": "a"}]},
            '{"messages": [{"role": "user", "content": "a"}',
        ],
    )
    code, out = cli(datakit, "import", "bad.jsonl", "--name", "chat")
    assert (code, out) == (1, "Error: bad.jsonl:2: malformed JSON: unexpected end of data\n")
    assert not any((tmp_path / "data").glob("chat/v*"))


def test_validate_output_and_exit_codes(cli, tmp_path):
    write_jsonl(tmp_path / "ok.jsonl", [{"prompt": "p", "chosen": "a", "rejected": "b"}])
    code, out = cli(datakit, "validate", "ok.jsonl")
    assert (code, out) == (0, "ok: ok.jsonl: 1 of 1 preference records valid, 0 invalid\n")
    write_jsonl(
        tmp_path / "bad.jsonl",
        [{"prompt": "p", "chosen": "a"}, {"prompt": "p", "chosen": "a", "rejected": 3}],
    )
    code, out = cli(datakit, "validate", "bad.jsonl", "--schema", "preference")
    assert code == 1
    assert out.splitlines() == [
        "bad.jsonl:1: $: 'rejected' is a required property",
        "bad.jsonl:2: $.rejected: 3 is not of type 'string' or 'array'",
        "INVALID: bad.jsonl: 0 of 2 preference records valid, 2 invalid",
    ]
    code, out = cli(datakit, "validate", "bad.jsonl", "--json")
    report = json.loads(out)
    assert (
        code == 1
        and report["invalid"] == 2
        and report["problems"][0]
        == {"line": 1, "path": "$", "message": "'rejected' is a required property"}
    )


def test_validate_a_stored_version(cli, tmp_path):
    write_jsonl(tmp_path / "a.jsonl", [{"instruction": "x", "output": "y"}])
    cli(datakit, "import", "a.jsonl", "--name", "d")
    code, out = cli(datakit, "validate", "d@v1")
    assert (code, out) == (
        0,
        "ok: data/d/v1/records.jsonl: 1 of 1 instruction records valid, 0 invalid\n",
    )


def test_export_writes_trl_columns(cli, tmp_path):
    write_jsonl(tmp_path / "a.jsonl", [{"instruction": "x", "output": "y"}])
    cli(datakit, "import", "a.jsonl", "--name", "d")
    code, out = cli(datakit, "export", "d", "-f", "trl", "-o", "t.jsonl")
    assert (code, out) == (0, "wrote 1 records of d@v1 as trl to t.jsonl\n")
    assert json.loads((tmp_path / "t.jsonl").read_text()) == {
        "messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]
    }


def test_verbose_shows_the_traceback(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from corekit.errors import ToolkitError

    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(datakit, ["--verbose", "show", "nope"])
    assert isinstance(res.exception, ToolkitError)


def test_trainkit_init_tiny_refuses_to_overwrite(cli, tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "x").write_text("keep me")
    code, out = cli(trainkit, "init-tiny", "m")
    assert (code, out) == (
        1,
        "Error: m: directory exists and is not empty (use --force to replace it)\n",
    )
    assert (tmp_path / "m" / "x").read_text() == "keep me"


def test_import_keeps_one_copy_of_exact_duplicates(cli, tmp_path):
    """Raw data with repeated records enters the store (it is what most needs dedup): the
    first copy is kept, the others go to rejects.jsonl with the id they repeat."""
    rows = [{"instruction": f"Say {w}.", "output": w} for w in ("hi", "bye", "yes")]
    lines = [rows[0], rows[1], rows[0], rows[2], {**rows[0], "meta": {"note": "again"}}, rows[1]]
    write_jsonl(tmp_path / "raw.jsonl", lines)
    code, out = cli(datakit, "import", "raw.jsonl", "--name", "raw")
    assert code == 0, out
    assert out.startswith(
        "raw@v1: 3 instruction records from raw.jsonl (3 exact duplicates dropped"
    )
    v = tmp_path / "data" / "raw" / "v1"
    rejects = [json.loads(x) for x in (v / "rejects.jsonl").read_text().splitlines()]
    kept = [json.loads(x) for x in (v / "records.jsonl").read_text().splitlines()]
    assert [r["instruction"] for r in kept] == ["Say hi.", "Say bye.", "Say yes."]
    assert [(r["reason"], r["at"], r["first_at"]) for r in rejects] == [
        ("duplicate", "3", "1"),  # line numbers of raw.jsonl
        ("duplicate", "5", "1"),
        ("duplicate", "6", "2"),
    ]
    assert {r["duplicate_of"] for r in rejects} == {kept[0]["id"], kept[1]["id"]}
    assert json.loads((v / "manifest.json").read_text())["stats"]["drops"] == {"duplicate": 3}
    # Two records that claim the same id with different content are still an error.
    write_jsonl(
        tmp_path / "clash.jsonl",
        [
            {"id": "x", "instruction": "A", "output": "a"},
            {"id": "x", "instruction": "B", "output": "b"},
        ],
    )
    code, out = cli(datakit, "import", "clash.jsonl", "--name", "clash")
    assert code == 1 and "record 2: $.id: duplicate id 'x'" in out


def _shown_after_setup(verbose: bool, *warned: tuple[str, type]) -> list[str]:
    import warnings

    from corekit.clikit import setup_logging

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        setup_logging(verbose=verbose)
        for message, category in warned:
            warnings.warn(message, category, stacklevel=2)
    return [str(w.message) for w in seen]


def test_judged_notices_are_hidden_unless_verbose():
    """The third-party notices judged not to apply (corekit/clikit.py) are filtered by the
    CLIs' logging setup; anything else still shows, and --verbose shows them all."""
    import logging

    from corekit.clikit import JUDGED_LOGGERS

    trl = ("TRL currently supports vLLM versions from 0.22.0 to 0.31.0.", UserWarning)
    jit = ("`torch.jit.script_method` is deprecated.", DeprecationWarning)
    other = ("something nobody has judged", UserWarning)
    saved = {name: logging.getLogger(name).level for name in JUDGED_LOGGERS}
    try:
        assert _shown_after_setup(False, trl, jit, other) == [other[0]]
        assert not logging.getLogger("bitsandbytes.backends.cpu.ops").isEnabledFor(logging.WARNING)
        for name in JUDGED_LOGGERS:
            logging.getLogger(name).setLevel(logging.NOTSET)
        assert _shown_after_setup(True, trl) == [trl[0]]
        assert logging.getLogger("bitsandbytes").level == logging.NOTSET
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


def test_cpu_info_names_the_vector_units_and_kernel_settings(monkeypatch):
    from corekit.runs import CPU_FEATURES, cpu_info, format_cpu_info

    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "default")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    info = cpu_info()
    assert set(info["features"]) <= set(CPU_FEATURES) and info["cores"] >= 1
    assert "OMP_NUM_THREADS" not in info["settings"]
    assert info["settings"]["ATEN_CPU_CAPABILITY"] == "default"
    line = format_cpu_info(info)
    assert line.startswith("cpu: ") and "ATEN_CPU_CAPABILITY=default" in line
    try:
        flags = next(x for x in open("/proc/cpuinfo") if x.startswith("flags")).split()
    except (OSError, StopIteration):
        return
    assert info["features"] == [f for f in CPU_FEATURES if f in flags]
