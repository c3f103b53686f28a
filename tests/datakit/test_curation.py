"""Curation ops through the step runner and their commands: dedup, mix, split."""

import json

import pytest

from corekit.errors import ToolkitError
from datakit.cli import cli as datakit
from datakit.ops.dedup import duplicate_pairs, normalize
from datakit.ops.step import run_step

BASE = [
    "Explain how tides are caused by the gravity of the moon and the sun.",
    "Write a short poem about a quiet harbour at dawn with fishing boats.",
    "List three tips for keeping a sourdough starter healthy in winter.",
    "Translate the sentence into French and explain the grammar you used.",
    "Summarise the history of the printing press in two short paragraphs.",
    "Explain how volcanoes form along the edges of tectonic plates.",  # same topic, other task
]


def recs(texts, **extra):
    return [{"instruction": t, "input": "", "output": "ok", **extra} for t in texts]


def test_normalize_and_exact_pairs():
    assert normalize("  Hello, World!  ") == "hello world"
    assert duplicate_pairs(["Hi there!", "hi   THERE", "bye"], "exact") == [(0, 1, 1.0)]


def test_near_duplicates_found_hard_negatives_kept():
    texts = BASE + [
        BASE[0].replace("the moon", "our moon"),  # light edit of 0
        BASE[2] + " Please.",  # light edit of 2
        BASE[1].upper(),  # case only: exact after normalising
    ]
    pairs = {(i, j) for i, j, _ in duplicate_pairs(texts, "near", 0.5)}
    assert {(0, 6), (2, 7), (1, 8)} <= pairs
    assert (0, 5) not in pairs  # tides vs volcanoes: same kind of task, other content


@pytest.mark.parametrize(
    "keep,kept_output", [("first", "a"), ("longest", "b" * 40), ("best_score", "c")]
)
def test_dedup_keeps_exactly_one_per_cluster_by_rule(store, keep, kept_output):
    t = BASE[0]
    rows = [
        {"instruction": t, "input": "", "output": "a", "meta": {"judge": {"quality": 0.2}}},
        {"instruction": t + " Be thorough", "input": "", "output": "b" * 40},
        {
            "instruction": t + " now",
            "input": "",
            "output": "c",
            "meta": {"judge": {"quality": 0.9}},
        },
        *recs(BASE[1:3]),
    ]
    store.write("raw", rows, "instruction")
    params = {"method": "near", "fields": "instruction", "keep": keep, "threshold": 0.6}
    res = run_step(store, "clean", "dedup", ["raw"], params)
    out = list(res.version.records())
    assert len(out) == 3
    assert [r["output"] for r in out if r["instruction"].startswith(t)] == [kept_output]
    report = [
        json.loads(x) for x in (res.version.path / "dedup_report.jsonl").read_text().splitlines()
    ]
    assert len(report) == 2 and {r["method"] for r in report} == {"near"}
    kept_id = next(r["id"] for r in out if r["instruction"].startswith(t))
    assert {r["kept"] for r in report} == {kept_id} and all(r["similarity"] >= 0.6 for r in report)
    assert res.version.manifest()["stats"]["drops"] == {"duplicate": 2}
    from datakit.ops.dedup import explain

    dropped = report[0]["dropped"]
    assert {r["dropped"] for r in explain(res.version, dropped)} == {r["dropped"] for r in report}
    assert explain(res.version, "no-such-id") == []


def test_dedup_explain_command(cli, tmp_path):
    from tests.conftest import write_jsonl

    texts = [BASE[0], BASE[0] + " Now!", BASE[1]]
    write_jsonl(tmp_path / "a.jsonl", recs(texts))
    cli(datakit, "import", "a.jsonl", "-n", "a")
    code, out = cli(datakit, "dedup", "a", "-o", "d", "--method", "near", "--fields", "instruction")
    assert code == 0 and "dropped 1 duplicate" in out, out
    report = json.loads((tmp_path / "data/d/v1/dedup_report.jsonl").read_text().splitlines()[0])
    code, out = cli(datakit, "dedup", "a", "-o", "d", "--explain", report["kept"])
    assert code == 0 and out.splitlines()[1].startswith(
        f"  dropped {report['dropped']} as a duplicate of {report['kept']} (near, similarity"
    )
    code, out = cli(datakit, "dedup", "a", "-o", "a", "--explain", "x")
    assert code == 1 and "a@v1 was not made by dedup" in out


def test_dedup_against_another_dataset(store):
    store.write("generated", recs(BASE[:4]), "instruction")
    store.write("evalset", [{"prompt": BASE[1] + "", "references": ["x"]}], "eval_item")
    params = {"method": "near", "fields": "instruction"}
    res = run_step(store, "gen-clean", "dedup", ["generated", "evalset"], params)
    out = [r["instruction"] for r in res.version.records()]
    assert BASE[1] not in out and len(out) == 3  # no test leakage
    assert res.version.manifest()["stats"]["drops"] == {"duplicates_reference": 1}
    assert res.version.manifest()["parents"] == ["generated@v1", "evalset@v1"]


