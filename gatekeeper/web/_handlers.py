"""Error handlers and the security-headers middleware.

API paths (``/api/...``) answer ``{"error": {"code": ..., "message": ...}}``;
pages render ``error.html`` (plain text until that template exists). Errors
of the core map to statuses: NotAuthorized 403, RequestNotFound 404,
TransitionRefused 409, InvalidToolCall 422, StoreUnavailable 503.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from jinja2 import TemplateError, TemplateNotFound
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .._errors import (
    GatekeeperError,
    InvalidToolCall,
    NotAuthorized,
    RequestNotFound,
    StoreUnavailable,
    TransitionRefused,
)
from ..logs import get_logger
from ._deps import PageLoginRequired, Refused, render
from ._throttle import TooManyAttempts

__all__ = ["CSP", "SecurityHeaders", "install_error_handlers"]

log = get_logger("gatekeeper.web")

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)
_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]
_CODES = {
    400: "bad_request",
    401: "not_signed_in",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid",
    429: "too_many_attempts",
    503: "unavailable",
}


class SecurityHeaders:
    """Adds CSP, nosniff, no-referrer and DENY framing to every HTTP response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in _HEADERS if k not in names]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def error_response(
    request: Request, status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> Response:
    """The refusal as JSON (API) or the error page (pages)."""
    if _is_api(request):
        return JSONResponse(
            {"error": {"code": code, "message": message}}, status_code=status, headers=headers
        )
    try:
        response = render(
            request, "error.html", status_code=status, code=code, message=message, status=status
        )
    except TemplateError as exc:  # no error page yet, or a broken one: still answer the refusal
        if not isinstance(exc, TemplateNotFound):
            log.error("error.html failed to render: %s", exc)
        response = PlainTextResponse(f"{status} {message}", status_code=status)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors()[:5]:
        loc = ".".join(str(x) for x in error.get("loc", ()) if x != "body") or "request"
        parts.append(f"{loc}: {error.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def install_error_handlers(app: FastAPI) -> None:
    """Map every refusal and core error to its status, as JSON or the error page."""

    async def refused(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Refused)
        if isinstance(exc, PageLoginRequired):
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            query = urllib.parse.urlencode({"next": target})
            return RedirectResponse(f"/login?{query}", status_code=303)
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return error_response(request, exc.status, exc.code, exc.message, headers)

    async def too_many(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, TooManyAttempts)
        return error_response(
            request,
            429,
            "too_many_attempts",
            str(exc),
            {"Retry-After": str(int(exc.retry_after))},
        )

    async def gatekeeper_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, GatekeeperError)
        status, code = 400, "bad_request"
        if isinstance(exc, NotAuthorized):
            status, code = 403, "not_authorized"
        elif isinstance(exc, RequestNotFound):
            status, code = 404, "not_found"
        elif isinstance(exc, TransitionRefused):
            status, code = 409, "conflict"
        elif isinstance(exc, InvalidToolCall):
            status, code = 422, "invalid"
        elif isinstance(exc, StoreUnavailable):
            log.error("store unavailable: %s", exc)
            status, code = 503, "store_unavailable"
        message = exc.message
        if isinstance(exc, RequestNotFound):
            message += (
                "; a request that ended longer ago than the store keeps requests "
                "(store.retention) is gone from it, and its events stay in the audit log"
            )
        return error_response(request, status, code, message)

    async def validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return error_response(request, 422, "invalid", _validation_message(exc))

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        headers: Any = getattr(exc, "headers", None)
        code = _CODES.get(exc.status_code, "error")
        return error_response(request, exc.status_code, code, str(exc.detail), headers)

    app.add_exception_handler(Refused, refused)
    app.add_exception_handler(TooManyAttempts, too_many)
    app.add_exception_handler(GatekeeperError, gatekeeper_error)
    app.add_exception_handler(RequestValidationError, validation)
    app.add_exception_handler(StarletteHTTPException, http_error)
