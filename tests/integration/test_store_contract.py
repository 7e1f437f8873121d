"""One contract, two stores: MemoryStore and RedisStore (on a real redis-server)."""

from __future__ import annotations

import asyncio
import threading

import pytest

from gatekeeper import audit
from gatekeeper._errors import AgentHalted, RequestNotFound, TransitionRefused
from gatekeeper.models import HaltScope, RequestStatus
from gatekeeper.store import RedisStore, RetryPolicy, Store
from gatekeeper.testing import ManualClock
from tests.conftest import RedisServer
from tests.storekit import held_event, make_request, vote

S = RequestStatus


def kinds(store: Store) -> list[str]:
    return [audit.parse_event(e.body, e.hash).kind for e in store.audit_entries()]


def test_held_request_reads_back_as_created(clock: ManualClock, store: Store) -> None:
    req = make_request(clock, args={"text": "héllo \u202e <b>", "n": [1, 2.5, None]})
    store.hold(req, held_event(req))
    assert store.get(req.id) == req
    assert [r.id for r in store.pending()] == [req.id]


def test_holding_is_idempotent_for_the_same_call_only(clock: ManualClock, store: Store) -> None:
    """A retried hold (lost reply) is a no-op; another call can't take the same id."""
    req = make_request(clock)
    store.hold(req, held_event(req))
    store.hold(req, held_event(req))
    assert [r.id for r in store.pending()] == [req.id]
    assert kinds(store) == ["call.held"]
    other = make_request(clock).model_copy(update={"id": req.id})
    with pytest.raises(TransitionRefused, match="already exists"):
        store.hold(other, held_event(other))


def test_another_agent_cannot_take_a_held_requests_id(clock: ManualClock, store: Store) -> None:
    """An id names one request of the deployment: a second agent holding it is refused."""
    req = make_request(clock, agent="billing-bot")
    store.hold(req, held_event(req))
    theirs = make_request(clock, agent="ops-bot").model_copy(update={"id": req.id})
    with pytest.raises(TransitionRefused, match="already exists"):
        store.hold(theirs, held_event(theirs))
    assert store.get(req.id) == req
    assert [r.call.agent for r in store.pending()] == ["billing-bot"]
    assert kinds(store) == ["call.held"]


def test_unknown_request_is_not_found(store: Store) -> None:
    with pytest.raises(RequestNotFound):
        store.get("nope")


def test_one_approval_meets_quorum_one(clock: ManualClock, store: Store) -> None:
    req = make_request(clock)
    store.hold(req, held_event(req))
    after = store.decide(req.id, vote(clock, req, "alice", comment="ok"))
    assert after.status is S.APPROVED
    assert after.decided_by == "alice"
    assert after.comment == "ok"
    assert store.pending() == []
    assert kinds(store) == ["call.held", "request.approved"]


def test_quorum_counts_distinct_approvers(clock: ManualClock, store: Store) -> None:
    req = make_request(clock, quorum=2)
    store.hold(req, held_event(req))
    first = store.decide(req.id, vote(clock, req, "alice"))
    assert first.status is S.PENDING
    again = store.decide(req.id, vote(clock, req, "alice"))  # counts once
    assert again.status is S.PENDING
    assert len(again.approvals) == 1
    done = store.decide(req.id, vote(clock, req, "bob"))
    assert done.status is S.APPROVED
    assert {d.approver for d in done.approvals} == {"alice", "bob"}
    assert kinds(store) == ["call.held", "request.vote", "request.approved"]


def test_one_deny_denies_even_with_partial_quorum(clock: ManualClock, store: Store) -> None:
    req = make_request(clock, quorum=2)
    store.hold(req, held_event(req))
    store.decide(req.id, vote(clock, req, "alice"))
    denied = store.decide(req.id, vote(clock, req, "bob", False, comment="use sandbox"))
    assert denied.status is S.DENIED
    assert (denied.decided_by, denied.comment) == ("bob", "use sandbox")
    with pytest.raises(TransitionRefused) as info:
        store.decide(req.id, vote(clock, req, "carol"))
    assert info.value.status == "denied"


