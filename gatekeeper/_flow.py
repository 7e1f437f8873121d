"""The guarded call, written once: a generator of commands, driven by a sync and an async loop.

:func:`guarded_call` is the whole path of one call through the gate —
classify, admit or hold, tell the channels, wait for the decision, check
its signatures, claim, run, record the outcome — with every piece of I/O
yielded as a command instead of performed:

- :class:`StoreOp`: a method of the store (``hold``, ``wait``, ``claim``...),
  run on the blocking face by :func:`drive` and on ``store.aio`` by
  :func:`adrive`;
- :class:`Tell`: ``notify`` or ``update`` every channel;
- :class:`Run`: call the tool itself.

The driver sends each command's result back into the generator, or throws
its error in, so the flow's ``try``/``except`` blocks see store errors,
interrupts and task cancellation exactly where they happen (the pattern of
httpx's ``Auth.auth_flow`` and tenacity's ``BaseRetrying.iter``). There is
one flow to change and both faces run it.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from . import _pipeline as pipe
from ._errors import (
    AgentHalted,
    ArgumentsChanged,
    GatekeeperError,
    InvalidToolCall,
    StoreUnavailable,
    TamperingDetected,
    TransitionRefused,
)
from ._tool import ToolSpec
from .models import ApprovalRequest, Classification, RequestStatus, ToolCall, Verdict

if TYPE_CHECKING:
    from ._gate import Gatekeeper

__all__ = ["Flow", "Run", "StoreOp", "Tell", "adrive", "drive", "guarded_call"]

log = logging.getLogger("gatekeeper")

_EXPIRED_HERE = "expired by the agent's own clock"
APPROVED_QUESTION = "a question is answered (respond) or declined (deny), never approved"


@dataclass(frozen=True)
class StoreOp:
    """Call ``method`` of the store's face with these arguments.

    ``shield``: the async driver runs it to the end even if the task is
    cancelled again meanwhile (withdrawing a request on the way out).
    """

    method: str
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    shield: bool = False


@dataclass(frozen=True)
class Tell:
    """Tell every channel about ``request``: ``notify`` (new) or ``update`` (changed)."""

    what: Literal["notify", "update"]
    request: ApprovalRequest


@dataclass(frozen=True)
class Run:
    """Call the tool: ``func(*args, **kwargs)`` (awaited on the async face)."""

    func: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: Mapping[str, Any]


Command = StoreOp | Tell | Run
Flow = Generator[Command, Any, Any]


def op(method: str, *args: Any, shield: bool = False, **kwargs: Any) -> StoreOp:
    return StoreOp(method, args, kwargs, shield)


# -- the drivers ------------------------------------------------------------------------------
def drive(gate: Gatekeeper, flow: Flow) -> Any:
    """Run ``flow`` on the store's blocking face; returns what the flow returns."""
    store = gate.store
    sent: Any = None
    error: BaseException | None = None
    while True:
        try:
            command = flow.send(sent) if error is None else flow.throw(error)
        except StopIteration as stop:
            return stop.value
        sent, error = None, None
        try:
            if isinstance(command, StoreOp):
                sent = getattr(store, command.method)(*command.args, **command.kwargs)
            elif isinstance(command, Tell):
                gate._tell(command.what, command.request)
            else:
                sent = command.func(*command.args, **command.kwargs)
        except BaseException as exc:  # thrown into the flow, which decides what it means
            error = exc


async def adrive(gate: Gatekeeper, flow: Flow) -> Any:
    """Run ``flow`` on the store's async face (``store.aio``); returns what the flow returns."""
    aio = gate.store.aio
    sent: Any = None
    error: BaseException | None = None
    cancels = _cancelling()  # a count left over from before this call is not ours to act on
    while True:
        try:
            command = flow.send(sent) if error is None else flow.throw(error)
        except StopIteration as stop:
            return stop.value
        sent, error = None, None
        try:
            if isinstance(command, StoreOp):
                step = getattr(aio, command.method)(*command.args, **command.kwargs)
                sent = await (asyncio.shield(step) if command.shield else step)
                if not command.shield and _cancelling() > cancels:
                    raise asyncio.CancelledError  # as if it had not been dropped
            elif isinstance(command, Tell):
                await gate._atell(command.what, command.request)
            else:
                sent = command.func(*command.args, **command.kwargs)
                if inspect.isawaitable(sent):  # a coroutine function's call (the async face)
                    sent = await sent
        except BaseException as exc:
            error = exc


def _cancelling() -> int:
    """How many cancellations of this task are pending (0 where Python does not count them).

    Compared before and after each store step: a count that went up while a
    step returned normally is a cancellation that was swallowed on the way.

    On Python 3.10 and 3.11 a cancellation can be lost inside
    ``asyncio.wait_for`` (which redis-py's asyncio client uses) when the
    awaited operation finishes at the same moment: the step returns, and the
    task goes on as if never cancelled — on to wait, and to run the tool
    once approved. From 3.11 the task still counts the request
    (``Task.cancelling()``), so the flow is told after all. (3.10 has no
    such count.)
    """
    task = asyncio.current_task()
    cancelling = getattr(task, "cancelling", None)
    return int(cancelling()) if cancelling is not None else 0


