"""Leases, the sweep, resolve and call keys: one contract for every store and both faces.

A request held with a lease stays live only while its caller renews it; once
the lease runs out every transition sees it as its caller being gone
(abandoned, or of unknown outcome once it was released), and the sweep makes
that visible for requests nobody touches again. A call key re-attaches the
same call to its earlier request.
"""

from __future__ import annotations

import pytest

from gatekeeper import audit
from gatekeeper._errors import TransitionRefused
from gatekeeper.models import RequestStatus
from gatekeeper.store import Store
from gatekeeper.testing import ManualClock
from tests.storekit import held_event, make_request, vote

S = RequestStatus


def kinds(store: Store) -> list[str]:
    return [audit.parse_event(e.body, e.hash).kind for e in store.audit_entries()]


def hold(store: Store, clock: ManualClock, **kw: object):  # type: ignore[no-untyped-def]
    req = make_request(clock, **kw)  # type: ignore[arg-type]
    return req, store.hold(req, held_event(req))


def test_approving_a_request_whose_caller_is_gone_is_refused_with_that_reason(
    clock: ManualClock, store: Store
) -> None:
    req, _ = hold(store, clock, lease=30, timeout=600)
    clock.advance(31)
    with pytest.raises(TransitionRefused, match="its caller is gone") as caught:
        store.decide(req.id, vote(clock, req, "alice"))
    assert caught.value.context["status"] == "abandoned"
    after = store.get(req.id)
    assert after.status is S.ABANDONED
    assert store.pending() == []
    assert kinds(store) == ["call.held", "request.abandoned"]


def test_a_renewed_lease_keeps_the_request_live(clock: ManualClock, store: Store) -> None:
    req, _ = hold(store, clock, lease=30, timeout=600)
    for _ in range(5):
        clock.advance(20)
        assert store.renew([req.id], ttl=30) == {req.id: S.PENDING}
    assert store.decide(req.id, vote(clock, req, "alice")).status is S.APPROVED


def test_a_lapsed_lease_is_not_revived_by_a_late_renewal(clock: ManualClock, store: Store) -> None:
    req, _ = hold(store, clock, lease=30, timeout=600)
    clock.advance(45)
    assert store.renew([req.id], ttl=30) == {req.id: S.ABANDONED}
    assert store.get(req.id).status is S.ABANDONED


def test_expiry_comes_before_a_lapsed_lease(clock: ManualClock, store: Store) -> None:
    req, _ = hold(store, clock, lease=30, timeout=10)
    clock.advance(60)
    assert [r.id for r in store.sweep()] == [req.id]
    assert store.get(req.id).status is S.EXPIRED


def test_an_approved_request_nobody_claims_is_abandoned_never_run(
    clock: ManualClock, store: Store
) -> None:
    req, _ = hold(store, clock, lease=30, timeout=600)
    store.decide(req.id, vote(clock, req, "alice"))
    clock.advance(31)
    with pytest.raises(TransitionRefused, match="its caller is gone"):
        store.claim(req.id, args_digest=req.args_digest, token="t1")
    assert store.get(req.id).status is S.ABANDONED


def test_the_sweep_moves_what_nobody_touches_and_only_that(
    clock: ManualClock, store: Store
) -> None:
    waiting, _ = hold(store, clock, lease=30, timeout=600)
    approved, _ = hold(store, clock, lease=30, timeout=600)
    running, _ = hold(store, clock, lease=30, timeout=600)
    alive, _ = hold(store, clock, lease=30, timeout=600)
    store.decide(approved.id, vote(clock, approved, "alice"))
    store.decide(running.id, vote(clock, running, "alice"))
    store.claim(running.id, args_digest=running.args_digest, token="t1")
    clock.advance(20)
    store.renew([alive.id], ttl=30)
    assert store.sweep() == []  # nothing lapsed yet
    clock.advance(15)
    moved = {r.id: r.status for r in store.sweep()}
    assert moved == {
        waiting.id: S.ABANDONED,
        approved.id: S.ABANDONED,
        running.id: S.OUTCOME_UNKNOWN,
    }
    assert store.get(alive.id).status is S.PENDING
    assert store.sweep() == []  # a second sweep finds nothing more
    assert kinds(store).count("request.abandoned") == 2
    assert kinds(store).count("request.outcome_unknown") == 1


def test_a_late_finish_by_the_claimant_records_what_happened(
    clock: ManualClock, store: Store
) -> None:
    req, _ = hold(store, clock, lease=30, timeout=600)
    store.decide(req.id, vote(clock, req, "alice"))
    store.claim(req.id, args_digest=req.args_digest, token="t1")
    clock.advance(31)
    store.sweep()
    assert store.get(req.id).status is S.OUTCOME_UNKNOWN
    done = store.finish(req.id, ok=True, outcome="refunded", token="t1")
    assert done.status is S.EXECUTED
    assert done.outcome == "refunded"


def test_a_person_resolves_an_unknown_outcome_and_only_that(
    clock: ManualClock, store: Store
) -> None:
    req, _ = hold(store, clock, lease=30, timeout=600)
    store.decide(req.id, vote(clock, req, "alice"))
    store.claim(req.id, args_digest=req.args_digest, token="t1")
    with pytest.raises(TransitionRefused, match="only a request whose outcome is unknown"):
        store.resolve(req.id, by="alice", ran=True, comment="checked")
    clock.advance(31)
    after = store.resolve(req.id, by="alice", ran=False, comment="no refund in the ledger")
    assert after.status is S.FAILED
    assert after.outcome == "no refund in the ledger"
    assert kinds(store)[-2:] == ["request.outcome_unknown", "request.resolved"]
    with pytest.raises(TransitionRefused):
        store.resolve(req.id, by="alice", ran=True, comment="again")


