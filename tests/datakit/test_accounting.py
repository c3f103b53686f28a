"""Every input is accounted for: for every op, run through the step runner, the stored
version and its rejects.jsonl add up to what went in, by the op's own rule.

The engine is scripted and unkind on purpose: some requests fail, some completions are cut
off at max_tokens, some repeat an earlier answer, so every drop path is taken."""

import json
import random

import pytest

from corekit.engines import CachedEngine, Completion, EngineSpec, Result
from corekit.engines.pool import EnginePool
from datakit.ops import OPS
from datakit.ops.self_instruct import split_tasks
from datakit.ops.step import run_step

SPEC = EngineSpec("openai", "m", {"base_url": "http://127.0.0.1:9/v1"})


class Unkind:
    """Answers every kind of request plausibly, and fails or truncates some of them."""

    backend, model = "scripted", "unkind"

    def __init__(self, seed: int = 0):
        self.rng = random.Random(seed)
        self.log = []  # (request, result) for every request answered

    def _text(self, r):
        if r.choice:
            return self.rng.choice(r.choice)
        if r.json_schema:
            return json.dumps({c: self.rng.randint(1, 5) for c in r.json_schema["required"]})
        prompt = r.prompt if r.prompt is not None else r.messages[-1]["content"]
        if prompt.endswith("Task 9:"):
            k = self.rng.randint(1, 3)
            words = ["Describe", "List", "Explain", "Compare", "Name", "Rank"]
            return "\nTask 10: ".join(
                f"{self.rng.choice(words)} the {self.rng.randint(0, 40)} things about topic"
                f" {self.rng.randint(0, 9999)} here."
                for _ in range(k)
            )
        if "Class label:" in prompt[-20:]:
            return " yes\nInput: some input"
        if prompt.endswith("Input:"):
            return " <none>\nOutput: an answer"
        return self.rng.choice(["Answer one.", "Answer two.", "Answer three.", "Answer one."])

    def generate(self, requests):
        out = []
        for r in requests:
            roll = self.rng.random()
            if roll < 0.1:
                res = Result([], error="scripted failure")
            else:
                comps = []
                for _ in range(r.n):
                    text = self._text(r)
                    cut = not r.choice and not r.json_schema and self.rng.random() < 0.1
                    comps.append(Completion(text, "length" if cut else "stop", 3))
                res = Result(comps, 5)
            self.log.append((r, res))
            out.append(res)
        return out

    def close(self):
        pass


INSTRUCTIONS = [
    {"instruction": f"Tell me fact number {i} about rivers.", "input": "", "output": f"Fact {i}."}
    for i in range(12)
]
CHATS = [
    {
        "messages": [
            {"role": "user", "content": f"Question {i}?"},
            {"role": "assistant", "content": f"Answer {i}."},
        ],
        "meta": {"judge": {"quality": (i % 4) / 3}} if i % 5 else {},
    }
    for i in range(12)
]
# Several sampled answers per prompt, refusing or not; some prompts have no contrast, one
# says nothing about what is expected.
_REFUSE, _HELP = "I'm sorry, but I can't help with that.", "Sure: first, preheat the oven."
ANSWERS = [
    {
        "messages": [
            {"role": "user", "content": f"Prompt {p}?"},
            {"role": "assistant", "content": f"{text} ({k})"},
        ],
        "meta": {"sample": k, **({"expected": ["refuse", "comply"][p % 3]} if p % 3 != 2 else {})},
    }
    for p in range(6)
    for k, text in enumerate([_REFUSE, _HELP, _HELP] if p < 4 else [_HELP, _HELP])
]


def _run(store, tmp_path, op, kind, records, params):
    store.write("src", records, kind)
    inputs = "src"
    if op == "mix":  # two inputs
        store.write("other", [{**r, "output": r["output"] + " (other)"} for r in records], kind)
        inputs = ["src", "other"]
    engine = Unkind()

    class Pool(EnginePool):
        def get(self, spec, batch_size=256, where="engine"):
            return CachedEngine(engine, quiet=True)

    engines = {"engine": SPEC} if op not in ("filter", "behaviour_pairs") else {}
    res = run_step(store, "out", op, inputs, params, engines, Pool(tmp_path), quiet=True)
    out = [r for v in res.versions.values() for r in v.records()]
    rejects = [json.loads(x) for x in (res.version.path / "rejects.jsonl").read_text().splitlines()]
    drops = res.version.manifest()["stats"]["drops"]
    # The manifest's counts by reason are exactly the rejects file's rows.
    counted: dict[str, int] = {}
    for r in rejects:
        counted[r["reason"]] = counted.get(r["reason"], 0) + 1
    assert drops == counted
    return out, rejects, engine


