"""The review web app (FastAPI, server-rendered Jinja2 pages, one small script).

Safe by default: record text is always rendered as text (Jinja2 autoescaping, no ``|safe``
on record content) and the Content-Security-Policy allows only the app's own script, so a
``<script>`` or ``onerror=`` in model output is inert twice over. Requests must name this
server in their Host header (no DNS rebinding); a server bound to anything but loopback
needs a token. Other pages on the same machine cannot act through a user's browser: every
state-changing request must come from this server's own origin (Origin, else Referer) and
repeat the session's CSRF token (header or form field), actions accept only
``application/json``, login and logout are POSTs. With personal annotator links
(``--annotators``) an annotator's name comes from their token and cannot be chosen; without
them the UI says that names are not verified. Record ids are quoted in every URL. Bad input
gets a 400 with one clear message; nothing outside the data root is read or written.
"""

from __future__ import annotations

import difflib
import hmac
import logging
import secrets
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

# fastapi is imported here, not lazily: it reads the handlers' annotations (Request) from
# this module's globals. Only `datakit review` imports this module.
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from .agreement import agreement
from .core import (
    LETTERS,
    STATUSES,
    RecordState,
    Review,
    ReviewInputError,
    editable_response,
    judge_suggestion,
    options,
    prompt_text,
)

log = logging.getLogger(__name__)
HERE = Path(__file__).parent
COOKIE_NAME = "datakit_annotator"
COOKIE_TOKEN = "datakit_review_token"
COOKIE_CSRF = "datakit_review_csrf"  # per-session token every state-changing request repeats
COOKIE_PERSONAL = "datakit_review_as"  # an annotator's personal token (--annotators)
UNSAFE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
CLAIM_SECONDS = 600
LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)


class BadRequest(Exception):
    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message = message
        self.status = status


def word_diff(before: str, after: str) -> list[tuple[str, str]]:
    """(op, text) runs: ``=`` kept, ``-`` removed, ``+`` added, word by word."""
    a, b = before.split(" "), after.split(" ")
    out: list[tuple[str, str]] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if op == "equal":
            out.append(("=", " ".join(a[i1:i2])))
        if op in ("delete", "replace"):
            out.append(("-", " ".join(a[i1:i2])))
        if op in ("insert", "replace"):
            out.append(("+", " ".join(b[j1:j2])))
    return out


def rid_url(rid: str) -> str:
    """The page of a record, its id quoted (ids may hold '/', '?', '#', spaces)."""
    return "/r/" + quote(rid, safe="")


def own_origin(request: Request) -> str:
    return f"{request.url.scheme}://{request.headers.get('host') or ''}"


def same_origin(request: Request) -> bool:
    """The request comes from a page of this server: its Origin (or, without one, its
    Referer) is this server's own. A request with neither is refused."""
    mine = own_origin(request)
    origin = request.headers.get("origin")
    if origin is not None:
        return origin == mine
    referer = request.headers.get("referer")
    return referer is not None and (referer == mine or referer.startswith(mine + "/"))


