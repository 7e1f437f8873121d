"""``RedisStore``: the production store, shared by every agent and console process.

Every state change is one Lua script (``lua/*.lua``) that also appends its
audit draft to a journal list in the same atomic step; a sealer moves journal
drafts into the hash-chained stream (see :mod:`gatekeeper.audit`). Waiting
calls hold no connection: the blocking ones of a store share one pub/sub
subscription (:mod:`._wakes`), the async ones of each event loop another.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime as dt
import functools
import heapq
import json
import re
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar, cast
from urllib.parse import unquote

import pydantic
import redis.exceptions as rexc
from tenacity import (
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential,
)

from .._clock import Clock, SystemClock
from .._errors import (
    AgentHalted,
    GatekeeperError,
    HaltIncomplete,
    StoreError,
    StoreUnavailable,
    TransitionRefused,
)
from .._signing import DecisionKeys, SigningKey
from .._telemetry import store_error, store_retry
from .._votes import check_resume, sign_resume, sign_vote
from ..audit import (
    GENESIS,
    StoredEvent,
    Trimmed,
    chained_id,
    check_event_ids,
    draft,
    entry_chain,
    entry_order,
    parse_cursor,
)
from ..logs import bounded, get_logger, quoted
from ..models import (
    ApprovalRequest,
    Decision,
    Halt,
    HaltScope,
    RequestStatus,
    Risk,
    halt_key,
    utc,
)
from . import _redis_ops as ops
from . import _redis_queries as queries
from ._base import AsyncStore, Draft
from ._bounded import READ_FLOOR, Backoff, within
from ._endpoints import disconnect, parse_endpoint
from ._halts import ms, read_halt
from ._leases import LeaseKeeper
from ._sealer import Sealer
from ._wakes import RECHECK, Wakes

__all__ = ["Durability", "RedisStore", "translate_redis_error"]

T = TypeVar("T")
E = TypeVar("E", bound=BaseException)
log = get_logger("gatekeeper.store")

#: Seconds between an agent process's reads of the deployment-wide halts.
GLOBAL_HALTS_EVERY = 1.0


#: redis-py errors worth another try: the server may be back in a moment.
#: Beyond a lost connection or a timeout: a cluster that is down or being
#: resharded (``ClusterError``: ``CLUSTERDOWN``, ``MASTERDOWN``, too many
#: redirects; ``TRYAGAIN``, a slot no node covers yet, no node reachable) and
#: a node that is a replica now (``READONLY``, after a failover).
class ScriptsNotLoaded(rexc.RedisError):
    """The store's scripts are not on this Redis (a restart, a promoted replica) and this
    user may not load them: the deciding side reloads them within a second, so the call
    is tried again within the retry bound. The script did not run."""


def _not_loaded(exc: BaseException) -> bool:
    """A script run refused because the script is missing and this user can't load it."""
    return isinstance(exc, rexc.NoPermissionError) and "script" in str(exc).lower()


RETRYABLE = (
    ScriptsNotLoaded,
    rexc.ConnectionError,
    rexc.TimeoutError,
    rexc.TryAgainError,
    rexc.ReadOnlyError,
    rexc.ClusterError,
    rexc.SlotNotCoveredError,
    rexc.RedisClusterUnreachableError,
)

#: What redis-py raises: its errors, and its cluster client's own (not RedisErrors).
REDIS_ERRORS = (rexc.RedisError, rexc.RedisClusterException)

#: Refusals: Redis (or the cluster client) did not run the command.
_REFUSED = (
    ScriptsNotLoaded,
    rexc.BusyLoadingError,
    rexc.AuthenticationError,
    rexc.ClusterDownError,
    rexc.TryAgainError,
    rexc.ReadOnlyError,
    rexc.SlotNotCoveredError,
)


def _hold_refused(exc: StoreError, keys: ops.Keys, a: ops.AgentKeys) -> StoreError:
    """A clear error when an agent's ACL user, made by an earlier release, may not name
    ``where`` in the hold script (one node: the script claims the id there)."""
    if keys.cluster or "no permissions to access one of the keys" not in str(exc):
        return exc
    from ._acl import acl_user

    user = acl_user(keys.prefix, "agent", a.agent)
    return StoreError(
        f"Redis refused agent {a.agent!r}'s user the hold script with the shared key "
        f"{keys.where!r}: the user's rules predate this release, which claims a request's id "
        f"in that key within the hold. Add the rule without changing the password: "
        f'ACL SETUSER {user} "(+evalsha ~{a.tag}:* ~{keys.where})" '
        f"(or re-run `gatekeeper acl`, which also sets new passwords); redis said: {exc}"
    )


def _taken(rid: str) -> TransitionRefused:
    """Another agent's request has this id (claimed in ``where``)."""
    return TransitionRefused(
        f"request {rid} already exists", request_id=rid, status="", action="hold"
    )


def _unreachable_cluster(exc: BaseException) -> bool:
    """The cluster client could reach no seed node as it was made (a plain cluster exception)."""
    return isinstance(exc, rexc.RedisClusterException) and "cannot be connected" in str(exc)


def _cause(exc: BaseException) -> BaseException:
    """The error under a cluster client's "cannot be connected" (the last node's), else ``exc``."""
    inner = exc.__cause__ or exc.__context__
    return inner if _unreachable_cluster(exc) and inner is not None else exc


def _retryable(exc: BaseException) -> bool:
    if isinstance(_cause(exc), (rexc.AuthenticationError, rexc.NoPermissionError)):
        return False
    return isinstance(exc, RETRYABLE) or _unreachable_cluster(exc)


def _unsent(exc: BaseException) -> bool:
    """Whether ``exc`` shows the command never reached Redis (or Redis did not run it).

    redis-py says so only in words: a connection that could not be made
    ("Error 111 connecting to...", "Timeout connecting to server"), none free
    in the pool, or a server still loading its data (it refuses every
    command), or one of the refusals of :data:`_REFUSED` (a cluster that is
    down, a replica that refuses writes). Anything else — above all a read
    that timed out — may have come after Redis received the command, and ran
    it. (The cluster client is made to try once, so its error is the try's.)
    """
    if isinstance(exc, rexc.RedisClusterException):
        # The cluster client's own: it may wrap the try's error (a read that timed
        # out after the command ran, re-raised as "unreachable"): judged by that.
        cause = exc.__cause__
        return _unsent(cause) if cause is not None else _unreachable_cluster(exc)
    if isinstance(exc, _REFUSED):
        return True
    said = str(exc)
    return any(
        words in said
        for words in (
            "connecting to",
            "Timeout connecting",
            "No connection available",
            "Too many connections",
        )
    )


#: redis-py's repr of a client, as a Sentinel error names each sentinel it asked.
_CLIENT_REPR = re.compile(
    r"<redis\.(?:asyncio\.)?client\.Redis\(.*?host=([^,]*),port=(\d+),.*?\)>\)>\)>"
)


def plain(exc: BaseException) -> str:
    """What ``exc`` says, with redis-py's long client reprs cut to ``host:port``."""
    return _CLIENT_REPR.sub(r"sentinel \1:\2", str(exc)) or type(exc).__name__


