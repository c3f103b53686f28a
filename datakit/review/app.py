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

from typing import Any

# fastapi is imported here, not lazily: it reads the handlers' annotations (Request) from
# the route modules' globals. Only `datakit review` imports this module.
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from .api import add_api
from .core import Review
from .guard import add_guard
from .pages import add_pages
from .site import HERE, LOOPBACK, Site


def create_app(
    review: Review,
    token: str | None = None,
    allowed_hosts: tuple[str, ...] = LOOPBACK,
    annotators: dict[str, str] | None = None,
):
    """The app. ``annotators``: personal token -> name; when given, names come only from
    those tokens (the links `datakit review --annotators` prints). The guard
    (review/guard.py) checks every request; the pages (review/pages.py) and the JSON API
    (review/api.py) are the routes."""
    app = FastAPI(title="datakit review", docs_url=None, redoc_url=None, openapi_url=None)
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.autoescape = True
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    site = Site(review, templates, token, allowed_hosts, annotators)
    add_guard(app, site)
    add_pages(app, site)
    add_api(app, site)
    return app


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
