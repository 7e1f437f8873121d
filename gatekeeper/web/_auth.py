"""Secrets, signed tokens, session cookies, one-time sign-in links.

Nothing here touches FastAPI: these are the primitives the dependencies and
routes use. Signed tokens are ``base64url(json).base64url(hmac_sha256)``; the
payload carries its own expiry (``exp``, seconds since the epoch) and purpose
(``p``), so a sign-in link can never be replayed as a session cookie.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from starlette.responses import Response

    from .._gate import Gatekeeper
    from ._settings import WebSettings

__all__ = [
    "CSRF_COOKIE",
    "FLASH_COOKIE",
    "SESSION_COOKIE",
    "BadSignature",
    "LinkRefused",
    "Session",
    "end_session",
    "hash_secret",
    "make_login_link",
    "new_session",
    "read_session",
    "redeem_login_link",
    "session_ended",
    "set_cookie",
    "sign",
    "unsign",
    "verify_secret",
]

SESSION_COOKIE = "gk_session"
CSRF_COOKIE = "gk_csrf"  # the signed-out form's double-submit token (sign-in form only)
FLASH_COOKIE = "gk_flash"

_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1
_SCRYPT_MAX_N = 2**20  # a stored hash can't make us allocate gigabytes
_DUMMY_HASH = (  # verified against when the approver has no secret: same cost, no timing tell
    "scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
)

Now = Callable[[], float]


class BadSignature(ValueError):
    """A signed token was forged, damaged, expired or meant for something else."""


class LinkRefused(ValueError):
    """A sign-in link is invalid, expired or already used."""


# -- secrets ------------------------------------------------------------------------------
def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _kdf(secret: str, salt: bytes, n: int, r: int, p: int, dklen: int) -> bytes:
    """scrypt: the one place a console secret is hashed (tests count the calls)."""
    return hashlib.scrypt(
        secret.encode("utf-8"),
        salt=salt,
        n=n,
        r=r,
        p=p,
        dklen=dklen,
        maxmem=256 * r * n + 1024 * 1024,
    )


def hash_secret(secret: str) -> str:
    """``scrypt$n$r$p$salt$hash`` for an approver's console secret (n=2**14, r=8, p=1)."""
    salt = secrets.token_bytes(16)
    key = _kdf(secret, salt, _SCRYPT_N, _SCRYPT_R, _SCRYPT_P, 32)
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${_b64(salt)}${_b64(key)}"


def verify_secret(secret: str, stored: str | None) -> bool:
    """True when ``secret`` matches the ``stored`` hash; compared in constant time.

    A missing or malformed hash costs the same scrypt run and returns False.
    """
    ok_format = True
    try:
        scheme, n_s, r_s, p_s, salt_s, hash_s = (stored or _DUMMY_HASH).split("$")
        n, r, p = int(n_s), int(r_s), int(p_s)
        salt, expected = _unb64(salt_s), _unb64(hash_s)
        if scheme != "scrypt" or not (2 <= n <= _SCRYPT_MAX_N) or not (1 <= r * p <= 64):
            raise ValueError(scheme)
    except (ValueError, binascii.Error):
        ok_format = False
        n, r, p, salt, expected = _SCRYPT_N, _SCRYPT_R, _SCRYPT_P, b"\0" * 16, b"\0" * 32
    got = _kdf(secret, salt, n, r, p, len(expected) or 32)
    same = hmac.compare_digest(got, expected)
    return same and ok_format and stored is not None


# -- signed tokens ----------------------------------------------------------------------------
def _mac(key: str, body: str) -> str:
    return _b64(hmac.new(key.encode("utf-8"), body.encode("ascii"), hashlib.sha256).digest())


def sign(payload: Mapping[str, Any], key: str, ttl: float, *, now: Now = time.time) -> str:
    """``payload`` (JSON-safe) signed with ``key``, valid for ``ttl`` seconds."""
    body = _b64(
        json.dumps({**payload, "exp": int(now() + ttl)}, separators=(",", ":")).encode("utf-8")
    )
    return f"{body}.{_mac(key, body)}"


