"""Traces and metrics of guarded calls and decisions (docs/observability.md).

Off by default, and then free: a gate without :class:`Telemetry` (or with
one that turns nothing on) runs its flow unwrapped, and nothing here imports
``opentelemetry`` or ``prometheus_client``. Turned on, one wrapper around
the flow of each call (:mod:`gatekeeper._telemetry_flow`) sees its commands and their results
go by and makes of them:

- a span per call (``execute_tool <tool>``, a child of whatever span is
  current, so it sits inside a framework's agent and tool spans), with a
  child span for the wait of a held call that ends at the decision;
- the call counters and the expiry and tampering counters.

The deciding side (console, Slack, CLI: :meth:`Decisions._decide
<gatekeeper._decisions.Decisions._decide>`) records a span of its own,
linked to the call's span by the trace context the request carries
(:attr:`~gatekeeper.models.ApprovalRequest.trace`), and the decision
counters and the approval latency. Pending requests, the oldest one's age
and the audit sealer's backlog are read from the store when Prometheus
scrapes (:mod:`gatekeeper._telemetry_queue`), a bounded number of reads.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.trace import Span, Tracer, TracerProvider
    from prometheus_client import CollectorRegistry

    from .models import ApprovalRequest, Decision

__all__ = [
    "METRIC_NAMES",
    "OFF",
    "OTHER",
    "Telemetry",
    "format_traceparent",
    "parse_traceparent",
    "store_error",
    "store_retry",
]

#: What a label value becomes past the cap, or when it is not one gatekeeper knows.
OTHER = "other"

#: Every metric gatekeeper exports, as Prometheus names it (counters without ``_total``).
METRIC_NAMES = (
    "gatekeeper_calls",
    "gatekeeper_decisions",
    "gatekeeper_approval_latency_seconds",
    "gatekeeper_expired",
    "gatekeeper_halts",
    "gatekeeper_abandoned",
    "gatekeeper_tampering_refusals",
    "gatekeeper_store_errors",
    "gatekeeper_store_retries",
    "gatekeeper_pending_requests",
    "gatekeeper_oldest_pending_age_seconds",
    "gatekeeper_audit_sealer_backlog",
    "gatekeeper_registered_agents",
    "gatekeeper_store_up",
)

#: The approval latency's buckets (seconds): from a person at their desk to an overnight queue.
LATENCY_BUCKETS = (0.5, 1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 14400.0)

#: The most characters of the arguments a span carries when ``trace_arguments`` is on.
MAX_TRACED_ARGS = 4096

#: Label sets of the call counter looked up without a lock, at most (the rest the slow way).
_CACHED_CHILDREN = 10_000

_CALLER_GONE = frozenset({"abandoned", "outcome_unknown"})
#: The store errors counted (the classes ``store_error`` is given), exported at 0 from the start.
_STORE_ERRORS = ("StoreUnavailable", "StoreError")

#: At most one warning of broken telemetry per this many seconds (per process).
BROKEN_LOG_EVERY = 60.0

log = logging.getLogger("gatekeeper.telemetry")
_broken_state = {"logged": -1e9, "dropped": 0}
_broken_lock = threading.Lock()


def broken(where: str, exc: BaseException) -> None:
    """Telemetry failed at ``where`` (a span processor, an exporter, a metric): the call goes
    on without it. Logged at most once every :data:`BROKEN_LOG_EVERY` seconds per process."""
    try:
        with _broken_lock:
            _broken_state["dropped"] += 1
            now = time.monotonic()
            if now - _broken_state["logged"] < BROKEN_LOG_EVERY:
                return
            _broken_state["logged"] = now
            dropped, _broken_state["dropped"] = _broken_state["dropped"], 0
        log.warning(
            "telemetry failed (%s: %s) and was dropped for the call; the call went on "
            "unchanged (%d failure(s) since the last warning)",
            where,
            type(exc).__name__,
            dropped,
            exc_info=exc,
        )
    except Exception:  # noqa: S110 - not even the warning may change the call
        pass


_OTEL = ("opentelemetry",)
_PROM = ("prometheus_client",)
_CHANNELS = frozenset({"web", "api", "api-token", "cli", "console", "slack", "webhook", "test"})

# W3C trace context, version 00, as carried in a request (agent-written: checked, never trusted).
_TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")


def format_traceparent(span: Span) -> str | None:
    """``span``'s context as a W3C ``traceparent`` (None when it is not a valid, recorded one)."""
    ctx = span.get_span_context()
    if not ctx.is_valid:
        return None
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


