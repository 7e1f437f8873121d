"""Traces of a real LangChain agent run, read from the OpenTelemetry SDK's in-memory exporter.

LangChain emits no OpenTelemetry spans of its own; instrumentations that do
(OpenInference, OpenLLMetry) open a span around each tool invocation. The
framework's tool span here stands for that: :func:`instrumented_tools`
patches ``BaseTool.invoke`` (what LangGraph's ``ToolNode`` calls) to run
inside an ``execute_tool <name>`` span of a tracer called
``framework-stand-in``, so the test can check gatekeeper's span sits inside
it. The agent and the approver are two gates on one real Redis, as an
agent process and the console would be; the approver's span finds the call's
through the trace context stored in the request.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.tools import BaseTool, tool
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gatekeeper import (
    ApprovalRequest,
    Gatekeeper,
    MemoryStore,
    Policy,
    RedisStore,
    Telemetry,
    call_key,
)
from gatekeeper.testing import AutoDecider, RecordingChannel
from gatekeeper_langchain import gate_tools
from tests.adapters.test_langchain import THE_RUN, Approver, script
from tests.conftest import RedisServer

POLICY = """
version: 1
default: allow
rules:
  - {id: refunds, match: {tool: refund}, verdict: require_approval, risk: high}
"""


@pytest.fixture
def exporter() -> tuple[TracerProvider, InMemorySpanExporter]:
    provider = TracerProvider()
    spans = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    return provider, spans


@pytest.fixture
def instrumented_tools(
    exporter: tuple[TracerProvider, InMemorySpanExporter], monkeypatch: pytest.MonkeyPatch
) -> None:
    """What an instrumented framework does: each tool runs inside a span of the framework's."""
    tracer = exporter[0].get_tracer("framework-stand-in")
    original = BaseTool.invoke

    def invoke(self: BaseTool, *args: Any, **kwargs: Any) -> Any:
        with tracer.start_as_current_span(f"execute_tool {self.name}"):
            return original(self, *args, **kwargs)

    monkeypatch.setattr(BaseTool, "invoke", invoke)


class Shop:
    """lookup_order and refund; refund notes when it ran and opens a span of its own inside."""

    def __init__(self, provider: TracerProvider) -> None:
        self.refunds: list[tuple[str, int]] = []
        backend = provider.get_tracer("billing-backend")
        refunds = self.refunds

        @tool
        def lookup_order(order_id: str) -> str:
            """Look up an order by its id."""
            return f"order {order_id}: charged twice, 50 each"

        @tool
        def refund(order_id: str, amount: float) -> str:
            """Refund part of an order."""
            refunds.append((order_id, time.time_ns()))
            with backend.start_as_current_span("billing.refund"):
                return f"refunded {amount} on {order_id}"

        self.tools = [lookup_order, refund]


@pytest.fixture
def traced_gates(
    redis_server: RedisServer, redis_prefix: str, exporter: tuple[TracerProvider, Any]
) -> Iterator[tuple[Gatekeeper, Gatekeeper, RecordingChannel]]:
    provider = exporter[0]
    channel = RecordingChannel()
    agent = Gatekeeper(
        policy=Policy.from_yaml(POLICY),
        store=RedisStore(redis_server.url, prefix=redis_prefix),
        channels=[channel],
        telemetry=Telemetry(traces=True, tracer_provider=provider),
    )
    console = Gatekeeper(
        policy=Policy.from_yaml(POLICY),
        store=RedisStore(redis_server.url, prefix=redis_prefix),
        telemetry=Telemetry(traces=True, tracer_provider=provider),
    )
    yield agent, console, channel
    agent.close()
    console.close()


def by_scope(spans: tuple[ReadableSpan, ...], scope: str) -> list[ReadableSpan]:
    return [s for s in spans if s.instrumentation_scope and s.instrumentation_scope.name == scope]


def attribute_text(spans: tuple[ReadableSpan, ...]) -> str:
    """Every attribute value of every span, as one text to search."""
    return json.dumps([dict(s.attributes or {}) for s in spans], default=str)


def approve_as_alice(console: Gatekeeper, request: ApprovalRequest) -> None:
    console.approve(request.id, approver="alice", args={**request.call.args, "amount": 20})


def deny_as_bob(console: Gatekeeper, request: ApprovalRequest) -> None:
    console.deny(request.id, approver="bob", comment="use the sandbox account")