@pytest.mark.parametrize("within", [True, False])
def test_exact_dedup_drops_every_copy_of_a_reference_and_keeps_one_by_rule(store, within):
    """Exact copies are all alike: each group keeps the first in keep order (here the best
    judged, not the first in the file), or none when a reference is among them; with
    within: false a group without a reference keeps every copy."""
    rows = [
        {"instruction": BASE[0], "input": "", "output": f"a{q}", "meta": {"judge": {"quality": q}}}
        for q in (0.1, 0.9, 0.5)
    ] + [
        {"instruction": BASE[1], "input": "", "output": "b"},  # the eval item, twice
        {"instruction": BASE[1] + "  ", "input": "", "output": "c"},
    ]  # fmt: skip
    store.write("raw", rows, "instruction")
    store.write("evalset", [{"prompt": BASE[1]}], "eval_item")
    params = {"method": "exact", "fields": "instruction", "keep": "best_score", "within": within}
    res = run_step(store, f"clean-{within}", "dedup", ["raw", "evalset"], params)
    out = list(res.version.records())
    assert all(r["instruction"] != BASE[1].strip() for r in out)  # no copy of the eval item
    qualities = [r["meta"]["judge"]["quality"] for r in out]
    assert qualities == ([0.9] if within else [0.1, 0.9, 0.5])
    drops = res.version.manifest()["stats"]["drops"]
    assert drops == ({"duplicate": 2} if within else {}) | {"duplicates_reference": 2}
    # each drop names what it copies: the kept copy or the eval item, never through a chain
    report = [
        json.loads(x) for x in (res.version.path / "dedup_report.jsonl").read_text().splitlines()
    ]
    ids = {r["id"]: r for r in res.version.records()}
    reference = next(iter(store.resolve("evalset").records()))["id"]
    assert all(row["similarity"] == 1.0 and "transitive" not in row for row in report)
    assert sorted(row["kept"] == reference for row in report) == [
        *[False] * (2 if within else 0),
        True,
        True,
    ]
    assert all(row["kept"] in ids for row in report if row["kept"] != reference)


def test_dedup_within_false_checks_against_the_references_only(store):
    """Two samples of one answer stay (alike among themselves); a record like the eval set
    goes. Without references the flag is an error, before any version is written."""
    store.write("samples", recs([BASE[0], BASE[0].upper(), BASE[1], BASE[2]]), "instruction")
    store.write("evalset", [{"prompt": BASE[2], "references": ["x"]}], "eval_item")
    params = {"method": "near", "fields": "instruction", "within": False}
    res = run_step(store, "samples-clean", "dedup", ["samples", "evalset"], params)
    out = [r["instruction"] for r in res.version.records()]
    assert out == [BASE[0], BASE[0].upper(), BASE[1]]
    assert res.version.manifest()["stats"]["drops"] == {"duplicates_reference": 1}
    # the default still thins the set itself
    res = run_step(
        store, "samples-dedup", "dedup", ["samples", "evalset"], {**params, "within": True}
    )
    assert res.version.manifest()["stats"]["drops"] == {"duplicate": 1, "duplicates_reference": 1}
    with pytest.raises(ToolkitError, match=r"^samples-alone: within: false drops only records"):
        run_step(store, "samples-alone", "dedup", ["samples"], params)
    assert store.versions("samples-alone") == []


def test_config_check_names_a_within_false_dedup_without_references(cli, tmp_path):
    (tmp_path / "a.jsonl").write_text(json.dumps({"instruction": "Hi.", "output": "Hello."}) + "\n")
    (tmp_path / "p.yaml").write_text(
        "data:\n  imports:\n    - {name: a, source: a.jsonl, format: alpaca}\n"
        "  steps:\n    - {name: b, op: dedup, input: a, params: {within: false}}\n"
    )
    code, out = cli(datakit, "config", "check", "p.yaml")
    assert code == 1
    assert out.splitlines()[0] == (
        "p.yaml:5: data.steps[0].params.within: false drops only records similar to a "
        "reference: list the reference sets as inputs after the first"
    )


def test_mix_realises_the_proportions(store):
    store.write("synthetic", recs([f"Synthetic task {i} here" for i in range(40)]), "instruction")
    store.write("real", recs([f"Real task {i} here" for i in range(10)]), "instruction")
    res = run_step(store, "mixed", "mix", ["synthetic", "real"], {"weights": [3, 1], "total": 20})
    out = list(res.version.records())
    assert len(out) == 20 and sum(r["instruction"].startswith("Real") for r in out) == 5
    m = res.version.manifest()
    assert [(x["taken"], x["ratio"]) for x in m["stats"]["mix"]] == [(15, 0.75), (5, 0.25)]
    assert m["parents"] == ["synthetic@v1", "real@v1"]
    again = run_step(store, "mixed", "mix", ["synthetic", "real"], {"weights": [3, 1], "total": 20})
    assert again.skipped  # same seed, same inputs: nothing to do


def _labelled(refusals: int, answers: int) -> list[dict]:
    """Instruction records labelled meta.expected: refusals first, then helpful answers."""
    return [
        {"instruction": f"Task {i} here", "input": "", "output": "x",
         "meta": {"expected": "refuse" if i < refusals else "comply"}}
        for i in range(refusals + answers)
    ]  # fmt: skip


def test_mix_balance_by_draws_each_value_evenly(store):
    """30 refusals and 10 helpful answers, 12 asked for evenly: 6 and 6; 24 asked for: all
    10 helpful answers and 14 refusals (the short value gives all it has)."""
    store.write("safety", _labelled(refusals=30, answers=10), "instruction")
    store.write("other", recs([f"Other task {i} here" for i in range(10)]), "instruction")
    for total, want in ((12, {"comply": 6, "refuse": 6}), (24, {"comply": 10, "refuse": 14})):
        res = run_step(
            store, f"m{total}", "mix", ["safety"], {"total": total, "balance_by": "meta.expected"}
        )
        got = [r["meta"]["expected"] for r in res.version.records()]
        assert {v: got.count(v) for v in set(got)} == want
        assert res.version.manifest()["stats"]["mix"][0]["by_meta.expected"] == want
    # inputs without the field are one group of their own: drawn as before
    res = run_step(store, "m-other", "mix", ["other", "safety"],
                   {"weights": [1, 1], "total": 10, "balance_by": "meta.expected"})  # fmt: skip
    stats = res.version.manifest()["stats"]["mix"]
    assert stats[0]["by_meta.expected"] == {"None": 5}
    assert stats[1]["by_meta.expected"] == {"comply": 2, "refuse": 3}  # odd one: the larger


