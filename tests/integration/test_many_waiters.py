"""Thousands of blocked calls in one process: waiting holds no connection, the pool is capped."""

from __future__ import annotations

import threading
import time

import pytest
import redis

from gatekeeper import Gatekeeper, Policy, RedisStore
from tests.conftest import RedisServer

pytestmark = pytest.mark.redis

WAITERS = 1000


def test_a_thousand_sync_waiters_in_one_process_share_one_subscription(
    redis_server: RedisServer, redis_prefix: str
) -> None:
    agent_store = RedisStore(redis_server.url, prefix=redis_prefix, max_connections=8)
    agent = Gatekeeper(policy=Policy.empty(), store=agent_store, default_timeout=120)
    console = Gatekeeper(
        policy=Policy.empty(), store=RedisStore(redis_server.url, prefix=redis_prefix)
    )
    ran: list[int] = []
    lock = threading.Lock()

    @agent.guard
    def refund(n: int) -> int:
        with lock:
            ran.append(n)
        return n

    results: dict[int, int] = {}
    errors: list[BaseException] = []

    def call(n: int) -> None:
        try:
            results[n] = refund(n)
        except BaseException as exc:  # the test reads what each got
            errors.append(exc)

    threads = [threading.Thread(target=call, args=(n,), daemon=True) for n in range(WAITERS)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while len(console.pending(limit=WAITERS + 1)) < WAITERS and time.monotonic() < deadline:
        time.sleep(0.1)
    pending = console.pending(limit=WAITERS + 1)
    assert len(pending) == WAITERS, errors[:3]
    # Everyone is waiting: the agent's process holds its capped pool and one subscription.
    admin = redis.Redis.from_url(redis_server.url)
    subscribers = admin.pubsub_numsub(agent_store.keys.of(pending[0].call.agent).channel)[0][1]
    assert subscribers == 1
    made = [c for c in agent_store.client.connection_pool._connections if c is not None]  # type: ignore[attr-defined]
    assert len(made) <= 8
    for req in pending:
        console.approve(req.id, approver="alice")
    for t in threads:
        t.join(60)
    assert not errors, errors[:3]
    assert sorted(results) == list(range(WAITERS)) and sorted(ran) == list(range(WAITERS))
    admin.close()
    agent.close()
    console.close()
