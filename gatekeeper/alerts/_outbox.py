"""One outbox per alert target: a bounded queue and a thread that sends from it, in order.

A target that is slow or down (Slack rate-limiting, a webhook answering 500)
holds up only its own outbox: reading the audit log and the other targets go
on. Each send is retried inside the target, within its bounds; a send that
still fails is logged at error level and counted, and the outbox moves on.
When more than ``size`` alerts wait, the oldest is dropped (and logged), so a
target that is down for long can't grow memory without end.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Protocol, runtime_checkable

from ..logs import get_logger
from ._alert import Alert

__all__ = ["AlertTarget", "Outbox"]

log = get_logger("gatekeeper.alerts")


@runtime_checkable
class AlertTarget(Protocol):
    """Where alerts go: Slack (``SlackAlerts``), a webhook (``WebhookAlerts``), or yours.

    ``send`` blocks until the alert is delivered, retrying within its own
    bounds, and raises (any exception) when it gives up; the alerter calls it
    from a thread of its own per target. ``name`` names the target in logs.
    """

    name: str

    def send(self, alert: Alert) -> None: ...


class Outbox:
    """Sends alerts to ``target`` from a daemon thread started on the first one."""

    def __init__(self, target: AlertTarget, size: int = 1000) -> None:
        self.target = target
        self.size = size
        self.sent = 0
        self.failed = 0
        self.dropped = 0
        self._queue: deque[Alert] = deque()
        self._busy = False
        self._closed = False
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def put(self, alert: Alert) -> None:
        with self._cond:
            if self._closed:
                log.error("alert %s not sent to %s: the alerter is closed", alert.id, self.name)
                return
            if len(self._queue) >= self.size:
                lost = self._queue.popleft()
                self.dropped += 1
                log.error(
                    "alert %s dropped: more than %d alerts wait for %s",
                    lost.id,
                    self.size,
                    self.name,
                )
            self._queue.append(alert)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name=f"gatekeeper-alerts-{self.name}", daemon=True
                )
                self._thread.start()
            self._cond.notify_all()

    @property
    def name(self) -> str:
        return str(getattr(self.target, "name", type(self.target).__name__))

    def _loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._queue) or self._closed)
                if not self._queue:
                    return
                alert = self._queue.popleft()
                self._busy = True
            try:
                self.target.send(alert)
            except Exception as exc:  # a target's failure must never stop the others
                with self._cond:
                    self.failed += 1
                log.error(
                    "alert %s (%s) could not be sent to %s: %s",
                    alert.id,
                    alert.kind,
                    self.name,
                    exc,
                )
            else:
                with self._cond:
                    self.sent += 1
                log.info("alert %s (%s) sent to %s", alert.id, alert.kind, self.name)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def flush(self, timeout: float) -> bool:
        """Wait until every alert put so far was sent or given up on; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._queue and not self._busy, timeout)

    def close(self, timeout: float) -> None:
        """Send what waits (for up to ``timeout`` seconds), then stop the thread."""
        deadline = time.monotonic() + timeout
        self.flush(timeout)
        with self._cond:
            self._closed = True
            left = len(self._queue)
            self._queue.clear()
            self._cond.notify_all()
        if left:
            log.error("%d alert(s) not sent to %s: closed before they could be", left, self.name)
        if self._thread is not None:
            self._thread.join(max(deadline - time.monotonic(), 0.0))
