"""The call side of :mod:`gatekeeper._telemetry`: one wrapper around a guarded call's flow.

:func:`watched` passes the flow's commands and their results through and
makes of them the call's span, the wait's span and the call counters; the
flow itself knows nothing of it, and a gate whose telemetry is off does not
wrap its flow at all (see :func:`gatekeeper._flow.guarded_call`, which
imports this module only then).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Generator, Mapping
from typing import TYPE_CHECKING, Any

from ._errors import AgentHalted, ApprovalTimeout, TamperingDetected
from ._flow import Run, StoreOp
from ._telemetry import MAX_TRACED_ARGS, Telemetry, broken, format_traceparent

if TYPE_CHECKING:
    from opentelemetry.trace import Span

    from .models import ApprovalRequest

__all__ = ["counted", "watched"]

_READS = frozenset({"wait", "expire", "get"})  # store steps that answer the request as it is now
_STORED = frozenset({"hold", "halt"})  # steps whose result a counter needs
_AFTER = _READS | _STORED  # the steps whose result is looked at


def watched(  # noqa: PLR0915 - one loop, its hooks inline: it runs on every call
    tel: Telemetry, tool: str, key: str | None, flow: Generator[Any, Any, Any]
) -> Generator[Any, Any, Any]:
    """``flow``, passing its commands and their results through, while ``tel`` records them.

    The call's span is current only while the tool runs (so spans the tool
    makes are its children); it is started here, under whatever span is
    current when the call is made.

    Telemetry never changes what the call does: a hook that raises (a span
    processor, an exporter, a metric) is logged (:func:`~gatekeeper._telemetry.broken`)
    and the rest of this call's telemetry is dropped; the flow goes on as if
    there were none.
    """
    watch: _Watch | None
    try:
        watch = _Watch(tel, tool, key)
    except Exception as exc:
        broken("the call span", exc)
        watch = None
    sent: Any = None
    error: BaseException | None = None
    try:
        while True:
            try:
                command = flow.send(sent) if error is None else flow.throw(error)
            except StopIteration as stop:
                if watch is not None:
                    _end(watch, None)
                return stop.value
            except BaseException as exc:
                if watch is not None:
                    _end(watch, exc)
                raise
            sent, error = None, None
            token = None
            kind = type(command)
            if watch is not None:
                try:
                    if kind is StoreOp:
                        command = watch.before(command)
                    elif kind is Run and watch.span is not None:
                        token = watch.running()
                except Exception as exc:
                    broken("a call's telemetry", exc)
                    watch = None
            try:
                sent = yield command
            except GeneratorExit:
                raise
            except BaseException as exc:
                error = exc
            finally:
                if token is not None:
                    _detach(tel, token)
            if watch is not None and kind is StoreOp and error is None and command.method in _AFTER:
                try:
                    watch.after(command, sent)
                except Exception as exc:
                    broken("a call's telemetry", exc)
                    watch = None
    except GeneratorExit:
        if watch is not None:
            _end(watch, None, closed=True)
        raise
    finally:
        flow.close()


def counted(  # noqa: PLR0915 - one loop, its hooks inline: it runs on every call
    tel: Telemetry, tool: str, key: str | None, flow: Generator[Any, Any, Any]
) -> Generator[Any, Any, Any]:
    """:func:`watched` for a gate with metrics and no traces: the same counts, less work.

    Most calls are allowed and run at once (two steps: ``admit``, then the
    tool): this loop keeps what it has seen in locals, looks only at the
    steps a counter needs, and makes no object per call. It counts exactly
    what :func:`watched` counts (the tests run both against the same mix):
    each call once, by the verdict it got, when it ends — a held call when
    its request is stored, not when it re-attaches to an earlier one; halts
    by policy; expiries of the requests it stored; tampering refusals, once
    per call. Telemetry never changes the call: a counter that raises is
    logged (:func:`~gatekeeper._telemetry.broken`) and this call's counting
    stops.
    """
    metrics: Any = tel.metrics
    on = metrics is not None
    verdict: str | None = None
    agent = "default"
    holding: str | None = None  # the id of the request this call's hold would store
    held = done = tampered = False
    sent: Any = None
    error: BaseException | None = None
    try:
        while True:
            try:
                command = flow.send(sent) if error is None else flow.throw(error)
            except StopIteration as stop:
                if on and verdict is not None and not done:
                    _count_call(metrics, verdict, tool, agent)
                return stop.value
            except BaseException as exc:
                if on:
                    try:
                        if isinstance(exc, AgentHalted):
                            verdict = "halt"
                        elif isinstance(exc, ApprovalTimeout) and held:
                            metrics.expired.inc()
                        elif isinstance(exc, TamperingDetected) and not tampered:
                            metrics.tampering.inc()
                        if verdict is not None and not done:
                            metrics.call(verdict, tool, agent)
                    except Exception as failed:
                        broken("a call's telemetry", failed)
                raise
            sent, error = None, None
            method = command.method if on and type(command) is StoreOp else None
            if method is not None:
                try:
                    if method == "admit":
                        agent = command.args[0]["agent"]
                        verdict = command.kwargs.get("verdict", verdict)
                    elif method == "hold":
                        holding = command.args[0].id
                        agent = command.args[1]["agent"]
                        verdict = "require_approval"
                    elif method == "halt":
                        verdict = "halt"
                    elif method == "flag_tampering" and not tampered:
                        tampered = True
                        metrics.tampering.inc()
                except Exception as exc:
                    broken("a call's telemetry", exc)
                    on = False
            try:
                sent = yield command
            except GeneratorExit:
                raise
            except BaseException as exc:
                error = exc
                continue
            if on and method in _STORED:
                try:
                    if method == "halt":
                        scope = command.args[0]
                        tel.halted(getattr(scope, "value", str(scope)), "policy")
                    elif not done:  # counted now, or re-attached to a request counted before
                        done = True
                        if sent.id == holding:
                            held = True
                            metrics.call(verdict, tool, agent)
                except Exception as exc:
                    broken("a call's telemetry", exc)
                    on = False
    except GeneratorExit:
        if on and verdict is not None and not done:
            _count_call(metrics, verdict, tool, agent)
        raise
    finally:
        flow.close()


def _count_call(metrics: Any, verdict: str, tool: str, agent: str) -> None:
    """A call counted as it ends (:func:`counted`); a counter that raises is logged."""
    try:
        metrics.call(verdict, tool, agent)
    except Exception as exc:
        broken("a call's telemetry", exc)


def _end(watch: _Watch, exc: BaseException | None, *, closed: bool = False) -> None:
    try:
        watch.end(exc, closed=closed)
    except Exception as failed:
        broken("a call's telemetry", failed)


def _detach(tel: Telemetry, token: Any) -> None:
    with contextlib.suppress(Exception):  # detached in another context: nothing to undo
        tel.otel.context.detach(token)


class _Watch:
    """What one call's wrapper has seen, and its spans."""

    __slots__ = (
        "agent",
        "counted",
        "held",
        "holding",
        "key",
        "span",
        "tampered",
        "tel",
        "tool",
        "verdict",
        "wait",
    )

    def __init__(self, tel: Telemetry, tool: str, key: str | None) -> None:
        self.tel, self.tool, self.key = tel, tool, key
        self.verdict: str | None = None
        self.held: ApprovalRequest | None = None
        self.holding: str | None = None  # the id of the request this call's hold would store
        self.counted = False
        self.tampered = False
        self.agent = "default"
        self.wait: Span | None = None
        self.span: Span | None = None
        if tel.tracer is not None:
            attributes: dict[str, Any] = {
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": tool,
                "gen_ai.tool.type": "function",
            }
            if key is not None:
                attributes["gen_ai.tool.call.id"] = key[:256]
            self.span = tel.tracer.start_span(f"execute_tool {tool}", attributes=attributes)

    # -- what the flow asks of the store ---------------------------------------------------
    def before(self, command: Any) -> Any:
        method = command.method
        if method == "admit":
            self._classified(command.args[0])
            self.verdict = command.kwargs.get("verdict", self.verdict)
        elif method == "hold":
            req = command.args[0]
            self.holding = req.id
            self._classified(command.args[1])
            self.verdict = "require_approval"
            if self.span is not None:
                self.span.set_attribute("gatekeeper.request.id", req.id)
                parent = format_traceparent(self.span)
                if parent is not None:  # the decider links its span to this one
                    req = req.model_copy(update={"trace": parent})
                    command = type(command)(
                        "hold",
                        (req, *command.args[1:]),
                        command.kwargs,
                        command.shield,
                        command.deadline,
                    )
        elif method == "halt":
            self.verdict = "halt"
        elif method == "flag_tampering":
            self._tampering()
        return command

    def after(self, command: Any, result: Any) -> None:
        method = command.method
        if method == "hold":
            if result.id == self.holding:  # stored now: a held call (once per request)
                self.held = result
                self._count()
            else:  # re-attached by its key to the request an earlier run stored
                self.counted = True
            if self.span is not None:
                self.span.set_attribute("gatekeeper.request.id", result.id)
                self._start_wait(result)
        elif method == "halt":
            scope = command.args[0]
            self.tel.halted(getattr(scope, "value", str(scope)), "policy")
        elif method in _READS and self.wait is not None and result.status.decided:
            self._end_wait(result)

    def _classified(self, event: Mapping[str, Any]) -> None:
        """What the audit draft of the call says of it: the agent, and for the span the rest."""
        self.agent = event["agent"]
        if self.span is None:
            return
        data = event["data"]
        attributes = {
            "gatekeeper.verdict": data["verdict"],
            "gatekeeper.risk": data["risk"],
            "gatekeeper.rules": list(data["rules"]),
            "gatekeeper.agent": self.agent,
            "gatekeeper.session.id": event["session_id"],
            "gatekeeper.call.id": event["call_id"],
        }
        if self.tel.trace_arguments:
            args = json.dumps(data.get("args"), ensure_ascii=True, sort_keys=True)
            attributes["gen_ai.tool.call.arguments"] = args[:MAX_TRACED_ARGS]
        self.span.set_attributes(attributes)

    def _start_wait(self, held: ApprovalRequest) -> None:
        trace = self.tel.otel.trace
        assert self.tel.tracer is not None
        assert self.span is not None
        self.wait = self.tel.tracer.start_span(
            "gatekeeper.wait_for_approval",
            context=trace.set_span_in_context(self.span),
            attributes={
                "gatekeeper.request.id": held.id,
                "gatekeeper.approval.quorum": held.quorum,
                "gatekeeper.request.expires_at": held.expires_at.isoformat(),
            },
        )

    def _end_wait(self, final: ApprovalRequest | None, why: str | None = None) -> None:
        wait, self.wait = self.wait, None
        if wait is None:
            return
        if final is not None:
            wait.set_attribute("gatekeeper.decision.status", final.status.value)
            approvers = [d.approver[:128] for d in final.decisions]
            if final.decided_by:
                wait.set_attribute("gatekeeper.decision.by", final.decided_by[:128])
            elif approvers:
                wait.set_attribute("gatekeeper.decision.by", approvers[-1])
            if approvers:
                wait.set_attribute("gatekeeper.decision.approvers", approvers)
        elif why is not None:
            wait.set_attribute("gatekeeper.decision.status", why)
        wait.end()

    # -- the tool runs: the call's span is current ---------------------------------------------
    def running(self) -> Any:
        if self.span is None:
            return None
        otel = self.tel.otel
        if self.wait is not None:  # approved: the wait ended when the approval came
            self._end_wait(None, "approved")
        return otel.context.attach(otel.trace.set_span_in_context(self.span))

    # -- the end -----------------------------------------------------------------------------
    def _count(self) -> None:
        if self.counted or self.verdict is None or self.tel.metrics is None:
            return
        self.counted = True
        self.tel.metrics.call(self.verdict, self.tool, self.agent)

    def _tampering(self) -> None:
        if not self.tampered and self.tel.metrics is not None:
            self.tampered = True
            self.tel.metrics.tampering.inc()

    def end(self, exc: BaseException | None, *, closed: bool = False) -> None:
        metrics = self.tel.metrics
        if exc is not None:
            if isinstance(exc, AgentHalted):
                self.verdict = "halt"
            elif isinstance(exc, ApprovalTimeout) and self.held is not None and metrics is not None:
                metrics.expired.inc()
            elif isinstance(exc, TamperingDetected):
                self._tampering()
        self._count()
        if self.span is None:
            return
        why = "closed" if closed else (type(exc).__name__ if exc is not None else None)
        self._end_wait(None, why or "ended")
        span = self.span
        if self.verdict is not None:
            span.set_attribute("gatekeeper.verdict", self.verdict)
        if exc is not None:
            span.set_attribute("error.type", type(exc).__qualname__)
            # The message only where arguments may show: a tool's own error can quote them.
            why = str(exc)[:256] if self.tel.trace_arguments else type(exc).__name__
            trace = self.tel.otel.trace
            span.set_status(trace.Status(trace.StatusCode.ERROR, why))
        span.end()