def create_app(
    review: Review,
    token: str | None = None,
    allowed_hosts: tuple[str, ...] = LOOPBACK,
    annotators: dict[str, str] | None = None,
):
    """The app. ``annotators``: personal token -> name; when given, names come only from
    those tokens (the links `datakit review --annotators` prints)."""
    app = FastAPI(title="datakit review", docs_url=None, redoc_url=None, openapi_url=None)
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.autoescape = True
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    claims: dict[str, tuple[str, float]] = {}

    def error_page(request: Request, message: str, status: int) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": message}, status_code=status)
        return templates.TemplateResponse(
            request,
            "message.html",
            {"message": message, "review": review, "csrf": getattr(request.state, "csrf", "")},
            status_code=status,
        )

    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Response:
        raw_host = request.headers.get("host") or ""
        host = raw_host if raw_host.endswith("]") else raw_host.rsplit(":", 1)[0]
        if allowed_hosts and host not in allowed_hosts and "*" not in allowed_hosts:
            return Response("unknown Host header\n", status_code=400, media_type="text/plain")
        if token:
            given = (
                request.query_params.get("token")
                or request.cookies.get(COOKIE_TOKEN)
                or request.headers.get("x-review-token")
                or ""
            )
            if not hmac.compare_digest(given.encode(), token.encode()):
                return Response(
                    "this review server needs its token: open the URL it printed\n",
                    status_code=401,
                    media_type="text/plain",
                )
        if request.method in UNSAFE_METHODS and not same_origin(request):
            return Response(
                "refused: a state-changing request from another origin\n",
                status_code=403,
                media_type="text/plain",
            )
        csrf = request.cookies.get(COOKIE_CSRF) or ""
        fresh = not csrf
        if fresh:
            csrf = secrets.token_urlsafe(24)
        request.state.csrf = csrf
        try:
            response = await call_next(request)
        except Exception:  # never a traceback to the browser; the server log has it
            log.exception("review app: %s %s", request.method, request.url.path)
            response = error_page(request, "internal error (see the server's log)", 500)
        if fresh:
            response.set_cookie(COOKIE_CSRF, csrf, httponly=True, samesite="strict")
        if token and request.query_params.get("token"):
            response.set_cookie(COOKIE_TOKEN, token, httponly=True, samesite="strict")
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        # same-origin, not no-referrer: under no-referrer a browser sends "Origin: null" on a
        # same-origin form POST, which the origin check must refuse; nothing leaks elsewhere
        response.headers["Referrer-Policy"] = "same-origin"
        return response

    @app.exception_handler(BadRequest)
    async def bad_request(request: Request, exc: BadRequest) -> Response:
        return error_page(request, exc.message, exc.status)

    @app.exception_handler(ReviewInputError)
    async def bad_action(request: Request, exc: ReviewInputError) -> Response:
        return error_page(request, str(exc), 400)

    @app.exception_handler(404)
    async def not_found(request: Request, exc: Any) -> Response:
        return error_page(request, f"no page {request.url.path}", 404)

    @app.exception_handler(405)
    async def bad_method(request: Request, exc: Any) -> Response:
        return error_page(request, f"{request.method} is not allowed on {request.url.path}", 405)

    def annotator(request: Request) -> str | None:
        from .core import ANNOTATOR_RE

        if annotators:
            personal = request.cookies.get(COOKIE_PERSONAL) or ""
            for key, name in annotators.items():
                if hmac.compare_digest(personal.encode(), key.encode()):
                    return name
            return None
        name = request.cookies.get(COOKIE_NAME)
        return name if name and ANNOTATOR_RE.match(name) else None

    def check_csrf(request: Request, form: Any = None) -> None:
        """The session's CSRF token, repeated in a header or a form field."""
        expected = request.cookies.get(COOKIE_CSRF) or ""
        given = request.headers.get("x-csrf-token") or (form.get("csrf") if form else "") or ""
        if not expected or not hmac.compare_digest(str(given).encode(), expected.encode()):
            raise BadRequest(
                "refused: the request lacks this session's CSRF token (reload the page)", 403
            )

    def page(request: Request, name: str, ctx: dict[str, Any], status: int = 200) -> Response:
        ctx = {
            **ctx,
            "csrf": request.state.csrf,
            "verified_names": bool(annotators),
        }
        return templates.TemplateResponse(request, name, ctx, status_code=status)

    def filters(request: Request) -> dict[str, Any]:
        q = request.query_params
        out: dict[str, Any] = {
            "source": q.get("source", ""),
            "status": q.get("status") or "todo",
            "by": q.get("by", ""),
        }
        if out["status"] not in (*STATUSES, "all"):
            raise BadRequest(
                f"status: {out['status']!r} is not one of {', '.join((*STATUSES, 'all'))}"
            )
        for key in ("min_score", "max_score"):
            raw = q.get(key, "")
            try:
                out[key] = float(raw) if raw.strip() else None
            except ValueError:
                raise BadRequest(f"{key}: {raw!r} is not a number") from None
        return out

    def query(f: dict[str, Any]) -> str:
        kept = {
            k: v
            for k, v in f.items()
            if v not in (None, "") and not (k == "status" and v == "todo")
        }
        return ("?" + urlencode(kept)) if kept else ""

    def neighbours(rid: str, queue: list[str]) -> tuple[str | None, str | None]:
        pos = review.position
        here = pos[rid]
        prev = [q for q in queue if pos[q] < here]
        nxt = [q for q in queue if pos[q] > here]
        return (prev[-1] if prev else None, nxt[0] if nxt else None)

    def free(rid: str, who: str) -> bool:
        holder = claims.get(rid)
        return holder is None or holder[0] == who or holder[1] < time.time()

    @app.get("/", response_class=HTMLResponse)
    async def home(request: Request) -> Response:
        personal = request.query_params.get("as")
        if annotators and personal:
            if personal not in annotators:
                raise BadRequest("this personal link is not valid for this review", 403)
            response = RedirectResponse("/next", status_code=303)
            response.set_cookie(COOKIE_PERSONAL, personal, httponly=True, samesite="strict")
            return response
        if not annotator(request):
            return page(request, "login.html", {"review": review})
        return RedirectResponse("/next", status_code=303)

    @app.post("/login")
    async def login(request: Request) -> Response:
        from .core import ANNOTATOR_RE

        form = await request.form()
        check_csrf(request, form)
        if annotators:
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
        check_csrf(request, await request.form())
        response = RedirectResponse("/", status_code=303)
        response.delete_cookie(COOKIE_NAME)
        response.delete_cookie(COOKIE_PERSONAL)
        return response

    @app.get("/next")
    async def next_record(request: Request) -> Response:
        who = annotator(request)
        if not who:
            return RedirectResponse("/", status_code=303)
        f = filters(request)
        queue = review.queue(who, **f)
        after = request.query_params.get("after")
        if after in review.by_id:
            pos = review.position
            queue = [q for q in queue if pos[q] > pos[after]] + [
                q for q in queue if pos[q] <= pos[after]
            ]
        for rid in queue:
            if f["status"] != "todo" or free(rid, who):
                if f["status"] == "todo":
                    claims[rid] = (who, time.time() + CLAIM_SECONDS)
                return RedirectResponse(f"{rid_url(rid)}{query(f)}", status_code=303)
        return page(
            request,
            "message.html",
            {
                "review": review,
                "who": who,
                "progress": review.progress(who),
                "message": "Nothing left in this queue. Change the filters, or run "
                f"`datakit review commit {review.version.ref}` when the team is done.",
            },
        )

    @app.get("/r/{rid:path}", response_class=HTMLResponse)
    async def show(request: Request, rid: str) -> Response:
        who = annotator(request)
        if not who:
            return RedirectResponse("/", status_code=303)
        rec = review.by_id.get(rid)
        if rec is None:
            raise BadRequest(f"no record {rid!r} in {review.version.ref}", 404)
        f = filters(request)
        state = review.state().get(rid) or RecordState()
        queue = review.queue(who, **f)
        prev_id, next_id = neighbours(rid, queue)
        response = editable_response(rec)
        edited = state.edit["after"] if state.edit else None
        opts = options(rec, review.seed)
        mine = state.decisions.get(who)
        ctx = {
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
            "my_verdict": _letter(opts, state.verdicts.get(who)),
            "my_ranking": "".join(_letter(opts, k) or "?" for k in state.rankings.get(who, [])),
            "my_ratings": state.ratings.get(who, {}),
            "my_status": mine["action"] if mine else "todo",
            "my_reason": (mine or {}).get("reason") or "",
            "others": len(state.decided_by() - {who}),
            "comments": state.comments,
            "suggestion": judge_suggestion(rec),
            "progress": review.progress(who),
            "filters": f,
            "q": query(f),
            "prev_url": f"{rid_url(prev_id)}{query(f)}" if prev_id else "",
            "next_url": f"{rid_url(next_id)}{query(f)}" if next_id else "",
            "after_url": "/next"
            + (query(f) + "&" if query(f) else "?")
            + urlencode({"after": rid}),
            "sources": review.sources(),
            "statuses": (*STATUSES, "all"),
            "annotators": review.progress()["annotators"],
            "agreement": agreement(review),
        }
        return page(request, "record.html", ctx)

    @app.post("/api/annotate")
    async def annotate(request: Request) -> Response:
        who = annotator(request)
        if not who:
            raise BadRequest("name yourself first (open / in the browser)", 401)
        media = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
        if media != "application/json":  # exactly: "text/plain; x=application/json" is not
            raise BadRequest("send the action as JSON (Content-Type: application/json)", 415)
        check_csrf(request)
        try:
            body = await request.json()
        except ValueError:
            raise BadRequest("the request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise BadRequest("the request body must be a JSON object")
        rid, action = body.get("record"), body.get("action")
        data = {k: v for k, v in body.items() if k not in ("record", "action", "annotator")}
        entry = review.append(who, rid, action, **data)
        if action in ("accept", "reject", "skip", "edit"):
            claims.pop(rid, None)
        return JSONResponse(
            {
                "ok": True,
                "action": entry["action"],
                "after": entry.get("after"),
                "progress": review.progress(who),
            }
        )

    @app.get("/api/progress")
    async def progress(request: Request) -> Response:
        return JSONResponse(review.progress(annotator(request)))

    @app.get("/api/agreement")
    async def agree() -> Response:
        return JSONResponse(agreement(review))

    return app


def _letter(opts: list[tuple[str, str]] | None, key: str | None) -> str | None:
    if key == "tie":
        return "tie"
    if not opts or key is None:
        return None
    for i, (k, _) in enumerate(opts):
        if k == key:
            return LETTERS[i]
    return None


def serve(
    review: Review,
    host: str = "127.0.0.1",
    port: int = 8765,
    token: str | None = None,
    annotators: dict[str, str] | None = None,
) -> None:
    import uvicorn

    allowed = LOOPBACK if host in LOOPBACK else ("*",)
    app = create_app(review, token=token, allowed_hosts=allowed, annotators=annotators)
    # Claims (who is looking at which record) live in this process: a second server on the
    # same version would hand the same records to two annotators, so it is refused.
    with serving_lock(review):
        uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)


def serving_lock(review: Review) -> Any:
    """Held while a server serves ``review``'s version; a second one fails at once with the
    first one's address."""
    import contextlib
    import json
    import os

    from filelock import FileLock, Timeout

    from corekit.errors import ToolkitError

    review.dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(review.dir / "serve.lock"))
    info = review.dir / "serve.json"

    @contextlib.contextmanager
    def held() -> Any:
        try:
            lock.acquire(timeout=0)
        except Timeout:
            try:
                who = json.loads(info.read_text())
                where = f" (pid {who.get('pid')})"
            except (OSError, ValueError):
                where = ""
            raise ToolkitError(
                f"{review.version.ref} is already being reviewed by another server{where}: "
                "open that one, or stop it first"
            ) from None
        try:
            info.write_text(json.dumps({"pid": os.getpid()}))
            yield
        finally:
            info.unlink(missing_ok=True)
            lock.release()

    return held()
