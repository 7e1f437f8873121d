"""One upstream MCP server: started (stdio) or reached (streamable HTTP), kept connected.

Each upstream has a supervisor task that owns its connection (the SDK's
client contexts must be entered and left in one task): it connects and
initialises within ``connect_timeout``, then waits until the connection
breaks or the gateway stops. A call that finds the upstream down asks the
supervisor to reconnect and waits for it, at most ``connect_timeout``; an
upstream that keeps failing is retried no more often than every few
seconds, and its error is what the agent is told. One upstream being down
never stops the gateway serving the others.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import httpx2
from mcp import ClientSession, StdioServerParameters, stdio_client, types
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.dispatcher import ProgressFnT
from mcp.shared.exceptions import MCPError

from gatekeeper._config_mcp import McpUpstream
from gatekeeper.logs import get_logger

__all__ = ["Upstream", "UpstreamDown", "UpstreamFailed"]

log = get_logger("gatekeeper.mcp")

_RETRY_AFTER = 3.0  # seconds between connection attempts to a failing upstream
_MAX_PAGES = 100  # tools/list pages read from one upstream


class UpstreamDown(Exception):
    """The upstream can't be reached or started; nothing was sent to it."""


class UpstreamFailed(Exception):
    """The upstream failed while the call was sent: it may or may not have taken effect."""


