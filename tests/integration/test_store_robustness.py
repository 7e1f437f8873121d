"""Lost replies, hostile names, one server clock and long-lived processes: the store holds up."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import time
from typing import Any

import pytest
import redis

from gatekeeper import audit
from gatekeeper._errors import TransitionRefused
from gatekeeper.models import HaltScope, RequestStatus
from gatekeeper.store import RedisStore, Store
from gatekeeper.testing import ManualClock
from tests.conftest import RedisServer
from tests.storekit import held_event, make_request, vote

S = RequestStatus


def test_a_retried_claim_with_its_token_gets_its_claim_back(
    clock_and_store: tuple[ManualClock, Store],
) -> None:
    """A claim whose reply was lost is retried with the same token: it is not refused."""
    clock, store = clock_and_store
    req = make_request(clock)
    store.hold(req, held_event(req))
    store.decide(req.id, vote(clock, req, "alice"))
    first = store.claim(req.id, args_digest=req.args_digest, token="attempt-1")
    again = store.claim(req.id, args_digest=req.args_digest, token="attempt-1")
    assert first.status is again.status is S.EXECUTING
    with pytest.raises(TransitionRefused, match="at most once"):
        store.claim(req.id, args_digest=req.args_digest, token="attempt-2")
    kinds = [audit.parse_event(e.body, e.hash).kind for e in store.audit_entries()]
    assert kinds.count("request.released") == 1


def test_a_comment_cannot_pass_for_the_edited_arguments(
    clock_and_store: tuple[ManualClock, Store],
) -> None:
    """The audit event of an edit records the edit where it belongs, whatever the comment says."""
    clock, store = clock_and_store
    req = make_request(clock, args={"amount": 500})
    store.hold(req, held_event(req))
    edited = {"amount": 7}
    decision = vote(clock, req, "alice", comment="\x00RAW\x00", args=edited)
    store.decide(req.id, decision, args=edited)
    event = audit.parse_event(list(store.audit_entries())[-1].body, "x")
    assert event.data["edited_args"] == {"amount": 7}
    assert event.data["comment"] == "\x00RAW\x00"


def test_halting_an_agent_whose_name_has_a_newline(
    clock_and_store: tuple[ManualClock, Store],
) -> None:
    """Agent names are agent-controlled: a newline in one must not hide its requests."""
    clock, store = clock_and_store
    req = make_request(clock, agent="bot\nevil", session_id="s\n1")
    store.hold(req, held_event(req))
    assert store.halt(HaltScope.AGENT, "bot\nevil", by="ops") == [req.id]
    assert store.get(req.id).status is S.CANCELLED
    assert store.get(req.id).comment == "halted: kill switch"


def test_halt_cancels_in_the_same_step_and_reports_each(
    clock_and_store: tuple[ManualClock, Store],
) -> None:
    """Every pending request of the scope is cancelled by the halt itself; expired ones expire."""
    clock, store = clock_and_store
    live = [make_request(clock, agent="bot", timeout=60) for _ in range(3)]
    stale = make_request(clock, agent="bot", timeout=5)
    for r in [*live, stale]:
        store.hold(r, held_event(r))
    clock.advance(10)
    cancelled = store.halt(HaltScope.AGENT, "bot", by="ops", reason="runaway")
    assert sorted(cancelled) == sorted(r.id for r in live)
    assert store.get(stale.id).status is S.EXPIRED
    kinds = [audit.parse_event(e.body, e.hash).kind for e in store.audit_entries()]
    assert kinds[4] == "halt.set"
    assert sorted(kinds[5:]) == ["request.cancelled"] * 3 + ["request.expired"]


def test_without_an_injected_clock_redis_judges_expiry_by_its_own_time(
    redis_server: RedisServer, redis_prefix: str
) -> None:
    """An approver whose clock runs behind can't approve late: Redis's clock decides."""
    behind = ManualClock(dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1))
    store = RedisStore(redis_server.url, prefix=redis_prefix)  # no clock: server time
    try:
        req = make_request(behind, timeout=60)  # expired an hour ago by the real clock
        store.hold(req, held_event(req))
        with pytest.raises(TransitionRefused, match="expired"):
            store.decide(req.id, vote(behind, req, "alice"))
        assert store.get(req.id).status is S.EXPIRED
    finally:
        store.close()


def test_the_sealer_outlives_an_unexpected_error(
    redis_server: RedisServer, redis_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Any exception in the background sealer is logged and retried, never fatal."""
    store = RedisStore(redis_server.url, prefix=redis_prefix, seal_linger=0)
    sealer = store._sealer
    real = sealer._seal_batch
    failures = [RuntimeError("boom")]

    def flaky(*journal: Any) -> bool:
        if failures:
            raise failures.pop()
        return real(*journal)

    monkeypatch.setattr(sealer, "_seal_batch", flaky)
    try:
        store.record_soon([{"kind": "call.executed", "at": 1, "actor": "a", "data": {}}])
        raw = redis.Redis.from_url(redis_server.url)
        try:
            deadline = time.monotonic() + 5  # the thread retries after its 0.1 s backoff
            while raw.xlen(store.keys.audit) < 1 and time.monotonic() < deadline:
                threading.Event().wait(0.02)
            assert raw.xlen(store.keys.audit) == 1
        finally:
            raw.close()
        assert sealer._thread is not None and sealer._thread.is_alive()
    finally:
        store.close()


def test_one_asyncio_run_after_another_leaves_no_connections(
    redis_server: RedisServer, redis_prefix: str
) -> None:
    """Each event loop's connections close with the loop."""
    clock = ManualClock()
    store = RedisStore(redis_server.url, prefix=redis_prefix, clock=clock)
    admin = redis.Redis.from_url(redis_server.url)
    try:

        async def one_wait() -> None:
            r = make_request(clock)
            await store.aio.hold(r, held_event(r))
            await store.aio.wait(r.id, 0.01)

        asyncio.run(one_wait())
        store.flush()  # the blocking face's own connection exists from here on
        after_one = len(admin.client_list())
        for _ in range(5):
            asyncio.run(one_wait())
        store.flush()
        assert len(admin.client_list()) <= after_one
        assert len(store.aio._loops) <= 1  # type: ignore[attr-defined]
    finally:
        admin.close()
        store.close()
