"""The async face of a MemoryStore: the same state, without ever blocking the event loop."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..audit import StoredEvent
from ..models import ApprovalRequest, Decision, Halt, HaltScope, RequestStatus, Risk
from ._base import Draft
from ._changes import FEED_QUEUE, RESYNC

if TYPE_CHECKING:
    from ._memory import MemoryStore

__all__ = ["AsyncMemoryStore"]


class AsyncMemoryStore:
    """The async face of a :class:`MemoryStore`: same state, never blocks the loop."""

    def __init__(self, store: MemoryStore) -> None:
        self._store = store

    async def admit(
        self,
        event: Draft,
        *,
        agent: str,
        session_id: str,
        plan: Mapping[str, Any] | None = None,
        verdict: str = "allow",
    ) -> list[dict[str, Any]]:
        return self._store.admit(
            event, agent=agent, session_id=session_id, plan=plan, verdict=verdict
        )

    async def observe(
        self,
        plan: Mapping[str, Any],
        *,
        agent: str,
        mode: str = "attempt",
        request_id: str | None = None,
    ) -> list[dict[str, Any]]:
        return self._store.observe(plan, agent=agent, mode=mode, request_id=request_id)

    async def record(self, events: Sequence[Draft]) -> None:
        self._store.record(events)

    def record_soon(self, events: Sequence[Draft]) -> None:
        self._store.record(events)

    async def grants_for(self, agent: str) -> tuple[dict[str, str], int | None]:
        return self._store.grants_for(agent)

    async def hold(
        self, request: ApprovalRequest, event: Draft, plan: Mapping[str, Any] | None = None
    ) -> ApprovalRequest:
        return self._store.hold(request, event, plan)

    async def renew(self, request_ids: Sequence[str], *, ttl: float) -> dict[str, RequestStatus]:
        return self._store.renew(request_ids, ttl=ttl)

    def keep(self, request_id: str) -> None:
        self._store.keep(request_id)

    def drop(self, request_id: str) -> None:
        self._store.drop(request_id)

    async def sweep(self) -> list[ApprovalRequest]:
        return self._store.sweep()

    async def resolve(
        self, request_id: str, *, by: str, ran: bool, comment: str | None = None
    ) -> ApprovalRequest:
        return self._store.resolve(request_id, by=by, ran=ran, comment=comment)

    async def get(self, request_id: str) -> ApprovalRequest:
        return self._store.get(request_id)

    async def pending(self, *, limit: int = 100, offset: int = 0) -> list[ApprovalRequest]:
        return self._store.pending(limit=limit, offset=offset)

    async def get_many(self, ids: Sequence[str]) -> list[ApprovalRequest]:
        return self._store.get_many(ids)

    async def queue(
        self,
        *,
        agent: str | None = None,
        tool: str | None = None,
        risk: Risk | str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[list[ApprovalRequest], int]:
        return self._store.queue(agent=agent, tool=tool, risk=risk, limit=limit, offset=offset)

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
        return self._store.history(
            agent=agent,
            tool=tool,
            status=status,
            approver=approver,
            since=since,
            until=until,
            limit=limit,
            offset=offset,
        )

    async def audit_page(self, *, before: str | None = None, limit: int = 50) -> list[StoredEvent]:
        return self._store.audit_page(before=before, limit=limit)

    async def use_once(self, key: str, ttl: float) -> bool:
        return self._store.use_once(key, ttl)

    async def hit(self, key: str, window: float) -> int:
        return self._store.hit(key, window)

    async def remember(self, key: str, value: str, ttl: float) -> None:
        """Example: ``await store.aio.remember("slack:" + request.id, ref, 86400)``."""
        self._store.remember(key, value, ttl)

    async def recall(self, key: str) -> str | None:
        """Example: ``ref = await store.aio.recall("slack:" + request.id)``."""
        return self._store.recall(key)

    async def changes(self) -> AsyncIterator[str]:
        """Ids of requests created or changed; ``""`` first, and after falling behind."""
        store = self._store
        queue: asyncio.Queue[str] = asyncio.Queue(FEED_QUEUE)
        feed = (asyncio.get_running_loop(), queue)
        queue.put_nowait(RESYNC)  # live from here on: read the state now
        with store._lock:
            store._feeds.add(feed)
        try:
            while True:
                yield await queue.get()
        finally:
            with store._lock:
                store._feeds.discard(feed)

    async def decide(
        self, request_id: str, decision: Decision, *, args: Mapping[str, Any] | None = None
    ) -> ApprovalRequest:
        return self._store.decide(request_id, decision, args=args)

    async def expire(self, request_id: str) -> ApprovalRequest:
        return self._store.expire(request_id)

    async def cancel(
        self, request_id: str, *, by: str, reason: str | None = None
    ) -> ApprovalRequest:
        return self._store.cancel(request_id, by=by, reason=reason)

    async def claim(
        self,
        request_id: str,
        *,
        args_digest: str,
        token: str | None = None,
        created_at: dt.datetime | None = None,
        plan: Mapping[str, Any] | None = None,
    ) -> ApprovalRequest:
        return self._store.claim(
            request_id, args_digest=args_digest, token=token, created_at=created_at, plan=plan
        )

    async def refuse(self, request_id: str, *, why: str) -> ApprovalRequest:
        return self._store.refuse(request_id, why=why)

    async def finish(
        self, request_id: str, *, ok: bool, outcome: str | None, token: str | None = None
    ) -> ApprovalRequest:
        return self._store.finish(request_id, ok=ok, outcome=outcome, token=token)

    async def wait(self, request_id: str, timeout: float) -> ApprovalRequest:
        store = self._store
        loop = asyncio.get_running_loop()
        woken = asyncio.Event()

        def wake() -> None:
            loop.call_soon_threadsafe(woken.set)

        with store._lock:
            store._async_waiters.setdefault(request_id, []).append(wake)
        try:
            deadline = loop.time() + max(timeout, 0.0)
            while True:
                woken.clear()  # before reading, so a wake-up in between is not lost
                req = store.get(request_id)
                remaining = deadline - loop.time()
                if req.status.decided or remaining <= 0:
                    return req
                try:
                    await asyncio.wait_for(woken.wait(), remaining)
                except asyncio.TimeoutError:
                    return store.get(request_id)
        finally:
            with store._lock:
                waiters = store._async_waiters.get(request_id, [])
                waiters.remove(wake)
                if not waiters:
                    store._async_waiters.pop(request_id, None)

    async def flag_tampering(self, request_id: str, why: str, event: Draft) -> None:
        self._store.flag_tampering(request_id, why, event)

    async def halt(
        self,
        scope: HaltScope,
        target: str,
        *,
        by: str,
        reason: str | None = None,
        agent: str | None = None,
    ) -> list[str]:
        return self._store.halt(scope, target, by=by, reason=reason, agent=agent)

    async def resume(self, scope: HaltScope, target: str, *, by: str) -> bool:
        return self._store.resume(scope, target, by=by)

    async def halts(self) -> list[Halt]:
        return self._store.halts()

    async def aclose(self) -> None:
        self._store.close()
