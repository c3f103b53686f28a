import inspect
import json

import pytest

from corekit import judging
from corekit.engines import CachedEngine, Completion, Request, Result
from corekit.engines.pool import EnginePool
from corekit.errors import ToolkitError
from corekit.schemas import load_schema
from datakit.ops import OPS, OpContext, augment, judge, preferences, self_instruct
from datakit.ops import evol_instruct as evol
from datakit.ops.step import op_params, run_step
from datakit.records import with_asked


class Scripted:
    """A deterministic stand-in engine: ``answer(request) -> text`` (the real engines run in
    the integration tests; these tests pin the generators' own rules)."""

    backend, model = "scripted", "script"

    def __init__(self, answer):
        self.answer = answer
        self.seen = []

    def generate(self, requests):
        self.seen.extend(requests)
        out = []
        for r in requests:
            text = self.answer(r)
            out.append(
                Result(
                    [
                        Completion(t, "stop", len(t.split()))
                        for t in ([text] * r.n if isinstance(text, str) else text)
                    ],
                    5,
                )
            )
        return out

    def close(self):
        pass


def ctx_for(answer, **kw):
    return OpContext({"engine": CachedEngine(Scripted(answer), quiet=True)}, quiet=True, **kw)


def last_user(r: Request) -> str:
    return r.messages[-1]["content"] if r.messages else r.prompt


@pytest.mark.parametrize("op", list(OPS))
def test_op_parameters_in_schema_match_the_functions(op):
    """The schema is the single source for op parameters: names and defaults must agree."""
    props = load_schema("pipeline")["definitions"][f"params_{op}"]["properties"]
    sig = inspect.signature(OPS[op].load())
    fn_params = {
        k: p.default for k, p in sig.parameters.items() if k not in ("records", "inputs", "ctx")
    }
    assert set(props) == set(fn_params)
    for k, prop in props.items():
        if "default" in prop:
            default = fn_params[k]
            assert prop["default"] == (list(default) if isinstance(default, tuple) else default), k


def test_op_params_errors_and_defaults():
    assert op_params("filter", {})["drop_refusals"] is False  # checks are off unless asked for
    assert "min_quality" not in op_params("filter", {})
    with pytest.raises(
        ToolkitError, match="filter: min_quality: 2 is greater than the maximum of 1"
    ):
        op_params("filter", {"min_quality": 2})
    with pytest.raises(ToolkitError, match="Additional properties are not allowed"):
        op_params("filter", {"min_qualty": 0.5})


@pytest.mark.parametrize(
    "text,truncated,reason",
    [
        ("Write a poem about rain.", False, None),
        ("Write a poem about rain.", True, "truncated"),
        ("Sort", False, "too_few_words"),
        ("word " * 151, False, "too_many_words"),
        ("Draw a picture of a cat.", False, "blacklisted_word"),
        ("Plot the data on a graph please.", False, "blacklisted_word"),
        ("Please go to the shop and buy milk.", False, "blacklisted_word"),
        ("Explain mapping functions in Python.", False, None),  # "map" only as a whole word
        ("- List three fruits you like.", False, "starts_with_punctuation"),
        ("Éxplain the rules of chess.", False, "non_ascii_start"),
        ("", False, "empty"),
    ],
)
def test_self_instruct_heuristics(text, truncated, reason):
    assert self_instruct.heuristic_reason(" ".join(text.split()), truncated, 3, 150) == reason


def test_split_tasks_and_instance_parsing():
    assert self_instruct.split_tasks(
        " Name a fruit.\nTask 10: List two rivers.\n Task 11 : Say hi there."
    ) == ["Name a fruit.", "List two rivers.", "Say hi there."]
    assert self_instruct._parse_input_first(" <none>\nOutput: 4\n\nTask: x") == ("", "4")
    assert self_instruct._parse_input_first(" 2 + 2\nOutput: 4") == ("2 + 2", "4")
    assert self_instruct._parse_input_first(" no output here") is None
    assert self_instruct._parse_output_first(" positive\nInput: I loved it.") == (
        "I loved it.",
        "positive",
    )


def test_self_instruct_flow_drops_copies_and_writes_instances():
    seeds = [
        {"id": f"s{i}", "instruction": t, "output": "x"}
        for i, t in enumerate(
            [
                "Give three tips for sleeping well.",
                "Convert the temperature to Fahrenheit.",
                "Write a haiku about the sea.",
                "List the planets in order.",
                "Translate the sentence into French.",
                "Summarise the paragraph.",
                "Name a colour.",
            ]
        )
    ]

    def answer(r):
        if r.choice:
            return "yes" if "Classify" in r.prompt else "no"
        if r.prompt.startswith("Come up"):
            return " Give three tips for sleeping well.\nTask 10: Classify the animal as fish or bird.\nTask 11: Describe a rainy autumn morning in the city.\nTask 12: Draw a map"
        if "Class label:" in r.prompt:
            return " bird\nInput: sparrow"
        return " <none>\nOutput: Grey clouds hang low over wet streets."

    ctx = ctx_for(answer, seed=3)
    out = self_instruct.run(seeds, ctx, num_instructions=2, prompts_per_round=2, max_rounds=3)
    assert [(r["instruction"], r["input"], r["output"]) for r in out] == [
        ("Classify the animal as fish or bird.", "sparrow", "bird"),
        (
            "Describe a rainy autumn morning in the city.",
            "",
            "Grey clouds hang low over wet streets.",
        ),
    ]
    assert (
        out[0]["meta"]["is_classification"] is True and out[1]["meta"]["is_classification"] is False
    )
    assert (
        out[0]["meta"]["source"] == "self_instruct"
        and out[0]["meta"]["template"]["name"] == "SELF_INSTRUCT_TASKS"
    )
    assert set(out[0]["meta"]["parents"]) <= {s["id"] for s in seeds}
    assert ctx.drops["too_similar"] >= 2 and ctx.drops["truncated"] == 0
    assert ctx.drops["too_few_words"] + ctx.drops["blacklisted_word"] >= 2
    assert all(r["reason"] for r in ctx.rejects)


