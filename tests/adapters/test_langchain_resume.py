"""LangGraph runs that end while a held call waits (``resumable=True``), and HITL's pauses.

Real ``create_agent`` agents with a checkpointer and a scripted model; the
people decide through the gate's own API (another process would use the CLI:
tests/adapters/test_resume_across_processes.py).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain.agents.middleware import HumanInTheLoopMiddleware
from langchain_core.messages import ToolMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from gatekeeper import Gatekeeper
from gatekeeper.testing import AutoDecider, RecordingChannel
from gatekeeper_langchain import (
    GatekeeperMiddleware,
    StackedApprovals,
    decide_hitl,
    gate_tools,
    resume_command,
)
from tests.adapters.test_langchain import DENIAL, Shop, memory_gate, say, script
from tests.gatekit import audit_events

CONFIG: Any = {"configurable": {"thread_id": "t1"}}
TWO_REFUNDS = say(
    "Refunding both orders.",
    ("refund", {"order_id": "A-1", "amount": 20}, "c1"),
    ("refund", {"order_id": "B-2", "amount": 500}, "c2"),
)


def resumable_agent(how: str, gate: Gatekeeper, shop: Shop, *turns: Any) -> Any:
    model = script(*turns)
    if how == "tools":
        tools = gate_tools(gate, shop.sync_tools(), resumable=True)
        return create_agent(model, tools, checkpointer=InMemorySaver())
    return create_agent(
        model,
        shop.sync_tools(),
        middleware=[GatekeeperMiddleware(gate, resumable=True)],
        checkpointer=InMemorySaver(),
    )


def waiting(result: Any) -> dict[str, str]:
    """tool call id -> gatekeeper request id, of the held calls the run stopped on."""
    return {
        i.value["tool_call_id"]: i.value["gatekeeper_request_id"]
        for i in result.interrupts
        if i.value.get("type") == "gatekeeper_approval"
    }


def tool_messages(result: Any) -> dict[str, ToolMessage]:
    return {m.tool_call_id: m for m in result.value["messages"] if isinstance(m, ToolMessage)}


@pytest.mark.parametrize("how", ["tools", "middleware"])
def test_the_run_ends_while_calls_wait_and_resumes_with_what_the_people_decided(how: str) -> None:
    inbox = RecordingChannel()
    gate = memory_gate(inbox)
    shop = Shop()
    agent = resumable_agent(how, gate, shop, TWO_REFUNDS, "Refunded A-1; B-2 was denied.")
    with gate.session(agent="billing-bot"):
        first = agent.invoke({"messages": [("user", "refund both")]}, CONFIG, version="v2")
        held = waiting(first)
        assert set(held) == {"c1", "c2"}
        assert shop.ran == []
        assert sorted(held.values()) == sorted(r.id for r in inbox.notified)
        (value,) = [i.value for i in first.interrupts if i.value["tool_call_id"] == "c1"]
        assert value["name"] == "refund" and value["args"] == {"order_id": "A-1", "amount": 20}
        assert value["expires_at"] and held["c1"] in value["description"]

        # Resumed before anyone decided, with a payload that says "approve": it stops again.
        again = agent.invoke(
            Command(resume={i.id: {"type": "approve"} for i in first.interrupts}),
            CONFIG,
            version="v2",
        )
        assert waiting(again) == held and shop.ran == []
        assert len(inbox.notified) == 2  # the people were not asked again

        gate.approve(held["c1"], approver="alice")
        gate.deny(held["c2"], approver="bob", comment="use the sandbox account")
        done = agent.invoke(resume_command(again.interrupts), CONFIG, version="v2")
    assert done.interrupts == ()
    assert shop.ran == [("refund", {"order_id": "A-1", "amount": 20.0})]
    read = tool_messages(done)
    assert read["c1"].content == "refunded 20.0 on A-1"
    assert read["c2"].content == DENIAL and read["c2"].status == "error"
    assert done.value["messages"][-1].content == "Refunded A-1; B-2 was denied."
    assert {r.key for r in inbox.notified} == {"c1", "c2"}  # held under the tool call ids


def test_the_stream_shows_the_request_a_call_waits_for() -> None:
    gate = memory_gate(RecordingChannel())
    shop = Shop()
    agent = resumable_agent("middleware", gate, shop, TWO_REFUNDS, "ok")
    with gate.session(agent="billing-bot"):
        updates = list(agent.stream({"messages": [("user", "go")]}, CONFIG, stream_mode="updates"))
    paused = [i.value for u in updates for i in u.get("__interrupt__", ())]
    assert {v["type"] for v in paused} == {"gatekeeper_approval"}
    assert {v["tool_call_id"] for v in paused} == {"c1", "c2"}
    assert all(gate.get(v["gatekeeper_request_id"]).status.value == "pending" for v in paused)


def test_an_async_agent_ends_and_resumes_the_same_way() -> None:
    gate = memory_gate(RecordingChannel())
    shop = Shop()
    model = script(TWO_REFUNDS, "ok")
    agent = create_agent(
        model,
        shop.async_tools(),
        middleware=[GatekeeperMiddleware(gate, resumable=True)],
        checkpointer=InMemorySaver(),
    )

    async def run() -> Any:
        with gate.session(agent="billing-bot"):
            first = await agent.ainvoke({"messages": [("user", "go")]}, CONFIG, version="v2")
            held = waiting(first)
            gate.approve(held["c1"], approver="alice")
            gate.approve(held["c2"], approver="alice")
            return await agent.ainvoke(resume_command(first.interrupts), CONFIG, version="v2")

    done = asyncio.run(run())
    assert done.interrupts == ()
    assert sorted(o["order_id"] for _, o in shop.ran) == ["A-1", "B-2"]


def test_resuming_a_saved_run_twice_runs_the_approved_call_once() -> None:
    """A copy of the checkpoint resumed after the call ran: it re-attaches, and nothing runs."""
    gate = memory_gate(RecordingChannel())
    shop = Shop()
    saver = InMemorySaver()
    model = script(TWO_REFUNDS, "ok", "ok again")
    agent = create_agent(
        model,
        shop.sync_tools(),
        middleware=[GatekeeperMiddleware(gate, resumable=True)],
        checkpointer=saver,
    )
    with gate.session(agent="billing-bot"):
        first = agent.invoke({"messages": [("user", "go")]}, CONFIG, version="v2")
        paused_at = agent.get_state(CONFIG).config
        for request_id in waiting(first).values():
            gate.approve(request_id, approver="alice")
        agent.invoke(resume_command(first.interrupts), CONFIG, version="v2")
        # Resume again from the checkpoint the run paused at (a stale copy of the saved run).
        replay = agent.invoke(resume_command(first.interrupts), paused_at, version="v2")
    assert len(shop.ran) == 2  # each approved call ran once
    read = tool_messages(replay)
    assert "It was not run again." in str(read["c1"].content)
    assert "It was not run again." in str(read["c2"].content)


def test_resume_command_resumes_only_gatekeepers_pauses() -> None:
    with pytest.raises(ValueError, match="none of these interrupts"):
        resume_command([])


def test_a_call_without_a_graph_run_waits_as_usual() -> None:
    """Invoked outside a graph there is nothing to interrupt: the call waits for its decision."""
    gate = memory_gate(AutoDecider(approver="alice"))
    shop = Shop()
    (refund,) = [
        t for t in gate_tools(gate, shop.sync_tools(), resumable=True) if t.name == "refund"
    ]
    with gate.session(agent="billing-bot"):
        out = refund.invoke(
            {
                "name": "refund",
                "args": {"order_id": "A-1", "amount": 5},
                "id": "x1",
                "type": "tool_call",
            }
        )
    assert out.content == "refunded 5.0 on A-1"
    assert shop.ran == [("refund", {"order_id": "A-1", "amount": 5.0})]


# -- LangChain's HumanInTheLoopMiddleware -------------------------------------------------------
@pytest.mark.parametrize("mode", ["batched", "per_call"])
def test_hitl_pauses_are_decided_through_the_gate(mode: str) -> None:
    inbox = RecordingChannel()
    gate = memory_gate(
        inbox,
        AutoDecider(
            approve=lambda r: r.call.args["order_id"] == "A-1",
            approver="bob",
            comment="use the sandbox account",
        ),
    )
    shop = Shop()
    tools = shop.sync_tools()
    hitl = HumanInTheLoopMiddleware(interrupt_on={"refund": True}, interrupt_mode=mode)
    agent = create_agent(
        script(TWO_REFUNDS, "ok"), tools, middleware=[hitl], checkpointer=InMemorySaver()
    )
    with gate.session(agent="billing-bot"):
        first = agent.invoke({"messages": [("user", "go")]}, CONFIG, version="v2")
        assert first.interrupts and shop.ran == []
        command = decide_hitl(gate, agent.get_state(CONFIG), tools=tools)
        done = agent.invoke(command, CONFIG, version="v2")
    assert shop.ran == [("refund", {"order_id": "A-1", "amount": 20.0})]
    read = tool_messages(done)
    assert read["c1"].content == "refunded 20.0 on A-1"
    assert DENIAL in str(read["c2"].content)
    assert [r.call.reason for r in inbox.notified] == ["Refunding both orders."] * 2
    assert {r.key for r in inbox.notified} == {"c1", "c2"}
    released = [e for e in audit_events(gate) if e.kind == "request.executed"]
    assert [e.data["outcome"] for e in released] == [
        "released to LangChain's HumanInTheLoopMiddleware, which runs the tool"
    ]


def test_an_approvers_edit_becomes_a_hitl_edit_or_a_rejection_with_the_arguments() -> None:
    gate = memory_gate(AutoDecider(approver="alice", args=lambda r: {**r.call.args, "amount": 5}))
    for allowed, expect in (
        (["approve", "edit", "reject"], "edit"),
        (["approve", "reject"], "reject"),
    ):
        shop = Shop()
        tools = shop.sync_tools()
        hitl = HumanInTheLoopMiddleware(
            interrupt_on={"refund": {"allowed_decisions": allowed}}, interrupt_mode="per_call"
        )
        model = script(say("", ("refund", {"order_id": "A-1", "amount": 20}, f"e-{expect}")), "ok")
        agent = create_agent(model, tools, middleware=[hitl], checkpointer=InMemorySaver())
        config: Any = {"configurable": {"thread_id": expect}}
        with gate.session(agent="billing-bot"):
            agent.invoke({"messages": [("user", "go")]}, config, version="v2")
            command = decide_hitl(gate, agent.get_state(config), tools=tools)
            (decision,) = command.resume.values()
            assert decision["type"] == expect
            agent.invoke(command, config, version="v2")
        if expect == "edit":
            assert shop.ran == [("refund", {"order_id": "A-1", "amount": 5.0})]
        else:
            assert shop.ran == []
            assert '"amount": 5' in decision["message"]


@pytest.mark.parametrize(
    ("mode", "order"),
    [("batched", "hitl-first"), ("per_call", "hitl-first"), ("per_call", "gatekeeper-first")],
)
def test_hitl_and_gatekeeper_stacked_are_refused_rather_than_asking_twice(
    mode: str, order: str
) -> None:
    inbox = RecordingChannel()
    gate = memory_gate(inbox, AutoDecider(approver="alice"))
    shop = Shop()
    hitl = HumanInTheLoopMiddleware(interrupt_on={"refund": True}, interrupt_mode=mode)
    ours = GatekeeperMiddleware(gate)
    middleware = [hitl, ours] if order == "hitl-first" else [ours, hitl]
    model = script(say("", ("refund", {"order_id": "A-1", "amount": 20}, "c1")), "ok")
    agent = create_agent(
        model, shop.sync_tools(), middleware=middleware, checkpointer=InMemorySaver()
    )
    answer = {"decisions": [{"type": "approve"}]} if mode == "batched" else {"type": "approve"}

    def run_with_hitls_reviewer_saying_yes() -> None:
        first = agent.invoke({"messages": [("user", "go")]}, CONFIG, version="v2")
        (paused,) = first.interrupts
        agent.invoke(Command(resume={paused.id: answer}), CONFIG, version="v2")

    with gate.session(agent="billing-bot"), pytest.raises(StackedApprovals, match="asked twice"):
        run_with_hitls_reviewer_saying_yes()
    assert shop.ran == []


def test_gated_tools_under_batched_hitl_are_refused_too() -> None:
    gate = memory_gate(AutoDecider(approver="alice"))
    shop = Shop()
    hitl = HumanInTheLoopMiddleware(interrupt_on={"refund": True})
    model = script(say("", ("refund", {"order_id": "A-1", "amount": 20}, "c1")), "ok")
    agent = create_agent(
        model, gate_tools(gate, shop.sync_tools()), middleware=[hitl], checkpointer=InMemorySaver()
    )
    resume = Command(resume={"decisions": [{"type": "approve"}]})
    with gate.session(agent="billing-bot"):
        agent.invoke({"messages": [("user", "go")]}, CONFIG, version="v2")
        with pytest.raises(StackedApprovals):
            agent.invoke(resume, CONFIG, version="v2")
    assert shop.ran == []


def test_a_blocking_call_says_in_the_custom_stream_which_request_it_waits_for() -> None:
    """Without resumable=True the run waits; its custom stream names the request meanwhile."""
    gate = memory_gate(RecordingChannel())
    shop = Shop()
    agent = create_agent(
        script(TWO_REFUNDS, "ok"),
        shop.sync_tools(),
        middleware=[GatekeeperMiddleware(gate)],
    )
    seen: list[dict[str, Any]] = []
    with gate.session(agent="billing-bot"):
        for mode, chunk in agent.stream(
            {"messages": [("user", "go")]}, stream_mode=["custom", "updates"]
        ):
            if mode == "custom" and chunk.get("type") == "gatekeeper_waiting":
                seen.append(chunk)
                assert gate.get(chunk["gatekeeper_request_id"]).status.value == "pending"
                gate.approve(chunk["gatekeeper_request_id"], approver="alice")
    held = gate.store.history(limit=10)
    assert held and len(seen) == len(held)
    assert {c["tool_call_id"] for c in seen} <= {"c1", "c2"}
    assert {c["gatekeeper_request_id"] for c in seen} == {r.id for r in held}
    assert all(r.status.value == "executed" for r in held)
