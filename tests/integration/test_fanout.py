"""Fan-out: an agent process hears the wake-ups of the agents it waits for, and no others.

Each agent's requests are published on the agent's own channel
(``{prefix:agent}:decided``); a process subscribes to the channels of the
agents its waiters belong to, at once (not after its current read), and drops
them a while after. Run with the shipped ACL users (tests/aclkit.py) on one
node and on a real cluster, where the agent's user may listen and publish on
its own channel only.
"""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from gatekeeper import RedisStore
from gatekeeper.models import ApprovalRequest, RequestStatus
from gatekeeper.store import _wakes
from gatekeeper.store._acl import acl_user
from gatekeeper.store._wakes import LISTEN_STEP, Interest
from gatekeeper.testing import ManualClock
from tests.aclkit import RoleSplitStore
from tests.storekit import held_event, make_request, vote

pytestmark = pytest.mark.redis


class Deployment:
    """A deployment on one node or a cluster, with a way to ask every node who listens."""

    def __init__(self, url: str, nodes: list[tuple[str, int]], prefix: str) -> None:
        self.url, self.nodes, self.prefix = url, nodes, prefix
        self._admins = [redis.Redis(host=h, port=p) for h, p in nodes]

    def numsub(self, channel: str) -> int:
        """Subscribers of ``channel`` over every node (a plain subscription sits on one)."""
        return sum(int(a.pubsub_numsub(channel)[0][1]) for a in self._admins)

    def kill_subscriptions(self) -> int:
        return sum(int(a.client_kill_filter(_type="pubsub")) for a in self._admins)

    def close(self) -> None:
        for a in self._admins:
            a.close()


@pytest.fixture(params=["one-node", "cluster"])
def deployment(request: pytest.FixtureRequest, redis_prefix: str) -> Iterator[Deployment]:
    if request.param == "one-node":
        server = request.getfixturevalue("redis_server")
        dep = Deployment(server.url, [("127.0.0.1", server.port)], redis_prefix)
    else:
        cluster = request.getfixturevalue("redis_cluster")
        dep = Deployment(cluster.url, [("127.0.0.1", n.port) for n in cluster.nodes], redis_prefix)
    yield dep
    dep.close()


def until(check: Callable[[], bool], timeout: float = 5.0) -> float:
    """Seconds until ``check()`` held (polled every 5 ms); fails past ``timeout``."""
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < timeout, "not within the time allowed"
        time.sleep(0.005)
    return time.monotonic() - start


def held(store: Any, clock: ManualClock, agent: str, n: int = 0) -> ApprovalRequest:
    req = make_request(clock, agent=agent, args={"n": n}, timeout=3600)
    store.hold(req, held_event(req))
    return req


class Waiter:
    """``store.wait`` in a thread of its own, noting when it came back."""

    def __init__(self, store: RedisStore, rid: str, timeout: float = 60) -> None:
        self.result: ApprovalRequest | None = None
        self.back = 0.0
        self._thread = threading.Thread(target=self._run, args=(store, rid, timeout), daemon=True)
        self._thread.start()

    def _run(self, store: RedisStore, rid: str, timeout: float) -> None:
        self.result = store.wait(rid, timeout)
        self.back = time.monotonic()

    def join(self, timeout: float = 10) -> ApprovalRequest:
        self._thread.join(timeout)
        assert self.result is not None, "the waiter did not come back"
        return self.result


def test_an_agent_process_hears_only_its_own_agents_wake_ups(deployment: Deployment) -> None:
    clock = ManualClock()
    split = RoleSplitStore(deployment.url, deployment.prefix, clock)
    try:
        alpha, beta = split.agent("alpha"), split.agent("beta")  # each its own ACL user
        mine = held(alpha, clock, "alpha")
        theirs = [held(beta, clock, "beta", n) for n in range(20)]
        heard: list[tuple[str | None, str | None]] = []
        real_wake = alpha._wakes._wake

        def spy(request_id: str | None = None, channel: str | None = None) -> None:
            heard.append((request_id, channel))
            real_wake(request_id, channel)

        alpha._wakes._wake = spy  # type: ignore[method-assign]
        waiter = Waiter(alpha, mine.id)
        a_channel, b_channel = split.keys.of("alpha").channel, split.keys.of("beta").channel
        until(lambda: deployment.numsub(a_channel) == 1)
        assert deployment.numsub(b_channel) == 0  # nobody waits for beta
        for req in theirs:
            split.decider.decide(req.id, vote(clock, req, "alice"))
        time.sleep(0.3)  # any message about beta would be here by now
        split.decider.decide(mine.id, vote(clock, mine, "alice"))
        assert waiter.join().status is RequestStatus.APPROVED
        ids = {rid for rid, _ in heard if rid is not None}
        assert mine.id in ids  # its own decision came as a message
        assert not ids & {r.id for r in theirs}  # none of beta's 20 reached alpha's process
        assert all(ch in (None, a_channel) for _, ch in heard)
    finally:
        split.close()


