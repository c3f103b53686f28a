"""The record views every consumer reads records through, and their one rule for
conversations: the prompt is everything before the final assistant turn."""

import pytest

from datakit.records import (
    conversation,
    exchange,
    instruction_text,
    prompt_messages,
    response_text,
)

SYS = {"role": "system", "content": "Be brief."}
U1 = {"role": "user", "content": "Hi?"}
A1 = {"role": "assistant", "content": "Hello."}
U2 = {"role": "user", "content": "And the weather?"}
A2 = {"role": "assistant", "content": "Rain."}


def test_instruction_views():
    rec = {"instruction": "Convert it.", "input": "25 C", "output": "77 F"}
    assert instruction_text(rec) == "Convert it.\n\n25 C"
    assert instruction_text({"instruction": "Say hi.", "input": ""}) == "Say hi."
    assert prompt_messages(rec) == [{"role": "user", "content": "Convert it.\n\n25 C"}]
    assert exchange(rec) == ("Convert it.\n\n25 C", "77 F")
    assert conversation(rec) == [
        {"role": "user", "content": "Convert it.\n\n25 C"},
        {"role": "assistant", "content": "77 F"},
    ]


def test_multi_turn_prompt_is_everything_before_the_final_assistant_turn():
    rec = {"messages": [SYS, U1, A1, U2, A2]}
    assert prompt_messages(rec) == [SYS, U1, A1, U2]
    assert exchange(rec) == ("And the weather?", "Rain.")
    open_ended = {"messages": [SYS, U1, A1, U2]}  # no final answer: all of it is prompt
    assert prompt_messages(open_ended) == [SYS, U1, A1, U2]
    assert exchange(open_ended) == ("And the weather?", "")
    tool = {"role": "tool", "content": '{"t": 9}'}
    calls = {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "w"}}]}
    with_tools = {"messages": [U2, calls, tool, A2]}
    assert prompt_messages(with_tools) == [U2, calls, tool]  # the tool exchange is context
    assert exchange(with_tools) == ("And the weather?", "Rain.")


def test_prompt_fields():
    assert prompt_messages({"prompt": "Q?", "references": ["A"]}) == [
        {"role": "user", "content": "Q?"}
    ]
    assert prompt_messages({"prompt": [SYS, U1], "chosen": "x", "rejected": "y"}) == [SYS, U1]
    # views copy: changing the result never changes the record
    rec = {"messages": [U1, A1]}
    prompt_messages(rec)[0]["content"] = "changed"
    assert rec["messages"][0]["content"] == "Hi?"


def test_the_response_of_every_kind_is_read_one_way():
    """One response view for the filter, the stats and the review: an instruction's output,
    a conversation's final assistant turn, a preference's chosen answer, an unpaired
    completion (text or turns: the last assistant turn); None where there is none."""
    assert response_text({"instruction": "Say hi.", "output": "Hi."}) == "Hi."
    assert response_text({"messages": [SYS, U1, A1, U2, A2]}) == "Rain."
    assert response_text({"messages": [SYS, U1, A1, U2]}) is None  # ends with the user
    assert response_text({"prompt": "Q?", "chosen": "yes", "rejected": "no"}) == "yes"
    calls = {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "w"}}]}
    tool = {"role": "tool", "content": '{"t": 9}'}
    assert response_text({"prompt": "Q?", "chosen": [calls, tool, A2], "rejected": "no"}) == "Rain."
    assert response_text({"prompt": "Q?", "completion": [A1], "label": True}) == "Hello."
    assert response_text({"prompt": "Q?", "completion": "Sure.", "label": False}) == "Sure."
    assert response_text({"prompt": "Q?", "references": ["A"]}) is None  # an eval item


def test_the_filter_stats_and_review_read_the_same_response():
    from datakit.ops import OpContext
    from datakit.ops.filter import run as quality_filter
    from datakit.records import editable_response
    from datakit.stats import _texts

    pair = {"prompt": "Q?", "chosen": [U1, A2], "rejected": "Nope."}
    chat = {"messages": [U1, A2]}
    for rec in (pair, chat):
        kept = quality_filter([rec], OpContext(), regex="^Rain\\.$")
        assert kept == [rec] and _texts(rec)[1] == "Rain."
    assert editable_response(chat) == "Rain." and editable_response(pair) is None


def test_with_response_rewrites_the_one_answer_of_every_kind_and_refuses_a_pair():
    """One rewrite for the review UI's edits and the filter's cuts: the content id goes."""
    from datakit.records import response_text, with_response

    recs = [
        {"id": "x", "instruction": "Say hi.", "output": "Hi."},
        {"id": "x", "messages": [SYS, U1, A1]},
        {"id": "x", "prompt": "Q?", "completion": "Sure.", "label": False},
        {"id": "x", "prompt": "Q?", "completion": [A1], "label": True},
    ]
    for rec in recs:
        out = with_response(rec, "New.")
        assert response_text(out) == "New." and "id" not in out and rec["id"] == "x"
        assert set(out) == set(rec) - {"id"}
    assert with_response(recs[1], "New.")["messages"][:2] == [SYS, U1]
    for bad in ({"prompt": "Q?", "chosen": "a", "rejected": "b"}, {"messages": [U1]}):
        with pytest.raises(ValueError):
            with_response(bad, "New.")


def test_first_copies_keeps_the_first_of_each_key_and_names_it_for_the_rest():
    """The one exact-duplicate helper (import, step outputs, the dedup op's exact method)."""
    from datakit.records import FirstCopies

    copies = FirstCopies()
    got = [copies.copy_of(k, where) for k, where in [("a", 1), ("b", 2), ("a", 3), ("a", 4)]]
    assert got == [None, None, 1, 1]
