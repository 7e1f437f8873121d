"""A local stand-in for Slack that the real slack-sdk clients talk to, plus Slack-shaped payloads.

No test can reach Slack, so :class:`FakeSlack` plays it on 127.0.0.1:

* a Web API over HTTP (``WebClient(base_url=fake.base_url)``, sync or async), answering the few
  methods gatekeeper calls the way Slack does, recording every call, and failing on demand
  (HTTP 429 with ``Retry-After``, or HTTP 200 with ``{"ok": false, "error": ...}``);
* a Socket Mode WebSocket server, reached the way Slack's is: ``apps.connections.open`` (with the
  app-level token) hands out a one-use ``ws://`` URL, the server greets each connection with a
  ``hello``, sends envelopes, records the client's acks, and can ask the client to reconnect
  (``disconnect``) or drop the socket under it (``drop``).

The module also builds the interaction payloads Slack sends (:func:`block_actions`,
:func:`view_submission`), the form body it POSTs them in (:func:`form_body`) and the signature
headers it puts on that request (:func:`sign`).

Close every Socket Mode client before stopping the fake: a client left running reconnects to a
server that is going away, and the builtin client then logs connection errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import itertools
import json
import secrets
import socket
import struct
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.protocol import State

__all__ = [
    "APP_ID",
    "BOT_ID",
    "BOT_USER_ID",
    "VERIFICATION_TOKEN",
    "AckRecord",
    "Call",
    "Ephemeral",
    "FakeSlack",
    "block_actions",
    "form_body",
    "sign",
    "view_submission",
]

APP_ID = "A0001"
"""The app id the fake reports (``api_app_id`` in payloads, ``connection_info`` in ``hello``)."""
BOT_USER_ID = "UBOT"
"""The bot's user id (``auth.test`` ``user_id``, ``user`` of the messages it posts)."""
BOT_ID = "B0001"
"""The bot id (``auth.test`` ``bot_id``, ``bot_id`` of the messages it posts)."""
VERIFICATION_TOKEN = "fake-verification-token"
"""The legacy verification token Slack puts in every interaction payload's ``token`` field."""
TEAM_DOMAIN = "fake"
"""The workspace's domain (``team.domain`` in payloads)."""

# Arguments that a form-encoded request carries as a JSON string (Slack decodes them server-side).
_JSON_ARGS = frozenset({"attachments", "blocks", "metadata", "view"})
# Slack's first message on every Socket Mode connection.
_HELLO = {
    "type": "hello",
    "num_connections": 1,
    "debug_info": {"host": "fake", "build_number": 1, "approximate_connection_time": 18060},
    "connection_info": {"app_id": APP_ID},
}
_T = TypeVar("_T")


@dataclass(frozen=True)
class Call:
    """One Web API request as the fake received it.

    ``args`` merges the query string and the body (form or JSON), with the form fields that hold
    JSON (``blocks``, ``attachments``, ``view``, ``metadata``) decoded. ``headers`` has lower-case
    names. ``at`` is ``time.monotonic()`` on arrival. ``failed`` is true when the fake answered with
    an error: an HTTP status other than 200, or ``"ok": false``.
    """

    method: str
    args: dict[str, Any]
    headers: dict[str, str]
    at: float
    failed: bool = False


@dataclass(frozen=True)
class AckRecord:
    """A Socket Mode ack: when it arrived (``time.monotonic()``) and its ``payload``, if any."""

    at: float
    payload: dict[str, Any] | None


@dataclass(frozen=True)
class Ephemeral:
    """A ``chat.postEphemeral`` message: who saw it, where, and what it said."""

    channel: str
    user: str
    text: str | None
    blocks: list[dict[str, Any]] | None
    message_ts: str


@dataclass(frozen=True)
class _Fault:
    status: int
    error: str
    retry_after: int | None


class _HTTPServer(ThreadingHTTPServer):
    """The Web API's HTTP server: one thread a request, all joined when it closes."""

    daemon_threads = False
    block_on_close = True

    def __init__(self, fake: FakeSlack) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.fake = fake


