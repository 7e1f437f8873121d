"""A guarded call whose flow is closed while it waits withdraws its request.

Closing a generator (or a coroutine) throws ``GeneratorExit`` into it, after
which it may not yield or await again; the flow withdraws the held request
without a command instead (the blocking face at once, or a task of its own on
a running event loop). Before, it yielded a ``cancel`` and Python raised
"generator ignored GeneratorExit", leaving the request pending.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gatekeeper import Gatekeeper, MemoryStore, RequestStatus
from gatekeeper._flow import StoreOp, Tell, adrive, guarded_call
from gatekeeper.testing import RecordingChannel
from tests.gatekit import make_policy


def _a_held_call(monkeypatch: pytest.MonkeyPatch) -> tuple[Gatekeeper, RecordingChannel, Any]:
    """A gate, its channel, and the flow of one call of a tool that needs approval."""
    chan = RecordingChannel()
    gate = Gatekeeper(policy=make_policy(), store=MemoryStore(), channels=[chan])
    made: list[Any] = []

    def capture(self: Gatekeeper, spec: Any, args: Any, kwargs: Any, reason: Any = None) -> None:
        made.append(guarded_call(self, spec, args, kwargs, reason))

    monkeypatch.setattr(Gatekeeper, "_call", capture)

    @gate.guard
    def refund(amount: int) -> None:
        raise AssertionError("never runs")

    refund(1)
    monkeypatch.undo()
    return gate, chan, made[0]


def test_a_flow_closed_while_it_waits_withdraws_its_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gate, chan, flow = _a_held_call(monkeypatch)
    command = flow.send(None)
    while not (isinstance(command, StoreOp) and command.method == "wait"):
        if isinstance(command, StoreOp):
            result = getattr(gate.store, command.method)(*command.args, **command.kwargs)
        else:
            assert isinstance(command, Tell)
            gate._tell(command.what, command.request)
            result = None
        command = flow.send(result)
    flow.close()  # its driver went away (a thread that ended, an object collected)
    req = gate.get(chan.notified[0].id)
    assert req.status is RequestStatus.CANCELLED
    assert req.comment == "the caller stopped waiting"


async def test_a_coroutine_closed_while_it_waits_withdraws_its_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gate, chan, flow = _a_held_call(monkeypatch)
    driving = adrive(gate, flow)
    # Driven by hand, as a task would: each store step runs as a task of its
    # own (so a cancel can't be swallowed inside it), which this loop lets run.
    yielded = driving.send(None)
    for _ in range(100):
        if chan.notified:  # told the channels: it now waits
            break
        await asyncio.wait({yielded})
        yielded = driving.send(None)
    assert chan.notified and gate.get(chan.notified[0].id).status is RequestStatus.PENDING
    driving.close()  # closed, never resumed: no RuntimeError, and it withdraws
    rid = chan.notified[0].id
    for _ in range(100):  # the withdrawal is a task of its own on this loop
        if gate.get(rid).status is not RequestStatus.PENDING:
            break
        await asyncio.sleep(0)
    assert gate.get(rid).status is RequestStatus.CANCELLED