def _describe(exc: BaseException) -> str:
    inner = getattr(exc, "exceptions", None)  # an exception group (the SDK's task groups)
    if isinstance(inner, tuple) and inner:
        return "; ".join(_describe(e) for e in inner[:3])
    if isinstance(exc, MCPError):
        return f"{exc.error.message} (MCP error {exc.error.code})"
    if isinstance(exc, TimeoutError):
        return "timed out"
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class Upstream:
    """A connection to one upstream server, reconnected when it breaks."""

    def __init__(
        self, config: McpUpstream, on_tools_changed: Callable[[], Awaitable[None]]
    ) -> None:
        self.config = config
        self.name = config.name
        self._on_tools_changed = on_tools_changed
        self._session: ClientSession | None = None
        self._ready = anyio.Event()
        self._broken = anyio.Event()
        self._wanted = anyio.Event()
        self._stopping = False
        self.error: str | None = None
        self.tools_stale = True
        self._last_attempt = 0.0
        self._failures = 0  # connection attempts that failed, ever
        self._failed_at = -1e9  # when the last one did (time.monotonic())

    # -- the supervisor -----------------------------------------------------------------
    async def supervise(self) -> None:
        """Run until cancelled: connect, serve until broken, reconnect when wanted."""
        while not self._stopping:
            self._last_attempt = time.monotonic()
            try:
                await self._connect_and_serve()
            except anyio.get_cancelled_exc_class():
                raise
            except Exception as exc:  # every failure is reported, then retried
                self.error = f"upstream {self.name}: {_describe(exc)}"
                self._failures += 1
                self._failed_at = time.monotonic()
                log.warning("%s", self.error)
            finally:
                self._session = None
                self._wanted = anyio.Event()
                self._ready = anyio.Event()
                self._broken = anyio.Event()
            # Reconnect when a call wants it, but not in a tight loop.
            await self._wanted.wait()
            wait = _RETRY_AFTER - (time.monotonic() - self._last_attempt)
            if wait > 0:
                await anyio.sleep(wait)

    async def _connect_and_serve(self) -> None:
        cfg = self.config
        async with contextlib.AsyncExitStack() as stack:
            if cfg.command is not None:
                params = StdioServerParameters(
                    command=cfg.command[0],
                    args=list(cfg.command[1:]),
                    env=dict(cfg.env),
                    cwd=cfg.cwd,
                )
                read, write = await stack.enter_async_context(
                    stdio_client(params, errlog=sys.stderr)
                )
            else:
                assert cfg.url is not None
                client = await stack.enter_async_context(
                    httpx2.AsyncClient(headers=dict(cfg.headers), timeout=cfg.connect_timeout)
                )
                read, write = await stack.enter_async_context(
                    streamable_http_client(cfg.url, http_client=client)
                )
            session = await stack.enter_async_context(
                ClientSession(read, write, message_handler=self._message)
            )
            with anyio.fail_after(cfg.connect_timeout):
                await session.initialize()
            self._session = session
            self.error = None
            self.tools_stale = True
            self._ready.set()
            log.info("upstream %s connected", self.name)
            await self._broken.wait()

    async def _message(self, message: Any) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            self.tools_stale = True
            await self._on_tools_changed()
        elif isinstance(message, Exception):
            log.warning("upstream %s sent something unreadable: %s", self.name, _describe(message))

    def stop(self) -> None:
        self._stopping = True
        self._broken.set()
        self._wanted.set()

    # -- what the gateway uses -------------------------------------------------------------
    async def session(self) -> ClientSession:
        """The live session, connecting first if needed; UpstreamDown when it can't be had.

        Waits for one connection attempt at most: a failed one is the answer,
        not a reason to keep the caller waiting for more. Within the pause
        between attempts, the last attempt's failure is the answer at once.
        """
        if self._session is None and time.monotonic() - self._failed_at < _RETRY_AFTER:
            self._wanted.set()  # the next attempt is made when the pause is over
            raise UpstreamDown(self.error or f"upstream {self.name} is not connected")
        deadline = time.monotonic() + self.config.connect_timeout + _RETRY_AFTER
        failures = self._failures
        while self._session is None and self._failures == failures and time.monotonic() < deadline:
            # The supervisor swaps its events when a connection ends: ask again each turn.
            self._wanted.set()
            ready = self._ready
            with anyio.move_on_after(min(0.25, max(0.0, deadline - time.monotonic()))):
                await ready.wait()
        if self._session is None:
            raise UpstreamDown(self.error or f"upstream {self.name} is not connected")
        return self._session

    def _break(self, session: ClientSession) -> None:
        if self._session is session:
            self._session = None
            self._broken.set()

    async def list_tools(self) -> list[types.Tool]:
        """Every tool the upstream advertises now (every page)."""
        session = await self.session()
        tools: list[types.Tool] = []
        cursor: str | None = None
        try:
            with anyio.fail_after(self.config.connect_timeout):
                for _ in range(_MAX_PAGES):
                    params = types.PaginatedRequestParams(cursor=cursor) if cursor else None
                    page = await session.list_tools(params=params)
                    tools.extend(page.tools)
                    cursor = page.next_cursor
                    if not cursor:
                        break
        except anyio.get_cancelled_exc_class():
            raise
        except Exception as exc:
            self._break(session)
            raise UpstreamDown(
                f"upstream {self.name} could not list its tools: {_describe(exc)}"
            ) from None
        self.tools_stale = False
        return tools

    async def call(
        self,
        tool: str,
        args: dict[str, Any],
        progress: ProgressFnT | None = None,
    ) -> types.CallToolResult:
        """Send one call; UpstreamFailed when the upstream fails or does not answer in time."""
        session = await self.session()
        try:
            result = await session.call_tool(
                tool,
                args,
                read_timeout_seconds=self.config.call_timeout,
                progress_callback=progress,
            )
        except anyio.get_cancelled_exc_class():
            raise
        except MCPError as exc:
            if exc.error.code in (types.REQUEST_TIMEOUT, types.CONNECTION_CLOSED):
                self._break(session)
            if exc.error.code == types.REQUEST_TIMEOUT:
                raise UpstreamFailed(
                    f"upstream {self.name} did not answer {tool} within "
                    f"{self.config.call_timeout:g} s; the call was cancelled there, but may "
                    "have taken effect"
                ) from None
            raise UpstreamFailed(
                f"upstream {self.name} failed on {tool}: {_describe(exc)}; it may or may not "
                "have taken effect"
            ) from None
        except Exception as exc:
            self._break(session)
            raise UpstreamFailed(
                f"upstream {self.name} failed on {tool}: {_describe(exc)}; it may or may not "
                "have taken effect"
            ) from None
        if not isinstance(result, types.CallToolResult):
            raise UpstreamFailed(
                f"upstream {self.name} answered {tool} with {type(result).__name__}, "
                "not a tool result"
            )
        return result