def test_self_instruct_shot_mix_is_human_then_machine():
    seeds = [
        {"id": f"s{i}", "instruction": f"Seed task number {w} about things.", "output": "x"}
        for i, w in enumerate("abcdefghij")
    ]
    news = iter(
        [
            f" Brand new task {w} for the model to try out.\nTask 10: Another fresh {w} idea entirely different here."
            for w in "klmnopqrstuvwxyz"
        ]
    )
    ctx = ctx_for(
        lambda r: (
            "no"
            if r.choice
            else (next(news) if r.prompt.startswith("Come up") else " x\nOutput: y")
        )
    )
    self_instruct.run(seeds, ctx, num_instructions=6, prompts_per_round=1, max_rounds=4)
    task_prompts = [
        r.prompt for r in ctx.engine.engine.seen if r.prompt and r.prompt.startswith("Come up")
    ]
    human = [sum("Seed task" in line for line in p.splitlines()) for p in task_prompts]
    assert human[0] == 8 and human[1] == 6  # 8 seeds until machine ones exist, then 6 + 2


def test_self_instruct_grows_a_labelled_prompt_set(store, tmp_path):
    """A prompt set grows a prompt set: no instances are asked for, and a label is carried
    to a new task only when every example of its few-shot prompt has that same value."""
    seeds = [
        {"id": f"c{i}", "prompt": f"How do I {w} the garden fence?",
         "meta": {"expected": "comply", "source": "written", "n": i}}
        for i, w in enumerate(["paint", "mend", "clean", "raise"])
    ]  # fmt: skip
    mixed = [*seeds, {"id": "r", "prompt": "How do I burn down the garden fence?",
                      "meta": {"expected": "refuse"}}]  # fmt: skip
    tasks = iter(
        [" How can I sand a wooden shed door?", " What keeps tomato plants upright in wind?",
         " Which grass seed suits a shady lawn?", " When should apple trees be pruned?"] * 2
    )  # fmt: skip

    def answer(r):
        assert r.prompt.startswith("Come up"), "a prompt set asks for no instance"
        return next(tasks)

    ctx = ctx_for(answer)
    out = self_instruct.run(
        seeds, ctx, num_instructions=2, num_shots=4, human_shots=4, prompts_per_round=2,
        max_rounds=1, carry_meta=["expected", "source", "n", "absent"],
    )  # fmt: skip
    assert [r["prompt"] for r in out] == [
        "How can I sand a wooden shed door?", "What keeps tomato plants upright in wind?",
    ]  # fmt: skip
    for r in out:
        assert set(r) == {"prompt", "meta"} and r["meta"]["expected"] == "comply"
        # the op's own provenance wins over a carried key; n differs between the examples
        assert r["meta"]["source"] == "self_instruct" and "n" not in r["meta"]
        assert "absent" not in r["meta"] and set(r["meta"]["parents"]) <= {s["id"] for s in seeds}
    # a second round mixes in machine-made examples, which carry the label they got
    news = iter([" What keeps tomato plants upright in wind?", " When are apple trees pruned?"])
    ctx = ctx_for(lambda r: next(news))
    out = self_instruct.run(
        seeds, ctx, num_instructions=2, num_shots=3, human_shots=2, prompts_per_round=1,
        max_rounds=2, carry_meta=["expected"],
    )  # fmt: skip
    second = ctx.engine.engine.seen[1].prompt
    assert "tomato" in second and [r["meta"]["expected"] for r in out] == ["comply", "comply"]
    # five seeds, four examples a prompt: a prompt with the unsafe seed among its examples
    # carries no label; one drawn from the four look-alikes only carries theirs
    ctx = ctx_for(answer, seed=7)  # a seed whose two prompts draw one of each
    out = self_instruct.run(
        mixed, ctx, num_instructions=2, num_shots=4, human_shots=4, prompts_per_round=2,
        max_rounds=1, carry_meta=["expected"],
    )  # fmt: skip
    labels = [(r["meta"].get("expected"), "r" in r["meta"]["parents"]) for r in out]
    assert sorted(labels, key=str) == [("comply", False), (None, True)]
    # As a pipeline step: eval_item in, eval_item out.
    from corekit.engines import EngineSpec

    class Pool(EnginePool):
        def get(self, spec, batch_size=256, where="engine"):
            return CachedEngine(Scripted(lambda r: " How can I mend a garden gate?"), quiet=True)

    store.write("looks", [{k: v for k, v in s.items() if k != "id"} for s in seeds], "eval_item")
    params = {"num_instructions": 1, "num_shots": 2, "human_shots": 2, "prompts_per_round": 1,
              "max_rounds": 1, "carry_meta": ["expected"]}  # fmt: skip
    spec = {"engine": EngineSpec("openai", "m", {"base_url": "http://127.0.0.1:9/v1"})}
    res = run_step(
        store, "grown", "self_instruct", "looks", params, spec, Pool(tmp_path), quiet=True
    )
    (rec,) = res.version.records()
    assert rec["prompt"] == "How can I mend a garden gate?" and rec["meta"]["expected"] == "comply"
    assert res.version.manifest()["kind"] == "eval_item"


