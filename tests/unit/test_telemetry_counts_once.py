"""One held request is one held call in the counters, however often it is re-attached (#15 review).

docs/observability.md: "a held call is counted when its request is stored".
A resumed run (wait=False, then the same key again) re-attaches to the
request it made; it stores nothing new.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from gatekeeper import ApprovalPending, Gatekeeper, Policy

HOLD_ALL = Policy.from_yaml("version: 1\ndefault: require_approval\n")


def calls(registry: CollectorRegistry, verdict: str) -> float:
    labels = {"verdict": verdict, "tool": "refund", "agent": "default"}
    return registry.get_sample_value("gatekeeper_calls_total", labels) or 0.0


def test_a_resumed_run_counts_its_held_call_once(counting: Any) -> None:
    registry = CollectorRegistry()
    gate = Gatekeeper(policy=HOLD_ALL, telemetry=counting(registry))
    refund = gate.tool("refund", lambda order_id: "refunded")
    with pytest.raises(ApprovalPending) as first:
        refund.run({"order_id": "A-1"}, key="call_1", wait=False)
    with pytest.raises(ApprovalPending):
        refund.run({"order_id": "A-1"}, key="call_1", wait=False)  # the same request
    gate.approve(first.value.request_id, approver="alice")
    assert refund.run({"order_id": "A-1"}, key="call_1", wait=False).result == "refunded"
    assert len(gate.store.history(limit=10)) == 1
    assert calls(registry, "require_approval") == 1  # one request stored, one held call
    gate.close()


def test_the_async_face_counts_alike(counting: Any) -> None:
    registry = CollectorRegistry()
    allow = Policy.from_yaml("version: 1\ndefault: allow\n")
    gate = Gatekeeper(policy=allow, telemetry=counting(registry))

    @gate.guard
    async def refund(order_id: str) -> str:
        return "refunded"

    async def main() -> None:
        for n in range(3):
            assert await refund(f"A-{n}") == "refunded"

    asyncio.run(main())
    assert calls(registry, "allow") == 3
    gate.close()
