"""The Agents SDK's approvals held without waiting, carried in ``RunState.to_string()``, resumed.

A real ``Agent`` and ``Runner`` with a scripted model; the saved state is
restored with ``RunState.from_string`` as another process would (the real
processes: tests/adapters/test_resume_across_processes.py).
"""

from __future__ import annotations

from typing import Any

import pytest
from agents import Agent, RunConfig, Runner, RunState, function_tool

from gatekeeper import ApprovalPending
from gatekeeper.testing import RecordingChannel
from gatekeeper_openai import decide_interruptions, hold_interruptions, hold_interruptions_sync
from tests.adapters.test_openai_agents import (
    DENIAL,
    Ledger,
    ScriptModel,
    call,
    default_loop,  # noqa: F401  (a fixture)
    memory_gate,
    run,
    say,
)
from tests.gatekit import audit_events

TWO_CALLS = [
    say("Refunding, then wiring the rest."),
    call("refund", {"order_id": "A-1", "amount": 20}, "c1"),
    call("wire", {"to": "acct-9", "amount": 1000}, "c2"),
]


def paused_agent(ledger: Ledger, *turns: Any) -> tuple[Agent[Any], ScriptModel]:
    model = ScriptModel([TWO_CALLS, *turns])
    return Agent(name="billing-bot", model=model, tools=ledger.tools), model


async def test_held_calls_wait_in_the_saved_state_and_resume_once_decided() -> None:
    inbox = RecordingChannel()
    gate = memory_gate(inbox)
    ledger = Ledger(needs_approval=True)
    agent, model = paused_agent(ledger, [say("Done.")])
    with gate.session(agent="billing-bot"):
        held = await hold_interruptions(gate, await run(agent, "go"))
        assert not held.done and set(held.waiting) == {"c1", "c2"}
        pending = held.waiting["c1"]
        assert isinstance(pending, ApprovalPending) and pending.tool == "refund"
        assert {p.request_id for p in held.waiting.values()} == {r.id for r in inbox.notified}
        assert {r.key for r in inbox.notified} == {"c1", "c2"}
        assert inbox.notified[0].call.reason == "Refunding, then wiring the rest."
        saved = held.state.to_string()

        # Another process, nothing decided yet: still waiting, nobody asked again.
        again = await hold_interruptions(gate, await RunState.from_string(agent, saved))
        assert set(again.waiting) == {"c1", "c2"} and len(inbox.notified) == 2

        gate.approve(held.waiting["c1"].request_id, approver="alice")
        gate.deny(
            held.waiting["c2"].request_id, approver="alice", comment="use the sandbox account"
        )
        resumed = await hold_interruptions(gate, await RunState.from_string(agent, saved))
        assert resumed.done
        result = await run(agent, resumed.state)
    assert result.final_output == "Done."
    assert ledger.ran == [("refund", {"order_id": "A-1", "amount": 20.0})]
    assert model.outputs(1) == {"c1": "refunded 20.0 on A-1", "c2": DENIAL}
    assert len(inbox.notified) == 2


async def test_a_decision_recorded_before_the_state_was_saved_is_kept() -> None:
    """One call approved (released to the state), the other still waiting: save, restore, hold."""
    gate = memory_gate(RecordingChannel())
    ledger = Ledger(needs_approval=True)
    agent, _ = paused_agent(ledger, [say("Done.")])
    with gate.session(agent="billing-bot"):
        held = await hold_interruptions(gate, await run(agent, "go"))
        gate.approve(held.waiting["c1"].request_id, approver="alice")
        partly = await hold_interruptions(
            gate, await RunState.from_string(agent, held.state.to_string())
        )
        assert set(partly.waiting) == {"c2"}
        saved = partly.state.to_string()  # carries the approval of c1
        gate.approve(held.waiting["c2"].request_id, approver="alice")
        done = await hold_interruptions(gate, await RunState.from_string(agent, saved))
        assert done.done
        await run(agent, done.state)
    assert sorted(name for name, _ in ledger.ran) == ["refund", "wire"]


async def test_decide_interruptions_takes_a_restored_state_and_re_attaches() -> None:
    inbox = RecordingChannel()
    gate = memory_gate(inbox)
    ledger = Ledger(needs_approval=True)
    agent, _ = paused_agent(ledger, [say("Done.")])
    with gate.session(agent="billing-bot"):
        held = await hold_interruptions(gate, await run(agent, "go"))
        for pending in held.waiting.values():
            gate.approve(pending.request_id, approver="alice")
        restored = await RunState.from_string(agent, held.state.to_string())
        state = await decide_interruptions(gate, restored)
        assert state is restored
        await run(agent, state)
    assert len(inbox.notified) == 2  # re-attached: the people were asked once
    assert sorted(name for name, _ in ledger.ran) == ["refund", "wire"]


async def test_resuming_the_paused_state_twice_runs_an_approved_call_once() -> None:
    gate = memory_gate(RecordingChannel())
    ledger = Ledger(needs_approval=True)
    agent, model = paused_agent(ledger, [say("Done.")], [say("Done again.")])
    with gate.session(agent="billing-bot"):
        held = await hold_interruptions(gate, await run(agent, "go"))
        saved = held.state.to_string()
        for pending in held.waiting.values():
            gate.approve(pending.request_id, approver="alice")
        for _ in range(2):
            state = await decide_interruptions(gate, await RunState.from_string(agent, saved))
            await run(agent, state)
    assert sorted(name for name, _ in ledger.ran) == ["refund", "wire"]
    second = model.outputs(2)
    assert second["c1"].endswith("It was not run again.")
    assert second["c2"].endswith("It was not run again.")
    released = [e for e in audit_events(gate) if e.kind == "request.executed"]
    assert len(released) == 2


async def test_a_call_the_policy_decides_is_recorded_at_once() -> None:
    """Allowed and refused calls need nobody: holding records them; the rest wait."""
    gate = memory_gate(RecordingChannel())
    ledger = Ledger(needs_approval=True)
    model = ScriptModel(
        [
            [
                call("refund", {"order_id": "A-1", "amount": 20}, "c1"),
                call("lookup", {"order_id": "A-1"}, "c3"),
            ],
            [say("Done.")],
        ]
    )

    @function_tool(needs_approval=True)
    def lookup(order_id: str) -> str:
        """Look up an order."""
        ledger.ran.append(("lookup", {"order_id": order_id}))
        return "shipped"

    agent = Agent(name="billing-bot", model=model, tools=[ledger.refund, lookup])
    with gate.session(agent="billing-bot"):
        held = await hold_interruptions(gate, await run(agent, "go"))
    assert set(held.waiting) == {"c1"}  # lookup is allowed by the policy: approved on the state


@pytest.mark.usefixtures("default_loop")
def test_the_sync_hold_works_with_run_sync() -> None:
    gate = memory_gate(RecordingChannel())
    ledger = Ledger(needs_approval=True)
    agent, _ = paused_agent(ledger, [say("Done.")])
    with gate.session(agent="billing-bot"):
        result = Runner.run_sync(agent, "go", run_config=RunConfig(tracing_disabled=True))
        held = hold_interruptions_sync(gate, result)
    assert set(held.waiting) == {"c1", "c2"}


async def test_the_sync_hold_refuses_to_run_inside_an_event_loop() -> None:
    gate = memory_gate()
    ledger = Ledger(needs_approval=True)
    agent, _ = paused_agent(ledger)
    result = await run(agent, "go")
    with pytest.raises(RuntimeError, match="await hold_interruptions"):
        hold_interruptions_sync(gate, result)