class _Handler(BaseHTTPRequestHandler):
    """Hands each request to :meth:`FakeSlack._handle` and writes its JSON answer.

    HTTP/1.0 (the default) closes the connection after each answer, so no keep-alive connection
    of aiohttp's holds a server thread when the fake stops.
    """

    server: _HTTPServer
    timeout = 5  # a silent client cannot hold a thread for long

    def do_POST(self) -> None:
        self._dispatch()

    def do_GET(self) -> None:
        self._dispatch()

    def log_message(self, format: str, *args: Any) -> None:
        """Keep quiet: the fake records calls, and stderr noise helps no test."""

    def _dispatch(self) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        if url.path.startswith("/api/"):
            status, extra, answer = self.server.fake._handle(
                url.path.removeprefix("/api/"), url.query, body, dict(self.headers.items())
            )
        else:
            status, extra, answer = 404, {}, {"ok": False, "error": "unknown_method"}
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in extra.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


class FakeSlack:
    """Slack's Web API and Socket Mode on 127.0.0.1, for the real slack-sdk clients.

    Use it as a context manager, or call :meth:`start` and :meth:`stop` (a pytest fixture)::

        with FakeSlack(usergroups={"S1": ["U1", "U2"]}) as fake:
            client = WebClient(token="xoxb-test", base_url=fake.base_url)
            client.chat_postMessage(channel="C1", text="hi")
            assert fake.calls_to("chat.postMessage")[0].args["text"] == "hi"

    Web API methods (everything else answers ``unknown_method``): ``chat.postMessage``,
    ``chat.update``, ``chat.postEphemeral``, ``views.open``, ``usergroups.users.list``,
    ``auth.test`` (all with the bot token) and ``apps.connections.open`` (with the app token). A
    wrong or missing token gets ``invalid_auth``.

    State, all readable from tests: ``calls``, ``messages`` ((channel, ts) -> message, as Slack
    would return it, with a generated ``block_id`` on each block that had none), ``ephemerals``,
    ``views`` (view id -> view as ``views.open`` returned it), ``acks``, ``socket_messages``
    (everything the Socket Mode client sent) and ``socket_connections``.
    """

    def __init__(
        self,
        *,
        bot_token: str = "xoxb-test",
        app_token: str = "xapp-test",
        usergroups: Mapping[str, list[str]] | None = None,
        team_id: str = "T0001",
        ping_interval: float | None = 0.2,
    ) -> None:
        """Set the fake up; nothing listens before :meth:`start`.

        Args:
            bot_token: the token the Web API methods want (``Authorization: Bearer ...``).
            app_token: the app-level token ``apps.connections.open`` wants.
            usergroups: usergroup id -> its members' user ids, for ``usergroups.users.list``.
            team_id: the workspace id the fake reports.
            ping_interval: seconds between the pings the Socket Mode server sends, as Slack's
                does (None: no pings). Each ping wakes the builtin client's reader, which
                otherwise sits up to 3 s in a socket read after ``close()``, so this keeps
                ``SocketModeClient.close()`` quick.
        """
        self.bot_token = bot_token
        self.app_token = app_token
        self.usergroups: dict[str, list[str]] = {k: list(v) for k, v in (usergroups or {}).items()}
        self.team_id = team_id
        self.ping_interval = ping_interval

        self.calls: list[Call] = []
        self.messages: dict[tuple[str, str], dict[str, Any]] = {}
        self.ephemerals: list[Ephemeral] = []
        self.views: dict[str, dict[str, Any]] = {}
        self.acks: dict[str, AckRecord] = {}
        self.socket_messages: list[dict[str, Any]] = []

        self._cond = threading.Condition()
        self._faults: dict[str, deque[_Fault]] = {}
        self._ts_seq = itertools.count(1)
        self._view_seq = itertools.count(1)
        self._tickets: set[str] = set()
        self._sent: dict[str, float] = {}
        self._open: list[ServerConnection] = []  # open Socket Mode connections, oldest first
        self._accepted = 0
        self._methods: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "apps.connections.open": self._apps_connections_open,
            "auth.test": self._auth_test,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "chat.postMessage": self._chat_post_message,
            "chat.update": self._chat_update,
            "usergroups.users.list": self._usergroups_users_list,
            "views.open": self._views_open,
        }

        self._http: _HTTPServer | None = None
        self._http_thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None
        self._ws: Server | None = None
        self._ws_port = 0
        self._timers: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> FakeSlack:
        """Start both servers on free ports; returns ``self``."""
        if self._http is not None:
            raise RuntimeError("FakeSlack is already running")
        self._http = _HTTPServer(self)
        self._http_thread = threading.Thread(
            target=self._http.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-slack-http",
            daemon=True,
        )
        self._http_thread.start()

        self._loop = asyncio.new_event_loop()
        self._loop_thread = threading.Thread(
            target=self._loop.run_forever, name="fake-slack-ws", daemon=True
        )
        self._loop_thread.start()
        try:
            self._ws = self._run(self._start_ws())
        except BaseException:
            self.stop()
            raise
        self._ws_port = int(next(iter(self._ws.sockets)).getsockname()[1])
        return self

    def stop(self) -> None:
        """Stop both servers and their threads; the Socket Mode connections get a close frame."""
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            assert self._http_thread is not None
            self._http_thread.join()
            self._http = self._http_thread = None
        if self._loop is not None:
            self._run(self._stop_ws())
            self._loop.call_soon_threadsafe(self._loop.stop)
            assert self._loop_thread is not None
            self._loop_thread.join()
            self._loop.close()
            self._loop = self._loop_thread = None
            self._ws = None

    def __enter__(self) -> FakeSlack:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """What to pass as ``WebClient(base_url=...)``: ``http://127.0.0.1:PORT/api/``."""
        if self._http is None:
            raise RuntimeError("FakeSlack is not running: call start() first")
        return f"http://127.0.0.1:{self._http.server_address[1]}/api/"

    # ------------------------------------------------------------------ Web API: recording

    def calls_to(self, method: str) -> list[Call]:
        """The calls to ``method`` so far, failed ones included, oldest first."""
        with self._cond:
            return [c for c in self.calls if c.method == method]

    def wait_for(self, method: str, count: int = 1, timeout: float = 5.0) -> list[Call]:
        """Block until at least ``count`` calls to ``method`` arrived; returns all of them.

        Raises:
            AssertionError: when ``timeout`` seconds pass first; says what did arrive.
        """
        with self._cond:
            if self._cond.wait_for(lambda: len(self.calls_to(method)) >= count, timeout):
                return self.calls_to(method)
            seen = [c.method for c in self.calls]
        raise AssertionError(
            f"expected {count} call(s) to {method} within {timeout}s, "
            f"got {seen.count(method)}; all calls so far: {seen}"
        )

    # ------------------------------------------------------------------ Web API: faults

    def fail(
        self,
        method: str,
        *,
        status: int = 429,
        retry_after: int | None = 1,
        times: int = 1,
        error: str = "ratelimited",
    ) -> None:
        """Answer the next ``times`` calls to ``method`` with HTTP ``status``.

        The body is ``{"ok": false, "error": error}``, with a ``Retry-After: retry_after`` header
        unless ``retry_after`` is None. Faults queue up behind ones not yet used.
        """
        fault = _Fault(status=status, error=error, retry_after=retry_after)
        with self._cond:
            self._faults.setdefault(method, deque()).extend([fault] * times)

    def error(self, method: str, error: str = "channel_not_found", times: int = 1) -> None:
        """Answer the next ``times`` calls to ``method`` with HTTP 200 ``{"ok": false, ...}``."""
        self.fail(method, status=200, retry_after=None, times=times, error=error)

    # ------------------------------------------------------------------ Web API: dispatch

    def _handle(
        self, method: str, query: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, dict[str, str], dict[str, Any]]:
        """Answer one request: (HTTP status, extra headers, JSON body)."""
        lowered = {name.lower(): value for name, value in headers.items()}
        parsed = _parse_args(query, body, lowered.get("content-type", ""))
        args = parsed if parsed is not None else {}
        status, extra = 200, {}
        with self._cond:
            pending = self._faults.get(method)
            if pending:
                fault = pending.popleft()
                status, answer = fault.status, _error(fault.error)
                if fault.retry_after is not None:
                    extra["Retry-After"] = str(fault.retry_after)
            elif parsed is None:
                answer = _error("invalid_json")
            else:
                answer = self._answer(method, args, _token(lowered, args))
            failed = status != 200 or not answer.get("ok")
            self.calls.append(Call(method, args, lowered, time.monotonic(), failed))
            self._cond.notify_all()
        return status, extra, answer

    def _answer(self, method: str, args: dict[str, Any], token: str | None) -> dict[str, Any]:
        impl = self._methods.get(method)
        if impl is None:
            return _error("unknown_method")
        wanted = self.app_token if method == "apps.connections.open" else self.bot_token
        if token != wanted:
            return _error("invalid_auth")
        return impl(args)

    def _next_ts(self) -> str:
        seconds, micros = divmod(next(self._ts_seq) * 100, 1_000_000)
        return f"{1_700_000_000 + seconds}.{micros:06d}"

    # ------------------------------------------------------------------ Web API: methods
    # Each runs with self._cond held.

    def _chat_post_message(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = args.get("channel")
        if not channel:
            return _error("channel_not_found")
        if not any(args.get(k) for k in ("text", "blocks", "attachments")):
            return _error("no_text")
        channel = _conversation_id(str(channel))
        ts = self._next_ts()
        message: dict[str, Any] = {
            "type": "message",
            "user": BOT_USER_ID,
            "bot_id": BOT_ID,
            "app_id": APP_ID,
            "team": self.team_id,
            "text": args.get("text", ""),
            "ts": ts,
        }
        if args.get("blocks"):
            message["blocks"] = _with_block_ids(args["blocks"])
        for key in ("attachments", "metadata", "thread_ts"):
            if args.get(key):
                message[key] = args[key]
        self.messages[(channel, ts)] = message
        return {"ok": True, "channel": channel, "ts": ts, "message": dict(message)}

    def _chat_update(self, args: dict[str, Any]) -> dict[str, Any]:
        channel, ts = str(args.get("channel", "")), str(args.get("ts", ""))
        message = self.messages.get((channel, ts))
        if message is None:
            return _error("message_not_found")
        # Like Slack, fields left out keep their old value ([] removes the blocks).
        if "text" in args:
            message["text"] = args["text"]
        if "blocks" in args:
            message["blocks"] = _with_block_ids(args["blocks"] or [])
        if "attachments" in args:
            message["attachments"] = args["attachments"]
        message["edited"] = {"user": BOT_USER_ID, "ts": self._next_ts()}
        return {
            "ok": True,
            "channel": channel,
            "ts": ts,
            "text": message["text"],
            "message": dict(message),
        }

    def _chat_post_ephemeral(self, args: dict[str, Any]) -> dict[str, Any]:
        channel, user = args.get("channel"), args.get("user")
        if not channel:
            return _error("channel_not_found")
        if not user:
            return _error("user_not_in_channel")
        if not any(args.get(k) for k in ("text", "blocks", "attachments")):
            return _error("no_text")
        ts = self._next_ts()
        self.ephemerals.append(
            Ephemeral(
                channel=str(channel),
                user=str(user),
                text=args.get("text"),
                blocks=args.get("blocks"),
                message_ts=ts,
            )
        )
        return {"ok": True, "message_ts": ts}

    def _views_open(self, args: dict[str, Any]) -> dict[str, Any]:
        view = args.get("view")
        if isinstance(view, str):
            with contextlib.suppress(ValueError):
                view = json.loads(view)
        if not args.get("trigger_id") or not isinstance(view, dict):
            return _error("invalid_arguments")
        for block in view.get("blocks", []):
            element = block.get("element") if isinstance(block, dict) else None
            if isinstance(element, dict) and element.get("type") == "plain_text_input":
                limit = element.get("max_length")
                # Slack refuses the view: a plain-text input takes 1 to 3,000 characters.
                if limit is not None and not 1 <= limit <= 3000:
                    return _error("invalid_arguments")
        view_id = f"V{next(self._view_seq):08d}"
        opened: dict[str, Any] = {
            "type": "modal",
            "blocks": [],
            "private_metadata": "",
            "callback_id": "",
            "clear_on_close": False,
            "notify_on_close": False,
            "close": None,
            "submit": None,
            "external_id": "",
            **view,
            "id": view_id,
            "team_id": self.team_id,
            "state": {"values": {}},
            "hash": f"{int(time.time())}.{secrets.token_hex(4)}",
            "previous_view_id": None,
            "root_view_id": view_id,
            "app_id": APP_ID,
            "app_installed_team_id": self.team_id,
            "bot_id": BOT_ID,
        }
        opened["blocks"] = _with_block_ids(opened["blocks"])
        self.views[view_id] = opened
        return {"ok": True, "view": opened}

    def _usergroups_users_list(self, args: dict[str, Any]) -> dict[str, Any]:
        users = self.usergroups.get(str(args.get("usergroup", "")))
        if users is None:
            return _error("no_such_subteam")
        return {"ok": True, "users": list(users)}

    def _auth_test(self, args: dict[str, Any]) -> dict[str, Any]:
        return {
            "ok": True,
            "url": f"https://{TEAM_DOMAIN}.slack.com/",
            "team": "Fake Workspace",
            "user": "gatekeeper",
            "team_id": self.team_id,
            "user_id": BOT_USER_ID,
            "bot_id": BOT_ID,
            "is_enterprise_install": False,
        }

    def _apps_connections_open(self, args: dict[str, Any]) -> dict[str, Any]:
        if self._loop is None:
            return _error("internal_error")
        ticket = str(uuid.uuid4())
        self._tickets.add(ticket)
        url = f"ws://127.0.0.1:{self._ws_port}/link/?ticket={ticket}&app_id={APP_ID}"
        return {"ok": True, "url": url}

    # ------------------------------------------------------------------ Socket Mode: API

    @property
    def socket_connections(self) -> int:
        """How many Socket Mode connections the fake ever accepted (and greeted)."""
        with self._cond:
            return self._accepted

    def wait_connected(self, count: int = 1, timeout: float = 5.0) -> None:
        """Block until ``count`` Socket Mode connections were accepted in all.

        Raises:
            AssertionError: when ``timeout`` seconds pass first.
        """
        with self._cond:
            if self._cond.wait_for(lambda: self._accepted >= count, timeout):
                return
            accepted = self._accepted
            opened = len(self.calls_to("apps.connections.open"))
        raise AssertionError(
            f"expected {count} Socket Mode connection(s) within {timeout}s, got {accepted} "
            f"(apps.connections.open was called {opened} time(s))"
        )

    def send_interactive(
        self, payload: dict[str, Any], *, accepts_response_payload: bool = True
    ) -> str:
        """Send an ``interactive`` envelope on the current connection; returns its envelope id."""
        return self.send_envelope(
            "interactive", payload, accepts_response_payload=accepts_response_payload
        )

    def send_envelope(
        self,
        envelope_type: str,
        payload: dict[str, Any],
        *,
        accepts_response_payload: bool = False,
        retry_attempt: int = 0,
        retry_reason: str = "",
    ) -> str:
        """Send a Socket Mode envelope of any type (``events_api``, ``slash_commands``, ...).

        Returns the envelope id, for :meth:`wait_ack`.
        """
        envelope_id = str(uuid.uuid4())
        envelope = {
            "envelope_id": envelope_id,
            "payload": payload,
            "type": envelope_type,
            "accepts_response_payload": accepts_response_payload,
            "retry_attempt": retry_attempt,
            "retry_reason": retry_reason,
        }
        with self._cond:
            self._sent[envelope_id] = time.monotonic()
        self.send_raw(envelope)
        return envelope_id

    def send_raw(self, message: dict[str, Any]) -> None:
        """Send any JSON message on the current (newest open) Socket Mode connection."""
        self._send_on(self._current(), message)

    def _send_on(self, conn: ServerConnection, message: dict[str, Any]) -> None:
        try:
            self._run(conn.send(json.dumps(message)))
        except ConnectionClosed as e:
            raise AssertionError(f"the Socket Mode connection closed before the send: {e}") from e

    def wait_ack(self, envelope_id: str, timeout: float = 3.0) -> float:
        """Block until the client acked ``envelope_id``; returns seconds from send to ack.

        Raises:
            AssertionError: when ``timeout`` seconds pass first.
        """
        with self._cond:
            if self._cond.wait_for(lambda: envelope_id in self.acks, timeout):
                return self.acks[envelope_id].at - self._sent.get(envelope_id, 0.0)
            sent = envelope_id in self._sent
            acked = list(self.acks)
        raise AssertionError(
            f"no ack for envelope {envelope_id} within {timeout}s "
            f"(sent by this fake: {sent}; acks received: {acked})"
        )

    def disconnect(self, reason: str = "refresh_requested", *, close_after: float = 2.0) -> None:
        """Ask the client to reconnect, as Slack does before it closes a connection.

        Sends ``{"type": "disconnect", "reason": ..., "debug_info": {...}}`` on the current
        connection, then closes that connection (close frame 1000) once the client opened a new
        one, or after ``close_after`` seconds, whichever comes first. Returns after the send.
        """
        conn = self._current()
        with self._cond:
            accepted = self._accepted
        self._send_on(
            conn, {"type": "disconnect", "reason": reason, "debug_info": {"host": "fake"}}
        )
        assert self._loop is not None

        def schedule() -> None:
            task = asyncio.ensure_future(self._close_when_replaced(conn, accepted, close_after))
            self._timers.add(task)
            task.add_done_callback(self._timers.discard)

        self._loop.call_soon_threadsafe(schedule)

    def drop(self) -> None:
        """Kill the current connection under the client: no disconnect, no close frame, a TCP RST.

        The builtin SocketModeClient sees ``ConnectionResetError`` on its next read, and its
        monitor (every ``ping_interval`` seconds) then opens a new connection.
        """
        conn = self._current()
        with self._cond:
            if conn in self._open:
                self._open.remove(conn)
        self._run(_abort(conn))

    # ------------------------------------------------------------------ Socket Mode: server

    def _current(self) -> ServerConnection:
        with self._cond:
            for conn in reversed(self._open):
                if conn.state is State.OPEN:
                    return conn
        raise AssertionError("no open Socket Mode connection: did the client connect?")

    def _run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        """Run a coroutine on the fake's event loop from any other thread; return its result."""
        assert self._loop is not None, "FakeSlack is not running"
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)

    async def _start_ws(self) -> Server:
        server: Server = await serve(
            self._serve_connection,
            "127.0.0.1",
            0,
            process_request=self._check_ticket,
            compression=None,
            ping_interval=self.ping_interval,
            ping_timeout=10,
            close_timeout=1,
        )
        return server

    async def _stop_ws(self) -> None:
        for task in list(self._timers):
            task.cancel()
        if self._timers:
            await asyncio.gather(*self._timers, return_exceptions=True)
        if self._ws is not None:
            self._ws.close()
            await self._ws.wait_closed()

    def _check_ticket(self, conn: ServerConnection, request: Request) -> Response | None:
        """Accept only ``/link/?ticket=...`` with a ticket ``apps.connections.open`` issued."""
        url = urlsplit(request.path)
        ticket = dict(parse_qsl(url.query)).get("ticket", "")
        with self._cond:
            if url.path == "/link/" and ticket in self._tickets:
                self._tickets.discard(ticket)  # one use, like Slack's
                return None
        return conn.respond(HTTPStatus.UNAUTHORIZED, "invalid or used ticket\n")

    async def _serve_connection(self, conn: ServerConnection) -> None:
        try:
            await conn.send(json.dumps(_HELLO))
            with self._cond:
                self._open.append(conn)
                self._accepted += 1
                self._cond.notify_all()
            async for raw in conn:
                self._record_socket_message(raw)
        except ConnectionClosed:
            pass
        finally:
            with self._cond:
                if conn in self._open:
                    self._open.remove(conn)
                self._cond.notify_all()

    def _record_socket_message(self, raw: str | bytes) -> None:
        try:
            message = json.loads(raw)
        except ValueError:
            message = {"raw": raw if isinstance(raw, str) else raw.decode(errors="replace")}
        if not isinstance(message, dict):
            message = {"raw": message}
        with self._cond:
            self.socket_messages.append(message)
            envelope_id = message.get("envelope_id")
            if isinstance(envelope_id, str):
                self.acks[envelope_id] = AckRecord(time.monotonic(), message.get("payload"))
            self._cond.notify_all()

    async def _close_when_replaced(
        self, conn: ServerConnection, accepted: int, close_after: float
    ) -> None:
        deadline = time.monotonic() + close_after
        while time.monotonic() < deadline and conn.state is State.OPEN:
            with self._cond:
                if self._accepted > accepted:
                    break
            await asyncio.sleep(0.02)
        await conn.close(1000, "disconnected")