def test_late_approval_is_refused_and_request_reads_expired(
    clock: ManualClock, store: Store
) -> None:
    req = make_request(clock, timeout=30)
    store.hold(req, held_event(req))
    clock.advance(31)
    with pytest.raises(TransitionRefused, match="expired"):
        store.decide(req.id, vote(clock, req, "alice"))
    assert store.get(req.id).status is S.EXPIRED
    assert kinds(store)[-1] == "request.expired"


def test_expire_only_after_expiry(clock: ManualClock, store: Store) -> None:
    req = make_request(clock, timeout=30)
    store.hold(req, held_event(req))
    with pytest.raises(TransitionRefused, match="not expired yet"):
        store.expire(req.id)
    clock.advance(30)
    assert store.expire(req.id).status is S.EXPIRED
    assert store.expire(req.id).status is S.EXPIRED  # idempotent
    assert store.pending() == []


def test_pending_list_hides_requests_past_expiry(clock: ManualClock, store: Store) -> None:
    old = make_request(clock, timeout=10)
    store.hold(old, held_event(old))
    clock.advance(5)
    new = make_request(clock, timeout=60)
    store.hold(new, held_event(new))
    assert [r.id for r in store.pending()] == [old.id, new.id]
    clock.advance(6)
    assert [r.id for r in store.pending()] == [new.id]


def test_cancel_only_from_pending(clock: ManualClock, store: Store) -> None:
    req = make_request(clock)
    store.hold(req, held_event(req))
    cancelled = store.cancel(req.id, by="agent:billing-bot", reason="no longer needed")
    assert cancelled.status is S.CANCELLED
    other = make_request(clock)
    store.hold(other, held_event(other))
    store.decide(other.id, vote(clock, other, "alice"))
    with pytest.raises(TransitionRefused):
        store.cancel(other.id, by="x")


def test_claim_runs_at_most_once_and_only_for_approved_args(
    clock: ManualClock, store: Store
) -> None:
    req = make_request(clock)
    store.hold(req, held_event(req))
    with pytest.raises(TransitionRefused, match="pending"):
        store.claim(req.id, args_digest=req.args_digest)
    store.decide(req.id, vote(clock, req, "alice"))
    with pytest.raises(TransitionRefused, match="not the approved"):
        store.claim(req.id, args_digest="0" * 64)
    assert store.claim(req.id, args_digest=req.args_digest).status is S.EXECUTING
    with pytest.raises(TransitionRefused, match="at most once"):
        store.claim(req.id, args_digest=req.args_digest)
    done = store.finish(req.id, ok=True, outcome="refunded")
    assert (done.status, done.outcome) == (S.EXECUTED, "refunded")
    with pytest.raises(TransitionRefused):
        store.finish(req.id, ok=False, outcome="again")
    assert kinds(store)[-2:] == ["request.released", "request.executed"]


def test_failed_run_is_recorded(clock: ManualClock, store: Store) -> None:
    req = make_request(clock)
    store.hold(req, held_event(req))
    store.decide(req.id, vote(clock, req, "alice"))
    store.claim(req.id, args_digest=req.args_digest)
    assert store.finish(req.id, ok=False, outcome="ValueError: boom").status is S.FAILED


def test_edited_args_replace_args_and_reset_approvals(clock: ManualClock, store: Store) -> None:
    req = make_request(clock, quorum=2, args={"order_id": "A-1", "amount": 500.0})
    store.hold(req, held_event(req))
    store.decide(req.id, vote(clock, req, "alice"))
    stale = vote(clock, req, "bob", args={"order_id": "A-1", "amount": 50.0})
    # A vote for other arguments without the arguments themselves is refused.
    with pytest.raises(TransitionRefused, match="arguments changed"):
        store.decide(req.id, stale)
    edited = store.decide(req.id, stale, args={"order_id": "A-1", "amount": 50.0})
    assert edited.status is S.PENDING
    assert edited.args == {"order_id": "A-1", "amount": 50.0}
    assert edited.edited
    assert [d.approver for d in edited.approvals] == ["bob"]  # alice approved other args
    done = store.decide(req.id, vote(clock, edited, "alice"))
    assert done.status is S.APPROVED
    last = audit.parse_event(list(store.audit_entries())[-2].body, "x")
    assert last.data["edited_args"] == {"order_id": "A-1", "amount": 50.0}


