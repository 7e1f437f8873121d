"""The async face of :class:`~gatekeeper.store.RedisStore`.

redis-py's asyncio clients belong to the event loop that made them, so each
loop gets its own small connection pool and one pub/sub subscription that all
of that loop's waiters share: 10,000 waiting calls use the same handful of
connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, cast

import redis.exceptions as rexc
from tenacity import AsyncRetrying

from .._errors import (
    AgentHalted,
    GatekeeperError,
    RequestNotFound,
    StoreError,
    StoreUnavailable,
    TransitionRefused,
)
from .._telemetry import store_retry
from .._votes import sign_vote
from ..audit import StoredEvent, check_event_ids
from ..logs import get_logger
from ..models import ApprovalRequest, Decision, Halt, HaltScope, RequestStatus, Risk
from . import _redis_ops as ops
from . import _redis_queries as queries
from ._base import Draft
from ._bounded import READ_FLOOR, Backoff, awithin
from ._changes import FEED_QUEUE, RESYNC, offer_change
from ._endpoints import Endpoint, adisconnect
from ._redis import GLOBAL_HALTS_EVERY, REDIS_ERRORS, _failed, _hold_refused, _taken
from ._wakes import (
    KEEPALIVE,
    LINGER,
    LISTEN_STEP,
    RECHECK,
    Heartbeat,
    Interest,
    SubscriptionLost,
    text,
)

if TYPE_CHECKING:
    from ._redis import RedisStore

__all__ = ["AsyncRedisStore"]

T = TypeVar("T")
log = get_logger("gatekeeper.store")


class _LoopState:
    def __init__(self, store: RedisStore) -> None:
        self.client = store.endpoint.aclient(
            max_connections=store._max_connections, socket_timeout=store._socket_timeout
        )
        self.scripts = {name: self.client.register_script(src) for name, src in ops.SCRIPTS.items()}
        self.dispatcher = _Dispatcher(store.endpoint, store.keys.changes, store._socket_timeout)

        # Closes this loop's connections when the loop shuts down (asyncio.run
        # and test runners cancel every task at the end): one asyncio.run after
        # another leaves no sockets behind.
        self._closer = asyncio.get_running_loop().create_task(self._close_at_shutdown())

    async def _close_at_shutdown(self) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            await self._close_connections()
            raise

    async def _close_connections(self) -> None:
        with contextlib.suppress(Exception):  # shutting down: close what can be closed
            await self.dispatcher.close()
        with contextlib.suppress(Exception):
            await adisconnect(self.client)

    async def close(self) -> None:
        self._closer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._closer


class AsyncRedisStore:
    """Coroutine methods over the same Redis keys as the blocking :class:`RedisStore`."""

    def __init__(self, store: RedisStore) -> None:
        self._store = store
        self.keys = store.keys
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState] = (
            weakref.WeakKeyDictionary()
        )

    def _state(self) -> _LoopState:
        loop = asyncio.get_running_loop()
        state = self._loops.get(loop)
        if state is None:
            # A loop's state keeps its loop alive (through the listener task),
            # so states of loops that have closed (one asyncio.run after
            # another) are dropped here, with their sockets.
            for old in [lp for lp in self._loops if lp.is_closed()]:
                del self._loops[old]
            state = self._loops[loop] = _LoopState(self._store)
        return state

    async def _call(self, fn: Callable[[], Awaitable[T]]) -> T:
        from ._redis import _retryable, translate_redis_error

        tries: list[BaseException] = []

        async def once() -> T:
            try:
                return await fn()
            except REDIS_ERRORS as exc:
                tries.append(exc)
                raise

        try:
            return await once()
        except REDIS_ERRORS as exc:
            if not _retryable(exc):
                raise _failed(translate_redis_error(exc, tries)) from exc
        try:
            async for attempt in AsyncRetrying(**self._store.retry.tenacity_kwargs()):
                with attempt:
                    store_retry()
                    return await once()
        except REDIS_ERRORS as exc:
            raise _failed(translate_redis_error(exc, tries)) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    async def _run(self, op: ops.Op[T]) -> T:
        from ._redis import ScriptsNotLoaded, _not_loaded, _scripts_missing

        script = self._state().scripts[op.script]

        async def run() -> Any:
            try:
                return await script(keys=op.keys, args=op.args)
            except rexc.NoPermissionError as exc:
                if _not_loaded(exc):  # tried again: the deciders reload them
                    raise ScriptsNotLoaded(str(exc)) from exc
                raise

        try:
            reply = await self._call(run)
        except StoreError as exc:
            raise _scripts_missing(exc) from exc.__cause__
        return op.parse(reply)

    def _now_ms(self) -> int | str:
        return self._store._now_ms()

    async def _read(self, flow: queries.Flow[T]) -> T:
        """Drive a query flow: each batch it yields is one pipeline round trip."""
        client = self._state().client

        async def execute(batch: list[queries.Command]) -> list[Any]:
            pipe = client.pipeline(transaction=False)
            for command in batch:
                pipe.execute_command(*command)
            replies: list[Any] = await pipe.execute()
            return replies

        try:
            batch = next(flow)
            while True:
                replies = await self._call(functools.partial(execute, batch))
                batch = flow.send(replies)
        except StopIteration as done:
            return cast(T, done.value)

    async def get_many(self, ids: Sequence[str]) -> list[ApprovalRequest]:
        return await self._read(queries.get_many(self.keys, ids))

    async def queue(
        self,
        *,
        agent: str | None = None,
        tool: str | None = None,
        risk: Risk | str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[list[ApprovalRequest], int]:
        flow = queries.queue(
            self.keys,
            self._store.clock.now(),
            agent=agent,
            tool=tool,
            risk=risk,
            limit=limit,
            offset=offset,
        )
        return await self._read(flow)

    async def history(
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
        flow = queries.history(
            self.keys,
            self._store.clock.now(),
            agent=agent,
            tool=tool,
            status=status,
            approver=approver,
            since=since,
            until=until,
            limit=limit,
            offset=offset,
        )
        return await self._read(flow)

    async def audit_page(self, *, before: str | None = None, limit: int = 50) -> list[StoredEvent]:
        # The sealer is blocking; run it off the loop.
        await asyncio.to_thread(self._store.flush)
        chains = self._store.audit_chains
        return await self._read(
            queries.audit_page(self.keys, before=before, limit=limit, chains=chains)
        )

    async def use_once(self, key: str, ttl: float) -> bool:
        return await self._run(ops.use_once(self.keys, key, ttl))

    async def hit(self, key: str, window: float) -> int:
        return await self._run(ops.hit(self.keys, key, window))

    async def remember(self, key: str, value: str, ttl: float) -> None:
        """Example: ``await store.aio.remember("slack:" + request.id, ref, 86400)``."""
        name, raw, px = ops.note_set(self.keys, key, value, ttl)
        client = self._state().client
        await self._call(lambda: client.set(name, raw, px=px))

    async def recall(self, key: str) -> str | None:
        """Example: ``ref = await store.aio.recall("slack:" + request.id)``."""
        name = self.keys.note(key)
        client = self._state().client
        return ops.note_value(await self._call(lambda: client.get(name)))

    async def changes(self) -> AsyncIterator[str]:
        """Ids of requests created or changed by any process; ``""`` means re-read everything.

        The first value is ``""``, once the subscription is live; it comes
        again after every re-subscription and whenever this reader fell so far
        behind that ids were dropped.
        """
        dispatcher = self._state().dispatcher
        queue = dispatcher.listen()
        try:
            while True:
                yield await queue.get()
        finally:
            dispatcher.unlisten(queue)

    # -- agents and where their requests live ----------------------------------------
    async def _agent_keys(self, request_id: str) -> ops.AgentKeys:
        store = self._store
        agent = store._where.get(request_id)
        if agent is None:
            client = self._state().client
            raw = await self._call(lambda: client.hget(self.keys.where, request_id))
            if raw is None:
                raise RequestNotFound(request_id)
            agent = ops.text(raw)
            store._remember_where(request_id, agent)
        return self.keys.of(agent)

    async def _ensure(self, agent: str) -> ops.AgentKeys:
        store = self._store
        a = self.keys.of(agent)
        if agent not in store._registered:
            halts = await self._run(ops.register(self.keys, agent))
            if halts:
                await self._run(ops.copy_halts(a, halts))
            store._registered.add(agent)
            store._global_read[agent] = time.monotonic()
        elif time.monotonic() - store._global_read.get(agent, 0.0) > GLOBAL_HALTS_EVERY:
            store._global_read[agent] = time.monotonic()
            client = self._state().client
            found = await self._call(lambda: client.hgetall(self.keys.halts))
            if found:
                pairs = [(ops.text(f), ops.text(v)) for f, v in found.items()]
                await self._run(ops.copy_halts(a, pairs))
        return a

    async def _check_lifted(self, a: ops.AgentKeys, session_id: str | None) -> None:
        if self._store._seen_halts.get(a.agent):
            # Rare (this process saw a halt of this agent): the blocking check, off the loop.
            await asyncio.to_thread(self._store._check_lifted, a, session_id)

    async def admit(
        self,
        event: Draft,
        *,
        agent: str,
        session_id: str,
        plan: Mapping[str, Any] | None = None,
        verdict: str = "allow",
    ) -> list[dict[str, Any]]:
        check_event_ids([event])
        a = await self._ensure(agent)
        await self._check_lifted(a, session_id)
        op = ops.admit(self.keys, a, event, session_id, plan, verdict, self._now_ms())
        try:
            hits = await self._run(op)
        except AgentHalted as exc:
            self._store._halted_here(agent, exc)
            raise
        if not hits:
            self._store._sealer.kick()
        return hits

    async def observe(
        self,
        plan: Mapping[str, Any],
        *,
        agent: str,
        mode: str = "attempt",
        request_id: str | None = None,
    ) -> list[dict[str, Any]]:
        a = await self._ensure(agent)
        op = ops.observe(self.keys, a, plan, mode, self._now_ms(), request_id or "")
        return await self._run(op)

    async def record(self, events: Sequence[Draft]) -> None:
        check_event_ids(events)
        if events:
            by_journal: dict[str, list[bytes]] = {}
            for e in events:
                by_journal.setdefault(self._store._journal_of(e), []).append(ops.journal_entry(e))
            for journal, payload in by_journal.items():
                await self._run(ops.jpush(journal, payload))
            self._store._sealer.kick()

    def record_soon(self, events: Sequence[Draft]) -> None:
        self._store.record_soon(events)

    async def hold(
        self, request: ApprovalRequest, event: Draft, plan: Mapping[str, Any] | None = None
    ) -> ApprovalRequest:
        check_event_ids([event])
        agent = request.call.agent
        a = await self._ensure(agent)
        await self._check_lifted(a, request.call.session_id)
        client = self._state().client
        rid = request.id
        if self.keys.cluster:  # `where` is in another slot; on one node the script claims it
            taken = await self._call(lambda: client.hsetnx(self.keys.where, rid, agent))
            if not taken:
                owner = await self._call(lambda: client.hget(self.keys.where, rid))
                if owner is None or ops.text(owner) != agent:
                    raise _taken(rid)
        store = self._store
        try:
            held = await self._run(
                ops.hold(self.keys, a, request, event, self._now_ms(), store._retain_ms, plan)
            )
        except AgentHalted as exc:
            store._halted_here(agent, exc)
            raise
        except StoreError as exc:
            told = _hold_refused(exc, self.keys, a)
            if told is exc:
                raise
            raise told from exc
        store._sealer.kick()
        store._remember_where(held, agent)  # only now: the script may refuse the id
        if held == rid:
            return request
        return await self.get(held)  # re-attached to the request this call made before

    # Leases are renewed by the store's one lease thread; sweeping and
    # resolving are the deciding side's, rare: the blocking face, off the loop.
    async def renew(self, request_ids: Sequence[str], *, ttl: float) -> dict[str, RequestStatus]:
        return await asyncio.to_thread(self._store.renew, request_ids, ttl=ttl)

    def keep(self, request_id: str) -> None:
        self._store.keep(request_id)

    def drop(self, request_id: str) -> None:
        self._store.drop(request_id)

    async def sweep(self) -> list[ApprovalRequest]:
        return await asyncio.to_thread(self._store.sweep)

    async def resolve(
        self, request_id: str, *, by: str, ran: bool, comment: str | None = None
    ) -> ApprovalRequest:
        return await asyncio.to_thread(
            self._store.resolve, request_id, by=by, ran=ran, comment=comment
        )

    async def get(self, request_id: str) -> ApprovalRequest:
        client = self._state().client
        a = await self._agent_keys(request_id)

        async def read() -> list[Any]:
            pipe = client.pipeline(transaction=False)
            pipe.hgetall(a.req(request_id))
            pipe.lrange(a.votes(request_id), 0, -1)
            pipe.hget(a.flags, request_id)
            replies: list[Any] = await pipe.execute()
            return replies

        fields, votes, flag = await self._call(read)
        if not fields:
            raise RequestNotFound(request_id)
        return ops.request_from_hash(fields, votes, a.agent, flag)

    async def pending(self, *, limit: int = 100, offset: int = 0) -> list[ApprovalRequest]:
        flow = queries.pending(self.keys, self._store.clock.now(), limit=limit, offset=offset)
        return await self._read(flow)

    async def _after(self, op: ops.Op[ApprovalRequest]) -> ApprovalRequest:
        try:
            return await self._run(op)  # the script answers with the request after the step
        finally:
            self._store._sealer.kick()

    async def decide(
        self, request_id: str, decision: Decision, *, args: Mapping[str, Any] | None = None
    ) -> ApprovalRequest:
        signer = self._store.decision_keys.signer()
        try:
            req = await self.get(request_id)
        except StoreUnavailable as exc:  # read only: nothing recorded
            raise StoreUnavailable(exc.message, applied="no") from exc.__cause__
        a = self.keys.of(req.call.agent)
        signed = sign_vote(signer, req, decision, args)
        now = self._now_ms()
        replicas = self._store.durability.replicas
        after = await self._after(ops.decide(self.keys, a, request_id, signed, now, args, replicas))
        if not replicas:
            return after
        timeout = self._store.durability.timeout
        # WAIT blocks its connection: the blocking client's, off the loop (see replicated).
        acked = await asyncio.to_thread(self._store.replicated, a, replicas, timeout)
        durable = acked >= replicas
        if durable and after.awaiting_replicas:
            try:  # it may run now; else the waiting agent confirms it (it checks too)
                after = await self._after(ops.confirm(self.keys, a, request_id))
            except GatekeeperError as exc:
                log.warning("approval of request %s not confirmed here: %s", request_id, exc)
        return after.model_copy(update={"durable": durable})

    async def _confirm(
        self, a: ops.AgentKeys, request_id: str, replicas: int, timeout: float
    ) -> bool:
        """As :meth:`RedisStore._confirm`, on this loop."""
        acked = await asyncio.to_thread(self._store.replicated, a, replicas, timeout)
        if acked < replicas:
            return False
        try:
            await self._after(ops.confirm(self.keys, a, request_id))
        except GatekeeperError as exc:  # not confirmed: it does not run yet
            log.warning("approval of request %s not confirmed: %s", request_id, exc)
            return False
        return True

    async def expire(self, request_id: str) -> ApprovalRequest:
        a = await self._agent_keys(request_id)
        journal = self._store.journal_of(a)
        return await self._after(ops.expire(self.keys, a, request_id, self._now_ms(), journal))

    async def cancel(
        self, request_id: str, *, by: str, reason: str | None = None
    ) -> ApprovalRequest:
        a = await self._agent_keys(request_id)
        journal = a.journal if by == f"agent:{a.agent}" else self._store.journal_of(a)
        op = ops.cancel(self.keys, a, request_id, self._now_ms(), by, reason, journal)
        return await self._after(op)

    async def refuse(self, request_id: str, *, why: str) -> ApprovalRequest:
        a = await self._agent_keys(request_id)
        return await self._after(ops.refuse(self.keys, a, request_id, self._now_ms(), why))

    async def claim(
        self,
        request_id: str,
        *,
        args_digest: str,
        token: str | None = None,
        created_at: dt.datetime | None = None,
        plan: Mapping[str, Any] | None = None,
    ) -> ApprovalRequest:
        a = await self._agent_keys(request_id)
        created = int(created_at.timestamp() * 1000) if created_at is not None else None
        op = ops.claim(self.keys, a, request_id, self._now_ms(), args_digest, token, created, plan)
        try:
            return await self._after(op)
        except AgentHalted as exc:
            self._store._halted_here(a.agent, exc)
            raise
        except TransitionRefused as exc:  # as RedisStore.claim: checked now, claimed once it is
            replicas = getattr(exc, "awaiting_replicas", 0)
            timeout = self._store.durability.timeout
            if not replicas or not await self._confirm(a, request_id, replicas, timeout):
                raise
        return await self._after(op)

    async def finish(
        self, request_id: str, *, ok: bool, outcome: str | None, token: str | None = None
    ) -> ApprovalRequest:
        a = await self._agent_keys(request_id)
        op = ops.finish(self.keys, a, request_id, self._now_ms(), ok, outcome, token)
        return await self._after(op)

    async def flag_tampering(self, request_id: str, why: str, event: Draft) -> None:
        check_event_ids([event])
        a = await self._agent_keys(request_id)
        await self._run(ops.flag(self.keys, a, request_id, why, event))
        self._store._sealer.kick()

    async def wait(self, request_id: str, timeout: float) -> ApprovalRequest:
        """As :meth:`RedisStore.wait`: back by ``timeout`` seconds whatever Redis does.

        Every read is bounded by the deadline, a failed one is tried again
        (backing off), and the request is re-read at least every
        :data:`~._wakes.RECHECK` seconds even if no wake-up comes.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(timeout, 0.0)
        dispatcher = self._state().dispatcher
        where = self._store._where
        # Watch before the read, so no decision can slip in between: on the
        # agent's channel, known here for a request this process held, else
        # learnt from a first read (then watched, and read again).
        agent = where.get(request_id)
        watching = agent is not None
        woken = dispatcher.watch(request_id, self._channel(agent)) if agent else asyncio.Event()
        backoff = Backoff()
        try:
            while True:
                woken.clear()
                budget = max(deadline - loop.time(), READ_FLOOR)
                try:
                    req = await awithin(budget, self.get(request_id))
                except StoreUnavailable:
                    if loop.time() >= deadline:
                        raise
                    pause = min(deadline - loop.time(), backoff.next())
                else:
                    backoff.reset()
                    remaining = deadline - loop.time()
                    if req.awaiting_replicas and remaining > 0:
                        # Approved, held until the replicas have it: look, then run it or wait on.
                        a = self.keys.of(req.call.agent)
                        timeout = min(self._store.durability.timeout, remaining)
                        if await self._confirm(a, request_id, req.awaiting_replicas, timeout):
                            continue
                        pause = min(deadline - loop.time(), 0.5)
                    elif req.status.decided or remaining <= 0:
                        return req
                    else:
                        if not watching:
                            agent = where.get(request_id, req.call.agent)
                            woken = dispatcher.watch(request_id, self._channel(agent))
                            watching = True
                            continue
                        pause = min(remaining, RECHECK)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(woken.wait(), max(pause, 0.0))
        finally:
            if watching:
                dispatcher.unwatch(request_id, woken)

    def _channel(self, agent: str) -> str:
        return self.keys.of(agent).channel

    # The kill switch is rare and touches every agent: the blocking face, off the loop.
    async def halt(
        self,
        scope: HaltScope,
        target: str,
        *,
        by: str,
        reason: str | None = None,
        agent: str | None = None,
    ) -> list[str]:
        return await asyncio.to_thread(
            self._store.halt, scope, target, by=by, reason=reason, agent=agent
        )

    async def resume(self, scope: HaltScope, target: str, *, by: str) -> bool:
        return await asyncio.to_thread(self._store.resume, scope, target, by=by)

    async def halts(self) -> list[Halt]:
        return await asyncio.to_thread(self._store.halts)

    async def grants_for(self, agent: str) -> tuple[dict[str, str], int | None]:
        return await asyncio.to_thread(self._store.grants_for, agent)

    async def aclose(self) -> None:
        state = self._loops.pop(asyncio.get_running_loop(), None)
        if state is not None:
            await state.close()


