"""The review's log, outcomes, agreement, commit and web app (no browser: see
tests/datakit/integration/test_review_browser.py for the real one)."""

from __future__ import annotations

import json
import multiprocessing
import threading

import pytest

from corekit.errors import ToolkitError
from datakit.review.agreement import agreement
from datakit.review.commit import commit
from datakit.review.core import Review, ReviewInputError, options

XSS_PROMPT = 'Say hi <script>window.__pwned = "script"</script>'
XSS_OUTPUT = "Hello <img src=x onerror=\"window.__pwned = 'img'\"> there"


def records():
    return [
        {
            "instruction": XSS_PROMPT,
            "input": "",
            "output": XSS_OUTPUT,
            "meta": {
                "source": "self-instruct",
                "judge": {"scores": {"clarity": 4}, "quality": 0.8},
            },
        },
        {"instruction": "Add 2 and 2.", "input": "", "output": "5", "meta": {"source": "seed"}},
        {
            "instruction": "Name a colour.",
            "input": "",
            "output": "Blue",
            "meta": {"source": "seed", "candidates": ["Blue.", "Red is a colour.", "No."]},
        },
        {"instruction": "Capital of France?", "input": "", "output": "Paris", "meta": {}},
    ]


@pytest.fixture
def review(store):
    store.write("ans", records(), "instruction")
    return Review(store, "ans")


def ids(review):
    return [r["id"] for r in review.records]


# ------------------------------------------------------------------------------ the log


def test_every_action_is_logged_with_before_and_after(review):
    a, b, c, d = ids(review)
    review.append("ann", a, "accept")
    review.append("ann", a, "reject", reason="rude")
    review.append("ann", b, "edit", text="4")
    review.append("ann", b, "edit", text="Four.")
    review.append("ann", a, "rate", criterion="clarity", value=3)
    review.append("ann", a, "rate", criterion="clarity", value="5")
    review.append("ann", d, "comment", text="check the source")
    log = [json.loads(x) for x in review.log_path.read_text().splitlines()]
    assert [e["action"] for e in log] == [
        "accept", "reject", "edit", "edit", "rate", "rate", "comment"
    ]  # fmt: skip
    assert all({"time", "annotator", "record", "action"} <= e.keys() for e in log)
    assert (log[0]["before"], log[0]["after"]) == ("todo", "accepted")
    assert (log[1]["before"], log[1]["after"], log[1]["reason"]) == ("accepted", "rejected", "rude")
    assert (log[2]["before"], log[2]["after"], log[2]["original"]) == ("5", "4", "5")
    assert (log[3]["before"], log[3]["after"]) == ("4", "Four.")
    assert (log[4]["before"], log[4]["after"]) == (None, 3)
    assert (log[5]["before"], log[5]["after"]) == (3, 5)


@pytest.mark.parametrize(
    "who, rid, action, data, message",
    [
        ("", 0, "accept", {}, "annotator"),
        ("bad name!", 0, "accept", {}, "annotator"),
        ("ann", None, "accept", {}, "no record"),
        ("ann", 0, "delete", {}, "action"),
        ("ann", 0, "rate", {"criterion": "clarity", "value": 6}, "1 to 5"),
        ("ann", 0, "rate", {"criterion": "clarity", "value": True}, "1 to 5"),
        ("ann", 0, "rate", {"criterion": "beauty", "value": 3}, "criterion"),
        ("ann", 0, "edit", {"text": "   "}, "empty"),
        ("ann", 0, "edit", {}, "required"),
        ("ann", 0, "edit", {"text": ["x"]}, "must be text"),
        ("ann", 0, "compare", {"choice": "A"}, "no responses to compare"),
        ("ann", 2, "compare", {"choice": "A"}, "rank them"),
        ("ann", 2, "rank", {"order": "AB"}, "every response letter once"),
        ("ann", 2, "rank", {"order": "AAB"}, "every response letter once"),
        ("ann", 0, "comment", {}, "required"),
    ],
)
def test_bad_actions_are_refused_with_the_field_named_and_nothing_logged(
    review, who, rid, action, data, message
):
    rid = ids(review)[rid] if isinstance(rid, int) else "nope"
    with pytest.raises(ReviewInputError, match=message):
        review.append(who, rid, action, **data)
    assert review.entries() == []