def translate_redis_error(
    exc: BaseException, tries: Sequence[BaseException] = ()
) -> GatekeeperError:
    """The gatekeeper error for a redis-py error (the store is where they enter).

    A :class:`StoreUnavailable` says in ``context["applied"]`` whether the
    command may have run after all: ``"no"`` when no try of it (``tries``,
    else ``exc`` alone) can have reached Redis, ``"unknown"`` otherwise.
    """
    applied = "no" if all(_unsent(e) for e in (tries or [exc])) else "unknown"
    if isinstance(_cause(exc), rexc.AuthenticationError):
        return StoreUnavailable(f"Redis refused the credentials: {_cause(exc)}", applied="no")
    if _unreachable_cluster(exc) and isinstance(_cause(exc), rexc.NoPermissionError):
        return StoreError(f"Redis refused this user the cluster's layout: {_cause(exc)}")
    if _unreachable_cluster(exc):
        return StoreUnavailable(f"Redis is unavailable: {plain(exc)}", applied=applied)
    if isinstance(exc, RETRYABLE):
        said = plain(exc)
        return StoreUnavailable(f"Redis is unavailable: {said}", applied=applied)
    if isinstance(exc, rexc.OutOfMemoryError):  # full (maxmemory): refused, nothing written
        return StoreUnavailable(f"Redis is out of memory and refuses writes: {exc}", applied="no")
    if isinstance(exc, rexc.ResponseError):
        return StoreError(f"Redis refused a command: {exc}")
    return StoreError(f"Redis error: {exc}")


def _failed(error: E) -> E:
    """``error``, counted as a store command that failed for good (when metrics are on)."""
    store_error(error)
    return error


class RetryPolicy:
    """How long the store keeps trying a Redis that is down before failing closed."""

    def __init__(self, *, attempts: int = 5, within: float = 2.0, max_wait: float = 0.5) -> None:
        self.attempts = attempts
        self.within = within
        self.max_wait = max_wait

    def tenacity_kwargs(self) -> dict[str, Any]:
        return {
            "stop": stop_after_attempt(self.attempts) | stop_after_delay(self.within),
            "wait": wait_exponential(multiplier=0.05, max=self.max_wait),
            "retry": retry_if_exception(_retryable),
            "reraise": True,
        }


class Durability:
    """How many Redis replicas must hold a decision before it counts (``store.durability``).

    With ``replicas`` above 0 the deciding side, after each decision, waits
    (``WAIT``, at most ``timeout`` seconds) until that many replicas of the
    agent's master acknowledge it, and says so in the request it returns
    (``durable``); an approval is held back from the claim until then — or
    until the waiting agent sees the replicas have it, checking in the same
    way — so a failover can't lose an approval whose call ran. ``0`` (the
    default) waits for none, as a single node must.

    Example: ``RedisStore(url, durability=Durability(replicas=1, timeout=1.0))``.
    """

    def __init__(self, *, replicas: int = 0, timeout: float = 1.0) -> None:
        if not 0 <= replicas <= 16:
            raise ValueError(f"durability replicas must be 0 to 16, got {replicas!r}")
        if not 0 < timeout <= 60:
            raise ValueError(f"durability timeout must be above 0 s, at most 60 s, got {timeout!r}")
        self.replicas = replicas
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"Durability(replicas={self.replicas}, timeout={self.timeout})"


