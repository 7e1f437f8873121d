"""An approval that reaches the agent too late is closed, never run.

The agent's own clock decides: a held call starts only until ``LATE_APPROVAL``
seconds past its expiry, checked when the approval is learned of and again
right before the tool starts (a claim whose reply was lost comes back a
socket timeout later). Past that the request is closed as failed, "not run",
and the call raises ApprovalTimeout saying so. Both drivers run every test.
"""

from __future__ import annotations

from typing import Any

import pytest

from gatekeeper import (
    ApprovalRequest,
    ApprovalTimeout,
    Gatekeeper,
    MemoryStore,
    RequestStatus,
)
from gatekeeper._flow import LATE_APPROVAL
from gatekeeper.testing import ManualClock, RecordingChannel
from tests.gatekit import make_policy

pytestmark = pytest.mark.usefixtures("both_faces")

TIMEOUT = 30.0


class ApproveThenTimePasses:
    """Approves in time, then the clock jumps ``later`` seconds before the agent hears of it."""

    def __init__(self, clock: ManualClock, later: float) -> None:
        self.clock = clock
        self.later = later
        self.gate: Gatekeeper | None = None

    def bind(self, gate: Gatekeeper) -> None:
        self.gate = gate

    def notify(self, req: ApprovalRequest) -> None:
        assert self.gate is not None
        self.gate.approve(req.id, approver="alice")
        self.clock.advance(self.later)

    def update(self, req: ApprovalRequest) -> None:
        pass


def _gate(store: MemoryStore, clock: ManualClock, later: float) -> tuple[Gatekeeper, Any]:
    gate = Gatekeeper(
        policy=make_policy(),
        store=store,
        clock=clock,
        default_timeout=TIMEOUT,
        channels=[ApproveThenTimePasses(clock, later), RecordingChannel()],
    )
    return gate, gate.channels[1]


def test_an_approval_learned_of_past_expiry_and_grace_is_closed_not_run() -> None:
    clock = ManualClock()
    gate, seen = _gate(MemoryStore(clock=clock), clock, TIMEOUT + LATE_APPROVAL + 0.5)
    runs: list[int] = []

    @gate.guard
    def refund(amount: int) -> None:
        runs.append(amount)

    with pytest.raises(ApprovalTimeout) as caught:
        refund(1)
    assert runs == []
    said = str(caught.value)
    assert "timed out at" in said
    assert "approved, but this agent learned of it only 1.5 s after that" in said
    req = gate.get(seen.notified[0].id)
    assert req.status is RequestStatus.FAILED  # closed: it can never run later
    assert (req.outcome or "").startswith("not run: it was approved")


def test_an_approval_learned_of_within_the_grace_runs() -> None:
    clock = ManualClock()
    gate, _ = _gate(MemoryStore(clock=clock), clock, TIMEOUT + LATE_APPROVAL - 0.5)

    @gate.guard
    def refund(amount: int) -> int:
        return amount

    assert refund(7) == 7


class SlowClaim(MemoryStore):
    """A claim whose reply came back late (a lost reply retried after the socket timeout)."""

    def __init__(self, clock: ManualClock, late_by: float) -> None:
        super().__init__(clock=clock)
        self.late_by = late_by

    def claim(self, *args: Any, **kwargs: Any) -> ApprovalRequest:
        claimed = super().claim(*args, **kwargs)
        self.clock.advance(self.late_by)
        return claimed


def test_a_tool_that_could_start_only_past_the_grace_does_not_start() -> None:
    clock = ManualClock()
    store = SlowClaim(clock, late_by=TIMEOUT + LATE_APPROVAL + 2)
    gate, seen = _gate(store, clock, 0.0)
    runs: list[int] = []

    @gate.guard
    def refund(amount: int) -> None:
        runs.append(amount)

    with pytest.raises(ApprovalTimeout, match=r"this agent could start it only 3\.0 s after that"):
        refund(1)
    assert runs == []
    req = gate.get(seen.notified[0].id)
    assert req.status is RequestStatus.FAILED  # claimed, then closed: not run
    assert "ApprovalTimeout" in (req.outcome or "")