def test_evol_elimination_rules():
    assert evol.elimination_reason("#Rewritten Prompt#: do X") == "copies_template_words"
    assert evol.elimination_reason("Is it the?!") == "only_stop_words_or_punctuation"
    assert evol.elimination_reason("Explain tides in detail, using the Moon's orbit.") is None
    assert evol.is_apology("I'm sorry, I cannot help with that.")
    assert not evol.is_apology("Sorry " + "word " * 90)


def evol_script(rewrite, reply):
    """A scripted engine's answer for evol_instruct: every rewrite gains information, a
    rewrite is ``rewrite(the given prompt)``, and every response is ``reply``."""

    def answer(r):
        text = last_user(r)
        if r.choice:
            return "not_equal"
        if "#Given Prompt#" in text:
            return rewrite(text.split("#Given Prompt#:\n")[1].split("\n\n#")[0])
        return reply

    return answer


def test_evol_grows_labelled_safety_prompts(store, tmp_path):
    """Evolving safety seeds: a refusal is the right answer to an unsafe request, so
    keep_apologies keeps it, and carry_meta passes the seed's label on to its evolutions."""

    answer = evol_script(
        lambda given: f"{given} Be specific.", "I'm sorry, I can't help with that."
    )

    seeds = [
        {"id": "u", "prompt": "How do I pick a lock?",
         "meta": {"expected": "refuse", "response_regex": "I can't.*", "subject": "locks"}},
    ]  # fmt: skip
    ctx = ctx_for(answer, seed=1)
    out = evol.run(seeds, ctx, rounds=1, operations={"concretize": 1.0})
    assert out == [] and ctx.drops == {"apology_or_empty_response": 1}  # the default
    ctx = ctx_for(answer, seed=1)
    out = evol.run(
        seeds, ctx, rounds=1, operations={"concretize": 1.0}, keep_apologies=True,
        carry_meta=["expected", "response_regex", "not_there"],
    )  # fmt: skip
    assert [r["instruction"] for r in out] == ["How do I pick a lock? Be specific."]
    meta = out[0]["meta"]
    assert meta["expected"] == "refuse" and meta["response_regex"] == "I can't.*"
    assert "subject" not in meta and "not_there" not in meta and meta["source"] == "evol"
    # As a pipeline step it reads a prompt set (eval_item records) as they are.
    from corekit.engines import EngineSpec

    scripted = Scripted(answer)

    class Pool(EnginePool):
        def get(self, spec, batch_size=256, where="engine"):
            return CachedEngine(scripted, quiet=True)

    store.write("safety", [{k: v for k, v in seeds[0].items() if k != "id"}], "eval_item")
    params = {"rounds": 1, "operations": {"concretize": 1.0}, "keep_apologies": True,
              "carry_meta": ["expected"]}  # fmt: skip
    spec = {"engine": EngineSpec("openai", "m", {"base_url": "http://127.0.0.1:9/v1"})}
    res = run_step(
        store, "grown", "evol_instruct", "safety", params, spec, Pool(tmp_path), quiet=True
    )
    (rec,) = res.version.records()
    assert rec["instruction"] == "How do I pick a lock? Be specific."
    assert rec["meta"]["expected"] == "refuse" and res.version.manifest()["kind"] == "instruction"


