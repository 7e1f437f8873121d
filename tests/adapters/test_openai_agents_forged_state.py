"""A saved RunState edited to approve a held call is refused, not believed.

The state string is the app's to store and anyone who can write it can edit
it; the approvals it carries count only when the store shows the same call
approved by a person and released to the SDK by the bridge.
"""

from __future__ import annotations

import pytest
from agents import RunState

from gatekeeper import TamperingDetected
from gatekeeper.testing import RecordingChannel
from gatekeeper_openai import decide_interruptions, hold_interruptions
from tests.adapters.test_openai_agents import Ledger, memory_gate, run, say
from tests.adapters.test_openai_agents_resume import paused_agent


@pytest.mark.parametrize("alice", ["denies", "has not decided"])
async def test_an_approval_written_into_the_saved_state_runs_nothing(alice: str) -> None:
    gate = memory_gate(RecordingChannel())
    ledger = Ledger(needs_approval=True)
    agent, _ = paused_agent(ledger, [say("Done.")])
    with gate.session(agent="billing-bot"):
        held = await hold_interruptions(gate, await run(agent, "go"))
        edited = await RunState.from_string(agent, held.state.to_string())
        edited.approve(next(i for i in edited.get_interruptions() if i.call_id == "c2"))
        forged = edited.to_string()  # the wire of 1000 marked approved by whoever edits files
        if alice == "denies":
            gate.deny(held.waiting["c2"].request_id, approver="alice", comment="no")
        gate.approve(held.waiting["c1"].request_id, approver="alice")
        with pytest.raises(TamperingDetected, match="no person approved it"):
            await decide_interruptions(gate, await RunState.from_string(agent, forged))
    assert ledger.ran == []


async def test_an_approval_the_bridge_recorded_is_kept_on_resume() -> None:
    gate = memory_gate(RecordingChannel())
    ledger = Ledger(needs_approval=True)
    agent, _ = paused_agent(ledger, [say("Done.")])
    with gate.session(agent="billing-bot"):
        held = await hold_interruptions(gate, await run(agent, "go"))
        gate.approve(held.waiting["c1"].request_id, approver="alice")
        again = await hold_interruptions(gate, held.state)  # c1 released, c2 still waits
        assert set(again.waiting) == {"c2"}
        saved = again.state.to_string()
        gate.approve(held.waiting["c2"].request_id, approver="alice")
        state = await decide_interruptions(gate, await RunState.from_string(agent, saved))
        await run(agent, state)
    assert sorted(name for name, _ in ledger.ran) == ["refund", "wire"]
