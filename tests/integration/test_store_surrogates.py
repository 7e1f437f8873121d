"""Lone surrogates on both stores: one bad event never costs the others, nothing raises.

A lone surrogate (``"\\ud800"``) fits in a Python str but UTF-8 can't encode
it. Each test runs on a MemoryStore and on a RedisStore.
"""

from __future__ import annotations

import pytest

from gatekeeper import Gatekeeper, InvalidToolCall, RequestStatus
from gatekeeper.audit import draft, parse_event
from gatekeeper.store import Store
from gatekeeper.testing import AutoDecider, ManualClock
from tests.gatekit import make_policy
from tests.storekit import held_event, make_request

LONE = "\ud800"


def _events(store: Store) -> list:  # type: ignore[type-arg]
    store.flush()
    return [parse_event(e.body, e.hash) for e in store.audit_entries()]


@pytest.mark.parametrize("soon", [True, False], ids=["record_soon", "record"])
def test_one_event_with_a_surrogate_does_not_stop_the_batch_being_sealed(
    clock_and_store: tuple[ManualClock, Store], soon: bool
) -> None:
    """A batch of queued events with one bad event in the middle is sealed whole, in order."""
    _, store = clock_and_store
    batch = [
        draft("call.executed", at_ms=1, actor="agent:a", data={"outcome": "1"}),
        draft("call.failed", at_ms=2, actor=f"agent:x{LONE}", data={"outcome": f"boom {LONE}"}),
        draft("channel.failed", at_ms=3, actor="system", data={"error": "x"}),
    ]
    (store.record_soon if soon else store.record)(batch)
    events = _events(store)
    assert [e.kind for e in events] == ["call.executed", "call.failed", "channel.failed"]
    assert events[1].actor == "agent:x<U+D800>"
    assert events[1].data == {"outcome": "boom <U+D800>"}
    assert Gatekeeper(store=store).verify_audit().ok


def test_a_held_tool_failing_with_a_surrogate_is_recorded(
    clock_and_store: tuple[ManualClock, Store],
) -> None:
    """The tool's error reaches the request and the audit log, the surrogate written as a code."""
    clock, store = clock_and_store
    decider = AutoDecider()
    gate = Gatekeeper(policy=make_policy(), store=store, clock=clock, channels=[decider])

    @gate.guard
    def refund(order_id: str) -> None:
        raise RuntimeError(f"card {order_id} declined {LONE}")

    with pytest.raises(RuntimeError):
        refund("A-1")
    req = gate.get(decider.decided[0].id)
    assert req.status is RequestStatus.FAILED
    assert req.outcome == "RuntimeError: card A-1 declined <U+D800>"
    events = _events(store)
    assert events[-1].kind == "request.failed"
    assert gate.verify_audit().ok


def test_surrogate_arguments_are_refused_before_the_store_holds_anything(
    clock_and_store: tuple[ManualClock, Store],
) -> None:
    clock, store = clock_and_store
    gate = Gatekeeper(policy=make_policy(), store=store, clock=clock, default_timeout=5.0)
    tool = gate.tool("send_mail", lambda **a: a)
    with pytest.raises(InvalidToolCall, match="lone surrogate"):
        tool({"to": f"bob{LONE}@example.com"}, reason="the user asked")
    with pytest.raises(InvalidToolCall, match="lone surrogate"):
        tool({"to": "bob@example.com"}, reason=f"the user asked {LONE}")
    assert store.pending() == []
    assert _events(store) == []


def test_an_approvers_comment_with_a_surrogate_is_recorded_as_a_code(
    clock: ManualClock, store: Store
) -> None:
    """Comments come from people, who may paste agent text: stored, never an encoding error."""
    from gatekeeper import Gatekeeper, Policy

    gate = Gatekeeper(policy=Policy.empty(), store=store)
    req = make_request(clock)
    store.hold(req, held_event(req))
    done = gate.deny(req.id, approver="alice", comment="no \ud800 way")
    assert done.comment == "no <U+D800> way"
    assert store.get(req.id).comment == "no <U+D800> way"
    gate.halt(agent="billing-bot", by="ops\udfff", reason="stop \ud800")
    assert [h.by for h in store.halts()] == ["ops<U+DFFF>"]