# -- the flow ---------------------------------------------------------------------------------
def guarded_call(
    gate: Gatekeeper,
    spec: ToolSpec,
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    reason: str | None,
    decided: list[ApprovalRequest] | None = None,
    key: str | None = None,
    wait: bool = True,
) -> Flow:
    """One call of a guarded tool, from its arguments to its result (or the error it raises).

    ``decided``, when given, receives the held call's request as the people
    left it (approved, with any edit and comments) before it runs. ``key``:
    the call's idempotency key (a framework's tool-call id); by default the
    one :func:`gatekeeper.call_key` set, if any. ``wait=False``: a held call
    that is still pending raises :class:`~gatekeeper.ApprovalPending` at once
    and its request stays (parked) for the same call, under the same key, to
    pick up later — from this process or another.
    """
    call, bound, cls = gate._prepare(spec, args, kwargs, reason)
    verdict = cls.verdict
    if verdict is Verdict.REQUIRE_APPROVAL:
        req = gate._new_request(spec, call, cls, key, park=not wait)
        return (yield from _held(gate, spec, bound, req, cls, decided, wait))
    try:
        yield op("admit", pipe.call_event(call, cls), agent=call.agent, session_id=call.session_id)
    except AgentHalted:
        gate._refused(call, cls)
        raise
    except StoreUnavailable as exc:
        if verdict is Verdict.ALLOW:
            if gate.policy.on_store_error != "allow":
                raise
            log.warning("store unavailable; running allowed call %s unaudited", call.tool)
        else:
            log.warning(
                "store unavailable; refusing %s without an audit record: %s", call.tool, exc
            )
    if verdict is Verdict.ALLOW:
        return (yield from _run_allowed(gate, spec, bound, call))
    if verdict is Verdict.HALT:
        cancelled = yield op(
            "halt",
            *gate._halt_target(call, cls),
            by=gate._halted_by(cls),
            reason="; ".join(cls.reasons),
            agent=call.agent,
        )
        raise gate._halt_for(call, cls, cancelled)
    raise pipe.denied_error(call, cls)


def _run_allowed(
    gate: Gatekeeper, spec: ToolSpec, bound: inspect.BoundArguments, call: ToolCall
) -> Flow:
    start = time.perf_counter()
    try:
        result = yield Run(spec.func, bound.args, bound.kwargs)
    except BaseException as exc:
        gate._outcome(call, start, ok=False, outcome=pipe.outcome_text(exc=exc))
        raise
    gate._outcome(call, start, ok=True, outcome=pipe.outcome_text(result))
    return result


def _held(
    gate: Gatekeeper,
    spec: ToolSpec,
    bound: inspect.BoundArguments,
    req: ApprovalRequest,
    cls: Classification,
    decided: list[ApprovalRequest] | None,
    wait: bool = True,
) -> Flow:
    call = req.call
    by, gone = f"agent:{call.agent}", "the caller stopped waiting"
    try:
        held: ApprovalRequest = yield op("hold", req, pipe.call_event(call, cls, request=req))
    except AgentHalted:
        gate._refused(call, cls)
        raise
    except BaseException:  # interrupted: the hold may have landed all the same
        with contextlib.suppress(GatekeeperError):  # no such request: nothing to withdraw
            yield op("cancel", req.id, by=by, reason=gone, shield=True)
        raise
    attached = held.id != req.id  # the same call made before under its key: that request
    if attached and held.status.ended:
        return (yield from _not_run(gate, held, held))  # the same answer as the first time
    if attached and held.status is RequestStatus.EXECUTING:
        raise pipe.blocked_error(held)  # running elsewhere: never twice
    if not wait and held.status is RequestStatus.PENDING:  # parked: picked up by a resume
        if not attached:
            yield Tell("notify", held)
        raise pipe.pending_error(held)
    # From here on this process holds the request's lease (renewed from the
    # store's lease thread) until the call is over; if the process dies, the
    # lease runs out and the request is abandoned, never left pending.
    gate.store.keep(held.id)
    try:
        if held.status is RequestStatus.PENDING:
            try:  # a caller that goes away must not leave the request pending
                if not attached:
                    yield Tell("notify", held)
                final = yield from _decision(gate, held)
            except BaseException:
                with contextlib.suppress(GatekeeperError):  # already decided, or store gone
                    yield op("cancel", held.id, by=by, reason=gone, shield=True)
                raise
        else:
            final = held  # re-attached to an approval that never ran: run it now
        if final.status is not RequestStatus.APPROVED or held.kind == "question":
            return (yield from _not_run(gate, held, final))
        if decided is not None:
            decided.append(final)
        return (yield from _release(gate, spec, bound, held, final))
    finally:
        gate.store.drop(held.id)


