"""The counters a scripted mix does not reach: halts, the sweep, tampering, store failures.

Each is produced for real — a person's halt and a halt rule, requests whose
caller died found by the sweep, an agent's Redis user writing ``approved``
into its own request, a Redis that does not answer — and read back from the
registry with ``prometheus_client``'s own reader.
"""

from __future__ import annotations

import contextlib
import functools
import socket
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from gatekeeper import (
    AgentHalted,
    Gatekeeper,
    MemoryStore,
    Policy,
    RedisStore,
    StoreUnavailable,
    TamperingDetected,
    Telemetry,
)
from gatekeeper._sweep import sweep
from gatekeeper.store._redis import RetryPolicy
from gatekeeper.testing import ManualClock
from tests import trustkit
from tests.storekit import held_event, make_request, vote
from tests.trustkit import Deployment, HeldCall, wake


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


def test_halts_are_counted_by_scope_and_by_whom(counting: Any) -> None:
    registry = CollectorRegistry()
    gate = Gatekeeper(
        policy=Policy.from_yaml(
            "version: 1\ndefault: allow\nrules:\n"
            "  - {id: tripwire, match: {tool: open_tunnel}, verdict: halt}\n"
        ),
        store=MemoryStore(),
        telemetry=counting(registry),
    )

    @gate.guard
    def open_tunnel(host: str) -> str:
        raise AssertionError("ran")

    with gate.session(agent="bot"), pytest.raises(AgentHalted):
        open_tunnel("evil.example")
    gate.halt(agent="other-bot", by="alice", reason="looks wrong")
    gate.halt(everything=True, by="alice")
    assert sample(registry, "gatekeeper_halts_total", scope="agent", source="policy") == 1
    assert sample(registry, "gatekeeper_halts_total", scope="agent", source="person") == 1
    assert sample(registry, "gatekeeper_halts_total", scope="all", source="person") == 1
    assert (
        sample(registry, "gatekeeper_calls_total", verdict="halt", tool="open_tunnel", agent="bot")
        == 1
    )
    gate.close()


def test_the_sweep_counts_requests_whose_caller_is_gone() -> None:
    registry = CollectorRegistry()
    clock = ManualClock()
    store = MemoryStore(clock=clock)
    gate = Gatekeeper(store=store, telemetry=Telemetry(metrics=True, registry=registry))
    waiting, running = (make_request(clock, lease=30, timeout=600) for _ in "12")
    expiring = make_request(clock, lease=30, timeout=10)
    for req in (waiting, running, expiring):
        store.hold(req, held_event(req))
    store.decide(running.id, vote(clock, running, "alice"))
    store.claim(running.id, args_digest=running.args_digest, token="t1")
    clock.advance(31)
    assert len(sweep(gate)) == 3
    assert sample(registry, "gatekeeper_abandoned_total", status="abandoned") == 1
    assert sample(registry, "gatekeeper_abandoned_total", status="outcome_unknown") == 1
    assert sample(registry, "gatekeeper_abandoned_total", status="expired") == 0  # not a loss
    gate.close()


@pytest.mark.redis
def test_a_forged_approval_is_one_tampering_refusal(
    dep: Deployment, monkeypatch: pytest.MonkeyPatch, counting: Any
) -> None:
    registry = CollectorRegistry()
    telemetry = counting(registry)
    monkeypatch.setattr(trustkit, "Gatekeeper", functools.partial(Gatekeeper, telemetry=telemetry))
    call = HeldCall(dep)
    dep.attacker.hset(dep.agent.keys.of("billing-bot").req(call.id), "status", "approved")
    wake(dep, call.id)
    call.join()
    assert call.ran == []
    assert isinstance(call.error, TamperingDetected)
    assert sample(registry, "gatekeeper_tampering_refusals_total") == 1
    labels = {"verdict": "require_approval", "tool": "refund", "agent": "billing-bot"}
    assert sample(registry, "gatekeeper_calls_total", **labels) == 1


def test_a_redis_that_does_not_answer_is_counted_as_retries_then_an_error() -> None:
    registry = CollectorRegistry()
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    store = RedisStore(
        f"redis://127.0.0.1:{port}/0", retry=RetryPolicy(attempts=3, within=1.0, max_wait=0.01)
    )
    gate = Gatekeeper(store=store, telemetry=Telemetry(metrics=True, registry=registry))
    with pytest.raises(StoreUnavailable):
        gate.pending()
    # A first try, then the retry policy's 3 attempts: 3 retries, and one error in the end.
    assert sample(registry, "gatekeeper_store_retries_total") == 3
    assert sample(registry, "gatekeeper_store_errors_total", error="StoreUnavailable") == 1
    with contextlib.suppress(StoreUnavailable):  # nothing to flush to: said, not hidden
        gate.close()