def test_a_line_cut_short_by_a_crash_is_skipped_and_the_rest_kept(review):
    a, b, *_ = ids(review)
    review.append("ann", a, "accept")
    with open(review.log_path, "a") as f:
        f.write('{"time": "x", "annot')  # the writer died mid-line
    with open(review.log_path, "a") as f:
        f.write("\n")
    review.append("ann", b, "reject")
    assert [e["record"] for e in review.entries()] == [a, b]


def test_an_append_after_a_torn_last_line_loses_nothing(review, caplog):
    """Before: a line torn by a crash (no trailing newline) swallowed the next valid append."""
    a, b, *_ = ids(review)
    review.append("ann", a, "accept")
    with open(review.log_path, "a") as f:
        f.write('{"time": "x", "annot')  # the writer died mid-line, no newline
    review.append("ann", b, "reject")
    assert [e["record"] for e in review.entries()] == [a, b]
    assert review.skipped == [(2, "not JSON (a line cut short?)")]
    assert any(f"{review.log_path}:2: skipped" in m for m in caplog.messages)


def test_an_append_writes_every_byte_even_in_short_writes(review, monkeypatch):
    """os.write may write part of a buffer; the append writes the rest, so no line is cut."""
    import os as _os

    from datakit.review import core

    real = _os.write
    monkeypatch.setattr(core.os, "write", lambda fd, data: real(fd, bytes(data)[:7]))
    a, b, *_ = ids(review)
    review.append("ann", a, "accept")
    review.append("ann", b, "comment", text="a longer comment than seven bytes")
    monkeypatch.setattr(core.os, "write", real)
    assert [e["action"] for e in review.entries()] == ["accept", "comment"]
    assert review.skipped == []


@pytest.mark.parametrize(
    "line",
    [
        "{}",
        "[1, 2]",
        '{"annotator": "ann", "record": "no-such-record", "action": "accept"}',
        '{"annotator": "ann", "record": "RID", "action": "dance"}',
        '{"annotator": "ann", "record": "RID", "action": "rate", "after": 3}',
    ],
)
def test_a_line_of_the_wrong_shape_is_skipped_not_a_500(review, client, store, line):
    """Before: a valid-JSON line of the wrong shape raised KeyError and every page, status
    and commit failed."""
    a, b, *_ = ids(review)
    review.append("ann", a, "accept")
    with open(review.log_path, "a") as f:
        f.write(line.replace("RID", a) + "\n")
    review.append("ann", b, "reject")
    assert client.get(f"/r/{a}").status_code == 200
    assert client.get("/next", follow_redirects=False).status_code in (302, 303, 307)
    assert review.progress()["log_lines_skipped"] == 1
    assert len(review.entries()) == 2
    result = commit(review)
    assert result["kept"] == 1 and result["log_lines_skipped"] == 1


def test_status_and_commit_say_how_many_log_lines_they_skipped(review, store, tmp_path):
    from click.testing import CliRunner

    from datakit.cli import cli

    a, *_ = ids(review)
    review.append("ann", a, "accept")
    with open(review.log_path, "a") as f:
        f.write("{}\n")
    root = str(store.root)
    r = CliRunner().invoke(cli, ["review", "status", "ans", "--data-root", root])
    assert r.exit_code == 0 and "skipped 1 unreadable line(s)" in r.output, r.output
    r = CliRunner().invoke(cli, ["review", "commit", "ans", "--data-root", root])
    assert r.exit_code == 0 and "skipped 1 unreadable line(s)" in r.output, r.output


def _hammer(root, rid, who, n):
    from datakit.store import DatasetStore

    r = Review(DatasetStore(root), "ans")
    for i in range(n):
        r.append(who, rid, "comment", text=f"{who} {i}")


def test_no_action_is_lost_under_concurrent_annotators(review, store):
    """Threads of one server and two other processes append at once: every line arrives
    whole."""
    a, b, *_ = ids(review)
    threads = [
        threading.Thread(target=lambda w=w: [review.append(w, a, "rate", criterion="clarity", value=1 + i % 5) for i in range(40)])
        for w in ("t1", "t2", "t3", "t4")
    ]  # fmt: skip
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_hammer, args=(str(store.root), b, w, 40)) for w in ("p1", "p2")]
    for p in procs:
        p.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    lines = review.log_path.read_text().splitlines()
    assert len(lines) == 6 * 40
    entries = [json.loads(x) for x in lines]
    for w in ("t1", "t2", "t3", "t4", "p1", "p2"):
        assert sum(e["annotator"] == w for e in entries) == 40


