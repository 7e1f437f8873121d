"""``WebhookAlerts``: alerts POSTed as signed JSON, the way the webhook channel signs."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx

from ..channels.webhook import WebhookChannel
from ._alert import Alert

__all__ = ["WebhookAlerts"]


class WebhookAlerts:
    """POSTs each alert (:meth:`Alert.document`) to ``url``, signed with ``secret``.

    The signature is the webhook channel's (see :mod:`gatekeeper.channels.webhook`):
    ``X-Gatekeeper-Signature: v1=<hex hmac_sha256(secret, b"v1:" + timestamp + b":" + body)>``
    beside ``X-Gatekeeper-Timestamp``, with ``X-Gatekeeper-Event: alert``. Connection
    errors, timeouts, 5xx and 429 are retried within ``attempts`` and ``max_wait``
    seconds of waiting; then ``send`` raises :class:`~gatekeeper.ChannelError`.

    Example::

        WebhookAlerts("https://hooks.example.com/alerts", secret=os.environ["ALERTS_SECRET"])

    The secret is the deciding side's (``gatekeeper serve``): agents never need it.
    """

    def __init__(
        self,
        url: str,
        *,
        secret: str,
        name: str = "alerts",
        timeout: float = 5.0,
        attempts: int = 3,
        max_wait: float = 10.0,
        client: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._hook = WebhookChannel(
            url,
            secret=secret,
            name=name,
            timeout=timeout,
            attempts=attempts,
            max_wait=max_wait,
            client=client,
            sleep=sleep,
        )
        self.name = f"webhook:{name}"
        self.url = url

    def __repr__(self) -> str:
        return f"WebhookAlerts({self.url!r}, name={self.name!r})"  # never the secret

    def send(self, alert: Alert) -> None:
        self._hook.post("alert", alert.document())

    def close(self) -> None:
        self._hook.close()
