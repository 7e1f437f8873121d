"""FastAPI dependencies shared by the API and the pages: who is asking, CSRF, rendering.

``viewer`` (API: 401 when nobody is signed in) and ``page_viewer`` (pages:
redirect to /login) say who is asking; ``require(scope)`` adds a scope check;
``csrf_protect`` refuses a cookie-authenticated state change without the
session's CSRF token. ``render`` renders a template with ``viewer``, ``csrf``
and ``flash`` always in the context.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
from fastapi import Depends, Request
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from .._gate import Gatekeeper
from ..models import Approver
from . import _auth
from ._settings import ApiToken, Scope, WebSettings

__all__ = [
    "CsrfProtect",
    "LoginRequired",
    "PageLoginRequired",
    "Refused",
    "Viewer",
    "check_csrf",
    "check_scope",
    "csrf_protect",
    "current_viewer",
    "flash",
    "get_gate",
    "get_settings",
    "page_viewer",
    "read_bounded",
    "render",
    "require",
    "require_page",
    "signed_out_csrf",
    "templates",
    "viewer",
]

TEMPLATES_DIR = Path(__file__).parent / "templates"
# autoescape for every template, whatever its file name: agent text is hostile.
templates = Jinja2Templates(
    env=jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)),
        autoescape=True,
    )
)

_ALL_SCOPES: frozenset[str] = frozenset({"read", "decide", "admin"})


class Refused(Exception):
    """An HTTP refusal: status, a short machine ``code`` and a message for people."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class LoginRequired(Refused):
    """Nobody is signed in: 401 on the API, a redirect to /login on the pages."""

    def __init__(self, message: str = "sign in first (session cookie or bearer token)") -> None:
        super().__init__(401, "not_signed_in", message)


@dataclass(frozen=True)
class Viewer:
    """Who is asking: a signed-in approver (cookie) or an API token (bearer)."""

    approver: Approver | None
    token: ApiToken | None = None
    scopes: frozenset[str] = field(default_factory=frozenset)
    csrf: str | None = None

    @property
    def name(self) -> str | None:
        """The approver name decisions are recorded as (None for a token without one)."""
        if self.approver is not None:
            return self.approver.name
        return self.token.approver if self.token is not None else None

    @property
    def label(self) -> str:
        """Who to name in the audit log for actions that need no approver (halts)."""
        if self.name:
            return self.name
        return f"token:{self.token.name}" if self.token is not None else "anonymous"

    @property
    def via(self) -> str:
        """The ``via`` recorded on decisions: ``web`` or ``api-token:NAME``."""
        return "web" if self.token is None else f"api-token:{self.token.name}"

    @property
    def by_cookie(self) -> bool:
        return self.token is None


def get_gate(request: Request) -> Gatekeeper:
    gate: Gatekeeper = request.app.state.gate
    return gate


def get_settings(request: Request) -> WebSettings:
    settings: WebSettings = request.app.state.settings
    return settings


def _approver(gate: Gatekeeper, name: str) -> Approver | None:
    if gate.approvers is None:
        return Approver(name=name)
    return gate.approvers.get(name)


def _from_token(gate: Gatekeeper, settings: WebSettings, token: str) -> Viewer:
    digest = hashlib.sha256(token.encode("utf-8")).hexdigest()
    for candidate in settings.api_tokens:
        if hmac.compare_digest(candidate.token_sha256, digest):
            approver = _approver(gate, candidate.approver) if candidate.approver else None
            return Viewer(approver=approver, token=candidate, scopes=frozenset(candidate.scopes))
    raise LoginRequired("unknown API token")


def current_viewer(request: Request) -> Viewer | None:
    """Who is asking, from ``Authorization: Bearer`` or the session cookie; None if nobody.

    A session signed out of (in any console process) counts as nobody. A
    bearer token that is not configured raises LoginRequired (401) rather than
    falling back to the cookie. The result is cached on ``request.state``.
    """
    cached = getattr(request.state, "viewer", _UNSET)
    if cached is not _UNSET:
        return cached  # type: ignore[no-any-return]
    gate, settings = get_gate(request), get_settings(request)
    found: Viewer | None = None
    auth = request.headers.get("authorization")
    if auth:
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise LoginRequired("the Authorization header must be 'Bearer <token>'")
        found = _from_token(gate, settings, token.strip())
    else:
        session = _auth.read_session(settings, request.cookies.get(_auth.SESSION_COOKIE))
        if session is not None and not _auth.session_ended(gate, session):
            approver = _approver(gate, session.approver)
            if approver is not None:  # removed from the config since: signed out
                found = Viewer(approver=approver, scopes=_ALL_SCOPES, csrf=session.csrf)
    request.state.viewer = found
    return found


_UNSET: Any = object()


