"""Telemetry that breaks must not change what a guarded call does (review of #15).

The OpenTelemetry SDK calls span processors synchronously and does not catch
what they raise (SynchronousMultiSpanProcessor.on_start/on_end); a broken
processor or exporter wrapper is the application's bug, but the guarded call
must then behave exactly as without telemetry: the tool's result reaches the
caller, and nothing is run twice or left unrun because of a span.
"""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from prometheus_client import CollectorRegistry

from gatekeeper import Gatekeeper, Policy, Telemetry

ALLOW = "version: 1\ndefault: allow\n"


class Broken(SpanProcessor):
    def __init__(self, where: str) -> None:
        self.where = where

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        if self.where == "start":
            raise RuntimeError("processor broke on start")

    def on_end(self, span: Any) -> None:
        if self.where == "end":
            raise RuntimeError("processor broke on end")


def gate_with(where: str) -> tuple[Gatekeeper, list[str]]:
    provider = TracerProvider()
    provider.add_span_processor(Broken(where))
    gate = Gatekeeper(
        policy=Policy.from_yaml(ALLOW),
        telemetry=Telemetry(traces=True, tracer_provider=provider),
    )
    ran: list[str] = []

    @gate.guard
    def search_docs(query: str) -> str:
        ran.append(query)
        return "found"

    gate._test_tool = search_docs  # type: ignore[attr-defined]
    return gate, ran


@pytest.mark.parametrize("where", ["start", "end"])
def test_a_broken_span_processor_leaves_the_call_as_it_was(where: str) -> None:
    gate, ran = gate_with(where)
    try:
        assert gate._test_tool("refund policy") == "found"  # type: ignore[attr-defined]
        assert ran == ["refund policy"]
    finally:
        gate.close()


@pytest.mark.parametrize("where", ["start", "end"])
def test_a_broken_span_processor_leaves_the_async_call_as_it_was(where: str) -> None:
    import asyncio

    provider = TracerProvider()
    provider.add_span_processor(Broken(where))
    gate = Gatekeeper(
        policy=Policy.from_yaml(ALLOW),
        telemetry=Telemetry(traces=True, tracer_provider=provider),
    )
    ran: list[str] = []

    @gate.guard
    async def search_docs(query: str) -> str:
        ran.append(query)
        return "found"

    try:
        assert asyncio.run(search_docs("refund policy")) == "found"
        assert ran == ["refund policy"]
    finally:
        gate.close()


@pytest.mark.parametrize("where", ["start", "end"])
def test_a_held_call_approved_runs_once_and_the_decision_counts_with_a_broken_processor(
    where: str,
) -> None:
    """The wait span ends as the approved call starts, and the decide span wraps the
    decision: neither may leave the approval unrecorded or the approved call unrun."""
    from gatekeeper.testing import AutoDecider

    provider = TracerProvider()
    provider.add_span_processor(Broken(where))
    gate = Gatekeeper(
        policy=Policy.from_yaml("version: 1\ndefault: require_approval\n"),
        channels=[AutoDecider(approver="alice")],
        telemetry=Telemetry(
            traces=True, metrics=True, tracer_provider=provider, registry=CollectorRegistry()
        ),
    )
    ran: list[str] = []

    @gate.guard
    def refund(order_id: str) -> str:
        ran.append(order_id)
        return "refunded"

    try:
        assert refund("A-1") == "refunded"
        assert ran == ["A-1"]
        (req,) = gate.store.history(limit=10)
        assert req.status.value == "executed"
    finally:
        gate.close()