def test_halt_refuses_calls_and_cancels_pending_of_its_scope(
    clock: ManualClock, store: Store
) -> None:
    mine = make_request(clock, agent="billing-bot")
    theirs = make_request(clock, agent="search-bot")
    store.hold(mine, held_event(mine))
    store.hold(theirs, held_event(theirs))
    cancelled = store.halt(HaltScope.AGENT, "billing-bot", by="alice", reason="runaway")
    assert cancelled == [mine.id]
    assert store.get(mine.id).status is S.CANCELLED
    assert store.get(theirs.id).status is S.PENDING
    ev = held_event(mine)
    with pytest.raises(AgentHalted, match="billing-bot is halted by alice: runaway"):
        store.admit(ev, agent="billing-bot", session_id="s9")
    store.admit(ev, agent="search-bot", session_id="s9")
    again = make_request(clock, agent="billing-bot")
    with pytest.raises(AgentHalted):
        store.hold(again, held_event(again))
    with pytest.raises(RequestNotFound):
        store.get(again.id)
    assert [(h.scope, h.target) for h in store.halts()] == [(HaltScope.AGENT, "billing-bot")]
    assert store.resume(HaltScope.AGENT, "billing-bot", by="alice") is True
    assert store.resume(HaltScope.AGENT, "billing-bot", by="alice") is False
    store.admit(ev, agent="billing-bot", session_id="s9")


def test_halt_all_and_session_scopes(clock: ManualClock, store: Store) -> None:
    ev = {"kind": "call.allowed", "at": 0, "actor": "agent:a", "data": {}}
    store.halt(HaltScope.SESSION, "s1", by="ops")
    with pytest.raises(AgentHalted, match="session s1"):
        store.admit(ev, agent="a", session_id="s1")
    store.admit(ev, agent="a", session_id="s2")
    store.halt(HaltScope.ALL, "ignored", by="ops")
    with pytest.raises(AgentHalted, match="every agent"):
        store.admit(ev, agent="b", session_id="s2")
    store.resume(HaltScope.ALL, "*", by="ops")
    store.admit(ev, agent="b", session_id="s2")


def test_claim_refused_while_halted(clock: ManualClock, store: Store) -> None:
    req = make_request(clock)
    store.hold(req, held_event(req))
    store.decide(req.id, vote(clock, req, "alice"))
    store.halt(HaltScope.AGENT, req.call.agent, by="ops")
    with pytest.raises(AgentHalted):
        store.claim(req.id, args_digest=req.args_digest)
    assert store.get(req.id).status is S.APPROVED


def test_audit_chain_is_whole_and_matches_head(clock: ManualClock, store: Store) -> None:
    for i in range(3):
        req = make_request(clock, args={"i": i})
        store.hold(req, held_event(req))
        store.decide(req.id, vote(clock, req, "alice", approve=i % 2 == 0))
    store.record_soon([{"kind": "call.executed", "at": 1, "actor": "agent:x", "data": {}}])
    store.flush()
    entries = list(store.audit_entries())
    report = audit.verify_chain(entries, head=store.audit_head())
    assert report.ok, report.problem
    assert report.count == len(entries) == 7
    seqs = [audit.parse_event(e.body, e.hash).seq for e in entries]
    assert seqs == list(range(1, 8))


def test_wait_returns_when_another_thread_decides(clock: ManualClock, store: Store) -> None:
    req = make_request(clock)
    store.hold(req, held_event(req))
    timer = threading.Timer(0.1, lambda: store.decide(req.id, vote(clock, req, "alice")))
    timer.start()
    try:
        assert store.wait(req.id, timeout=10).status is S.APPROVED
    finally:
        timer.join()