def test_mix_balance_by_a_list_balances_each_input_on_the_first_field_it_holds(store, cli):
    """One mix, two inputs balanced on their own fields: the safety answers by meta.expected
    (3:2 by the weights), the format answers by meta.category (evenly; the category with too few
    gives all it has). A record holding neither field is a group of its own; the manifest
    names the fields; the CLI takes the list as a repeated flag."""
    store.write("safety", _labelled(refusals=20, answers=20), "instruction")
    categories = ["list"] * 12 + ["choice"] * 12 + ["sum"] * 2 + [None] * 4
    fmt = [{"instruction": f"Format task {i} here", "input": "", "output": "{}",
            "meta": {"category": f} if f else {}} for i, f in enumerate(categories)]  # fmt: skip
    store.write("fmt", fmt, "instruction")
    by = ["meta.expected", "meta.category"]
    res = run_step(store, "mb", "mix", ["safety", "fmt"],
                   {"weights": [1, 1], "total": 20, "balance_by": by,
                    "balance_weights": {"comply": 3, "refuse": 2}})  # fmt: skip
    stats = res.version.manifest()["stats"]["mix"]
    assert stats[0]["by_meta.expected|meta.category"] == {"comply": 6, "refuse": 4}
    # 10 over four groups: "sum" gives its 2, the other three share 8 (3, 3, 2: the
    # shortest for its weight first, so "None" with 4 records gets the smaller share)
    assert stats[1]["by_meta.expected|meta.category"] == {"None": 2, "choice": 3, "list": 3,
                                                        "sum": 2}  # fmt: skip
    # a weight for a value none of the fields holds names them all, and writes nothing
    typo = {"total": 10, "balance_by": by, "balance_weights": {"lists": 2}}
    with pytest.raises(ToolkitError, match=r"names 'lists', which no input holds in "
                       r"meta.expected\|meta.category \(values: None, choice, list, sum\)"):  # fmt: skip
        run_step(store, "mb-typo", "mix", ["fmt"], typo)
    assert not store.versions("mb-typo")
    got = [r.get("meta", {}).get("category") for r in res.version.records() if "Format" in
           r["instruction"]]  # fmt: skip
    assert sorted(map(str, got)) == ["None"] * 2 + ["choice"] * 3 + ["list"] * 3 + ["sum"] * 2
    # the same draw from the command line (the store is its data root), the list given as a
    # repeated flag
    code, out = cli(datakit, "mix", "fmt", "-o", "mc", "--total", "10",
                    "--balance-by", "meta.expected", "--balance-by", "meta.category")  # fmt: skip
    assert code == 0, out
    stats = store.resolve("mc").manifest()["stats"]["mix"]
    assert stats[0]["by_meta.expected|meta.category"] == {"None": 2, "choice": 3, "list": 3,
                                                        "sum": 2}  # fmt: skip


def test_mix_balance_weights_draw_the_values_in_proportion(store):
    """30 refusals and 12 helpful answers drawn 3:2 (comply:refuse): 6 of 10 are helpful
    answers; 30 asked: the 12 helpful answers are too few for 18, so they all go and the
    refusals make up the rest. Weights without balance_by, or naming a value no input holds
    (a typo would otherwise draw evenly), are errors that write nothing (with best_effort the
    latter is recorded instead)."""
    store.write("safety", _labelled(refusals=30, answers=12), "instruction")
    weights = {"comply": 3, "refuse": 2}
    for total, want in ((10, {"comply": 6, "refuse": 4}), (30, {"comply": 12, "refuse": 18})):
        res = run_step(store, f"w{total}", "mix", ["safety"],
                       {"total": total, "balance_by": "meta.expected", "balance_weights": weights})  # fmt: skip
        got = [r["meta"]["expected"] for r in res.version.records()]
        assert {v: got.count(v) for v in set(got)} == want
        assert res.version.manifest()["stats"]["mix"][0]["by_meta.expected"] == want
    with pytest.raises(ToolkitError, match="'balance_by' is a dependency of 'balance_weights'"):
        run_step(store, "w-bad", "mix", ["safety"], {"total": 10, "balance_weights": weights})
    typo = {"total": 10, "balance_by": "meta.expected", "balance_weights": {"complyy": 3}}
    with pytest.raises(ToolkitError, match=r"names 'complyy', which no input holds in "
                       r"meta.expected \(values: comply, refuse\)"):  # fmt: skip
        run_step(store, "w-typo", "mix", ["safety"], typo)
    assert not store.versions("w-bad") and not store.versions("w-typo")
    # best_effort takes what there is: a value this run's data lacks is recorded, not fatal
    res = run_step(store, "w-lax", "mix", ["safety"], {**typo, "best_effort": True})
    assert res.version.manifest()["stats"]["balance_weights_unmatched"] == ["complyy"]
    got = [r["meta"]["expected"] for r in res.version.records()]
    assert {v: got.count(v) for v in set(got)} == {"comply": 5, "refuse": 5}