# ------------------------------------------------------------------------ outcomes, queue


def test_outcome_is_the_majority_of_each_annotators_latest_decision(review):
    a, b, c, d = ids(review)
    review.append("x", a, "reject")
    review.append("x", a, "accept")  # x changed their mind: accept counts
    review.append("y", a, "reject")
    review.append("z", a, "edit", text="Hello there")
    review.append("x", b, "accept")
    review.append("y", b, "reject")  # 1:1 -> conflict
    review.append("x", c, "skip", reason="unsure")
    st = review.state()
    assert st[a].outcome() == "edited"  # accept+edit 2 vs reject 1
    assert st[b].outcome() == "conflict"
    assert st[c].outcome() == "skipped"
    assert review.progress()["status"] == {
        "todo": 1, "accepted": 0, "edited": 1, "rejected": 0, "skipped": 1, "conflict": 1,
    }  # fmt: skip


def test_overlap_keeps_a_record_in_the_queue_until_enough_annotators_decided(store):
    store.write("ans", records(), "instruction")
    review = Review(store, "ans", overlap=2)
    a, *_ = ids(review)
    review.append("x", a, "accept")
    assert a not in review.queue("x")  # x has done it
    assert a in review.queue("y")  # one more annotator wanted
    review.append("y", a, "accept")
    assert a not in review.queue("z")
    assert review.progress()["done"] == 1


def test_queue_filters_by_source_score_status_and_annotator(review):
    a, b, c, d = ids(review)
    assert review.queue("x", source="seed") == [b, c]
    assert review.queue("x", min_score=0.5) == [a]  # only a has a judge score
    assert review.queue("x", max_score=0.5) == []
    review.append("y", b, "reject")
    assert review.queue("x", status="rejected") == [b]
    assert review.queue("x", status="all", by="y") == [b]
    assert b not in review.queue("x")  # overlap 1: y's decision took it out


def test_pair_order_is_blind_random_per_record_and_stable(store):
    pairs = [{"prompt": f"q{i}", "chosen": f"good {i}", "rejected": f"bad {i}"} for i in range(40)]
    store.write("prefs", pairs, "preference")
    review = Review(store, "prefs")
    firsts = [options(r, review.seed)[0][0] for r in review.records]
    assert 10 < firsts.count("chosen") < 30  # randomised, not always chosen first
    assert firsts == [options(r, review.seed)[0][0] for r in review.records]  # stable


# ---------------------------------------------------------------------------- agreement


def test_cohens_kappa_for_two_annotators(review):
    """x: accept accept reject reject; y: accept reject reject reject. Observed agreement
    0.75, chance (0.5*0.25 + 0.5*0.75) 0.5, so kappa = (0.75-0.5)/(1-0.5) = 0.5."""
    recs = ids(review)
    for rid, xa, ya in zip(recs, "aarr", "arrr", strict=True):
        review.append("x", rid, "accept" if xa == "a" else "reject")
        review.append("y", rid, "accept" if ya == "a" else "reject")
    agr = agreement(review)["decision"]
    assert agr["metric"] == "cohen_kappa"
    assert agr["value"] == pytest.approx(0.5)
    assert agr["observed_agreement"] == 0.75
    assert agr["items"] == 4


def _alpha_nominal(units):
    """Krippendorff's nominal alpha from its definition (coincidences of pairable values)."""
    from collections import Counter
    from itertools import permutations

    o = Counter()
    for vals in units:
        m = len(vals)
        if m < 2:
            continue
        for i, j in permutations(range(m), 2):
            o[(vals[i], vals[j])] += 1 / (m - 1)
    n_c = Counter()
    for (c, _), w in o.items():
        n_c[c] += w
    n = sum(n_c.values())
    d_o = sum(w for (c, k), w in o.items() if c != k)
    d_e = sum(n_c[c] * n_c[k] for c in n_c for k in n_c if c != k) / (n - 1)
    return 1 - d_o / d_e


