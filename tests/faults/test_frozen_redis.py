"""A frozen Redis (SIGSTOP) neither keeps a waiter past its expiry nor hides a decision's fate.

Frozen, Redis keeps its connections open and answers nothing: a read waits
for its socket timeout, and every retry after it too. A waiter still returns
at its expiry (ApprovalTimeout: nothing ran, nothing will), and once Redis
runs again it refuses to approve what expired. An approver whose decision
was sent into the frozen server is told its fate is unknown, and after
SIGCONT the decision is found applied; one refused before sending is told it
was not recorded, and nothing changed.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from gatekeeper import (
    ApprovalTimeout,
    Gatekeeper,
    Policy,
    RedisStore,
    RequestStatus,
    StoreUnavailable,
    TransitionRefused,
)
from gatekeeper._clock import SystemClock
from gatekeeper.store._redis import RetryPolicy
from tests.faults.conftest import Callers, FaultyRedis, assert_settled, wait_until
from tests.storekit import held_event, make_request

pytestmark = pytest.mark.redis

WAITERS = 20  # on each face
EXPIRY = 3.0
SOCKET_TIMEOUT = 2.0  # shorter than the freeze, as the 10 s default is shorter than a long one
FROZEN_FOR = 15.0


def test_waiters_return_at_expiry_while_redis_is_frozen_and_nothing_runs_after(
    faulty_redis: FaultyRedis, redis_prefix: str
) -> None:
    store = RedisStore(
        faulty_redis.url,
        prefix=redis_prefix,
        socket_timeout=SOCKET_TIMEOUT,
        retry=RetryPolicy(attempts=3, within=1.0),
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

    decider = RedisStore(faulty_redis.url, prefix=redis_prefix)
    callers = Callers()
    for n in range(WAITERS):
        callers.call(n, refund)
        callers.acall(WAITERS + n, arefund)
    wait_until("every call to be held", lambda: len(decider.pending(limit=100)) == 2 * WAITERS)

    faulty_redis.freeze()
    frozen_at = time.monotonic()
    outcomes = callers.join(timeout=EXPIRY + 5)
    assert faulty_redis.frozen and time.monotonic() - frozen_at < FROZEN_FOR
    time.sleep(max(FROZEN_FOR - (time.monotonic() - frozen_at), 0))  # the freeze itself
    faulty_redis.thaw()

    assert len(outcomes) == 2 * WAITERS
    late: list[float] = []
    for outcome in outcomes:
        assert isinstance(outcome.error, ApprovalTimeout), outcome
        assert "the store did not answer at expiry" in str(outcome.error)
        assert outcome.request_id is not None
        req = decider.get(outcome.request_id)
        late.append(outcome.returned_at - req.expires_at.timestamp())
    print(f"\nfrozen Redis: waiters returned {min(late):+.3f}..{max(late):+.3f} s from expiry")
    assert max(late) <= 1.0  # at its expiry: not a socket timeout (2 s), not the freeze (15 s)
    assert min(late) >= -0.05  # and not before it

    # Redis runs again: what expired is refused, whoever tries to approve it.
    approver = Gatekeeper(policy=Policy.empty(), store=decider)
    for outcome in outcomes:
        assert outcome.request_id is not None
        with pytest.raises(TransitionRefused):
            approver.approve(outcome.request_id, approver="alice")
        assert decider.get(outcome.request_id).status in (
            RequestStatus.EXPIRED,
            RequestStatus.CANCELLED,
        )
    assert runs == []
    callers.close(store)
    assert_settled(decider)
    gate.close()
    decider.close()


def _approver_of_a_held_request(
    faulty_redis: FaultyRedis, redis_prefix: str
) -> tuple[Gatekeeper, RedisStore, str]:
    store = RedisStore(
        faulty_redis.url,
        prefix=redis_prefix,
        socket_timeout=1.0,
        retry=RetryPolicy(attempts=2, within=0.5),
    )
    store.load_scripts()  # as a deciding process does (`gatekeeper serve`)
    req = make_request(SystemClock(), timeout=120)  # Redis judges expiry by its own clock
    store.hold(req, held_event(req))
    return Gatekeeper(policy=Policy.empty(), store=store), store, req.id


def test_a_decision_sent_into_a_frozen_redis_is_of_unknown_fate_and_applied_after(
    faulty_redis: FaultyRedis, redis_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate, store, rid = _approver_of_a_held_request(faulty_redis, redis_prefix)
    real_run = store._run

    def frozen_as_it_is_sent(op: Any) -> Any:
        if op.script == "decide":  # the request was read; Redis freezes as the vote goes out
            faulty_redis.freeze()
        return real_run(op)

    monkeypatch.setattr(store, "_run", frozen_as_it_is_sent)
    with pytest.raises(StoreUnavailable) as caught:
        gate.approve(rid, approver="alice")
    said = str(caught.value)
    assert f"your approval of request {rid} may or may not have been recorded" in said
    assert f"check with `gatekeeper show {rid}`" in said
    faulty_redis.thaw()
    reader = RedisStore(faulty_redis.url, prefix=redis_prefix)
    # It had reached Redis: Redis applied it on waking (once, however often it was sent).
    wait_until("the vote to be applied", lambda: reader.get(rid).status is RequestStatus.APPROVED)
    assert [d.approver for d in reader.get(rid).approvals] == ["alice"]
    reader.close()
    store.close()


def test_a_decision_refused_before_it_was_sent_is_not_recorded(
    faulty_redis: FaultyRedis, redis_prefix: str
) -> None:
    gate, store, rid = _approver_of_a_held_request(faulty_redis, redis_prefix)
    faulty_redis.freeze()  # frozen before the approver reads the request
    with pytest.raises(StoreUnavailable) as caught:
        gate.approve(rid, approver="alice")
    assert f"your approval of request {rid} was not recorded" in str(caught.value)
    faulty_redis.thaw()
    reader = RedisStore(faulty_redis.url, prefix=redis_prefix)
    assert reader.get(rid).status is RequestStatus.PENDING
    assert reader.get(rid).decisions == ()
    reader.close()
    store.close()


def test_a_claim_sent_into_a_frozen_redis_is_bounded_and_closed_never_run(
    faulty_redis: FaultyRedis, redis_prefix: str
) -> None:
    """Approved just before expiry, Redis freezes as the claim goes out: back by expiry + ~1 s,
    nothing ran, and once Redis is back the request is closed as not run (not executing)."""
    import threading
    import time as _time

    store = RedisStore(faulty_redis.url, prefix=redis_prefix)  # the 10 s socket timeout
    gate = Gatekeeper(policy=Policy.empty(), store=store, default_timeout=3.0)
    decider = RedisStore(faulty_redis.url, prefix=redis_prefix)
    approver = Gatekeeper(policy=Policy.empty(), store=decider)
    runs: list[int] = []
    claim = store.claim

    def claim_into_a_freeze(*args: object, **kwargs: object) -> object:
        faulty_redis.freeze()
        return claim(*args, **kwargs)  # type: ignore[arg-type]

    store.claim = claim_into_a_freeze  # type: ignore[method-assign]

    @gate.guard
    def refund(n: int) -> int:
        runs.append(n)
        return n

    def approve_late() -> None:
        wait_until("the call is held", lambda: bool(decider.pending(limit=10)))
        req = decider.pending(limit=10)[0]
        _time.sleep(max(req.expires_at.timestamp() - _time.time() - 0.5, 0))
        approver.approve(req.id, approver="alice")

    threading.Thread(target=approve_late, daemon=True).start()
    with pytest.raises(ApprovalTimeout, match="did not confirm its release in time"):
        refund(1)
    back = _time.time()
    faulty_redis.thaw()
    held = decider.history(limit=1)[0]
    assert back - held.expires_at.timestamp() < 1.5  # LATE_APPROVAL (1 s) and a read floor
    assert runs == []
    wait_until(
        "the unanswered claim is closed",
        lambda: decider.get(held.id).status is RequestStatus.FAILED,
        timeout=15,
    )
    assert "not run" in (decider.get(held.id).outcome or "")
    assert runs == []
    gate.close()
    decider.close()
