"""``escalate_after`` travels with a held request: policy -> gate -> store -> every read path."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from gatekeeper import Gatekeeper, Policy
from gatekeeper.models import ApprovalRequest, ApprovalRequirement, RequestStatus
from gatekeeper.store import Store
from gatekeeper.testing import ManualClock, RecordingChannel
from tests.storekit import held_event, make_request, vote

POLICY = """
version: 1
defaults:
  approval: {escalate_after: 1h}
rules:
  - id: wire
    match: {tool: wire_transfer}
    verdict: require_approval
    approval: {group: treasury, escalate_after: 10m}
"""


def with_escalation(req: ApprovalRequest, seconds: float | None) -> ApprovalRequest:
    approval = ApprovalRequirement(escalate_after=seconds)
    cls = req.classification.model_copy(update={"approval": approval})
    return req.model_copy(update={"classification": cls})


def test_every_read_path_returns_escalate_after(clock: ManualClock, store: Store) -> None:
    req = with_escalation(make_request(clock), 600.0)
    plain = make_request(clock)  # requests without one read back as None
    store.hold(req, held_event(req))
    store.hold(plain, held_event(plain))
    reads = [
        store.get(req.id),
        *store.get_many([req.id]),
        *(r for r in store.pending() if r.id == req.id),
        *(r for r in store.queue()[0] if r.id == req.id),
        *(r for r in store.history() if r.id == req.id),
    ]
    assert len(reads) == 5
    assert {r.classification.approval.escalate_after for r in reads} == {600.0}
    assert store.get(plain.id).classification.approval.escalate_after is None
    after = store.decide(req.id, vote(clock, req, "alice"))  # rebuilt from what the store holds
    assert after.classification.approval.escalate_after == 600.0
    assert after.classification == req.classification


async def test_async_reads_return_escalate_after(clock: ManualClock, store: Store) -> None:
    req = with_escalation(make_request(clock), 90.5)
    aio = store.aio
    try:
        await aio.hold(req, held_event(req))
        assert (await aio.get(req.id)).classification.approval.escalate_after == 90.5
        (listed,) = (await aio.queue())[0]
        assert listed.classification.approval.escalate_after == 90.5
    finally:
        await aio.aclose()


def test_a_held_call_carries_the_rules_escalate_after(store: Store) -> None:
    chan = RecordingChannel()
    gate = Gatekeeper(policy=Policy.from_yaml(POLICY), store=store, channels=[chan])
    runs: list[int] = []

    @gate.guard
    def wire_transfer(amount: int) -> None:
        runs.append(amount)

    @gate.guard
    def other_tool() -> None:
        runs.append(0)

    with ThreadPoolExecutor(2) as pool:
        wire = pool.submit(wire_transfer, 5)
        req = chan.wait_for_request()
        other = pool.submit(other_tool)  # no rule: the policy default holds it
        default = chan.wait_for_request(2)
        assert req.classification.approval.escalate_after == 600.0
        assert store.get(req.id).classification.approval.escalate_after == 600.0
        assert store.get(default.id).classification.approval.escalate_after == 3600.0
        gate.approve(req.id, approver="alice")
        gate.approve(default.id, approver="alice")
        wire.result(timeout=10)
        other.result(timeout=10)
    assert sorted(runs) == [0, 5]
    assert store.get(req.id).status is RequestStatus.EXECUTED