# ---------------------------------------------------------------------- helpers


async def _abort(conn: ServerConnection) -> None:
    """Close the TCP connection with a RST (SO_LINGER 0), as a crashed peer or proxy would."""
    sock = conn.transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.transport.abort()


def _error(error: str) -> dict[str, Any]:
    return {"ok": False, "error": error}


def _token(headers: Mapping[str, str], args: Mapping[str, Any]) -> str | None:
    """The request's token: ``Authorization: Bearer ...``, else a ``token`` argument."""
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[len("bearer ") :].strip()
    token = args.get("token")
    return str(token) if token is not None else None


def _parse_args(query: str, body: bytes, content_type: str) -> dict[str, Any] | None:
    """Merge query-string and body arguments; None when a JSON body does not parse."""
    args: dict[str, Any] = dict(parse_qsl(query, keep_blank_values=True))
    kind = content_type.split(";", 1)[0].strip().lower()
    if body and kind == "application/json":
        try:
            parsed = json.loads(body)
        except ValueError:
            return None
        if not isinstance(parsed, dict):
            return None
        args.update(parsed)
    elif body:  # application/x-www-form-urlencoded, which slack-sdk also sends for "params"
        args.update(parse_qsl(body.decode(), keep_blank_values=True))
    for key in _JSON_ARGS & args.keys():
        value = args[key]
        if isinstance(value, str) and value[:1] in ("[", "{"):
            with contextlib.suppress(ValueError):
                args[key] = json.loads(value)
    return args


