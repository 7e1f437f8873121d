"""Waking blocked threads when their request changes: one subscription per store, shared.

A waiting thread no longer holds a Redis connection for as long as it waits
(a ``BLPOP`` each, which made the 101st concurrent waiter of a process fail
with redis-py's default pool of 100). Instead, one thread per
:class:`~gatekeeper.store.RedisStore` subscribes to the deployment's
``decided`` channel and sets the :class:`threading.Event` of every thread
waiting on the id it hears, as the async face's dispatcher does for its
tasks. Thousands of blocked calls in one process share that one connection.

After every (re)subscription all waiters are woken to re-read their request,
so a decision published while the subscription was down is not lost; and
each waiter re-reads at least every :data:`RECHECK` seconds whatever it hears.

A quiet subscription is pinged (:class:`Heartbeat`): one that does not answer
within :data:`KEEPALIVE` seconds is taken for lost — a Redis frozen or gone
without closing the connection — and made again, so wake-ups come back
promptly once Redis does, not only at the next re-read.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from ._endpoints import Endpoint, disconnect

__all__ = ["KEEPALIVE", "RECHECK", "Heartbeat", "Wakes"]

log = logging.getLogger("gatekeeper.store")

#: Longest a waiter goes without re-reading its request, even if it hears nothing.
RECHECK = 5.0

#: Seconds of silence on a subscription before it is pinged; as long again
#: without an answer and it is taken for lost and made again.
KEEPALIVE = 5.0

#: Longest one read of the subscription blocks (the heartbeat is checked between).
LISTEN_STEP = 1.0


class Heartbeat:
    """When to ping a quiet subscription, and when to call it lost.

    ``heard()`` on every message (a pong too); ``due()`` says a ping is
    owed (then ``pinged()``), ``lost()`` that nothing came back in time.
    """

    def __init__(self, every: float = KEEPALIVE, clock: Callable[[], float] = time.monotonic):
        self._every = every
        self._clock = clock
        self._last = clock()
        self._pinged = False

    def heard(self) -> None:
        self._last = self._clock()
        self._pinged = False

    def due(self) -> bool:
        return not self._pinged and self._clock() - self._last >= self._every

    def pinged(self) -> None:
        self._pinged = True

    def lost(self) -> bool:
        return self._clock() - self._last >= 2 * self._every


class SubscriptionLost(Exception):
    """The subscription went quiet and did not answer a ping."""


class Wakes:
    """The waiting threads of one store, woken by one pub/sub subscription."""

    def __init__(
        self, endpoint: Endpoint, channel: str, *, socket_timeout: float = KEEPALIVE
    ) -> None:
        self._endpoint = endpoint
        self._channel = channel
        self._socket_timeout = min(socket_timeout, KEEPALIVE)
        self._lock = threading.Lock()
        self._waiters: dict[str, set[threading.Event]] = {}
        self._thread: threading.Thread | None = None
        self._closed = threading.Event()
        self._pubsub: Any = None
        self.subscribed = threading.Event()
        self.reconnects = 0

    def watch(self, request_id: str) -> threading.Event:
        """An event set whenever ``request_id`` may have changed (see :meth:`unwatch`)."""
        event = threading.Event()
        with self._lock:
            self._waiters.setdefault(request_id, set()).add(event)
            if self._thread is None and not self._closed.is_set():
                self._thread = threading.Thread(
                    target=self._listen, name="gatekeeper-wakes", daemon=True
                )
                self._thread.start()
        return event

    def unwatch(self, request_id: str, event: threading.Event) -> None:
        with self._lock:
            waiters = self._waiters.get(request_id)
            if waiters is not None:
                waiters.discard(event)
                if not waiters:
                    del self._waiters[request_id]

    def _wake(self, request_id: str | None) -> None:
        with self._lock:
            if request_id is None:
                events = [e for group in self._waiters.values() for e in group]
            else:
                events = list(self._waiters.get(request_id, ()))
        for event in events:
            event.set()

    def _subscriber(self) -> Any:
        """The subscription's client, or None (logged, waiters woken) when it can't be made."""
        try:
            return self._endpoint.subscriber(socket_timeout=self._socket_timeout)
        except Exception as exc:
            self.reconnects += 1
            log.warning("decision subscription can't be made, retrying: %s", exc)
            self._wake(None)  # re-read now: a wake may be missed meanwhile
            self._closed.wait(0.5)
            return None

    def _listen(self) -> None:
        # No silent reconnects inside redis-py: a lost subscription must come
        # back here, which subscribes again and wakes every waiter.
        client: Any = None
        backoff = 0.05
        try:
            while not self._closed.is_set():
                if client is None:  # a cluster client connects as it is made: in the loop
                    client = self._subscriber()
                    if client is None:
                        continue
                pubsub = client.pubsub()
                self._pubsub = pubsub
                beat = Heartbeat()
                try:
                    pubsub.subscribe(self._channel)
                    while not self._closed.is_set():
                        message = pubsub.get_message(timeout=LISTEN_STEP)
                        if message is None:
                            if beat.lost():
                                raise SubscriptionLost(f"no answer for {2 * KEEPALIVE:.0f} s")
                            if beat.due():
                                pubsub.ping()
                                beat.pinged()
                            continue
                        beat.heard()
                        kind = message.get("type")
                        if kind == "subscribe":
                            self.subscribed.set()
                            self._wake(None)  # anything published before is caught on re-read
                            backoff = 0.05
                        elif kind == "message":
                            data = message.get("data")
                            raw = data if isinstance(data, bytes) else str(data).encode()
                            self._wake(raw.decode("utf-8", "replace"))
                except Exception as exc:  # whatever broke it, the subscription is made again
                    if self._closed.is_set():
                        return
                    self.subscribed.clear()
                    self.reconnects += 1
                    log.warning("decision subscription lost, reconnecting: %s", exc)
                    self._wake(None)  # re-read now: a wake may have been missed
                    self._closed.wait(backoff)
                    backoff = min(backoff * 2, 2.0)
                finally:
                    with contextlib.suppress(Exception):  # it is gone either way
                        pubsub.close()
        finally:
            if client is not None:
                with contextlib.suppress(Exception):
                    disconnect(client)

    def close(self) -> None:
        """Stop listening (the waiting threads fall back to re-reading every RECHECK s)."""
        self._closed.set()
        pubsub = self._pubsub
        if pubsub is not None:
            with contextlib.suppress(Exception):
                pubsub.close()  # ends the listen loop's blocking read
        self._wake(None)
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(2)
