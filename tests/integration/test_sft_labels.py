"""SFT supervises only what the model should say: assistant turns of conversations and the
completion of prompt/completion rows, in the batches the trainer actually feeds the model,
packed (our row-packed collator) and unpacked.

Today this holds because TRL 1.16 folds its assistant/completion masks into ``labels``
before packing; if that changes, the row-packed collator must not lose them, and this test
is what notices."""

from __future__ import annotations

import pytest

from tests.integration.test_train import write_config

CHATS = [
    {
        "messages": [
            {"role": "system", "content": "You answer in one short sentence."},
            {"role": "user", "content": f"How do I keep starter number {i} alive?"},
            {"role": "assistant", "content": f"Feed starter {i} flour and water every day."},
            {"role": "user", "content": "And when I travel?"},
            {"role": "assistant", "content": f"Put starter {i} in the fridge."},
        ]
    }
    for i in range(8)
]
PAIRS = [
    {
        "prompt": f"Convert {i} degrees Celsius to Fahrenheit.",
        "chosen": f"It is {i * 9 / 5 + 32:g} degrees Fahrenheit.",
        "rejected": "No idea.",
    }
    for i in range(8)
]


@pytest.fixture(scope="module")
def project(tmp_path_factory, tiny_model):
    from datakit.store import DatasetStore

    root = tmp_path_factory.mktemp("labels")
    store = DatasetStore(root / "data")
    store.write("chats", CHATS, "chat")
    store.write("pairs", PAIRS, "preference")  # SFT trains on prompt -> chosen
    return {"root": root, "model": tiny_model}


def _fed_batches(project, monkeypatch, dataset: str, packing: bool) -> tuple[list, object]:
    """Train one step and keep every batch handed to the model's loss."""
    import trainkit.methods as methods
    from trainkit.run import run_train

    batches = []
    original = methods.builder

    def builder(method):
        build = original(method)

        def wrapped(stage, common, inputs):
            trainer = build(stage, common, inputs)
            compute_loss = trainer.compute_loss

            def recording(model, inputs, *a, **kw):
                batches.append({k: v.detach().clone() for k, v in inputs.items()})
                return compute_loss(model, inputs, *a, **kw)

            trainer.compute_loss = recording
            return trainer

        return wrapped

    monkeypatch.setattr(methods, "builder", builder)
    name = f"{dataset}-{'packed' if packing else 'plain'}"
    stages = [
        {
            "name": name,
            "method": "sft",
            "dataset": dataset,
            "args": {"max_steps": 2, "batch_size": 8, "max_length": 256, "packing": packing},
        }
    ]
    _, results = run_train(write_config(project, name, stages), quiet=True)
    assert results[0].status == "trained"
    from transformers import AutoTokenizer

    return batches, AutoTokenizer.from_pretrained(project["model"])


def _labelled_spans(batch, tok) -> list[str]:
    """The decoded text of every contiguous run of supervised tokens, batch row by row."""
    spans = []
    labels, ids = batch["labels"], batch["input_ids"]
    for row in range(labels.shape[0]):
        run: list[int] = []
        for pos in range(labels.shape[1]):
            if labels[row, pos] != -100:
                assert labels[row, pos] == ids[row, pos]  # labels are the tokens themselves
                run.append(int(ids[row, pos]))
            elif run:
                spans.append(tok.decode(run))
                run = []
        if run:
            spans.append(tok.decode(run))
    return spans


@pytest.mark.parametrize("packing", [False, True], ids=["unpacked", "packed"])
def test_only_assistant_turns_carry_labels(project, monkeypatch, packing):
    batches, tok = _fed_batches(project, monkeypatch, "chats", packing)
    assert batches
    if packing:
        assert "position_ids" in batches[0]  # the row-packed collator fed these
    spans = [s for b in batches for s in _labelled_spans(b, tok)]
    expected = {
        m["content"] + "<|end|>" for c in CHATS for m in c["messages"] if m["role"] == "assistant"
    }
    assert spans and {s.strip() for s in spans} <= expected, spans[:6]
    # Both assistant turns of a conversation are supervised, not only the last.
    assert any(s.strip().startswith("Feed starter") for s in spans)
    assert any(s.strip().startswith("Put starter") for s in spans)
    text = " ".join(spans)
    assert "How do I keep" not in text and "one short sentence" not in text


@pytest.mark.parametrize("packing", [False, True], ids=["unpacked", "packed"])
def test_only_completions_carry_labels(project, monkeypatch, packing):
    batches, tok = _fed_batches(project, monkeypatch, "pairs", packing)
    spans = [s.strip() for b in batches for s in _labelled_spans(b, tok)]
    completions = {p["chosen"] for p in PAIRS}
    assert spans
    for s in spans:
        # the completion and the end-of-turn token the template closes it with
        assert s.replace("<|end|>", "").strip() in completions, s
    assert not any("Convert" in s for s in spans)
