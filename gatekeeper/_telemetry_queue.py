"""Gauges read from the store when Prometheus scrapes: the queue, the audit sealer, the store.

What an agent writes is hostile, and an agent's Redis user writes its own
requests and their indexes (and may add any name to the agents registry). So
a scrape of a Redis store never parses a request: it reads the indexes'
counts and scores only, each agent's in its own keys, and a reply one agent
garbled (a wrong key type, junk members) costs that agent its own numbers
and nobody else's. What one scrape costs is bounded whatever the registry
holds (see :class:`RedisQueueGauges`); docs/observability.md says what an
agent can and cannot falsify.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._telemetry import _REGISTRIES_LOCK, Telemetry

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from ._gate import Gatekeeper
    from .store import Store

__all__ = [
    "CHECKS_PER_SCRAPE",
    "OLDEST_LOOKED_AT",
    "SCRAPE_TIMEOUT",
    "QueueCollector",
    "RedisQueueGauges",
    "sealer_backlog",
    "serve_metrics",
]

log = logging.getLogger("gatekeeper.telemetry")

#: Registry names a scrape checks for keys, at most; the others wait their turn.
CHECKS_PER_SCRAPE = 40
#: Of each agent's oldest pending index entries, how many a scrape looks at for a live one.
OLDEST_LOOKED_AT = 16
#: Seconds a scrape's reads of Redis may take in all (one try each, no retries).
SCRAPE_TIMEOUT = 2.0

_RISKS = ("critical", "high", "medium", "low")

_HELP = {
    "gatekeeper_pending_requests": "Requests waiting for a decision now",
    "gatekeeper_oldest_pending_age_seconds": (
        "Seconds the oldest live pending request has waited (0 when none waits)"
    ),
    "gatekeeper_audit_sealer_backlog": "Audit drafts written but not yet sealed",
    "gatekeeper_registered_agents": "Names in the store's agents registry",
    "gatekeeper_store_up": "1 when this scrape read the store, 0 when it could not",
}


@dataclass
class Gauges:
    """What one scrape read (None: that gauge could not be read)."""

    pending: int | None = None
    oldest_age: float | None = None
    backlog: int | None = None
    registered: int | None = None
    up: bool = True


class QueueCollector:
    """The store's gauges, read at scrape time: never fails the scrape.

    ``gatekeeper_pending_requests``, ``gatekeeper_oldest_pending_age_seconds``,
    ``gatekeeper_audit_sealer_backlog``, ``gatekeeper_registered_agents``, and
    ``gatekeeper_store_up`` (0 when a read failed: the gauges it would have
    given are then left out of that scrape, and the alert on ``store_up``
    fires). A Redis store is read by :class:`RedisQueueGauges`.
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self._redis: RedisQueueGauges | None = None
        self._lock = threading.Lock()

    @property
    def store(self) -> Store:
        return self._store

    @store.setter
    def store(self, store: Store) -> None:
        with self._lock:
            if store is not self._store:
                self._store, self._redis = store, None

    def describe(self) -> list[Metric]:
        from prometheus_client.core import GaugeMetricFamily

        return [GaugeMetricFamily(name, text) for name, text in _HELP.items()]

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import GaugeMetricFamily

        gauges = self.read()
        values = {
            "gatekeeper_pending_requests": gauges.pending,
            "gatekeeper_oldest_pending_age_seconds": gauges.oldest_age,
            "gatekeeper_audit_sealer_backlog": gauges.backlog,
            "gatekeeper_registered_agents": gauges.registered,
            "gatekeeper_store_up": 1 if gauges.up else 0,
        }
        for name, value in values.items():
            if value is not None:
                yield GaugeMetricFamily(name, _HELP[name], value=value)

    def read(self) -> Gauges:
        """The gauges now; a read that fails is logged and leaves its gauge out."""
        with self._lock:
            store = self._store
            if _is_redis(store):
                if self._redis is None:
                    self._redis = RedisQueueGauges(store)
                try:
                    return self._redis.read()
                except Exception as exc:  # down, slow, or answering nonsense
                    _failed("the queue gauges", exc)
                    return Gauges(up=False)
        return _generic(store)


def _is_redis(store: object) -> bool:
    module = sys.modules.get("gatekeeper.store._redis")
    return module is not None and isinstance(store, module.RedisStore)


def _failed(what: str, exc: BaseException) -> None:
    log.warning("metrics: could not read %s from the store: %s", what, type(exc).__name__)


