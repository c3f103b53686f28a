"""report.html's per-item view in a real browser (Debian's chromium under Playwright, as the
review UI's test): the status filter and the search box hide and show the right rows."""

from __future__ import annotations

from evalkit.itemview import collect
from evalkit.render import html_report
from tests.datakit.integration.test_review_browser import browser  # noqa: F401 - the fixture
from tests.evalkit.test_itemview import _write


def _shown(page) -> list[str]:
    return page.eval_on_selector_all(
        "#items tbody tr",
        "rows => rows.filter(r => r.style.display !== 'none').map(r => r.dataset.item)",
    )


def test_the_filter_and_search_pick_the_items(browser, tmp_path):  # noqa: F811
    reports = _write(tmp_path)
    items = collect(reports, tmp_path, "base", "tuned")
    path = tmp_path / "report.html"
    path.write_text(html_report(reports, items=(items, "base", "tuned")))
    page = browser.new_page()
    page.goto(path.as_uri())
    assert len(_shown(page)) == 7 and page.inner_text("#item-shown") == "7 of 7 items"
    page.select_option("#item-filter", "lost")
    assert sorted(_shown(page)) == ["q2", "safe-1", "unsafe-2"]
    page.select_option("#item-filter", "changed")
    assert "safe-3" not in _shown(page) and len(_shown(page)) == 6
    page.fill("#item-search", "kill -9")  # matches outputs, not only prompts
    assert sorted(_shown(page)) == ["safe-1", "safe-2"]
    page.select_option("#item-filter", "won")
    assert _shown(page) == ["safe-2"] and page.inner_text("#item-shown") == "1 of 7 items"
    page.close()
