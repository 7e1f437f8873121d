"""Replies lost on the way back (~5%): no waiter oversleeps, no tool runs late or twice.

Every connection of the agent goes through the proxy: its commands, its
re-reads and its pub/sub wake-ups. A person in another process approves the
calls as they come, at any point of the first part of their window. A lost
reply costs a socket timeout, and a lost wake-up one re-read; neither may
keep a waiter past its expiry, start a tool past its expiry plus the grace
(:data:`~gatekeeper._flow.LATE_APPROVAL`), or run one twice.
"""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
import textwrap
import time
import traceback
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gatekeeper import (
    Gatekeeper,
    Policy,
    RedisStore,
    RequestStatus,
    StoreUnavailable,
    ToolCallBlocked,
)
from gatekeeper._flow import LATE_APPROVAL
from gatekeeper.store._redis import RetryPolicy
from tests.faultkit import ReplyDropper
from tests.faults.conftest import Callers, FaultyRedis, assert_settled, wait_until

pytestmark = pytest.mark.redis

CALLS = 25  # on each face
EXPIRY = 4.0
SOCKET_TIMEOUT = 5.0  # longer than the expiry, as the 10 s default is longer than a short one
APPROVE_WITHIN = 0.5 * EXPIRY  # the person decides within the first half of the window
ROOT = Path(__file__).resolve().parents[2]

APPROVER = textwrap.dedent(
    """
    import random, sys, time
    from gatekeeper import Gatekeeper, Policy, RedisStore
    url, prefix, calls, within = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    gate = Gatekeeper(policy=Policy.empty(), store=RedisStore(url, prefix=prefix))
    draw = random.Random(11)
    due, done = {}, set()
    give_up = time.monotonic() + 60
    while len(done) < calls and time.monotonic() < give_up:
        for req in gate.pending(limit=500):
            due.setdefault(req.id, time.monotonic() + draw.uniform(0, within))
        for rid, at in due.items():
            if rid not in done and time.monotonic() >= at:
                try:
                    gate.approve(rid, approver="alice")
                except Exception as exc:
                    print(f"{rid}: {exc}", file=sys.stderr)
                done.add(rid)
        time.sleep(0.01)  # a person's pace, not the test's synchronisation
    """
)


@pytest.fixture
def dropper(faulty_redis: FaultyRedis) -> Iterator[ReplyDropper]:
    proxy = ReplyDropper(faulty_redis.port, seed=5)
    yield proxy
    proxy.close()