class RedisStore:
    """The store on Redis (or Redis Cluster): requests, halts, audit chain.

    Example::

        store = RedisStore("redis://localhost:6379/0", prefix="gatekeeper")
        gate = Gatekeeper(policy=policy, store=store)

    ``prefix`` names the deployment: its keys share the hash tag ``{prefix}``,
    each agent's the tag ``{prefix:agent}``. ``decision_keys`` (default: from
    ``GATEKEEPER_SIGNING_KEY`` / ``GATEKEEPER_TRUSTED_KEYS``) signs votes and
    resumes on the deciding side and verifies them before a release. Redis
    errors are retried within ``retry`` and then raised as
    :class:`~gatekeeper.StoreUnavailable`; nothing runs on that path.
    """

    def __init__(
        self,
        url: str = "redis://localhost:6379/0",
        *,
        prefix: str = "gatekeeper",
        clock: Clock | None = None,
        retry: RetryPolicy | None = None,
        max_connections: int = 32,
        socket_timeout: float = 10.0,
        seal_linger: float = 0.05,
        decision_keys: DecisionKeys | None = None,
        seal: bool | None = None,
        lease: float = 60.0,
        retention: float | None = 7 * 86400.0,
        durability: Durability | None = None,
        audit_chains: int = 1,
    ) -> None:
        if not 1 <= audit_chains <= MAX_CHAINS:
            raise ValueError(f"audit_chains must be 1 to {MAX_CHAINS}, got {audit_chains!r}")
        durability = durability or Durability()
        if durability.replicas and not durability.timeout < socket_timeout:
            raise ValueError(
                f"durability timeout ({durability.timeout} s) must be below the socket "
                f"timeout ({socket_timeout} s)"
            )
        if not lease > 0:
            raise ValueError(f"lease must be a number of seconds above zero, got {lease!r}")
        if retention is not None and not retention > 0:
            raise ValueError(f"retention must be seconds above zero or None, got {retention!r}")
        self.url = url
        #: Where the Redis is: one node, a cluster or a Sentinel service (see ``_endpoints``).
        self.endpoint = parse_endpoint(url)
        #: Seconds a waiting or running caller's lease lasts unless renewed.
        self.lease_ttl: float | None = float(lease)
        #: Seconds a request's record is kept after it ends (None: for good).
        self.retention = retention
        self.keys = ops.Keys(prefix)
        self.keys.cluster = self.endpoint.kind == "cluster"
        #: How many hash chains the audit log is sealed into: agents' events go to
        #: the chain :func:`~._redis_ops.chain_of` names, the deciders' own to chain 0.
        self.audit_chains = audit_chains
        self._chains_checked = False
        #: How many replicas must hold a decision before it counts (see :class:`Durability`).
        self.durability = durability
        #: The signing key (deciding side only) and the trusted public keys.
        self.decision_keys = decision_keys or DecisionKeys.from_env()
        # Only the deciding side seals (agents can't write the chain); by
        # default a store that holds the signing key does.
        self.seals = self.decision_keys.can_decide if seal is None else seal
        self._where: dict[str, str] = {}  # request id -> agent, of requests seen here
        self._registered: set[str] = set()
        self._global_read: dict[str, float] = {}  # agent -> when {prefix}:halts was last read
        self._seen_halts: dict[str, dict[str, int]] = {}  # agent -> halt field -> halt at (ms)
        self.clock = clock or SystemClock()
        # Without an injected clock, expiry is judged by Redis's own clock (one
        # clock for every process); an injected one (tests) is sent along.
        self._server_time = clock is None
        self.retry = retry or RetryPolicy()
        self._max_connections = max_connections
        self._socket_timeout = socket_timeout
        # Blocking callers are threads, each holding a connection only while a
        # command runs (waiting threads hold none: see _wakes.py). The async
        # face caps its pool (per event loop) at the same number.
        # A cluster client asks the seed nodes for the cluster's layout as it is
        # made; a cluster that is down or failing over is tried within the bound.
        try:
            for attempt in Retrying(**self.retry.tenacity_kwargs()):
                with attempt:
                    self.client: Any = self.endpoint.client(
                        max_connections=max_connections, socket_timeout=socket_timeout
                    )
        except REDIS_ERRORS as exc:
            raise translate_redis_error(exc) from exc
        self._wakes = Wakes(self.endpoint, socket_timeout=socket_timeout)
        self._scripts = {
            name: self.client.register_script(src) for name, src in ops.SCRIPTS.items()
        }
        self._sealer = Sealer(self, seal_linger)
        self._leases = LeaseKeeper(self._renew_for_keeper, float(lease))
        self._scripts_checked = -1e9
        self._aio: AsyncStore | None = None
        _OPEN.add(self)

    def __repr__(self) -> str:
        return f"RedisStore({self.endpoint.shown!r}, prefix={self.keys.prefix!r})"  # no password

    @property
    def aio(self) -> AsyncStore:
        if self._aio is None:
            from ._redis_async import AsyncRedisStore

            self._aio = AsyncRedisStore(self)
        return self._aio

    # -- plumbing ---------------------------------------------------------------
    def _call(self, fn: Callable[[], T]) -> T:
        tries: list[BaseException] = []

        def once() -> T:
            try:
                return fn()
            except REDIS_ERRORS as exc:
                tries.append(exc)
                raise

        try:
            return once()  # the common case, without building a retry loop
        except REDIS_ERRORS as exc:
            if not _retryable(exc):
                raise _failed(translate_redis_error(exc, tries)) from exc
        try:
            for attempt in Retrying(**self.retry.tenacity_kwargs()):
                with attempt:
                    store_retry()
                    return once()
        except REDIS_ERRORS as exc:
            raise _failed(translate_redis_error(exc, tries)) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _run(self, op: ops.Op[T]) -> T:
        script = self._scripts[op.script]

        def run() -> Any:
            try:
                return script(keys=op.keys, args=op.args)
            except rexc.NoPermissionError as exc:
                if _not_loaded(exc):  # tried again: the deciders reload them
                    raise ScriptsNotLoaded(str(exc)) from exc
                raise

        try:
            reply = self._call(run)
        except StoreError as exc:
            raise _scripts_missing(exc) from exc.__cause__
        return op.parse(reply)

    def load_scripts(self) -> None:
        """Load the store's Lua scripts into Redis (the deciding side does; agents can't).

        ``gatekeeper serve`` and every deciding store's sealer keep them
        loaded, also after Redis restarts: an agent's ACL user may only run
        them.
        """

        def load() -> Any:
            if self.endpoint.kind == "cluster":  # each to every master (no pipelines of these)
                return [self.client.script_load(source) for source in ops.SCRIPTS.values()]
            pipe = self.client.pipeline(transaction=False)
            for source in ops.SCRIPTS.values():
                pipe.script_load(source)
            return pipe.execute()

        self._call(load)
        self._scripts_checked = time.monotonic()

    def keep_scripts_loaded(self) -> None:
        """Reload the scripts if Redis lost them (a restart, a promoted replica); checked at
        most every second."""
        if time.monotonic() - self._scripts_checked < 1.0:
            return
        shas = [script.sha for script in self._scripts.values()]
        present = self._call(lambda: self.client.script_exists(*shas))
        if not all(present):
            self.load_scripts()
        self._scripts_checked = time.monotonic()

    def _now_ms(self) -> int | str:
        return "" if self._server_time else ms(self.clock.now())

    def _read(self, flow: queries.Flow[T]) -> T:
        """Drive a query flow: each batch it yields is one pipeline round trip."""

        def execute(batch: list[queries.Command]) -> list[Any]:
            pipe = self.client.pipeline(transaction=False)
            for command in batch:
                pipe.execute_command(*command)
            replies: list[Any] = pipe.execute()
            return replies

        try:
            batch = next(flow)
            while True:
                batch = flow.send(self._call(functools.partial(execute, batch)))
        except StopIteration as done:
            return cast(T, done.value)

    def _changed(self, result: T) -> T:
        self._sealer.kick()
        return result

    # -- agents and where their requests live ----------------------------------------
    def _agent_keys(self, request_id: str) -> ops.AgentKeys:
        agent = self._where.get(request_id)
        if agent is None:
            raw = self._call(lambda: self.client.hget(self.keys.where, request_id))
            if raw is None:
                from .._errors import RequestNotFound

                raise RequestNotFound(request_id)
            agent = ops.text(raw)
            self._remember_where(request_id, agent)
        return self.keys.of(agent)

    def _remember_where(self, request_id: str, agent: str) -> None:
        if len(self._where) > 100_000:
            self._where.clear()
        self._where[request_id] = agent

    def _ensure(self, agent: str) -> ops.AgentKeys:
        """The agent's keys, once it is in the registry with the deployment-wide halts.

        The halts of everything and of sessions are also read again at most
        once a second (``GLOBAL_HALTS_EVERY``) and copied to the agent's own:
        a halt of everything reaches every working agent within about a
        second, however long the deciders' fan-out over the registry takes.
        """
        a = self.keys.of(agent)
        if agent not in self._registered:
            halts = self._run(ops.register(self.keys, agent))
            if halts:
                self._run(ops.copy_halts(a, halts))
            self._registered.add(agent)
            self._global_read[agent] = time.monotonic()
        elif time.monotonic() - self._global_read.get(agent, 0.0) > GLOBAL_HALTS_EVERY:
            self._global_read[agent] = time.monotonic()
            found = self._call(lambda: self.client.hgetall(self.keys.halts))
            if found:
                pairs = [(ops.text(f), ops.text(v)) for f, v in found.items()]
                self._run(ops.copy_halts(a, pairs))
        return a

    def _halted_here(self, agent: str, exc: AgentHalted) -> None:
        halt = getattr(exc, "halt", None)
        if halt is not None:
            self._seen_halts.setdefault(agent, {})[halt.key] = ms(halt.at)

    def _check_lifted(self, a: ops.AgentKeys, session_id: str | None) -> None:
        """A halt this process saw must have been lifted by a signed resume."""
        seen = self._seen_halts.get(a.agent)
        if not seen:
            return
        fields = [f for f in seen if f in ("all", f"agent:{a.agent}", f"session:{session_id}")]
        if not fields:
            return

        def read() -> list[Any]:
            pipe = self.client.pipeline(transaction=False)
            pipe.hmget(a.halts, *fields)
            pipe.hmget(a.resumes, *fields)
            replies: list[Any] = pipe.execute()
            return replies

        halts, resumes = self._call(read)
        for field, halt, resume in zip(fields, halts, resumes, strict=True):
            if halt is not None:
                continue  # still halted: the script refuses as usual
            why = check_resume(self.decision_keys.trusted, field, seen[field], resume)
            if why is None:
                del seen[field]
                continue
            log.error(
                "halt %s of agent %s lifted without a valid resume: %s", field, quoted(a.agent), why
            )
            self.record_soon(
                [
                    draft(
                        "request.tampering",
                        at_ms=ms(self.clock.now()),
                        actor=f"agent:{a.agent}",
                        agent=a.agent,
                        session_id=session_id,
                        data={"halt": field, "problem": why},
                    )
                ]
            )
            raise AgentHalted(
                f"Halted ({field}): the halt was lifted without a signed resume ({why}); "
                "still halted until a person resumes it",
                scope=field,
            )

    # -- hot path -----------------------------------------------------------------
    def admit(
        self,
        event: Draft,
        *,
        agent: str,
        session_id: str,
        plan: Mapping[str, Any] | None = None,
        verdict: str = "allow",
    ) -> list[dict[str, Any]]:
        check_event_ids([event])
        a = self._ensure(agent)
        self._check_lifted(a, session_id)
        op = ops.admit(self.keys, a, event, session_id, plan, verdict, self._now_ms())
        try:
            hits = self._run(op)
        except AgentHalted as exc:
            self._halted_here(agent, exc)
            raise
        if not hits:
            self._sealer.kick()
        return hits

    def behaviour_usage(self) -> list[tuple[str, str, list[tuple[int, float]]]]:
        """Limit entries by key (``gatekeeper limits``): ``(agent or "*", key, entries)``.

        Each entry is ``(ms, amount)``: when the call was counted (a concurrency
        slot: until when it is held) and by how much. Found with ``SCAN``.
        """
        prefix = self.keys.prefix
        out: list[tuple[str, str, list[tuple[int, float]]]] = []
        client = self.client

        def scan(pattern: str) -> list[Any]:
            return sorted(client.scan_iter(match=pattern, count=500))

        def read(name: str) -> list[tuple[bytes, float]]:
            return cast("list[tuple[bytes, float]]", client.zrange(name, 0, -1, withscores=True))

        for pattern in (f"{{{prefix}:*}}:bhv:lim:*", f"{{{prefix}}}:bhv:lim:*"):
            for raw in self._call(functools.partial(scan, pattern)):
                name = ops.text(raw)
                tag, _, rest = name.partition("}:bhv:")
                agent = "*" if tag == f"{{{prefix}" else unquote(tag[len(prefix) + 2 :])
                entries = []
                for member, score in self._call(functools.partial(read, name)):
                    text = ops.text(member)
                    amount = float(text.rpartition("|")[2]) if "|" in text else 1.0
                    entries.append((int(score), amount))
                if entries:
                    out.append((agent, rest, sorted(entries)))
        return out

    def known_values(self) -> list[tuple[str, str, str, dict[str, Any]]]:
        """What each agent has done that a novelty rule watches (``gatekeeper known``).

        ``(agent, key, digest, {"s": shown, "at": ms, "c": call id})``, found with ``SCAN``.
        """
        prefix = self.keys.prefix
        client = self.client

        def scan() -> list[Any]:
            return sorted(client.scan_iter(match=f"{{{prefix}:*}}:bhv:new:*", count=500))

        def read(name: str) -> dict[bytes, bytes]:
            return cast("dict[bytes, bytes]", client.hgetall(name))

        out: list[tuple[str, str, str, dict[str, Any]]] = []
        for raw in self._call(scan):
            name = ops.text(raw)
            tag, _, key = name.partition("}:bhv:")
            agent = unquote(tag[len(prefix) + 2 :])
            for digest, entry in sorted(self._call(functools.partial(read, name)).items()):
                try:
                    value = json.loads(entry)
                except ValueError:
                    continue
                if isinstance(value, dict):
                    out.append((agent, key, ops.text(digest), value))
        return out

    def forget_known(self, agent: str, key: str, digest: str) -> bool:
        """Make a known value new again for ``agent`` (its next call asks a person)."""
        name = f"{self.keys.of(agent).tag}:bhv:{key}"
        return bool(self._call(lambda: self.client.hdel(name, digest)))

    def observe(
        self,
        plan: Mapping[str, Any],
        *,
        agent: str,
        mode: str = "attempt",
        request_id: str | None = None,
    ) -> list[dict[str, Any]]:
        a = self._ensure(agent)
        return self._run(ops.observe(self.keys, a, plan, mode, self._now_ms(), request_id or ""))

    def _journal_of(self, event: Draft) -> str:
        agent = event.get("agent")
        return self.keys.of(agent).journal if isinstance(agent, str) else self.keys.journal

    def record(self, events: Sequence[Draft]) -> None:
        if not events:
            return
        check_event_ids(events)
        by_journal: dict[str, list[bytes]] = {}
        for e in events:
            by_journal.setdefault(self._journal_of(e), []).append(ops.journal_entry(e))
        for journal, payload in by_journal.items():
            self._run(ops.jpush(journal, payload))
        self._sealer.kick()

    def record_soon(self, events: Sequence[Draft]) -> None:
        check_event_ids(events)  # refused now, to the caller, not later in the sealer
        self._sealer.enqueue(events)

    def flush(self) -> None:
        self._sealer.flush()

    # -- requests -------------------------------------------------------------------
    def hold(
        self, request: ApprovalRequest, event: Draft, plan: Mapping[str, Any] | None = None
    ) -> ApprovalRequest:
        check_event_ids([event])
        agent = request.call.agent
        a = self._ensure(agent)
        self._check_lifted(a, request.call.session_id)
        rid = request.id
        if self.keys.cluster:  # `where` is in another slot; on one node the script claims it
            taken = self._call(lambda: self.client.hsetnx(self.keys.where, rid, agent))
            if not taken:
                owner = self._call(lambda: self.client.hget(self.keys.where, rid))
                if owner is None or ops.text(owner) != agent:
                    raise _taken(rid)
        try:
            held = self._changed(
                self._run(
                    ops.hold(self.keys, a, request, event, self._now_ms(), self._retain_ms, plan)
                )
            )
        except AgentHalted as exc:
            self._halted_here(agent, exc)
            raise
        except StoreError as exc:
            told = _hold_refused(exc, self.keys, a)
            if told is exc:
                raise
            raise told from exc
        self._remember_where(held, agent)  # only now: the script may refuse the id
        if held == rid:
            return request
        return self.get(held)  # re-attached to the request this call made before

    @property
    def _retain_ms(self) -> int | None:
        return None if self.retention is None else int(self.retention * 1000)

    # -- leases ------------------------------------------------------------------------
    def renew(self, request_ids: Sequence[str], *, ttl: float) -> dict[str, RequestStatus]:
        """Extend each live request's lease to ``ttl`` s from now; their statuses after."""
        by_agent: dict[str, list[str]] = {}
        for rid in request_ids:
            try:
                by_agent.setdefault(self._agent_keys(rid).agent, []).append(rid)
            except GatekeeperError:
                continue
        out: dict[str, RequestStatus] = {}
        for agent, ids in by_agent.items():
            a = self.keys.of(agent)
            found = self._run(ops.renew(self.keys, a, ids, self._now_ms(), int(ttl * 1000)))
            out.update({rid: RequestStatus(status) for rid, status in found.items()})
        if out:
            self._sealer.kick()
        return out

    def _renew_for_keeper(self, request_ids: Sequence[str], ttl: float) -> object:
        return self.renew(request_ids, ttl=ttl)

    def keep(self, request_id: str) -> None:
        """Renew ``request_id``'s lease from this process's lease thread until :meth:`drop`."""
        self._leases.keep(request_id)

    def drop(self, request_id: str) -> None:
        self._leases.drop(request_id)

    def close_unclaimed_soon(self, request_id: str, *, token: str, why: str) -> None:
        """Close a request whose claim went unanswered, from the lease thread, until it lands.

        The claim may have reached Redis or not: if it did, the request is
        ``executing`` under ``token`` with nothing running it, and is finished
        as failed (``why``); if not, it is still ``approved`` and is refused
        (closed without running). Either way it never runs, and no person is
        asked to look into a call that never started.
        """

        def close() -> None:
            try:
                self.finish(request_id, ok=False, outcome=why, token=token)
            except TransitionRefused as exc:
                if exc.context.get("status") == "approved":
                    self.refuse(request_id, why=why)

        self._leases.later(request_id, close)

    def finish_soon(
        self, request_id: str, *, ok: bool, outcome: str | None, token: str | None = None
    ) -> None:
        """Record a finish that failed just now from the lease thread, retried until it lands.

        The request keeps its lease meanwhile (it does not turn
        ``outcome_unknown`` while this process lives); the claim's token
        makes the retries idempotent.
        """
        self._leases.later(
            request_id,
            lambda: self.finish(request_id, ok=ok, outcome=outcome, token=token),
        )

    def sweep(self, *, limit: int = 1000) -> list[ApprovalRequest]:
        """Move every request whose lease or expiry ran out (all agents); returns those changed.

        ``gatekeeper serve`` runs it every few seconds; ``gatekeeper sweep``
        runs it once. Transitions apply the same rule when they happen; the
        sweep is for requests nobody touches again (their caller died).
        """
        changed: list[ApprovalRequest] = []
        for agent in self._agents():
            a = self.keys.of(agent)
            try:  # one agent's unreadable records must not stop the sweep of the others
                found = self._run(ops.sweep(self.keys, a, self._now_ms(), limit))
            except StoreUnavailable:
                raise
            except GatekeeperError as exc:
                log.error(
                    "sweep: skipped agent %s, whose records can't be swept: %s", quoted(agent), exc
                )
                continue
            for rid in found:
                self._remember_where(rid, agent)
                try:
                    changed.append(self.get(rid))
                except (GatekeeperError, ValueError, KeyError, TypeError) as exc:
                    log.error(
                        "sweep: request %s of agent %s is unreadable: %s",
                        bounded(rid),
                        quoted(agent),
                        _unreadable(exc),
                    )
        if changed:
            self._sealer.kick()
        return changed

    def prune(self, *, batch: int = 500) -> int:
        """Drop what is left of requests whose record expired; how many were dropped.

        A request's record expires ``retention`` after it ends; its signed
        votes, its claim mark, its index entry and its ``where`` entry stay
        until this runs (``gatekeeper serve`` does, every ``audit.every``;
        ``gatekeeper sweep`` and ``gatekeeper audit archive`` once each). Looks only
        at requests created
        more than ``retention`` ago; does nothing when retention is None.
        """
        if self.retention is None:
            return 0
        before = ms(self.clock.now()) - int(self.retention * 1000)
        dropped = 0
        for agent in self._agents():
            a = self.keys.of(agent)
            offset = 0
            while True:
                seen, gone = self._run(ops.prune(a, before, offset, batch))
                if gone:
                    self._call(functools.partial(self.client.hdel, self.keys.where, *gone))
                    dropped += len(gone)
                offset += seen - len(gone)  # past the ones still there
                if seen < batch:
                    break
        return dropped

    def resolve(
        self, request_id: str, *, by: str, ran: bool, comment: str | None = None
    ) -> ApprovalRequest:
        """outcome_unknown -> executed | failed: a person says whether the tool ran."""
        a = self._agent_keys(request_id)
        return self._after(ops.resolve(self.keys, a, request_id, self._now_ms(), by, ran, comment))

    def get(self, request_id: str) -> ApprovalRequest:
        from .._errors import RequestNotFound

        a = self._agent_keys(request_id)

        def read() -> list[Any]:
            pipe = self.client.pipeline(transaction=False)
            pipe.hgetall(a.req(request_id))
            pipe.lrange(a.votes(request_id), 0, -1)
            pipe.hget(a.flags, request_id)
            replies: list[Any] = pipe.execute()
            return replies

        fields, votes, flag = self._call(read)
        if not fields:
            raise RequestNotFound(request_id)
        return ops.request_from_hash(fields, votes, a.agent, flag)

    def pending(self, *, limit: int = 100, offset: int = 0) -> list[ApprovalRequest]:
        return self._read(queries.pending(self.keys, self.clock.now(), limit=limit, offset=offset))

    def get_many(self, ids: Sequence[str]) -> list[ApprovalRequest]:
        """The requests with these ids, in order, in one round trip; unknown ids are skipped."""
        return self._read(queries.get_many(self.keys, ids))

    def queue(
        self,
        *,
        agent: str | None = None,
        tool: str | None = None,
        risk: Risk | str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[list[ApprovalRequest], int]:
        """Pending, unexpired requests, most urgent first, and the number matching in all.

        Reads the per-risk indexes ``{prefix}:pending:<risk>``; with ``agent`` or
        ``tool``, one HMGET on ``{prefix}:owners`` filters them before only the
        page's requests are fetched.
        """
        flow = queries.queue(
            self.keys,
            self.clock.now(),
            agent=agent,
            tool=tool,
            risk=risk,
            limit=limit,
            offset=offset,
        )
        return self._read(flow)

    def history(
        self,
        *,
        agent: str | None = None,
        tool: str | None = None,
        status: RequestStatus | str | None = None,
        approver: str | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[ApprovalRequest]:
        """Requests of any status, newest first, filtered (see :meth:`Store.history`).

        Looks at no more than the newest 10,000 requests created in
        ``[since, until)`` per call (``offset`` included), so a search that
        matches rarely can come back short; narrow it with ``since``/``until``.
        """
        flow = queries.history(
            self.keys,
            self.clock.now(),
            agent=agent,
            tool=tool,
            status=status,
            approver=approver,
            since=since,
            until=until,
            limit=limit,
            offset=offset,
        )
        return self._read(flow)

    def use_once(self, key: str, ttl: float) -> bool:
        """True the first time ``key`` is used within ``ttl`` seconds, in any process."""
        return self._run(ops.use_once(self.keys, key, ttl))

    def hit(self, key: str, window: float) -> int:
        """Count a hit on ``key``; the hits in its current ``window`` seconds, this one included."""
        return self._run(ops.hit(self.keys, key, window))

    def remember(self, key: str, value: str, ttl: float) -> None:
        """Set note ``key`` to ``value`` for ``ttl`` seconds, for every process (``SET ... PX``).

        Example: ``store.remember("slack:" + request.id, ref, 86400)``.
        """
        name, raw, px = ops.note_set(self.keys, key, value, ttl)
        self._call(lambda: self.client.set(name, raw, px=px))

    def recall(self, key: str) -> str | None:
        """The value of note ``key``; None if never set or past its ttl.

        Example: ``ref = store.recall("slack:" + request.id)``.
        """
        name = self.keys.note(key)
        return ops.note_value(self._call(lambda: self.client.get(name)))

    def decide(
        self,
        request_id: str,
        decision: Decision,
        *,
        args: Mapping[str, Any] | None = None,
        request: ApprovalRequest | None = None,
    ) -> ApprovalRequest:
        signer = self.decision_keys.signer()
        if request is not None and request.id == request_id:
            req = request  # read by the caller just now: one round trip fewer
        else:
            req = _read_before_writing(self.get, request_id)
        a = self.keys.of(req.call.agent)
        signed = sign_vote(signer, req, decision, args)
        replicas = self.durability.replicas
        op = ops.decide(self.keys, a, request_id, signed, self._now_ms(), args, replicas)
        after = self._after(op)
        if not replicas:
            return after
        durable = self.replicated(a, replicas, self.durability.timeout) >= replicas
        if durable and after.awaiting_replicas:
            try:  # it may run now; else the waiting agent confirms it (it checks too)
                after = self._after(ops.confirm(self.keys, a, request_id))
            except GatekeeperError as exc:
                log.warning("approval of request %s not confirmed here: %s", request_id, exc)
        return after.model_copy(update={"durable": durable})

    def replicated(self, a: ops.AgentKeys, replicas: int, timeout: float) -> int:
        """How many replicas of agent ``a``'s master have every write made there so far.

        ``WAIT`` counts the replicas that acknowledged the writes of the
        connection it is sent on, so it goes on one connection to the master
        of the agent's slot, right after a write of its own there (``INCR`` of
        ``idx:sync``): a replica has a master's writes in order, so one that
        has this write has every decision the master ran before it. Blocks at
        most ``timeout`` seconds; 0 when the master can't be asked (a failover
        under way): nothing is known to be on a replica then.
        """
        key = f"{a.tag}:idx:sync"
        wait_ms = max(int(timeout * 1000), 1)
        try:
            node: Any = self.client
            if self.endpoint.kind == "cluster":
                node = self.client.get_redis_connection(self.client.get_node_from_key(key))
            pipe = node.pipeline(transaction=False)
            pipe.execute_command("INCR", key)  # not incr(): redis-py sends INCRBY
            pipe.pexpire(key, 86_400_000)
            pipe.execute_command("WAIT", replicas, wait_ms)
            return int(pipe.execute()[-1])
        except REDIS_ERRORS as exc:
            log.warning(
                "could not ask Redis which replicas have agent %s's writes: %s",
                quoted(a.agent),
                exc,
            )
            return 0

    def _confirm(self, a: ops.AgentKeys, request_id: str, replicas: int, timeout: float) -> bool:
        """Let an approval waiting for ``replicas`` run once they have it; False if not yet."""
        if self.replicated(a, replicas, timeout) < replicas:
            return False
        try:
            self._after(ops.confirm(self.keys, a, request_id))
        except GatekeeperError as exc:  # not confirmed: it does not run yet
            log.warning("approval of request %s not confirmed: %s", request_id, exc)
            return False
        return True

    def _after(self, op: ops.Op[ApprovalRequest]) -> ApprovalRequest:
        try:
            return self._run(op)  # the script answers with the request after the step
        finally:
            self._sealer.kick()

    def journal_of(self, a: ops.AgentKeys) -> str:
        """Where this process journals cancellations, expiries and halts of agent ``a``.

        The deciding side writes them to the agent's decider-only journal, an
        agent's own process to its journal.
        """
        return a.dec_journal if self.decision_keys.can_decide else a.journal

    def expire(self, request_id: str) -> ApprovalRequest:
        a = self._agent_keys(request_id)
        op = ops.expire(self.keys, a, request_id, self._now_ms(), self.journal_of(a))
        return self._after(op)

    def cancel(self, request_id: str, *, by: str, reason: str | None = None) -> ApprovalRequest:
        a = self._agent_keys(request_id)
        journal = a.journal if by == f"agent:{a.agent}" else self.journal_of(a)
        op = ops.cancel(self.keys, a, request_id, self._now_ms(), by, reason, journal)
        return self._after(op)

    def refuse(self, request_id: str, *, why: str) -> ApprovalRequest:
        """approved -> failed without running: this process refused the release."""
        a = self._agent_keys(request_id)
        return self._after(ops.refuse(self.keys, a, request_id, self._now_ms(), why))

    def claim(
        self,
        request_id: str,
        *,
        args_digest: str,
        token: str | None = None,
        created_at: dt.datetime | None = None,
        plan: Mapping[str, Any] | None = None,
    ) -> ApprovalRequest:
        a = self._agent_keys(request_id)
        created = ms(created_at) if created_at is not None else None
        op = ops.claim(self.keys, a, request_id, self._now_ms(), args_digest, token, created, plan)
        try:
            return self._after(op)
        except AgentHalted as exc:
            self._halted_here(a.agent, exc)
            raise
        except TransitionRefused as exc:
            # Approved, not yet known to be on the replicas asked for: checked now
            # (the decider that would have may be gone), and claimed only once it is.
            replicas = getattr(exc, "awaiting_replicas", 0)
            if not replicas or not self._confirm(a, request_id, replicas, self.durability.timeout):
                raise
        return self._after(op)

    def finish(
        self, request_id: str, *, ok: bool, outcome: str | None, token: str | None = None
    ) -> ApprovalRequest:
        a = self._agent_keys(request_id)
        op = ops.finish(self.keys, a, request_id, self._now_ms(), ok, outcome, token)
        return self._after(op)

    def flag_tampering(self, request_id: str, why: str, event: Draft) -> None:
        """Mark ``request_id`` as a target of tampering and audit ``event`` with it."""
        check_event_ids([event])
        a = self._agent_keys(request_id)
        self._changed(self._run(ops.flag(self.keys, a, request_id, why, event)))

    def wait(self, request_id: str, timeout: float) -> ApprovalRequest:
        """The request once decided, or as last read when ``timeout`` seconds have passed.

        Returns by then whatever Redis does: every read is bounded by that
        deadline (see :mod:`._bounded`), and a read that fails (Redis
        restarting, frozen, a reply lost) is tried again, backing off, until
        then. Raises :class:`~gatekeeper.StoreUnavailable` only when no read
        has succeeded by the deadline.
        """
        deadline = time.monotonic() + max(timeout, 0.0)
        # Wake-ups come on the request's agent's channel: known here for a
        # request held by this process, else learnt from the first read.
        agent = self._where.get(request_id)
        woken = threading.Event() if agent is None else self._watch(request_id, agent)
        watching = agent is not None
        backoff = Backoff()
        try:
            while True:
                # Cleared before the read: a change published after it still wakes us.
                woken.clear()
                budget = max(deadline - time.monotonic(), READ_FLOOR)
                try:
                    req = within(budget, functools.partial(self.get, request_id))
                except StoreUnavailable:
                    if time.monotonic() >= deadline:
                        raise
                    woken.wait(min(deadline - time.monotonic(), backoff.next()))
                    continue
                backoff.reset()
                remaining = deadline - time.monotonic()
                if req.awaiting_replicas and remaining > 0:
                    # Approved, held until the replicas have it: look, then run it or wait on.
                    a = self.keys.of(req.call.agent)
                    timeout = min(self.durability.timeout, remaining)
                    if self._confirm(a, request_id, req.awaiting_replicas, timeout):
                        continue
                    woken.wait(min(deadline - time.monotonic(), RECHECK, 0.5))
                    continue
                if req.status.decided or remaining <= 0:
                    return req
                if not watching:  # watch first, then read again: nothing slips in between
                    woken = self._watch(request_id, self._where.get(request_id, req.call.agent))
                    watching = True
                    continue
                woken.wait(min(remaining, RECHECK))
        finally:
            if watching:
                self._wakes.unwatch(request_id, woken)

    def _watch(self, request_id: str, agent: str) -> threading.Event:
        return self._wakes.watch(request_id, self.keys.of(agent).channel)

    # -- kill switch -------------------------------------------------------------------
    def sealer_backlog(self) -> int:
        """Audit drafts not yet sealed: queued in this process, and in every journal.

        One pipelined round trip of ``LLEN`` per 1,000 journals (the deciders'
        and two per agent): what a scrape of ``/metrics`` costs.
        """
        k = self.keys
        journals = [k.journal]
        for name in self._agents():
            a = k.of(name)
            journals += [a.journal, a.dec_journal]
        total = len(self._sealer._queue)
        for start in range(0, len(journals), 1000):
            chunk = journals[start : start + 1000]

            def lengths(chunk: list[str] = chunk) -> list[Any]:
                pipe = self.client.pipeline(transaction=False)
                for key in chunk:
                    pipe.llen(key)
                replies: list[Any] = pipe.execute()
                return replies

            total += sum(int(n) for n in self._call(lengths))
        return total

    def _agents(self) -> list[str]:
        return ops.agent_names(self._call(lambda: self.client.smembers(self.keys.agents)))

    def halt(
        self,
        scope: HaltScope,
        target: str,
        *,
        by: str,
        reason: str | None = None,
        agent: str | None = None,
    ) -> list[str]:
        record, event = _halt_record(self.clock, scope, target, by, reason)
        now = self._now_ms()
        if scope is HaltScope.AGENT:
            a = self._ensure(target)
            op = ops.halt(self.keys, a, record, event, now, self.journal_of(a))
            return self._changed(self._run(op))
        if agent is not None and not self.decision_keys.can_decide:
            # An agent's own verdict: its ACL user writes only its own keys. It is
            # halted now; the sealer spreads the halt when it seals the event.
            a = self._ensure(agent)
            event["agent"] = agent
            return self._changed(self._run(ops.halt(self.keys, a, record, event, now, a.journal)))
        agents: list[str] = self._run(ops.halt_global(self.keys, record))
        self.record([event])
        cancelled: list[str] = []
        unreached: dict[str, GatekeeperError] = {}
        # Each agent's keys may sit on another shard: one that fails must not
        # stop the rest, and is tried once more after them.
        left = sorted(agents)
        for _ in range(2):
            unreached = {}
            for name in left:
                a = self.keys.of(name)
                op = ops.halt(self.keys, a, record, None, now, self.journal_of(a))
                try:
                    ids: list[str] = self._run(op)
                except GatekeeperError as exc:
                    unreached[name] = exc
                    continue
                cancelled.extend(ids)
            left = sorted(unreached)
            if not left:
                break
        self._changed(sorted(cancelled))
        if unreached:
            names = sorted(unreached)
            for name in names:
                log.error(
                    "halt %s could not reach agent %s: %s",
                    record.key,
                    quoted(name),
                    unreached[name],
                )
            shown = ", ".join(repr(n) for n in names[:10]) + (" ..." if len(names) > 10 else "")
            what = "everything" if scope is HaltScope.ALL else f"session {target!r}"
            raise HaltIncomplete(
                f"the halt of {what} is recorded, but could not be written to the keys of "
                f"{len(names)} agent(s) ({shown}; first error: {unreached[names[0]]}); "
                "they stop at their next call, or fail closed while their Redis shard is down, "
                "and their pending requests were not cancelled: halt again once it answers",
                cancelled=sorted(cancelled),
                unreached=names,
            )
        return sorted(cancelled)

    def resume(self, scope: HaltScope, target: str, *, by: str) -> bool:
        target = "*" if scope is HaltScope.ALL else target
        field = halt_key(scope, target)
        signer = self.decision_keys.signer()
        if scope is HaltScope.AGENT:
            a = self.keys.of(target)
            halt = self._call(lambda: self.client.hget(a.halts, field))
            signed = _signed_resume(signer, self.clock, field, by, halt)
            event = _resume_event(self.clock, scope, target, by, signed)
            return self._changed(self._run(ops.resume(a, field, signed, event)))
        halt = self._call(lambda: self.client.hget(self.keys.halts, field))
        signed = _signed_resume(signer, self.clock, field, by, halt)
        lifted = self._run(ops.resume_global(self.keys, field, signed))
        for agent in self._agents():
            lifted = self._run(ops.resume(self.keys.of(agent), field, signed, None)) or lifted
        if lifted:
            self.record([_resume_event(self.clock, scope, target, by, signed)])
        return self._changed(lifted)

    # -- grants (standing approvals, earned autonomy) --------------------------------------
    def grants_for(self, agent: str) -> tuple[dict[str, str], int | None]:
        """The agent's signed grants by id, and when its own side last demoted it (ms)."""
        a = self.keys.of(agent)

        def read() -> list[Any]:
            pipe = self.client.pipeline(transaction=False)
            pipe.hgetall(f"{a.tag}:grants")
            pipe.hget(f"{a.tag}:bhv:demoted", "*")
            replies: list[Any] = pipe.execute()
            return replies

        stored, demoted = self._call(read)
        grants = {ops.text(k): ops.text(v) for k, v in (stored or {}).items()}
        return grants, int(float(ops.text(demoted))) if demoted else None

    def put_grant(self, agent: str, grant_id: str, signed: str) -> None:
        """Keep a signed grant (the deciding side: an agent's user may not write grants)."""
        name = f"{self.keys.of(agent).tag}:grants"
        self._call(lambda: self.client.hset(name, grant_id, signed))

    def drop_grants(self, agent: str, grant_ids: Sequence[str] | None = None) -> list[str]:
        """Remove some (or all) of an agent's grants; returns the ids removed."""
        name = f"{self.keys.of(agent).tag}:grants"
        if grant_ids is None:
            grant_ids = [ops.text(k) for k in self._call(lambda: self.client.hkeys(name))]
        gone = []
        for gid in grant_ids:
            if self._call(lambda g=gid: self.client.hdel(name, g)):  # type: ignore[misc]
                gone.append(gid)
        return gone

    def all_grants(self) -> list[tuple[str, str, str]]:
        """Every agent's grants: ``(agent, id, signed)``, found with ``SCAN``."""
        prefix = self.keys.prefix
        client = self.client

        def scan() -> list[Any]:
            return sorted(client.scan_iter(match=f"{{{prefix}:*}}:grants", count=500))

        out: list[tuple[str, str, str]] = []
        for raw in self._call(scan):
            name = ops.text(raw)
            agent = unquote(name[len(prefix) + 2 : -len("}:grants")])
            stored = self._call(functools.partial(client.hgetall, name))
            out.extend((agent, ops.text(k), ops.text(v)) for k, v in sorted(stored.items()))
        return out

    def halts(self) -> list[Halt]:
        agents = self._agents()

        def read() -> list[Any]:
            pipe = self.client.pipeline(transaction=False)
            pipe.hgetall(self.keys.halts)
            for agent in agents:
                pipe.hgetall(self.keys.of(agent).halts)
            replies: list[Any] = pipe.execute()
            return replies

        found: dict[str, Halt] = {}
        for raw in self._call(read):
            for field, value in raw.items():
                halt = read_halt(ops.text(field), value)
                found.setdefault(halt.key, halt)
        return list(found.values())

    # -- audit ---------------------------------------------------------------------------
    def audit_entries(
        self, *, after: str | None = None, chain: int | None = None
    ) -> Iterator[StoredEvent]:
        """Sealed entries: every chain's, merged by when they were sealed, or ``chain``'s
        alone, after ``after`` (an entry id, or a cursor of :func:`~..audit.advance_cursor`)."""
        self.flush()
        self.check_chains()
        floor, positions = parse_cursor(after)
        chains = [chain] if chain is not None else list(range(self.audit_chains))
        if chain is not None and not 0 <= chain < self.audit_chains:
            raise ValueError(f"no audit chain {chain} (this store has {self.audit_chains})")
        starts = {c: _start_after(c, floor, positions) for c in chains}
        if len(chains) == 1:
            return self._chain_entries(chains[0], starts[chains[0]])
        return heapq.merge(
            *(self._chain_entries(c, starts[c]) for c in chains),
            key=lambda e: entry_order(e.entry_id),
        )

    def _chain_entries(self, c: int, start: str) -> Iterator[StoredEvent]:
        key = self.keys.chain(c).audit
        while True:

            def read(since: str = start) -> Any:
                return self.client.xrange(key, min=since, max="+", count=500)

            batch: list[Any] = self._call(read)
            for entry_id, fields in batch:
                eid = chained_id(c, entry_id.decode())
                yield StoredEvent(eid, fields.get(b"b", b""), fields.get(b"h", b"").decode())
            if len(batch) < 500:
                return
            start = f"({batch[-1][0].decode()}"

    def audit_page(self, *, before: str | None = None, limit: int = 50) -> list[StoredEvent]:
        """Sealed entries newest first, strictly older than entry id ``before``."""
        self.flush()
        self.check_chains()
        flow = queries.audit_page(self.keys, before=before, limit=limit, chains=self.audit_chains)
        return self._read(flow)

    def audit_head(self, chain: int = 0) -> tuple[int, str]:
        self.flush()
        key = self.keys.chain(chain).head
        head: list[Any] = self._call(lambda: self.client.hmget(key, "seq", "hash"))
        seq, hash_ = head
        return (int(seq), hash_.decode()) if seq else (0, GENESIS)

    def audit_anchors(self) -> list[tuple[str, str]]:
        found: list[Any] = self._call(lambda: self.client.xrange(self.keys.anchors, "-", "+"))
        return [(ops.text(eid), ops.text(fields.get(b"a", b""))) for eid, fields in found]

    def audit_base(self, chain: int = 0) -> Trimmed:
        fields = ("base_seq", "base_hash", "base_at")
        key = self.keys.chain(chain).head
        found: list[Any] = self._call(lambda: self.client.hmget(key, *fields))
        seq, hash_, at = found
        if not seq:
            return Trimmed(0, GENESIS, None)
        return Trimmed(int(seq), hash_.decode(), utc(int(at)) if at else None)

    def audit_trim(self, through: StoredEvent, *, at: dt.datetime) -> int:
        chain, stream_id = entry_chain(through.entry_id)
        seq = int(json.loads(through.body)["seq"])
        argv = [stream_id, seq, through.hash, ms(at)]
        script = self._scripts["audittrim"]
        ck = self.keys.chain(chain)
        dropped = int(self._call(lambda: script(keys=[ck.audit, ck.head], args=argv)))
        if dropped < 0:
            raise StoreError(
                f"audit entry {through.entry_id} (event #{seq}) is not in the log as archived: "
                "nothing trimmed"
            )
        return dropped

    @contextlib.contextmanager
    def archive_lock(self, *, hold: float = 3600.0, wait: float = 60.0) -> Iterator[None]:
        """Hold the deployment's archiving lock (``{prefix}:archiving``) for one run.

        Two archiving runs at once, on hosts sharing one archive directory,
        would write the same events twice; this keeps them apart where a file
        lock can't (redis-py's :class:`~redis.lock.Lock`: a token, released only
        by its holder, gone after ``hold`` seconds if the holder dies). Waits
        ``wait`` seconds for another run, then raises a StoreError.
        """
        lock = self.client.lock(
            f"{self.keys.tag}:archiving", timeout=hold, blocking_timeout=wait, thread_local=False
        )
        if not self._call(lock.acquire):
            raise StoreError(
                f"another audit archiving run of this deployment has held its lock for over "
                f"{wait:g} s (it lasts at most {hold:g} s): try again later"
            )
        try:
            yield
        finally:
            with contextlib.suppress(*REDIS_ERRORS):
                lock.release()

    def check_chains(self) -> None:
        """The deployment's number of audit chains is this store's (set on first use).

        Going from one chain to several keeps the history in chain 0; any
        other change would scatter the journals' places among the chains, and
        is refused: a StoreError saying what the deployment has.
        """
        if self._chains_checked:
            return
        found = self._call(lambda: self.client.get(self.keys.chains))
        if found is None and self.seals:  # the first to seal sets it
            self._call(lambda: self.client.set(self.keys.chains, self.audit_chains, nx=True))
            found = self._call(lambda: self.client.get(self.keys.chains))
        if found is not None and int(found) != self.audit_chains:
            if int(found) == 1 and self.audit_chains > 1 and self.seals:
                self._call(lambda: self.client.set(self.keys.chains, self.audit_chains))
            else:
                raise StoreError(
                    f"this deployment's audit log has {int(found)} chains, and this process "
                    f"was set up with {self.audit_chains} (store.audit_chains): they must be "
                    "the same everywhere; a deployment may go from 1 to more, never otherwise"
                )
        self._chains_checked = True

    def close(self) -> None:
        try:
            self._leases.close()
            self._sealer.stop()
        finally:
            disconnect(self.client)
            self._wakes.close()
            _OPEN.discard(self)


def _read_before_writing(read: Callable[[str], T], request_id: str) -> T:
    """``read(request_id)``; a store unavailable then has recorded nothing (``applied="no"``)."""
    try:
        return read(request_id)
    except StoreUnavailable as exc:
        raise StoreUnavailable(exc.message, applied="no") from exc.__cause__


def _halt_record(
    clock: Clock, scope: HaltScope, target: str, by: str, reason: str | None
) -> tuple[Halt, dict[str, Any]]:
    now = clock.now()
    target = "*" if scope is HaltScope.ALL else target
    record = Halt(scope=scope, target=target, by=by, reason=reason, at=now)
    event = draft(
        "halt.set",
        at_ms=ms(now),
        actor=by,
        agent=target if scope is HaltScope.AGENT else None,
        session_id=target if scope is HaltScope.SESSION else None,
        data={"scope": scope.value, "target": target, "reason": reason},
    )
    return record, event


def _resume_event(
    clock: Clock, scope: HaltScope, target: str, by: str, signed: str
) -> dict[str, Any]:
    return draft(
        "halt.cleared",
        at_ms=ms(clock.now()),
        actor=by,
        agent=target if scope is HaltScope.AGENT else None,
        session_id=target if scope is HaltScope.SESSION else None,
        data={"scope": scope.value, "target": target, "signed": signed},
    )


#: The most audit chains a deployment may have.
MAX_CHAINS = 64


def _start_after(chain: int, floor: str | None, positions: Mapping[int, str]) -> str:
    """Where to start reading ``chain`` (an XRANGE min) after a cursor.

    Its own position when the cursor has one; else after ``floor`` in the order
    of every chain's entries (sealed ms, sequence, chain); else its start.
    """
    if chain in positions:
        return f"({positions[chain]}"
    if floor is None:
        return "-"
    floor_chain, sid = entry_chain(floor)
    return sid if chain > floor_chain else f"({sid}"


def _scripts_missing(exc: StoreError) -> StoreError:
    """A clear error when an agent's user finds the store's scripts not loaded (and they
    did not come back within the retry bound)."""
    said = str(exc).lower()
    if ("noperm" in said or "no permissions" in said) and "script" in said:
        message = (
            "the store's scripts are not loaded on this Redis (a restart, or a replica "
            "promoted since they were loaded), and this process's Redis user may not load "
            "them: a deciding process (`gatekeeper serve`) loads them, checking every second; "
            "if none is running, start one"
        )
        if isinstance(exc, StoreUnavailable):
            return StoreUnavailable(message, applied="no")
        return StoreError(message)
    return exc


def _signed_resume(signer: SigningKey, clock: Clock, field: str, by: str, halt: Any) -> str:
    """The signed resume of halt ``field``; an unreadable halt binds it to now instead."""
    now = ms(clock.now())
    halt_at = ms(read_halt(field, halt).at) if halt is not None else 0
    if halt_at == 0 and halt is not None:
        halt_at = now
    return sign_resume(signer, field, by, now, halt_at)


_OPEN: weakref.WeakSet[RedisStore] = weakref.WeakSet()


@atexit.register
def _flush_open_stores() -> None:
    for store in list(_OPEN):
        try:
            store._sealer.stop()
        except Exception as exc:
            log.warning("could not flush the audit log of %r at exit: %s", store, exc)


def _unreadable(exc: BaseException) -> str:
    """Why a stored record could not be read, without the record's (agent-written) values:
    a validation error's count and the fields it names, else the error's type."""
    if isinstance(exc, pydantic.ValidationError):
        where = "; ".join(
            bounded(".".join(str(part) for part in e["loc"]) or "(the record)") + f": {e['type']}"
            for e in exc.errors()[:5]
        )
        return f"{exc.error_count()} validation error(s): {where}"
    if isinstance(exc, GatekeeperError):
        return bounded(str(exc))
    return type(exc).__name__
