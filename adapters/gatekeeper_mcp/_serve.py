"""Serving the gateway to agents: over stdio (desktop clients), over streamable HTTP (remote ones).

Over HTTP every request must carry an agent's bearer token (``mcp.http.tokens``,
configured by sha256): it names the agent and its scopes. The SDK binds each
MCP session to the token that opened it, so one agent can't ride another's
session.
"""

from __future__ import annotations

import contextlib
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
    async with stdio_server() as (read, write):
        await gateway.server.run(read, write, gateway.init_options())


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
