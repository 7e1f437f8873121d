"""``Alerter``: follows the sealed audit log and the queue, and sends alerts, throttled.

Alerts come from the deciding side, from one place for every agent process:
the audit log once sealed (agents can't write the chain, and a contained
agent's process can't be trusted to report on itself) and the queue of
pending requests. ``gatekeeper serve`` runs :meth:`Alerter.run` beside its
sweep; ``gatekeeper alerts`` runs the same loop without a console; a process
with the embedded store calls :meth:`Alerter.check` itself.

Several processes may follow one store: each reads every event, builds the
same alerts with the same ids (:mod:`._throttle`), and asks the store
(:meth:`Store.use_once <gatekeeper.store.Store.use_once>`) before sending
one, so each goes out once. On its first check an alerter reads back one
window of the log, so alerts of events sealed while no alerter ran (a
restart) still go out, once.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from .._clock import Clock, SystemClock
from .._errors import GatekeeperError
from ..audit import advance_cursor
from ..logs import get_logger
from ..models import Risk
from ._alert import KINDS, Alert, AlertKind
from ._outbox import AlertTarget, Outbox
from ._throttle import Throttle, digest
from ._watch import Watch

if TYPE_CHECKING:
    from ..store import Store

__all__ = ["Alerter"]

log = get_logger("gatekeeper.alerts")

_PAGE = 500
_CATCH_UP_PAGES = 20  # at most 10,000 events read back on the first check
_QUEUE_EVERY = 5.0  # seconds between two looks at the queue
_URL = re.compile(r"^https?://[^/\s]+", re.IGNORECASE)


def _at_ms(body: bytes) -> int:
    try:
        at = json.loads(body)["event"]["at"]
    except (ValueError, KeyError, TypeError):
        return 0
    return at if isinstance(at, int) else 0


class Alerter:
    """Follows the sealed audit log and the queue; sends alerts to its targets, throttled.

    An alert goes out for each halt, sequence hit, limit exceeded, denial of
    a high-risk call and novelty hold in the log, and for a queue whose
    oldest request has waited longer than ``queue_age`` seconds.

    Example::

        alerter = Alerter(gate.store, [WebhookAlerts(url, secret=secret)],
                          console_url="https://gatekeeper.example.com")
        alerter.check()        # what is new since the last check, sent (throttled)
        alerter.close()

    ``kinds``: which alerts (default all of :data:`~gatekeeper.alerts.KINDS`);
    ``deny_risk``: the least risk a denied call must have to alert;
    ``queue_age``: None for no queue alerts; ``window`` and ``most``: at
    most one alert per key (kind, agent, rule) per window and ``most`` in
    all, the others counted and summed up (see :mod:`._throttle`);
    ``every``: seconds between checks in :meth:`run` and :meth:`follow`.
    ``clock`` is injectable for tests.
    """

    def __init__(
        self,
        store: Store,
        targets: Iterable[AlertTarget],
        *,
        console_url: str | None = None,
        kinds: Iterable[AlertKind] = KINDS,
        deny_risk: Risk | str = Risk.HIGH,
        queue_age: float | None = 600.0,
        window: float = 600.0,
        most: int = 30,
        every: float = 1.0,
        clock: Clock | None = None,
        outbox_size: int = 1000,
    ) -> None:
        wanted = tuple(kinds)
        unknown = [k for k in wanted if k not in KINDS]
        if unknown:
            raise ValueError(f"unknown alert kind(s) {unknown}; known: {', '.join(KINDS)}")
        if console_url is not None and not _URL.match(console_url):
            raise ValueError(f"console_url must be an http:// or https:// URL, got {console_url!r}")
        if queue_age is not None and queue_age <= 0:
            raise ValueError("queue_age must be above zero seconds (or None: no queue alerts)")
        if window <= 0 or every <= 0 or most < 1:
            raise ValueError("window and every must be above zero seconds, most at least 1")
        self.store = store
        self.queue_age = queue_age
        self.window = window
        self.every = every
        self.clock = clock or SystemClock()
        self.outboxes = [Outbox(t, outbox_size) for t in targets]
        if not self.outboxes:
            raise ValueError("an Alerter needs at least one target (Slack, a webhook...)")
        self._watch = Watch(kinds=wanted, deny_risk=Risk(deny_risk), console_url=console_url)
        self._throttle = Throttle(window, most, grace=min(5.0, window / 10))
        self._cursor: str | None = None
        self._started = False
        self._next_queue_look = 0.0
        self._last_queue_alert = float("-inf")
        self._queued: OrderedDict[str, None] = OrderedDict()  # requests already alerted on
        self._lock = threading.Lock()

    # -- one pass ----------------------------------------------------------------------------
    def check(self) -> list[Alert]:
        """Read what is new in the log and the queue; hand what is due to the targets.

        Returns the alerts handed over (sending happens in the outboxes'
        threads: :meth:`flush` waits for it). Raises the store's error when
        the log can't be read; nothing read is lost, the next check goes on
        from the last event read.
        """
        with self._lock:
            now = self.clock.now().timestamp()
            found: list[Alert] = []
            try:
                self._gather(now, found)
            except BaseException:
                self._hand(found)  # what was read before the store failed still goes out
                raise
            return self._hand(found)

    def _gather(self, now: float, found: list[Alert]) -> None:
        if not self._started:
            self._cursor = self._catch_up_from(now)
            self._started = True
        oldest = now - self.window
        for entry in self.store.audit_entries(after=self._cursor):
            # Each chain's place: the masters of a cluster don't share a clock.
            self._cursor = advance_cursor(self._cursor, entry.entry_id)
            for alert in self._watch.read(entry, now):
                at = min(max(alert.at.timestamp(), oldest), now)
                found.extend(self._offered(alert, at))
        for alert in self._watch.due(now):
            found.extend(self._offered(alert, now))
        found.extend(self._queue(now))
        found.extend(self._throttle.due(now))

    def _hand(self, found: list[Alert]) -> list[Alert]:
        return [a for a in found if self._claimed(a) and self._handed(a)]

    def _offered(self, alert: Alert, at: float) -> list[Alert]:
        sent = self._throttle.offer(alert, at)
        return [sent] if sent is not None else []

    def _catch_up_from(self, now: float) -> str | None:
        """The entry to read after on the first check: one window back (None: the start)."""
        cutoff = (now - self.window) * 1000
        before: str | None = None
        for _ in range(_CATCH_UP_PAGES):
            page = self.store.audit_page(before=before, limit=_PAGE)
            for entry in page:  # newest first
                if _at_ms(entry.body) < cutoff:
                    return entry.entry_id
            if len(page) < _PAGE:
                return None
            before = page[-1].entry_id
        return before

    def _queue(self, now: float) -> list[Alert]:
        age = self.queue_age
        if age is None or now < self._next_queue_look:
            return []
        self._next_queue_look = now + min(_QUEUE_EVERY, age / 4)
        if now - self._last_queue_alert < self.window:
            return []  # one queue alert per window is enough; no summary of the others
        waiting = self.store.pending(limit=20)
        if not waiting:
            return []
        oldest = waiting[0]  # both stores list the oldest first
        waited = now - oldest.created_at.timestamp()
        if waited < age or oldest.id in self._queued:
            return []
        alert = self._watch.queue(oldest, waited, self.clock.now())
        if alert is None:
            return []
        # One alert per request, whichever process sends it, whenever.
        sent = self._throttle.offer(replace(alert, id=f"queue-{digest(oldest.id)}"), now)
        if sent is None:
            return []
        self._last_queue_alert = now
        self._queued[oldest.id] = None
        while len(self._queued) > 1000:
            self._queued.popitem(last=False)
        return [sent]

    def _claimed(self, alert: Alert) -> bool:
        """Whether this process sends ``alert``: no other process did already."""
        try:
            return self.store.use_once("alert:" + alert.id, 2 * self.window + 60)
        except GatekeeperError as exc:  # better twice than never
            log.warning("alert %s: could not check whether it was sent already: %s", alert.id, exc)
            return True

    def _handed(self, alert: Alert) -> bool:
        log.info("alert %s: %s", alert.id, alert.headline)
        for outbox in self.outboxes:
            outbox.put(alert)
        return True

    # -- loops -------------------------------------------------------------------------------
    async def run(self) -> None:
        """Check every ``every`` seconds until cancelled (``gatekeeper serve``'s task).

        A failed check (the store away, ...) is logged and tried again; it
        never ends the loop.
        """
        while True:
            try:
                await asyncio.to_thread(self.check)
            except Exception:
                log.exception("alerts: checking failed; trying again in %.0f s", self.every)
            await asyncio.sleep(self.every)

    def follow(self, stop: threading.Event | None = None) -> None:
        """:meth:`run` for a thread: check every ``every`` seconds until ``stop`` is set."""
        stop = stop or threading.Event()
        while True:
            try:
                self.check()
            except Exception:
                log.exception("alerts: checking failed; trying again in %.0f s", self.every)
            if stop.wait(self.every):
                return

    def flush(self, timeout: float = 60.0) -> bool:
        """Wait until every alert handed over was sent or given up on; False on timeout."""
        deadline = time.monotonic() + timeout
        return all(o.flush(max(deadline - time.monotonic(), 0.0)) for o in self.outboxes)

    def close(self, timeout: float = 10.0) -> None:
        """Send what waits (up to ``timeout`` seconds), stop the outboxes, close the targets."""
        deadline = time.monotonic() + timeout
        for outbox in self.outboxes:
            outbox.close(max(deadline - time.monotonic(), 0.0))
            closer = getattr(outbox.target, "close", None)
            if callable(closer):
                closer()

    @property
    def targets(self) -> Sequence[AlertTarget]:
        return [o.target for o in self.outboxes]