def test_krippendorffs_alpha_for_three_annotators(store):
    store.write("many", [{"prompt": f"q{i}"} for i in range(6)], "eval_item")
    review = Review(store, "many")
    votes = {  # annotator -> decisions on the 6 records (None: not seen)
        "x": "aarraa",
        "y": "arrra-",
        "z": "aar-ar",
    }
    units = []
    for j, rid in enumerate(ids(review)):
        vals = []
        for who, row in votes.items():
            if row[j] != "-":
                review.append(who, rid, "accept" if row[j] == "a" else "reject")
                vals.append(row[j])
        units.append(vals)
    agr = agreement(review)["decision"]
    assert agr["metric"] == "krippendorff_alpha_nominal"
    assert agr["value"] == pytest.approx(_alpha_nominal(units), abs=1e-4)
    assert agr["annotators"] == ["x", "y", "z"]


def test_ratings_agreement_is_weighted(review):
    recs = ids(review)
    for rid, x, y in zip(recs, (1, 2, 4, 5), (1, 3, 4, 5), strict=True):
        review.append("x", rid, "rate", criterion="clarity", value=x)
        review.append("y", rid, "rate", criterion="clarity", value=y)
    agr = agreement(review)["rating:clarity"]
    assert agr["metric"] == "cohen_kappa_linear"
    assert 0.7 < agr["value"] < 1.0  # off by one once: high but not perfect


def _linear_kappa_full_scale(x, y, scale=(1, 2, 3, 4, 5)):
    """Linearly weighted kappa from its definition, on the whole rating scale."""
    k, n = len(scale), len(x)
    idx = {v: i for i, v in enumerate(scale)}
    obs = [[0.0] * k for _ in range(k)]
    for a, b in zip(x, y, strict=True):
        obs[idx[a]][idx[b]] += 1 / n
    pa = [sum(r) for r in obs]
    pb = [sum(obs[i][j] for i in range(k)) for j in range(k)]
    w = [[abs(i - j) / (k - 1) for j in range(k)] for i in range(k)]
    d_o = sum(w[i][j] * obs[i][j] for i in range(k) for j in range(k))
    d_e = sum(w[i][j] * pa[i] * pb[j] for i in range(k) for j in range(k))
    return 1 - d_o / d_e


def test_weighted_kappa_uses_the_whole_rating_scale(review):
    """Before: the weights ranked only the values actually used (2 and 5 here were "one
    step apart"), giving another kappa than the 1-5 scale does."""
    recs = ids(review)
    x, y = (1, 2, 5, 2), (2, 5, 5, 1)
    for rid, a, b in zip(recs, x, y, strict=True):
        review.append("x", rid, "rate", criterion="clarity", value=a)
        review.append("y", rid, "rate", criterion="clarity", value=b)
    agr = agreement(review)["rating:clarity"]
    assert agr["value"] == pytest.approx(_linear_kappa_full_scale(x, y), abs=1e-4)
    from sklearn.metrics import cohen_kappa_score

    used_only = cohen_kappa_score(x, y, weights="linear")
    assert abs(used_only - agr["value"]) > 0.01  # the old computation differs


def test_agreement_is_undefined_when_it_cannot_be_computed(review, store):
    """Before: one constant label was reported as agreement 1.0."""
    a, b, *_ = ids(review)
    for rid in (a, b):
        review.append("x", rid, "accept")
        review.append("y", rid, "accept")
    agr = agreement(review)["decision"]
    assert agr["value"] is None and "one label only" in agr["undefined"]
    review.append("x", a, "rate", criterion="clarity", value=3)  # nobody else rated
    agr = agreement(review)["rating:clarity"]
    assert agr["value"] is None and "two annotators" in agr["undefined"]
    from click.testing import CliRunner

    from datakit.cli import cli

    r = CliRunner().invoke(cli, ["review", "status", "ans", "--data-root", str(store.root)])
    assert "agreement decision: undefined (one label only" in r.output, r.output


def test_three_annotators_get_pairwise_kappa_beside_alpha(store):
    store.write("many", [{"prompt": f"q{i}"} for i in range(4)], "eval_item")
    review = Review(store, "many")
    votes = {"x": "aarr", "y": "arrr", "z": "aara"}
    for j, rid in enumerate(ids(review)):
        for who, row in votes.items():
            review.append(who, rid, "accept" if row[j] == "a" else "reject")
    agr = agreement(review)["decision"]
    assert agr["metric"] == "krippendorff_alpha_nominal"
    assert set(agr["pairwise"]) == {"x~y", "x~z", "y~z"}
    assert agr["pairwise"]["x~y"]["value"] == pytest.approx(0.5)  # as the two-annotator case


