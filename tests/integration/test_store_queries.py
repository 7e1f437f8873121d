"""What the web console reads from a store, one contract for MemoryStore and RedisStore.

queue / history / get_many / audit_page / use_once / hit on both faces, and the
async change feed (``store.aio.changes()``), on a real redis-server for Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import threading
import time
from collections.abc import AsyncIterator
from contextlib import aclosing

import pytest
import redis

from gatekeeper import audit
from gatekeeper.models import ApprovalRequest, HaltScope, RequestStatus, Risk
from gatekeeper.store import MemoryStore, RedisStore, Store
from gatekeeper.store._changes import RESYNC, offer_change
from gatekeeper.testing import ManualClock
from tests.conftest import RedisServer
from tests.storekit import held_event, make_request, vote

S = RequestStatus


def hold(store: Store, req: ApprovalRequest) -> ApprovalRequest:
    store.hold(req, held_event(req))
    return req


def ids(requests: list[ApprovalRequest]) -> list[str]:
    return [r.id for r in requests]


def named(req: ApprovalRequest, rid: str) -> ApprovalRequest:
    return req.model_copy(update={"id": rid})


# -- get_many ------------------------------------------------------------------------------
def test_get_many_keeps_the_order_asked_and_skips_unknown_ids(
    clock: ManualClock, store: Store
) -> None:
    a, b, c = (hold(store, make_request(clock)) for _ in range(3))
    store.decide(b.id, vote(clock, b, "alice"))
    got = store.get_many([c.id, "nope", a.id, b.id])
    assert ids(got) == [c.id, a.id, b.id]
    assert got[2].status is S.APPROVED
    assert got[0] == c
    assert store.get_many([]) == []


# -- queue ---------------------------------------------------------------------------------
@pytest.fixture
def mixed(clock: ManualClock, store: Store) -> dict[str, ApprovalRequest]:
    """Five pending requests of mixed risk, expiry, agent and tool."""

    def req(rid: str, risk: Risk, timeout: float, agent: str, tool: str) -> ApprovalRequest:
        made = make_request(clock, risk=risk, timeout=timeout, agent=agent, tool=tool)
        return hold(store, named(made, rid))

    return {
        "low_soon": req("q1", Risk.LOW, 10, "billing-bot", "refund"),
        "crit_late": req("q2", Risk.CRITICAL, 100, "search-bot", "wipe"),
        "high_b": req("q4", Risk.HIGH, 50, "billing-bot", "refund"),
        "crit_soon": req("q3", Risk.CRITICAL, 20, "billing-bot", "wipe"),
        "high_a": req("q0", Risk.HIGH, 50, "search-bot", "refund"),  # ties high_b: id decides
        "medium": req("q5", Risk.MEDIUM, 5, "search-bot", "email"),
    }


URGENT_ORDER = ["crit_soon", "crit_late", "high_a", "high_b", "medium", "low_soon"]


def test_queue_is_most_urgent_first_risk_then_expiry_then_id(
    store: Store, mixed: dict[str, ApprovalRequest]
) -> None:
    page, total = store.queue()
    assert ids(page) == [mixed[n].id for n in URGENT_ORDER]
    assert total == 6
    assert page[0] == mixed["crit_soon"]


def test_queue_pages_keep_the_total(store: Store, mixed: dict[str, ApprovalRequest]) -> None:
    expected = [mixed[n].id for n in URGENT_ORDER]
    seen = []
    for offset in range(0, 7, 2):
        page, total = store.queue(limit=2, offset=offset)
        assert total == 6
        seen += ids(page)
    assert seen == expected
    assert store.queue(limit=3, offset=1)[0] == [mixed[n] for n in URGENT_ORDER[1:4]]
    assert store.queue(limit=10, offset=6) == ([], 6)
    assert store.queue(limit=0) == ([], 6)


def test_deep_pages_of_a_long_queue_are_its_merged_order(clock: ManualClock, store: Store) -> None:
    """Pages far into a queue of several agents (one with a long index, sampled to find
    the page; others short, read whole) are exactly the order of all of it merged: risk,
    then expiry, then id, with many expiries shared across agents."""
    lengths = {"billing-bot": 700, "search-bot": 120, "ops-bot": 40}
    made = []
    n = 0
    for agent, count in lengths.items():
        for _ in range(count):
            risk = (Risk.HIGH, Risk.LOW)[n % 5 == 0]
            req = make_request(clock, agent=agent, risk=risk, timeout=100 + (n * 7) % 37)
            made.append(named(req, f"d{(n * 7919) % 100_003:06d}"))
            n += 1
    for req in made:
        hold(store, req)
    urgency = {Risk.HIGH: 0, Risk.LOW: 1}
    order = [
        r.id
        for r in sorted(made, key=lambda r: (urgency[r.classification.risk], r.expires_at, r.id))
    ]
    for offset in (0, 399, 400, 401, 512, 689, 690, 691, 777, 810, 859, 860):
        page, total = store.queue(limit=50, offset=offset)
        assert total == len(made)
        assert ids(page) == order[offset : offset + 50], offset


def test_queue_filters_by_risk_agent_and_tool(
    store: Store, mixed: dict[str, ApprovalRequest]
) -> None:
    def q(**kw: object) -> tuple[list[str], int]:
        page, total = store.queue(**kw)  # type: ignore[arg-type]
        return ids(page), total

    m = {n: r.id for n, r in mixed.items()}
    assert q(risk=Risk.HIGH) == ([m["high_a"], m["high_b"]], 2)
    assert q(risk="critical") == ([m["crit_soon"], m["crit_late"]], 2)
    assert q(agent="billing-bot") == ([m["crit_soon"], m["high_b"], m["low_soon"]], 3)
    assert q(tool="refund") == ([m["high_a"], m["high_b"], m["low_soon"]], 3)
    assert q(agent="search-bot", tool="refund") == ([m["high_a"]], 1)
    assert q(agent="billing-bot", risk="critical") == ([m["crit_soon"]], 1)
    assert q(agent="billing-bot", limit=1, offset=1) == ([m["high_b"]], 3)
    assert q(agent="nobody") == ([], 0)
    with pytest.raises(ValueError, match="apocalyptic"):
        store.queue(risk="apocalyptic")


def test_queue_leaves_out_and_does_not_count_requests_past_expiry(
    clock: ManualClock, store: Store, mixed: dict[str, ApprovalRequest]
) -> None:
    """Expired but not yet settled by any transition: neither listed nor counted."""
    clock.advance(5)  # exactly at the medium one's expiry: expired (expiry = deny)
    page, total = store.queue()
    assert ids(page) == [mixed[n].id for n in URGENT_ORDER if n != "medium"]
    assert total == 5
    clock.advance(16)  # low_soon (10 s) and crit_soon (20 s) lapse too
    assert store.queue() == ([mixed["crit_late"], mixed["high_a"], mixed["high_b"]], 3)
    assert store.queue(agent="billing-bot") == ([mixed["high_b"]], 1)
    assert store.get(mixed["low_soon"].id).status is S.PENDING  # nothing was written


def test_decided_cancelled_and_halted_requests_leave_the_queue(
    clock: ManualClock, store: Store, mixed: dict[str, ApprovalRequest]
) -> None:
    store.decide(mixed["crit_soon"].id, vote(clock, mixed["crit_soon"], "alice"))
    store.decide(mixed["high_a"].id, vote(clock, mixed["high_a"], "bob", approve=False))
    store.cancel(mixed["medium"].id, by="agent:search-bot")
    store.halt(HaltScope.AGENT, "billing-bot", by="ops")  # cancels high_b and low_soon
    assert store.queue() == ([mixed["crit_late"]], 1)
    assert store.queue(risk="high") == ([], 0)


def test_a_vote_short_of_quorum_keeps_the_request_queued(clock: ManualClock, store: Store) -> None:
    req = hold(store, make_request(clock, quorum=2))
    store.decide(req.id, vote(clock, req, "alice"))
    page, total = store.queue()
    assert (ids(page), total) == ([req.id], 1)
    assert [d.approver for d in page[0].approvals] == ["alice"]


# -- history -------------------------------------------------------------------------------
@pytest.fixture
def past(clock: ManualClock, store: Store) -> dict[str, ApprovalRequest]:
    """Requests one minute apart, left in every kind of state."""
    made: dict[str, ApprovalRequest] = {}

    def req(name: str, timeout: float = 600, **kw: object) -> ApprovalRequest:
        made[name] = hold(store, make_request(clock, timeout=timeout, **kw))  # type: ignore[arg-type]
        clock.advance(60)
        return made[name]

    approved = req("approved", agent="billing-bot", tool="refund")
    denied = req("denied", agent="search-bot", tool="refund")
    voted = req("voted", agent="billing-bot", tool="wipe", quorum=2)
    lapsed = req("lapsed", agent="search-bot", tool="email", timeout=30)
    req("pending", agent="billing-bot", tool="email")
    store.decide(approved.id, vote(clock, approved, "alice"))
    store.decide(denied.id, vote(clock, denied, "bob", approve=False, comment="no"))
    store.decide(voted.id, vote(clock, voted, "bob"))
    assert store.get(lapsed.id).status is S.PENDING  # past expiry, never settled
    return made


def test_history_is_every_request_newest_first(
    store: Store, past: dict[str, ApprovalRequest]
) -> None:
    got = store.history()
    assert [r.id for r in got] == [past[n].id for n in reversed(list(past))]
    assert got[-1].status is S.APPROVED and got[-1].decided_by == "alice"
    assert ids(store.history(limit=2, offset=1)) == [past["lapsed"].id, past["voted"].id]
    assert store.history(offset=5) == []


def test_history_breaks_creation_time_ties_by_id_descending(
    clock: ManualClock, store: Store
) -> None:
    for rid in ("h-b", "h-c", "h-a"):
        hold(store, named(make_request(clock), rid))
    assert ids(store.history()) == ["h-c", "h-b", "h-a"]


def test_history_filters(store: Store, past: dict[str, ApprovalRequest]) -> None:
    def h(**kw: object) -> list[str]:
        found = store.history(**kw)  # type: ignore[arg-type]
        return [n for r in found for n, p in past.items() if p.id == r.id]

    assert h(agent="billing-bot") == ["pending", "voted", "approved"]
    assert h(tool="refund") == ["denied", "approved"]
    assert h(agent="search-bot", tool="email") == ["lapsed"]
    assert h(status="denied") == ["denied"]
    assert h(status=S.APPROVED) == ["approved"]
    assert h(status="pending") == ["pending", "voted"]
    assert h(status="expired") == ["lapsed"]  # what a transition would find now
    assert h(approver="bob") == ["voted", "denied"]  # any vote, not only the deciding one
    assert h(approver="alice") == ["approved"]
    assert h(approver="bob", status="pending") == ["voted"]
    assert h(agent="nobody") == []
    with pytest.raises(ValueError, match="limbo"):
        store.history(status="limbo")


def test_history_since_is_inclusive_and_until_exclusive(
    store: Store, past: dict[str, ApprovalRequest]
) -> None:
    def h(since: dt.datetime | None = None, until: dt.datetime | None = None) -> list[str]:
        found = store.history(since=since, until=until)
        return [n for r in found for n, p in past.items() if p.id == r.id]

    voted_at = past["voted"].created_at
    assert h(since=voted_at) == ["pending", "lapsed", "voted"]
    assert h(until=voted_at) == ["denied", "approved"]
    assert h(since=past["denied"].created_at, until=past["lapsed"].created_at) == [
        "voted",
        "denied",
    ]
    assert (
        h(since=voted_at + dt.timedelta(seconds=1), until=voted_at + dt.timedelta(seconds=59)) == []
    )


# -- audit_page ------------------------------------------------------------------------------
def test_audit_pages_walk_the_whole_log_newest_first(clock: ManualClock, store: Store) -> None:
    for i in range(6):
        req = hold(store, make_request(clock, args={"i": i}))
        store.decide(req.id, vote(clock, req, "alice", approve=i % 2 == 0))
    store.record_soon([{"kind": "call.executed", "at": 1, "actor": "agent:x", "data": {}}])
    walked = []
    before = None
    while True:
        page = store.audit_page(before=before, limit=5)
        assert len(page) <= 5
        if not page:
            break
        walked += page
        before = page[-1].entry_id
    everything = list(store.audit_entries())
    assert len(everything) == 13  # the queued event was sealed for the first page
    assert walked == everything[::-1]
    seqs = [audit.parse_event(e.body, e.hash).seq for e in walked]
    assert seqs == list(range(13, 0, -1))


def test_audit_page_edges(clock: ManualClock, store: Store) -> None:
    assert store.audit_page() == []
    for _ in range(3):
        hold(store, make_request(clock))
    entries = list(store.audit_entries())
    assert store.audit_page(before=entries[0].entry_id) == []
    assert store.audit_page(before=entries[2].entry_id, limit=1) == [entries[1]]
    assert store.audit_page(limit=0) == []
    with pytest.raises(ValueError, match="not an audit entry id"):
        store.audit_page(before="<script>")


# -- use_once / hit ------------------------------------------------------------------------------
def _let_time_pass(clock: ManualClock, store: Store, seconds: float) -> None:
    """Memory keys go by the store's clock; Redis keys expire in Redis's own time."""
    if isinstance(getattr(store, "store", store), MemoryStore):  # itself, or its async face
        clock.advance(seconds)
    else:
        time.sleep(seconds)


def test_use_once_is_true_only_the_first_time(store: Store) -> None:
    assert store.use_once("login:n1", 900) is True
    assert store.use_once("login:n1", 900) is False
    assert store.use_once("login:n2", 900) is True


def test_use_once_key_is_free_again_after_its_ttl(clock: ManualClock, store: Store) -> None:
    assert store.use_once("n", 0.2)
    _let_time_pass(clock, store, 0.3)
    assert store.use_once("n", 0.2)
    assert not store.use_once("n", 0.2)


def test_hit_counts_within_the_window_per_key(clock: ManualClock, store: Store) -> None:
    assert [store.hit("login:alice:1.2.3.4", 300) for _ in range(3)] == [1, 2, 3]
    assert store.hit("login:bob:1.2.3.4", 300) == 1


def test_hit_count_starts_again_after_the_window(clock: ManualClock, store: Store) -> None:
    assert [store.hit("k", 0.2) for _ in range(2)] == [1, 2]
    _let_time_pass(clock, store, 0.3)
    assert [store.hit("k", 0.2) for _ in range(2)] == [1, 2]


def test_redis_once_and_hit_keys_share_the_hash_tag(
    redis_server: RedisServer, redis_prefix: str
) -> None:
    store = RedisStore(redis_server.url, prefix=redis_prefix)
    raw = redis.Redis.from_url(redis_server.url)
    try:
        store.use_once("login:x", 60)
        store.hit("login:y", 60)
        keys = sorted(k.decode() for k in raw.keys(f"{{{redis_prefix}}}:*"))
        assert keys == [f"{{{redis_prefix}}}:hits:login:y", f"{{{redis_prefix}}}:once:login:x"]
        assert 0 < raw.pttl(keys[0]) <= 60_000 and 0 < raw.pttl(keys[1]) <= 60_000
    finally:
        store.close()
        raw.close()


# -- the async face ---------------------------------------------------------------------------
async def test_async_face_answers_as_the_blocking_one(
    clock: ManualClock, store: Store, mixed: dict[str, ApprovalRequest]
) -> None:
    aio = store.aio
    try:
        store.decide(mixed["high_b"].id, vote(clock, mixed["high_b"], "carol"))
        assert await aio.queue(limit=3, offset=1) == store.queue(limit=3, offset=1)
        assert await aio.queue(agent="search-bot") == store.queue(agent="search-bot")
        assert await aio.history(approver="carol") == [store.get(mixed["high_b"].id)]
        assert await aio.history(limit=2) == store.history(limit=2)
        wanted = [mixed["medium"].id, "nope", mixed["crit_late"].id]
        assert await aio.get_many(wanted) == store.get_many(wanted)
        assert await aio.audit_page(limit=4) == store.audit_page(limit=4)
        assert await aio.use_once("a", 60) and not await aio.use_once("a", 60)
        assert not store.use_once("a", 60)
        assert [await aio.hit("h", 60), store.hit("h", 60), await aio.hit("h", 60)] == [1, 2, 3]
    finally:
        await aio.aclose()


# -- changes() ------------------------------------------------------------------------------------
async def next_change(feed: AsyncIterator[str]) -> str:
    return await asyncio.wait_for(feed.__anext__(), 10)


async def read_until(feed: AsyncIterator[str], rid: str) -> list[str]:
    seen = [await next_change(feed)]
    while seen[-1] != rid:
        seen.append(await next_change(feed))
    return seen


async def test_changes_starts_live_then_reports_arrivals_and_decisions(
    clock: ManualClock, store: Store
) -> None:
    try:
        async with aclosing(store.aio.changes()) as feed:
            assert await next_change(feed) == RESYNC  # live: read the state now
            req = make_request(clock, quorum=2)
            await store.aio.hold(req, held_event(req))
            assert await next_change(feed) == req.id
            await asyncio.to_thread(store.decide, req.id, vote(clock, req, "alice"))
            assert await next_change(feed) == req.id
            await store.aio.cancel(req.id, by="ops")
            assert await next_change(feed) == req.id
    finally:
        await store.aio.aclose()


async def test_changes_fans_out_to_every_reader(clock: ManualClock, store: Store) -> None:
    try:
        async with contextlib.AsyncExitStack() as stack:
            feeds = [await stack.enter_async_context(aclosing(store.aio.changes())) for _ in "abc"]
            for feed in feeds:
                assert await next_change(feed) == RESYNC
            req = hold(store, make_request(clock))
            assert [await next_change(f) for f in feeds] == [req.id] * 3
    finally:
        await store.aio.aclose()


async def test_a_reader_that_falls_behind_is_told_to_resync(
    clock: ManualClock, store: Store
) -> None:
    """Past 1,000 unread changes, what it held gives way to one RESYNC; later ids follow it."""
    try:
        async with aclosing(store.aio.changes()) as slow, aclosing(store.aio.changes()) as quick:
            assert await next_change(slow) == RESYNC
            assert await next_change(quick) == RESYNC
            reqs = [make_request(clock) for _ in range(1002)]

            def hold_all() -> None:
                for r in reqs:
                    store.hold(r, held_event(r))

            # The quick reader keeps up; once it has seen the last id, every
            # change has been offered to the slow one too (in order).
            quick_done = asyncio.ensure_future(read_until(quick, reqs[-1].id))
            await asyncio.to_thread(hold_all)
            await asyncio.wait_for(quick_done, 20)
            # 1,000 queued, the 1,001st overflowed it into RESYNC, the 1,002nd follows.
            assert [await next_change(slow), await next_change(slow)] == [RESYNC, reqs[-1].id]
            later = hold(store, make_request(clock))
            assert await next_change(slow) == later.id
    finally:
        await store.aio.aclose()


def test_offer_change_replaces_a_full_queue_with_one_resync() -> None:
    queue: asyncio.Queue[str] = asyncio.Queue(3)
    for rid in ("a", "b", "c", "d", "e"):
        offer_change(queue, rid)
    assert [queue.get_nowait() for _ in range(queue.qsize())] == [RESYNC, "e"]


async def test_memory_changes_reach_a_reader_on_another_loop() -> None:
    """A MemoryStore changed from another thread's loop wakes a reader on this one."""
    clock = ManualClock()
    store = MemoryStore(clock=clock)
    async with aclosing(store.aio.changes()) as feed:
        assert await next_change(feed) == RESYNC
        req = make_request(clock)
        thread = threading.Thread(target=lambda: asyncio.run(store.aio.hold(req, held_event(req))))
        thread.start()
        try:
            assert await next_change(feed) == req.id
        finally:
            thread.join()


