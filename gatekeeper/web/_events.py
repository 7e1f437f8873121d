"""Live updates: ``GET /api/v1/events`` as server-sent events.

One store subscription per process (``store.aio.changes()``) feeds every
connected client through a bounded queue of its own; a client that falls
behind is dropped (its browser reconnects), the others are not held up.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from starlette.responses import StreamingResponse

from .._errors import GatekeeperError
from .._gate import Gatekeeper
from ..logs import get_logger
from ._deps import Viewer, require

__all__ = ["EventHub", "router"]

log = get_logger("gatekeeper.web")

router = APIRouter(prefix="/api/v1", tags=["events"])

_DROPPED = None  # the sentinel a dropped client's queue ends with
_RESYNC = 'event: request\ndata: {"id": "", "status": "resync"}\n\n'


class EventHub:
    """Fans the store's change feed out to the connected browsers of this process."""

    def __init__(
        self, gate: Gatekeeper, *, queue_size: int = 256, ping_interval: float = 15.0
    ) -> None:
        self.gate = gate
        self.queue_size = queue_size
        self.ping_interval = ping_interval
        self._clients: set[asyncio.Queue[str | None]] = set()
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.subscriptions = 0  # how many times the store feed was opened (tests read it)
        self._live = False  # the store feed has said it is live (its first "")

    @property
    def clients(self) -> int:
        """How many browsers are connected to this process."""
        return len(self._clients)

    def connect(self) -> asyncio.Queue[str | None]:
        """A new client's queue; starts the store subscription on first use."""
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done() or self._loop is not loop:
            self._loop = loop
            self._task = loop.create_task(self._pump(), name="gatekeeper-web-events")
        queue: asyncio.Queue[str | None] = asyncio.Queue(self.queue_size)
        if self._live:
            # The feed is already live: this client gets its own "resync", so
            # it reads once what changed before it connected.
            queue.put_nowait(_RESYNC)
        self._clients.add(queue)
        return queue

    def disconnect(self, queue: asyncio.Queue[str | None]) -> None:
        self._clients.discard(queue)

    def publish(self, message: str) -> None:
        """Give ``message`` to every client; drop a client whose queue is full."""
        for queue in list(self._clients):
            try:
                queue.put_nowait(message)
            except asyncio.QueueFull:
                self._clients.discard(queue)
                while not queue.empty():
                    queue.get_nowait()
                queue.put_nowait(_DROPPED)

    async def _pump(self) -> None:
        aio = self.gate.store.aio
        while True:
            self.subscriptions += 1
            feed = aio.changes()
            try:
                async for request_id in feed:
                    if request_id == "":
                        self._live = True
                    self.publish(await self._message(request_id))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the feed broke (store restart...): reopen it
                log.warning("store change feed failed, reconnecting: %s", exc)
                self._live = False
            finally:
                aclose = getattr(feed, "aclose", None)
                if aclose is not None:
                    with contextlib.suppress(Exception):
                        await aclose()
            await asyncio.sleep(1.0)

    async def _message(self, request_id: str) -> str:
        if request_id == "":  # the feed is (again) live; changes may have been missed
            status = "resync"
        else:
            try:
                status = (await self.gate.store.aio.get(request_id)).status.value
            except GatekeeperError:
                status = "unknown"
        data = json.dumps({"id": request_id, "status": status})
        return f"event: request\ndata: {data}\n\n"

    async def stop(self) -> None:
        """Close the store subscription and end every client's stream."""
        task, self._task = self._task, None
        self._live = False
        for queue in list(self._clients):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(_DROPPED)
        self._clients.clear()
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, RuntimeError):
                await task
        if task is not None:  # this loop's store connections go with it
            with contextlib.suppress(Exception):
                await self.gate.store.aio.aclose()

    async def stream(self) -> AsyncIterator[str]:
        """One client's event stream: changes as they come, ``: ping`` when idle."""
        queue = self.connect()
        try:
            yield ": connected\n\n"
            while True:
                try:
                    message = await asyncio.wait_for(queue.get(), self.ping_interval)
                except asyncio.TimeoutError:
                    yield ": ping\n\n"
                    continue
                if message is _DROPPED:
                    return
                yield message
        finally:
            self.disconnect(queue)


@router.get(
    "/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "event stream"}},
    summary="Live request changes (server-sent events)",
)
async def events(
    request: Request,
    who: Annotated[Viewer, Depends(require("read"))],
) -> StreamingResponse:
    """``event: request`` with ``{"id", "status"}`` on every change; ``: ping`` every 15 s.

    ``{"id": "", "status": "resync"}`` means changes may have been missed: re-read the page.
    """
    hub: EventHub = request.app.state.events
    return StreamingResponse(
        hub.stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