def _conversation_id(channel: str) -> str:
    """Where a message to ``channel`` lands: a user id ("U..."/"W...") opens a DM ("D...")."""
    if channel[:1] in ("U", "W"):
        return "D" + channel[1:]
    return channel


def _with_block_ids(blocks: Any) -> Any:
    """Copy ``blocks``, giving each block without a ``block_id`` one, as Slack does."""
    if not isinstance(blocks, list):
        return blocks
    return [
        {**b, "block_id": b.get("block_id") or secrets.token_hex(3)} if isinstance(b, dict) else b
        for b in blocks
    ]


def _trigger_id() -> str:
    return f"{secrets.randbelow(10**13)}.{secrets.randbelow(10**10)}.{secrets.token_hex(16)}"


def _user(user_id: str, team_id: str, username: str | None) -> dict[str, str]:
    name = username or user_id.lower()
    return {"id": user_id, "username": name, "name": name, "team_id": team_id}


def _find_element(message: Mapping[str, Any], action_id: str) -> tuple[str | None, dict[str, Any]]:
    """The (block_id, element) in ``message``'s blocks that has ``action_id``, if any."""
    for block in message.get("blocks") or []:
        if not isinstance(block, dict):
            continue
        elements = list(block.get("elements") or [])
        if block.get("accessory"):
            elements.append(block["accessory"])
        for element in elements:
            if isinstance(element, dict) and element.get("action_id") == action_id:
                return block.get("block_id"), element
    return None, {}


