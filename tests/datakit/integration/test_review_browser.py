"""The review UI in a real browser: Playwright driving Debian's chromium (make test installs
it; never `playwright install`). The server is the real app under uvicorn on loopback."""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

from datakit.review.commit import commit
from datakit.review.core import Review, options
from tests.datakit.test_review import XSS_OUTPUT, XSS_PROMPT, records

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip("no chromium (make test installs Debian's package when it can)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS)
        yield b
        b.close()


class Server:
    def __init__(self, review: Review):
        import uvicorn

        from datakit.review.app import create_app

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        config = uvicorn.Config(
            create_app(review), host="127.0.0.1", port=self.port, log_level="warning"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.time() + 30
        while not self.server.started:
            assert time.time() < deadline, "the review server did not start"
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def login(page, url: str, name: str) -> None:
    page.goto(url + "/")
    page.fill("#name", name)
    page.keyboard.press("Enter")
    page.wait_for_url("**/r/*")


def record_id(page) -> str:
    return page.evaluate("document.body.dataset.record")


def wait_for_record(page, previous: str) -> str:
    """The next record's page (Python-side polling: the app's CSP forbids the eval that
    wait_for_function uses, which is the point of it)."""
    from urllib.parse import quote

    page.wait_for_url(lambda url: "/r/" in url and f"/r/{quote(previous, safe='')}" not in url)
    page.wait_for_load_state()
    return record_id(page)


def expect_text(page, selector: str, text: str) -> None:
    from playwright.sync_api import expect

    expect(page.locator(selector)).to_have_text(text)


def test_keyboard_review_edit_rate_rank_and_commit(browser, store):
    store.write("ans", records(), "instruction")
    review = Review(store, "ans")
    a, b, c, d = (r["id"] for r in review.records)
    with Server(review) as srv:
        page = browser.new_page()
        login(page, srv.url, "ann")
        assert record_id(page) == a
        # the payloads are shown as text and never run
        assert page.evaluate("typeof window.__pwned") == "undefined"
        assert XSS_PROMPT in page.inner_text(".prompt")
        assert XSS_OUTPUT in page.inner_text("#response")
        assert "done 0 / 4" in page.inner_text("#progress")
        assert "k" in page.inner_text("#cheatsheet")  # the cheat sheet is on screen
        page.keyboard.press("4")  # rate the highlighted criterion
        page.wait_for_selector('.rate.chosen[data-criterion="clarity"][data-value="4"]')
        page.keyboard.press("e")
        page.fill("#edit-text", "Hello there.")
        page.keyboard.press("Control+Enter")
        assert wait_for_record(page, a) == b
        assert "done 1 / 4" in page.inner_text("#progress")
        page.keyboard.press("r")
        page.keyboard.type("wrong sum")
        page.keyboard.press("Enter")
        assert wait_for_record(page, b) == c
        assert page.locator(".option").count() == 3  # ranking, side by side
        letters = {k: "ABC"[i] for i, (k, _) in enumerate(options(review.by_id[c], review.seed))}
        order = letters["c1"] + letters["c0"] + letters["c2"]
        page.keyboard.press("o")
        page.keyboard.type(order)
        page.keyboard.press("Enter")
        expect_text(page, "#my-ranking", order)
        page.keyboard.press("a")
        assert wait_for_record(page, c) == d
        page.keyboard.press("s")
        page.keyboard.type("not sure")
        page.keyboard.press("Enter")
        page.wait_for_selector("#message")
        assert "Nothing left" in page.inner_text("#message")
        # the edited record shows its diff, the payload still inert
        page.goto(f"{srv.url}/r/{a}?status=all")
        assert "Hello there." in page.inner_text("#response")
        assert "onerror" in page.inner_text(".diff del")
        assert page.evaluate("typeof window.__pwned") == "undefined"
        token = page.get_attribute('meta[name="csrf-token"]', "content")
        bad = page.request.post(
            srv.url + "/api/annotate", data=json.dumps({"record": a, "action": "rate"}),
            headers={"Content-Type": "application/json", "Origin": srv.url, "X-CSRF-Token": token},
        )  # fmt: skip
        assert bad.status == 400 and "criterion" in bad.json()["error"]
    result = commit(review)
    kept = list(store.resolve(result["version"]).records())
    assert [r["output"] for r in kept] == ["Hello there.", "Blue"]
    assert kept[0]["meta"]["review"]["original"] == XSS_OUTPUT
    assert kept[0]["meta"]["review"]["ratings"] == {"clarity": 4.0}
    prefs = list(store.resolve(result["preferences"]["version"]).records())
    assert {(p["chosen"][0]["content"], p["rejected"][0]["content"]) for p in prefs} == {
        ("Red is a colour.", "Blue."), ("Red is a colour.", "No."), ("Blue.", "No."),
    }  # fmt: skip
    skipped = [e for e in review.entries() if e["action"] == "skip"]
    assert skipped[0]["reason"] == "not sure"


def test_side_by_side_blind_choice(browser, store):
    store.write(
        "prefs",
        [{"prompt": "Greet me.", "chosen": "Hi there!", "rejected": "Go away."}],
        "preference",
    )
    review = Review(store, "prefs")
    (rid,) = (r["id"] for r in review.records)
    with Server(review) as srv:
        page = browser.new_page()
        login(page, srv.url, "ann")
        shown = [page.inner_text(f"#option-{x} pre") for x in "AB"]
        assert sorted(shown) == ["Go away.", "Hi there!"]
        assert "chosen" not in page.inner_text(".options").lower()  # blind: no source labels
        worse = "AB"[shown.index("Go away.")]
        page.keyboard.press("0")  # a tie first, then a change of mind
        expect_text(page, "#my-verdict", "tie")
        page.keyboard.press("1" if worse == "A" else "2")
        expect_text(page, "#my-verdict", worse)
        page.keyboard.press("a")
        page.wait_for_selector("#message")
    (rec,) = store.resolve(commit(review)["version"]).records()
    assert (rec["chosen"], rec["rejected"]) == ("Go away.", "Hi there!")  # people's verdict
    assert [e["after"] for e in review.entries() if e["action"] == "compare"] == ["tie", "rejected"]


def test_two_annotators_at_once(browser, store):
    store.write("ans", records(), "instruction")
    review = Review(store, "ans")
    with Server(review) as srv:
        x, y = browser.new_context(), browser.new_context()  # separate cookies
        px, py = x.new_page(), y.new_page()
        login(px, srv.url, "xavier")
        login(py, srv.url, "yasmin")
        rx, ry = record_id(px), record_id(py)
        assert rx != ry  # each is served a record the other is not working on
        px.keyboard.press("a")
        py.keyboard.press("a")
        nx, ny = wait_for_record(px, rx), wait_for_record(py, ry)
        assert len({rx, ry, nx, ny}) == 4
        px.keyboard.press("a")
        py.keyboard.press("r")
        py.keyboard.type("off topic")
        py.keyboard.press("Enter")
        px.wait_for_selector("#message")
        py.wait_for_selector("#message")
        px.reload()  # the other's last action may have landed after this page was drawn
        assert "done 4 / 4" in px.inner_text("header")
        x.close()
        y.close()
    log = review.entries()
    assert sorted((e["annotator"], e["record"]) for e in log) == sorted(
        [("xavier", rx), ("xavier", nx), ("yasmin", ry), ("yasmin", ny)]
    )


def test_moving_commenting_guidelines_and_taking_the_suggestion(browser, store):
    store.write("ans", records(), "instruction")
    review = Review(store, "ans", guidelines="Reject answers that are wrong.\n<b>not bold</b>")
    a, b, *_ = (r["id"] for r in review.records)
    with Server(review) as srv:
        page = browser.new_page()
        login(page, srv.url, "ann")
        assert record_id(page) == a
        guide = page.inner_text(".guidelines")
        assert "Reject answers that are wrong." in guide and "<b>not bold</b>" in guide
        assert "label accept" in page.inner_text(".suggestion")  # shown, not applied
        assert review.entries() == []
        page.keyboard.press("c")  # the next criterion (helpfulness) is highlighted ...
        page.keyboard.press("3")  # ... and rated
        page.wait_for_selector('.rate.chosen[data-criterion="helpfulness"][data-value="3"]')
        assert page.is_visible("#cheatsheet")
        page.keyboard.press("?")
        assert not page.is_visible("#cheatsheet")
        page.keyboard.press("m")
        page.keyboard.type("check the greeting")
        page.keyboard.press("Control+Enter")
        expect_text(page, "#flash", "comment saved")
        page.keyboard.press("g")  # take the judge's suggestion: a person's action
        assert wait_for_record(page, a) == b
        page.goto(f"{srv.url}/r/{a}?status=all")
        page.keyboard.press("j")
        assert wait_for_record(page, a) == b
        page.keyboard.press("k")
        assert wait_for_record(page, b) == a
        page.keyboard.press("ArrowRight")
        assert wait_for_record(page, a) == b
    log = review.entries()
    assert [(e["action"], e.get("after")) for e in log] == [
        ("rate", 3),
        ("comment", "check the greeting"),
        ("accept", "accepted"),
    ]
    assert log[0]["criterion"] == "helpfulness"
    assert log[2]["reason"] == "took the judge's suggestion"


def test_odd_record_ids_work_in_the_browser(browser, store):
    """Ids with '/', '?', '#' and spaces: every page opens, every action is logged, and the
    page's own JSON posts carry the CSRF token and pass the same-origin check."""
    odd = ["gsm8k/1", "what?no", "c#sharp", "with space"]
    store.write("odd", [{"id": i, "prompt": f"question {i}"} for i in odd], "eval_item")
    review = Review(store, "odd")
    with Server(review) as srv:
        page = browser.new_page()
        login(page, srv.url, "ann")
        seen = []
        for _ in odd:
            rid = record_id(page)
            seen.append(rid)
            assert f"question {rid}" in page.inner_text("body")
            page.keyboard.press("a")
            if len(seen) < len(odd):
                wait_for_record(page, rid)
        page.wait_for_selector("#message")
        page.close()
    assert sorted(seen) == sorted(odd)
    assert sorted(e["record"] for e in review.entries() if e["action"] == "accept") == sorted(odd)


def test_a_page_on_another_port_cannot_act_through_the_browser(browser, store):
    """Another server on 127.0.0.1 (same site, other origin: the annotator's SameSite
    cookies do go along) posts to the review server from the annotator's browser: a
    text/plain form, a urlencoded form, and a no-cors fetch. Every one is refused and
    nothing is logged."""
    import http.server

    store.write("ans", records(), "instruction")
    review = Review(store, "ans")
    with Server(review) as srv:
        context = browser.new_context()
        page = context.new_page()
        login(page, srv.url, "ann")
        target = record_id(page)
        evil_html = f"""<!doctype html><html><body>
<form id=f1 method=post action="{srv.url}/api/annotate" enctype="text/plain">
<input name='{{"record": "{target}", "action": "accept", "x": "' value='"}}'></form>
<form id=f2 method=post action="{srv.url}/login" target=frame2>
<input name=name value=mallory></form><iframe name=frame2></iframe>
<script>
fetch("{srv.url}/api/annotate", {{method: "POST", mode: "no-cors", credentials: "include",
  headers: {{"Content-Type": "text/plain; x=application/json"}},
  body: JSON.stringify({{record: "{target}", action: "reject"}})}});
document.getElementById("f2").submit();
setTimeout(() => document.getElementById("f1").submit(), 300);
</script></body></html>""".encode()

        class Evil(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.end_headers()
                self.wfile.write(evil_html)

            def log_message(self, *a):
                pass

        evil = http.server.HTTPServer(("127.0.0.1", 0), Evil)
        threading.Thread(target=evil.serve_forever, daemon=True).start()
        try:
            attack = context.new_page()  # the same browser session: the cookies go along
            attack.goto(f"http://127.0.0.1:{evil.server_address[1]}/")
            time.sleep(1.5)  # the fetch, the form posts and their responses
            attack.close()
        finally:
            evil.shutdown()
        assert review.entries() == []
        page.goto(srv.url + f"/r/{target}")
        assert "annotator:" in page.inner_text("header") and "ann" in page.inner_text(".who")
        context.close()
