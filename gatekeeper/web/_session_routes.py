"""Signing in and out: GET/POST /login, GET /login/link, POST /logout."""

from __future__ import annotations

import hmac
import urllib.parse
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from .._gate import Gatekeeper
from . import _auth
from ._deps import Refused, check_csrf, current_viewer, get_gate, get_settings, render
from ._settings import WebSettings
from ._throttle import check_attempts, client_address

__all__ = ["router"]

router = APIRouter(include_in_schema=False)


def _safe_next(target: str | None) -> str:
    """Only same-site paths: never ``//evil.example`` or ``https://...``."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return "/"
    parts = urllib.parse.urlsplit(target)
    if parts.scheme or parts.netloc:
        return "/"
    return target


def _signed_in(settings: WebSettings, approver: str, target: str) -> Response:
    value, _ = _auth.new_session(settings, approver)
    response = RedirectResponse(_safe_next(target), status_code=303)
    _auth.set_cookie(response, settings, _auth.SESSION_COOKIE, value, settings.session_ttl)
    response.delete_cookie(_auth.CSRF_COOKIE, path="/")
    return response


@router.get("/login")
def login_form(request: Request, next: str = "/") -> Response:
    return render(request, "login.html", next=_safe_next(next), error=None, username="")


@router.post("/login")
def login(
    request: Request,
    gate: Annotated[Gatekeeper, Depends(get_gate)],
    settings: Annotated[WebSettings, Depends(get_settings)],
    name: Annotated[str, Form(max_length=200)] = "",
    secret: Annotated[str, Form(max_length=1000)] = "",
    csrf: Annotated[str, Form(max_length=200)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/",
) -> Response:
    expected = request.cookies.get(_auth.CSRF_COOKIE, "")
    if not expected or not csrf or not hmac.compare_digest(csrf, expected):
        raise Refused(403, "csrf", "the sign-in form expired; reload the page and try again")
    peer = request.client.host if request.client else None
    forwarded = ",".join(request.headers.getlist("x-forwarded-for"))
    check_attempts(gate, settings, name, client_address(settings, peer, forwarded))
    approver = gate.approvers.get(name) if gate.approvers is not None else None
    stored = approver.web_secret_hash if approver is not None else None
    # An unknown name, or one without a secret, costs the same scrypt run
    # (against a dummy hash) as a wrong secret: timing can't tell which names exist.
    if not _auth.verify_secret(secret, stored) or approver is None:
        return render(
            request,
            "login.html",
            status_code=401,
            next=_safe_next(next),
            error="Wrong name or secret.",
            username=name,
        )
    return _signed_in(settings, approver.name, next)


@router.get("/login/link")
def login_link(
    request: Request,
    gate: Annotated[Gatekeeper, Depends(get_gate)],
    settings: Annotated[WebSettings, Depends(get_settings)],
    t: str = "",
) -> Response:
    try:
        name = _auth.redeem_login_link(gate, settings, t)
    except _auth.LinkRefused as exc:
        raise Refused(403, "bad_link", str(exc)) from None
    if gate.approvers is not None and name not in gate.approvers:
        raise Refused(403, "bad_link", f"{name!r} is no longer a configured approver")
    return _signed_in(settings, name, "/")


@router.post("/logout")
async def logout(request: Request) -> Response:
    """End the session in the store (so a copied cookie dies too), then drop the cookie."""
    found = await run_in_threadpool(current_viewer, request)
    if found is not None and found.by_cookie:
        form = await request.form()
        token = form.get("csrf") or request.headers.get("x-csrf-token")
        check_csrf(found, token if isinstance(token, str) else None)
        settings = get_settings(request)
        session = _auth.read_session(settings, request.cookies.get(_auth.SESSION_COOKIE))
        if session is not None:
            await run_in_threadpool(_auth.end_session, get_gate(request), settings, session)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(_auth.SESSION_COOKIE, path="/")
    return response
