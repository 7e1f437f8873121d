"""Call keys on the embedded store: what a key names, and what it doesn't."""

from __future__ import annotations

import pytest

from gatekeeper import AlreadyRan, ApprovalPending, Gatekeeper, InvalidToolCall, Policy, call_key
from gatekeeper.testing import AutoDecider

HOLD_ALL = Policy.from_yaml("version: 1\ndefault: require_approval\n")


def test_a_guarded_call_inside_the_tool_does_not_inherit_the_key() -> None:
    decider = AutoDecider()
    gate = Gatekeeper(policy=HOLD_ALL, channels=[decider])

    @gate.guard
    def send_email(to: str) -> str:
        return f"sent to {to}"

    @gate.guard
    def close_account(name: str) -> str:
        return send_email(f"{name}@example.com")

    with call_key("close:ACME"):
        assert close_account("ACME") == "sent to ACME@example.com"
    keys = {r.call.tool: r.key for r in decider.decided}
    assert keys == {"close_account": "close:ACME", "send_email": None}


def test_the_same_key_after_the_call_ran_does_not_run_it_again() -> None:
    ran: list[str] = []
    gate = Gatekeeper(policy=HOLD_ALL, channels=[AutoDecider()])
    refund = gate.tool("refund", lambda order_id: ran.append(order_id) or "refunded")
    assert refund({"order_id": "A-1"}, key="call_1") == "refunded"
    with pytest.raises(AlreadyRan, match="already ran") as caught:
        refund({"order_id": "A-1"}, key="call_1")
    assert caught.value.model_message.endswith("It was not run again.")
    assert ran == ["A-1"]
    assert refund({"order_id": "A-1"}, key="call_2") == "refunded"  # another call: runs
    assert ran == ["A-1", "A-1"]


def test_a_call_that_does_not_wait_parks_and_a_later_one_runs_it_once() -> None:
    ran: list[str] = []
    gate = Gatekeeper(policy=HOLD_ALL)
    refund = gate.tool("refund", lambda order_id: ran.append(order_id) or "refunded")
    with pytest.raises(ApprovalPending) as first:
        refund.run({"order_id": "A-1"}, key="call_1", wait=False)
    with pytest.raises(ApprovalPending) as again:  # still waiting: the same request
        refund.run({"order_id": "A-1"}, key="call_1", wait=False)
    assert again.value.request_id == first.value.request_id
    assert len(gate.pending()) == 1
    gate.approve(first.value.request_id, approver="alice")
    assert refund.run({"order_id": "A-1"}, key="call_1", wait=False).result == "refunded"
    assert ran == ["A-1"]


def test_not_waiting_needs_a_key() -> None:
    gate = Gatekeeper(policy=HOLD_ALL)
    refund = gate.tool("refund", lambda order_id: "refunded")
    with pytest.raises(InvalidToolCall, match="needs a key"):
        refund.run({"order_id": "A-1"}, wait=False)
    assert gate.pending() == []