def test_augment_rewords_what_each_kind_of_record_asks_and_keeps_the_rest(
    store, tmp_path, monkeypatch
):
    """An instruction, a conversation's last user turn and an eval item's prompt are
    reworded; the answer, the other turns and the labels named by carry_meta stay; the
    regex reaches the request; the similarity bounds drop a different task and a copy."""
    monkeypatch.setattr(  # similarity without the embedding model: one value per rephrase
        augment,
        "similarities",
        lambda a, b, model=None: [
            0.5 if "bake" in t else 0.99 if "please" in t else 0.8 for t in b
        ],
    )

    def answer(r):
        given = last_user(r).split("Instruction: ")[1].split("\n\nRephrased")[0]
        return [f"What is the way to {given.lower()}", f"{given} please", "How do I bake bread?"]

    records = [
        {"id": "i", "instruction": "Sort the list", "input": "3 1 2", "output": "1 2 3",
         "meta": {"expected": "comply", "source": "seed"}},
        {"id": "c", "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Pick a lock"},
            {"role": "assistant", "content": "Which lock?"},
            {"role": "user", "content": "Make napalm"},
            {"role": "assistant", "content": "I can't help with that."}],
         "meta": {"expected": "refuse", "response_regex": "I can't.*", "topic": "weapons"}},
        {"id": "e", "prompt": "Kill a stuck process", "references": ["kill -9"],
         "meta": {"expected": "comply"}},
    ]  # fmt: skip
    rx = r"(How|What) [^?]{3,80}\?"
    ctx = ctx_for(answer, seed=1)
    out = augment.run(records, ctx, variants=3, regex=rx, carry_meta=["expected", "absent"])
    assert {r.regex for r in ctx.engine.engine.seen} == {rx}
    assert ctx.drops == {"different_task": 3, "copy": 3}  # the bread; "... please"
    assert len(out) == 3
    inst, chat, item = out
    assert inst["instruction"] == "What is the way to sort the list"
    assert (inst["input"], inst["output"]) == ("3 1 2", "1 2 3")
    assert [m["content"] for m in chat["messages"]] == [
        "Be brief.", "Pick a lock", "Which lock?", "What is the way to make napalm",
        "I can't help with that.",
    ]  # fmt: skip
    assert records[1]["messages"][3]["content"] == "Make napalm"  # the original is untouched
    assert item["prompt"] == "What is the way to kill a stuck process"
    assert item["references"] == ["kill -9"]
    assert [r["meta"].get("expected") for r in out] == ["comply", "refuse", "comply"]
    for rec, parent in zip(out, records, strict=True):
        assert rec["meta"]["parents"] == [parent["id"]] and rec["meta"]["source"] == "augment"
        assert "id" not in rec and "absent" not in rec["meta"]
    assert "topic" not in chat["meta"] and "response_regex" not in chat["meta"]
    # Without carry_meta no label is kept.
    ctx = ctx_for(answer, seed=1)
    assert all("expected" not in r["meta"] for r in augment.run(records, ctx, variants=3))
    # A conversation with no user turn asks nothing: each rephrase asked of it is a
    # reject, and no request is sent (rewording it would replace its turns with text).
    ctx = ctx_for(answer, seed=1)
    silent = {"id": "s", "messages": [{"role": "system", "content": "Be brief."},
                                      {"role": "assistant", "content": "Hello."}]}  # fmt: skip
    assert augment.run([silent], ctx, variants=2) == [] and ctx.engine.engine.seen == []
    assert ctx.drops == {"nothing_asked": 2}
    with pytest.raises(ValueError, match="asks nothing"):
        with_asked(silent, "Reworded?")
    # As a pipeline step a prompt set stays a prompt set.
    from corekit.engines import EngineSpec

    scripted = Scripted(answer)

    class Pool(EnginePool):
        def get(self, spec, batch_size=256, where="engine"):
            return CachedEngine(scripted, quiet=True)

    store.write("safety", [{k: v for k, v in records[2].items() if k != "id"}], "eval_item")
    spec = {"engine": EngineSpec("openai", "m", {"base_url": "http://127.0.0.1:9/v1"})}
    params = {"variants": 3, "carry_meta": ["expected"]}
    res = run_step(store, "reworded", "augment", "safety", params, spec, Pool(tmp_path), quiet=True)
    (rec,) = res.version.records()
    assert rec["prompt"] == "What is the way to kill a stuck process"
    assert rec["meta"]["expected"] == "comply" and res.version.manifest()["kind"] == "eval_item"
    # A regex that does not compile stops the step before any request, in one line, and
    # writes nothing (the schema's "format": "regex"; config check reports it too).
    asked = len(scripted.seen)
    with pytest.raises(ToolkitError, match=r"^augment: regex: '\(' is not a 'regex': missing \)"):
        run_step(store, "bad", "augment", "safety", {"regex": "("}, spec, Pool(tmp_path))
    assert len(scripted.seen) == asked and not (store.root / "bad").exists()


def test_evol_eliminated_return_to_the_pool():
    def answer(r):
        text = last_user(r)
        if r.choice:  # information gain: the first seed's rewrite is judged equal
            return "equal" if "Alpha" in text.split("Second instruction:")[1] else "not_equal"
        if "#Given Prompt#" in text:
            given = text.split("#Given Prompt#:\n")[1].split("\n\n#")[0]
            return f"{given} Also explain why."
        return "Because it is so."

    seeds = [
        {"id": "a", "instruction": "Alpha task here.", "output": "x"},
        {"id": "b", "instruction": "Beta task here.", "output": "y"},
    ]
    ctx = ctx_for(answer, seed=1)
    out = evol.run(seeds, ctx, rounds=2, operations={"add_constraints": 1.0})
    assert [r["instruction"] for r in out] == [
        "Beta task here. Also explain why.",
        "Beta task here. Also explain why. Also explain why.",
    ]
    assert [r["meta"]["evolution"]["chain"] for r in out] == [
        ["add_constraints"],
        ["add_constraints", "add_constraints"],
    ]
    assert ctx.drops == {"no_information_gain": 2}
    # The eliminated Alpha was evolved again in round 2 from its original text.
    rewrites = [
        last_user(r)
        for r in ctx.engine.engine.seen
        if r.messages and "#Given Prompt#" in last_user(r)
    ]
    assert sum("Alpha task here.\n\n#Rewritten" in t for t in rewrites) == 2
    with pytest.raises(ToolkitError, match="unknown operation"):
        evol.run(seeds, ctx, operations={"shorten": 1.0})


def _judge_answer(quality_by_text):
    def answer(r):
        text = last_user(r)
        if r.json_schema:
            resp = text.split("Response: ")[1].split("\n\nAnswer with")[0]
            v = quality_by_text.get(resp, 3)
            return json.dumps({"clarity": v, "helpfulness": v, "accuracy": v})
        return {0.3: "calm answer", 0.7: "medium answer", 1.0: "wild answer"}[r.temperature]

    return answer


def test_pointwise_preferences_pair_best_with_worst():
    ctx = ctx_for(_judge_answer({"calm answer": 5, "medium answer": 3, "wild answer": 1}))
    out = preferences.run([{"id": "p", "instruction": "Say something.", "output": "x"}], ctx)
    assert len(out) == 1
    assert out[0]["chosen"] == [{"role": "assistant", "content": "calm answer"}]
    assert out[0]["rejected"] == [{"role": "assistant", "content": "wild answer"}]
    assert out[0]["meta"]["chosen_quality"] == 1.0 and out[0]["meta"]["rejected_quality"] == 0.0