@pytest.mark.redis
@pytest.mark.usefixtures("instrumented_tools")
def test_a_langchain_run_traces_each_call_inside_the_frameworks_tool_span(
    traced_gates: tuple[Gatekeeper, Gatekeeper, RecordingChannel],
    exporter: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    from langchain.agents import create_agent

    gate, console, channel = traced_gates
    provider, exported = exporter
    shop = Shop(provider)
    agent = create_agent(script(*THE_RUN), gate_tools(gate, shop.tools))
    approver = Approver(console, channel, approve_as_alice, deny_as_bob)
    agent.invoke({"messages": [{"role": "user", "content": "I was charged twice"}]})
    approver.finish()
    spans = exported.get_finished_spans()

    framework = by_scope(spans, "framework-stand-in")
    ours = [s for s in by_scope(spans, "gatekeeper") if s.name.startswith("execute_tool")]
    assert [s.name for s in framework] == [
        f"execute_tool {n}" for n in ("lookup_order",) + ("refund",) * 2
    ]
    assert len(ours) == 3
    # Each of gatekeeper's call spans is the child of the framework's span of that tool call.
    for theirs, mine in zip(framework, sorted(ours, key=lambda s: s.start_time or 0), strict=True):
        assert mine.parent is not None
        assert mine.parent.span_id == theirs.context.span_id
        assert mine.context.trace_id == theirs.context.trace_id
        assert mine.name == theirs.name
        assert mine.attributes["gen_ai.operation.name"] == "execute_tool"
    lookup, approved, denied = sorted(ours, key=lambda s: s.start_time or 0)
    assert lookup.attributes["gatekeeper.verdict"] == "allow"
    assert approved.attributes["gatekeeper.verdict"] == "require_approval"
    assert approved.attributes["gatekeeper.rules"] == ("refunds",)
    assert approved.attributes["gatekeeper.risk"] == "high"
    assert denied.attributes["error.type"] == "ApprovalDenied"

    # The held calls' waits: children of their call spans, ended by the decision, with who.
    waits = {
        s.parent.span_id: s
        for s in by_scope(spans, "gatekeeper")
        if s.name.startswith("gatekeeper.wait") and s.parent is not None
    }
    decides = [s for s in by_scope(spans, "gatekeeper") if s.name == "gatekeeper.decide"]
    alice_wait, bob_wait = waits[approved.context.span_id], waits[denied.context.span_id]
    assert alice_wait.attributes["gatekeeper.decision.by"] == "alice"
    assert alice_wait.attributes["gatekeeper.decision.status"] == "approved"
    assert (
        alice_wait.attributes["gatekeeper.request.id"]
        == approved.attributes["gatekeeper.request.id"]
    )
    assert bob_wait.attributes["gatekeeper.decision.by"] == "bob"
    assert bob_wait.attributes["gatekeeper.decision.status"] == "denied"
    alice_decide, bob_decide = decides
    assert alice_decide.attributes["gatekeeper.decision.by"] == "alice"
    assert alice_decide.attributes["gatekeeper.decision.approve"] is True
    # The approver's span is linked to the call it decided (trace context carried in Redis).
    (link,) = alice_decide.links
    assert link.context.span_id == approved.context.span_id
    assert link.context.trace_id == approved.context.trace_id
    (link,) = bob_decide.links
    assert link.context.span_id == denied.context.span_id
    # The wait ended once the approval was recorded and before the tool started.
    ((_, refund_ran_at),) = shop.refunds
    assert alice_decide.start_time is not None and alice_wait.end_time is not None
    assert alice_decide.start_time <= alice_wait.end_time <= refund_ran_at
    # The tool ran with gatekeeper's call span current: its own span is a child of it.
    (backend,) = by_scope(spans, "billing-backend")
    assert backend.parent is not None and backend.parent.span_id == approved.context.span_id

    # No argument value in any attribute or status (the arguments can be secrets).
    assert denied.status.description == "ApprovalDenied"
    text = attribute_text(spans) + json.dumps([s.status.description for s in spans])
    for secret in ("A-1", "B-2", "amount", "order_id"):
        assert secret not in text


def test_trace_arguments_on_puts_them_on_the_call_span_escaped_and_bounded(
    exporter: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exported = exporter
    gate = Gatekeeper(
        policy=Policy.from_yaml(POLICY),
        store=MemoryStore(),
        channels=[AutoDecider(approver="alice")],
        telemetry=Telemetry(traces=True, trace_arguments=True, tracer_provider=provider),
    )

    @gate.guard
    def refund(order_id: str, amount: float) -> str:
        return "ok"

    @gate.guard
    def note(text: str) -> str:
        return "ok"

    with call_key("tool-call-7"):
        refund("A-1\n<b>é", 5.0)
    note("x" * 10_000)
    call, long = (s for s in exported.get_finished_spans() if s.name.startswith("execute_tool"))
    shown = call.attributes["gen_ai.tool.call.arguments"]
    assert json.loads(shown) == {"order_id": "A-1\n<b>é", "amount": 5.0}
    assert "\n" not in shown and "é" not in shown  # JSON-escaped, ASCII only
    assert call.attributes["gen_ai.tool.call.id"] == "tool-call-7"
    assert len(long.attributes["gen_ai.tool.call.arguments"]) == 4096
    gate.close()


def test_a_hostile_trace_context_in_a_request_is_dropped_as_it_is_read() -> None:
    good = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    base = _request_doc()
    assert ApprovalRequest.model_validate({**base, "trace": good}).trace == good
    for hostile in (
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" + "x" * 10_000,
        "00-00000000000000000000000000000000-b7ad6b7169203331-01",
        "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "00-0AF7651916CD43DD8448EB211C80319C-B7AD6B7169203331-01",
        {"trace": "nested"},
        12,
        "<!channel>",
    ):
        assert ApprovalRequest.model_validate({**base, "trace": hostile}).trace is None


def test_no_telemetry_means_no_wrapper_around_the_flow(monkeypatch: pytest.MonkeyPatch) -> None:
    import gatekeeper._telemetry_flow as flow
    from gatekeeper._telemetry import _unwrapped

    def refuse(*_: Any) -> Any:
        raise AssertionError("the flow was wrapped")

    monkeypatch.setattr(flow, "watched", refuse)
    for telemetry in (None, Telemetry()):  # the default, and one that turns nothing on
        gate = Gatekeeper(policy=Policy.from_yaml(POLICY), store=MemoryStore(), telemetry=telemetry)
        assert not gate.telemetry.active
        assert gate.telemetry.watch is _unwrapped

        @gate.guard
        def lookup_order(order_id: str) -> str:
            return order_id

        assert lookup_order("A-1") == "A-1"
        gate.close()


def _request_doc() -> dict[str, Any]:
    gate = Gatekeeper(policy=Policy.from_yaml(POLICY), store=MemoryStore())
    seen: list[ApprovalRequest] = []
    done = threading.Event()

    class Keep(RecordingChannel):
        def notify(self, request: ApprovalRequest) -> None:
            seen.append(request)
            gate.deny(request.id, approver="alice", comment="no")
            done.set()

    gate.add_channel(Keep())

    @gate.guard
    def refund(order_id: str, amount: float) -> str:
        return "ok"

    with pytest.raises(Exception, match="denied"):
        refund("A-1", 1.0)
    assert done.is_set()
    gate.close()
    return seen[0].model_dump(mode="json")


async def test_the_async_face_traces_alike(
    exporter: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    """A coroutine tool: the call's span under the caller's, current while the tool runs."""
    provider, exported = exporter
    gate = Gatekeeper(
        policy=Policy.from_yaml(POLICY),
        store=MemoryStore(),
        channels=[AutoDecider(approver="alice")],
        telemetry=Telemetry(traces=True, tracer_provider=provider),
    )
    inner = provider.get_tracer("billing-backend")

    @gate.guard
    async def refund(order_id: str, amount: float) -> str:
        with inner.start_as_current_span("billing.refund"):
            return "ok"

    with provider.get_tracer("agent-stand-in").start_as_current_span("invoke_agent") as outer:
        assert await refund("A-1", 5.0) == "ok"
    spans = {s.name: s for s in exported.get_finished_spans()}
    call, wait = spans["execute_tool refund"], spans["gatekeeper.wait_for_approval"]
    assert call.parent is not None and call.parent.span_id == outer.get_span_context().span_id
    assert wait.parent is not None and wait.parent.span_id == call.context.span_id
    assert wait.attributes["gatekeeper.decision.by"] == "alice"
    backend = spans["billing.refund"]
    assert backend.parent is not None and backend.parent.span_id == call.context.span_id
    (link,) = spans["gatekeeper.decide"].links
    assert link.context.span_id == call.context.span_id
    gate.close()


def test_a_refused_decision_is_an_error_span_naming_only_the_errors_class(
    exporter: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    from gatekeeper import TransitionRefused

    provider, exported = exporter
    gate = Gatekeeper(
        policy=Policy.from_yaml(POLICY),
        store=MemoryStore(),
        channels=[AutoDecider(approver="alice")],
        telemetry=Telemetry(traces=True, tracer_provider=provider),
    )

    @gate.guard
    def refund(order_id: str, amount: float) -> str:
        return "ok"

    refund("A-1", 5.0)
    (done,) = [s for s in exported.get_finished_spans() if s.name == "gatekeeper.decide"]
    rid = done.attributes["gatekeeper.request.id"]
    exported.clear()
    with pytest.raises(TransitionRefused):
        gate.deny(str(rid), approver="bob", comment="too late for A-1")
    (refused,) = exported.get_finished_spans()
    assert refused.attributes["error.type"] == "TransitionRefused"
    assert refused.status.description == "TransitionRefused"
    assert refused.events == ()  # no exception event carrying the message
    gate.close()


@pytest.mark.redis
def test_a_request_held_without_tracing_is_stored_as_before_and_with_it_carries_its_context(
    redis_server: RedisServer, redis_prefix: str, exporter: tuple[TracerProvider, Any]
) -> None:
    """Deciders of an earlier release read requests of agents that don't trace."""
    docs = []
    for telemetry in (None, Telemetry(traces=True, tracer_provider=exporter[0])):
        store = RedisStore(redis_server.url, prefix=redis_prefix)
        decider = AutoDecider(approver="alice", approve=False)
        gate = Gatekeeper(
            policy=Policy.from_yaml(POLICY), store=store, channels=[decider], telemetry=telemetry
        )

        @gate.guard
        def refund(order_id: str, amount: float) -> str:
            return "ok"

        with pytest.raises(Exception, match="denied"):
            refund("A-1", 5.0)
        (done,) = decider.decided
        raw = store.client.hget(store.keys.of(done.call.agent).req(done.id), "doc")
        docs.append(json.loads(raw))
        gate.close()
    untraced, traced = docs
    assert "trace" not in untraced
    assert traced["trace"].startswith("00-") and len(traced["trace"]) == 55
