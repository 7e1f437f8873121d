"""redis-py errors are translated where they enter, and the async subscription survives a kill."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator

import pytest
import redis

from gatekeeper import (
    Gatekeeper,
    RedisStore,
    RequestStatus,
    StoreError,
    StoreUnavailable,
)
from gatekeeper.store._redis import RetryPolicy
from gatekeeper.testing import ManualClock
from tests.conftest import RedisServer
from tests.gatekit import make_policy
from tests.storekit import held_event, make_request, vote

pytestmark = pytest.mark.redis


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens once the socket is closed


@pytest.fixture
def dead_store() -> Iterator[RedisStore]:
    store = RedisStore(
        f"redis://127.0.0.1:{_closed_port()}/0",
        prefix="dead",
        retry=RetryPolicy(attempts=2, within=0.3, max_wait=0.01),
    )
    yield store
    with contextlib.suppress(StoreUnavailable):
        store.close()


def test_unreachable_redis_raises_store_unavailable(dead_store: RedisStore) -> None:
    clock = ManualClock()
    req = make_request(clock)
    with pytest.raises(StoreUnavailable) as info:
        dead_store.get("r1")
    assert isinstance(info.value.__cause__, redis.ConnectionError)
    with pytest.raises(StoreUnavailable):
        dead_store.hold(req, held_event(req))
    with pytest.raises(StoreUnavailable):
        dead_store.admit(held_event(req), agent="a", session_id="s")


async def test_unreachable_redis_raises_store_unavailable_async(dead_store: RedisStore) -> None:
    clock = ManualClock()
    req = make_request(clock)
    with pytest.raises(StoreUnavailable):
        await dead_store.aio.get("r1")
    with pytest.raises(StoreUnavailable):
        await dead_store.aio.hold(req, held_event(req))
    await dead_store.aio.aclose()


def test_allowed_call_fails_closed_when_the_store_is_down(dead_store: RedisStore) -> None:
    gate = Gatekeeper(policy=make_policy(), store=dead_store)
    runs: list[str] = []

    @gate.guard
    def read_docs() -> None:
        runs.append("ran")

    @gate.guard
    def refund(amount: int) -> None:
        runs.append("refund")

    with pytest.raises(StoreUnavailable):
        read_docs()
    with pytest.raises(StoreUnavailable):
        refund(1)  # approval-requiring calls always fail closed
    assert runs == []


def test_allowed_call_runs_when_the_policy_says_on_store_error_allow(
    dead_store: RedisStore,
) -> None:
    gate = Gatekeeper(policy=make_policy("on_store_error: allow\n"), store=dead_store)
    runs: list[str] = []

    @gate.guard
    def read_docs() -> str:
        runs.append("ran")
        return "ok"

    @gate.guard
    def refund(amount: int) -> None:
        runs.append("refund")

    assert read_docs() == "ok"
    with pytest.raises(StoreUnavailable):
        refund(1)
    assert runs == ["ran"]


def test_a_redis_that_refuses_connections_has_recorded_nothing(dead_store: RedisStore) -> None:
    """Connection refused: no command reached Redis, and the error says so."""
    with pytest.raises(StoreUnavailable) as info:
        dead_store.get("r1")
    assert info.value.context["applied"] == "no"  # the words of a real redis-py error
    gate = Gatekeeper(policy=make_policy(), store=dead_store)
    with pytest.raises(StoreUnavailable, match="your approval of request r1 was not recorded"):
        gate.approve("r1", approver="alice")


def test_a_refused_command_is_a_store_error(redis_server: RedisServer, redis_prefix: str) -> None:
    store = RedisStore(redis_server.url, prefix=redis_prefix)
    raw = redis.Redis.from_url(redis_server.url)
    try:
        raw.set(store.keys.of("a").halts, "not a hash")
        with pytest.raises(StoreError) as info:
            store.admit(held_event(make_request(ManualClock())), agent="a", session_id="s")
        assert not isinstance(info.value, StoreUnavailable)
        assert isinstance(info.value.__cause__, redis.ResponseError)
        raw.hset(store.keys.where, "r-bad", "a")
        raw.set(store.keys.of("a").req("r-bad"), "x")
        with pytest.raises(StoreError, match="WRONGTYPE"):
            store.get("r-bad")
    finally:
        raw.delete(store.keys.of("a").halts)
        raw.close()
        store.close()


async def test_async_waiter_survives_a_killed_subscription(
    redis_server: RedisServer, redis_prefix: str
) -> None:
    """A decision made while the pub/sub connection is down still wakes the waiter."""
    clock = ManualClock()
    agent = RedisStore(redis_server.url, prefix=redis_prefix, clock=clock)
    console = RedisStore(redis_server.url, prefix=redis_prefix, clock=clock)
    admin = redis.Redis.from_url(redis_server.url)
    try:
        req = make_request(clock)
        agent.hold(req, held_event(req))
        aio = agent.aio
        reads: list[object] = []
        settled = asyncio.Event()  # the waiter has read twice: before and after subscribing
        real_get = aio.get

        async def get_and_tell(request_id: str):  # type: ignore[no-untyped-def]
            try:
                return await real_get(request_id)
            finally:
                reads.append(request_id)
                if len(reads) >= 2:
                    settled.set()

        aio.get = get_and_tell  # type: ignore[method-assign]
        waiter = asyncio.create_task(aio.wait(req.id, 60))
        await asyncio.wait_for(settled.wait(), 5)  # now blocked on its wake-up event
        # Kill the subscription and decide while the loop can't notice: the
        # PUBLISH reaches nobody; only the re-subscription's wake-up can help.
        assert admin.client_kill_filter(_type="pubsub") >= 1
        console.decide(req.id, vote(clock, req, "alice"))
        after = await asyncio.wait_for(waiter, 10)  # far less than the waiter's own 60 s
        assert after.status is RequestStatus.APPROVED
        assert aio._state().dispatcher.reconnects >= 1  # type: ignore[attr-defined]
        await aio.aclose()
    finally:
        admin.close()
        agent.close()
        console.close()