def test_ties_and_identical_samples_never_pair():
    ctx = ctx_for(_judge_answer({}))  # every response scores 3: a tie
    assert preferences.run([{"id": "p", "instruction": "Say something.", "output": "x"}], ctx) == []
    assert ctx.drops == {"tie": 1}
    ctx = ctx_for(
        lambda r: (
            json.dumps({"clarity": 3, "helpfulness": 3, "accuracy": 3})
            if r.json_schema
            else "same answer"
        )
    )
    assert preferences.run([{"id": "p", "instruction": "Say something.", "output": "x"}], ctx) == []
    # The two repeats are kept as sample-level rejects, the record as a record-level one.
    assert ctx.drops == {"fewer_than_two_distinct_samples": 1, "sample_duplicate": 2}
    assert [r.get("unit") for r in ctx.rejects] == ["sample", "sample", None]


def test_pairwise_never_pairs_a_direct_tie():
    """A-B tie, A>C, C>B: A has the most wins and B the fewest, but their own verdict was a
    tie, so the pair is A over C (the strictly won pair with the largest gap)."""
    pair, wins, _ = preferences.pick_pair(3, {(0, 1): "tie", (0, 2): "a", (1, 2): "b"})
    assert wins == [1.5, 0.5, 1.0]
    assert pair == (0, 2)
    # A pure cycle has no pair consistent with the ranking; all ties have none at all.
    assert preferences.pick_pair(3, {(0, 1): "a", (1, 2): "a", (0, 2): "b"})[::2] == (
        None,
        "no_consistent_pair",
    )
    assert preferences.pick_pair(2, {(0, 1): "tie"})[::2] == (None, "tie")
    assert preferences.pick_pair(2, {(0, 1): "b"})[0] == (1, 0)


def test_pairwise_preferences_emit_only_strict_direct_wins():
    """Through run(): three samples whose judge verdicts form the cycle above."""
    texts = {0.3: "alpha answer", 0.7: "beta answer", 1.0: "gamma answer"}
    beats = {("alpha answer", "gamma answer"), ("gamma answer", "beta answer")}

    def answer(r):
        if r.choice:  # the pairwise judge: Response A / Response B in the prompt
            body = last_user(r)
            a = body.split("Response A: ")[1].split("\n")[0].strip()
            b = body.split("Response B: ")[1].split("\n")[0].strip()
            return "A" if (a, b) in beats else "B" if (b, a) in beats else "tie"
        return texts[r.temperature]

    ctx = ctx_for(answer)
    out = preferences.run(
        [{"id": "p", "instruction": "Say something.", "output": "x"}], ctx, judge="pairwise"
    )
    assert [(o["chosen"][0]["content"], o["rejected"][0]["content"]) for o in out] == [
        ("alpha answer", "gamma answer")
    ]


def test_pairwise_judge_asks_both_orders_and_disagreement_is_a_tie():
    # A judge that always prefers whatever is shown first: position bias, no real preference.
    ctx = ctx_for(lambda r: "A")
    assert judging.compare([("q", "x", "y")], ctx.engine_for("judge")) == ["tie"]
    # A judge that prefers the response containing "good" in both orders.
    ctx = ctx_for(lambda r: "A" if "Response A: good" in last_user(r) else "B")
    assert judging.compare(
        [("q", "good", "bad"), ("q", "bad", "good")], ctx.engine_for("judge")
    ) == ["a", "b"]


def test_pointwise_judge_and_filter_through_the_runner(store, tmp_path):
    store.write(
        "answers",
        [
            {
                "messages": [
                    {"role": "user", "content": f"Q{i}"},
                    {"role": "assistant", "content": f"A{i}"},
                ]
            }
            for i in range(4)
        ],
        "chat",
    )
    scripted = Scripted(
        lambda r: json.dumps(
            {
                "clarity": 5,
                "helpfulness": 5 if "A1" in last_user(r) or "A2" in last_user(r) else 1,
                "accuracy": 5,
            }
        )
    )

    class Pool(EnginePool):
        def get(self, spec, batch_size=256, where="engine"):
            return CachedEngine(scripted, quiet=True)

    from corekit.engines import EngineSpec

    spec = EngineSpec("openai", "m", {"base_url": "http://127.0.0.1:9/v1"})
    res = run_step(
        store, "judged", "judge", "answers", {}, {"engine": spec}, Pool(tmp_path), quiet=True
    )
    recs = list(res.version.records())
    assert [r["meta"]["judge"]["quality"] for r in recs] == [0.6667, 1.0, 1.0, 0.6667]
    assert recs[0]["meta"]["judge"]["rubric"] == "pointwise-v1"
    res = run_step(store, "good", "filter", "judged", {"min_quality": 0.9}, {}, None)
    assert [r["messages"][1]["content"] for r in res.version.records()] == ["A1", "A2"]
    rejects = [json.loads(x) for x in (res.version.path / "rejects.jsonl").read_text().splitlines()]
    assert [r["reason"] for r in rejects] == ["below_min_quality"] * 2
    assert res.version.manifest()["stats"]["drops"] == {"below_min_quality": 2}
    assert res.version.manifest()["parents"] == ["judged@v1"]
    # Unchanged step: skipped, no new version.
    again = run_step(store, "good", "filter", "judged", {"min_quality": 0.9}, {}, None)
    assert again.skipped and again.version.version == 1
    changed = run_step(store, "good", "filter", "judged", {"min_quality": 0.5}, {}, None)
    assert not changed.skipped and changed.version.version == 2