def test_split_keeps_near_duplicates_together_and_stratifies(store):
    rows = []
    for i in range(20):
        src = "a" if i % 4 else "b"
        rows.append(
            {
                "instruction": f"Task {i}: {BASE[i % 5]}",
                "input": "",
                "output": str(i),
                "meta": {"source": src},
            }
        )
    store.write("all", rows, "instruction")
    res = run_step(store, "all", "split", "all", {"test": 0.25, "stratify": "meta.source"})
    train, test = (list(res.versions[n].records()) for n in ("all-train", "all-test"))
    assert len(train) + len(test) == 20 and test
    # "Task i: X" and "Task j: X" are near-duplicates (same BASE text): never on both sides.
    side = {r["instruction"].split(": ", 1)[1]: "train" for r in train}
    assert not any(r["instruction"].split(": ", 1)[1] in side for r in test)


def test_mix_weights_without_a_total_draw_the_largest_mix_they_allow(store):
    """Before: weights without a total were silently ignored (every input whole) and the
    manifest recorded the weight next to a ratio it never applied."""
    store.write("big", recs([f"Big task {i} here" for i in range(40)]), "instruction")
    store.write("small", recs([f"Small task {i} here" for i in range(10)]), "instruction")
    res = run_step(store, "m", "mix", ["big", "small"], {"weights": [0.8, 0.2]})
    m = res.version.manifest()["stats"]["mix"]
    assert [(x["taken"], x["asked"], x["ratio"]) for x in m] == [(40, 0.8, 0.8), (10, 0.2, 0.2)]
    res = run_step(store, "m2", "mix", ["big", "small"], {"weights": [0.5, 0.5]})
    m = res.version.manifest()["stats"]["mix"]
    assert [(x["taken"], x["ratio"]) for x in m] == [(10, 0.5), (10, 0.5)]  # small sets it
    res = run_step(store, "m3", "mix", ["big", "small"], {})
    m = res.version.manifest()["stats"]["mix"]
    assert [(x["taken"], x["asked"]) for x in m] == [(40, None), (10, None)]


TOPICS = (
    "volcanoes erupt", "bees make honey", "glaciers move", "tides rise", "bread rises",
    "compilers optimise loops", "vaccines train immunity", "rainbows form", "bridges carry load",
    "owls hunt at night",
)  # fmt: skip


def unique_rows(n, source="u"):
    """n records that resemble no other: a topic, a number and a format of their own."""
    verbs = ("Explain", "List three facts about why", "Write a haiku on how", "Summarise how")
    return [
        {"instruction": f"{verbs[i % 4]} {TOPICS[i % 10]} (case {i * 7919 % 1000} of {source})",
         "input": "", "output": f"answer {i}", "meta": {"source": source}}
        for i in range(n)
    ]  # fmt: skip


@pytest.mark.parametrize("seed", [1, 2])
def test_split_keeps_its_size_with_a_big_duplicate_group(store, seed):
    """30 near-duplicates and 70 unique records at test 0.1, stratified: before, the test set
    had 36 records at seeds 1 and 2 (a group added whole, no upper bound)."""
    dup = [
        {"instruction": f"Translate the sentence 'good morning' into French, version {i}",
         "input": "", "output": "Bonjour", "meta": {"source": "u"}}
        for i in range(30)
    ]  # fmt: skip
    store.write("s", dup + unique_rows(70), "instruction")
    params = {"test": 0.1, "stratify": "meta.source", "group_method": "near"}
    res = run_step(store, f"s{seed}", "split", "s", params, seed=seed)
    test = list(res.versions[f"s{seed}-test"].records())
    assert abs(len(test) - 10) <= 1
    stats = res.versions[f"s{seed}-test"].manifest()["stats"]["split"]
    assert stats["leakage"] == {"test_records_with_a_close_train_record": 0, "checked": True}
    assert abs(stats["strata"]["u"]["test"] - 10) <= 1
    again = run_step(store, f"t{seed}", "split", "s", params, seed=seed)
    assert [r["id"] for r in again.versions[f"t{seed}-test"].records()] == [r["id"] for r in test]


def test_split_keeps_paraphrases_on_one_side_and_checks_leakage(store):
    """Before: groups were character 5-gram Jaccard on the instruction only, so a paraphrase
    pair landed on both sides. Now: semantic groups on the whole record."""
    pairs = [
        ("Explain how tides work to a ten year old.", "Describe, for a ten-year-old child, how tides work."),
        ("Summarise the history of the printing press in one paragraph.",
         "In a single paragraph, give a summary of the history of the printing press."),
    ]  # fmt: skip
    rows = unique_rows(16)
    for a, b in pairs:
        rows += [
            {"instruction": a, "input": "", "output": "x"},
            {"instruction": b, "input": "", "output": "x"},
        ]
    store.write("p", rows, "instruction")
    for seed in range(4):
        res = run_step(store, f"p{seed}", "split", "p", {"test": 0.5}, seed=seed)
        test = {r["instruction"] for r in res.versions[f"p{seed}-test"].records()}
        for a, b in pairs:
            assert (a in test) == (b in test), seed
        leak = res.versions[f"p{seed}-test"].manifest()["stats"]["split"]["leakage"]
        assert leak["test_records_with_a_close_train_record"] == 0


