"""Helpers for testing agents that use gatekeeper: a manual clock, channels that record or decide."""

from __future__ import annotations

import datetime as dt
import threading

__all__ = ["ManualClock"]


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