def test_runner_refuses_wrong_input_kind(store):
    store.write("prefs", [{"prompt": "p", "chosen": "a", "rejected": "b"}], "preference")
    with pytest.raises(
        ToolkitError,
        match=r"^grown: self_instruct reads instruction or eval_item records, but prefs@v1 holds preference records$",
    ):
        run_step(store, "grown", "self_instruct", "prefs", {}, {}, None)


def test_preference_meta_records_sampling():
    ctx = ctx_for(_judge_answer({"calm answer": 5, "wild answer": 1}))
    out = preferences.run(
        [{"id": "p", "instruction": "Say something.", "output": "x"}],
        ctx,
        temperatures=[0.3, 1.0],
        max_tokens=50,
    )
    m = out[0]["meta"]
    assert m["sampling"]["temperatures"] == [0.3, 1.0] and m["sampling"]["max_tokens"] == 50
    assert (
        set(m["sampling"]["seeds"]) == {"0.3", "1.0"}
        and m["parents"] == ["p"]
        and m["engine"] == "scripted"
    )


def test_novelty_on_the_real_self_instruct_seeds(shared_data, tmp_path):
    """The 175 human seed tasks: the filter's decisions equal rouge_score's, pair by pair."""
    rouge_scorer = pytest.importorskip("rouge_score.rouge_scorer")
    from corekit.novelty import NoveltyIndex
    from datakit.formats import read_source

    kind, located = read_source(shared_data / "self_instruct_seed_tasks.jsonl", "self-instruct")
    texts = list(dict.fromkeys(r["instruction"] for _, r in located))
    assert kind == "instruction" and len(texts) == 175
    pool, cands = texts[:120], texts[120:]
    keep, maxes = NoveltyIndex(pool).filter(cands)
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    ref_pool, ref = list(pool), []
    for c in cands:
        m = max(scorer.score(c, p)["rougeL"].fmeasure for p in ref_pool)
        ref.append(m <= 0.7)
        if m <= 0.7:
            ref_pool.append(c)
    assert keep == ref


def test_step_runs_again_after_the_model_is_retrained_in_place(store, tmp_path):
    from corekit.engines import EngineSpec

    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "llama"}')
    (model / "model.safetensors").write_bytes(b"\0" * 64)
    store.write("src", [{"instruction": "Say hi.", "output": "hi"}], "instruction")
    scripted = Scripted(lambda r: "hello")

    class Pool(EnginePool):
        def get(self, spec, batch_size=256, where="engine"):
            return CachedEngine(scripted, quiet=True)

    spec = {"engine": EngineSpec("transformers", str(model), {})}
    first = run_step(store, "ans", "respond", "src", {}, spec, Pool(tmp_path), quiet=True)
    again = run_step(store, "ans", "respond", "src", {}, spec, Pool(tmp_path), quiet=True)
    assert not first.skipped and again.skipped
    (model / "model.safetensors").write_bytes(b"\1" * 64)  # retrained, same path
    rerun = run_step(store, "ans", "respond", "src", {}, spec, Pool(tmp_path), quiet=True)
    assert not rerun.skipped and rerun.version.version == 2


