"""What the review app's modules share: the Site (the review, the templates, who may use
it, the claims), its cookies and security headers, and the small helpers of its pages.
"""

from __future__ import annotations

import difflib
import hmac
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

# fastapi is imported here, not lazily: it reads the handlers' annotations (Request) from
# this module's globals. Only `datakit review` imports this module.
from fastapi import Request
from fastapi.responses import JSONResponse, Response
from fastapi.templating import Jinja2Templates

from .core import (
    LETTERS,
    STATUSES,
    Review,
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


@dataclass
class Site:
    """What the routes share: the review, the pages' templates, who may use it, and the
    claims (who is looking at which record, in this process)."""

    review: Review
    templates: Jinja2Templates
    token: str | None = None
    allowed_hosts: tuple[str, ...] = LOOPBACK
    annotators: dict[str, str] | None = None  # personal token -> name
    claims: dict[str, tuple[str, float]] = field(default_factory=dict)

    def error_page(self, request: Request, message: str, status: int) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": message}, status_code=status)
        ctx = {
            "message": message,
            "review": self.review,
            "csrf": getattr(request.state, "csrf", ""),
        }
        return self.templates.TemplateResponse(request, "message.html", ctx, status_code=status)

    def page(self, request: Request, name: str, ctx: dict[str, Any], status: int = 200) -> Response:
        ctx = {**ctx, "csrf": request.state.csrf, "verified_names": bool(self.annotators)}
        return self.templates.TemplateResponse(request, name, ctx, status_code=status)

    def annotator(self, request: Request) -> str | None:
        """Who is asking: from their personal token (``annotators``), else their name."""
        from .core import ANNOTATOR_RE

        if self.annotators:
            personal = request.cookies.get(COOKIE_PERSONAL) or ""
            for key, name in self.annotators.items():
                if hmac.compare_digest(personal.encode(), key.encode()):
                    return name
            return None
        name = request.cookies.get(COOKIE_NAME)
        return name if name and ANNOTATOR_RE.match(name) else None

    def check_csrf(self, request: Request, form: Any = None) -> None:
        """The session's CSRF token, repeated in a header or a form field."""
        expected = request.cookies.get(COOKIE_CSRF) or ""
        given = request.headers.get("x-csrf-token") or (form.get("csrf") if form else "") or ""
        if not expected or not hmac.compare_digest(str(given).encode(), expected.encode()):
            raise BadRequest(
                "refused: the request lacks this session's CSRF token (reload the page)", 403
            )

    def free(self, rid: str, who: str) -> bool:
        holder = self.claims.get(rid)
        return holder is None or holder[0] == who or holder[1] < time.time()

    def neighbours(self, rid: str, queue: list[str]) -> tuple[str | None, str | None]:
        pos = self.review.position
        here = pos[rid]
        prev = [q for q in queue if pos[q] < here]
        nxt = [q for q in queue if pos[q] > here]
        return (prev[-1] if prev else None, nxt[0] if nxt else None)


def filters(request: Request) -> dict[str, Any]:
    """The queue's filters from the query string, checked."""
    q = request.query_params
    out: dict[str, Any] = {
        "source": q.get("source", ""),
        "status": q.get("status") or "todo",
        "by": q.get("by", ""),
    }
    if out["status"] not in (*STATUSES, "all"):
        raise BadRequest(f"status: {out['status']!r} is not one of {', '.join((*STATUSES, 'all'))}")
    for key in ("min_score", "max_score"):
        raw = q.get(key, "")
        try:
            out[key] = float(raw) if raw.strip() else None
        except ValueError:
            raise BadRequest(f"{key}: {raw!r} is not a number") from None
    return out


def query(f: dict[str, Any]) -> str:
    kept = {
        k: v for k, v in f.items() if v not in (None, "") and not (k == "status" and v == "todo")
    }
    return ("?" + urlencode(kept)) if kept else ""


def option_letter(opts: list[tuple[str, str]] | None, key: str | None) -> str | None:
    if key == "tie":
        return "tie"
    if not opts or key is None:
        return None
    for i, (k, _) in enumerate(opts):
        if k == key:
            return LETTERS[i]
    return None