def parse_traceparent(value: object) -> tuple[int, int, int] | None:
    """(trace id, span id, flags) of a ``traceparent``; None for anything else.

    The value comes from a request the agent wrote: exactly 55 characters of
    the W3C form, with non-zero ids, or nothing.
    """
    if not isinstance(value, str) or len(value) != 55:
        return None
    found = _TRACEPARENT.fullmatch(value)
    if found is None:
        return None
    trace_id, span_id = int(found[1], 16), int(found[2], 16)
    if not trace_id or not span_id:
        return None
    return trace_id, span_id, int(found[3], 16)


class _Bounded:
    """Label values of one kind: the known ones, then the first ``cap`` others, then OTHER."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.known: set[str] = set()
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, value: str) -> str:
        if value in self._seen or value in self.known:
            return value
        with self._lock:
            if len(self._seen) < self.cap and len(value) <= 128:
                self._seen.add(value)
                return value
        return OTHER


class _Metrics:
    """The Prometheus metrics of one registry (made once per registry, shared by its gates)."""

    def __init__(self, registry: CollectorRegistry, cap: int) -> None:
        from prometheus_client import Counter, Histogram

        self.registry = registry
        self.tools = _Bounded(cap)
        self.agents = _Bounded(cap)
        r = registry
        self.calls = Counter(
            "gatekeeper_calls",
            "Guarded calls by the verdict they got (allow, require_approval, deny, halt)",
            ["verdict", "tool", "agent"],
            registry=r,
        )
        self.decisions = Counter(
            "gatekeeper_decisions",
            "Decisions recorded by this process, by outcome and channel",
            ["outcome", "channel"],
            registry=r,
        )
        self.latency = Histogram(
            "gatekeeper_approval_latency_seconds",
            "Seconds from a held call's request to the decision that ended its wait",
            ["outcome"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.expired = Counter(
            "gatekeeper_expired", "Held calls whose request expired undecided", registry=r
        )
        self.halts = Counter(
            "gatekeeper_halts",
            "Halts pulled, by scope and by whom (person or policy)",
            ["scope", "source"],
            registry=r,
        )
        self.abandoned = Counter(
            "gatekeeper_abandoned",
            "Requests the sweep found without their caller (abandoned or outcome_unknown)",
            ["status"],
            registry=r,
        )
        self.tampering = Counter(
            "gatekeeper_tampering_refusals",
            "Calls refused because a stored request or decision failed its checks",
            registry=r,
        )
        self.store_errors = Counter(
            "gatekeeper_store_errors",
            "Store commands that failed after their retries, by the error raised",
            ["error"],
            registry=r,
        )
        self.store_retries = Counter(
            "gatekeeper_store_retries", "Store commands tried again after a failure", registry=r
        )
        self._calls: dict[tuple[str, str, str], Any] = {}  # children, found without a lock
        # The series the example alert rules read exist at 0 from the start: increase()
        # and rate() need two samples, so a child born at 1 would hide the first event.
        for status in sorted(_CALLER_GONE):
            self.abandoned.labels(status)
        for error in _STORE_ERRORS:
            self.store_errors.labels(error)

    def call(self, verdict: str, tool: str, agent: str) -> None:
        key = (verdict, tool, agent)
        child = self._calls.get(key)
        if child is None:
            child = self.calls.labels(verdict, self.tools(tool), self.agents(agent))
            if len(self._calls) < _CACHED_CHILDREN:  # raw names are the agent's: bounded too
                self._calls[key] = child
        child.inc()


_REGISTRIES: dict[int, _Metrics] = {}
_REGISTRIES_LOCK = threading.Lock()
#: The metrics the store's retry and error counters go to (the last registry set up).
_PROCESS: list[_Metrics] = []


def _metrics_for(registry: CollectorRegistry | None, cap: int) -> _Metrics:
    if registry is None:
        from prometheus_client import REGISTRY

        registry = REGISTRY
    with _REGISTRIES_LOCK:
        found = _REGISTRIES.get(id(registry))
        if found is None or found.registry is not registry:
            found = _Metrics(registry, cap)
            _REGISTRIES[id(registry)] = found
        _PROCESS[:] = [found]
        return found


def store_retry() -> None:
    """A store command is tried again (counted when metrics are on in this process)."""
    if _PROCESS:
        try:
            _PROCESS[0].store_retries.inc()
        except Exception as exc:
            broken("store_retries", exc)


def store_error(error: BaseException) -> None:
    """A store command failed for good with ``error`` (a gatekeeper error class)."""
    if _PROCESS:
        try:
            _PROCESS[0].store_errors.labels(type(error).__name__).inc()
        except Exception as exc:
            broken("store_errors", exc)


def _unwrapped(_tel: Telemetry, _tool: str, _key: str | None, flow: Any) -> Any:
    return flow


class _Otel:
    """The OpenTelemetry API modules, imported once when traces are turned on."""

    __slots__ = ("context", "trace")

    def __init__(self, trace: Any, context: Any) -> None:
        self.trace = trace
        self.context = context


class Telemetry:
    """Which traces and metrics a gate records; by default none, at no cost.

    ``traces``: spans through the OpenTelemetry API (the ``otel`` extra), from
    ``tracer_provider`` or the global one the application set up with its
    SDK. ``trace_arguments``: put the call's arguments on its span
    (``gen_ai.tool.call.arguments``, JSON, at most :data:`MAX_TRACED_ARGS`
    characters); off by default, as arguments can be secrets. ``metrics``:
    Prometheus metrics (the ``metrics`` extra) in ``registry`` (default: the
    ``prometheus_client`` global one). ``max_label_values``: distinct tool
    names, and agent names, a metric keeps before counting the rest as
    ``other`` (the first gate to use a registry sets it for that registry).
    ``metrics_public``: ``gatekeeper serve`` serves ``/metrics`` without a
    bearer token.

    Example::

        gate = Gatekeeper(policy=policy, telemetry=Telemetry(traces=True, metrics=True))
    """

    def __init__(
        self,
        *,
        traces: bool = False,
        metrics: bool = False,
        trace_arguments: bool = False,
        tracer_provider: TracerProvider | None = None,
        registry: CollectorRegistry | None = None,
        max_label_values: int = 100,
        metrics_public: bool = False,
    ) -> None:
        self.trace_arguments = trace_arguments
        self.metrics_public = metrics_public
        self.tracer: Tracer | None = None
        self.otel = _Otel(None, None)
        self.metrics: _Metrics | None = None
        if traces:
            from ._extras import needs_extra
            from ._version import __version__

            with needs_extra("telemetry traces", "otel", "the OpenTelemetry API", _OTEL):
                from opentelemetry import trace

            from opentelemetry import context

            self.tracer = trace.get_tracer("gatekeeper", __version__, tracer_provider)
            self.otel = _Otel(trace, context)
        if metrics:
            from ._extras import needs_extra

            with needs_extra("telemetry metrics", "metrics", "prometheus-client", _PROM):
                import prometheus_client  # noqa: F401
            self.metrics = _metrics_for(registry, max_label_values)
        #: Whether anything is recorded at all (the flow is wrapped only then).
        self.active = self.tracer is not None or self.metrics is not None
        #: What wraps a guarded call's flow: :func:`gatekeeper._telemetry_flow.watched`
        #: with traces, its lighter :func:`~gatekeeper._telemetry_flow.counted` with
        #: metrics only.
        self.watch: Callable[..., Any] = _unwrapped
        if self.active:
            from ._telemetry_flow import counted, watched

            self.watch = watched if self.tracer is not None else counted

    def __repr__(self) -> str:
        return (
            f"Telemetry(traces={self.tracer is not None}, metrics={self.metrics is not None}, "
            f"trace_arguments={self.trace_arguments})"
        )

    @property
    def registry(self) -> CollectorRegistry | None:
        """The Prometheus registry the metrics are in (None: metrics are off)."""
        return self.metrics.registry if self.metrics is not None else None

    def know_tool(self, name: str) -> None:
        """``name`` is a tool of the gate: it keeps its own label value whatever the cap."""
        if self.metrics is not None:
            self.metrics.tools.known.add(name)

    # -- the deciding side ----------------------------------------------------------------
    def deciding(
        self,
        request: ApprovalRequest | None,
        decision: Decision,
        step: Callable[[], ApprovalRequest],
    ) -> ApprovalRequest:
        """Record ``decision`` by ``step()``, in a span linked to the request's, and count it.

        ``step`` runs exactly once whatever the telemetry does: a span or a
        metric that fails is dropped (see :func:`broken`), never the decision.
        """
        if self.tracer is None:
            after = step()
        else:
            span = token = None
            try:
                span, token = self._start_decide(request, decision)
            except Exception as exc:
                broken("the decide span", exc)
            try:
                after = step()
            except BaseException as exc:
                if span is not None:
                    self._end_decide(span, token, None, exc)
                raise
            if span is not None:
                self._end_decide(span, token, after, None)
        if self.metrics is not None:
            try:
                self._count_decision(decision, after)
            except Exception as exc:
                broken("the decision counters", exc)
        return after

    def _start_decide(
        self, request: ApprovalRequest | None, decision: Decision
    ) -> tuple[Span, object]:
        trace = self.otel.trace
        assert self.tracer is not None
        links = []
        # Agent-asserted: the request's trace context is what the agent wrote (checked,
        # never trusted), so the link says which call span the agent claims it held.
        parsed = parse_traceparent(request.trace) if request is not None else None
        if parsed is not None:
            ctx = trace.SpanContext(
                parsed[0], parsed[1], is_remote=True, trace_flags=trace.TraceFlags(parsed[2] & 1)
            )
            links.append(trace.Link(ctx))
        attributes: dict[str, Any] = {
            "gatekeeper.decision.approve": decision.approve,
            "gatekeeper.decision.by": decision.approver[:128],
            "gatekeeper.decision.channel": _channel(decision.via),
            "gatekeeper.decision.edited": decision.edited,
        }
        if request is not None:  # agent-written: cut as the wait span cuts them
            attributes["gatekeeper.request.id"] = request.id[:128]
            attributes["gen_ai.tool.name"] = request.call.tool[:128]
            attributes["gatekeeper.agent"] = request.call.agent[:128]
        span = self.tracer.start_span("gatekeeper.decide", links=links, attributes=attributes)
        try:
            token = self.otel.context.attach(trace.set_span_in_context(span))
        except Exception:
            span.end()
            raise
        return span, token

    def _end_decide(
        self,
        span: Span,
        token: object,
        after: ApprovalRequest | None,
        exc: BaseException | None,
    ) -> None:
        with contextlib.suppress(Exception):  # detached in another context: nothing to undo
            self.otel.context.detach(token)
        try:
            if exc is not None:
                # The class only: its message can quote an edit's values.
                trace = self.otel.trace
                span.set_attribute("error.type", type(exc).__qualname__)
                span.set_status(trace.Status(trace.StatusCode.ERROR, type(exc).__name__))
            elif after is not None:
                span.set_attribute("gatekeeper.request.status", after.status.value)
            span.end()
        except Exception as failed:
            broken("the decide span", failed)

    def _count_decision(self, decision: Decision, after: ApprovalRequest) -> None:
        assert self.metrics is not None
        if decision.response is not None:
            outcome = "responded"
        else:
            outcome = "approved" if decision.approve else "denied"
        self.metrics.decisions.labels(outcome, _channel(decision.via)).inc()
        # The vote that ended the wait: the request left pending with it (quorum reached).
        last = after.decisions[-1] if after.decisions else None
        ended = after.status.decided and after.decided_at is not None
        if ended and last is not None and last.approver == decision.approver:
            took = (after.decided_at - after.created_at).total_seconds()  # type: ignore[operator]
            self.metrics.latency.labels(outcome).observe(max(took, 0.0))

    def halted(self, scope: str, source: str) -> None:
        """A halt of ``scope`` was pulled (``source``: ``person`` or ``policy``)."""
        if self.metrics is not None:
            try:
                self.metrics.halts.labels(scope, source).inc()
            except Exception as exc:
                broken("the halt counter", exc)

    def swept(self, moved: list[ApprovalRequest]) -> None:
        """The sweep moved these requests (abandoned, or outcome unknown)."""
        if self.metrics is not None:
            try:
                for req in moved:  # a parked request it expired is no caller's loss: not counted
                    if req.status.value in _CALLER_GONE:
                        self.metrics.abandoned.labels(req.status.value).inc()
            except Exception as exc:
                broken("the abandoned counter", exc)


#: The telemetry of a gate that was given none: records nothing, wraps nothing.
OFF = Telemetry()


def _channel(via: str) -> str:
    """A decision's ``via`` as a bounded label: ``slack:U123`` is ``slack``."""
    name = via.split(":", 1)[0]
    return name if name in _CHANNELS else OTHER