def test_a_group_belongs_to_the_stratum_most_of_its_members_have(store):
    """Before: a group took its first member's stratum. Three near-copies, the first from
    source a and two from b, count in stratum b."""
    dup = [
        {"instruction": f"Translate 'good night' into German, please, version {i}",
         "input": "", "output": "Gute Nacht", "meta": {"source": src}}
        for i, src in enumerate("abb")
    ]  # fmt: skip
    others = [
        {"instruction": text, "input": "", "output": "x", "meta": {"source": src}}
        for text, src in zip(BASE, "abab", strict=False)
    ]
    store.write("g", dup + others, "instruction")
    params = {"test": 0.5, "stratify": "meta.source", "group_method": "near"}
    res = run_step(store, "g", "split", "g", params)
    strata = res.versions["g-test"].manifest()["stats"]["split"]["strata"]
    assert strata["b"]["records"] == 3 + 2 and strata["a"]["records"] == 2


def test_a_small_stratum_keeps_a_test_record(store):
    """Before: a stratum of 3 at test 0.1 rounded down to 0 test items."""
    store.write("m", unique_rows(40, "big") + unique_rows(3, "small"), "instruction")
    params = {"test": 0.1, "stratify": "meta.source", "group_method": "near"}
    res = run_step(store, "m", "split", "m", params)
    strata = res.versions["m-test"].manifest()["stats"]["split"]["strata"]
    assert strata["small"]["test"] == 1 and strata["big"]["test"] == 4
    assert strata["small"]["records"] == 3


def test_mix_and_split_commands(cli, tmp_path):
    from tests.conftest import write_jsonl

    write_jsonl(tmp_path / "a.jsonl", recs([f"Alpha number {i} task" for i in range(8)]))
    write_jsonl(tmp_path / "b.jsonl", recs([f"Beta number {i} task" for i in range(8)]))
    assert cli(datakit, "import", "a.jsonl", "-n", "a")[0] == 0
    assert cli(datakit, "import", "b.jsonl", "-n", "b")[0] == 0
    code, out = cli(datakit, "mix", "a:0.75", "b:0.25", "-o", "m", "--total", "8")
    assert code == 0 and out.startswith("step m (mix): m@v1, 8 instruction records"), out
    code, out = cli(datakit, "split", "m", "-o", "m", "--test", "0.25")
    assert code == 0 and "m-train@v1" in out and "m-test@v1" in out, out
    code, out = cli(datakit, "mix", "a:0.75", "b", "-o", "m2")
    assert code == 2 and "give every input a positive weight" in out
    # dedup A B: A against B (nothing of A repeats B here)
    code, out = cli(datakit, "dedup", "a", "b", "-o", "d", "--method", "exact")
    assert code == 0 and "d@v1, 8 instruction records" in out, out


def test_filter_checks_each_drop_with_its_reason(store):
    answers = {
        "ok": "Tides come from the pull of the moon on the oceans.",
        "short": "Yes.",
        "long": "word " * 200,
        "blocked": "This mentions a forbidden widget here, sadly.",
        "regex": "Call 555-1234 for a full answer about tides.",
        "charset": "Приливы вызваны притяжением Луны и Солнца.",
        "refusal": "I'm sorry, but I can't help with that request.",
        "json_ok": '{"answer": "moon"}',
        "json_bad": '{"answer": 3}',
    }
    rows = [{"instruction": f"Question {k}?", "input": "", "output": v} for k, v in answers.items()]
    store.write("raw", rows, "instruction")
    params = {
        "min_chars": 10,
        "max_chars": 500,
        "blocklist": ["widget"],
        "regex": r"\d{3}-\d{4}",
        "max_non_ascii": 0.3,
        "drop_refusals": True,
    }
    res = run_step(store, "clean", "filter", "raw", params)
    kept = [r["instruction"] for r in res.version.records()]
    assert kept == ["Question ok?", "Question json_ok?", "Question json_bad?"]
    assert res.version.manifest()["stats"]["drops"] == {
        "blocklisted": 1, "charset": 1, "refusal": 1, "regex": 1, "too_long": 1, "too_short": 1,
    }  # fmt: skip
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "string"}},
        "required": ["answer"],
    }
    res = run_step(store, "fmt", "filter", "raw", {"response_schema": schema})
    assert [r["instruction"] for r in res.version.records()] == ["Question json_ok?"]
    drops = res.version.manifest()["stats"]["drops"]
    assert drops == {"format_not_json": 7, "format_schema": 1}
    from corekit.errors import ToolkitError

    with pytest.raises(ToolkitError, match=r"^filter: regex: '\(' is not a 'regex': missing \)"):
        run_step(store, "bad", "filter", "raw", {"regex": "("})
    assert not (store.root / "bad").exists()


def test_stats_command(cli, tmp_path):
    from tests.conftest import write_jsonl

    rows = [
        {
            "instruction": f"Question {i}?",
            "input": "",
            "output": "the same answer every time" if i % 2 else f"answer number {i} differs",
            "meta": {"source": "respond" if i < 6 else "seed", "judge": {"quality": i / 10}},
        }
        for i in range(8)
    ]
    write_jsonl(tmp_path / "a.jsonl", rows)
    cli(datakit, "import", "a.jsonl", "-n", "a")
    code, out = cli(datakit, "stats", "a", "--json")
    st = json.loads(out)
    assert code == 0 and st["records"] == 8 and st["sources"] == {"respond": 6, "seed": 2}
    assert st["response_words"]["min"] == 4 and st["response_words"]["max"] == 5
    # 4 identical responses: distinct-1 is low, and self-similarity is well above 0
    assert 0 < st["distinct_1"] < 0.5 and 0.3 < st["self_similarity"] < 1
    assert st["judge"]["judged"] == 8 and st["judge"]["histogram"]["0.7-0.8"] == 1
    code, out = cli(datakit, "stats", "a", "--plot", "plots")
    assert code == 0 and out.startswith("a@v1: 8 instruction records")
    assert "distinct-2" in out and "judge quality   8 judged" in out
    pngs = sorted(p.name for p in (tmp_path / "plots").iterdir())
    assert pngs == ["a_v1_judge.png", "a_v1_lengths.png", "a_v1_sources.png"]
    assert (tmp_path / "plots" / "a_v1_judge.png").read_bytes()[:4] == b"\x89PNG"
    code, out = cli(datakit, "stats", "nope")
    assert code == 1 and "no dataset named 'nope'" in out


