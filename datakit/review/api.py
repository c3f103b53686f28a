"""The review app's JSON API: an annotator's action on a record (accept, reject, skip, edit,
verdict, rank, rate, comment), their progress, the team's agreement."""

from __future__ import annotations

# FastAPI reads the handlers' annotations (Request) from this module's globals.
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from .agreement import agreement
from .site import BadRequest, Site


def add_api(app: FastAPI, site: Site) -> None:
    review = site.review

    @app.post("/api/annotate")
    async def annotate(request: Request) -> Response:
        who = site.annotator(request)
        if not who:
            raise BadRequest("name yourself first (open / in the browser)", 401)
        media = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
        if media != "application/json":  # exactly: "text/plain; x=application/json" is not
            raise BadRequest("send the action as JSON (Content-Type: application/json)", 415)
        site.check_csrf(request)
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
            site.claims.pop(rid, None)
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
        return JSONResponse(review.progress(site.annotator(request)))

    @app.get("/api/agreement")
    async def agree() -> Response:
        return JSONResponse(agreement(review))