# ------------------------------------------------------------------------------- commit


def test_commit_keeps_accepted_and_edited_records_with_their_history(review, store):
    a, b, c, d = ids(review)
    review.append("ann", a, "edit", text="Hello there.")
    review.append("ann", a, "rate", criterion="clarity", value=4)
    review.append("ann", b, "reject", reason="wrong sum")
    review.append("ann", c, "accept")
    review.append("ann", c, "rank", order=_letters_for(review, c, ["c1", "c0", "c2"]))
    result = commit(review, message="round 1")
    v = store.resolve(result["version"])
    assert v.manifest()["parents"] == ["ans@v1"]
    assert v.manifest()["step"]["name"] == "review"
    kept = list(v.records())
    assert [r["meta"]["review"].get("original_id", r["id"]) for r in kept] == [a, c]
    edited = kept[0]
    assert edited["output"] == "Hello there."
    assert edited["meta"]["review"]["original"] == XSS_OUTPUT
    assert edited["id"] != a  # new content, new id
    assert edited["meta"]["review"]["ratings"] == {"clarity": 4.0}
    stats = v.manifest()["stats"]["review"]
    assert stats["annotations"] == 5
    assert stats["actions"] == {"accept": 1, "edit": 1, "rank": 1, "rate": 1, "reject": 1}
    assert stats["outcomes"]["rejected"] == 1 and stats["outcomes"]["todo"] == 1
    rejects = [json.loads(x) for x in (v.path / "rejects.jsonl").read_text().splitlines()]
    assert [(r["record"]["id"], r["reason"], r["notes"]) for r in rejects] == [
        (b, "review_rejected", ["wrong sum"])
    ]
    assert len((v.path / "annotations.jsonl").read_text().splitlines()) == 5
    prefs = store.resolve(result["preferences"]["version"])
    pairs = [(p["chosen"][0]["content"], p["rejected"][0]["content"]) for p in prefs.records()]
    assert sorted(pairs) == sorted(
        [("Red is a colour.", "Blue."), ("Red is a colour.", "No."), ("Blue.", "No.")]
    )
    assert prefs.kind == "preference" and prefs.manifest()["parents"] == ["ans@v1"]


def _letters_for(review, rid, keys):
    opts = options(review.by_id[rid], review.seed)
    letter = {k: "ABCDEFGHIJ"[i] for i, (k, _) in enumerate(opts)}
    return "".join(letter[k] for k in keys)


def test_a_pair_people_preferred_the_other_way_is_swapped(store):
    store.write("prefs", [{"prompt": "q", "chosen": "short", "rejected": "long"}], "preference")
    review = Review(store, "prefs")
    (rid,) = ids(review)
    opts = options(review.by_id[rid], review.seed)
    rejected_letter = "AB"[[k for k, _ in opts].index("rejected")]
    review.append("x", rid, "compare", choice=rejected_letter)
    review.append("y", rid, "compare", choice=rejected_letter)
    review.append("x", rid, "accept")
    (rec,) = store.resolve(commit(review)["version"]).records()
    assert (rec["chosen"], rec["rejected"]) == ("long", "short")
    assert rec["meta"]["review"]["swapped"] is True


def test_commit_refuses_when_there_is_nothing_to_commit(review):
    with pytest.raises(ToolkitError, match="no annotations yet"):
        commit(review)
    review.append("ann", ids(review)[0], "reject")
    with pytest.raises(ToolkitError, match="no record is accepted yet"):
        commit(review)


# ------------------------------------------------------------------------------- web app


def browser(app, name=None, base="http://127.0.0.1:8765"):
    """A client that behaves as this server's own page in a browser: same Origin, and the
    session's CSRF token (from the cookie the first page sets) repeated in a header."""
    from fastapi.testclient import TestClient

    c = TestClient(app, base_url=base, headers={"Origin": base})
    c.get("/")
    c.headers["X-CSRF-Token"] = c.cookies.get("datakit_review_csrf") or ""
    if name:
        c.post("/login", data={"name": name})
    return c