def _decision(gate: Gatekeeper, req: ApprovalRequest) -> Flow:
    """Wait until ``req`` is decided or this process's own deadline passes; returns it as it ended.

    The deadline is the expiry this process gave the request, on its own
    clock: whatever the store's clock says, or whatever expiry is stored (the
    agent's to write), the caller stops waiting then. When the store does
    not agree that the request has expired, this process withdraws it
    (``cancel``); a decision that got there first stands.
    """
    by = f"agent:{req.call.agent}"
    while True:
        remaining = (req.expires_at - gate.clock.now()).total_seconds()
        current: ApprovalRequest = yield op("wait", req.id, max(remaining, 0.0))
        if current.status.decided:
            return current
        if gate.clock.now() < req.expires_at:
            continue  # woken a moment early (another clock): wait out the rest
        try:
            return (yield op("expire", req.id))
        except TransitionRefused:  # the store's clock is behind ours, or the expiry was moved
            pass
        try:
            yield op("cancel", req.id, by=by, reason=_EXPIRED_HERE)
        except TransitionRefused:  # decided in the meantime: that decision stands
            return (yield op("get", req.id))
        except GatekeeperError:  # the store is gone: nobody may approve it, nothing runs
            pass
        return req.model_copy(update={"status": RequestStatus.EXPIRED})


def _not_run(gate: Gatekeeper, req: ApprovalRequest, final: ApprovalRequest) -> Flow:
    """A request that ended without a release: the person's answer, or the error to raise."""
    if final.status is RequestStatus.RESPONDED:
        try:
            answer = gate._answer(req, final)
        except TamperingDetected as exc:
            with contextlib.suppress(GatekeeperError):
                yield op("flag_tampering", req.id, exc.message, gate._tampering_event(req, exc))
            raise
        yield Tell("update", final)
        return answer
    if final.status is RequestStatus.APPROVED:  # an approved question: nothing to run
        with contextlib.suppress(GatekeeperError):
            yield Tell("update", (yield op("refuse", req.id, why=APPROVED_QUESTION)))
        raise gate._approved_question(req)
    if final.status is RequestStatus.DENIED:  # the model reads the reason: a person's, signed
        try:
            final = gate._denial(req, final)
        except TamperingDetected as exc:
            with contextlib.suppress(GatekeeperError):
                yield op("flag_tampering", req.id, exc.message, gate._tampering_event(req, exc))
            raise
    yield Tell("update", final)
    raise pipe.blocked_error(final, question=req.kind == "question")


def _release(
    gate: Gatekeeper,
    spec: ToolSpec,
    bound: inspect.BoundArguments,
    held: ApprovalRequest,
    final: ApprovalRequest,
) -> Flow:
    """Run an approved call once its signed votes check out, and record how it ended."""
    try:
        run_args, run_digest = gate._release_args(spec, bound, held, final)
    except TamperingDetected as exc:
        with contextlib.suppress(GatekeeperError):  # recorded first; closing is best effort
            yield op("flag_tampering", held.id, exc.message, gate._tampering_event(held, exc))
        with contextlib.suppress(GatekeeperError):
            why = f"refused as tampering, not run: {exc}"
            yield Tell("update", (yield op("refuse", held.id, why=why)))
        raise
    except (InvalidToolCall, ArgumentsChanged) as exc:  # close it: it must never run later
        token = gate._ids()
        yield op("claim", held.id, args_digest=final.args_digest, token=token)
        why = f"arguments rejected, not run: {exc}"
        yield from _finish(final, ok=False, outcome=why, token=token)
        raise
    token = gate._ids()
    try:
        yield op("claim", held.id, args_digest=run_digest, token=token, created_at=held.created_at)
    except TransitionRefused as exc:  # approved but not to be run: close it, not stuck
        if exc.context.get("status") == "approved":
            with contextlib.suppress(GatekeeperError):
                yield Tell("update", (yield op("refuse", held.id, why=f"not run: {exc}")))
        raise
    try:
        result = yield Run(spec.func, run_args.args, run_args.kwargs)
    except BaseException as exc:
        yield from _finish(final, ok=False, outcome=pipe.outcome_text(exc=exc), token=token)
        raise
    yield from _finish(final, ok=True, outcome=pipe.outcome_text(result), token=token)
    return result


def _finish(req: ApprovalRequest, *, ok: bool, outcome: str, token: str) -> Flow:
    try:
        # The tool has run: its outcome is written even if the task is cancelled meanwhile;
        # the claim's token makes a retry after a lost reply find its own outcome.
        done = yield op("finish", req.id, ok=ok, outcome=outcome, token=token, shield=True)
    except GatekeeperError as exc:  # the tool already ran: say so, don't hide its result
        log.error("could not record the outcome of request %s: %s", req.id, exc)
        return
    yield Tell("update", done)