def test_wait_gives_up_after_timeout(clock: ManualClock, store: Store) -> None:
    req = make_request(clock)
    store.hold(req, held_event(req))
    assert store.wait(req.id, timeout=0.05).status is S.PENDING


async def test_async_wait_is_woken_by_a_decision_elsewhere(
    clock: ManualClock, store: Store
) -> None:
    reqs = [make_request(clock) for _ in range(5)]
    for r in reqs:
        await store.aio.hold(r, held_event(r))
    waits = [asyncio.ensure_future(store.aio.wait(r.id, timeout=10)) for r in reqs]
    await asyncio.sleep(0.05)

    def decide_all() -> None:
        for i, r in enumerate(reqs):
            store.decide(r.id, vote(clock, r, "alice", approve=i % 2 == 0))

    await asyncio.to_thread(decide_all)
    done = await asyncio.wait_for(asyncio.gather(*waits), 10)
    assert [d.status for d in done] == [S.APPROVED, S.DENIED, S.APPROVED, S.DENIED, S.APPROVED]
    await store.aio.aclose()


async def test_async_face_runs_the_same_machine(clock: ManualClock, store: Store) -> None:
    aio = store.aio
    req = make_request(clock)
    await aio.hold(req, held_event(req))
    assert [r.id for r in await aio.pending()] == [req.id]
    approved = await aio.decide(req.id, vote(clock, req, "alice"))
    assert approved.status is S.APPROVED
    assert (await aio.claim(req.id, args_digest=req.args_digest)).status is S.EXECUTING
    assert (await aio.finish(req.id, ok=True, outcome="ok")).status is S.EXECUTED
    await aio.halt(HaltScope.AGENT, "x", by="ops")
    with pytest.raises(AgentHalted):
        await aio.admit(held_event(req), agent="x", session_id="s")
    assert await aio.resume(HaltScope.AGENT, "x", by="ops")
    await aio.aclose()


def test_waits_outlast_the_socket_timeout(redis_server: RedisServer, redis_prefix: str) -> None:
    """A blocked waiter is not a dead connection: waits longer than socket_timeout work."""
    clock = ManualClock()
    store = RedisStore(
        redis_server.url,
        prefix=redis_prefix,
        clock=clock,
        socket_timeout=0.2,
        retry=RetryPolicy(attempts=1, within=0.1),  # a timed-out wait would not be retried away
    )
    try:
        req = make_request(clock)
        store.hold(req, held_event(req))
        timer = threading.Timer(0.8, lambda: store.decide(req.id, vote(clock, req, "alice")))
        timer.start()
        assert store.wait(req.id, timeout=10).status is S.APPROVED
        timer.join()

        async def async_wait() -> RequestStatus:
            other = make_request(clock)
            await store.aio.hold(other, held_event(other))
            later = threading.Timer(0.8, lambda: store.decide(other.id, vote(clock, other, "bob")))
            later.start()
            try:
                return (await store.aio.wait(other.id, timeout=10)).status
            finally:
                later.join()
                await store.aio.aclose()

        assert asyncio.run(async_wait()) is S.APPROVED
    finally:
        store.close()


def test_refuse_closes_an_approved_request_without_running_it(
    clock: ManualClock, store: Store
) -> None:
    """approved -> failed, no `released` event: the caller refused to run it."""
    req = make_request(clock)
    store.hold(req, held_event(req))
    with pytest.raises(TransitionRefused, match="not approved"):
        store.refuse(req.id, why="refused as tampering")
    store.decide(req.id, vote(clock, req, "alice"))
    done = store.refuse(req.id, why="refused as tampering, not run")
    assert (done.status, done.outcome) == (S.FAILED, "refused as tampering, not run")
    with pytest.raises(TransitionRefused):
        store.claim(req.id, args_digest=req.args_digest)
    assert kinds(store)[-2:] == ["request.approved", "request.failed"]