# op -> (kind, records, params)
CASES = {
    "respond": ("instruction", INSTRUCTIONS, {"max_tokens": 16}),
    "distill": ("instruction", INSTRUCTIONS, {"max_tokens": 16}),
    "critique_revise": ("chat", CHATS, {}),
    "filter": ("chat", CHATS, {"min_quality": 0.5}),
    "judge": ("chat", CHATS, {}),
    "augment": ("instruction", INSTRUCTIONS, {"variants": 3, "min_similarity": 0.0}),
    "evol_instruct": ("instruction", INSTRUCTIONS, {"rounds": 2}),
    "preferences": ("instruction", INSTRUCTIONS, {"samples_per_temperature": 2}),
    "dedup": (
        "instruction",
        INSTRUCTIONS[:8]
        + [{**r, "output": r["output"] + " indeed"} for r in INSTRUCTIONS[:3]]
        + [{**INSTRUCTIONS[0], "instruction": INSTRUCTIONS[0]["instruction"] + "!"}],
        {"method": "near", "threshold": 0.8},
    ),
    "mix": ("instruction", INSTRUCTIONS, {"weights": [0.75, 0.25], "total": 8}),
    "split": ("instruction", INSTRUCTIONS, {"test": 0.25}),
    "behaviour_pairs": ("chat", ANSWERS, {}),
    "self_instruct": (
        "instruction",
        INSTRUCTIONS,
        {"num_instructions": 10, "prompts_per_round": 6, "max_rounds": 3, "rouge_threshold": 0.9},
    ),
}


def test_every_op_is_covered():
    assert set(CASES) == set(OPS)


@pytest.mark.parametrize("op", sorted(CASES))
def test_inputs_equal_outputs_plus_rejects(store, tmp_path, op, monkeypatch):
    if op == "augment":  # similarity without loading the embedding model in a unit test
        monkeypatch.setattr(
            "datakit.ops.augment.similarities", lambda a, b, model=None: [0.8] * len(a)
        )
    kind, records, params = CASES[op]
    out, rejects, engine = _run(store, tmp_path, op, kind, records, params)
    n = len(records)
    rec_rejects = [r for r in rejects if r.get("unit") != "sample"]
    if op in ("judge", "split"):  # these drop nothing (a failed judgement stays in meta.judge)
        assert rejects == []
    else:
        assert rejects, "the unkind engine should have caused some drops"

    if op in ("respond", "distill", "critique_revise", "filter", "judge", "dedup", "split"):
        assert n == len(out) + len(rejects)
    elif op == "behaviour_pairs":  # every prompt: its pairs or one reject
        prompts = {r["messages"][0]["content"] for r in records}
        assert len(prompts) == len({r["prompt"][0]["content"] for r in out}) + len(rejects)
        assert {r["reason"] for r in rejects} == {"no_contrast", "no_expected"}
        assert all(r["chosen"] != r["rejected"] for r in out)
    elif op == "mix":  # several inputs: every record of every input is drawn or rejected
        assert 2 * n == len(out) + len(rejects) and len(out) == params["total"]
    elif op == "augment":  # one input -> `variants` rephrases, each kept or rejected
        assert n * params["variants"] == len(out) + len(rejects)
    elif op == "evol_instruct":  # every pool entry, every round: an evolution or a reject
        assert n * params["rounds"] == len(out) + len(rejects)
    elif op == "preferences":
        assert n == len(out) + len(rec_rejects)  # records: one pair or one reject
        # samples: every one asked for is a candidate or a sample-level reject
        asked = n * 3 * params["samples_per_temperature"]
        sample_rejects = len(rejects) - len(rec_rejects)
        candidates = 0
        by_record: dict[str, set] = {}
        for req, res in engine.log:
            if req.choice or req.json_schema or req.temperature == 0.0:
                continue  # judge requests
            key = req.messages[-1]["content"]
            seen = by_record.setdefault(key, set())
            for c in res.completions:
                if c.text.strip() and c.finish_reason != "length" and c.text.strip() not in seen:
                    seen.add(c.text.strip())
                    candidates += 1
        assert asked == candidates + sample_rejects
        assert sample_rejects > 0
    elif op == "self_instruct":
        # every proposed task (a piece of a round continuation) is an output or a reject;
        # a failed round prompt is one engine_error reject
        proposed = 0
        for req, res in engine.log:
            if req.prompt is not None and req.prompt.endswith("Task 9:"):
                proposed += len(split_tasks(res.completions[0].text)) if res.ok else 1
        assert proposed == len(out) + len(rejects)
        # a task is dropped as surplus only once the count is met (before: the last round's
        # overshoot was dropped first, then failed instances left the count short)
        surplus = sum(r["reason"] == "surplus" for r in rejects)
        assert len(out) == min(params["num_instructions"], len(out) + surplus)
        assert any(r["reason"].startswith("instance_") for r in rejects)
