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


def _fed_batches(
    project, monkeypatch, dataset: str, packing: bool, tag: str = "", params: dict | None = None
) -> tuple[list, object]:
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
    name = f"{dataset}-{'packed' if packing else 'plain'}{tag}"
    stages = [
        {
            "name": name,
            "method": "sft",
            "dataset": dataset,
            "args": {"max_steps": 1, "batch_size": 8, "max_length": 256, "packing": packing},
            **({"params": params} if params else {}),
        }
    ]
    _, results = run_train(write_config(project, name, stages), quiet=True)
    assert results[0].status == "trained"
    from transformers import AutoTokenizer

    return batches, AutoTokenizer.from_pretrained(project["model"])


def _runs(batch) -> list[list[int]]:
    """Every contiguous run of supervised token ids, row by row (a packed sample starts a
    new run); labels are the tokens themselves."""
    runs = []
    labels, ids, position = batch["labels"], batch["input_ids"], batch.get("position_ids")
    for row in range(labels.shape[0]):
        run: list[int] = []
        for pos in range(labels.shape[1]):
            if run and (
                labels[row, pos] == -100 or (position is not None and position[row, pos] == 0)
            ):
                runs.append(run)
                run = []
            if labels[row, pos] != -100:
                assert labels[row, pos] == ids[row, pos]
                run.append(int(ids[row, pos]))
        if run:
            runs.append(run)
    return runs


def _labelled_spans(batch, tok) -> list[str]:
    """The text of every run of supervised tokens (special tokens dropped); each run must
    end its turn with the end-of-turn (eos) token: the model learns to stop."""
    spans = []
    for run in _runs(batch):
        assert tok.eos_token_id in run, tok.decode(run)
        spans.append(tok.decode(run, skip_special_tokens=True).strip())
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


@pytest.mark.parametrize("packing", [False, True], ids=["unpacked", "packed"])
def test_opening_loss_supervises_the_first_tokens_of_each_answer(project, monkeypatch, packing):
    """params.opening_loss_tokens: 2 keeps the loss on each answer's first two tokens, the
    same tokens the full loss starts with, and on nothing else."""
    import torch

    full, tok = _fed_batches(project, monkeypatch, "chats", packing, tag="-full")
    monkeypatch.undo()  # the next run records into its own list only
    cut, _ = _fed_batches(
        project, monkeypatch, "chats", packing, tag="-open", params={"opening_loss_tokens": 2}
    )
    full_runs = [r for b in full for r in _runs(b)]
    cut_runs = [r for b in cut for r in _runs(b)]
    assert all(len(r) > 2 for r in full_runs)  # the answers are longer than the opening
    # One opening per answer, in the same order (one step over the same eight
    # conversations), each the first two tokens of its answer.
    assert [r[:2] for r in full_runs] == cut_runs
    answers = [m["content"] for c in CHATS for m in c["messages"] if m["role"] == "assistant"]
    openings = [tok.decode(r).strip() for r in cut_runs]
    assert all(any(a.startswith(o) for a in answers) for o in openings), openings
    assert {o[0] for o in openings} == {"F", "P"}  # both turns of a conversation
    for a, b in zip(full, cut, strict=True):  # the ids fed are unchanged: only the loss is cut
        assert torch.equal(a["input_ids"], b["input_ids"])


def test_opening_labels_splits_runs_at_prompts_and_at_packed_sample_starts():
    """A run ends at an unlabelled token or where position ids restart (two packed samples
    whose labels touch, as rows without a prompt do); each keeps its own opening."""
    import torch

    from trainkit.packing import opening_labels

    x = -100
    labels = torch.tensor([[x, x, 5, 6, 7, x, 9, 10, 11], [1, 2, 3, 4, 5, 6, 7, 8, 9]])
    positions = torch.tensor([[0, 1, 2, 3, 4, 0, 1, 2, 3], [0, 1, 2, 0, 1, 2, 3, 4, 5]])
    assert opening_labels(labels, 2).tolist() == [
        [x, x, 5, 6, x, x, 9, 10, x],
        [1, 2, x, x, x, x, x, x, x],  # without position ids: one run
    ]
    assert opening_labels(labels, 2, positions).tolist() == [
        [x, x, 5, 6, x, x, 9, 10, x],
        [1, 2, x, 4, 5, x, x, x, x],  # the second sample starts at position 0
    ]
    assert torch.equal(opening_labels(labels, 9, positions), labels)  # all fit: unchanged


def _count_head_rows(monkeypatch) -> list[int]:
    """Rows (token positions) each call of TRL's fused LM head projects."""
    import trl.trainer.utils as utils

    rows: list[int] = []
    original = utils._ChunkedLogProbFunction

    class Recording:
        @staticmethod
        def apply(hidden, *args):
            rows.append(int(hidden.shape[0]))
            return original.apply(hidden, *args)

    monkeypatch.setattr(utils, "_ChunkedLogProbFunction", Recording)
    return rows


@pytest.mark.parametrize("packing", [False, True], ids=["unpacked", "packed"])
def test_the_loss_head_projects_only_labelled_positions(project, monkeypatch, packing):
    """On CPU TRL's fused head would project every position (prompt and padding too) and
    throw those away; trainkit.lm_head makes it project the labelled ones only."""
    rows = _count_head_rows(monkeypatch)
    batches, _ = _fed_batches(project, monkeypatch, "pairs", packing, tag="-head")
    labelled = [int((b["labels"][:, 1:] != -100).sum()) for b in batches]
    positions = [b["labels"][:, 1:].numel() for b in batches]
    assert rows == labelled, (rows, labelled)
    # The batches held prompt positions to skip.
    assert all(n < p for n, p in zip(labelled, positions, strict=True))


@pytest.mark.numeric
def test_the_compact_head_gives_the_plain_loss_and_gradients(tiny_model):
    """Scoring only the labelled positions changes the work, not the result: the loss and
    its gradients equal those of plain full logits + cross-entropy, up to float32 rounding."""
    import torch
    from transformers import AutoModelForCausalLM
    from trl.trainer.utils import add_fused_lm_head

    from trainkit.lm_head import score_labelled_positions_only

    assert score_labelled_positions_only()
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    add_fused_lm_head(model)
    vocab = model.config.vocab_size
    ids = torch.randint(3, vocab, (3, 24))
    labels = ids.clone()
    labels[:, :15] = -100  # a prompt
    labels[2, 20:] = -100  # padding
    fused = model(input_ids=ids, labels=labels, fused_lm_head=True).loss
    fused.backward()
    fused_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    logits = model(input_ids=ids).logits[:, :-1]
    plain = torch.nn.functional.cross_entropy(logits.reshape(-1, vocab), labels[:, 1:].reshape(-1))
    plain.backward()
    torch.testing.assert_close(fused, plain, rtol=1e-5, atol=1e-6)
    for a, p in zip(fused_grads, model.parameters(), strict=True):
        # float32 rounding of sums in another order: relative to the tensor's own scale
        scale = float(p.grad.abs().max())
        torch.testing.assert_close(a, p.grad, rtol=1e-4, atol=1e-5 * scale)