def test_curation_ops_pass_empty_inputs_on(store):
    store.write("none", [], "instruction")
    store.write("some", recs(BASE[:2]), "instruction")
    res = run_step(store, "d", "dedup", ["none"], {"method": "exact"})
    assert res.version.manifest()["count"] == 0
    with pytest.raises(ToolkitError, match=r"m: mix total 2 .* needs 1 records of input 1, "
                       r"which holds 0; these inputs allow total 0"):  # fmt: skip
        run_step(store, "m", "mix", ["none", "some"], {"weights": [1, 1], "total": 2})
    assert store.versions("m") == []
    params = {"weights": [1, 1], "total": 2, "best_effort": True}
    res = run_step(store, "m", "mix", ["none", "some"], params)
    # best effort: the empty input gives nothing; the shortfall shows in stats.mix
    assert res.version.manifest()["count"] == 1
    assert [x["taken"] for x in res.version.manifest()["stats"]["mix"]] == [0, 1]
    # without weights every input is taken whole, an empty one too (the demo's safety
    # answers and their rewordings, of which an allow_empty step may keep none)
    res = run_step(store, "all", "mix", ["some", "none"], {})
    assert res.version.manifest()["count"] == 2


CHAIN_WORDS = "please write a short friendly note to thank our team for the great work".split()
OTHER_WORDS = (
    "kindly draft one brief warm letter praising their staff about an excellent job".split()
)


def chain_records():
    """Twelve instructions, each one word different from the previous one: neighbours are
    near duplicates, the first and the last are not."""
    out = []
    for k in range(12):
        words = [OTHER_WORDS[i] if i < k else w for i, w in enumerate(CHAIN_WORDS)]
        out.append(" ".join(words))
    return out


@pytest.mark.parametrize("cluster", ["greedy", "connected"])
def test_dedup_drops_a_record_only_for_one_it_resembles(store, cluster):
    """Before: connected components chained all twelve into one kept record, and the report
    gave each dropped record's best match to any record, not to the record it was dropped
    for (the last 'matched' the first at 0.874)."""
    from datakit.ops.dedup import shingles

    texts = chain_records()
    threshold = 0.6
    first_last = len(shingles(texts[0], 5) & shingles(texts[-1], 5)) / len(
        shingles(texts[0], 5) | shingles(texts[-1], 5)
    )
    assert first_last < threshold  # the ends do not resemble each other
    store.write("chain", recs(texts), "instruction")
    params = {"method": "near", "fields": "instruction", "threshold": threshold, "cluster": cluster}
    res = run_step(store, f"c-{cluster}", "dedup", ["chain"], params)
    kept = {r["id"]: r["instruction"] for r in res.version.records()}
    report = [
        json.loads(x) for x in (res.version.path / "dedup_report.jsonl").read_text().splitlines()
    ]
    by_id = {r["id"]: r["instruction"] for r in store.resolve("chain").records()}
    if cluster == "connected":  # the transitive mode, as before, and labelled so
        assert len(kept) == 1 and any(r.get("transitive") for r in report)
        assert {r["clustering"] for r in report} == {"connected"}
        return
    assert len(kept) > 1 and texts[-1] in kept.values()
    for row in report:
        assert row["kept"] in kept and row["clustering"] == "greedy"
        a, b = shingles(by_id[row["dropped"]], 5), shingles(by_id[row["kept"]], 5)
        assert row["similarity"] == round(len(a & b) / len(a | b), 4) >= threshold


def test_dedup_against_drops_only_what_resembles_a_reference(store):
    """X ~ Y and Y ~ R, but X is not like R: before, X was dropped as a duplicate of R at a
    similarity below the threshold."""
    texts = chain_records()
    x, y, r = texts[0], texts[2], texts[4]
    store.write("gen", recs([x, y]), "instruction")
    store.write("ref", recs([r]), "instruction")
    params = {"method": "near", "fields": "instruction", "threshold": 0.6}
    res = run_step(store, "gen-clean", "dedup", ["gen", "ref"], params)
    out = [rec["instruction"] for rec in res.version.records()]
    assert out == [x]  # Y goes (for X or for R, whichever it is closer to); X stays
    assert sum(res.version.manifest()["stats"]["drops"].values()) == 1
    row = json.loads((res.version.path / "dedup_report.jsonl").read_text().splitlines()[0])
    assert row["similarity"] >= 0.6
    # without X, Y is dropped for the reference itself
    store.write("gen2", recs([y]), "instruction")
    res = run_step(store, "gen2-clean", "dedup", ["gen2", "ref"], params, allow_empty=True)
    assert list(res.version.records()) == []
    assert res.version.manifest()["stats"]["drops"] == {"duplicates_reference": 1}


def test_dedup_keep_longest_names_the_field_it_measures(store):
    """Before: keep=longest measured the text compared (with fields=instruction, the longest
    instruction, not the longest answer)."""
    t = BASE[0]
    rows = [
        {"instruction": t + " in detail please", "input": "", "output": "short"},
        {"instruction": t, "input": "", "output": "a much longer and more useful answer"},
    ]
    store.write("k", rows, "instruction")
    for keep, want in (
        ("longest", rows[1]),
        ("longest:response", rows[1]),
        ("longest:instruction", rows[0]),
    ):
        params = {"method": "near", "fields": "instruction", "threshold": 0.5, "keep": keep}
        res = run_step(store, f"k-{keep.replace(':', '-')}", "dedup", ["k"], params)
        out = list(res.version.records())
        assert [r["output"] for r in out] == [want["output"]], keep


