"""The error contract of `datakit validate`, through the installed console script: every kind
of bad input gives one line per problem naming FILE:LINE (and $.path where a field is at
fault), exit code 1 and no traceback; a UTF-8 BOM and CRLF line endings are valid input."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

DATAKIT = Path(sys.executable).parent / "datakit"
OK = {
    "messages": [
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "content": "Rainy."},
    ]
}
LINE = json.dumps(OK).encode()


def validate(path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(DATAKIT), "validate", str(path), "-q", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


# name -> (file bytes, expected problem lines as (line, text in the line))
CASES = {
    "malformed_json": (LINE + b"\n{not json\n", [(2, ": malformed JSON: ")]),
    "invalid_utf8": (
        LINE + b'\n{"messages": [{"role": "user", "content": "\xff\xfe"}]}\n',
        [(2, ": invalid UTF-8 at byte ")],
    ),
    "wrong_type": (
        LINE + b'\n{"messages": [{"role": "user", "content": 5}]}\n',
        [(2, ": $.messages[0].content: 5 is not of type")],
    ),
    "unknown_role": (
        b'{"messages": [{"role": "robot", "content": "x"}]}\n' + LINE + b"\n",
        [(1, ": $.messages[0].role: 'robot' is not one of")],
    ),
    "empty_messages": (b'{"messages": []}\n', [(1, ": $.messages: [] should be non-empty")]),
    "not_an_object": (b"[1, 2]\n" + LINE + b"\n", None),  # a one-line array: see below
    "truncated_last_line": (
        LINE + b"\n" + LINE[:25],
        [(2, ": truncated last line (no newline at the end")],
    ),
    "two_problems_one_line_each": (
        b'{"messages": [{"role": "robot", "content": 5}]}\n',
        [(1, ": $.messages[0].content: "), (1, ": $.messages[0].role: ")],
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_lines_one_problem_per_line_exit_1(tmp_path, case):
    data, expected = CASES[case]
    path = tmp_path / f"{case}.jsonl"
    path.write_bytes(data)
    proc = validate(path, "--schema", "chat")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[-1].startswith(f"INVALID: {path}: ")
    problems = lines[:-1]
    if expected is None:  # the one-line array
        expected = [(1, ": $: expected a JSON object, got an array")]
    assert len(problems) == len(expected), problems
    for got, (line, text) in zip(sorted(problems), sorted(expected), strict=True):
        assert got.startswith(f"{path}:{line}: ") and text in got, got


def test_a_100_mb_line_is_reported_without_loading_it(tmp_path):
    path = tmp_path / "huge.jsonl"
    with open(path, "wb") as f:
        f.write(LINE + b"\n")
        f.write(b'{"messages": [{"role": "user", "content": "' + b"x" * (100 * 2**20) + b'"}]}\n')
    proc = validate(path, "--max-line-mb", "64")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stdout.splitlines() == [
        f"{path}:2: line is 100.0 MiB, over the 64 MiB limit per record (--max-line-mb)",
        f"INVALID: {path}: 1 of 2 chat records valid, 1 invalid",
    ]


@pytest.mark.parametrize(
    "name,data,message",
    [
        ("empty", b"", "file is empty (no records)"),
        ("blank_lines_only", b"\n  \n\n", "file is empty (no records)"),
        (
            "json_array",
            json.dumps([OK, OK], indent=2).encode(),
            ":1: the file holds one JSON array, not JSON Lines",
        ),
    ],
)
def test_whole_file_problems_one_error_line(tmp_path, name, data, message):
    path = tmp_path / f"{name}.jsonl"
    path.write_bytes(data)
    proc = validate(path)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    err = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith(f"Error: {path}") and message in err[0], err


def test_no_parseable_line_says_so(tmp_path):
    path = tmp_path / "garbage.jsonl"
    path.write_bytes(b"{x\n{y\n")
    proc = validate(path)  # no --schema: nothing to infer the kind from
    assert proc.returncode == 1
    assert (
        proc.stdout.splitlines()[-1] == f"INVALID: {path}: no parseable record in 2 non-blank lines"
    )
    assert "None" not in proc.stdout


def test_bom_crlf_and_blank_lines_are_valid_input(tmp_path):
    path = tmp_path / "windows.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + LINE + b"\r\n\r\n" + LINE + b"\r\n")
    proc = validate(path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines() == [f"ok: {path}: 2 of 2 chat records valid, 0 invalid"]
