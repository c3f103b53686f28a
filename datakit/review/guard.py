"""The review app's guard: every request's Host, token and origin checked, the CSRF cookie
set, safe headers on every response, errors as one clear page (never a traceback)."""

from __future__ import annotations

import hmac
import logging
import secrets
from typing import Any

# FastAPI reads the handlers' annotations (Request) from this module's globals.
from fastapi import FastAPI, Request
from fastapi.responses import Response

from .core import ReviewInputError
from .site import COOKIE_CSRF, COOKIE_TOKEN, CSP, UNSAFE_METHODS, BadRequest, Site, same_origin

log = logging.getLogger(__name__)


def _refusal(request: Request, site: Site) -> Response | None:
    """Why this request is refused before it reaches a route (None: it may go on)."""
    raw_host = request.headers.get("host") or ""
    host = raw_host if raw_host.endswith("]") else raw_host.rsplit(":", 1)[0]
    allowed = site.allowed_hosts
    if allowed and host not in allowed and "*" not in allowed:
        return Response("unknown Host header\n", status_code=400, media_type="text/plain")
    if site.token:
        given = (
            request.query_params.get("token")
            or request.cookies.get(COOKIE_TOKEN)
            or request.headers.get("x-review-token")
            or ""
        )
        if not hmac.compare_digest(given.encode(), site.token.encode()):
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
    return None


def add_guard(app: FastAPI, site: Site) -> None:
    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Response:
        refused = _refusal(request, site)
        if refused is not None:
            return refused
        csrf = request.cookies.get(COOKIE_CSRF) or ""
        fresh = not csrf
        if fresh:
            csrf = secrets.token_urlsafe(24)
        request.state.csrf = csrf
        try:
            response = await call_next(request)
        except Exception:  # never a traceback to the browser; the server log has it
            log.exception("review app: %s %s", request.method, request.url.path)
            response = site.error_page(request, "internal error (see the server's log)", 500)
        if fresh:
            response.set_cookie(COOKIE_CSRF, csrf, httponly=True, samesite="strict")
        if site.token and request.query_params.get("token"):
            response.set_cookie(COOKIE_TOKEN, site.token, httponly=True, samesite="strict")
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        # same-origin, not no-referrer: under no-referrer a browser sends "Origin: null" on a
        # same-origin form POST, which the origin check must refuse; nothing leaks elsewhere
        response.headers["Referrer-Policy"] = "same-origin"
        return response

    @app.exception_handler(BadRequest)
    async def bad_request(request: Request, exc: BadRequest) -> Response:
        return site.error_page(request, exc.message, exc.status)

    @app.exception_handler(ReviewInputError)
    async def bad_action(request: Request, exc: ReviewInputError) -> Response:
        return site.error_page(request, str(exc), 400)

    @app.exception_handler(404)
    async def not_found(request: Request, exc: Any) -> Response:
        return site.error_page(request, f"no page {request.url.path}", 404)

    @app.exception_handler(405)
    async def bad_method(request: Request, exc: Any) -> Response:
        msg = f"{request.method} is not allowed on {request.url.path}"
        return site.error_page(request, msg, 405)