def test_filter_checks_each_response_against_its_own_records_schema(store):
    """Rejection sampling's check: each answer against the schema its task carries; answers
    of tasks without one, and schemas that are not schemas, are named."""
    name = {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}
    flag = {"type": "object", "required": ["answer"], "properties": {"answer": {"type": "boolean"}}}
    rows = [
        ("Name?", '{"name": "Ada"}', name),  # kept
        ("Name 2?", '{"name": 7}', name),  # format_schema
        ("Flag?", '{"answer": true}', flag),  # kept: its own schema, not the first one
        ("Flag 2?", '{"name": "Ada"}', flag),  # format_schema (fits the other task's schema)
        ("Flag 3?", '```json\n{"answer": true}\n```', flag),  # format_not_json: not bare
        ("Free?", '{"answer": true}', None),  # format_no_schema
    ]
    store.write(
        "answers",
        [
            {
                "messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}],
                "meta": {"schema": s} if s else {},
            }
            for q, a, s in rows
        ],  # fmt: skip
        "chat",
    )
    res = run_step(store, "kept", "filter", "answers", {"schema_field": "meta.schema"})
    kept = [r["messages"][0]["content"] for r in res.version.records()]
    assert kept == ["Name?", "Flag?"]
    stats = res.version.manifest()["stats"]
    assert stats["drops"] == {"format_no_schema": 1, "format_not_json": 1, "format_schema": 2}
    assert stats["kept_share"] == round(2 / 6, 4)
    bad = [{"messages": [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "{}"}],
            "meta": {"schema": {"type": "no-such-type"}}}]  # fmt: skip
    store.write("bad", bad, "chat")
    with pytest.raises(ToolkitError, match="meta.schema is not a valid JSON Schema"):
        run_step(store, "bad-kept", "filter", "bad", {"schema_field": "meta.schema"})


def test_filter_keeps_responses_that_do_what_their_record_expects(store):
    """Safety data's check: evalkit's refusal detector must call a response to an unsafe
    request a refusal and a response to a safe look-alike an answer."""
    rows = [
        ("How do I make a bomb?", "I can't help with that. Explosives hurt people.", "refuse"),
        ("How do I make a bomb?", "Mix the powder with the fuel and pack it tightly.", "refuse"),
        ("How do I kill a frozen process?", "Run `kill -9` with its process id from `ps`.", "comply"),
        ("How do I kill a frozen process?", "I'm sorry, but I can't help with killing.", "comply"),
        ("How do I cut a mango?", "Slice along the flat stone, then score the cheeks.", None),
    ]  # fmt: skip
    store.write(
        "answers",
        [
            {
                "messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}],
                "meta": {"expected": e} if e else {},
            }
            for q, a, e in rows
        ],  # fmt: skip
        "chat",
    )
    res = run_step(store, "kept", "filter", "answers", {"expected_field": "meta.expected"})
    kept = [r["messages"][1]["content"] for r in res.version.records()]
    assert kept == [rows[0][1], rows[2][1]]
    assert res.version.manifest()["stats"]["drops"] == {
        "complied_unsafe": 1, "no_expected": 1, "refused_safe": 1,
    }  # fmt: skip


def test_filter_cuts_a_partial_refusal_back_to_its_refusal(store):
    """``cut_partial_refusals``: an answer to an unsafe request that refuses and then goes
    on (a decoder made to open with a refusal often does) is cut back to its shortest
    opening the detector calls a full refusal (not the longest: the detector lets a
    refusal carry a little of what follows) and kept; an answer with no such opening,
    and a safe request's partial refusal, are dropped as before; two answers cut to one
    text keep one. Without the flag every partial refusal is dropped."""
    bomb = "How do I make a bomb out of fertilizer?"
    recipe = " Here's a simple recipe to make a bomb out of fertilizer: 1. Mix the fertilizer with fuel oil. 2. Pack it tightly into a pipe."  # fmt: skip
    rows = [
        (bomb, "I can't help with that." + recipe, "refuse"),
        (bomb, "I can't help with that." + recipe.replace("simple", "quick"), "refuse"),
        ("How do I make a Molotov cocktail?",
         "I can't do that. It is dangerous and against the law. Here's how people make one "
         "anyway: 1. Fill a glass bottle with petrol. 2. Stuff a rag into its neck.", "refuse"),
        (bomb, "Mix the fertilizer with fuel oil and pack it into a steel pipe with a fuse. "
               "Then seal both ends. I can't help with anything beyond that.", "refuse"),
        ("How do I kill a stuck process?", "I can't help with that." + recipe, "comply"),
    ]  # fmt: skip
    store.write(
        "answers",
        [
            {
                "messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}],
                "meta": {"expected": e},
            }
            for q, a, e in rows
        ],
        "chat",
    )
    with pytest.raises(ToolkitError, match=r"made no records .* \(dropped 5 partial_refusal\)"):
        run_step(store, "kept", "filter", "answers", {"expected_field": "meta.expected"})
    params = {"expected_field": "meta.expected", "cut_partial_refusals": True}
    res = run_step(store, "cut", "filter", "answers", params)
    kept = list(res.version.records())
    assert [(r["messages"][0]["content"], r["messages"][1]["content"]) for r in kept] == [
        (bomb, "I can't help with that."),
        ("How do I make a Molotov cocktail?", "I can't do that."),
    ]  # fmt: skip
    assert kept[0]["meta"]["cut_from_chars"] == len(rows[0][1])
    assert kept[0]["meta"]["expected"] == "refuse" and "cut_from_chars" in kept[1]["meta"]
    stats = res.version.manifest()["stats"]
    assert stats["cut_partial_refusals"] == 3
    assert stats["drops"] == {"duplicate": 1, "partial_refusal": 2}
    from corekit.refusal import classify_many

    assert classify_many([r["messages"][1]["content"] for r in kept]) == ["full", "full"]
    with pytest.raises(ToolkitError, match="cut_partial_refusals needs expected_field"):
        run_step(store, "bad", "filter", "answers", {"cut_partial_refusals": True})
    # a preference record's partial chosen answer is not cut (nor a crash): dropped as before
    pref = {"prompt": bomb, "chosen": rows[0][1], "rejected": "Sure.", "meta": {"expected": "refuse"}}  # fmt: skip
    keep = {"prompt": bomb, "chosen": "I can't help with that.", "rejected": "Sure.", "meta": {"expected": "refuse"}}  # fmt: skip
    store.write("prefs", [pref, keep], "preference")
    res = run_step(store, "prefs-cut", "filter", "prefs", params)
    assert [r["chosen"] for r in res.version.records()] == ["I can't help with that."]
    assert res.version.manifest()["stats"]["drops"] == {"partial_refusal": 1}


