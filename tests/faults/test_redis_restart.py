"""Redis killed (SIGKILL) and restarted from its append-only file while calls wait.

The waiters neither give up while Redis is gone nor miss what happens once it
is back: their reads fail, are tried again (backing off) until their expiry,
and the subscription that wakes them is made again. Approved after the
restart, each call runs exactly once.
"""

from __future__ import annotations

import time

import pytest

from gatekeeper import Gatekeeper, Policy, RedisStore, RequestStatus
from gatekeeper.store._redis import RetryPolicy
from tests.faults.conftest import Callers, FaultyRedis, assert_settled, wait_until

pytestmark = pytest.mark.redis

WAITERS = 5  # on each face
EXPIRY = 10.0
DOWN_FOR = 3.0


def test_waiters_outlive_a_redis_restart_and_run_once_when_approved_after_it(
    faulty_redis: FaultyRedis, redis_prefix: str
) -> None:
    store = RedisStore(
        faulty_redis.url,
        prefix=redis_prefix,
        socket_timeout=1.0,
        retry=RetryPolicy(attempts=3, within=0.5),  # gives up on each read long before expiry
    )
    gate = Gatekeeper(policy=Policy.empty(), store=store, default_timeout=EXPIRY)
    runs: list[int] = []

    @gate.guard
    def refund(n: int) -> int:
        runs.append(n)
        return n

    @gate.guard
    async def arefund(n: int) -> int:
        runs.append(n)
        return n

    callers = Callers()
    for n in range(WAITERS):
        callers.call(n, refund)
        callers.acall(WAITERS + n, arefund)
    before = RedisStore(faulty_redis.url, prefix=redis_prefix)
    wait_until("every call to be held", lambda: len(before.pending(limit=100)) == 2 * WAITERS)
    before.close()

    faulty_redis.kill()
    time.sleep(DOWN_FOR)  # Redis is gone this long: the fault itself
    assert not callers.outcomes  # nobody gave up meanwhile
    faulty_redis.start()

    decider = RedisStore(faulty_redis.url, prefix=redis_prefix)
    approver = Gatekeeper(policy=Policy.empty(), store=decider)
    pending = decider.pending(limit=100)
    assert len(pending) == 2 * WAITERS  # the append-only file kept every request
    approved_at = time.time()
    for req in pending:
        approver.approve(req.id, approver="alice")

    outcomes = callers.join(timeout=EXPIRY + 5)
    assert [o.error for o in outcomes] == [None] * (2 * WAITERS)
    assert sorted(o.result for o in outcomes) == list(range(2 * WAITERS))
    assert sorted(runs) == list(range(2 * WAITERS))  # each exactly once
    took = max(o.returned_at for o in outcomes) - approved_at
    print(f"\nRedis restart: every waiter ran within {took:.2f} s of its approval")
    for req in pending:
        assert decider.get(req.id).status is RequestStatus.EXECUTED
    callers.close(store)
    assert_settled(decider)
    gate.close()
    decider.close()
