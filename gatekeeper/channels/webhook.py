"""``WebhookChannel``: POST each request, signed, to any HTTP endpoint (Teams, PagerDuty, ...).

Every delivery is JSON, signed with HMAC-SHA256 over ``v1:{timestamp}:`` and
the body::

    X-Gatekeeper-Timestamp: 1767225600
    X-Gatekeeper-Signature: v1=<hex hmac_sha256(secret, b"v1:1767225600:" + body)>

Decisions that come back (``POST /webhooks/decision``) use the same scheme
with another secret, the ``decision_secret``. The agent process sends the
deliveries, so it holds ``secret``; it must never hold the decision secret,
or it could approve its own calls. Only the deciding side (the console) and
the receiving system share that one.

Failed deliveries are retried (connection errors, timeouts, HTTP 5xx and 429,
honouring ``Retry-After``) with exponential backoff and jitter, within
``attempts`` and ``max_wait`` seconds of waiting; then :class:`ChannelError`
is raised, which the gate audits as ``channel.failed`` (the request stays
pending).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import hashlib
import hmac
import json
import random
import re
import threading
import time
import urllib.parse
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import httpx
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
)
from tenacity.stop import stop_base

from .._errors import ChannelError
from .._version import __version__
from ..models import ApprovalRequest

if TYPE_CHECKING:
    from .._gate import Gatekeeper

__all__ = [
    "DECISION_PATH",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "TOLERANCE",
    "WebhookChannel",
    "sign",
    "signature_matches",
]

SIGNATURE_HEADER = "X-Gatekeeper-Signature"
TIMESTAMP_HEADER = "X-Gatekeeper-Timestamp"
#: Seconds a signed message stays acceptable, either side of the receiver's clock.
TOLERANCE = 300
#: Where the web console takes signed decisions, under its base URL.
DECISION_PATH = "/webhooks/decision"
MIN_SECRET_LENGTH = 16

_URL = re.compile(r"^https?://[^/\s]+", re.IGNORECASE)
# Worth another try: the receiver may be back in a moment. Anything else (a bad
# URL, a refused TLS handshake with a wrong scheme...) fails at once.
_TRANSIENT_HTTPX = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)


def sign(secret: str, timestamp: int | str, body: bytes) -> str:
    """The ``X-Gatekeeper-Signature`` value for ``body`` sent at ``timestamp`` (unix seconds).

    Example: ``sign("s" * 32, 1767225600, b"{}")`` starts with ``"v1="``.
    """
    message = f"v1:{timestamp}:".encode() + body
    return "v1=" + hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def signature_matches(secret: str, timestamp: str, body: bytes, signature: str) -> bool:
    """Whether ``signature`` is ``sign(secret, timestamp, body)``, compared in constant time."""
    expected = sign(secret, timestamp, body)
    return hmac.compare_digest(expected.encode("ascii"), signature.encode("utf-8", "replace"))


def shown_url(url: str) -> str:
    """``url`` without what may be a secret: ``https://hooks.example.com/…``."""
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<a malformed URL>"
    rest = "/…" if (parts.path not in ("", "/") or parts.query or parts.fragment) else ""
    return f"{parts.scheme}://{host}{port}{rest}"


def _retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP-date)."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def _json(document: Mapping[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


class _Transient(Exception):
    """A failed attempt that is worth another one."""

    def __init__(
        self, message: str, *, status: int | None = None, retry_after: float | None = None
    ):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class _StopAfterWaiting(stop_base):
    """Stop when the next wait would take the total past ``limit`` seconds."""

    def __init__(self, limit: float) -> None:
        self.limit = limit

    def __call__(self, retry_state: RetryCallState) -> bool:
        return retry_state.idle_for + retry_state.upcoming_sleep > self.limit


