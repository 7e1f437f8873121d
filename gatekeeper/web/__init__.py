"""The web console: approval queue, decisions, audit, agents and kill switch, JSON API.

Install with ``pip install hitl-gatekeeper[web]`` and run ``gatekeeper serve``,
or build the ASGI app yourself::

    from gatekeeper import Gatekeeper
    from gatekeeper.web import WebSettings, create_app

    app = create_app(Gatekeeper.from_config(), WebSettings(secret_key=...))
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from ._settings import ApiToken, WebSettings

if TYPE_CHECKING:
    from fastapi import FastAPI

    from .._gate import Gatekeeper
    from .._retention import Keeping
    from ..alerts import Alerter
    from ..channels.slack import SlackService
    from ..channels.webhook import WebhookChannel

__all__ = ["ApiToken", "WebSettings", "create_app"]


def create_app(
    gate: Gatekeeper,
    settings: WebSettings,
    *,
    slack: SlackService | None = None,
    webhooks: Iterable[WebhookChannel] | None = None,
    alerts: Alerter | None = None,
    keeping: Keeping | None = None,
) -> FastAPI:
    """The console's ASGI app for ``gate``; every console process on one store acts as one.

    With ``slack``, the app also answers Slack's interactivity request URL
    (``POST /slack/interactions``) and runs the service while it serves.
    ``POST /webhooks/decision`` takes decisions signed with the secret of one
    of ``webhooks`` that has ``accept_decisions`` (default: the webhook
    channels in ``gate.channels``; ``gatekeeper serve`` passes the config's).
    With ``alerts``, the app runs that :class:`~gatekeeper.alerts.Alerter`
    while it serves (``gatekeeper serve`` passes the config's ``alerts:``).
    With ``keeping``, it prunes expired requests and archives old audit
    events as the config's ``store.retention`` and ``audit:`` say.
    Importing :mod:`gatekeeper.web` needs no web framework; this does (the
    ``web`` extra).
    """
    from ._app import build_app

    return build_app(gate, settings, slack=slack, webhooks=webhooks, alerts=alerts, keeping=keeping)