def test_an_agents_user_may_listen_and_publish_on_its_own_channel_only(
    deployment: Deployment,
) -> None:
    clock = ManualClock()
    split = RoleSplitStore(deployment.url, deployment.prefix, clock)
    prefix = deployment.prefix
    try:
        split.agent("alpha")  # their ACL users exist
        split.agent("beta")

        def login(user: str) -> redis.Redis:
            host, port = deployment.nodes[0]
            return redis.Redis(host=host, port=port, username=user, password=split._passwords[user])

        def subscribe(client: redis.Redis, channel: str, *, pattern: bool = False) -> str:
            pubsub = client.pubsub()
            try:
                (pubsub.psubscribe if pattern else pubsub.subscribe)(channel)
                message = pubsub.get_message(timeout=2)
                assert message is not None
                return str(message["type"])
            finally:
                pubsub.close()

        agent = login(acl_user(prefix, "agent", "alpha"))
        own, other = split.keys.of("alpha").channel, split.keys.of("beta").channel
        assert subscribe(agent, own) == "subscribe"
        agent.publish(own, "r-1")  # a fake wake-up of its own requests: a re-read, no more
        for channel in (other, f"{{{prefix}}}:decided"):
            with pytest.raises(redis.exceptions.NoPermissionError):
                subscribe(agent, channel)
            with pytest.raises(redis.exceptions.NoPermissionError):
                agent.publish(channel, "r-1")
        with pytest.raises(redis.exceptions.NoPermissionError):
            subscribe(agent, split.keys.changes, pattern=True)  # every agent's, as a console

        decider = login(acl_user(prefix, "decider"))
        assert subscribe(decider, split.keys.changes, pattern=True) == "psubscribe"
        decider.publish(other, "r-1")
        agent.close()
        decider.close()
    finally:
        split.close()


def test_a_new_agents_channel_is_subscribed_at_once_and_its_decision_wakes_promptly(
    deployment: Deployment,
) -> None:
    """The listener is blocked in its read (up to LISTEN_STEP) when a new agent is waited on."""
    clock = ManualClock()
    store = RedisStore(deployment.url, prefix=deployment.prefix, clock=clock)
    console = RedisStore(deployment.url, prefix=deployment.prefix, clock=clock)
    try:
        first = held(store, clock, "a0")
        waiting = Waiter(store, first.id)
        until(lambda: deployment.numsub(store.keys.of("a0").channel) == 1)
        time.sleep(0.2)  # the listener is now in its blocking read
        subscribed, woken = [], []
        for i in range(1, 6):
            req = held(store, clock, f"a{i}")
            waiter = Waiter(store, req.id)
            channel = store.keys.of(f"a{i}").channel
            subscribed.append(until(lambda ch=channel: deployment.numsub(ch) == 1))  # type: ignore[misc]
            time.sleep(0.05)
            decided = time.monotonic()
            console.decide(req.id, vote(clock, req, "alice"))
            assert waiter.join().status is RequestStatus.APPROVED
            woken.append(waiter.back - decided)
        console.decide(first.id, vote(clock, first, "alice"))
        assert waiting.join().status is RequestStatus.APPROVED
        # Well under the listener's read step: the waiter did not wait it out.
        assert statistics.median(subscribed) < LISTEN_STEP / 4, subscribed
        assert max(subscribed) < LISTEN_STEP * 0.8, subscribed
        assert statistics.median(woken) < LISTEN_STEP / 4, woken
        assert max(woken) < LISTEN_STEP * 0.8, woken
    finally:
        store.close()
        console.close()


def test_after_a_lost_subscription_every_channel_waited_on_is_subscribed_again(
    deployment: Deployment,
) -> None:
    clock = ManualClock()
    store = RedisStore(deployment.url, prefix=deployment.prefix, clock=clock)
    console = RedisStore(deployment.url, prefix=deployment.prefix, clock=clock)
    try:
        reqs = [held(store, clock, agent) for agent in ("a", "b", "c")]
        waiters = [Waiter(store, r.id) for r in reqs]
        channels = [store.keys.of(agent).channel for agent in ("a", "b", "c")]
        until(lambda: all(deployment.numsub(ch) == 1 for ch in channels))
        assert deployment.kill_subscriptions() >= 1
        until(lambda: all(deployment.numsub(ch) == 1 for ch in channels))  # all three again
        assert store._wakes.reconnects >= 1
        decided = time.monotonic()
        for req in reqs:
            console.decide(req.id, vote(clock, req, "alice"))
        for waiter in waiters:
            assert waiter.join().status is RequestStatus.APPROVED
            # woken by the message, not by the 5 s re-read nor at its 60 s timeout
            assert waiter.back - decided < 2.0
    finally:
        store.close()
        console.close()