@pytest.fixture
def client(review):
    from datakit.review.app import create_app

    return browser(create_app(review), "ann")


def test_record_text_is_rendered_inert_and_the_policy_forbids_inline_script(client, review):
    a = ids(review)[0]
    page = client.get(f"/r/{a}")
    assert page.status_code == 200
    assert "<script>window" not in page.text and "<img src=x" not in page.text
    assert "&lt;script&gt;window.__pwned" in page.text
    assert "&lt;img src=x onerror=" in page.text
    # same-origin, not no-referrer: under no-referrer a browser's same-origin form POST
    # carries "Origin: null", which the origin check must refuse (login would break)
    assert page.headers["referrer-policy"] == "same-origin"
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    # the one script element is the app's own, external file
    assert page.text.count("<script") == 1
    assert '<script src="/static/review.js" defer></script>' in page.text
    assert page.headers["x-content-type-options"] == "nosniff"


def test_the_queue_moves_on_and_progress_counts(client, review):
    a, b, *_ = ids(review)
    first = client.get("/next", follow_redirects=False)
    assert first.headers["location"] == f"/r/{a}"
    r = client.post("/api/annotate", json={"record": a, "action": "accept"})
    assert r.json()["progress"]["done"] == 1
    assert client.get("/next", follow_redirects=False).headers["location"] == f"/r/{b}"
    assert "done 1 / 4" in client.get(f"/r/{b}").text


def test_two_annotators_are_served_different_records(review):

    from datakit.review.app import create_app

    app = create_app(review)
    x, y = browser(app, "x"), browser(app, "y")
    gx = x.get("/next", follow_redirects=False).headers["location"]
    gy = y.get("/next", follow_redirects=False).headers["location"]
    assert gx != gy


@pytest.mark.parametrize(
    "body",
    [
        {"record": "nope", "action": "accept"},
        {"action": "accept"},
        {"record": 5, "action": "accept"},
        {"record": "REC", "action": "rate", "criterion": "clarity", "value": "high"},
        {"record": "REC", "action": "rate", "criterion": "clarity", "value": 0},
        {"record": "REC", "action": "edit", "text": ""},
        {"record": "REC", "action": "compare", "choice": "Z"},
        {"record": "REC"},
        [],
        "text",
    ],
)
def test_bad_api_input_gets_a_clear_400_never_a_500(client, review, body):
    if isinstance(body, dict) and body.get("record") == "REC":
        body = {**body, "record": ids(review)[0]}
    r = client.post("/api/annotate", json=body)
    assert r.status_code == 400
    assert r.json()["error"] and "Traceback" not in r.text
    assert review.entries() == []


def test_bad_pages_and_forms_get_messages_not_tracebacks(client):
    for url, code, text in [
        ("/next?min_score=high", 400, "min_score: &#39;high&#39; is not a number"),
        ("/next?status=maybe", 400, "status"),
        ("/r/nope", 404, "no record"),
        # ids may hold '/', so this is looked up as an id among the records, nothing else
        ("/r/..%2F..%2Fetc%2Fpasswd", 404, "no record &#39;../../etc/passwd&#39;"),
        ("/nowhere", 404, "no page"),
    ]:
        r = client.get(url)
        assert r.status_code == code, url
        assert text in r.text and "Traceback" not in r.text
    r = client.post("/login", data={"name": "<b>me</b>"})
    assert r.status_code == 400 and "name:" in r.text
    r = client.post(
        "/api/annotate", content="{not json", headers={"content-type": "application/json"}
    )
    assert r.status_code == 400 and r.json()["error"] == "the request body is not valid JSON"
    r = client.post("/api/annotate", data={"record": "x"})
    assert r.status_code == 415


def test_actions_need_a_name_first(review):

    from datakit.review.app import create_app

    c = browser(create_app(review))
    r = c.post("/api/annotate", json={"record": ids(review)[0], "action": "accept"})
    assert r.status_code == 401 and "name yourself" in r.json()["error"]
    assert "Who is reviewing?" in c.get("/").text


