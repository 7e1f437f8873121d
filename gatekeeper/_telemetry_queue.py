"""Gauges read from the store when Prometheus scrapes: the queue and the audit sealer."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator
from typing import TYPE_CHECKING

from ._telemetry import _REGISTRIES_LOCK, Telemetry

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from ._gate import Gatekeeper
    from .store import Store

__all__ = ["QueueCollector", "sealer_backlog", "serve_metrics"]


class QueueCollector:
    """Pending requests, the oldest one's age, and the audit sealer's backlog, read at scrape time.

    Three bounded reads of ``store`` per scrape: the queue's count, the
    oldest pending request, and the sealer's backlog (the drafts this process
    queued, and with a Redis store the length of every journal, one pipelined
    round trip per 1,000 agents). A store that can't answer leaves a gauge out
    of that scrape rather than failing it.
    """

    def __init__(self, store: Store) -> None:
        self.store = store

    def describe(self) -> list[Metric]:
        return list(self._empty())

    def _empty(self) -> Iterator[Metric]:
        from prometheus_client.core import GaugeMetricFamily

        yield GaugeMetricFamily(
            "gatekeeper_pending_requests", "Requests waiting for a decision now"
        )
        yield GaugeMetricFamily(
            "gatekeeper_oldest_pending_age_seconds",
            "Seconds the oldest pending request has waited (0 when none waits)",
        )
        yield GaugeMetricFamily(
            "gatekeeper_audit_sealer_backlog", "Audit drafts written but not yet sealed"
        )

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import GaugeMetricFamily

        from ._errors import GatekeeperError

        store = self.store
        with contextlib.suppress(GatekeeperError):
            _, total = store.queue(limit=1)
            oldest = store.pending(limit=1)
            age = 0.0
            if oldest:
                age = (store_now(store) - oldest[0].created_at).total_seconds()
            yield GaugeMetricFamily(
                "gatekeeper_pending_requests", "Requests waiting for a decision now", value=total
            )
            yield GaugeMetricFamily(
                "gatekeeper_oldest_pending_age_seconds",
                "Seconds the oldest pending request has waited (0 when none waits)",
                value=max(age, 0.0),
            )
        with contextlib.suppress(GatekeeperError):
            yield GaugeMetricFamily(
                "gatekeeper_audit_sealer_backlog",
                "Audit drafts written but not yet sealed",
                value=sealer_backlog(store),
            )


def store_now(store: Store) -> dt.datetime:
    clock = getattr(store, "clock", None)
    if clock is not None:
        now: dt.datetime = clock.now()
        return now
    return dt.datetime.now(dt.timezone.utc)


def sealer_backlog(store: Store) -> int:
    """Drafts not yet in the chain: this process's queue and, in Redis, every journal's length."""
    backlog = getattr(store, "sealer_backlog", None)
    return int(backlog()) if callable(backlog) else 0


def serve_metrics(tel: Telemetry, gate: Gatekeeper) -> None:
    """Register ``gate``'s queue collector on ``tel``'s registry (once per registry)."""
    registry = tel.registry
    if registry is None:
        return
    with _REGISTRIES_LOCK:
        current = getattr(registry, "_gatekeeper_queue", None)
        if current is not None:
            current.store = gate.store  # one console per process: the last one built reads
            return
        collector = QueueCollector(gate.store)
        registry.register(collector)
        registry._gatekeeper_queue = collector  # type: ignore[attr-defined]
