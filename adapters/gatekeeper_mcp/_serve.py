"""Serving the gateway to agents: over stdio (desktop clients), over streamable HTTP (remote ones).

Over HTTP every request must carry an agent's bearer token (``mcp.http.tokens``,
configured by sha256): it names the agent and its scopes. The SDK binds each
MCP session to the token that opened it, so one agent can't ride another's
session.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
from collections.abc import AsyncIterator
from typing import Any

from mcp.server import NotificationOptions
from mcp.server.auth.middleware.auth_context import AuthContextMiddleware
from mcp.server.auth.middleware.bearer_auth import BearerAuthBackend, RequireAuthMiddleware
from mcp.server.auth.provider import AccessToken
from mcp.server.stdio import stdio_server
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp, StreamableHTTPSessionManager
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.routing import Route

from ._gateway import Gateway

__all__ = ["http_app", "serve_stdio"]


async def serve_stdio(gateway: Gateway) -> None:
    """Serve one agent on this process's stdin and stdout until the client closes them."""
    gateway.transport = "stdio"
    pipes = await _loop_pipes()
    streams = stdio_server(*pipes) if pipes is not None else stdio_server()
    async with streams as (read, write):
        await gateway.server.run(read, write, gateway.init_options())


class _Lines:
    """The wire's incoming lines, read by the event loop."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self.reader = reader

    def __aiter__(self) -> _Lines:
        return self

    async def __anext__(self) -> str:
        dropped = False  # a line longer than _MAX_LINE: read to its end, passed on as "{"
        while True:
            try:
                line = await self.reader.readuntil(b"\n")
            except asyncio.LimitOverrunError as exc:
                await self.reader.readexactly(exc.consumed)
                dropped = True
                continue
            except asyncio.IncompleteReadError as exc:  # the end of the wire
                line = exc.partial
                if not line and not dropped:
                    raise StopAsyncIteration from None
            if dropped:
                return "{"  # a message that does not parse: the SDK reports it and goes on
            return line.decode("utf-8", "replace")


class _Writer:
    """The wire's outgoing side, written by the event loop."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer

    async def write(self, text: str) -> None:
        self.writer.write(text.encode("utf-8"))

    async def flush(self) -> None:
        await self.writer.drain()


async def _loop_pipes() -> tuple[Any, Any] | None:
    """stdin and stdout as event-loop streams when both are pipes or sockets, else None.

    The SDK's own stdio transport reads and writes through ``anyio.wrap_file``: a
    worker thread for each line read, each write and each flush, about 0.4 ms a
    call on a busy 2-core machine (``bench/mcp.py``). MCP clients start servers
    on pipes, which the event loop can drive directly. Anything else (a terminal,
    a file) is left to the SDK, as is any loop but asyncio's. As the SDK does, fd
    0 and 1 then point at the null device and stderr, so nothing else in this
    process (or a child) reads or writes the wire.
    """
    try:
        loop = asyncio.get_running_loop()
        if not all(stat.S_ISFIFO(m) or stat.S_ISSOCK(m) for m in (_mode(0), _mode(1))):
            return None
    except (RuntimeError, OSError):
        return None
    wire_in = os.fdopen(os.dup(0), "rb", buffering=0)
    wire_out = os.fdopen(os.dup(1), "wb", buffering=0)
    reader = asyncio.StreamReader(limit=_MAX_LINE)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), wire_in)
    transport, protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, wire_out)
    writer = asyncio.StreamWriter(transport, protocol, None, loop)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(2, 1)
    return _Lines(reader), _Writer(writer)


def _mode(fd: int) -> int:
    return os.fstat(fd).st_mode


#: The longest line (one JSON-RPC message) read from the wire.
_MAX_LINE = 64 * 1024 * 1024


class _Tokens:
    """The SDK's token verifier: a configured agent token, or nothing."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    async def verify_token(self, token: str) -> AccessToken | None:
        entry = self.gateway.verify(token)
        if entry is None:
            return None
        return AccessToken(token="-", client_id=entry.token_sha256, scopes=[])  # noqa: S106


def http_app(gateway: Gateway) -> Starlette:
    """An ASGI app serving the gateway at ``mcp.http.path``, agents by their tokens."""
    gateway.transport = "http"
    server = gateway.server
    # The session manager asks for initialization options without NotificationOptions:
    # advertise tools.listChanged all the same.
    base = server.create_initialization_options

    def options(notification_options: Any = None, *args: Any, **kwargs: Any) -> Any:
        return base(
            notification_options or NotificationOptions(tools_changed=True), *args, **kwargs
        )

    server.create_initialization_options = options  # type: ignore[method-assign]
    manager = StreamableHTTPSessionManager(app=server, json_response=False, stateless=False)
    # The sessions the SDK opened, each bound to the token that opened it.
    gateway.session_known = lambda sid: sid in getattr(manager, "_server_instances", {})

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        async with manager.run():
            yield

    endpoint = RequireAuthMiddleware(StreamableHTTPASGIApp(manager), required_scopes=[])
    path = gateway.config.http.path
    return Starlette(
        routes=[Route(path, endpoint=endpoint, methods=["GET", "POST", "DELETE"])],
        middleware=[
            Middleware(AuthenticationMiddleware, backend=BearerAuthBackend(_Tokens(gateway))),
            Middleware(AuthContextMiddleware),
        ],
        lifespan=lifespan,
    )
