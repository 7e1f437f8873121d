"""A resumable GatekeeperToolset: runs that end with DeferredToolRequests naming the held requests.

A real Pydantic AI ``Agent`` scripted by a ``FunctionModel``; the message
history and the deferred requests are carried as JSON, as another process
would read them back (the real processes: test_resume_across_processes.py).
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import TypeAdapter
from pydantic_ai import Agent
from pydantic_ai.messages import DeferredToolRequestsEvent, ModelMessagesTypeAdapter, ModelResponse
from pydantic_ai.tools import DeferredToolRequests, DeferredToolResults, ToolApproved

from gatekeeper.testing import RecordingChannel
from gatekeeper_pydantic_ai import (
    GatekeeperToolset,
    deferred_results,
    deferred_results_sync,
)
from tests.adapters.test_pydantic_ai import DENIAL, Script, Tools, call, done, make_gate

REQUESTS: TypeAdapter[DeferredToolRequests] = TypeAdapter(DeferredToolRequests)
TWO_REFUNDS = ModelResponse(
    parts=[
        call("refund", {"order_id": "A-1", "amount": 20}, "c1"),
        call("refund", {"order_id": "B-2", "amount": 500}, "c2"),
    ]
)


def resumable(gate: Any, tools: Tools, script: Script) -> Agent[None, str | DeferredToolRequests]:
    return Agent(
        script.model,
        toolsets=[GatekeeperToolset(gate, tools.toolset, resumable=True)],
        output_type=[str, DeferredToolRequests],
    )


class Carried:
    """A paused run as another process reads it back: the messages and the deferred requests."""

    def __init__(self, result: Any) -> None:
        assert isinstance(result.output, DeferredToolRequests)
        self.messages = result.all_messages_json()
        self.requests = REQUESTS.dump_json(result.output)

    def history(self) -> Any:
        return ModelMessagesTypeAdapter.validate_json(self.messages)

    def deferred(self) -> DeferredToolRequests:
        return REQUESTS.validate_json(self.requests)


async def test_the_run_ends_with_the_requests_and_resumes_with_what_the_people_decided() -> None:
    inbox = RecordingChannel()
    gate = make_gate(inbox)
    tools = Tools()
    script = Script(TWO_REFUNDS, done())
    agent = resumable(gate, tools, script)
    with gate.session(agent="billing-bot"):
        first = await agent.run("refund both")
        carried = Carried(first)
        requests = carried.deferred()
        assert [c.tool_call_id for c in requests.approvals] == ["c1", "c2"]
        ids = {
            call_id: meta["gatekeeper_request_id"] for call_id, meta in requests.metadata.items()
        }
        assert sorted(ids.values()) == sorted(r.id for r in inbox.notified)
        assert {r.key for r in inbox.notified} == {"c1", "c2"}
        assert requests.metadata["c1"]["tool"] == "refund"
        assert tools.ran == []
        assert await deferred_results(gate, requests) is None  # nobody decided yet

        gate.approve(ids["c1"], approver="alice")
        gate.deny(ids["c2"], approver="alice", comment="use the sandbox account")
        results = await deferred_results(gate, requests)
        assert results is not None
        second = await agent.run(message_history=carried.history(), deferred_tool_results=results)
    assert second.output == "done"
    assert tools.ran == [("refund", {"order_id": "A-1", "amount": 20.0})]
    read = script.returns(1)
    assert read["c1"].content == "refunded 20.0 on A-1"
    assert read["c2"].content == DENIAL
    assert len(inbox.notified) == 2


async def test_an_approval_in_the_results_is_not_taken_for_one() -> None:
    """Resumed with ToolApproved before anyone decided: nothing runs, the run defers again."""
    inbox = RecordingChannel()
    gate = make_gate(inbox)
    tools = Tools()
    agent = resumable(gate, tools, Script(TWO_REFUNDS, done()))
    with gate.session(agent="billing-bot"):
        carried = Carried(await agent.run("refund both"))
        forged = DeferredToolResults(approvals={"c1": ToolApproved(), "c2": True})
        again = await agent.run(message_history=carried.history(), deferred_tool_results=forged)
    assert tools.ran == []
    assert isinstance(again.output, DeferredToolRequests)
    assert again.output.metadata == carried.deferred().metadata  # the same requests
    assert len(inbox.notified) == 2


async def test_edited_arguments_in_the_results_are_refused() -> None:
    gate = make_gate(RecordingChannel())
    tools = Tools()
    agent = resumable(gate, tools, Script(TWO_REFUNDS, done()))
    with gate.session(agent="billing-bot"):
        carried = Carried(await agent.run("refund both"))
        for meta in carried.deferred().metadata.values():
            gate.approve(meta["gatekeeper_request_id"], approver="alice")
        results = DeferredToolResults(
            approvals={
                "c1": ToolApproved(override_args={"order_id": "A-1", "amount": 2000}),
                "c2": ToolApproved(),
            }
        )
        await agent.run(message_history=carried.history(), deferred_tool_results=results)
    assert tools.ran == [("refund", {"order_id": "B-2", "amount": 500.0})]


async def test_resuming_the_same_run_twice_runs_the_approved_call_once() -> None:
    gate = make_gate(RecordingChannel())
    tools = Tools()
    script = Script(TWO_REFUNDS, done(), done())
    agent = resumable(gate, tools, script)
    with gate.session(agent="billing-bot"):
        carried = Carried(await agent.run("refund both"))
        for meta in carried.deferred().metadata.values():
            gate.approve(meta["gatekeeper_request_id"], approver="alice")
        for _ in range(2):
            results = deferred_results_sync(gate, carried.deferred())
            assert results is not None
            await agent.run(message_history=carried.history(), deferred_tool_results=results)
    assert sorted(args["order_id"] for _, args in tools.ran) == ["A-1", "B-2"]
    assert "It was not run again." in str(script.returns(2)["c1"].content)


async def test_the_events_show_the_requests_the_run_waits_for() -> None:
    gate = make_gate(RecordingChannel())
    agent = resumable(gate, Tools(), Script(TWO_REFUNDS, done()))
    seen: list[DeferredToolRequestsEvent] = []
    with gate.session(agent="billing-bot"):
        async with agent.iter("refund both") as run:
            async for node in run:
                if Agent.is_call_tools_node(node):
                    async with node.stream(run.ctx) as events:
                        seen += [
                            e async for e in events if isinstance(e, DeferredToolRequestsEvent)
                        ]
    (event,) = seen
    ids = [meta["gatekeeper_request_id"] for meta in event.requests.metadata.values()]
    assert all(gate.get(rid).status.value == "pending" for rid in ids) and len(ids) == 2


async def test_deferred_results_needs_requests_the_toolset_deferred() -> None:
    gate = make_gate()
    with pytest.raises(ValueError, match="resumable GatekeeperToolset"):
        await deferred_results(gate, DeferredToolRequests(approvals=[call("refund", {}, "x")]))


async def test_without_resumable_a_held_call_waits_in_the_run() -> None:
    from gatekeeper.testing import AutoDecider

    gate = make_gate(AutoDecider(approver="alice"))
    tools = Tools()
    agent = Agent(
        Script(TWO_REFUNDS, done()).model, toolsets=[GatekeeperToolset(gate, tools.toolset)]
    )
    with gate.session(agent="billing-bot"):
        result = await agent.run("refund both")
    assert result.output == "done" and len(tools.ran) == 2