def test_a_retried_finish_gets_its_own_outcome_back_and_no_second_event(
    clock: ManualClock, store: Store
) -> None:
    req, _ = hold(store, clock)
    store.decide(req.id, vote(clock, req, "alice"))
    store.claim(req.id, args_digest=req.args_digest, token="t1")
    first = store.finish(req.id, ok=True, outcome="done", token="t1")
    again = store.finish(req.id, ok=True, outcome="done", token="t1")
    assert again.status is first.status is S.EXECUTED
    assert kinds(store).count("request.executed") == 1
    with pytest.raises(TransitionRefused):  # someone else's finish is still refused
        store.finish(req.id, ok=True, outcome="done", token="other")


# -- call keys --------------------------------------------------------------------------------
def test_the_same_call_under_its_key_reattaches_to_its_pending_request(
    clock: ManualClock, store: Store
) -> None:
    first, held = hold(store, clock, key="call_1", lease=30, timeout=600)
    assert held.id == first.id
    clock.advance(20)
    second, attached = hold(store, clock, key="call_1", lease=30, timeout=600)
    assert attached.id == first.id != second.id
    assert [r.id for r in store.pending()] == [first.id]
    clock.advance(20)  # 40 s after the first hold: the re-attach renewed the lease
    assert store.decide(first.id, vote(clock, first, "alice")).status is S.APPROVED
    assert kinds(store).count("call.held") == 1


def test_a_key_names_one_call(clock: ManualClock, store: Store) -> None:
    first, _ = hold(store, clock, key="call_1")
    with pytest.raises(TransitionRefused, match="a key names one call"):
        hold(store, clock, key="call_1", args={"order_id": "B-2", "amount": 1.0})
    with pytest.raises(TransitionRefused, match="a key names one call"):
        hold(store, clock, key="call_1", tool="delete_order")
    assert [r.id for r in store.pending()] == [first.id]


def test_reattaching_after_an_answer_gets_that_answer(clock: ManualClock, store: Store) -> None:
    first, _ = hold(store, clock, key="call_1")
    store.decide(first.id, vote(clock, first, "alice", approve=False, comment="no"))
    _, attached = hold(store, clock, key="call_1")
    assert attached.id == first.id
    assert attached.status is S.DENIED
    assert store.pending() == []


def test_keys_are_per_agent(clock: ManualClock, store: Store) -> None:
    mine, _ = hold(store, clock, key="call_1")
    _, theirs = hold(store, clock, key="call_1", agent="other-bot")
    assert theirs.id != mine.id
    assert {r.id for r in store.pending()} == {mine.id, theirs.id}


@pytest.mark.parametrize("end", ["expired", "cancelled", "abandoned"])
def test_a_request_that_ended_unanswered_is_asked_again(
    clock: ManualClock, store: Store, end: str
) -> None:
    first, _ = hold(store, clock, key="call_1", lease=30, timeout=60)
    if end == "cancelled":
        store.cancel(first.id, by="agent:billing-bot", reason="stopped")
    else:
        clock.advance(61 if end == "expired" else 31)
        store.sweep()
    assert store.get(first.id).status.value == end
    second, held = hold(store, clock, key="call_1", lease=30, timeout=60)
    assert held.id == second.id != first.id
    assert [r.id for r in store.pending()] == [second.id]


def test_the_sweep_expires_a_parked_request_past_its_expiry(
    clock: ManualClock, store: Store
) -> None:
    req, _ = hold(store, clock, lease=86400 + 60, timeout=60)  # parked: timeout + a day
    clock.advance(120)
    assert [(r.id, r.status) for r in store.sweep()] == [(req.id, S.EXPIRED)]


def test_a_late_vote_on_an_approved_request_whose_caller_is_gone(
    clock: ManualClock, store: Store
) -> None:
    req, _ = hold(store, clock, lease=30, timeout=600, quorum=2)
    store.decide(req.id, vote(clock, req, "alice"))
    clock.advance(31)
    with pytest.raises(TransitionRefused, match="its caller is gone"):
        store.decide(req.id, vote(clock, req, "bob"))
    assert store.get(req.id).status is S.ABANDONED


def test_a_caller_back_after_a_person_resolved_records_what_really_happened(
    clock: ManualClock, store: Store
) -> None:
    req, _ = hold(store, clock, lease=30, timeout=600)
    store.decide(req.id, vote(clock, req, "alice"))
    store.claim(req.id, args_digest=req.args_digest, token="t1")
    clock.advance(31)
    store.sweep()
    store.resolve(req.id, by="alice", ran=False, comment="no payment found")
    late = store.finish(req.id, ok=True, outcome="paid", token="t1")
    assert late.status is S.EXECUTED
    assert late.outcome == "paid"
    events = [audit.parse_event(e.body, e.hash) for e in store.audit_entries()]
    assert events[-1].kind == "request.executed"
    assert events[-1].data.get("resolved_as") == "failed"
