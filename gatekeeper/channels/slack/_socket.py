"""Slack interactivity over Socket Mode: no public URL needed.

slack-sdk's built-in ``SocketModeClient`` keeps the WebSocket open (and
reconnects when Slack asks it to, or the connection drops). Each envelope is
acknowledged first, then worked on, so Slack never waits more than the time
it takes to parse the payload.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from slack_sdk import WebClient
from slack_sdk.socket_mode import SocketModeClient
from slack_sdk.socket_mode.client import BaseSocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse

from ...logs import get_logger
from ._interactions import SlackInteractions

__all__ = ["SlackSocketMode"]

log = get_logger("gatekeeper.slack")


class SlackSocketMode:
    """Receives button clicks and modal submissions over Socket Mode."""

    def __init__(
        self,
        interactions: SlackInteractions,
        *,
        app_token: str,
        web_client: WebClient,
        ping_interval: float = 5.0,
        workers: int = 8,
    ) -> None:
        self.interactions = interactions
        self.client = SocketModeClient(
            app_token=app_token,
            web_client=web_client,
            auto_reconnect_enabled=True,
            ping_interval=ping_interval,
        )
        self.client.socket_mode_request_listeners.append(self._on_request)
        self._workers = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gk-slack")
        self.handled = 0  # envelopes worked on (tests read it)

    def start(self) -> None:
        """Open the connection; returns once connected (runs on slack-sdk's threads)."""
        self.client.connect()

    def close(self) -> None:
        self.client.close()
        self._workers.shutdown(wait=False, cancel_futures=True)

    def _on_request(self, client: BaseSocketModeClient, req: SocketModeRequest) -> None:
        body: dict[str, Any] | None = None
        work = None
        if req.type == "interactive":
            try:
                reply = self.interactions.handle(req.payload)  # parsing only: quick
                body, work = reply.body, reply.work
            except Exception:
                log.exception("slack: could not read envelope %s", req.envelope_id)
        # Acknowledge first. If that fails, do nothing: Slack delivers the envelope again.
        client.send_socket_mode_response(
            SocketModeResponse(envelope_id=req.envelope_id, payload=body)
        )
        if work is None:
            return
        try:
            # Slack redelivers an envelope whose ack was late: acknowledge it, don't redo it.
            fresh = self.interactions.gate.store.use_once(f"slack:envelope:{req.envelope_id}", 3600)
        except Exception:
            log.exception("slack: could not check envelope %s; not acting on it", req.envelope_id)
            return
        if fresh:
            self.handled += 1
            # The slow part runs on workers of our own, so slack-sdk's listener
            # threads stay free to acknowledge the next envelopes in time.
            self._workers.submit(_logged, work)


def _logged(work: Callable[[], None]) -> None:
    try:
        work()
    except Exception:
        log.exception("slack: handling a click failed")
