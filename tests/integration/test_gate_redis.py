"""The gate end to end on RedisStore, decided from a second store (another process's view)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from gatekeeper import (
    AgentHalted,
    ApprovalDenied,
    Gatekeeper,
    RedisStore,
    RequestStatus,
)
from gatekeeper.testing import RecordingChannel
from tests.conftest import RedisServer
from tests.gatekit import audit_kinds, make_policy

# Every guarded call here runs on the blocking driver and on the async one.
pytestmark = [pytest.mark.redis, pytest.mark.usefixtures("both_faces")]
S = RequestStatus


@pytest.fixture
def gates(
    redis_server: RedisServer, redis_prefix: str
) -> Iterator[tuple[Gatekeeper, Gatekeeper, RecordingChannel]]:
    """The agent's gate and an approver's gate: separate RedisStores on one URL and prefix."""
    chan = RecordingChannel()
    agent = Gatekeeper(
        policy=make_policy(),
        store=RedisStore(redis_server.url, prefix=redis_prefix),
        channels=[chan],
    )
    console = Gatekeeper(
        policy=make_policy(), store=RedisStore(redis_server.url, prefix=redis_prefix)
    )
    yield agent, console, chan
    agent.close()
    console.close()


def test_sync_call_approved_from_another_store_in_another_thread(
    gates: tuple[Gatekeeper, Gatekeeper, RecordingChannel],
) -> None:
    agent, console, chan = gates
    runs: list[tuple[str, float]] = []

    @agent.guard
    def refund(order_id: str, amount: float) -> str:
        runs.append((order_id, amount))
        return "refunded"

    def approve() -> None:
        req = chan.wait_for_request()
        assert [r.id for r in console.pending()] == [req.id]
        console.approve(req.id, approver="alice", comment="ok")

    helper = threading.Thread(target=approve)
    helper.start()
    with agent.session(agent="billing-bot"):
        assert refund("A-1", 20.0) == "refunded"
    helper.join()
    assert runs == [("A-1", 20.0)]
    req = console.get(chan.notified[0].id)
    assert req.status is S.EXECUTED
    assert req.decided_by == "alice"
    assert audit_kinds(console) == [
        "call.held",
        "request.approved",
        "request.released",
        "request.executed",
    ]
    assert console.verify_audit().ok


def test_edited_args_from_another_store_are_what_runs(
    gates: tuple[Gatekeeper, Gatekeeper, RecordingChannel],
) -> None:
    agent, console, chan = gates
    runs: list[int] = []

    @agent.guard
    def refund(amount: int) -> None:
        runs.append(amount)

    with ThreadPoolExecutor(1) as pool:
        fut = pool.submit(refund, 900)
        req = chan.wait_for_request()
        console.approve(req.id, approver="alice", args={"amount": 90})
        fut.result(timeout=10)
    assert runs == [90]
    assert agent.get(req.id).args == {"amount": 90}


async def test_async_calls_approved_from_another_store(
    gates: tuple[Gatekeeper, Gatekeeper, RecordingChannel],
) -> None:
    agent, console, chan = gates

    @agent.guard
    async def refund(order_id: str) -> str:
        return f"refunded {order_id}"

    tasks = [asyncio.create_task(refund(f"A-{i}")) for i in range(3)]
    for n in range(1, 4):
        req = await asyncio.to_thread(chan.wait_for_request, n)
        await asyncio.to_thread(console.approve, req.id, approver="alice")
    results = await asyncio.wait_for(asyncio.gather(*tasks), 10)
    assert sorted(results) == ["refunded A-0", "refunded A-1", "refunded A-2"]
    await agent.store.aio.aclose()
    assert console.verify_audit().ok


def test_deny_with_comment_from_another_store(
    gates: tuple[Gatekeeper, Gatekeeper, RecordingChannel],
) -> None:
    agent, console, chan = gates
    runs: list[int] = []

    @agent.guard
    def refund(amount: int) -> None:
        runs.append(amount)

    with ThreadPoolExecutor(1) as pool:
        fut = pool.submit(refund, 5)
        req = chan.wait_for_request()
        console.deny(req.id, approver="bob", comment="not this customer")
        with pytest.raises(ApprovalDenied) as info:
            fut.result(timeout=10)
    assert runs == []
    assert (info.value.approver, info.value.comment) == ("bob", "not this customer")


def test_halt_from_another_store_cancels_held_call_and_refuses_new_ones(
    gates: tuple[Gatekeeper, Gatekeeper, RecordingChannel],
) -> None:
    agent, console, chan = gates
    runs: list[str] = []

    @agent.guard
    def refund(amount: int) -> None:
        runs.append("refund")

    @agent.guard
    def read_docs() -> None:
        runs.append("read")

    with ThreadPoolExecutor(1) as pool:
        session = agent.session(agent="rogue")
        fut = pool.submit(session.wrap(refund), 5)
        req = chan.wait_for_request()
        assert console.halt(agent="rogue", by="ops", reason="runaway") == [req.id]
        with pytest.raises(AgentHalted):
            fut.result(timeout=10)
    with session, pytest.raises(AgentHalted):
        read_docs()
    with agent.session(agent="other-bot"):
        read_docs()  # another agent is not affected
    assert runs == ["read"]
    assert console.get(req.id).status is S.CANCELLED
    assert console.resume(agent="rogue", by="ops")
    with session:
        read_docs()
    assert runs == ["read", "read"]
    assert agent.verify_audit().ok


async def test_async_waiter_is_halted_from_another_store(
    gates: tuple[Gatekeeper, Gatekeeper, RecordingChannel],
) -> None:
    agent, console, chan = gates

    @agent.guard
    async def refund(amount: int) -> None:
        raise AssertionError("must not run")

    async with agent.session(agent="rogue"):
        task = asyncio.create_task(refund(1))
        await asyncio.to_thread(chan.wait_for_request)
        await asyncio.to_thread(console.halt, everything=True, by="ops")
        with pytest.raises(AgentHalted):
            await asyncio.wait_for(task, 10)
    await agent.store.aio.aclose()