class _Dispatcher:
    """One pub/sub subscription per event loop, fanned out to that loop's waiters.

    As :class:`~._wakes.Wakes` does for threads: the subscription holds the
    channels of the agents this loop's tasks wait for (asked for at once,
    through a nudge, and kept :data:`~._wakes.LINGER` seconds after their
    last waiter), each channel's confirmation wakes its waiters to re-read,
    and after every lost subscription all of them are woken. A quiet
    subscription is pinged, and one that does not answer is made again (see
    :class:`~._wakes.Heartbeat`).

    Listeners (``changes()``) hear every agent's channel through one pattern
    subscription (:attr:`Keys.changes <._redis_ops.Keys.changes>`), made while
    there are any; each gets every published id in a bounded queue of its
    own. After every (re)subscription of the pattern they get :data:`RESYNC`
    (``""``) too; a listener whose queue is full finds ``RESYNC`` in place of
    what it held (see :func:`~gatekeeper.store._changes.offer_change`).
    """

    def __init__(self, endpoint: Endpoint, pattern: str, socket_timeout: float = KEEPALIVE) -> None:
        self._endpoint = endpoint
        self._pattern = pattern
        self._socket_timeout = min(socket_timeout, KEEPALIVE)
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._channel_of: dict[str, str] = {}  # request id -> its agent's channel
        self._interest = Interest(LINGER)
        self._listeners: set[asyncio.Queue[str]] = set()
        self._pattern_live = False  # the listeners' subscription is confirmed
        self._nudge = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._client: Any = None
        self.reconnects = 0

    def watch(self, request_id: str, channel: str) -> asyncio.Event:
        """An event set whenever ``request_id`` may have changed.

        ``channel`` is its agent's. No need to wait for the subscription: its
        confirmation (and every re-subscription) wakes the waiters, so a
        decision published before it is still seen on re-read.
        """
        self._start()
        event = asyncio.Event()
        self._waiters.setdefault(request_id, set()).add(event)
        self._channel_of[request_id] = channel
        if self._interest.add(channel):
            self._nudge.set()  # subscribe now, not after the listener's current read
        return event

    def unwatch(self, request_id: str, event: asyncio.Event) -> None:
        waiters = self._waiters.get(request_id)
        if waiters is None or event not in waiters:
            return
        waiters.discard(event)
        channel = self._channel_of[request_id]
        if not waiters:
            del self._waiters[request_id]
            del self._channel_of[request_id]
        self._interest.remove(channel)

    def listen(self) -> asyncio.Queue[str]:
        """A queue that receives every published id, and RESYNC (see the class doc).

        RESYNC comes first once the subscription is live (at once if it is).
        """
        self._start()
        queue: asyncio.Queue[str] = asyncio.Queue(FEED_QUEUE)
        self._listeners.add(queue)
        if self._pattern_live:
            offer_change(queue, RESYNC)
        else:
            self._nudge.set()
        return queue

    def unlisten(self, queue: asyncio.Queue[str]) -> None:
        self._listeners.discard(queue)
        if not self._listeners:
            self._nudge.set()

    def _start(self) -> None:
        if self._task is None or self._task.done():
            # No silent reconnects inside redis-py: a lost subscription must
            # reach _listen, which re-subscribes and wakes every waiter.
            self._client = self._endpoint.asubscriber(socket_timeout=self._socket_timeout)
            self._task = asyncio.get_running_loop().create_task(self._listen())

    def _wake_waiters(self, channel: str | None = None) -> None:
        """Wake the waiters of one channel, or of all."""
        for rid, events in self._waiters.items():
            if channel is None or self._channel_of.get(rid) == channel:
                for event in events:
                    event.set()

    async def _listen(self) -> None:
        assert self._client is not None
        backoff = 0.05
        while True:
            pubsub = self._client.pubsub()
            try:
                await self._serve(pubsub)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # whatever broke it, the subscription is made again
                self._pattern_live = False
                self.reconnects += 1
                log.warning("decision subscription lost, reconnecting: %s", exc)
                self._wake_waiters()  # re-read now: a wake may have been missed
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
            else:
                backoff = 0.05
            finally:
                with contextlib.suppress(Exception):  # it is gone either way
                    await pubsub.aclose()

    async def _subscribe(self, pubsub: Any, held: set[str], pattern: bool) -> bool:
        """Bring the connection's subscriptions in line with what is wanted; the pattern's now."""
        self._nudge.clear()
        timeout = self._socket_timeout
        add, drop = self._interest.plan(held)
        if add:
            await asyncio.wait_for(pubsub.subscribe(*add), timeout)
            held.update(add)
        if drop:
            await asyncio.wait_for(pubsub.unsubscribe(*drop), timeout)
            held.difference_update(drop)
        if self._listeners and not pattern:
            await asyncio.wait_for(pubsub.psubscribe(self._pattern), timeout)
        elif pattern and not self._listeners:
            await asyncio.wait_for(pubsub.punsubscribe(self._pattern), timeout)
            self._pattern_live = False
        return bool(self._listeners)

    async def _serve(self, pubsub: Any) -> None:
        """Keep one connection's subscriptions to what is waited on; wake on what it hears.

        The read runs in a task of its own that is never cancelled midway (a
        read cut short would cost the connection): a nudge is served between
        its steps, the read left running meanwhile.
        """
        held: set[str] = set()  # the channels asked for on this connection
        pattern = False
        beat = Heartbeat()
        reader: asyncio.Task[Any] | None = None
        try:
            while True:
                pattern = await self._subscribe(pubsub, held, pattern)
                if reader is None:
                    if not held and not pattern:  # nothing to hear: wait to be asked
                        beat.heard()
                        with contextlib.suppress(asyncio.TimeoutError):
                            await asyncio.wait_for(self._nudge.wait(), LISTEN_STEP)
                        continue
                    reader = asyncio.ensure_future(pubsub.get_message(timeout=LISTEN_STEP))
                nudged = asyncio.ensure_future(self._nudge.wait())
                await asyncio.wait({reader, nudged}, return_when=asyncio.FIRST_COMPLETED)
                nudged.cancel()
                if not reader.done():
                    continue
                message, reader = reader.result(), None
                if message is None:
                    if not held and not pattern:
                        beat.heard()  # nothing to hear: nothing is late
                    elif beat.lost():
                        raise SubscriptionLost(f"no answer for {2 * KEEPALIVE:.0f} s")
                    elif beat.due():
                        await asyncio.wait_for(pubsub.ping(), self._socket_timeout)
                        beat.pinged()
                    continue
                beat.heard()
                self._heard(message, held)
        finally:
            if reader is not None:
                reader.cancel()
                with contextlib.suppress(BaseException):
                    await reader

    def _heard(self, message: dict[str, Any], held: set[str]) -> None:
        kind = message["type"]
        if kind == "psubscribe" and self._listeners:
            # Live only once Redis confirms: anything published before then
            # is caught by the re-read this asks for.
            self._pattern_live = True
            for queue in self._listeners:
                offer_change(queue, RESYNC)
        elif kind == "subscribe":
            channel = text(message["channel"])
            if channel in held:
                self._wake_waiters(channel)  # published before? caught on re-read
        elif kind == "message":
            rid, channel = text(message["data"]), text(message["channel"])
            if self._channel_of.get(rid) == channel:  # another agent's id wakes nobody
                for event in self._waiters.get(rid, ()):
                    event.set()
        elif kind == "pmessage":
            rid = text(message["data"])
            for queue in self._listeners:
                offer_change(queue, rid)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._client is not None:
            await adisconnect(self._client)
