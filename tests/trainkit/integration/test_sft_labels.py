"""SFT supervises only what the model should say: assistant turns of conversations and the
completion of prompt/completion rows, in the batches the trainer actually feeds the model,
packed (our row-packed collator) and unpacked, on a chat template with generation markers
(the tiny model's) and on a real one without them (SmolLM2's: every assistant turn becomes
the completion of a prompt/completion row).

Today this holds because TRL 1.16 folds its assistant/completion masks into ``labels``
before packing; if that changes, the row-packed collator must not lose them, and this test
is what notices."""

from __future__ import annotations

import pytest

from tests.trainkit.integration.test_train import write_config

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


@pytest.fixture(
    scope="module",
    params=[
        "tiny_model",  # a chat template with {% generation %} markers
        pytest.param("smollm2", marks=pytest.mark.smollm2),  # a real one without them
    ],
)
def project(request, tmp_path_factory):
    from datakit.store import DatasetStore

    root = tmp_path_factory.mktemp("labels")
    store = DatasetStore(root / "data")
    store.write("chats", CHATS, "chat")
    store.write("pairs", PAIRS, "preference")  # SFT trains on prompt -> chosen
    return {"root": root, "model": request.getfixturevalue(request.param)}


def _fed_batches(project, monkeypatch, dataset: str, packing: bool) -> tuple[list, object]:
    """Train one step and keep every batch handed to the model's loss."""
    import trainkit.methods as methods
    from trainkit.stage import run_train

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
            "args": {"max_steps": 1, "batch_size": 8, "max_length": 256, "packing": packing},
        }
    ]
    _, results = run_train(write_config(project, name, stages), quiet=True)
    assert results[0].status == "trained"
    from transformers import AutoTokenizer

    return batches, AutoTokenizer.from_pretrained(project["model"])


def _labelled_spans(batch, tok) -> list[str]:
    """The text of every contiguous run of supervised tokens, batch row by row (special
    tokens dropped); each run must end its turn with the end-of-turn (eos) token."""
    spans = []
    labels, ids = batch["labels"], batch["input_ids"]
    position = batch.get("position_ids")

    def close(run: list[int]) -> None:
        assert tok.eos_token_id in run, tok.decode(run)  # the model learns to stop
        spans.append(tok.decode(run, skip_special_tokens=True).strip())

    for row in range(labels.shape[0]):
        run: list[int] = []
        for pos in range(labels.shape[1]):
            new_sample = position is not None and int(position[row, pos]) == 0
            if labels[row, pos] != -100 and not new_sample:
                assert labels[row, pos] == ids[row, pos]  # labels are the tokens themselves
                run.append(int(ids[row, pos]))
            elif run:
                close(run)
                run = []
        if run:
            close(run)
    return spans


@pytest.mark.parametrize("packing", [False, True], ids=["unpacked", "packed"])
def test_only_assistant_turns_carry_labels(project, monkeypatch, packing):
    batches, tok = _fed_batches(project, monkeypatch, "chats", packing)
    assert batches
    if packing:
        assert "position_ids" in batches[0]  # the row-packed collator fed these
    spans = [s for b in batches for s in _labelled_spans(b, tok)]
    expected = {m["content"] for c in CHATS for m in c["messages"] if m["role"] == "assistant"}
    assert spans and set(spans) <= expected, spans[:6]
    # Both assistant turns of a conversation are supervised, not only the last.
    assert any(s.startswith("Feed starter") for s in spans)
    assert any(s.startswith("Put starter") for s in spans)
    text = " ".join(spans)
    assert "How do I keep" not in text and "one short sentence" not in text


@pytest.mark.parametrize("packing", [False, True], ids=["unpacked", "packed"])
def test_only_completions_carry_labels(project, monkeypatch, packing):
    batches, tok = _fed_batches(project, monkeypatch, "pairs", packing)
    spans = [s for b in batches for s in _labelled_spans(b, tok)]
    completions = {p["chosen"] for p in PAIRS}
    assert spans
    for s in spans:
        assert s in completions, s
    assert not any("Convert" in s for s in spans)