async def test_redis_changes_made_by_another_store_instance_arrive(
    redis_server: RedisServer, redis_prefix: str
) -> None:
    """A console sees what another process (another RedisStore) holds and decides."""
    clock = ManualClock()
    console = RedisStore(redis_server.url, prefix=redis_prefix, clock=clock)
    agent_side = RedisStore(redis_server.url, prefix=redis_prefix, clock=clock)
    try:
        async with aclosing(console.aio.changes()) as feed:
            assert await next_change(feed) == RESYNC
            req = make_request(clock)
            await asyncio.to_thread(agent_side.hold, req, held_event(req))
            assert await next_change(feed) == req.id
            await asyncio.to_thread(agent_side.decide, req.id, vote(clock, req, "alice"))
            assert await next_change(feed) == req.id
            assert (await console.aio.get(req.id)).status is S.APPROVED
    finally:
        await console.aio.aclose()
        console.close()
        agent_side.close()


async def test_redis_changes_resync_after_the_subscription_is_killed(
    redis_server: RedisServer, redis_prefix: str
) -> None:
    clock = ManualClock()
    store = RedisStore(redis_server.url, prefix=redis_prefix, clock=clock)
    admin = redis.Redis.from_url(redis_server.url)
    try:
        async with aclosing(store.aio.changes()) as feed:
            assert await next_change(feed) == RESYNC
            assert admin.client_kill_filter(_type="pubsub") >= 1
            assert await next_change(feed) == RESYNC  # re-subscribed: re-read everything
            req = make_request(clock)
            await asyncio.to_thread(store.hold, req, held_event(req))
            assert await next_change(feed) == req.id
    finally:
        await store.aio.aclose()
        store.close()
        admin.close()


