"""Data problems are caught before training, with one clear line each (real tokenizer)."""

from __future__ import annotations

import json
import shutil

import pytest

from corekit.errors import ToolkitError
from trainkit.data import load_stage_data


@pytest.fixture(scope="module")
def tok(tiny_model):
    from corekit.adapters import load_tokenizer

    return load_tokenizer(str(tiny_model))


CHAT = [
    {"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]}
    for i in range(4)
]


def test_empty_dataset(store, tok):
    store.write("empty", [], "chat")
    with pytest.raises(ToolkitError, match=r"^empty@v1: no training rows; the dataset is empty$"):
        load_stage_data(store, "sft", "empty", tok, 64)


def test_wrong_kind_for_the_method(store, tok):
    store.write("c", CHAT, "chat")
    with pytest.raises(ToolkitError) as e:
        load_stage_data(store, "dpo", "c", tok, 64)
    assert str(e.value) == "c@v1: dpo trains on preference records, this version holds chat records"


def test_sequences_all_longer_than_max_length(store, tok):
    long = [
        {
            "messages": [
                {"role": "user", "content": "word " * 200},
                {"role": "assistant", "content": "ok"},
            ]
        }
    ]
    store.write(
        "long",
        long * 1
        + [
            {
                "messages": [
                    {"role": "user", "content": "x " * 150},
                    {"role": "assistant", "content": "y"},
                ]
            }
        ],
        "chat",
    )
    with pytest.raises(ToolkitError) as e:
        load_stage_data(store, "sft", "long", tok, 32)
    assert str(e.value).startswith(
        "long@v1: all 2 sequences are longer than args.max_length=32 tokens (shortest "
    )
    # Every answer cut but every prompt whole: training on the answers' openings (the
    # demo's safety-sft stage), allowed; the same answers behind a prompt that does not fit
    # are the error above.
    opening = [
        {
            "messages": [
                {"role": "user", "content": greeting},
                {"role": "assistant", "content": "word " * 80},
            ]
        }
        for greeting in ("Hi", "Hello")
    ]
    # a longer conversation: its first answer keeps tokens though the last one's prompt is cut
    opening.append(
        {
            "messages": [
                *opening[0]["messages"],
                {"role": "user", "content": "x " * 40},
                {"role": "assistant", "content": "y"},
            ]
        }
    )
    store.write("openings", opening, "chat")
    data = load_stage_data(store, "sft", "openings", tok, 32)
    assert data.stats["truncated"] == data.stats["sequences"] == len(opening)
    store.write(
        "cut-prompts",
        [{"messages": [{"role": "user", "content": "x " * 40}, opening[0]["messages"][1]]}],
        "chat",
    )
    with pytest.raises(ToolkitError, match="all 1 sequences are longer"):
        load_stage_data(store, "sft", "cut-prompts", tok, 32)
    # Some too long is a warning and a stat, not an error.
    store.write("mixed", CHAT + long, "chat")
    data = load_stage_data(store, "sft", "mixed", tok, 32)
    assert data.stats["truncated"] == 1 and data.stats["sequences"] == 5


def test_missing_chat_template(store, tiny_model, tmp_path):
    from corekit.adapters import load_tokenizer

    plain = tmp_path / "plain"
    shutil.copytree(tiny_model, plain)
    (plain / "chat_template.jinja").unlink(missing_ok=True)
    cfg = json.loads((plain / "tokenizer_config.json").read_text())
    cfg.pop("chat_template", None)
    (plain / "tokenizer_config.json").write_text(json.dumps(cfg))
    tok = load_tokenizer(str(plain))
    assert not tok.chat_template
    store.write("c", CHAT, "chat")
    with pytest.raises(ToolkitError, match="no chat template"):
        load_stage_data(store, "sft", "c", tok, 64)
    # Plain-text preference data needs no template: it stays in TRL's standard format.
    store.write("p", [{"prompt": "a", "chosen": "b", "rejected": "c"}], "preference")
    data = load_stage_data(store, "dpo", "p", tok, 64)
    assert data.train[0] == {"prompt": "a", "chosen": "b", "rejected": "c"}


def test_conversions(store, tok):
    store.write("p", [{"prompt": "q", "chosen": "good", "rejected": "bad"}], "preference")
    kto = load_stage_data(store, "kto", "p", tok, 64).train
    assert [r["label"] for r in kto] == [True, False]
    assert kto[0]["prompt"] == [{"role": "user", "content": "q"}]
    assert kto[1]["completion"] == [{"role": "assistant", "content": "bad"}]
    sft = load_stage_data(store, "sft", "p", tok, 64).train
    assert sft[0] == {
        "prompt": [{"role": "user", "content": "q"}],
        "completion": [{"role": "assistant", "content": "good"}],
    }
    store.write("u", [{"prompt": "q", "completion": "bad", "label": False}], "unpaired")
    with pytest.raises(ToolkitError, match=r"no training rows \(no record has label true\)"):
        load_stage_data(store, "sft", "u", tok, 64)
    store.write("c", CHAT, "chat")
    rl = load_stage_data(store, "rl", "c", tok, 64).train
    assert rl[0]["prompt"] == [{"role": "user", "content": "q0"}]
    split = load_stage_data(store, "sft", "c", tok, 64, eval_split=0.25)
    assert (split.stats["train_rows"], split.stats["eval_rows"]) == (3, 1)


@pytest.mark.numeric
def test_row_packed_samples_do_not_see_each_other(tiny_model, tok):
    import torch
    from transformers import AutoModelForCausalLM

    from trainkit.packing import RowPackedCollator

    model = AutoModelForCausalLM.from_pretrained(tiny_model).eval()
    a = tok("Feed the starter on a regular schedule.")["input_ids"]
    b = tok("Convert the temperature to Fahrenheit please.")["input_ids"]
    batch = RowPackedCollator(tok.pad_token_id)(
        [
            {"input_ids": a + b, "seq_lengths": [len(a), len(b)]},
            {"input_ids": b, "seq_lengths": [len(b)]},
        ]
    )
    assert "attention_mask" not in batch and batch["input_ids"].shape == (2, len(a) + len(b))
    with torch.no_grad():
        packed = model(
            input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False
        ).logits
        alone_a = model(input_ids=torch.tensor([a])).logits
        alone_b = model(input_ids=torch.tensor([b])).logits
    # Each sample gets the logits it gets on its own: nothing leaks across samples. Equal up
    # to float32 rounding (other sequence lengths take other matmul blockings); a leak moves
    # logits by whole units. (use_cache=False as in TRL's training forward: with a cache
    # transformers skips the check.)
    assert torch.allclose(packed[0, : len(a)], alone_a[0], atol=1e-4)
    assert torch.allclose(packed[0, len(a) :], alone_b[0], atol=1e-4)
    assert torch.allclose(packed[1, : len(b)], alone_b[0], atol=1e-4)
    # No loss on each sample's first token or on the padded tail.
    labels = batch["labels"]
    assert labels[0, 0] == -100 and labels[0, len(a)] == -100 and labels[0, 1] == a[1]
    assert (labels[1, len(b) :] == -100).all()


TOOL_CHAT = [
    {
        "messages": [
            {"role": "user", "content": f"Weather in city {i}?"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": {"city": f"c{i}"}},
                    }
                ],
            },  # fmt: skip
            {"role": "tool", "content": '{"temp": 3}'},
            {"role": "assistant", "content": "It is 3 degrees."},
        ]
    }
    for i in range(4)
]


def test_tool_calls_are_trained_as_text_where_the_template_cannot_render_them(store, tok):
    """A template without tool support would render the calling turn empty; trainkit folds
    the calls into the turn's text (and says how many). One that renders them keeps them."""
    import copy

    store.write("tools", TOOL_CHAT, "chat")
    plain = copy.copy(tok)
    plain.chat_template = tok.chat_template.replace("message['tool_calls']", "message['calls_x']")
    data = load_stage_data(store, "sft", "tools", plain, 512)
    assert data.stats["tool_calls_as_text"] == 4
    turn = data.train[0]["messages"][1]
    assert (
        turn["content"]
        == '<tool_call>{"name": "get_weather", "arguments": {"city": "c0"}}</tool_call>'
    )
    assert "<tool_call>" in plain.apply_chat_template(data.train[0]["messages"], tokenize=False)
    # the tiny model's own template renders tool_calls: rows kept as they are
    kept = load_stage_data(store, "sft", "tools", tok, 512)
    assert "tool_calls_as_text" not in kept.stats
    assert kept.train[0]["messages"][1]["tool_calls"]