def viewer(request: Request) -> Viewer:
    """API dependency: the viewer, or 401."""
    found = current_viewer(request)
    if found is None:
        raise LoginRequired()
    return found


def page_viewer(request: Request) -> Viewer:
    """Page dependency: the viewer, or a redirect to /login (see the error handlers)."""
    try:
        found = current_viewer(request)
    except LoginRequired as exc:
        raise PageLoginRequired(exc.message) from None
    if found is None:
        raise PageLoginRequired()
    return found


class PageLoginRequired(LoginRequired):
    """Raised by page dependencies; answered with a 303 to /login?next=..."""


def check_scope(found: Viewer, scope: Scope) -> Viewer:
    """``found``, if they hold ``scope`` (a session holds every scope); Refused (403) if not."""
    if scope not in found.scopes:
        who = f"token {found.token.name!r}" if found.token else found.label
        raise Refused(403, "forbidden", f"{who} lacks the {scope!r} scope")
    return found


def require(scope: Scope) -> Callable[[Request], Viewer]:
    """API dependency factory: the viewer, who must hold ``scope`` (403 otherwise)."""

    def dependency(request: Request) -> Viewer:
        return check_scope(viewer(request), scope)

    return dependency


def require_page(scope: Scope) -> Callable[[Request], Viewer]:
    """Page dependency factory: like :func:`require`, redirecting to /login when signed out."""

    def dependency(request: Request) -> Viewer:
        return check_scope(page_viewer(request), scope)

    return dependency


def check_csrf(found: Viewer, token: str | None) -> None:
    """Refuse (403) a cookie-authenticated state change whose CSRF token is not the session's."""
    if not found.by_cookie:
        return  # bearer tokens are not sent by browsers on their own
    if not token or not found.csrf or not hmac.compare_digest(token, found.csrf):
        raise Refused(403, "csrf", "missing or wrong CSRF token; reload the page and try again")


async def csrf_protect(request: Request) -> None:
    """Dependency for every state-changing route: header ``X-CSRF-Token`` or form field ``csrf``.

    Runs after nobody-signed-in checks of the route itself; does nothing for
    bearer-token requests and for requests without any viewer (the route's own
    dependency answers those).
    """
    found = await run_in_threadpool(current_viewer, request)  # it may ask the store
    if found is None or not found.by_cookie:
        return
    token = request.headers.get("x-csrf-token")
    if token is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        form = await request.form()
        value = form.get("csrf")
        token = value if isinstance(value, str) else None
    check_csrf(found, token)


CsrfProtect = Depends(csrf_protect)


# -- flash and rendering ----------------------------------------------------------------------
def flash(response: Response, request: Request, message: str) -> None:
    """Show ``message`` once on the next page this browser renders."""
    settings = get_settings(request)
    value = _auth.sign({"p": "flash", "m": message[:500]}, settings.secret_key, 120)
    _auth.set_cookie(response, settings, _auth.FLASH_COOKIE, value, 120)


def _take_flash(request: Request) -> str | None:
    raw = request.cookies.get(_auth.FLASH_COOKIE)
    if not raw:
        return None
    try:
        payload = _auth.unsign(raw, get_settings(request).secret_key)
    except _auth.BadSignature:
        return None
    message = payload.get("m")
    return message if payload.get("p") == "flash" and isinstance(message, str) else None


def signed_out_csrf(request: Request) -> str:
    """The double-submit CSRF token of a signed-out browser (the sign-in form)."""
    token = request.cookies.get(_auth.CSRF_COOKIE)
    if token and len(token) >= 16:
        return token
    cached: str | None = getattr(request.state, "new_csrf", None)
    if cached is None:
        cached = secrets.token_urlsafe(24)
        request.state.new_csrf = cached
    return cached


def render(request: Request, name: str, *, status_code: int = 200, **context: Any) -> Response:
    """Render template ``name`` with ``viewer``, ``csrf`` and ``flash`` always present.

    Signed out, ``csrf`` is a double-submit token kept in the ``gk_csrf``
    cookie (the sign-in form checks it).
    """
    try:
        found = current_viewer(request)
    except LoginRequired:
        found = None
    csrf = found.csrf if found is not None and found.csrf else signed_out_csrf(request)
    message = _take_flash(request)
    response = templates.TemplateResponse(
        request,
        name,
        {"viewer": found, "csrf": csrf, "flash": message, **context},
        status_code=status_code,
    )
    settings = get_settings(request)
    if message is not None:
        response.delete_cookie(_auth.FLASH_COOKIE, path="/")
    if found is None and request.cookies.get(_auth.CSRF_COOKIE) != csrf:
        _auth.set_cookie(response, settings, _auth.CSRF_COOKIE, csrf, 3600)
    return response


async def read_bounded(request: Request, limit: int) -> bytes | None:
    """The request body, or None when it is over ``limit`` bytes (never reads past it)."""
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)