def _generic(store: Store) -> Gauges:
    """Any other store (in this process: nothing in it is an agent's JSON), read one gauge
    at a time."""
    out = Gauges()
    try:
        _, out.pending = store.queue(limit=0)
        oldest = store.pending(limit=1)
        age = (store_now(store) - oldest[0].created_at).total_seconds() if oldest else 0.0
        out.oldest_age = max(age, 0.0)
    except Exception as exc:
        _failed("the queue", exc)
        out.pending, out.oldest_age, out.up = None, None, False
    try:
        out.backlog = sealer_backlog(store)
    except Exception as exc:
        _failed("the sealer backlog", exc)
        out.up = False
    counted = getattr(store, "registered_agents", None)
    if callable(counted):
        try:
            out.registered = int(counted())
        except Exception as exc:
            _failed("the agents registry", exc)
            out.up = False
    return out


class RedisQueueGauges:
    """The gauges of a Redis store, in at most four pipelined round trips a scrape.

    Only agents whose keys hold something are read: names in the registry
    are checked in turn, :data:`CHECKS_PER_SCRAPE` a scrape (one ``EXISTS``
    each, over the agent's pending indexes and journals), and an agent found
    with keys is read every scrape until a read finds it has none. So a
    scrape sends at most ``3 + CHECKS_PER_SCRAPE + 11 × (agents with
    pending requests or unsealed drafts)`` commands, whatever names were
    added to the registry; with more than :data:`CHECKS_PER_SCRAPE` names
    registered, an agent that had nothing is seen within ``registered /
    CHECKS_PER_SCRAPE`` scrapes of its first request.

    Per agent: its live pending requests (``ZCOUNT`` of each per-risk index,
    scored by expiry, from now), its oldest live one (the first
    :data:`OLDEST_LOOKED_AT` entries of its ``pending`` index, by creation,
    kept only if a per-risk index still has them unexpired), and its
    journals' lengths. An agent's user writes those indexes: it can inflate
    or falsify its own count and age, never another agent's.

    Reads go through a client of their own, one try each: a reply slower than
    :data:`SCRAPE_TIMEOUT` seconds fails them, and no round trip starts past
    it (so a scrape waits about twice that at most). A Redis that is down or slow makes
    the scrape say ``gatekeeper_store_up 0``, not wait out the store's retries.
    """

    def __init__(self, store: Any) -> None:
        self.store = store
        self.keys = store.keys
        self._client: Any = None
        self._cursor = 0  # where the registry's SSCAN goes on
        self._to_check: deque[str] = deque()
        self._tracked: set[str] = set()  # agents whose keys held something when last read

    def _pipeline(self, commands: list[tuple[Any, ...]], deadline: float) -> list[Any]:
        """One round trip; a command's error reply is in its place, not raised."""
        if time.monotonic() > deadline:
            raise TimeoutError("the scrape's reads took too long")
        if self._client is None:
            self._client = self.store.endpoint.client(
                max_connections=2, socket_timeout=SCRAPE_TIMEOUT
            )
        pipe = self._client.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        replies: list[Any] = pipe.execute(raise_on_error=False)
        for reply in replies:  # the connection failed, not one agent's key
            if isinstance(reply, (ConnectionError, TimeoutError, OSError)) or _is_down(reply):
                raise reply
        return replies

    def read(self) -> Gauges:
        try:
            return self._read()
        except Exception:
            self._close()  # a connection in doubt is not used again
            raise

    def _close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):  # a broken client, dropped either way
                client.close()

    def _read(self) -> Gauges:
        deadline = time.monotonic() + SCRAPE_TIMEOUT
        now_ms = int(store_now(self.store).timestamp() * 1000)
        registered, backlog = self._registry(deadline)
        self._check(deadline)
        pending, journals, candidates = self._counts(now_ms, deadline)
        oldest_ms = self._oldest(candidates, now_ms, deadline)
        age = 0.0 if oldest_ms is None else max((now_ms - oldest_ms) / 1000.0, 0.0)
        return Gauges(
            pending=pending, oldest_age=age, backlog=backlog + journals, registered=registered
        )

    def _registry(self, deadline: float) -> tuple[int, int]:
        """Round trip 1: the registry's size, the deciders' journal, the next names to check."""
        from .store._redis_ops import agent_names

        k = self.keys
        first: list[tuple[Any, ...]] = [("SCARD", k.agents), ("LLEN", k.journal)]
        scanning = len(self._to_check) < CHECKS_PER_SCRAPE
        if scanning:
            first.append(("SSCAN", k.agents, self._cursor, "COUNT", CHECKS_PER_SCRAPE))
        replies = self._pipeline(first, deadline)
        if scanning and isinstance(replies[2], (list, tuple)) and len(replies[2]) == 2:
            cursor, members = replies[2]
            self._cursor = _int(cursor)
            self._to_check.extend(n for n in agent_names(members) if n not in self._tracked)
        queued = len(getattr(self.store._sealer, "_queue", ()))  # this process's drafts
        return _int(replies[0]), _int(replies[1]) + queued

    def _check(self, deadline: float) -> None:
        """Round trip 2: which of the next names have keys (a name nobody uses has none)."""
        checking: list[str] = []
        while self._to_check and len(checking) < CHECKS_PER_SCRAPE:
            name = self._to_check.popleft()
            if name not in self._tracked:
                checking.append(name)
        if checking:
            k = self.keys
            found = self._pipeline(
                [("EXISTS", *_watched_keys(k.of(n))) for n in checking], deadline
            )
            self._tracked.update(n for n, c in zip(checking, found, strict=True) if _int(c) > 0)

    def _counts(
        self, now_ms: int, deadline: float
    ) -> tuple[int, int, dict[str, list[tuple[float, bytes]]]]:
        """Round trip 3: each tracked agent's live count, oldest entries and journals."""
        agents = sorted(self._tracked)
        live = f"({now_ms}"
        per = len(_RISKS) + 3
        cmds: list[tuple[Any, ...]] = []
        for name in agents:
            a = self.keys.of(name)
            cmds += [("ZCOUNT", a.pending_by_risk(r), live, "+inf") for r in _RISKS]
            cmds.append(("ZRANGE", a.pending, 0, OLDEST_LOOKED_AT - 1, "WITHSCORES"))
            cmds += [("LLEN", a.journal), ("LLEN", a.dec_journal)]
        replies = self._pipeline(cmds, deadline) if cmds else []
        pending = backlog = 0
        candidates: dict[str, list[tuple[float, bytes]]] = {}
        for i, name in enumerate(agents):
            got = replies[i * per : (i + 1) * per]
            count = sum(_int(c) for c in got[: len(_RISKS)])
            oldest = _scored(got[len(_RISKS)])
            journals = _int(got[-2]) + _int(got[-1])
            pending += count
            backlog += journals
            if count and oldest:
                candidates[name] = oldest
            elif not count and not oldest and not journals:
                self._tracked.discard(name)  # checked again in its turn
        return pending, backlog, candidates

    def _oldest(
        self, candidates: dict[str, list[tuple[float, bytes]]], now_ms: int, deadline: float
    ) -> float | None:
        """Round trip 4: which oldest entries are live (unexpired in a per-risk index);
        the creation time (ms) of the oldest of all agents' live ones."""
        names = sorted(candidates)
        cmds: list[tuple[Any, ...]] = []
        for name in names:
            a = self.keys.of(name)
            ids = [rid for _, rid in candidates[name]]
            cmds += [("ZMSCORE", a.pending_by_risk(r), *ids) for r in _RISKS]
        replies = self._pipeline(cmds, deadline) if cmds else []
        oldest: float | None = None
        for i, name in enumerate(names):
            entries = candidates[name]
            alive = [False] * len(entries)
            for reply in replies[i * len(_RISKS) : (i + 1) * len(_RISKS)]:
                if not isinstance(reply, (list, tuple)) or len(reply) != len(entries):
                    continue  # this agent garbled its index: its own numbers only
                for j, score in enumerate(reply):
                    if score is not None and _float(score) > now_ms:
                        alive[j] = True
            created = [at for (at, _), ok in zip(entries, alive, strict=True) if ok]
            # None of its first entries live, yet some request is: it waits behind them,
            # so it is no older than the last one looked at (an upper bound: the safe side).
            mine = min(created) if created else entries[-1][0]
            oldest = mine if oldest is None else min(oldest, mine)
        return oldest


def _watched_keys(a: Any) -> list[str]:
    return [*(a.pending_by_risk(r) for r in _RISKS), a.pending, a.journal, a.dec_journal]


def _is_down(reply: Any) -> bool:
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    return isinstance(reply, (RedisConnectionError, RedisTimeoutError))


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0  # an error reply, or a key of the wrong type: nothing counted


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("-inf")


def _scored(reply: Any) -> list[tuple[float, bytes]]:
    """``ZRANGE ... WITHSCORES`` as (score, member), oldest first; garbled replies as none."""
    if not isinstance(reply, (list, tuple)):
        return []
    if reply and isinstance(reply[0], (list, tuple)):
        pairs = [(m, s) for m, s in reply]
    else:
        pairs = list(zip(reply[::2], reply[1::2], strict=False))
    out = []
    for member, score in pairs:
        value = _float(score)
        if value != float("-inf") and isinstance(member, (bytes, str)):
            out.append((value, member if isinstance(member, bytes) else member.encode()))
    return out


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