# ---------------------------------------------------------------------- Slack's payloads


def sign(body: bytes, secret: str, timestamp: int | None = None) -> dict[str, str]:
    """The headers Slack puts on a request to an app's request URL, signing ``body``.

    ``X-Slack-Signature`` is ``v0=`` + hex HMAC-SHA256 of ``v0:{timestamp}:{body}`` keyed with the
    signing secret; ``timestamp`` defaults to now (Unix seconds).
    """
    ts = str(int(time.time()) if timestamp is None else timestamp)
    base = b"v0:" + ts.encode() + b":" + body
    digest = hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return {
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": f"v0={digest}",
        "Content-Type": "application/x-www-form-urlencoded",
    }


def form_body(payload: Mapping[str, Any]) -> bytes:
    """The body Slack POSTs an interaction in: ``payload=<url-encoded JSON>``."""
    return urlencode({"payload": json.dumps(payload, separators=(",", ":"))}).encode()


def block_actions(
    *,
    user_id: str,
    action_id: str,
    value: str,
    channel_id: str = "C0001",
    message_ts: str,
    trigger_id: str | None = None,
    team_id: str = "T0001",
    username: str | None = None,
    message: Mapping[str, Any] | None = None,
    block_id: str | None = None,
    response_url: str | None = None,
) -> dict[str, Any]:
    """A ``block_actions`` payload: ``user_id`` clicked button ``action_id`` on a message.

    Pass the message as the fake holds it (``fake.messages[(channel, ts)]``) and the button's
    ``block_id``, text and style come from its blocks, as in Slack's payload; otherwise a minimal
    message with ``message_ts`` stands in and the action gets a made-up block id.
    """
    msg: dict[str, Any] = (
        dict(message)
        if message is not None
        else {
            "type": "message",
            "user": BOT_USER_ID,
            "bot_id": BOT_ID,
            "app_id": APP_ID,
            "team": team_id,
            "text": "",
            "ts": message_ts,
            "blocks": [],
        }
    )
    found_block, element = _find_element(msg, action_id)
    action: dict[str, Any] = {
        "action_id": action_id,
        "block_id": block_id or found_block or secrets.token_hex(3),
        "text": element.get("text") or {"type": "plain_text", "text": action_id, "emoji": True},
        "value": value,
        "type": "button",
        "action_ts": f"{time.time():.6f}",
    }
    if element.get("style"):
        action["style"] = element["style"]
    return {
        "type": "block_actions",
        "user": _user(user_id, team_id, username),
        "api_app_id": APP_ID,
        "token": VERIFICATION_TOKEN,
        "container": {
            "type": "message",
            "message_ts": message_ts,
            "channel_id": channel_id,
            "is_ephemeral": False,
        },
        "trigger_id": trigger_id or _trigger_id(),
        "team": {"id": team_id, "domain": TEAM_DOMAIN},
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": channel_id, "name": f"channel-{channel_id.lower()}"},
        "message": msg,
        "state": {"values": {}},
        "response_url": response_url
        or (
            f"https://hooks.slack.com/actions/{team_id}/{secrets.randbelow(10**12)}/"
            f"{secrets.token_urlsafe(18)}"
        ),
        "actions": [action],
    }


