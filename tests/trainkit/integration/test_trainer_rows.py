"""What each method's trainer really tokenises is the chat template's rendering, token for
token (ORPO and CPO/SimPO added a BOS the template never emits and a second end token after
it); and ``datakit export --format trl`` writes exactly the rows trainkit trains on, which
TRL's own trainers load."""

from __future__ import annotations

import json

import pytest
import yaml

PAIRS = [
    {"prompt": f"Name a colour, number {i}.", "chosen": f"Blue, {i}.", "rejected": "No."}
    for i in range(4)
]
# UltraFeedback's shape: the answers repeat the user turn.
WHOLE = [
    {
        "prompt": p["prompt"],
        "chosen": [
            {"role": "user", "content": p["prompt"]},
            {"role": "assistant", "content": p["chosen"]},
        ],
        "rejected": [
            {"role": "user", "content": p["prompt"]},
            {"role": "assistant", "content": p["rejected"]},
        ],
    }
    for p in PAIRS
]


@pytest.fixture(
    scope="module",
    params=[
        "tiny_model",  # ChatML-like turns without BOS, ending "<|end|>\n"
        pytest.param("smollm2", marks=pytest.mark.smollm2),  # ChatML, BOS <|im_start|>
    ],
)
def project(request, tmp_path_factory):
    from datakit.store import DatasetStore

    root = tmp_path_factory.mktemp("rows")
    store = DatasetStore(root / "data")
    store.write("pairs", PAIRS, "preference")
    store.write("whole", WHOLE, "preference")
    return {"root": root, "model": request.getfixturevalue(request.param), "store": store}


def _trainer(project, method: str, dataset: str):
    from tests.trainkit.integration.test_train import stage_trainer
    from trainkit.config import plan

    args = {"max_length": 256, "packing": False} if method == "sft" else {"max_length": 256}
    cfg = {
        "data_root": str(project["root"] / "data"),
        "runs_root": str(project["root"] / "runs"),
        "train": {
            "base_model": str(project["model"]),
            "stages": [{"name": method, "method": method, "dataset": dataset, "args": args}],
        },
    }
    path = project["root"] / f"{method}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    trainer, _, tok = stage_trainer(plan(path).stages[0], project["store"])
    return trainer, tok


# Which token columns hold the whole sequence ("full"), the prompt, or the answer alone.
COLUMNS = {
    "sft": {"input_ids": "full:chosen"},
    "dpo": {
        "prompt_ids": "prompt",
        "chosen_ids": "answer:chosen",
        "rejected_ids": "answer:rejected",
    },
    "kto": {"prompt_ids": "prompt", "completion_ids": "answer:completion"},
    "orpo": {
        "prompt_input_ids": "prompt",
        "chosen_input_ids": "full:chosen",
        "rejected_input_ids": "full:rejected",
    },
    "simpo": {
        "prompt_input_ids": "prompt",
        "chosen_input_ids": "full:chosen",
        "rejected_input_ids": "full:rejected",
    },
    "reward": {"chosen_ids": "full:chosen", "rejected_ids": "full:rejected"},
}


@pytest.mark.parametrize("dataset", ["pairs", "whole"])
@pytest.mark.parametrize("method", list(COLUMNS))
def test_each_method_tokenises_the_template_and_nothing_else(project, method, dataset):
    trainer, tok = _trainer(project, method, dataset)
    pair = PAIRS[0]
    user = [{"role": "user", "content": pair["prompt"]}]
    prompt = tok.apply_chat_template(user, tokenize=False, add_generation_prompt=True)
    rows = [
        r
        for r in trainer.train_dataset
        if pair["prompt"]
        in tok.decode(
            r.get("prompt_ids")
            or r.get("prompt_input_ids")
            or r.get("input_ids")
            or r["chosen_ids"]
        )
    ]
    assert rows, "the probe pair is not in the trainer's dataset"
    row = rows[0]
    if method == "kto":  # the desirable row of the pair
        row = next(r for r in rows if r["label"])
    for column, what in COLUMNS[method].items():
        part, _, side = what.partition(":")
        answer = {
            "chosen": pair["chosen"],
            "completion": pair["chosen"],
            "rejected": pair["rejected"],
        }.get(side)
        full = (
            tok.apply_chat_template(
                user + [{"role": "assistant", "content": answer}], tokenize=False
            )
            if answer
            else None
        )
        expected = {
            "prompt": prompt,
            "full": full,
            "answer": full[len(prompt) :] if full else None,
        }[part]
        if part == "answer":
            assert full.startswith(prompt)
        assert tok.decode(row[column]) == expected, column
    if method == "sft":  # the whole conversation once: the prompt is not repeated
        assert tok.decode(row["input_ids"]).count(pair["prompt"]) == 1


@pytest.mark.parametrize("kind", ["chat", "instruction", "preference", "unpaired"])
def test_an_export_is_what_trainkit_trains_on_and_trl_loads_it(project, kind, tmp_path):
    """Each kind exported as trl: the same rows trainkit's conversion gives, loadable by the
    TRL trainer of its method (a mixed string prompt with message answers was not)."""
    import datasets
    from transformers import AutoModelForCausalLM
    from trl import DPOConfig, DPOTrainer, KTOConfig, KTOTrainer, SFTConfig, SFTTrainer

    from corekit.adapters import load_tokenizer
    from datakit.export import export_records
    from datakit.trainer_rows import EXPORT_METHOD
    from trainkit.data import load_stage_data

    records = {
        "chat": [
            {
                "messages": [
                    {"role": "user", "content": p["prompt"]},
                    {"role": "assistant", "content": p["chosen"]},
                ]
            }
            for p in PAIRS
        ],
        "instruction": [
            {"instruction": p["prompt"], "input": "", "output": p["chosen"]} for p in PAIRS
        ],
        # a string prompt with message answers: the mix TRL could not load
        "preference": [
            {
                "prompt": p["prompt"],
                "chosen": [{"role": "assistant", "content": p["chosen"]}],
                "rejected": [{"role": "assistant", "content": p["rejected"]}],
            }
            for p in PAIRS
        ],
        "unpaired": [
            {"prompt": p["prompt"], "completion": p["chosen"], "label": i % 2 == 0}
            for i, p in enumerate(PAIRS)
        ],
    }[kind]
    v = project["store"].write(f"exp-{kind}", records, kind)
    out = tmp_path / "trl.jsonl"
    export_records(v.records(), kind, "trl", out)
    exported = [json.loads(line) for line in out.read_text().splitlines()]
    tok = load_tokenizer(str(project["model"]))
    method = EXPORT_METHOD[kind]
    trained = load_stage_data(project["store"], method, v.ref, tok, 256).train.to_list()
    assert exported == trained
    ds = datasets.load_dataset("json", data_files=str(out), split="train")
    common = dict(
        output_dir=str(tmp_path / "o"),
        use_cpu=True,
        report_to="none",
        max_length=128,
        per_device_train_batch_size=2,
    )
    model = AutoModelForCausalLM.from_pretrained(project["model"])
    if method == "sft":
        trainer = SFTTrainer(
            model=model, args=SFTConfig(**common), train_dataset=ds, processing_class=tok
        )
    elif method == "dpo":
        trainer = DPOTrainer(
            model=model, args=DPOConfig(**common), train_dataset=ds, processing_class=tok
        )
    else:
        trainer = KTOTrainer(
            model=model, args=KTOConfig(**common), train_dataset=ds, processing_class=tok
        )
    assert len(trainer.train_dataset) == len(records)