def unsign(token: str, key: str, *, now: Now = time.time) -> dict[str, Any]:
    """The payload of a token :func:`sign` made with ``key``; BadSignature otherwise."""
    body, _, mac = token.partition(".")
    if not body or not mac or not hmac.compare_digest(_mac(key, body), mac):
        raise BadSignature("bad signature")
    try:
        payload = json.loads(_unb64(body))
    except (ValueError, binascii.Error):
        raise BadSignature("unreadable payload") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("exp"), int):
        raise BadSignature("unreadable payload")
    if payload["exp"] <= now():
        raise BadSignature("expired")
    return payload


# -- sessions -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Session:
    """A signed-in approver, the CSRF token of their session and the session's id."""

    approver: str
    csrf: str
    sid: str


def new_session(settings: WebSettings, approver: str) -> tuple[str, Session]:
    """A fresh session: the ``gk_session`` cookie value and what it stands for."""
    csrf, sid = secrets.token_urlsafe(24), secrets.token_urlsafe(18)
    value = sign(
        {"p": "session", "a": approver, "c": csrf, "s": sid},
        settings.secret_key,
        settings.session_ttl,
    )
    return value, Session(approver, csrf, sid)


def read_session(settings: WebSettings, cookie: str | None) -> Session | None:
    """The session a ``gk_session`` cookie carries; None when absent, forged or expired.

    The cookie alone can't say whether its session was signed out of: ask
    :func:`session_ended` too.
    """
    if not cookie:
        return None
    try:
        payload = unsign(cookie, settings.secret_key)
    except BadSignature:
        return None
    approver, csrf, sid = payload.get("a"), payload.get("c"), payload.get("s")
    if payload.get("p") != "session" or not all(isinstance(x, str) for x in (approver, csrf, sid)):
        return None  # a session from before sessions had ids counts as signed out
    return Session(str(approver), str(csrf), str(sid))


def end_session(gate: Gatekeeper, settings: WebSettings, session: Session) -> None:
    """Sign ``session`` out in every console process: its cookie, even copied, stops working.

    The store keeps the ended id for as long as any cookie of the session could
    still be valid (``session_ttl``).
    """
    gate.store.remember(_ENDED + session.sid, "signed out", settings.session_ttl)


def session_ended(gate: Gatekeeper, session: Session) -> bool:
    """Whether ``session`` was signed out (in any console process on this store)."""
    return gate.store.recall(_ENDED + session.sid) is not None


_ENDED = "web:session-ended:"


def set_cookie(
    response: Response, settings: WebSettings, name: str, value: str, max_age: float
) -> None:
    """Set one of the console's cookies: HttpOnly, SameSite=Strict, Path=/, Secure per settings."""
    response.set_cookie(
        name,
        value,
        max_age=int(max_age),
        path="/",
        secure=settings.cookies_secure,
        httponly=True,
        samesite="strict",
    )


# -- one-time sign-in links ---------------------------------------------------------------------
def make_login_link(settings: WebSettings, approver: str, ttl: float = 900) -> str:
    """A URL that signs ``approver`` in once, within ``ttl`` seconds."""
    token = sign(
        {"p": "link", "a": approver, "n": secrets.token_urlsafe(16)}, settings.secret_key, ttl
    )
    return f"{settings.base_url}/login/link?t={urllib.parse.quote(token)}"


def redeem_login_link(gate: Gatekeeper, settings: WebSettings, token: str) -> str:
    """The approver a sign-in link names, burning it; LinkRefused if bad, expired or used."""
    try:
        payload = unsign(token, settings.secret_key)
    except BadSignature as exc:
        raise LinkRefused(f"this sign-in link is not valid ({exc})") from None
    approver, nonce = payload.get("a"), payload.get("n")
    if payload.get("p") != "link" or not isinstance(approver, str) or not isinstance(nonce, str):
        raise LinkRefused("this sign-in link is not valid")
    ttl = max(float(payload["exp"]) - time.time(), 1.0)
    if not gate.store.use_once("login:" + nonce, ttl):
        raise LinkRefused("this sign-in link has been used already; ask for a new one")
    return approver