def test_a_token_guards_a_non_loopback_server_and_hosts_are_checked(review):
    from fastapi.testclient import TestClient

    from datakit.review.app import create_app

    c = TestClient(
        create_app(review, token="s3cret", allowed_hosts=("*",)), base_url="http://10.1.2.3:9000"
    )
    assert c.get("/").status_code == 401
    assert c.get("/?token=wrong").status_code == 401
    ok = c.get("/?token=s3cret")
    assert ok.status_code == 200 and "Who is reviewing?" in ok.text
    assert c.get("/").status_code == 200  # the cookie carries it from now on
    local = TestClient(create_app(review), base_url="http://evil.example:8765")
    assert local.get("/").status_code == 400  # a rebinding Host is refused


# ---------------------------------------------------------------------------------- CLI


def test_review_cli_status_and_commit(cli, tmp_path):
    from datakit.cli import cli as datakit
    from datakit.store import DatasetStore

    store = DatasetStore(tmp_path / "data")
    store.write("ans", records(), "instruction")
    review = Review(store, "ans")
    a, b, *_ = ids(review)
    review.append("x", a, "accept")
    review.append("y", a, "accept")
    review.append("x", b, "reject")
    review.append("y", b, "accept")
    code, out = cli(datakit, "review", "status", "ans")
    assert code == 0
    assert "ans@v1: 2/4 reviewed, 4 annotations by 2 annotator(s)" in out
    assert "agreement decision: cohen_kappa" in out
    code, out = cli(datakit, "review", "commit", "ans", "-o", "ans-reviewed")
    assert code == 0, out
    assert (
        "wrote ans-reviewed@v1: 1 records kept (1 accepted, 0 edited; 0 rejected, 1 conflicts"
        in out
    )


def test_review_cli_errors(cli, tmp_path):
    from datakit.cli import cli as datakit

    code, out = cli(datakit, "review", "commit", "nothing")
    assert code == 1 and "nothing" in out and "Traceback" not in out
    code, out = cli(datakit, "review", "status", "../../etc")
    assert code == 1 and "Traceback" not in out
    code, out = cli(datakit, "review", "serve", "x", "--port", "99999")
    assert code == 2
    code, out = cli(datakit, "review", "--help")
    assert code == 0 and "Examples:" in out and "datakit review commit" in out


def test_derived_state_follows_appends_from_another_server(review, store):
    """The state is cached per log size: another process's append shows up at once."""
    a, b, *_ = ids(review)
    review.append("x", a, "accept")
    assert review.state()[a].outcome() == "accepted"
    other = Review(store, "ans")
    other.append("y", a, "reject")
    other.append("z", a, "reject")
    assert review.state()[a].outcome() == "rejected"
    assert review.progress()["annotations"] == 3


def test_an_unexpected_error_is_a_500_page_without_a_traceback(review, monkeypatch):

    from datakit.review.app import create_app

    c = browser(create_app(review), "ann")

    def broken(*a, **k):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(review, "queue", broken)
    page = c.get(f"/r/{ids(review)[0]}")
    assert page.status_code == 500 and "internal error" in page.text
    assert "Traceback" not in page.text and "secret internals" not in page.text
    api = c.get("/next")
    assert api.status_code == 500
    monkeypatch.setattr(review, "progress", broken)
    r = c.get("/api/progress")
    assert r.status_code == 500 and r.json() == {"error": "internal error (see the server's log)"}


# ------------------------------------------------------------- other pages on this machine

EVIL = "http://127.0.0.1:9999"  # another server on the same machine, another origin


@pytest.mark.parametrize(
    "content_type",
    ["text/plain; x=application/json", "application/x-www-form-urlencoded", "application/json"],
)
def test_a_cross_origin_post_is_refused_and_nothing_is_logged(client, review, content_type):
    """Before: a CORS-safelisted POST from another port on 127.0.0.1 was accepted and
    logged (no CSRF token, no Origin check, a substring test of the Content-Type)."""
    a = ids(review)[0]
    if content_type.startswith("application/x-www-form"):
        payload = f"record={a}&action=accept"
    else:
        payload = json.dumps({"record": a, "action": "accept"})
    r = client.post(
        "/api/annotate", content=payload, headers={"content-type": content_type, "origin": EVIL}
    )
    assert r.status_code == 403 and review.entries() == []


