"""gate.tool(): tools whose arguments arrive as one mapping, the base of every adapter."""

from __future__ import annotations

from typing import Any

import pytest

from gatekeeper import (
    ApprovalDenied,
    Gatekeeper,
    GuardedTool,
    InvalidToolCall,
    MemoryStore,
    Policy,
    ToolCallDenied,
)
from gatekeeper.testing import AutoDecider, RecordingChannel
from tests.gatekit import audit_events

# Every guarded call here runs on the blocking driver and on the async one.
pytestmark = pytest.mark.usefixtures("both_faces")

POLICY = """
version: 1
default: allow
rules:
  - {id: refunds, match: {tool: refund}, verdict: require_approval}
  - {id: big, match: {tool: pay, args: {amount: {gt: 100}}}, verdict: deny, reason: too much}
"""


def make_gate(*channels: Any) -> Gatekeeper:
    return Gatekeeper(policy=Policy.from_yaml(POLICY), store=MemoryStore(), channels=channels)


def test_an_allowed_call_runs_with_the_mapping_as_keyword_arguments() -> None:
    gate = make_gate()
    seen: list[dict[str, Any]] = []
    lookup = gate.tool("lookup", lambda **args: seen.append(args) or "found")
    assert isinstance(lookup, GuardedTool) and lookup.name == "lookup"
    assert lookup({"order_id": "A-1", "deep": {"x": [1, 2]}}) == "found"
    assert seen == [{"order_id": "A-1", "deep": {"x": [1, 2]}}]
    (event,) = [e for e in audit_events(gate) if e.kind == "call.allowed"]
    assert event.data["args"] == {"order_id": "A-1", "deep": {"x": [1, 2]}}


def test_a_held_call_runs_with_exactly_the_arguments_the_approver_set() -> None:
    recorder = RecordingChannel()
    decider = AutoDecider(approver="alice", args={"order_id": "A-1", "amount": 5})
    gate = make_gate(recorder, decider)
    ran: list[dict[str, Any]] = []
    refund = gate.tool("refund", lambda **args: ran.append(args) or "ok", irreversible=True)
    assert refund({"order_id": "A-1", "amount": 500}, reason="the model said so") == "ok"
    assert ran == [{"order_id": "A-1", "amount": 5}]  # the edit, not the model's 500
    request = recorder.notified[0]
    assert request.call.reason == "the model said so"
    assert request.call.irreversible


def test_a_denial_carries_a_sentence_for_the_model_and_nothing_runs() -> None:
    gate = make_gate(AutoDecider(approve=False, approver="bob", comment="use the sandbox"))
    ran: list[Any] = []
    refund = gate.tool("refund", lambda **args: ran.append(args))
    with pytest.raises(ApprovalDenied) as denied:
        refund({"order_id": "A-1"})
    assert denied.value.model_message == (
        'Tool call denied by bob: "use the sandbox". The tool was not run.'
    )
    assert ran == []


def test_the_policy_sees_the_arguments() -> None:
    gate = make_gate()
    pay = gate.tool("pay", lambda **args: "paid")
    assert pay({"amount": 5}) == "paid"
    with pytest.raises(ToolCallDenied, match="too much"):
        pay({"amount": 500})


async def test_a_coroutine_tool_is_awaited() -> None:
    gate = make_gate(AutoDecider(approver="alice"))

    async def refund(**args: Any) -> str:
        return f"refunded {args['order_id']}"

    tool = gate.tool("refund", refund)
    assert tool.is_async
    assert await tool.acall({"order_id": "A-9"}, reason="asked") == "refunded A-9"
    with pytest.raises(TypeError, match=r"await tool\.acall"):
        tool({"order_id": "A-9"})
    with pytest.raises(TypeError, match="call tool"):
        await gate.tool("sync", lambda **a: a).acall({})


@pytest.mark.parametrize("args", [["not", "a", "mapping"], "text", {1: "number key"}])
def test_arguments_that_are_not_a_json_object_are_refused(args: Any) -> None:
    gate = make_gate()
    ran: list[Any] = []
    tool = gate.tool("lookup", lambda **a: ran.append(a))
    with pytest.raises(InvalidToolCall):
        tool(args)
    assert ran == []


def test_arguments_over_the_size_limit_are_refused() -> None:
    gate = Gatekeeper(store=MemoryStore(), policy=Policy.empty(), max_args_bytes=1024)
    with pytest.raises(InvalidToolCall, match="over the limit"):
        gate.tool("lookup", lambda **a: a)({"blob": "x" * 5000})


def test_an_unknown_tool_is_refused_and_audited() -> None:
    gate = make_gate()
    error = gate.refuse_unknown_tool("rm_rf", {"path": "/"}, reason="cleaning up")
    assert isinstance(error, ToolCallDenied)
    assert "rm_rf" in error.model_message and "not run" in error.model_message
    (event,) = [e for e in audit_events(gate) if e.tool == "rm_rf"]
    assert event.kind == "call.denied"
    assert event.data["args"] == {"path": "/"}
    assert event.data["rules"] == ["unknown-tool"]


async def test_an_unknown_tool_is_refused_and_audited_from_async_code() -> None:
    gate = make_gate()
    error = await gate.arefuse_unknown_tool("rm_rf", ["not", "an", "object"])
    assert "rm_rf" in error.model_message
    (event,) = [e for e in audit_events(gate) if e.tool == "rm_rf"]
    assert (event.kind, event.data["args"]) == ("call.denied", {})
