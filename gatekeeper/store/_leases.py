"""Keeping the leases of the requests this process waits for or runs, from one thread.

A caller that holds a request (waiting for its decision, or running its
tool) says it is still there by renewing the request's lease every
``ttl / 3`` seconds. One thread per store renews every lease of the process
in one batch, so ten thousand waiters cost one round trip per agent per
renewal, not ten thousand. When the process dies — SIGKILL, a crash, a
lost machine — nothing renews, the leases run out, and the requests become
``abandoned`` (never run) or ``outcome_unknown`` (a person looks) instead of
staying pending or approved forever.

A renewal that fails (Redis down for a moment) is tried again at the next
beat; a lease outlives two missed beats.
"""

from __future__ import annotations

import functools
import os
import threading
import weakref
from collections import Counter
from collections.abc import Callable, Sequence

from ..logs import get_logger

__all__ = ["LeaseKeeper"]

log = get_logger("gatekeeper.store")


class LeaseKeeper:
    """Renews the leases registered with :meth:`keep` until :meth:`drop`."""

    def __init__(self, renew: Callable[[Sequence[str], float], object], ttl: float) -> None:
        self._renew = renew
        self.ttl = ttl
        self._held: Counter[str] = Counter()  # request id -> how many callers hold it here
        self._later: dict[str, Callable[[], object]] = {}  # outcomes still to record
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None
        self.renewals = 0
        self.failures = 0
        # A forked child has none of its parent's threads: it starts its own on its first keep.
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=functools.partial(_after_fork, weakref.ref(self)))

    def keep(self, request_id: str) -> None:
        with self._lock:
            self._held[request_id] += 1
            if self._thread is None and not self._closed.is_set():
                self._thread = threading.Thread(
                    target=self._run, name="gatekeeper-leases", daemon=True
                )
                self._thread.start()

    def drop(self, request_id: str) -> None:
        with self._lock:
            self._held[request_id] -= 1
            if self._held[request_id] <= 0:
                del self._held[request_id]

    def held(self) -> list[str]:
        with self._lock:
            return list(self._held)

    def later(self, request_id: str, write: Callable[[], object]) -> None:
        """Try ``write`` (a request's outcome) at every beat until it lands, keeping the lease.

        The tool has run; only recording how it ended failed (Redis away for
        a moment). Until it is recorded the request keeps its lease, so it
        does not read as ``outcome_unknown`` while this process is alive.
        """
        with self._lock:
            self._later[request_id] = write
        self.keep(request_id)
        self._wake.set()  # beat now, then every second until it lands

    def owed(self) -> int:
        """How many outcomes are still waiting to be recorded."""
        with self._lock:
            return len(self._later)

    def settle(self) -> None:
        """Try every outcome still owed, once (at each beat, and on close)."""
        with self._lock:
            owed = list(self._later.items())
        for rid, write in owed:
            try:
                write()
            except Exception as exc:  # tried again at the next beat
                log.warning("outcome of request %s still not recorded: %s", rid, exc)
                continue
            with self._lock:
                self._later.pop(rid, None)
            self.drop(rid)
            log.info("outcome of request %s recorded after a retry", rid)

    def _beat(self) -> float:
        """Seconds to the next beat: a third of the lease, or 1 s while outcomes are owed."""
        return min(self.ttl / 3, 1.0) if self.owed() else self.ttl / 3

    def _run(self) -> None:
        while True:
            self._wake.wait(self._beat())
            self._wake.clear()
            if self._closed.is_set():
                return
            ids = self.held()
            if not ids:
                continue
            try:
                self._renew(ids, self.ttl)
                self.renewals += 1
            except Exception as exc:  # tried again at the next beat
                self.failures += 1
                log.warning("could not renew %d lease(s), trying again: %s", len(ids), exc)
            self.settle()

    def close(self) -> None:
        if self.owed():
            self.settle()  # a last try; what is still owed ends outcome_unknown
        self._closed.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(2)


def _after_fork(ref: weakref.ref[LeaseKeeper]) -> None:
    keeper = ref()
    if keeper is not None:
        keeper._lock = threading.Lock()
        keeper._thread = None
