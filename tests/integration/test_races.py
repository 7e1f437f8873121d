"""Concurrent deciders, claimers and auditors: exactly one winner, and a chain without forks."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from gatekeeper import audit
from gatekeeper._errors import TransitionRefused
from gatekeeper.audit import draft, verify_chain
from gatekeeper.models import RequestStatus
from gatekeeper.store import MemoryStore, RedisStore, Store
from gatekeeper.testing import ManualClock
from tests.conftest import RedisServer
from tests.storekit import held_event, make_request, vote

# Every guarded call here runs on the blocking driver and on the async one.
pytestmark = pytest.mark.usefixtures("both_faces")

S = RequestStatus
THREADS = 8


@pytest.fixture(params=["memory", "redis"])
def stores(
    request: pytest.FixtureRequest, redis_prefix: str
) -> Iterator[tuple[ManualClock, list[Store]]]:
    """Two views of one store: the same object for memory, two instances for Redis."""
    clock = ManualClock()
    if request.param == "memory":
        mem = MemoryStore(clock=clock)
        yield clock, [mem, mem]
        mem.close()
        return
    server: RedisServer = request.getfixturevalue("redis_server")
    pair: list[Store] = [RedisStore(server.url, prefix=redis_prefix, clock=clock) for _ in range(2)]
    yield clock, pair
    for s in pair:
        s.close()


def _race(n: int, fn: Callable[[int], Any]) -> list[Any]:
    """Run ``fn(i)`` in ``n`` threads released at once; each result or raised error."""
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = fn(i)
        except Exception as exc:  # the race's loser is part of the result
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    return results


def _kinds(store: Store) -> list[str]:
    store.flush()
    return [audit.parse_event(e.body, e.hash).kind for e in store.audit_entries()]


def test_many_approvers_at_once_approve_exactly_once(
    stores: tuple[ManualClock, list[Store]],
) -> None:
    clock, (a, b) = stores
    req = make_request(clock)
    a.hold(req, held_event(req))
    results = _race(THREADS, lambda i: (a, b)[i % 2].decide(req.id, vote(clock, req, f"u{i}")))
    approved = [r for r in results if not isinstance(r, Exception)]
    assert all(r.status is S.APPROVED for r in approved)
    assert all(isinstance(r, TransitionRefused) for r in results if isinstance(r, Exception))
    after = a.get(req.id)
    assert after.status is S.APPROVED
    assert len(after.approvals) == 1
    assert _kinds(a).count("request.approved") == 1


def test_approve_and_deny_at_once_end_in_one_outcome(
    stores: tuple[ManualClock, list[Store]],
) -> None:
    clock, (a, b) = stores
    for _ in range(30):
        req = make_request(clock)
        a.hold(req, held_event(req))
        results = _race(
            2,
            lambda i, req=req: (a, b)[i].decide(req.id, vote(clock, req, f"u{i}", approve=i == 0)),
        )
        refused = [r for r in results if isinstance(r, TransitionRefused)]
        done = [r for r in results if not isinstance(r, Exception)]
        assert len(refused) == 1, results
        assert len(done) == 1
        final = b.get(req.id)
        assert final.status is done[0].status
        assert final.status in (S.APPROVED, S.DENIED)
    kinds = _kinds(a)
    assert kinds.count("request.approved") + kinds.count("request.denied") == 30


def test_double_claim_releases_once(stores: tuple[ManualClock, list[Store]]) -> None:
    clock, (a, b) = stores
    for _ in range(10):
        req = make_request(clock)
        a.hold(req, held_event(req))
        a.decide(req.id, vote(clock, req, "alice"))
        results = _race(2, lambda i, req=req: (a, b)[i].claim(req.id, args_digest=req.args_digest))
        assert sum(not isinstance(r, Exception) for r in results) == 1, results
        assert sum(isinstance(r, TransitionRefused) for r in results) == 1
        assert a.get(req.id).status is S.EXECUTING
    assert _kinds(a).count("request.released") == 10


def test_approve_after_expiry_is_refused(stores: tuple[ManualClock, list[Store]]) -> None:
    clock, (a, b) = stores
    req = make_request(clock, timeout=30)
    a.hold(req, held_event(req))
    clock.advance(31)
    results = _race(4, lambda i: (a, b)[i % 2].decide(req.id, vote(clock, req, f"u{i}")))
    assert all(isinstance(r, TransitionRefused) for r in results)
    assert b.get(req.id).status is S.EXPIRED
    assert _kinds(a).count("request.expired") == 1


def test_concurrent_audit_appends_make_one_chain(stores: tuple[ManualClock, list[Store]]) -> None:
    _clock, (a, b) = stores
    per_thread = 40

    def append(i: int) -> None:
        store = (a, b)[i % 2]
        for j in range(per_thread):
            ev = draft("call.allowed", at_ms=1, actor=f"t{i}", data={"n": f"{i}-{j}"})
            if j % 2:
                store.record([ev])
            else:
                store.record_soon([ev])
            if j % 10 == 0:
                store.flush()

    results = _race(THREADS, append)
    assert results == [None] * THREADS
    a.flush()
    b.flush()
    entries = list(a.audit_entries())
    report = verify_chain(entries, head=b.audit_head())
    assert report.ok, report.problem
    bodies = [json.loads(e.body) for e in entries]
    assert [x["seq"] for x in bodies] == list(range(1, THREADS * per_thread + 1))
    marks = sorted(x["event"]["data"]["n"] for x in bodies)
    assert marks == sorted(f"{i}-{j}" for i in range(THREADS) for j in range(per_thread))
