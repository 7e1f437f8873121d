"""The async face of :class:`~gatekeeper.store.RedisStore`.

redis-py's asyncio clients belong to the event loop that made them, so each
loop gets its own small connection pool and one pub/sub subscription that all
of that loop's waiters share: 10,000 waiting calls use the same handful of
connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import redis.asyncio as aredis
import redis.exceptions as rexc
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from tenacity import AsyncRetrying

from .._errors import GatekeeperError, RequestNotFound
from ..models import ApprovalRequest, Decision, Halt, HaltScope, RequestStatus
from . import _redis_ops as ops
from ._base import Draft
from ._halts import ms

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

    def _now_ms(self) -> int:
        return ms(self._store.clock.now())

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

    async def claim(self, request_id: str, *, args_digest: str) -> ApprovalRequest:
        op = ops.claim(self.keys, request_id, self._now_ms(), args_digest)
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
        ids = await self._run(ops.halt(self.keys, record, event))
        self._store._sealer.kick()
        cancelled = []
        for rid in ids:
            try:
                await self.cancel(rid, by=by, reason=f"halted: {reason or 'kill switch'}")
            except GatekeeperError:
                continue
            cancelled.append(rid)
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
            await state.dispatcher.close()
            await state.client.connection_pool.disconnect()


class _Dispatcher:
    """One pub/sub subscription per event loop, fanned out to that loop's waiters.

    After every (re)subscription all waiters are woken to re-read their
    request: a decision published while the connection was down is not lost.
    """

    def __init__(self, url: str, channel: str) -> None:
        self._url = url
        self._channel = channel
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._subscribed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._client: aredis.Redis | None = None
        self.reconnects = 0

    def watch(self, request_id: str) -> asyncio.Event:
        """An event set whenever ``request_id`` may have changed.

        No need to wait for the subscription: every (re)subscription wakes all
        waiters, so a decision published before it is still seen on re-read.
        """
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
        event = asyncio.Event()
        self._waiters.setdefault(request_id, set()).add(event)
        return event

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

    async def _listen(self) -> None:
        assert self._client is not None
        backoff = 0.05
        while True:
            pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self._channel)
                self._subscribed.set()
                self._wake_all()
                backoff = 0.05
                while True:
                    message = await pubsub.get_message(timeout=None)
                    if message is None:
                        continue
                    rid = message["data"]
                    rid = rid.decode() if isinstance(rid, bytes) else str(rid)
                    for event in self._waiters.get(rid, ()):
                        event.set()
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