def test_a_channel_is_dropped_after_its_last_waiter_lingered(
    redis_server: Any, redis_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_wakes, "LINGER", 0.3)
    dep = Deployment(redis_server.url, [("127.0.0.1", redis_server.port)], redis_prefix)
    clock = ManualClock()
    store = RedisStore(redis_server.url, prefix=redis_prefix, clock=clock)
    console = RedisStore(redis_server.url, prefix=redis_prefix, clock=clock)
    try:
        req = held(store, clock, "a")
        waiter = Waiter(store, req.id)
        channel = store.keys.of("a").channel
        until(lambda: dep.numsub(channel) == 1)
        console.decide(req.id, vote(clock, req, "alice"))
        waiter.join()
        until(lambda: dep.numsub(channel) == 0, timeout=0.3 + 2 * LISTEN_STEP + 1)
        again = held(store, clock, "a", 1)  # waited on again: subscribed again
        waiter = Waiter(store, again.id)
        until(lambda: dep.numsub(channel) == 1)
        console.decide(again.id, vote(clock, again, "alice"))
        assert waiter.join().status is RequestStatus.APPROVED
    finally:
        store.close()
        console.close()
        dep.close()


async def test_async_waiters_hear_their_agents_only_and_a_new_channel_at_once(
    deployment: Deployment,
) -> None:
    clock = ManualClock()
    store = RedisStore(deployment.url, prefix=deployment.prefix, clock=clock)
    console = RedisStore(deployment.url, prefix=deployment.prefix, clock=clock)
    aio = store.aio
    try:
        first = held(store, clock, "a0")
        others = [held(console, clock, "other", n) for n in range(10)]
        long_wait = asyncio.create_task(aio.wait(first.id, 60))
        dispatcher = aio._state().dispatcher  # type: ignore[attr-defined]
        heard: list[str] = []
        real = dispatcher._heard

        def spy(message: dict[str, Any], held_now: set[str]) -> None:
            heard.append(_wakes.text(message.get("data")))
            real(message, held_now)

        dispatcher._heard = spy
        numsub = deployment.numsub

        async def until_async(check: Callable[[], bool]) -> float:
            return await asyncio.to_thread(until, check)

        await until_async(lambda: numsub(store.keys.of("a0").channel) == 1)
        await asyncio.sleep(0.2)  # its read is pending
        req = held(store, clock, "a1")
        second = asyncio.create_task(aio.wait(req.id, 60))
        took = await until_async(lambda: numsub(store.keys.of("a1").channel) == 1)
        assert took < LISTEN_STEP / 2
        assert numsub(store.keys.of("other").channel) == 0
        for r in others:
            await asyncio.to_thread(console.decide, r.id, vote(clock, r, "alice"))
        await asyncio.sleep(0.3)
        decided = time.monotonic()
        await asyncio.to_thread(console.decide, req.id, vote(clock, req, "alice"))
        assert (await asyncio.wait_for(second, 5)).status is RequestStatus.APPROVED
        assert time.monotonic() - decided < LISTEN_STEP / 2
        await asyncio.to_thread(console.decide, first.id, vote(clock, first, "alice"))
        assert (await asyncio.wait_for(long_wait, 5)).status is RequestStatus.APPROVED
        assert req.id in heard and first.id in heard
        assert not set(heard) & {r.id for r in others}
        await aio.aclose()
    finally:
        store.close()
        console.close()


def test_interest_keeps_a_channel_for_its_linger_then_drops_it() -> None:
    now = [0.0]
    interest = Interest(linger=10, clock=lambda: now[0])
    assert interest.add("a") is True
    assert interest.add("a") is False  # a second waiter: already asked for
    assert interest.plan(set()) == (["a"], [])
    interest.remove("a")
    interest.remove("a")
    now[0] = 9.9
    assert interest.plan({"a"}) == ([], [])  # lingering
    assert interest.add("a") is True  # waited on again: the listener should look
    interest.remove("a")
    now[0] = 20.0
    assert interest.plan({"a"}) == ([], ["a"])
    assert interest.plan(set()) == ([], [])