def test_lost_replies_neither_delay_a_waiter_nor_start_a_tool_late_or_twice(
    faulty_redis: FaultyRedis, dropper: ReplyDropper, redis_prefix: str
) -> None:
    store = RedisStore(
        dropper.url,
        prefix=redis_prefix,
        socket_timeout=SOCKET_TIMEOUT,
        retry=RetryPolicy(attempts=4, within=4 * SOCKET_TIMEOUT),  # a write is never given up
    )
    gate = Gatekeeper(policy=Policy.empty(), store=store, default_timeout=EXPIRY)
    starts: list[tuple[int, float]] = []
    held_at: dict[int, float] = {}

    def record(n: int) -> int:
        starts.append((n, time.time()))
        return n

    @gate.guard
    def refund(n: int) -> int:
        return record(n)

    @gate.guard
    async def arefund(n: int) -> int:
        return record(n)

    def timed_hold(hold: Any) -> Any:
        def sync(request: Any, event: Any) -> Any:
            done = hold(request, event)
            held_at[int(request.args["n"])] = time.time()
            return done

        async def aio(request: Any, event: Any) -> Any:
            done = await hold(request, event)
            held_at[int(request.args["n"])] = time.time()
            return done

        return aio if inspect.iscoroutinefunction(hold) else sync

    store.hold = timed_hold(store.hold)  # type: ignore[method-assign]
    store.aio.hold = timed_hold(store.aio.hold)  # type: ignore[method-assign]

    store.load_scripts()  # through the proxy, before it drops anything
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "adapters")])}
    argv = [faulty_redis.url, redis_prefix, str(2 * CALLS), str(APPROVE_WITHIN)]
    approver = subprocess.Popen([sys.executable, "-c", APPROVER, *argv], env=env)
    dropper.drop_ratio = 0.05
    callers = Callers()
    for n in range(CALLS):
        callers.call(n, refund)
        callers.acall(CALLS + n, arefund)
    outcomes = callers.join(timeout=EXPIRY + 8 * SOCKET_TIMEOUT)
    dropper.drop_ratio = 0.0
    approver.terminate()  # every call has ended: the person goes home
    approver.wait(timeout=10)

    reader = RedisStore(faulty_redis.url, prefix=redis_prefix)
    by_n = {int(r.args["n"]): r for r in reader.history(limit=500)}
    ran = Counter(n for n, _ in starts)
    assert all(count == 1 for count in ran.values()), ran  # none ran twice
    started_late = []
    for n, at in starts:
        req = by_n[n]
        assert req.status is RequestStatus.EXECUTED, req  # approved, claimed, finished
        started_late.append(at - req.expires_at.timestamp())
        assert at <= req.expires_at.timestamp() + LATE_APPROVAL  # never past expiry + grace
    waited_late, refused_late, gave_up = [], 0, []
    for outcome in outcomes:
        if outcome.error is None:
            assert outcome.result == outcome.n and ran[outcome.n] == 1
            continue
        assert ran[outcome.n] == 0  # what raised, did not run
        if isinstance(outcome.error, StoreUnavailable):
            # Rare: one step's every try lost its reply (five in a row, or a claim's
            # within its bound). The documented fail-closed error; the request is
            # closed or lapses (assert_settled below), and nothing ran.
            gave_up.append("".join(traceback.format_exception(outcome.error)))
            continue
        assert isinstance(outcome.error, ToolCallBlocked), "".join(
            traceback.format_exception(outcome.error)
        )
        req = by_n[outcome.n]
        if "could start it only" in str(outcome.error) or "did not confirm its release" in str(
            outcome.error
        ):
            # Approved in time, but its claim's reply was lost: past expiry and grace it
            # did not start, and it is closed as not run (from the lease thread).
            refused_late += 1
            rid = req.id
            wait_until(
                f"{rid} closed as not run",
                lambda rid=rid: reader.get(rid).status is RequestStatus.FAILED,
            )
            continue
        # The wait: back by expiry + 1 s (from the hold, if a lost reply held that up).
        waited_late.append(
            outcome.returned_at - max(req.expires_at.timestamp(), held_at[req_n(req)])
        )
        ended = {RequestStatus.EXPIRED, RequestStatus.CANCELLED, RequestStatus.FAILED}
        if "the store did not answer at expiry" in str(outcome.error):
            # Its last reads and steps were lost: the store holds whatever came last (an
            # approval this waiter could not read, too). It never runs: nobody claims it.
            ended |= {RequestStatus.PENDING, RequestStatus.APPROVED}
        assert req.status in ended, (repr(outcome.error), req.status)
    print(
        f"\nlost replies: {dropper.dropped} dropped; {len(starts)} of {2 * CALLS} ran, "
        f"{sum(x > 0 for x in started_late)} of them after expiry "
        f"(latest {max(started_late, default=0):+.2f} s); {refused_late} approved but "
        f"refused to start late; {len(waited_late)} timed out, back "
        f"{max(waited_late, default=0):+.2f} s from expiry at the latest; "
        f"{len(gave_up)} gave up on the store"
    )
    for where in gave_up:
        print(where)
    assert dropper.dropped > 0
    assert all(late <= 1.0 for late in waited_late)  # no waiter overslept its expiry
    assert len(starts) > CALLS  # most were approved and ran: the run tested something
    callers.close(store)
    assert_settled(reader)
    gate.close()
    reader.close()


def req_n(req: Any) -> int:
    return int(req.args["n"])