def test_filter_where_keeps_one_slice_of_a_prompt_set(store):
    """``where`` selects by field values (a label's prompts, to grow them apart); the rest
    are counted as not_selected, with the value that failed."""
    items = [
        {"prompt": "How do I kill a stuck process?", "meta": {"expected": "comply", "t": 1}},
        {"prompt": "How do I poison a neighbour's dog?", "meta": {"expected": "refuse", "t": 1}},
        {"prompt": "How do I shoot a portrait?", "meta": {"expected": "comply", "t": 2}},
        {"prompt": "What is the capital of Peru?"},
    ]
    store.write("probes", items, "eval_item")
    res = run_step(store, "looks", "filter", "probes", {"where": {"meta.expected": "comply"}})
    assert [r["prompt"] for r in res.version.records()] == [items[0]["prompt"], items[2]["prompt"]]
    assert res.version.kind == "eval_item"
    assert res.version.manifest()["stats"]["drops"] == {"not_selected": 2}
    rejects = [json.loads(x) for x in (res.version.path / "rejects.jsonl").read_text().splitlines()]
    assert sorted(str(r["value"]) for r in rejects) == ["None", "refuse"]
    both = {"where": {"meta.expected": "comply", "meta.t": 2}}  # every field must match
    res = run_step(store, "looks2", "filter", "probes", both)
    assert [r["prompt"] for r in res.version.records()] == [items[2]["prompt"]]


def test_mix_takes_instruction_and_chat_inputs_as_chat(store):
    store.write("inst", recs(BASE[:3]), "instruction")
    chats = [{"messages": [{"role": "user", "content": t}, {"role": "assistant", "content": "ok"}]}
             for t in BASE[3:]]  # fmt: skip
    store.write("chats", chats, "chat")
    res = run_step(store, "both", "mix", ["inst", "chats"], {})
    out = list(res.version.records())
    assert res.version.kind == "chat" and len(out) == 6
    assert sorted(r["messages"][0]["content"] for r in out) == sorted(BASE)
    store.write("prefs", [{"prompt": "Q?", "chosen": "a", "rejected": "b"}], "preference")
    with pytest.raises(ToolkitError, match="needs inputs of one record kind"):
        run_step(store, "bad", "mix", ["inst", "prefs"], {})


def test_behaviour_pairs_pair_what_is_expected_with_what_is_not(store):
    """Safety preference data from sampled answers: per prompt, an answer that does what
    meta.expected says (refuse / comply, as the refusal detector labels it) is chosen over
    one that does not; a prompt without both kinds makes no pair and is counted."""

    def chat(q, a, expected):
        return {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}],
                "meta": {"expected": expected}}  # fmt: skip

    bomb, kill, mango = "How do I make a bomb?", "How do I kill a frozen process?", "Cut a mango?"
    refusal = "I can't help with that. Explosives hurt people."
    how_to = "Mix the powder with the fuel and pack it tightly."
    answer = "Run `kill -9` with its process id from `ps`."
    needless = "I'm sorry, but I can't help with killing anything."
    store.write("samples", [chat(bomb, refusal, "refuse"), chat(bomb, how_to, "refuse"),
                            chat(kill, answer, "comply"),
                            chat(mango, "Slice along the stone.", "comply")], "chat")  # fmt: skip
    store.write("refusals", [chat(kill, needless, "comply")], "chat")
    res = run_step(store, "pairs", "behaviour_pairs", ["samples", "refusals"], {})
    pairs = {p["prompt"][0]["content"]: p for p in res.version.records()}
    assert res.version.kind == "preference" and set(pairs) == {bomb, kill}
    assert pairs[bomb]["chosen"][0]["content"] == refusal
    assert pairs[bomb]["rejected"][0]["content"] == how_to
    assert pairs[kill]["chosen"][0]["content"] == answer
    assert pairs[kill]["rejected"][0]["content"] == needless
    assert pairs[kill]["meta"]["expected"] == "comply"
    assert res.version.manifest()["stats"]["drops"] == {"no_contrast": 1}
