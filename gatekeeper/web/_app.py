"""Building the console's ASGI app (``create_app`` in the package delegates here)."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from .._gate import Gatekeeper
from .._retention import Keeping
from .._retention import keeping as keeping_task
from .._sweep import SWEEP_EVERY, sweeping
from .._telemetry_queue import serve_metrics
from .._version import __version__
from ..channels.webhook import WebhookChannel
from . import _api, _events, _session_routes, _webhooks
from ._handlers import SecurityHeaders, install_error_handlers
from ._settings import WebSettings

if TYPE_CHECKING:
    from ..alerts import Alerter
    from ..channels.slack import SlackService

__all__ = ["build_app"]
_STATIC = Path(__file__).parent / "static"


def build_app(
    gate: Gatekeeper,
    settings: WebSettings,
    *,
    slack: SlackService | None = None,
    webhooks: Iterable[WebhookChannel] | None = None,
    sweep_every: float | None = SWEEP_EVERY,
    alerts: Alerter | None = None,
    keeping: Keeping | None = None,
) -> FastAPI:
    """The console's ASGI app for ``gate`` (and, with ``slack``, Slack's request URL).

    ``sweep_every``: seconds between sweeps for requests whose caller is gone
    (see :mod:`gatekeeper._sweep`); None: no sweeping here. ``alerts``: an
    alerter run while the app serves (closed when it stops). ``keeping``:
    prune expired requests' leftovers and archive old audit events, every
    ``keeping.every`` seconds (see :mod:`gatekeeper._retention`).
    """

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        tasks = []
        if slack:
            tasks.append(asyncio.create_task(slack.run(), name="gatekeeper-slack"))
        if sweep_every is not None:
            tasks.append(asyncio.create_task(sweeping(gate, sweep_every), name="gatekeeper-sweep"))
        if alerts is not None:
            tasks.append(asyncio.create_task(alerts.run(), name="gatekeeper-alerts"))
        if keeping is not None:
            job = keeping_task(gate, keeping)
            tasks.append(asyncio.create_task(job, name="gatekeeper-retention"))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if alerts is not None:
                await asyncio.to_thread(alerts.close)  # what waits is sent first, within bounds
            await app.state.events.stop()

    app = FastAPI(
        title="gatekeeper console",
        version=__version__,
        description="Decide held tool calls, read the audit log, halt agents.",
        # No docs pages: FastAPI's load Swagger UI / ReDoc from a CDN and need
        # inline scripts, which the console's CSP forbids everywhere.
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
        lifespan=lifespan,
    )
    app.state.gate = gate
    app.state.settings = settings
    app.state.slack = slack
    app.state.events = _events.EventHub(gate)
    app.state.webhooks = _webhooks.accepting(gate, webhooks)
    install_error_handlers(app)
    app.add_middleware(SecurityHeaders)

    app.include_router(_session_routes.router)
    app.include_router(_api.router)
    app.include_router(_events.router)
    app.include_router(_webhooks.router)
    if gate.telemetry.registry is not None:  # the queue's gauges are read when scraped
        from . import _metrics

        serve_metrics(gate.telemetry, gate)
        app.include_router(_metrics.router)
    if slack is not None:
        from . import _slack

        app.include_router(_slack.router)
    if importlib.util.find_spec("gatekeeper.web._pages") is not None:
        from . import _pages

        app.include_router(_pages.router)
    if _STATIC.is_dir():
        app.mount("/static", StaticFiles(directory=str(_STATIC)), name="static")
    return app