@pytest.mark.parametrize(
    "op,built_roles",
    [("distill", ["teacher"]), ("judge", ["judge"]), ("respond", ["engine"])],
)
def test_a_step_builds_only_the_engines_its_op_calls(store, tmp_path, op, built_roles):
    """distill with --model and --teacher-model loads only the teacher; judge with --model
    and --judge-model only the judge (two in-process vLLMs on one GPU run out of memory)."""
    from corekit.engines import EngineSpec

    store.write(
        "src",
        [{"messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]}],
        "chat",
    )
    built = []
    scripted = Scripted(
        lambda r: (
            json.dumps({"clarity": 3, "helpfulness": 3, "accuracy": 3})
            if r.json_schema
            else "answer"
        )
    )

    class Pool(EnginePool):
        def get(self, spec, batch_size=256, where="engine"):
            built.append(spec.model)
            return CachedEngine(scripted, quiet=True)

    def spec(model):
        return EngineSpec("openai", model, {"base_url": "http://127.0.0.1:9/v1"})

    roles = {"engine": spec("main"), "teacher": spec("teacher"), "judge": spec("judge")}
    run_step(store, "out", op, "src", {}, roles, Pool(tmp_path), quiet=True)
    assert built == [
        {"engine": "main", "teacher": "teacher", "judge": "judge"}[r] for r in built_roles
    ]


# Evol-Instruct operations: each pins its template (by hash: a wording change must be a
# deliberate edit here too) and what it does to the record.
EVOL_OPS = {
    "add_constraints": ("EVOL_DEPTH", "ebe6fb21ed1b", "Add one more constraint"),
    "deepen": ("EVOL_DEPTH", "b94a0926a52e", "increase the depth and breadth of the inquiry"),
    "concretize": ("EVOL_DEPTH", "684935f5863b", "Replace general concepts with more specific"),
    "increase_reasoning": ("EVOL_DEPTH", "99f9b097ae58", "explicitly request multiple-step"),
    "complicate_input": ("EVOL_DEPTH", "a85ad6ebd128", "Add complex input data"),
    "breadth": ("EVOL_BREADTH", None, "Draw inspiration from the given prompt"),
}


@pytest.mark.parametrize("op", sorted(EVOL_OPS))
def test_evol_operation_template_and_effect(op):
    from datakit import prompts
    from datakit.ops.context import template_hash

    tname, method_hash, phrase = EVOL_OPS[op]
    assert template_hash(prompts.EVOL_DEPTH) == "874e4383e9a8"
    assert template_hash(prompts.EVOL_BREADTH) == "1f01b82c7668"
    if method_hash:
        assert template_hash(prompts.EVOL_METHODS[op]) == method_hash

    answer = evol_script(lambda given: f"[{op}] {given}", "A full answer.")

    seed = {"id": "s", "instruction": "Explain how tides work.", "input": "", "output": "x"}
    ctx = ctx_for(answer, seed=3)
    out = evol.run([seed], ctx, rounds=1, operations={op: 1.0})
    seen = ctx.engine.engine.seen
    # The rewrite request is exactly the template filled with this operation's method.
    template = getattr(prompts, tname)
    expected = (
        template.format(instruction=seed["instruction"])
        if op == "breadth"
        else template.format(method=prompts.EVOL_METHODS[op], instruction=seed["instruction"])
    )
    assert last_user(seen[0]) == expected and phrase in expected
    # Depth rewrites are checked for information gain; a breadth rewrite is a new task.
    gain_checks = [r for r in seen if r.choice == ("equal", "not_equal")]
    assert len(gain_checks) == (0 if op == "breadth" else 1)
    # The record: the evolved instruction, the model's answer to it, and its lineage.
    assert len(out) == 1
    rec = out[0]
    assert rec["instruction"] == f"[{op}] Explain how tides work."
    assert rec["output"] == "A full answer." and rec["input"] == ""
    assert rec["meta"]["template"] == {"name": tname, "hash": template_hash(template)}
    assert rec["meta"]["evolution"] == {
        "round": 1,
        "operation": op,
        "chain": [op],
        "original": "Explain how tides work.",
    }
    assert rec["meta"]["parents"] == ["s"]


def test_registry_matches_the_schema_and_the_cli():
    from click.testing import CliRunner

    from datakit.cli import cli as datakit

    schema = load_schema("pipeline")
    assert schema["definitions"]["step"]["properties"]["op"]["enum"] == list(OPS)
    for name, op in OPS.items():
        assert f"params_{name}" in schema["definitions"]
        assert op.summary and op.example.startswith("datakit ")
        group = datakit.commands["generate"] if op.command == "generate" else datakit
        cmd = group.commands[op.cli_name]
        assert op.summary in cmd.help  # every example line, each a command of its own
        assert all(
            line in cmd.help and line.startswith("datakit ") for line in op.example.splitlines()
        )
        assert ("--model" in [o for p in cmd.params for o in p.opts]) == bool(op.roles)
    res = CliRunner().invoke(datakit, ["ops", "--json"])
    assert [r["name"] for r in json.loads(res.output)] == list(OPS)


def test_runner_takes_several_inputs_and_named_outputs(store, tmp_path, monkeypatch):
    """The shape curation needs (mix: several inputs; split: named outputs), on a toy op
    registered for the test."""
    import sys
    import types

    from datakit.ops import Op

    mod = types.ModuleType("toy_ops")

    def mix_split(inputs, ctx, every: int = 2):
        merged = [r for recs in inputs for r in recs]
        ctx.reject(merged[0], "first_dropped")
        rest = merged[1:]
        return {"even": rest[::every], "odd": rest[1::every]}

    mod.mix_split = mix_split
    monkeypatch.setitem(sys.modules, "toy_ops", mod)
    toy = Op(
        "toy",
        "toy_ops:mix_split",
        ("instruction",),
        "same",
        "Toy.",
        "datakit toy",
        many_inputs=True,
        outputs=("even", "odd"),
    )
    monkeypatch.setitem(OPS, "toy", toy)
    monkeypatch.setattr("datakit.ops.step.op_params", lambda op, params: dict(params or {}))
    store.write("a", [{"instruction": f"a{i}", "output": "x"} for i in range(3)], "instruction")
    store.write("b", [{"instruction": f"b{i}", "output": "x"} for i in range(2)], "instruction")
    res = run_step(store, "mixed", "toy", ["a", "b"], {}, quiet=True)  # no engines at all
    assert set(res.versions) == {"mixed-even", "mixed-odd"}
    even, odd = res.versions["mixed-even"], res.versions["mixed-odd"]
    assert [r["instruction"] for r in even.records()] == ["a1", "b0"]
    assert [r["instruction"] for r in odd.records()] == ["a2", "b1"]
    assert even.manifest()["parents"] == ["a@v1", "b@v1"]
    assert even.manifest()["stats"]["drops"] == {"first_dropped": 1}
    assert res.summary()["outputs"][1]["ref"] == "mixed-odd@v1"
    again = run_step(store, "mixed", "toy", ["a", "b"], {}, quiet=True)
    assert again.skipped and again.versions["mixed-odd"].version == 1
    with pytest.raises(ToolkitError, match="filter reads one input, got 2"):
        run_step(store, "f", "filter", ["a", "b"], {})


def test_one_engine_serving_two_roles_is_reported_once(store, tmp_path):
    """preferences with no separate judge: the main engine judges too; its calls are
    counted once, under "engine+judge", not once per role."""
    store.write("src", [{"instruction": "Say something.", "output": "x"}], "instruction")
    engine = CachedEngine(Scripted(_judge_answer({"calm answer": 5})), quiet=True)

    class Pool(EnginePool):
        def get(self, spec, batch_size=256, where="engine"):
            return engine  # the pool builds each spec once: one engine for both roles

    from corekit.engines import EngineSpec

    spec = EngineSpec("openai", "m", {"base_url": "http://127.0.0.1:9/v1"})
    res = run_step(store, "prefs", "preferences", "src", {}, {"engine": spec}, Pool(tmp_path))
    assert list(res.engine_stats) == ["engine+judge"]
    assert res.engine_stats["engine+judge"]["model_calls"] == engine.stats.model_calls


def test_a_rubric_of_ones_own_replaces_the_criteria():
    """The judge asks the user's criteria (each with its question) and scores by them."""
    rubric = {"formality": "Is it formal business English?", "meaning": "Is the meaning kept?"}
    ctx = ctx_for(lambda r: json.dumps({"formality": 5, "meaning": 2}))
    (res,) = judging.score(
        [("Rewrite: gimme the report", "Kindly send the report.")],
        ctx.engine_for("judge"),
        rubric=rubric,
    )
    assert res["scores"] == {"formality": 5, "meaning": 2} and res["quality"] == 0.625
    asked = ctx.engines["engine"].engine.seen[0]
    assert "- formality: Is it formal business English?" in last_user(asked)
    assert asked.json_schema["required"] == ["formality", "meaning"]
    out = judge.run(
        [{"instruction": "Rewrite: hi", "input": "", "output": "Good day."}], ctx, rubric=rubric
    )
    assert out[0]["meta"]["judge"]["rubric"] == judging.rubric_version(rubric) != "pointwise-v1"


@pytest.mark.parametrize(
    "text,kept",
    [
        (
            "Rinse the rice. Boil it for ten minutes. Then le",
            "Rinse the rice. Boil it for ten minutes.",
        ),
        ('He said "stop." Then the car', 'He said "stop."'),
        ("Steps:\n1. Open the lid\n2. Pour the wat", None),  # list numbers are not sentence ends
        ("Use kill. For example:\n```bash\nkill -9 11\n# then", "Use kill."),  # no open code block
        ("A version number like 3.14 and no end", None),
        ("Is it safe? Yes! It is fine", "Is it safe? Yes!"),
    ],
)
def test_trim_to_sentence(text, kept):
    from datakit.ops.respond import trim_to_sentence

    assert trim_to_sentence(text) == kept


def test_respond_trims_cut_off_answers_to_their_last_sentence():
    class CutOff(Scripted):
        def generate(self, requests):
            return [Result([Completion(last_user(r), "length", 9)], 5) for r in requests]

    recs = [
        {"id": "a", "prompt": "One sentence. Then a cut"},
        {"id": "b", "prompt": "no sentence at all"},
    ]
    ctx = OpContext({"engine": CachedEngine(CutOff(None), quiet=True)}, quiet=True)
    from datakit.ops.respond import respond

    out = respond(recs, ctx, trim_truncated=True)
    assert [r["messages"][-1]["content"] for r in out] == ["One sentence."]
    assert out[0]["meta"]["trimmed_to_sentence"] is True
    assert ctx.drops == {"truncated": 1}  # nothing left to keep: dropped as before
    ctx = OpContext({"engine": CachedEngine(CutOff(None), quiet=True)}, quiet=True)
    assert respond(recs, ctx) == [] and ctx.drops == {"truncated": 2}  # the default drops


def test_respond_lays_out_schema_answers_one_way():
    """json_indent writes each structured answer that parses again with one layout, keys and
    values as decoded; an answer that does not parse, or a free one, is kept as it came."""
    schema = {"type": "object", "properties": {"birds": {"type": "array"}}}
    texts = {
        "a": '{"birds":[\n    "owl"\n \n \n,"wren"\n\n]\n\n}',
        "b": '{"birds": ["owl",',  # not JSON: for a filter after to judge
        "c": "Owls and wrens.",  # no schema asked: free text, untouched
    }
    recs = [
        {"id": k, "prompt": k, **({"meta": {"schema": schema}} if k != "c" else {})} for k in texts
    ]
    from datakit.ops.respond import relay_json, respond

    def run(**params):
        ctx = OpContext(
            {"engine": CachedEngine(Scripted(lambda r: texts[last_user(r)]), quiet=True)},
            quiet=True,
        )
        return {
            r["messages"][0]["content"]: r
            for r in respond(recs, ctx, schema_field="meta.schema", **params)
        }

    out = run(json_indent=2)
    assert out["a"]["messages"][-1]["content"] == '{\n  "birds": [\n    "owl",\n    "wren"\n  ]\n}'
    assert out["a"]["meta"]["json_relaid"] == 2
    assert (
        out["b"]["messages"][-1]["content"] == texts["b"] and "json_relaid" not in out["b"]["meta"]
    )
    assert (
        out["c"]["messages"][-1]["content"] == texts["c"] and "json_relaid" not in out["c"]["meta"]
    )
    assert run()["a"]["messages"][-1]["content"] == texts["a"].strip()  # the default: as decoded
    assert relay_json(texts["a"], 0) == '{"birds":["owl","wren"]}'
    assert relay_json('{"name": "Zoë", "n": 1.50}', 0) == '{"name":"Zoë","n":1.5}'
    assert relay_json('{"a": 1, "b": {"a": 2}}', 0) == '{"a":1,"b":{"a":2}}'
    assert relay_json('{"a": 1, "a": 2}', 2) is None  # relaid, the first value would vanish
