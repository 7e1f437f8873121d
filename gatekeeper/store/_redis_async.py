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
import logging
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, cast

import redis.asyncio as aredis
import redis.exceptions as rexc
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from tenacity import AsyncRetrying

from .._errors import GatekeeperError, RequestNotFound
from ..audit import StoredEvent
from ..models import ApprovalRequest, Decision, Halt, HaltScope, RequestStatus, Risk
from . import _redis_ops as ops
from . import _redis_queries as queries
from ._base import Draft
from ._changes import FEED_QUEUE, RESYNC, offer_change

if TYPE_CHECKING:
    from ._redis import RedisStore

__all__ = ["AsyncRedisStore"]

T = TypeVar("T")
log = logging.getLogger("gatekeeper.store")


class _LoopState:
    def __init__(self, store: RedisStore) -> None:
        pool = aredis.BlockingConnectionPool.from_url(
            store.url,
            max_connections=store._max_connections,
            # None: under a burst (10,000 waiters woken at once) a command
            # waits its turn for a connection instead of failing.
            timeout=None,
            socket_timeout=store._socket_timeout,
            socket_connect_timeout=2,
        )
        self.client = aredis.Redis(connection_pool=pool)
        self.scripts = {name: self.client.register_script(src) for name, src in ops.SCRIPTS.items()}
        self.dispatcher = _Dispatcher(store.url, store.keys.channel)

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
            await self.client.connection_pool.disconnect()

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

        try:
            return await fn()
        except rexc.RedisError as exc:
            if not _retryable(exc):
                raise translate_redis_error(exc) from exc
        try:
            async for attempt in AsyncRetrying(**self._store.retry.tenacity_kwargs()):
                with attempt:
                    return await fn()
        except rexc.RedisError as exc:
            raise translate_redis_error(exc) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    async def _run(self, op: ops.Op[T]) -> T:
        script = self._state().scripts[op.script]
        reply = await self._call(lambda: script(keys=op.keys, args=op.args))
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
        return await self._read(queries.audit_page(self.keys, before=before, limit=limit))

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

    async def admit(self, event: Draft, *, agent: str, session_id: str) -> None:
        await self._run(ops.admit(self.keys, event, agent, session_id))
        self._store._sealer.kick()

    async def record(self, events: Sequence[Draft]) -> None:
        if events:
            client = self._state().client
            payload = [ops.journal_entry(e) for e in events]
            await self._call(lambda: client.rpush(self.keys.journal, *payload))
            self._store._sealer.kick()

    def record_soon(self, events: Sequence[Draft]) -> None:
        self._store._sealer.enqueue(events)

    async def hold(self, request: ApprovalRequest, event: Draft) -> None:
        await self._run(ops.hold(self.keys, request, event))
        self._store._sealer.kick()

    async def get(self, request_id: str) -> ApprovalRequest:
        client = self._state().client
        k = self.keys

        async def read() -> list[Any]:
            pipe = client.pipeline(transaction=False)
            pipe.hgetall(k.req(request_id))
            pipe.lrange(k.votes(request_id), 0, -1)
            replies: list[Any] = await pipe.execute()
            return replies

        fields, votes = await self._call(read)
        if not fields:
            raise RequestNotFound(request_id)
        return ops.request_from_hash(fields, votes)

    async def pending(self, *, limit: int = 100, offset: int = 0) -> list[ApprovalRequest]:
        client = self._state().client
        ids: list[Any] = await self._call(
            lambda: client.zrange(self.keys.pending, offset, offset + limit - 1)
        )
        now = self._store.clock.now()
        out = []
        for raw in ids:
            try:
                req = await self.get(raw.decode())
            except GatekeeperError:
                continue
            if req.effective_status(now) is RequestStatus.PENDING:
                out.append(req)
        return out

    async def _after(self, request_id: str, op: ops.Op[ApprovalRequest]) -> ApprovalRequest:
        try:
            return await self._run(op)  # the script answers with the request after the step
        finally:
            self._store._sealer.kick()

    async def decide(
        self, request_id: str, decision: Decision, *, args: Mapping[str, Any] | None = None
    ) -> ApprovalRequest:
        op = ops.decide(self.keys, request_id, decision, self._now_ms(), args)
        return await self._after(request_id, op)

    async def expire(self, request_id: str) -> ApprovalRequest:
        return await self._after(request_id, ops.expire(self.keys, request_id, self._now_ms()))

    async def cancel(
        self, request_id: str, *, by: str, reason: str | None = None
    ) -> ApprovalRequest:
        op = ops.cancel(self.keys, request_id, self._now_ms(), by, reason)
        return await self._after(request_id, op)

    async def claim(
        self, request_id: str, *, args_digest: str, token: str | None = None
    ) -> ApprovalRequest:
        op = ops.claim(self.keys, request_id, self._now_ms(), args_digest, token)
        return await self._after(request_id, op)

    async def finish(self, request_id: str, *, ok: bool, outcome: str | None) -> ApprovalRequest:
        op = ops.finish(self.keys, request_id, self._now_ms(), ok, outcome)
        return await self._after(request_id, op)

    async def wait(self, request_id: str, timeout: float) -> ApprovalRequest:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(timeout, 0.0)
        dispatcher = self._state().dispatcher
        # Watch before the first read, so no decision can slip in between.
        woken = dispatcher.watch(request_id)
        try:
            while True:
                woken.clear()
                req = await self.get(request_id)
                remaining = deadline - loop.time()
                if req.status.decided or remaining <= 0:
                    return req
                try:
                    await asyncio.wait_for(woken.wait(), remaining)
                except asyncio.TimeoutError:
                    continue
        finally:
            dispatcher.unwatch(request_id, woken)

    async def halt(
        self, scope: HaltScope, target: str, *, by: str, reason: str | None = None
    ) -> list[str]:
        from ._redis import _halt_record

        record, event = _halt_record(self._store.clock, scope, target, by, reason)
        cancelled = await self._run(ops.halt(self.keys, record, event, self._now_ms()))
        self._store._sealer.kick()
        return cancelled

    async def resume(self, scope: HaltScope, target: str, *, by: str) -> bool:
        from ._redis import _resume_event

        target = "*" if scope is HaltScope.ALL else target
        event = _resume_event(self._store.clock, scope, target, by)
        done = await self._run(ops.resume(self.keys, scope, target, event))
        self._store._sealer.kick()
        return done

    async def halts(self) -> list[Halt]:
        client = self._state().client
        raw = await self._call(lambda: client.hgetall(self.keys.halts))
        return [Halt.model_validate_json(v) for v in raw.values()]

    async def aclose(self) -> None:
        state = self._loops.pop(asyncio.get_running_loop(), None)
        if state is not None:
            await state.close()


