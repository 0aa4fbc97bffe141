"""Error responses: a small HTML page for a browser that asks for one, JSON (``{"error": ...}``) for the API.

Every refusal of bad input is a 4xx that says what was wrong; only a bug in the viewer is a 500, and that
one names no internals (the log has the traceback).
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.types import Scope

from tracer.logs import get_logger

log = get_logger("glassbox.viewer")


def wants_html(scope: Scope, accept: str) -> bool:
    """Pages answer browsers in HTML; the API (``/api/...``) always answers JSON."""
    return not str(scope.get("path", "")).startswith("/api/") and "text/html" in accept.lower()


def error_response(scope: Scope, accept: str, status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    if wants_html(scope, accept):
        phrase = HTTPStatus(status).phrase
        body = (
            "<!doctype html><html lang='en'><meta charset='utf-8'>"
            f"<title>{status} {html.escape(phrase)} · Glassbox</title>"
            "<div style='font-family:sans-serif;max-width:40em;margin:3em auto'>"
            f"<h1>{status} {html.escape(phrase)}</h1><p>{html.escape(message)}</p>"
            "<p><a href='/'>Back to the runs</a></p></div>"
        )
        return HTMLResponse(body, status_code=status, headers=dict(headers or {}))
    return JSONResponse({"error": message}, status_code=status, headers=dict(headers or {}))


def validation_message(errors: Sequence[Any]) -> str:
    """``query parameter page: Input should be greater than or equal to 1 (got '0')``, one part per error."""
    parts = []
    for err in errors:
        loc = [str(p) for p in err.get("loc", ())]
        where = f"{loc[0]} parameter {'.'.join(loc[1:])}" if len(loc) > 1 else (loc[0] if loc else "request")
        got = err.get("input")
        shown = f" (got {got!r:.60})" if isinstance(got, (str, int, float)) else ""
        parts.append(f"{where}: {str(err.get('msg', 'invalid')).removeprefix('Value error, ')}{shown}")
    return "; ".join(parts) or "invalid request"


def install_error_handlers(app: FastAPI) -> None:
    def respond(request: Request, status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
        return error_response(request.scope, request.headers.get("accept", ""), status, message, headers)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        message = exc.detail if isinstance(exc.detail, str) and exc.detail else HTTPStatus(exc.status_code).phrase
        return respond(request, exc.status_code, message, exc.headers)

    async def bad_params(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return respond(request, 400, validation_message(exc.errors()))

    async def bug(request: Request, exc: Exception) -> Response:
        log.error("viewer error", method=request.method, path=request.url.path, exc_info=exc)
        return respond(request, 500, f"the viewer failed on this request ({type(exc).__name__}); its log says more")

    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, bad_params)
    app.add_exception_handler(Exception, bug)
