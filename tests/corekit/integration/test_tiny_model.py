"""The tiny model loads in every library the toolchain drives, and stored dataset versions
go into TRL trainers without conversion."""

import hashlib
import math

import pytest

from corekit.tiny import init_tiny
from datakit.demo import tiny_corpus
from datakit.store import DatasetStore


def _digest(path):
    return {
        f: hashlib.sha256((path / f).read_bytes()).hexdigest()
        for f in ("model.safetensors", "tokenizer.json", "config.json")
    }


def test_build_is_deterministic_per_seed(tmp_path, tiny_model):
    init_tiny(tmp_path / "again", tiny_corpus(0), seed=0)
    init_tiny(tmp_path / "other", tiny_corpus(1), seed=1)
    assert _digest(tmp_path / "again") == _digest(tiny_model)
    assert (
        _digest(tmp_path / "other")["model.safetensors"] != _digest(tiny_model)["model.safetensors"]
    )


def test_transformers_generate_and_chat_template(tiny_model):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    assert model.config.head_dim >= 32  # vLLM's CPU attention refuses smaller heads
    msgs = [
        {"role": "user", "content": "Sort the numbers"},
        {"role": "assistant", "content": "1, 2"},
    ]
    enc = tok.apply_chat_template(msgs, return_dict=True, return_assistant_tokens_mask=True)
    mask = enc["assistant_masks"]
    assistant_ids = [i for i, m in zip(enc["input_ids"], mask, strict=True) if m]
    assert tok.decode(assistant_ids) == "1, 2<|end|>"  # assistant-only loss covers text + eos
    prompt = tok.apply_chat_template(
        msgs[:1], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    out = model.generate(**prompt, max_new_tokens=6, do_sample=False)
    assert out.shape[1] > prompt["input_ids"].shape[1]
    with torch.no_grad():
        loss = model(
            **tok("Feed the starter daily.", return_tensors="pt"),
            labels=tok("Feed the starter daily.", return_tensors="pt")["input_ids"],
        ).loss
    assert 5.0 < loss.item() < 9.0  # random init over a 1024-token vocabulary: about ln(1024) = 6.9


def test_peft_lora_trains(tiny_model):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny_model),
        LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM"),
    )
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    batch = tok("Rye and Shine.", return_tensors="pt")
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for _ in range(5):
        loss = model(**batch, labels=batch["input_ids"]).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_bitsandbytes_4bit_loads_on_cpu(tiny_model):
    import bitsandbytes as bnb
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    q = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.float32,
    )
    model = AutoModelForCausalLM.from_pretrained(
        tiny_model, quantization_config=q, device_map="cpu"
    )
    n4 = sum(isinstance(m, bnb.nn.Linear4bit) for m in model.modules())
    assert n4 == 2 * 7  # q, k, v, o, gate, up, down in each of the two layers
    tok = AutoTokenizer.from_pretrained(tiny_model)
    with torch.no_grad():
        logits = model(**tok("hello", return_tensors="pt")).logits
    assert torch.isfinite(logits).all()


def _chat_rows(n):
    return [
        {
            "messages": [
                {"role": "user", "content": f"Add {i} and {i + 1}."},
                {"role": "assistant", "content": f"The sum is {2 * i + 1}."},
            ]
        }
        for i in range(n)
    ]


def _changed(before, model):
    return any(
        not (before[n] == p.detach()).all() for n, p in model.named_parameters() if n in before
    )


def test_trl_sft_on_a_stored_chat_version(tmp_path, tiny_model):
    from datasets import load_dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    v = DatasetStore(tmp_path / "data").write("chat", _chat_rows(16), "chat")
    ds = load_dataset("json", data_files=str(v.records_path), split="train")
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    tok = AutoTokenizer.from_pretrained(tiny_model)
    args = SFTConfig(
        output_dir=str(tmp_path / "out"),
        max_steps=3,
        per_device_train_batch_size=4,
        learning_rate=5e-3,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        max_length=64,
        assistant_only_loss=True,
        seed=0,
    )
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=ds,
        processing_class=tok,
        peft_config=LoraConfig(
            r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM"
        ),
    )
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(losses) == 3 and all(loss > 0 for loss in losses)
    assert _changed(before, trainer.model)


@pytest.mark.numeric
def test_trl_dpo_on_a_preference_version(tmp_path, tiny_model):
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    from datakit.export import export_records

    rows = [
        {
            "prompt": [{"role": "user", "content": f"Add {i} and {i + 1}."}],
            "chosen": [{"role": "assistant", "content": f"{2 * i + 1}"}],
            "rejected": [{"role": "assistant", "content": "I cannot."}],
        }
        for i in range(8)
    ]
    v = DatasetStore(tmp_path / "data").write("prefs", rows, "preference")
    exported = tmp_path / "dpo.jsonl"
    export_records(v.records(), "preference", "trl", exported)
    tok = AutoTokenizer.from_pretrained(tiny_model)
    for source in (v.records_path, exported):  # both the stored version and the export train
        ds = load_dataset("json", data_files=str(source), split="train")
        model = AutoModelForCausalLM.from_pretrained(tiny_model)
        args = DPOConfig(
            output_dir=str(tmp_path / "dpo"),
            max_steps=2,
            per_device_train_batch_size=4,
            learning_rate=5e-3,
            logging_steps=1,
            save_strategy="no",
            report_to=[],
            use_cpu=True,
            max_length=64,
            beta=0.1,
            seed=0,
        )
        trainer = DPOTrainer(model=model, args=args, train_dataset=ds, processing_class=tok)
        before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
        trainer.train()
        losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
        # DPO starts at -log(sigmoid(0)) = ln 2 (the policy is the reference); 0.01 is far
        # wider than float32 rounding of the log-probabilities on any kernel.
        assert len(losses) == 2 and abs(losses[0] - math.log(2)) < 0.01
        assert _changed(before, trainer.model)
