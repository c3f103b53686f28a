import copy
import json
import random

import jsonschema
import pytest

from corekit.errors import ToolkitError
from corekit.schemas import RECORD_KINDS, load_schema
from datakit.validate import RecordValidator, validate_file
from tests.conftest import write_jsonl

GOOD_CHAT = {
    "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]
}
TOOL_CHAT = {
    "messages": [
        {"role": "system", "content": "You can call tools."},
        {"role": "user", "content": "Weather in Oslo?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "weather", "arguments": {"city": "Oslo"}},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "name": "weather", "content": '{"temp": 3}'},
        {"role": "assistant", "content": "It is 3 degrees in Oslo."},
    ],
    "tools": [
        {"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}
    ],
}


def problems(report):
    return [(p.line, p.path, p.message) for p in report.problems]


def test_valid_file_including_tool_calls(tmp_path):
    f = write_jsonl(tmp_path / "a.jsonl", [GOOD_CHAT, TOOL_CHAT])
    r = validate_file(f)
    assert r.ok and r.kind == "chat" and r.records == 2 and r.invalid == 0


def test_each_bad_input_gets_its_own_message(tmp_path):
    f = tmp_path / "bad.jsonl"
    lines = [
        json.dumps(GOOD_CHAT),
        '{"messages": [',  # 2 malformed
        json.dumps({"messages": [{"role": "robot", "content": "x"}]}),  # 3 unknown role
        json.dumps({"messages": []}),  # 4 empty messages
        json.dumps({"messages": [{"role": "user", "content": 5}]}),  # 5 wrong type
        json.dumps({"messages": [{"role": "user"}]}),  # 6 missing content
        json.dumps({"conversation": []}),  # 7 missing field + unknown field
        "[1, 2]",  # 8 not an object
    ]
    f.write_bytes(("\n".join(lines) + "\n").encode() + b'{"messages": "\xff\xfe"}\n')  # 9 bad UTF-8
    r = validate_file(f, "chat")
    assert r.records == 9 and r.invalid == 8 and not r.ok
    got = problems(r)
    assert (2, "", "malformed JSON: unexpected end of data") in got
    assert (
        3,
        "$.messages[0].role",
        "'robot' is not one of ['system', 'user', 'assistant', 'tool']",
    ) in got
    assert (4, "$.messages", "[] should be non-empty") in got
    assert (5, "$.messages[0].content", "5 is not of type 'string', 'null'") in got
    assert (6, "$.messages[0]", "'content' is a required property") in got
    assert (7, "$", "'messages' is a required property") in got
    assert (7, "$", "unknown key 'conversation' (allowed: id, messages, tools, meta)") in got
    assert (8, "$", "expected a JSON object, got an array") in got
    assert (9, "", "invalid UTF-8 at byte 14 of the line") in got


def test_full_error_list_for_one_record(tmp_path):
    rec = {
        "messages": [{"role": "robot", "content": "x"}, {"role": "user", "content": 3}],
        "extra": 1,
    }
    r = validate_file(write_jsonl(tmp_path / "a.jsonl", [rec]), "chat")
    assert [p.path for p in r.problems] == ["$", "$.messages[0].role", "$.messages[1].content"]


def test_empty_and_blank_files_are_errors(tmp_path):
    (tmp_path / "e.jsonl").write_text("")
    (tmp_path / "b.jsonl").write_text("\n  \n")
    for name in ("e.jsonl", "b.jsonl"):
        with pytest.raises(ToolkitError, match=r"file is empty \(no records\)"):
            validate_file(tmp_path / name)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(ToolkitError, match="nope.jsonl: no such file"):
        validate_file(tmp_path / "nope.jsonl")
    with pytest.raises(ToolkitError, match="is a directory"):
        validate_file(tmp_path)


def test_a_100_mb_line_is_reported_without_loading_it(tmp_path):
    f = tmp_path / "huge.jsonl"
    with open(f, "wb") as out:
        out.write((json.dumps(GOOD_CHAT) + "\n").encode())
        out.write(b'{"messages": [{"role": "user", "content": "')
        chunk = b"x" * (1 << 20)
        for _ in range(100):
            out.write(chunk)
        out.write(b'"}]}\n')
        out.write((json.dumps(GOOD_CHAT) + "\n").encode())
    r = validate_file(f)
    assert r.records == 3 and r.invalid == 1
    assert problems(r) == [
        (2, "", "line is 100.0 MiB, over the 64 MiB limit per record (--max-line-mb)")
    ]


def test_duplicate_ids_are_reported(tmp_path):
    f = write_jsonl(tmp_path / "d.jsonl", [{**GOOD_CHAT, "id": "a"}, {**GOOD_CHAT, "id": "a"}])
    r = validate_file(f)
    assert problems(r) == [(2, "$.id", "duplicate id 'a' (first on line 1)")]


def test_kind_is_inferred_or_the_error_says_how_to_set_it(tmp_path):
    assert (
        validate_file(
            write_jsonl(tmp_path / "p.jsonl", [{"prompt": "p", "chosen": "a", "rejected": "b"}])
        ).kind
        == "preference"
    )
    with pytest.raises(
        ToolkitError,
        match=r"u.jsonl:1: cannot tell the record kind from the keys \(foo\); pass --schema KIND",
    ):
        validate_file(write_jsonl(tmp_path / "u.jsonl", [{"foo": 1}]))


def test_problem_list_is_capped_but_counts_are_exact(tmp_path):
    f = write_jsonl(tmp_path / "m.jsonl", [{"messages": []}] * 30)
    r = validate_file(f, "chat", max_problems=5)
    assert r.invalid == 30 and len(r.problems) == 5 and r.truncated


SAMPLES = {
    "chat": [GOOD_CHAT, TOOL_CHAT],
    "instruction": [{"instruction": "Add", "input": "1 2", "output": "3"}],
    "preference": [
        {"prompt": "Q", "chosen": "good", "rejected": "bad"},
        {
            "prompt": [{"role": "user", "content": "Q"}],
            "chosen": [{"role": "assistant", "content": "a"}],
            "rejected": [{"role": "assistant", "content": "b"}],
        },
    ],
    "unpaired": [{"prompt": "Q", "completion": "A", "label": True}],
    "eval_item": [
        {"prompt": "2+2?", "references": ["4"], "task": "math"},
        {"messages": [{"role": "user", "content": "hi"}], "expected": "comply"},
    ],
    "prediction": [{"item_id": "x1", "output": "4", "model": "tiny"}],
}
JUNK = [None, 0, -1, 1.5, "", "x", True, [], [1], {}, {"role": "user"}, {"a": 1}]


def _mutate(rec, rng):
    """Replace, drop or add one field somewhere in the record."""
    rec = copy.deepcopy(rec)
    node = rec
    while True:
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        if not keys:
            break
        k = rng.choice(keys)
        child = node[k]
        if isinstance(child, (dict, list)) and child and rng.random() < 0.6:
            node = child
            continue
        op = rng.random()
        if op < 0.6:
            node[k] = rng.choice(JUNK)
        elif op < 0.8 and isinstance(node, dict):
            del node[k]
        elif isinstance(node, dict):
            node[rng.choice(["extra", "role", "content", "meta", "tool_calls"])] = rng.choice(JUNK)
        break
    return rec


@pytest.mark.parametrize("kind", RECORD_KINDS)
def test_fast_verdicts_equal_jsonschema_verdicts(kind):
    rng = random.Random(kind)
    schema = load_schema(kind)
    ref = jsonschema.Draft7Validator(schema)
    v = RecordValidator(kind)
    n_invalid = 0
    for base in SAMPLES[kind]:
        assert v.is_valid(base) and ref.is_valid(base)
        for _ in range(400):
            rec = _mutate(base, rng)
            expected = ref.is_valid(rec)
            assert v.is_valid(rec) == expected, rec
            assert (v.errors(rec) == []) == expected, rec
            n_invalid += not expected
    assert n_invalid > 100  # the mutations do exercise the failure path


def test_a_misspelt_key_gets_a_did_you_mean(tmp_path):
    """Before: "Additional properties are not allowed ('outptu' was unexpected)", and for a
    misspelt required key only "'instruction' is a required property"."""
    f = tmp_path / "k.jsonl"
    f.write_text(
        '{"instruction": "a", "outptu": "b", "output": "c"}\n{"instrucion": "a", "output": "b"}\n'
    )
    got = problems(validate_file(f, "instruction"))
    assert (1, "$", "unknown key 'outptu'; did you mean 'output'?") in got
    assert (
        2,
        "$",
        "'instruction' is a required property; is 'instrucion' a misspelling of 'instruction'?",
    ) in got
