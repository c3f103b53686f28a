"""The review app's pages: sign-in, the queue (``/next`` hands out the next free record),
and a record's page with everything an annotator acts on."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlencode

# FastAPI reads the handlers' annotations (Request) from this module's globals.
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from ..records import editable_response
from .agreement import agreement
from .core import (
    LETTERS,
    STATUSES,
    RecordState,
    judge_suggestion,
    options,
    prompt_text,
)
from .site import (
    CLAIM_SECONDS,
    COOKIE_NAME,
    COOKIE_PERSONAL,
    BadRequest,
    Site,
    filters,
    option_letter,
    query,
    rid_url,
    word_diff,
)


def add_pages(app: FastAPI, site: Site) -> None:
    review = site.review

    @app.get("/", response_class=HTMLResponse)
    async def home(request: Request) -> Response:
        personal = request.query_params.get("as")
        if site.annotators and personal:
            if personal not in site.annotators:
                raise BadRequest("this personal link is not valid for this review", 403)
            response = RedirectResponse("/next", status_code=303)
            response.set_cookie(COOKIE_PERSONAL, personal, httponly=True, samesite="strict")
            return response
        if not site.annotator(request):
            return site.page(request, "login.html", {"review": review})
        return RedirectResponse("/next", status_code=303)

    @app.post("/login")
    async def login(request: Request) -> Response:
        from .core import ANNOTATOR_RE

        form = await request.form()
        site.check_csrf(request, form)
        if site.annotators:
            raise BadRequest("names come from personal links here: open yours", 403)
        name = str(form.get("name") or "").strip()
        if not ANNOTATOR_RE.match(name):
            raise BadRequest(
                "name: 1-40 letters, digits, '.', '_' or '-', starting with a letter or digit"
            )
        response = RedirectResponse("/next", status_code=303)
        response.set_cookie(COOKIE_NAME, name, httponly=True, samesite="strict")
        return response

    @app.post("/logout")
    async def logout(request: Request) -> Response:
        site.check_csrf(request, await request.form())
        response = RedirectResponse("/", status_code=303)
        response.delete_cookie(COOKIE_NAME)
        response.delete_cookie(COOKIE_PERSONAL)
        return response

    @app.get("/next")
    async def next_record(request: Request) -> Response:
        who = site.annotator(request)
        if not who:
            return RedirectResponse("/", status_code=303)
        return _next(site, request, who)

    @app.get("/r/{rid:path}", response_class=HTMLResponse)
    async def show(request: Request, rid: str) -> Response:
        who = site.annotator(request)
        if not who:
            return RedirectResponse("/", status_code=303)
        if rid not in review.by_id:
            raise BadRequest(f"no record {rid!r} in {review.version.ref}", 404)
        return site.page(request, "record.html", _record_context(site, request, rid, who))


def _next(site: Site, request: Request, who: str) -> Response:
    """The next record of the annotator's queue that no one else holds (claimed for them),
    starting after ``?after=ID``; a message when the queue is empty."""
    review = site.review
    f = filters(request)
    queue = review.queue(who, **f)
    after = request.query_params.get("after")
    if after in review.by_id:
        pos = review.position
        queue = [q for q in queue if pos[q] > pos[after]] + [
            q for q in queue if pos[q] <= pos[after]
        ]
    for rid in queue:
        if f["status"] != "todo" or site.free(rid, who):
            if f["status"] == "todo":
                site.claims[rid] = (who, time.time() + CLAIM_SECONDS)
            return RedirectResponse(f"{rid_url(rid)}{query(f)}", status_code=303)
    message = (
        "Nothing left in this queue. Change the filters, or run "
        f"`datakit review commit {review.version.ref}` when the team is done."
    )
    ctx = {"review": review, "who": who, "progress": review.progress(who), "message": message}
    return site.page(request, "message.html", ctx)


def _record_context(site: Site, request: Request, rid: str, who: str) -> dict[str, Any]:
    """Everything record.html shows of one record for one annotator."""
    review = site.review
    rec = review.by_id[rid]
    f = filters(request)
    state = review.state().get(rid) or RecordState()
    prev_id, next_id = site.neighbours(rid, review.queue(who, **f))
    response = editable_response(rec)
    edited = state.edit["after"] if state.edit else None
    opts = options(rec, review.seed)
    mine = state.decisions.get(who)
    q = query(f)
    return {
        "review": review,
        "who": who,
        "rec": rec,
        "rid": rid,
        "meta_source": (rec.get("meta") or {}).get("source") or "",
        "prompt": prompt_text(rec),
        "response": edited if edited is not None else response,
        "editable": response is not None,
        "diff": word_diff(state.edit["original"], edited) if state.edit else None,
        "edited_by": state.edit["annotator"] if state.edit else None,
        "options": [(LETTERS[i], text) for i, (_, text) in enumerate(opts)] if opts else None,
        "my_verdict": option_letter(opts, state.verdicts.get(who)),
        "my_ranking": "".join(option_letter(opts, k) or "?" for k in state.rankings.get(who, [])),
        "my_ratings": state.ratings.get(who, {}),
        "my_status": mine["action"] if mine else "todo",
        "my_reason": (mine or {}).get("reason") or "",
        "others": len(state.decided_by() - {who}),
        "comments": state.comments,
        "suggestion": judge_suggestion(rec),
        "progress": review.progress(who),
        "filters": f,
        "q": q,
        "prev_url": f"{rid_url(prev_id)}{q}" if prev_id else "",
        "next_url": f"{rid_url(next_id)}{q}" if next_id else "",
        "after_url": "/next" + (q + "&" if q else "?") + urlencode({"after": rid}),
        "sources": review.sources(),
        "statuses": (*STATUSES, "all"),
        "annotators": review.progress()["annotators"],
        "agreement": agreement(review),
    }