def view_submission(
    *,
    user_id: str,
    callback_id: str,
    private_metadata: str,
    values: Mapping[str, Mapping[str, str | None]],
    team_id: str = "T0001",
    view_id: str | None = None,
    username: str | None = None,
    view: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A ``view_submission`` payload: ``user_id`` submitted a modal.

    ``values`` is block_id -> action_id -> the text typed into that ``plain_text_input`` (None
    for an optional input left empty). Pass the view as ``views.open`` returned it
    (``fake.views[view_id]``) to carry its id, blocks, title and buttons over.
    """
    base: dict[str, Any] = dict(view or {})
    vid = view_id or base.get("id") or f"V{secrets.token_hex(5).upper()}"
    submitted: dict[str, Any] = {
        "id": vid,
        "team_id": team_id,
        "type": "modal",
        "blocks": base.get("blocks", []),
        "private_metadata": private_metadata,
        "callback_id": callback_id,
        "state": {
            "values": {
                block: {
                    action: {"type": "plain_text_input", "value": text}
                    for action, text in actions.items()
                }
                for block, actions in values.items()
            }
        },
        "hash": f"{int(time.time())}.{secrets.token_hex(4)}",
        "title": base.get("title") or {"type": "plain_text", "text": "Gatekeeper", "emoji": True},
        "clear_on_close": base.get("clear_on_close", False),
        "notify_on_close": base.get("notify_on_close", False),
        "close": base.get("close"),
        "submit": base.get("submit") or {"type": "plain_text", "text": "Submit", "emoji": True},
        "previous_view_id": None,
        "root_view_id": base.get("root_view_id", vid),
        "app_id": APP_ID,
        "external_id": base.get("external_id", ""),
        "app_installed_team_id": team_id,
        "bot_id": BOT_ID,
    }
    return {
        "type": "view_submission",
        "team": {"id": team_id, "domain": TEAM_DOMAIN},
        "user": _user(user_id, team_id, username),
        "api_app_id": APP_ID,
        "token": VERIFICATION_TOKEN,
        "trigger_id": _trigger_id(),
        "view": submitted,
        "response_urls": [],
        "is_enterprise_install": False,
        "enterprise": None,
    }