class _Dispatcher:
    """One pub/sub subscription per event loop, fanned out to that loop's waiters.

    After every (re)subscription all waiters are woken to re-read their
    request: a decision published while the connection was down is not lost.

    Listeners (``changes()``) get every published id in a bounded queue of
    their own. After every (re)subscription they get :data:`RESYNC` (``""``)
    too; a listener whose queue is full finds ``RESYNC`` in place of what it
    held (see :func:`~gatekeeper.store._changes.offer_change`).
    """

    def __init__(self, url: str, channel: str) -> None:
        self._url = url
        self._channel = channel
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._listeners: set[asyncio.Queue[str]] = set()
        self._subscribed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._client: aredis.Redis | None = None
        self.reconnects = 0

    def watch(self, request_id: str) -> asyncio.Event:
        """An event set whenever ``request_id`` may have changed.

        No need to wait for the subscription: every (re)subscription wakes all
        waiters, so a decision published before it is still seen on re-read.
        """
        self._start()
        event = asyncio.Event()
        self._waiters.setdefault(request_id, set()).add(event)
        return event

    def listen(self) -> asyncio.Queue[str]:
        """A queue that receives every published id, and RESYNC (see the class doc).

        RESYNC comes first once the subscription is live (at once if it is).
        """
        self._start()
        queue: asyncio.Queue[str] = asyncio.Queue(FEED_QUEUE)
        self._listeners.add(queue)
        if self._subscribed.is_set():
            offer_change(queue, RESYNC)
        return queue

    def unlisten(self, queue: asyncio.Queue[str]) -> None:
        self._listeners.discard(queue)

    def _start(self) -> None:
        if self._task is None or self._task.done():
            # No silent reconnects inside redis-py: a lost subscription must
            # reach _listen, which re-subscribes and wakes every waiter.
            self._client = aredis.Redis.from_url(
                self._url,
                socket_connect_timeout=2,
                socket_timeout=None,  # a quiet channel is not a dead one
                retry=Retry(NoBackoff(), 0),
            )
            self._task = asyncio.get_running_loop().create_task(self._listen())

    def unwatch(self, request_id: str, event: asyncio.Event) -> None:
        waiters = self._waiters.get(request_id)
        if waiters is not None:
            waiters.discard(event)
            if not waiters:
                del self._waiters[request_id]

    def _wake_all(self) -> None:
        for events in self._waiters.values():
            for event in events:
                event.set()
        for queue in self._listeners:
            offer_change(queue, RESYNC)

    async def _listen(self) -> None:
        assert self._client is not None
        backoff = 0.05
        while True:
            pubsub = self._client.pubsub()
            try:
                await pubsub.subscribe(self._channel)
                while True:
                    message = await pubsub.get_message(timeout=None)
                    if message is None:
                        continue
                    if message["type"] == "subscribe":
                        # Live only once Redis confirms: anything published
                        # before then is caught by the re-read this triggers.
                        self._subscribed.set()
                        self._wake_all()
                        backoff = 0.05
                        continue
                    if message["type"] != "message":
                        continue
                    rid = message["data"]
                    rid = rid.decode() if isinstance(rid, bytes) else str(rid)
                    for event in self._waiters.get(rid, ()):
                        event.set()
                    for queue in self._listeners:
                        offer_change(queue, rid)
            except asyncio.CancelledError:
                raise
            except (rexc.ConnectionError, rexc.TimeoutError, OSError) as exc:
                self._subscribed.clear()
                self.reconnects += 1
                log.warning("decision subscription lost, reconnecting: %s", exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
            finally:
                with contextlib.suppress(rexc.RedisError, OSError):  # it is gone either way
                    await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._client is not None:
            await self._client.aclose()