class WebhookChannel:
    """POSTs every held request (``approval.requested``) and its outcome (``approval.updated``).

    Example::

        gate = Gatekeeper(policy=policy, channels=[
            WebhookChannel("https://hooks.example.com/gatekeeper",
                           secret=os.environ["WEBHOOK_SECRET"], name="ops",
                           console_url="https://gatekeeper.example.com"),
        ])

    ``console_url`` is the web console's public URL: deliveries then carry a
    link to the request and the ``decide_url`` where the receiving system may
    send signed decisions back (the console takes them only for channels it is
    given, see ``create_app(webhooks=...)``).

    By default a webhook only notifies. With ``accept_decisions=True`` the
    receiving system may also decide, but only as one of ``approvers`` (which
    must then name at least one configured approver) and with one vote per
    request: its secret authenticates the *system*, not a person.

    Two secrets, held by different processes: ``secret`` signs deliveries and
    is held by the agents that send them; ``decision_secret`` verifies
    decisions and is held only by the console and the receiving system. It
    must differ from ``secret``. An agent's channel leaves it out (it still
    advertises ``decide_url``); the console's copy needs it, and the console
    refuses to start with a channel that accepts decisions without one::

        # the agent process
        WebhookChannel(url, secret=delivery, name="teams",
                       accept_decisions=True, approvers=("alice", "bob"))
        # the console (create_app(webhooks=[...]))
        WebhookChannel(url, secret=delivery, decision_secret=decisions, name="teams",
                       accept_decisions=True, approvers=("alice", "bob"))

    ``sleep`` / ``asleep`` are injectable for tests.
    """

    def __init__(
        self,
        url: str,
        *,
        secret: str,
        name: str = "webhook",
        timeout: float = 5.0,
        attempts: int = 5,
        max_wait: float = 30.0,
        console_url: str | None = None,
        accept_decisions: bool = False,
        approvers: Iterable[str] = (),
        decision_secret: str | None = None,
        client: httpx.Client | None = None,
        async_client: httpx.AsyncClient | None = None,
        sleep: Callable[[float], None] = time.sleep,
        asleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if not _URL.match(url):
            raise ValueError(f"webhook url must be an http:// or https:// URL, got {url!r}")
        if console_url is not None and not _URL.match(console_url):
            raise ValueError(f"console_url must be an http:// or https:// URL, got {console_url!r}")
        if len(secret) < MIN_SECRET_LENGTH:
            raise ValueError(f"a webhook secret needs at least {MIN_SECRET_LENGTH} characters")
        if decision_secret is not None:
            if len(decision_secret) < MIN_SECRET_LENGTH:
                raise ValueError(
                    f"a webhook decision_secret needs at least {MIN_SECRET_LENGTH} characters"
                )
            if hmac.compare_digest(decision_secret.encode(), secret.encode()):
                raise ValueError(
                    "decision_secret must differ from secret: the agents hold the delivery "
                    "secret, and whoever holds the decision secret can decide"
                )
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        if timeout <= 0 or max_wait < 0:
            raise ValueError("timeout must be above zero and max_wait not below it")
        if isinstance(approvers, str):
            raise ValueError("approvers must be a list of approver names, not one string")
        speaks_for = tuple(approvers)
        if any(not isinstance(a, str) or not a for a in speaks_for):
            raise ValueError("approvers must be non-empty approver names")
        if accept_decisions and not speaks_for:
            raise ValueError(
                "accept_decisions needs approvers: the configured approvers this webhook's "
                "system may decide for (its secret authenticates the system, not a person)"
            )
        self.url = url
        self.name = name
        self.timeout = timeout
        self.attempts = attempts
        self.max_wait = max_wait
        self.console_url = console_url.rstrip("/") if console_url else None
        self.accept_decisions = accept_decisions
        #: The approvers whose decisions this channel's system may send back.
        self.approvers: tuple[str, ...] = speaks_for
        self._secret = secret
        self._decision_secret = decision_secret
        self._client = client
        self._owns_client = False
        self._async_client = async_client
        self._sleep = sleep
        self._asleep = asleep
        self._lock = threading.Lock()
        self._gate: Gatekeeper | None = None

    def __repr__(self) -> str:
        return f"WebhookChannel({self.url!r}, name={self.name!r})"  # never the secret

    @property
    def secret(self) -> str:
        """The delivery secret: signs deliveries (agents hold it). Never verifies a decision."""
        return self._secret

    @property
    def decision_secret(self) -> str | None:
        """The secret decisions sent back are verified with (deciding side only), if given."""
        return self._decision_secret

    @property
    def via(self) -> str:
        """How decisions this channel sends back are recorded: ``webhook:<name>``."""
        return f"webhook:{self.name}"

    def speaks_for(self, approver: str) -> bool:
        """Whether this channel's system may send decisions as ``approver``."""
        return self.accept_decisions and approver in self.approvers

    @property
    def decide_url(self) -> str | None:
        """Where signed decisions go, when the console URL is known and decisions are accepted."""
        if self.console_url is None or not self.accept_decisions:
            return None
        return self.console_url + DECISION_PATH

    def bind(self, gate: Gatekeeper) -> None:
        self._gate = gate

    # -- what is sent ------------------------------------------------------------------------
    def payload(self, kind: str, request: ApprovalRequest) -> dict[str, Any]:
        """The JSON document of one delivery (``kind``: approval.requested / approval.updated)."""
        page = f"{self.console_url}/requests/{request.id}" if self.console_url else None
        body: dict[str, Any] = {
            "type": kind,
            "channel": self.name,
            "request": request.model_dump(mode="json"),
            "console_url": page,
        }
        if kind == "approval.requested":
            body["decide_url"] = self.decide_url
        else:
            body["status"] = request.status.value
        return body

    def _encode(self, kind: str, request: ApprovalRequest) -> bytes:
        return _json(self.payload(kind, request))

    def _headers(self, kind: str, delivery: str, body: bytes) -> dict[str, str]:
        timestamp = str(int(time.time()))
        return {
            "Content-Type": "application/json",
            "User-Agent": f"gatekeeper/{__version__}",
            "X-Gatekeeper-Event": kind,
            "X-Gatekeeper-Delivery": delivery,  # the same on every retry of one delivery
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign(self._secret, timestamp, body),
        }

    # -- the retry policy ------------------------------------------------------------------
    def _wait(self, state: RetryCallState) -> float:
        outcome = state.outcome
        exc = outcome.exception() if outcome is not None else None
        if isinstance(exc, _Transient) and exc.retry_after is not None:
            return min(exc.retry_after, self.max_wait)
        # Exponential from 0.5 s, plus up to 0.5 s of jitter so receivers aren't hit in step.
        backoff: float = 0.5 * 2.0 ** min(state.attempt_number - 1, 16)
        return min(backoff + random.uniform(0, 0.5), self.max_wait)  # noqa: S311 (not a secret)

    def _policy(self) -> dict[str, Any]:
        return {
            "retry": retry_if_exception_type(_Transient),
            "wait": self._wait,
            "stop": stop_after_attempt(self.attempts) | _StopAfterWaiting(self.max_wait),
            "reraise": True,
        }

    @property
    def shown_url(self) -> str:
        """The URL as errors and logs show it: scheme, host and port only (a webhook URL
        may carry a token in its path, query or user info)."""
        return shown_url(self.url)

    def _unquoted(self, exc: BaseException) -> str:
        """``exc``'s text without the URL, should it quote it."""
        return str(exc).replace(self.url, self.shown_url)

    def _judge(self, response: httpx.Response) -> None:
        status = response.status_code
        if 200 <= status < 300:
            return
        if status == 429 or status >= 500:
            wait = _retry_after(response.headers.get("retry-after"))
            raise _Transient(f"HTTP {status}", status=status, retry_after=wait)
        raise ChannelError(
            f"webhook {self.name}: {self.shown_url} answered HTTP {status}; not retried",
            channel=self.name,
            status=status,
        )

    def _gave_up(self, exc: _Transient, tries: int) -> ChannelError:
        return ChannelError(
            f"webhook {self.name}: {self.shown_url} still failing after {tries} attempt(s): "
            f"{self._unquoted(exc)}",
            channel=self.name,
            status=exc.status,
        )

    def _broken(self, exc: httpx.HTTPError) -> ChannelError:
        return ChannelError(
            f"webhook {self.name}: can't deliver to {self.shown_url}: "
            f"{type(exc).__name__}: {self._unquoted(exc)}",
            channel=self.name,
        )

    # -- the sync face -----------------------------------------------------------------------
    def notify(self, request: ApprovalRequest) -> None:
        self._deliver("approval.requested", request)

    def update(self, request: ApprovalRequest) -> None:
        self._deliver("approval.updated", request)

    def _http(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                self._client = httpx.Client(timeout=self.timeout)
                self._owns_client = True
            return self._client

    def _attempt(self, kind: str, delivery: str, body: bytes) -> None:
        headers = self._headers(kind, delivery, body)
        try:
            with self._http().stream(
                "POST", self.url, content=body, headers=headers, timeout=self.timeout
            ) as response:
                self._judge(response)  # the answer's body is never read
        except _TRANSIENT_HTTPX as exc:
            raise _Transient(f"{type(exc).__name__}: {exc}") from exc
        except httpx.HTTPError as exc:
            raise self._broken(exc) from exc

    def post(self, kind: str, document: Mapping[str, Any]) -> None:
        """POST ``document`` as one signed delivery of type ``kind`` (``X-Gatekeeper-Event``).

        Retried as every delivery is; raises :class:`ChannelError` when it
        gives up. What the alerts' webhooks send (``kind="alert"``).
        """
        self._send(kind, _json(document))

    def _deliver(self, kind: str, request: ApprovalRequest) -> None:
        self._send(kind, self._encode(kind, request))

    def _send(self, kind: str, body: bytes) -> None:
        delivery, tries = uuid.uuid4().hex, 0
        try:
            for attempt in Retrying(sleep=self._sleep, **self._policy()):
                with attempt:
                    tries += 1
                    self._attempt(kind, delivery, body)
        except _Transient as exc:
            raise self._gave_up(exc, tries) from (exc.__cause__ or exc)

    def close(self) -> None:
        """Close the HTTP client this channel made (not one it was given)."""
        with self._lock:
            if self._owns_client and self._client is not None:
                self._client.close()
                self._client = None
                self._owns_client = False

    # -- the async face ----------------------------------------------------------------------
    async def anotify(self, request: ApprovalRequest) -> None:
        await self._adeliver("approval.requested", request)

    async def aupdate(self, request: ApprovalRequest) -> None:
        await self._adeliver("approval.updated", request)

    async def _aattempt(
        self, client: httpx.AsyncClient, kind: str, delivery: str, body: bytes
    ) -> None:
        headers = self._headers(kind, delivery, body)
        try:
            async with client.stream(
                "POST", self.url, content=body, headers=headers, timeout=self.timeout
            ) as response:
                self._judge(response)
        except _TRANSIENT_HTTPX as exc:
            raise _Transient(f"{type(exc).__name__}: {exc}") from exc
        except httpx.HTTPError as exc:
            raise self._broken(exc) from exc

    async def _adeliver(self, kind: str, request: ApprovalRequest) -> None:
        if self._async_client is not None:
            await self._aretry(self._async_client, kind, request)
            return
        # An AsyncClient belongs to one event loop: without one given, each delivery
        # opens its own rather than keep one that a later loop could not use.
        async with httpx.AsyncClient(timeout=self.timeout) as client:
            await self._aretry(client, kind, request)

    async def _aretry(self, client: httpx.AsyncClient, kind: str, request: ApprovalRequest) -> None:
        body, delivery, tries = self._encode(kind, request), uuid.uuid4().hex, 0
        try:
            async for attempt in AsyncRetrying(sleep=self._asleep, **self._policy()):
                with attempt:
                    tries += 1
                    await self._aattempt(client, kind, delivery, body)
        except _Transient as exc:
            raise self._gave_up(exc, tries) from (exc.__cause__ or exc)
