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
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Any

import redis
import redis.exceptions as rexc
from redis.backoff import NoBackoff
from redis.retry import Retry

__all__ = ["RECHECK", "Wakes"]

log = logging.getLogger("gatekeeper.store")

#: Longest a waiter goes without re-reading its request, even if it hears nothing.
RECHECK = 5.0


class Wakes:
    """The waiting threads of one store, woken by one pub/sub subscription."""

    def __init__(self, url: str, channel: str) -> None:
        self._url = url
        self._channel = channel
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

    def _listen(self) -> None:
        # No silent reconnects inside redis-py: a lost subscription must come
        # back here, which subscribes again and wakes every waiter.
        client = redis.Redis.from_url(
            self._url,
            socket_connect_timeout=2,
            socket_timeout=None,  # a quiet channel is not a dead one
            socket_keepalive=True,
            retry=Retry(NoBackoff(), 0),
        )
        backoff = 0.05
        try:
            while not self._closed.is_set():
                pubsub = client.pubsub()
                self._pubsub = pubsub
                try:
                    pubsub.subscribe(self._channel)
                    for message in pubsub.listen():  # type: ignore[no-untyped-call]
                        if self._closed.is_set():
                            return
                        kind = message.get("type")
                        if kind == "subscribe":
                            self.subscribed.set()
                            self._wake(None)  # anything published before is caught on re-read
                            backoff = 0.05
                        elif kind == "message":
                            data = message.get("data")
                            raw = data if isinstance(data, bytes) else str(data).encode()
                            self._wake(raw.decode("utf-8", "replace"))
                except (rexc.RedisError, OSError, ValueError) as exc:
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
            with contextlib.suppress(Exception):
                client.close()

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
