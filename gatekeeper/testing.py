"""Helpers for testing agents that use gatekeeper.

- :class:`ManualClock`: time that moves only when told to.
- :class:`RecordingChannel`: remembers every request it was told about.
- :class:`AutoDecider`: a channel that approves or denies at once, by a rule you give.
- :class:`RecordingAlerts`: an alert target (see :mod:`gatekeeper.alerts`) that remembers
  every alert sent to it.

Example::

    decider = AutoDecider(approve=lambda req: req.call.args["amount"] < 100)
    gate = Gatekeeper(policy=policy, channels=[decider])
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from .models import ApprovalRequest

if TYPE_CHECKING:
    from ._gate import Gatekeeper
    from .alerts import Alert

__all__ = ["AutoDecider", "ManualClock", "RecordingAlerts", "RecordingChannel"]


class ManualClock:
    """A clock that only moves when told to.

    Example::

        clock = ManualClock()
        store = MemoryStore(clock=clock)
        clock.advance(3600)      # an hour later, without waiting
    """

    def __init__(self, start: dt.datetime | None = None) -> None:
        self._now = start or dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
        self._lock = threading.Lock()

    def now(self) -> dt.datetime:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += dt.timedelta(seconds=seconds)


class RecordingChannel:
    """A channel that records what it is told; ``wait_for_request`` blocks until one arrives."""

    def __init__(self) -> None:
        self.notified: list[ApprovalRequest] = []
        self.updated: list[ApprovalRequest] = []
        self._arrived = threading.Condition()

    def bind(self, gate: Gatekeeper) -> None:
        self.gate = gate

    def notify(self, request: ApprovalRequest) -> None:
        with self._arrived:
            self.notified.append(request)
            self._arrived.notify_all()

    def update(self, request: ApprovalRequest) -> None:
        with self._arrived:
            self.updated.append(request)
            self._arrived.notify_all()

    def wait_for_request(self, count: int = 1, timeout: float = 10.0) -> ApprovalRequest:
        """The ``count``-th request notified, waiting up to ``timeout`` seconds for it."""
        with self._arrived:
            if not self._arrived.wait_for(lambda: len(self.notified) >= count, timeout):
                raise TimeoutError(f"no request #{count} within {timeout}s")
            return self.notified[count - 1]


class RecordingAlerts:
    """An alert target that records every alert; ``wait_for`` blocks until enough arrived.

    Example::

        seen = RecordingAlerts()
        alerter = Alerter(gate.store, [seen])
        alerter.check()
        alerter.flush()
        print([a.headline for a in seen.alerts])
    """

    name = "recording"

    def __init__(self) -> None:
        self.alerts: list[Alert] = []
        self._arrived = threading.Condition()

    def send(self, alert: Alert) -> None:
        with self._arrived:
            self.alerts.append(alert)
            self._arrived.notify_all()

    def wait_for(self, count: int = 1, timeout: float = 10.0) -> list[Alert]:
        """The alerts so far, once there are at least ``count``; TimeoutError after ``timeout``."""
        with self._arrived:
            if not self._arrived.wait_for(lambda: len(self.alerts) >= count, timeout):
                raise TimeoutError(f"{len(self.alerts)} alert(s), not {count}, within {timeout}s")
            return list(self.alerts)


Rule = Callable[[ApprovalRequest], bool]

_DENIED = "denied by AutoDecider"


class AutoDecider:
    """A channel that decides every request at once, as ``approver``.

    ``approve`` is True, False, or a function of the request. ``args`` (a
    mapping or a function of the request) approves with edited arguments.
    ``comment`` goes with every decision; without one, a denial says
    ``"denied by AutoDecider"`` (a denial always carries a reason).
    ``respond`` (text, or a function of the request returning text or None)
    answers instead of deciding: the tool does not run and the agent gets
    the text (the *respond* decision; how questions are answered).
    """

    def __init__(
        self,
        *,
        approve: bool | Rule = True,
        approver: str = "auto-decider",
        comment: str | None = None,
        args: Mapping[str, Any]
        | Callable[[ApprovalRequest], Mapping[str, Any] | None]
        | None = None,
        respond: str | Callable[[ApprovalRequest], str | None] | None = None,
    ) -> None:
        self._rule = approve if callable(approve) else (lambda _req, _v=approve: _v)
        self._respond = respond
        self.approver = approver
        self.comment = comment
        self._args = args
        self.decided: list[ApprovalRequest] = []
        self._gate: Gatekeeper | None = None

    def bind(self, gate: Gatekeeper) -> None:
        self._gate = gate

    def notify(self, request: ApprovalRequest) -> None:
        if self._gate is None:
            raise RuntimeError("AutoDecider is not bound to a Gatekeeper")
        text = self._respond(request) if callable(self._respond) else self._respond
        if text is not None:
            after = self._gate.respond(
                request.id, approver=self.approver, response=text, comment=self.comment, via="test"
            )
        elif self._rule(request):
            args = self._args(request) if callable(self._args) else self._args
            after = self._gate.approve(
                request.id, approver=self.approver, comment=self.comment, args=args, via="test"
            )
        else:
            comment = self.comment or _DENIED
            after = self._gate.deny(request.id, approver=self.approver, comment=comment, via="test")
        self.decided.append(after)

    def update(self, request: ApprovalRequest) -> None:
        pass
