"""Redis reaching ``maxmemory`` (``noeviction``: writes refused with OOM) while a tool runs.

The tool has run; only writing how it ended is refused. The outcome is kept
and written again from the lease thread until Redis takes writes again, so
the request ends ``executed`` (never stuck ``executing``) and the tool runs
once. (Renewing the lease is a write too: when memory stays full past the
lease, the first renewal after it reads the request as ``outcome_unknown``,
and the outcome written next replaces that, both audited.)
"""

from __future__ import annotations

import threading

import pytest
import redis

from gatekeeper import Gatekeeper, Policy, RedisStore, RequestStatus, StoreUnavailable
from tests.faults.conftest import FaultyRedis, assert_settled, wait_until

pytestmark = pytest.mark.redis


def test_an_outcome_refused_for_memory_is_written_once_memory_is_back(
    faulty_redis: FaultyRedis, redis_prefix: str
) -> None:
    admin = redis.Redis.from_url(faulty_redis.url)
    store = RedisStore(faulty_redis.url, prefix=redis_prefix, lease=3.0)
    gate = Gatekeeper(policy=Policy.empty(), store=store, default_timeout=30)
    runs: list[str] = []

    @gate.guard
    def refund(order_id: str) -> str:
        runs.append(order_id)
        admin.config_set("maxmemory", 1)  # full while the tool runs
        return "refunded"

    outcome: list[object] = []
    caller = threading.Thread(target=lambda: outcome.append(refund("A-1")))
    caller.start()
    wait_until("the call is held", lambda: len(gate.pending()) == 1)
    req = gate.pending()[0]
    gate.approve(req.id, approver="alice")
    caller.join(10)
    assert outcome == ["refunded"]  # the caller got its result; only the record waits
    assert gate.get(req.id).status is RequestStatus.EXECUTING
    # Full for longer than the lease: nothing can be written, not even a sweep's change.
    wait_until("renewals are refused a while", lambda: store._leases.failures >= 4, timeout=15)
    with pytest.raises(StoreUnavailable, match="out of memory"):
        store.sweep()
    assert gate.get(req.id).status is RequestStatus.EXECUTING
    admin.config_set("maxmemory", 0)
    wait_until(
        "the outcome is written",
        lambda: gate.get(req.id).status is RequestStatus.EXECUTED,
        timeout=10,
    )
    assert gate.get(req.id).outcome == "'refunded'"
    assert runs == ["A-1"]
    assert_settled(store)
    gate.close()
    admin.close()
