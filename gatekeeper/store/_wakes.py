"""Waking blocked threads when their request changes: one subscription per store, shared.

A waiting thread no longer holds a Redis connection for as long as it waits
(a ``BLPOP`` each, which made the 101st concurrent waiter of a process fail
with redis-py's default pool of 100). Instead, one thread per
:class:`~gatekeeper.store.RedisStore` holds one pub/sub subscription and sets
the :class:`threading.Event` of every thread waiting on the id it hears, as
the async face's dispatcher does for its tasks. Thousands of blocked calls in
one process share that one connection.

**Fan-out.** A change of a request is published on its agent's own channel,
``{prefix:agent}:decided`` (:attr:`AgentKeys.channel
<gatekeeper.store._redis_ops.AgentKeys.channel>`). The subscription holds the
channels of the agents this process waits for, so it hears nothing of the
others' requests: Redis's work per decision does not grow with the number of
agent processes, and an agent's ACL user may listen (and publish) on its own
channel only. A channel is subscribed as soon as a thread starts waiting for
one of its agent's requests — the listening thread is nudged through a socket
pair, it does not wait out its read — and dropped :data:`LINGER` seconds after
its last waiter is gone (an agent that calls again soon finds it live).

**No wake-up is lost.** A waiter registers before it reads its request; when
Redis confirms a channel's subscription, that channel's waiters are woken to
read again, so a decision published before the confirmation is seen then.
After every lost subscription all waiters are woken to re-read, and the new
one subscribes every channel still waited on; each waiter also re-reads at
least every :data:`RECHECK` seconds whatever it hears.

A quiet subscription is pinged (:class:`Heartbeat`): one that does not answer
within :data:`KEEPALIVE` seconds is taken for lost — a Redis frozen or gone
without closing the connection — and made again, so wake-ups come back
promptly once Redis does, not only at the next re-read.

**Why PUBLISH and not sharded SPUBLISH.** On a cluster a plain ``PUBLISH`` is
relayed over the cluster bus to every node, where a subscriber of any node
hears it; ``SPUBLISH`` stays in the shard that owns the channel's slot, but
then a process must hold one ``SSUBSCRIBE`` connection per master owning an
agent it waits for, follow ``MOVED``, and subscribe again when the server
drops its shard channels as a slot moves or its master fails over.
redis-py's cluster pub/sub does that by reconnecting and resubscribing on its
own, out of sight — and a subscription that comes back without the waiters
re-reading is exactly a lost wake-up. So: one plain connection (to any seed
node on a cluster), plain channels per agent. On a cluster each decision's
message still reaches every node — a cost that grows with the number of
nodes, not with the processes listening (``bench/cluster.py``, C4).
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from ..logs import get_logger
from ._endpoints import Endpoint, disconnect

__all__ = ["KEEPALIVE", "LINGER", "RECHECK", "Heartbeat", "Interest", "Wakes"]

log = get_logger("gatekeeper.store")

#: Longest a waiter goes without re-reading its request, even if it hears nothing.
RECHECK = 5.0

#: Seconds of silence on a subscription before it is pinged; as long again
#: without an answer and it is taken for lost and made again.
KEEPALIVE = 5.0

#: Longest one read of the subscription blocks (the heartbeat is checked between).
LISTEN_STEP = 1.0

#: Seconds an agent's channel stays subscribed after its last waiter is gone.
LINGER = 30.0


def text(value: Any) -> str:
    """A channel or message as str (redis-py answers bytes)."""
    raw = value if isinstance(value, bytes) else str(value).encode()
    return raw.decode("utf-8", "replace")


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


class Interest:
    """Which channels a subscription should hold: those waited on, and lately waited on.

    ``add``/``remove`` count the waiters of each channel; :meth:`plan` says
    what to subscribe and unsubscribe, given what the connection holds. A
    channel without waiters is kept :data:`LINGER` seconds, then dropped: the
    set held is bounded by the agents waited on in the last ``LINGER`` seconds.
    """

    def __init__(self, linger: float = LINGER, clock: Callable[[], float] = time.monotonic):
        self._linger = linger
        self._clock = clock
        self._count: dict[str, int] = {}
        self._idle: dict[str, float] = {}  # channel -> when its last waiter left

    def add(self, channel: str) -> bool:
        """Count one more waiter; True when the channel had none (the listener should look)."""
        n = self._count.get(channel, 0)
        self._count[channel] = n + 1
        self._idle.pop(channel, None)
        return n == 0

    def remove(self, channel: str) -> None:
        n = self._count.get(channel, 0) - 1
        if n > 0:
            self._count[channel] = n
        else:
            self._count.pop(channel, None)
            self._idle[channel] = self._clock()

    def plan(self, held: set[str]) -> tuple[list[str], list[str]]:
        """(to subscribe, to unsubscribe) for a connection holding ``held``."""
        now = self._clock()
        for channel in [c for c, t in self._idle.items() if now - t >= self._linger]:
            del self._idle[channel]
        keep = self._count.keys() | self._idle.keys()
        return sorted(self._count.keys() - held), sorted(held - keep)


class Nudge:
    """A socket pair a thread blocked in ``select`` can be woken through."""

    def __init__(self) -> None:
        self.reader, self._writer = socket.socketpair()
        self.reader.setblocking(False)
        self._writer.setblocking(False)

    def poke(self) -> None:
        with contextlib.suppress(OSError):  # full (a poke is pending anyway) or closed
            self._writer.send(b"\0")

    def drain(self) -> None:
        with contextlib.suppress(OSError):
            while self.reader.recv(4096):
                pass

    def close(self) -> None:
        self.reader.close()
        self._writer.close()


class Wakes:
    """The waiting threads of one store, woken by one pub/sub subscription."""

    def __init__(self, endpoint: Endpoint, *, socket_timeout: float = KEEPALIVE) -> None:
        self._endpoint = endpoint
        self._socket_timeout = min(socket_timeout, KEEPALIVE)
        self._lock = threading.Lock()
        self._waiters: dict[str, set[threading.Event]] = {}
        self._channel_of: dict[str, str] = {}  # request id -> its agent's channel
        self._interest = Interest(LINGER)
        self._nudge: Nudge | None = None
        self._thread: threading.Thread | None = None
        self._closed = threading.Event()
        self._pubsub: Any = None
        self._backoff = 0.05  # before the next attempt at a lost subscription
        self.subscribed = threading.Event()  # some channel's subscription is confirmed
        self.reconnects = 0

    def watch(self, request_id: str, channel: str) -> threading.Event:
        """An event set whenever ``request_id`` may have changed (see :meth:`unwatch`).

        ``channel`` is its agent's (:attr:`AgentKeys.channel`); the event is set
        too once that channel's subscription is confirmed, so a change
        published before then is caught by reading the request again.
        """
        event = threading.Event()
        with self._lock:
            self._waiters.setdefault(request_id, set()).add(event)
            self._channel_of[request_id] = channel
            new = self._interest.add(channel)
            if self._thread is None and not self._closed.is_set():
                self._nudge = Nudge()
                self._thread = threading.Thread(
                    target=self._listen, name="gatekeeper-wakes", daemon=True
                )
                self._thread.start()
            nudge = self._nudge
        if new and nudge is not None:
            nudge.poke()  # subscribe now, not after the listener's current read
        return event

    def unwatch(self, request_id: str, event: threading.Event) -> None:
        with self._lock:
            waiters = self._waiters.get(request_id)
            if waiters is None or event not in waiters:
                return
            waiters.discard(event)
            channel = self._channel_of[request_id]
            if not waiters:
                del self._waiters[request_id]
                del self._channel_of[request_id]
            self._interest.remove(channel)

    def _wake(self, request_id: str | None = None, channel: str | None = None) -> None:
        """Wake the waiters of one request, of one channel, or (neither) all of them.

        With both, only if the request is of that channel: a message on one
        agent's channel naming another agent's request wakes nobody.
        """
        with self._lock:
            if request_id is not None:
                mine = channel is None or self._channel_of.get(request_id) == channel
                events = list(self._waiters.get(request_id, ())) if mine else []
            elif channel is not None:
                events = [
                    e
                    for rid, group in self._waiters.items()
                    if self._channel_of.get(rid) == channel
                    for e in group
                ]
            else:
                events = [e for group in self._waiters.values() for e in group]
        for event in events:
            event.set()

    def _subscriber(self) -> Any:
        """The subscription's client, or None (logged, waiters woken) when it can't be made."""
        try:
            return self._endpoint.subscriber(socket_timeout=self._socket_timeout)
        except Exception as exc:
            self.reconnects += 1
            log.warning("decision subscription can't be made, retrying: %s", exc)
            self._wake()  # re-read now: a wake may be missed meanwhile
            self._closed.wait(0.5)
            return None

    def _ready(self, pubsub: Any, held: set[str]) -> bool:
        """Block until the subscription has something to read or the listener is nudged.

        False when LISTEN_STEP passed with neither. With nothing subscribed,
        only a nudge counts (there is nothing to read, and nothing to ping).
        """
        assert self._nudge is not None
        watched = [self._nudge.reader]
        if held:
            sock = getattr(pubsub.connection, "_sock", None)
            if sock is None:
                raise ConnectionError("the subscription's connection is closed")
            watched.append(sock)
        ready, _, _ = select.select(watched, [], [], LISTEN_STEP)
        if self._nudge.reader in ready:
            self._nudge.drain()
        return bool(ready)

    def _listen(self) -> None:
        # No silent reconnects inside redis-py: a lost subscription must come
        # back here, which subscribes again and wakes every waiter.
        client: Any = None
        try:
            while not self._closed.is_set():
                if client is None:  # a cluster client connects as it is made: in the loop
                    client = self._subscriber()
                    if client is None:
                        continue
                pubsub = client.pubsub()
                self._pubsub = pubsub
                try:
                    self._serve(pubsub)
                except Exception as exc:  # whatever broke it, the subscription is made again
                    if self._closed.is_set():
                        return
                    self.subscribed.clear()
                    self.reconnects += 1
                    log.warning("decision subscription lost, reconnecting: %s", exc)
                    self._wake()  # re-read now: a wake may have been missed
                    self._closed.wait(self._backoff)
                    self._backoff = min(self._backoff * 2, 2.0)
                finally:
                    with contextlib.suppress(Exception):  # it is gone either way
                        pubsub.close()
        finally:
            if client is not None:
                with contextlib.suppress(Exception):
                    disconnect(client)

    def _serve(self, pubsub: Any) -> None:
        """Keep one connection's subscriptions to what is waited on; wake on what it hears."""
        held: set[str] = set()  # the channels asked for on this connection
        beat = Heartbeat()
        while not self._closed.is_set():
            with self._lock:
                add, drop = self._interest.plan(held)
            if add:
                pubsub.subscribe(*add)
                held.update(add)
            if drop:
                pubsub.unsubscribe(*drop)
                held.difference_update(drop)
            message = pubsub.get_message(timeout=0) if held else None
            if message is None:
                if not self._ready(pubsub, held):
                    if not held:
                        beat.heard()  # nothing to hear: nothing is late
                    elif beat.lost():
                        raise SubscriptionLost(f"no answer for {2 * KEEPALIVE:.0f} s")
                    elif beat.due():
                        pubsub.ping()
                        beat.pinged()
                continue
            beat.heard()
            kind = message.get("type")
            if kind == "subscribe":
                channel = text(message.get("channel"))
                if channel in held:
                    self.subscribed.set()
                    self._wake(channel=channel)  # anything published before: caught on re-read
                self._backoff = 0.05
            elif kind == "message":
                self._wake(text(message.get("data")), text(message.get("channel")))

    def close(self) -> None:
        """Stop listening (the waiting threads fall back to re-reading every RECHECK s)."""
        self._closed.set()
        nudge = self._nudge
        if nudge is not None:
            nudge.poke()  # ends the listener's select
        pubsub = self._pubsub
        if pubsub is not None:
            with contextlib.suppress(Exception):
                pubsub.close()  # ends a blocking command of the listener
        self._wake()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(2)
            if nudge is not None and not thread.is_alive():
                nudge.close()
