"""The web console: approval queue, decisions, audit, agents and kill switch, JSON API.

Install with ``pip install hitl-gatekeeper[web]`` and run ``gatekeeper serve``,
or build the ASGI app yourself::

    from gatekeeper import Gatekeeper
    from gatekeeper.web import WebSettings, create_app

    app = create_app(Gatekeeper.from_config(), WebSettings(secret_key=...))
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._settings import ApiToken, WebSettings

if TYPE_CHECKING:
    from fastapi import FastAPI

    from .._gate import Gatekeeper

__all__ = ["ApiToken", "WebSettings", "create_app"]


def create_app(gate: Gatekeeper, settings: WebSettings) -> FastAPI:
    """The console's ASGI app for ``gate``; every console process on one store acts as one.

    Importing :mod:`gatekeeper.web` needs no web framework; this does (the
    ``web`` extra).
    """
    from ._app import build_app

    return build_app(gate, settings)