# -- the Redis indexes behind them ---------------------------------------------------------------
def test_redis_indexes_follow_the_request(redis_server: RedisServer, redis_prefix: str) -> None:
    """hold writes the agent's per-risk index, owners (with the tool) and requests, and
    where the request lives; settling clears the pending indexes."""
    clock = ManualClock()
    store = RedisStore(redis_server.url, prefix=redis_prefix, clock=clock)
    raw = redis.Redis.from_url(redis_server.url, decode_responses=True)
    tag = f"{{{redis_prefix}:a}}"
    try:
        req = hold(store, make_request(clock, risk=Risk.CRITICAL, agent="a", session_id="s"))
        assert raw.hget(f"{{{redis_prefix}}}:where", req.id) == "a"
        assert raw.sismember(f"{{{redis_prefix}}}:agents", "a")
        assert raw.hget(f"{tag}:req:{req.id}", "risk") == "critical"
        assert json.loads(raw.hget(f"{tag}:idx:owners", req.id)) == ["a", "s", "refund"]
        expires_ms = int(req.expires_at.timestamp() * 1000)
        assert raw.zscore(f"{tag}:idx:pending:critical", req.id) == expires_ms
        created_ms = int(req.created_at.timestamp() * 1000)
        assert raw.zscore(f"{tag}:idx:requests", req.id) == created_ms
        clock.advance(61)
        store.expire(req.id)
        assert raw.zscore(f"{tag}:idx:pending:critical", req.id) is None
        assert raw.hget(f"{tag}:idx:owners", req.id) is None
        assert raw.zscore(f"{tag}:idx:requests", req.id) == created_ms  # history keeps it
    finally:
        store.close()
        raw.close()


def test_redis_halt_reads_owners_old_and_new(redis_server: RedisServer, redis_prefix: str) -> None:
    """owners is a JSON [agent, session, tool] now; older newline values still work for halts."""
    clock = ManualClock()
    store = RedisStore(redis_server.url, prefix=redis_prefix, clock=clock)
    raw = redis.Redis.from_url(redis_server.url)
    try:
        old = hold(store, make_request(clock, agent="a", session_id="s1"))
        raw.hset(f"{{{redis_prefix}:a}}:idx:owners", old.id, "a\ns1")  # as an older release
        odd = hold(store, make_request(clock, agent="b", session_id="s\nwith a newline"))
        assert store.halt(HaltScope.SESSION, "s1", by="ops") == [old.id]
        assert store.halt(HaltScope.SESSION, "s\nwith a newline", by="ops") == [odd.id]
        assert store.queue() == ([], 0)
    finally:
        store.close()
        raw.close()