def test_same_origin_still_needs_the_csrf_token_and_exact_json(client, review):
    a = ids(review)[0]
    r = client.post(
        "/api/annotate", json={"record": a, "action": "accept"}, headers={"x-csrf-token": "guess"}
    )
    assert r.status_code == 403 and "CSRF" in r.json()["error"]
    r = client.post(
        "/api/annotate",
        content=json.dumps({"record": a, "action": "accept"}),
        headers={"content-type": "text/plain; x=application/json"},
    )
    assert r.status_code == 415
    del client.headers["origin"]  # neither Origin nor Referer: refused
    r = client.post("/api/annotate", json={"record": a, "action": "accept"})
    assert r.status_code == 403
    client.headers["referer"] = "http://127.0.0.1:8765/r/x"  # a page of this server
    r = client.post("/api/annotate", json={"record": a, "action": "accept"})
    assert r.status_code == 200
    assert [e["action"] for e in review.entries()] == ["accept"]


def test_login_and_logout_are_same_origin_posts_with_the_token(review):
    """Before: /login accepted a cross-origin POST (switching the victim's name) and /logout
    was a GET."""
    from datakit.review.app import create_app

    c = browser(create_app(review), "ann")
    r = c.post("/login", data={"name": "mallory"}, headers={"origin": EVIL})
    assert r.status_code == 403
    r = c.post("/login", data={"name": "mallory"}, headers={"x-csrf-token": ""})
    assert r.status_code == 403
    assert "annotator: <b>ann</b>" in c.get(f"/r/{ids(review)[0]}").text
    assert c.get("/logout").status_code == 405
    r = c.post("/logout", follow_redirects=False)
    assert r.status_code == 303
    assert "Who is reviewing?" in c.get("/").text
    assert "names are not verified" in c.get("/").text


def test_personal_links_fix_the_name_and_a_forged_one_is_refused(review):
    from datakit.review.app import create_app

    app = create_app(review, annotators={"tok-alice": "alice", "tok-bob": "bob"})
    alice = browser(app)
    assert "personal links" in alice.get("/").text
    assert alice.get("/?as=nope").status_code == 403
    alice.get("/?as=tok-alice")
    a = ids(review)[0]
    r = alice.post("/api/annotate", json={"record": a, "action": "accept", "annotator": "bob"})
    assert r.status_code == 200
    assert [e["annotator"] for e in review.entries()] == ["alice"]
    forger = browser(app)
    forger.cookies.set("datakit_annotator", "bob")  # a self-chosen name counts for nothing
    r = forger.post("/api/annotate", json={"record": a, "action": "reject"})
    assert r.status_code == 401
    r = forger.post("/login", data={"name": "bob"})
    assert r.status_code == 403
    assert len(review.entries()) == 1
    assert "names are not verified" not in alice.get(f"/r/{a}").text


def test_record_ids_are_quoted_in_every_url(store):
    """Before: an id like gsm8k/1 gave a 404 loop."""
    from datakit.review.app import create_app

    odd = ["gsm8k/1", "what?no", "c#sharp", "with space", "plain"]
    store.write("odd", [{"id": i, "prompt": f"q {i}"} for i in odd], "eval_item")
    review = Review(store, "odd")
    c = browser(create_app(review), "ann")
    seen = []
    for _ in odd:
        loc = c.get("/next", follow_redirects=False).headers["location"]
        page = c.get(loc)
        assert page.status_code == 200, loc
        rid = next(i for i in odd if f"q {i}" in page.text)
        seen.append(rid)
        assert c.post("/api/annotate", json={"record": rid, "action": "accept"}).status_code == 200
    assert sorted(seen) == sorted(odd)


def test_a_second_server_on_the_same_version_is_refused(review, store):
    """Claims live in one server process: a second one on the same version would give the
    same records to two annotators, so it fails at once with one clear line."""
    import subprocess
    import sys

    from datakit.review.app import serving_lock

    with serving_lock(review):
        other = Review(store, "ans")
        with pytest.raises(ToolkitError, match=r"already being reviewed by another server \(pid"):
            with serving_lock(other):
                pass
        # and from another process, through the command
        r = subprocess.run(
            [sys.executable, "-m", "datakit.cli", "review", "ans", "--data-root", str(store.root),
             "--port", "1"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert r.returncode == 1 and "already being reviewed" in r.stderr + r.stdout
        assert "Traceback" not in r.stderr
    with serving_lock(Review(store, "ans")):  # free again once the first stops
        pass
