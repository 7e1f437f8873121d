"""The guarded call, written once: a generator of commands, driven by a sync and an async loop.

:func:`guarded_call` is the whole path of one call through the gate —
classify, admit or hold, tell the channels, wait for the decision, check
its signatures, claim, run, record the outcome — with every piece of I/O
yielded as a command instead of performed:

- :class:`StoreOp`: a method of the store (``hold``, ``wait``, ``claim``...),
  run on the blocking face by :func:`drive` and on ``store.aio`` by
  :func:`adrive`;
- :class:`Tell`: ``notify`` or ``update`` every channel;
- :class:`Run`: call the tool itself;
- :class:`StartBy`: the tool of this approved call may start only in time
  (checked by the driver at the moment it would start it).

The driver sends each command's result back into the generator, or throws
its error in, so the flow's ``try``/``except`` blocks see store errors,
interrupts and task cancellation exactly where they happen (the pattern of
httpx's ``Auth.auth_flow`` and tenacity's ``BaseRetrying.iter``). There is
one flow to change and both faces run it.

A store step may carry a deadline (:attr:`StoreOp.deadline`): the driver
stops waiting for it then (:mod:`gatekeeper.store._bounded`), so the steps a
waiter takes at its expiry can't keep it past that, whatever Redis does.
A flow closed mid-way (``GeneratorExit``: its driver was closed, not
resumed) yields nothing more; it withdraws what it held without a command
(:func:`withdraw_unattended`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import inspect
import time
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from . import _pipeline as pipe
from ._errors import (
    AgentHalted,
    ApprovalTimeout,
    ArgumentsChanged,
    GatekeeperError,
    InvalidToolCall,
    StoreUnavailable,
    TamperingDetected,
    TransitionRefused,
)
from ._grants import Grant, usable_grant
from ._session import _call_key as _CALL_KEY
from ._session import current_call_key, tell_held
from ._tool import ToolSpec
from .logs import _CONTEXT, _NONE, bounded, get_logger, log_context, quoted
from .models import (
    ApprovalRequest,
    BehaviourHit,
    Classification,
    RequestStatus,
    ToolCall,
    Verdict,
)
from .store._bounded import READ_FLOOR, awithin, within

if TYPE_CHECKING:
    from ._gate import Gatekeeper

__all__ = [
    "AT_EXPIRY",
    "LATE_APPROVAL",
    "Flow",
    "Run",
    "StartBy",
    "StoreOp",
    "Tell",
    "adrive",
    "drive",
    "guarded_call",
    "late_start",
    "too_late",
    "withdraw_unattended",
]

log = get_logger("gatekeeper.calls")

_EXPIRED_HERE = "expired by the agent's own clock"
APPROVED_QUESTION = "a question is answered (respond) or declined (deny), never approved"

#: Seconds past its expiry by which the steps at a waiter's expiry (``expire``,
#: else withdrawing the request) must be done. A store that has not answered
#: by then is left as it is: the waiter raises ApprovalTimeout, and nothing
#: runs the call — only this waiter would have claimed it, and the store
#: refuses approvals past expiry.
AT_EXPIRY = 0.08

#: An approval this process learns of more than this many seconds after the
#: request's expiry (on its own clock) is not run: the request is closed as
#: failed ("not run") and the call raises ApprovalTimeout. The grace covers an
#: approval recorded just before expiry whose wake-up arrives just after.
LATE_APPROVAL = 1.0

#: What a waiter says when the store did not answer at its expiry.
_UNANSWERED = (
    "no decision reached this agent by then, and the store did not answer at expiry "
    "(it may show the request as pending, or approved if a decision came that this "
    "agent could not read); the call was not run, and this agent will not run it"
)


@dataclass(frozen=True)
class StoreOp:
    """Call ``method`` of the store's face with these arguments.

    ``shield``: the async driver runs it to the end even if the task is
    cancelled again meanwhile (withdrawing a request on the way out).
    ``deadline`` (``time.monotonic()`` seconds): the driver stops waiting for
    the step then and throws :class:`~gatekeeper.StoreUnavailable` in (the step
    may or may not have reached the store).
    """

    method: str
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    shield: bool = False
    deadline: float | None = None


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


@dataclass(frozen=True)
class StartBy:
    """The next :class:`Run` starts only while approved ``held`` is in time (:func:`too_late`).

    The wait yields it with an approval: the driver checks right before it
    starts the tool, since a step in between (a claim whose reply was lost)
    can take a socket timeout, and throws the ApprovalTimeout in instead.
    """

    held: ApprovalRequest


Command = StoreOp | Tell | Run | StartBy
Flow = Generator[Command, Any, Any]


def op(
    method: str, *args: Any, shield: bool = False, deadline: float | None = None, **kwargs: Any
) -> StoreOp:
    return StoreOp(method, args, kwargs, shield, deadline)


# -- the drivers ------------------------------------------------------------------------------
def drive(gate: Gatekeeper, flow: Flow) -> Any:
    """Run ``flow`` on the store's blocking face; returns what the flow returns."""
    store = gate.store
    sent: Any = None
    error: BaseException | None = None
    start_by: StartBy | None = None
    try:
        while True:
            try:
                command = flow.send(sent) if error is None else flow.throw(error)
            except StopIteration as stop:
                return stop.value
            sent, error = None, None
            try:
                if isinstance(command, StoreOp):
                    method = getattr(store, command.method)
                    step = functools.partial(method, *command.args, **command.kwargs)
                    if command.deadline is None:
                        sent = step()
                    else:
                        sent = within(command.deadline - time.monotonic(), step)
                elif isinstance(command, Tell):
                    gate._tell(command.what, command.request)
                elif isinstance(command, StartBy):
                    start_by = command
                else:
                    _check_start(gate, start_by)
                    sent = command.func(*command.args, **command.kwargs)
            except BaseException as exc:  # thrown into the flow, which decides what it means
                error = exc
    finally:
        flow.close()  # left mid-way (an interrupt in this loop itself): the flow withdraws


async def adrive(gate: Gatekeeper, flow: Flow) -> Any:
    """Run ``flow`` on the store's async face (``store.aio``); returns what the flow returns."""
    aio = gate.store.aio
    sent: Any = None
    error: BaseException | None = None
    start_by: StartBy | None = None
    cancels = _cancelling()  # a count left over from before this call is not ours to act on
    try:
        while True:
            try:
                command = flow.send(sent) if error is None else flow.throw(error)
            except StopIteration as stop:
                return stop.value
            sent, error = None, None
            try:
                if isinstance(command, StoreOp):
                    step = getattr(aio, command.method)(*command.args, **command.kwargs)
                    if command.deadline is not None:
                        step = awithin(command.deadline - time.monotonic(), step)
                    if command.shield:
                        sent = await asyncio.shield(step)
                    else:
                        sent = await _cancellable(step, command.deadline)
                        if _cancelling() > cancels:
                            raise asyncio.CancelledError  # as if it had not been dropped
                elif isinstance(command, Tell):
                    await gate._atell(command.what, command.request)
                elif isinstance(command, StartBy):
                    start_by = command
                else:
                    _check_start(gate, start_by)
                    sent = command.func(*command.args, **command.kwargs)
                    if inspect.isawaitable(sent):  # a coroutine function's call (the async face)
                        sent = await sent
            except GeneratorExit:  # this coroutine is being closed: nothing can be awaited now
                raise
            except BaseException as exc:
                error = exc
    finally:
        flow.close()  # closed mid-way: the flow withdraws what it held by itself


def _check_start(gate: Gatekeeper, start_by: StartBy | None) -> None:
    if start_by is not None:
        late = late_start(gate, start_by.held, at="could start it")
        if late is not None:
            raise late


_WITHDRAWING: set[asyncio.Task[Any]] = set()  # kept until done (the loop holds tasks weakly)


def withdraw_unattended(gate: Gatekeeper, request_id: str, *, by: str, reason: str) -> None:
    """Withdraw ``request_id`` for a flow that was closed while it waited (``GeneratorExit``).

    A closed generator (or coroutine) may not yield or await any more, so no
    command can do it. On a running event loop a task of its own cancels the
    request through the async face; elsewhere the blocking face does, here.
    A request decided already stays as it is.
    """
    try:
        loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    if loop is not None:

        async def cancel() -> None:
            with contextlib.suppress(GatekeeperError):
                await gate.store.aio.cancel(request_id, by=by, reason=reason)

        task = loop.create_task(cancel())
        _WITHDRAWING.add(task)
        task.add_done_callback(_WITHDRAWING.discard)
        return
    try:
        gate.store.cancel(request_id, by=by, reason=reason)
    except GatekeeperError:
        pass
    except Exception as exc:  # closing: nothing may escape from here
        log.warning("could not withdraw request %s: %s", request_id, exc)


_LET_FINISH = 5.0  # seconds a cancelled step may take to end before the flow goes on without it


async def _cancellable(step: Any, deadline: float | None) -> Any:
    """Await the store step ``step`` so that cancelling this task always raises here.

    The step runs as a task of its own behind :func:`asyncio.shield`: a
    cancellation of this task cancels the shield's outer future, which cannot
    swallow it, and is then passed on to the step. Whether the step drops it
    (``asyncio.wait_for`` inside redis-py can, on Python 3.10 and 3.11, when
    the command finishes at the same moment) no longer matters: the flow is
    told ``CancelledError`` on every Python, and withdraws the request.

    The step is given a little time to end first (at most
    ``_LET_FINISH`` seconds, and never past its deadline), so that a hold
    under way has landed before the withdrawal is sent; one still running
    after that holds no lease from this process and lapses as abandoned.
    """
    task = asyncio.ensure_future(step)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        task.cancel()
        bound = _LET_FINISH
        if deadline is not None:
            bound = max(0.0, min(bound, deadline - time.monotonic()))
        done, _ = await asyncio.wait({task}, timeout=bound)
        if task in done and not task.cancelled():
            task.exception()  # its result, or error, is not wanted any more: retrieved, not logged
        raise


def _cancelling() -> int:
    """How many cancellations of this task are pending (0 where Python does not count them).

    Compared before and after each store step: a count that went up while a
    step returned normally is a cancellation that was swallowed on the way.

    On Python 3.10 and 3.11 a cancellation can be lost inside
    ``asyncio.wait_for`` (which redis-py's asyncio client uses) when the
    awaited operation finishes at the same moment: the step returns, and the
    task goes on as if never cancelled — on to wait, and to run the tool
    once approved. :func:`_cancellable` keeps such a cancellation out of the
    store step altogether, on every Python; this count (3.11 and newer) is a
    second guard, for one swallowed anywhere else inside a step.
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

    The key names this call only: guarded calls its tool makes in turn don't
    inherit it.
    """
    key = key if key is not None else current_call_key()
    token = _CALL_KEY.set(None)
    try:
        flow = _guarded(gate, spec, args, kwargs, reason, decided, key, wait)
        # A held call sets its request, agent and session around everything made
        # while it waits and runs (see _held). A call that runs at once sets no
        # log context: the allowed path pays nothing for logs (its few lines pass
        # agent and session with extra=). Made inside another call's block (a tool
        # that calls a guarded tool), it first clears that block: the enclosing
        # request and agent are not this call's.
        if _CONTEXT.get() is not _NONE:
            flow = _cleared(flow)
        telemetry = gate.telemetry
        if telemetry.active:  # otherwise not even a wrapper: nothing to pay
            flow = telemetry.watch(telemetry, spec.name, key, flow)
        return (yield from flow)
    finally:
        with contextlib.suppress(ValueError):  # closed from another context: nothing to undo
            _CALL_KEY.reset(token)


def _guarded(
    gate: Gatekeeper,
    spec: ToolSpec,
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    reason: str | None,
    decided: list[ApprovalRequest] | None,
    key: str | None,
    wait: bool,
) -> Flow:
    call, bound, cls = gate._prepare(spec, args, kwargs, reason)
    plan = None if spec.question else _plan(gate, call, key, cls.verdict)
    shadows: tuple[BehaviourHit, ...] = ()
    verdict = cls.verdict
    if verdict is Verdict.REQUIRE_APPROVAL:
        req = gate._new_request(spec, call, cls, key, park=not wait)
        if plan is not None:  # sequences move on, limits are checked (not yet counted)
            raw = yield op("observe", plan, agent=call.agent, request_id=req.id)
            enforced, shadows = _split(gate, raw)
            if enforced:
                cls = gate.policy.escalate(cls, enforced)
                req = req.model_copy(update={"classification": cls})
        _record_shadow(gate, call, cls, shadows)
        if cls.verdict is Verdict.REQUIRE_APPROVAL and not cls.behaviour and req.quorum == 1:
            # A standing approval, or autonomy the agent earned, may let it pass.
            stored, demoted = yield op("grants_for", call.agent)
            grant = _usable_grant(gate, call, cls, stored, demoted) if stored else None
            if grant is not None:
                cls = _granted(cls, grant)
                gate.store.record_soon([pipe.grant_used_event(call, grant)])
        if cls.verdict is Verdict.REQUIRE_APPROVAL:
            return (yield from _held(gate, spec, bound, req, cls, decided, wait, plan))
        verdict = cls.verdict
        if verdict is not Verdict.ALLOW:
            plan = None  # a sequence or limit refuses it outright
    try:
        raw = yield op(
            "admit",
            pipe.call_event(call, cls),
            agent=call.agent,
            session_id=call.session_id,
            plan=plan,
            verdict=verdict.value,
        )
        enforced, shadows = _split(gate, raw)
        _record_shadow(gate, call, cls, shadows)
        if enforced:  # a sequence it completes or a limit it passes: stricter than its verdict
            cls = gate.policy.escalate(cls, enforced)
            verdict = cls.verdict
            if verdict is Verdict.REQUIRE_APPROVAL:
                req = gate._new_request(spec, call, cls, key, park=not wait)
                return (yield from _held(gate, spec, bound, req, cls, decided, wait, plan))
            yield op(
                "admit",
                pipe.call_event(call, cls),
                agent=call.agent,
                session_id=call.session_id,
                verdict=verdict.value,
            )
    except AgentHalted:
        gate._refused(call, cls)
        raise
    except StoreUnavailable as exc:
        if verdict is Verdict.ALLOW:
            if gate.policy.on_store_error != "allow":
                raise
            log.warning(
                "store unavailable; running allowed call %s unaudited",
                quoted(call.tool),
                extra=_of(call),
            )
        else:
            log.warning(
                "store unavailable; refusing %s without an audit record: %s",
                quoted(call.tool),
                exc,
                extra=_of(call),
            )
    if verdict is Verdict.ALLOW:
        slots = plan if plan is not None and _takes_slot(plan) else None
        return (yield from _run_allowed(gate, spec, bound, call, slots))
    if verdict is Verdict.HALT:
        cancelled = yield op(
            "halt",
            *gate._halt_target(call, cls),
            by=gate._halted_by(cls),
            reason="; ".join(cls.reasons),
            agent=call.agent,
        )
        raise _halting(gate, call, cls, cancelled)
    raise _refusing(call, cls)


def _cleared(flow: Flow) -> Flow:
    """``flow`` run with no log context (not the enclosing call's)."""
    token = _CONTEXT.set(_NONE)
    try:
        return (yield from flow)
    finally:
        with contextlib.suppress(ValueError):  # closed from another context: nothing to undo
            _CONTEXT.reset(token)


def _of(call: ToolCall) -> dict[str, Any]:
    """``extra=`` for a line about ``call`` made outside a held call's block."""
    return {"agent": call.agent, "session": call.session_id}


def _rules(cls: Classification) -> str:
    return ", ".join(cls.rules) or "none"


def _halting(gate: Gatekeeper, call: ToolCall, cls: Classification, cancelled: Any) -> Exception:
    log.warning(
        "call to %s halts the %s (rules: %s)",
        quoted(call.tool),
        cls.halt_scope.value,
        _rules(cls),
        extra=_of(call),
    )
    return gate._halt_for(call, cls, cancelled)


def _refusing(call: ToolCall, cls: Classification) -> Exception:
    log.info(
        "call to %s refused by the policy (rules: %s)",
        quoted(call.tool),
        _rules(cls),
        extra=_of(call),
    )
    return pipe.denied_error(call, cls)


def _held_news(
    call: ToolCall, cls: Classification, req: ApprovalRequest, held: ApprovalRequest
) -> bool:
    """Say that ``call`` is held; whether it re-attached to an earlier request of the same call."""
    if held.id != req.id:
        log.info(
            "call to %s is the one request %s holds (%s)",
            quoted(call.tool),
            held.id,
            held.status.value,
            extra={"request_id": held.id},
        )
        return True
    log.info(
        "call to %s held for approval (%s risk; rules: %s)",
        quoted(call.tool),
        cls.risk.value,
        _rules(cls),
    )
    return False


def _decided_news(held: ApprovalRequest, final: ApprovalRequest) -> ApprovalRequest:
    """Say how ``held`` ended, when not approved (approvers' names, never a comment or an
    argument). An approval is told by :func:`_approved_news`, once its signed votes are
    checked: until then it is only what the store (the agent's to write) says."""
    if final.status is not RequestStatus.APPROVED:
        log.info(
            "request %s %s (by %s)",
            held.id,
            final.status.value,
            ", ".join(quoted(d.approver) for d in final.decisions) or "no one",
            extra={"request_id": held.id},
        )
    return final


def _released_args(
    gate: Gatekeeper,
    spec: ToolSpec,
    bound: inspect.BoundArguments,
    held: ApprovalRequest,
    final: ApprovalRequest,
) -> tuple[inspect.BoundArguments, str]:
    """:meth:`Gatekeeper._release_args`, then the line that says ``held`` was approved."""
    released = gate._release_args(spec, bound, held, final)
    _approved_news(held, final)
    return released


def _approved_news(held: ApprovalRequest, final: ApprovalRequest) -> None:
    """Say that ``held`` was approved: its votes were verified (every decision it carries
    is signed by a trusted key), so the names are the approvers'."""
    names = ", ".join(bounded(d.approver) for d in final.decisions)
    log.info("request %s approved (by %s)", held.id, names or "no one")


def _plan(
    gate: Gatekeeper, call: ToolCall, key: str | None, verdict: Verdict
) -> dict[str, Any] | None:
    """The call's behaviour plan for the store (None: no sequence or limit names its tool).

    A held call with a key is counted under its key and its arguments: the
    same call made again (a retry, a resumed run) re-attaches to the same
    request, which runs at most once, so it is counted once. Any other call
    counts as itself: a key used again for a call that runs at once, or with
    other arguments, is another call and counts again.
    """
    plan = gate.policy.plan(call)
    if plan is None:
        return None
    wire = plan.wire()
    if key is not None and verdict is Verdict.REQUIRE_APPROVAL:
        named = f"{key}\x00{call.args_digest}".encode("utf-8", "surrogatepass")
        wire["c"] = "k:" + hashlib.sha256(named).hexdigest()[:32]
    return wire


def _usable_grant(
    gate: Gatekeeper,
    call: ToolCall,
    cls: Classification,
    stored: Mapping[str, str],
    demoted: int | None,
) -> Grant | None:
    grant, problems, voided = usable_grant(
        gate.store.decision_keys,
        stored,
        call,
        gate.clock.now(),
        demoted,
        lambda rule, c: any(r.id == rule for r in gate.policy.autonomy_for(c)),
        (cls.rules, cls.approval.group),
    )
    for problem in problems:  # never used; said loudly: someone wrote the agent's grants
        log.error("grants of agent %s: %s", quoted(call.agent), problem, extra=_of(call))
    for lost in voided:  # a sequence or limit fired since it was earned: said once here
        if lost.id not in gate._demoted:
            gate._demoted.add(lost.id)
            gate.store.record_soon([pipe.demoted_event(call, lost)])
    return grant


def _granted(cls: Classification, grant: Grant) -> Classification:
    """``cls`` (a hold) made an allow by ``grant``, saying so first among the reasons."""
    if grant.kind == "autonomy":
        why = f"autonomy earned under rule {grant.rule} ({grant.comment or 'promoted'})"
    else:
        why = f"standing approval {grant.id} by {grant.by}: {grant.describe()}"
    return cls.model_copy(
        update={
            "verdict": Verdict.ALLOW,
            "rules": (f"grant:{grant.id}", *cls.rules),
            "reasons": (why, *cls.reasons),
        }
    )


def _split(
    gate: Gatekeeper, raw: list[dict[str, Any]] | None
) -> tuple[tuple[BehaviourHit, ...], tuple[BehaviourHit, ...]]:
    """The store's hits: those that decide, and those of shadow-mode entries."""
    if not raw:
        return (), ()
    hits = gate.policy.hits(raw)
    return tuple(h for h in hits if not h.shadow), tuple(h for h in hits if h.shadow)


def _record_shadow(
    gate: Gatekeeper, call: ToolCall, cls: Classification, hits: tuple[BehaviourHit, ...]
) -> None:
    """Record what shadow-mode rules, sequences, limits or novelty rules would have done."""
    if cls.shadow is None and not hits:
        return
    gate.store.record_soon([pipe.shadow_event(call, cls, hits)])


def _hold(
    req: ApprovalRequest, event: Mapping[str, Any], plan: Mapping[str, Any] | None
) -> StoreOp:
    """The hold of ``req``; its behaviour plan as a keyword, only when it has one."""
    if plan is None:
        return op("hold", req, event)
    return StoreOp("hold", (req, event), {"plan": plan})


def _claim_args(
    gate: Gatekeeper,
    spec: ToolSpec,
    run_args: inspect.BoundArguments,
    run_digest: str,
    token: str,
    held: ApprovalRequest,
    plan: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The claim's arguments; with a plan remade from the arguments an approver edited."""
    out: dict[str, Any] = {"args_digest": run_digest, "token": token}
    out["created_at"] = held.created_at
    if plan is not None and run_digest != held.call.args_digest:
        edited_call = held.call.model_copy(update={"args": spec.json_of(run_args)})
        remade = gate.policy.plan(edited_call)
        replan = remade.wire() if remade is not None else {"s": [], "l": [], "n": []}
        replan.update(c=plan["c"], t=plan["t"])
        out["plan"] = replan
    return out


def _takes_slot(plan: Mapping[str, Any]) -> bool:
    return any(lim["kind"] == "concurrent" for lim in plan["l"])


def _run_allowed(
    gate: Gatekeeper,
    spec: ToolSpec,
    bound: inspect.BoundArguments,
    call: ToolCall,
    slots: Mapping[str, Any] | None = None,
) -> Flow:
    start = time.perf_counter()
    try:
        result = yield Run(spec.func, bound.args, bound.kwargs)
    except GeneratorExit:  # closed, not driven: the slot lapses by itself
        raise
    except BaseException as exc:
        yield from _free_slots(call, slots)
        gate._outcome(call, start, ok=False, outcome=pipe.outcome_text(exc=exc))
        raise
    yield from _free_slots(call, slots)
    gate._outcome(call, start, ok=True, outcome=pipe.outcome_text(result))
    return result


def _free_slots(call: ToolCall, slots: Mapping[str, Any] | None) -> Flow:
    """An allowed call that took concurrency slots ended: free them (else they lapse)."""
    if slots is None:
        return
    try:
        yield op("observe", slots, agent=call.agent, mode="done", shield=True)
    except GatekeeperError as exc:  # the slot lapses by itself (docs/policy.md)
        log.warning(
            "could not free the concurrency slot of %s: %s", quoted(call.tool), exc, extra=_of(call)
        )


def _held(
    gate: Gatekeeper,
    spec: ToolSpec,
    bound: inspect.BoundArguments,
    req: ApprovalRequest,
    cls: Classification,
    decided: list[ApprovalRequest] | None,
    wait: bool = True,
    plan: Mapping[str, Any] | None = None,
) -> Flow:
    call = req.call
    with log_context(request_id=req.id, agent=call.agent, session=call.session_id):
        return (yield from _held_request(gate, spec, bound, req, cls, decided, wait, plan))


def _held_request(
    gate: Gatekeeper,
    spec: ToolSpec,
    bound: inspect.BoundArguments,
    req: ApprovalRequest,
    cls: Classification,
    decided: list[ApprovalRequest] | None,
    wait: bool,
    plan: Mapping[str, Any] | None,
) -> Flow:
    call = req.call
    by, gone = f"agent:{call.agent}", "the caller stopped waiting"
    try:
        held: ApprovalRequest = yield _hold(req, pipe.call_event(call, cls, request=req), plan)
    except AgentHalted:
        gate._refused(call, cls)
        raise
    except GeneratorExit:  # closed, not driven: withdrawn without a command
        withdraw_unattended(gate, req.id, by=by, reason=gone)
        raise
    except BaseException:  # interrupted: the hold may have landed all the same
        with contextlib.suppress(GatekeeperError):  # no such request: nothing to withdraw
            yield op("cancel", req.id, by=by, reason=gone, shield=True)
        raise
    attached = _held_news(call, cls, req, held)  # the same call made before under its key
    if attached:
        held = yield from _trusted_attach(gate, req, held)
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
                tell_held(held)  # the framework's stream shows it waits (see on_held)
                final = _decided_news(held, (yield from _decision(gate, held)))
            except GeneratorExit:  # closed, not driven: withdrawn without a command
                withdraw_unattended(gate, held.id, by=by, reason=gone)
                raise
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
        return (yield from _release(gate, spec, bound, held, final, plan))
    finally:
        gate.store.drop(held.id)


def _trusted_attach(gate: Gatekeeper, req: ApprovalRequest, held: ApprovalRequest) -> Flow:
    """The earlier request ``req`` re-attached to, once it is shown to be the same call.

    The store's copy is the agent's to write: its tool, arguments, kind and
    quorum are checked against (or taken from) what this process made from
    its own policy, so a rewritten record can't get another call released,
    another call's answer returned, or a quorum lowered.
    """
    mine, theirs = req.call, held.call
    same = (
        theirs.agent == mine.agent
        and theirs.tool == mine.tool
        and theirs.args_digest == mine.args_digest
        and held.kind == req.kind
    )
    if not same:
        exc = TamperingDetected(
            f"Tool call {mine.tool}: the request its key names ({held.id}) is for another call "
            f"({theirs.tool} by {theirs.agent}); not run",
            tool=mine.tool,
            request_id=held.id,
            call_id=mine.id,
        )
        with contextlib.suppress(GatekeeperError):
            yield op("flag_tampering", held.id, exc.message, gate._tampering_event(held, exc))
        raise exc
    return held.model_copy(
        update={
            "quorum": max(held.quorum, req.quorum),
            "classification": req.classification,
            "group": req.group if req.group is not None else held.group,
        }
    )


def _decision(gate: Gatekeeper, req: ApprovalRequest) -> Flow:
    """Wait until ``req`` is decided or this process's own deadline passes; returns it as it ended.

    The deadline is the expiry this process gave the request, on its own
    clock: whatever the store's clock says, or whatever expiry is stored (the
    agent's to write), the caller stops waiting then. When the store does
    not agree that the request has expired, this process withdraws it
    (``cancel``); a decision that got there first stands.

    Bounded whatever the store does: the wait is back by the deadline (its
    reads are bounded and retried, see ``Store.wait``), and the steps at
    expiry get :data:`AT_EXPIRY` seconds. When the store can't be reached in
    time the request comes back expired, with why: nothing of the call runs.
    An approval learned of too late (:func:`too_late`) is closed, not run.
    """
    while True:
        remaining = (req.expires_at - gate.clock.now()).total_seconds()
        try:
            current: ApprovalRequest = yield op("wait", req.id, max(remaining, 0.0))
        except StoreUnavailable:  # no read got through by the deadline
            if (req.expires_at - gate.clock.now()).total_seconds() > AT_EXPIRY:
                raise  # a store that gave up long before the deadline: not waited out
            return (yield from _at_expiry(gate, req))
        if current.status.decided:
            return (yield from _in_time(gate, req, current))
        if gate.clock.now() < req.expires_at:
            continue  # woken a moment early (another clock): wait out the rest
        return (yield from _at_expiry(gate, req))


def _at_expiry(gate: Gatekeeper, req: ApprovalRequest) -> Flow:
    """End ``req`` at its expiry (ours): expired, or withdrawn, within :data:`AT_EXPIRY` s."""
    by = f"agent:{req.call.agent}"
    late = max((gate.clock.now() - req.expires_at).total_seconds(), 0.0)
    deadline = time.monotonic() + max(AT_EXPIRY - late, READ_FLOOR)  # AT_EXPIRY past expiry
    try:
        try:
            return (yield op("expire", req.id, deadline=deadline))
        except TransitionRefused:  # the store's clock is behind ours, or the expiry was moved
            pass
        try:
            yield op("cancel", req.id, by=by, reason=_EXPIRED_HERE, deadline=deadline)
        except TransitionRefused:  # decided in the meantime: that decision stands
            current = yield op("get", req.id, deadline=deadline)
            return (yield from _in_time(gate, req, current))
    except StoreUnavailable:  # nobody may approve it now, and only we would run it
        return req.model_copy(update={"status": RequestStatus.EXPIRED, "comment": _UNANSWERED})
    except GatekeeperError:  # the store is gone: nobody may approve it, nothing runs
        pass
    return req.model_copy(update={"status": RequestStatus.EXPIRED})


def too_late(gate: Gatekeeper, held: ApprovalRequest, *, at: str = "learned of it") -> str | None:
    """Why approved ``held`` must not start now, or None while it may.

    It may start until :data:`LATE_APPROVAL` seconds past its expiry, on this
    process's clock: checked when the approval is learned of (the end of the
    wait) and again right before the tool starts (:class:`StartBy`).
    """
    late = (gate.clock.now() - held.expires_at).total_seconds()
    if late < LATE_APPROVAL:
        return None
    return (
        f"it was approved, but this agent {at} only {late:.1f} s after that, "
        "too late to run it; it was closed without running"
    )


def late_start(
    gate: Gatekeeper, held: ApprovalRequest, *, at: str = "learned of it"
) -> ApprovalTimeout | None:
    """The error to raise in place of starting approved ``held`` now, or None (:func:`too_late`)."""
    why = too_late(gate, held, at=at)
    if why is None:
        return None
    expired = held.model_copy(update={"status": RequestStatus.EXPIRED, "comment": why})
    error = pipe.blocked_error(expired, question=held.kind == "question")
    assert isinstance(error, ApprovalTimeout)
    return error


def _in_time(gate: Gatekeeper, req: ApprovalRequest, current: ApprovalRequest) -> Flow:
    """``current`` as decided, unless it is an approval learned of too late to run."""
    if current.status is not RequestStatus.APPROVED or req.kind == "question":
        return current
    late = too_late(gate, req)
    if late is None:
        yield StartBy(req)
        return current
    log.warning("request %s: %s", req.id, late)
    with contextlib.suppress(GatekeeperError):  # refused already, or the store is gone: not run
        yield op("refuse", req.id, why=f"not run: {late}", deadline=time.monotonic() + AT_EXPIRY)
    return req.model_copy(update={"status": RequestStatus.EXPIRED, "comment": late})


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
    plan: Mapping[str, Any] | None = None,
) -> Flow:
    """Run an approved call once its signed votes check out, and record how it ended.

    ``plan``: the call's behaviour plan, kept at the hold; when the approver
    edited the arguments, the claim counts a plan made from the edited ones
    (what runs is what counts: its values become known, its amount is spent).
    """
    try:
        run_args, run_digest = _released_args(gate, spec, bound, held, final)
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
        yield from _finish(gate, final, ok=False, outcome=why, token=token)
        raise
    token = gate._ids()
    # A call this process waited for starts by LATE_APPROVAL past its expiry or not at all:
    # the claim is bounded by that too (a parked one, resumed later, by the store's retries).
    deadline = None
    if not held.parked:
        room = (held.expires_at - gate.clock.now()).total_seconds() + LATE_APPROVAL
        deadline = time.monotonic() + max(room, READ_FLOOR)
    claim_args = _claim_args(gate, spec, run_args, run_digest, token, held, plan)
    try:
        yield StoreOp("claim", (held.id,), claim_args, False, deadline)
    except StoreUnavailable as exc:  # the claim may land later: close it then, never run it
        if exc.context.get("applied") != "no":
            close = getattr(gate.store, "close_unclaimed_soon", None)
            if close is not None:
                close(held.id, token=token, why=f"not run: the claim went unanswered ({exc})")
        if deadline is not None and time.monotonic() >= deadline:  # out of time, not of store
            why = (
                "it was approved, but the store did not confirm its release in time "
                f"({exc}); it was not run, and is closed as not run"
            )
            expired = held.model_copy(update={"status": RequestStatus.EXPIRED, "comment": why})
            raise pipe.blocked_error(expired, question=held.kind == "question") from exc
        raise
    except TransitionRefused as exc:  # approved but not to be run: close it, not stuck
        status = exc.context.get("status")
        if status == "approved":
            with contextlib.suppress(GatekeeperError):
                yield Tell("update", (yield op("refuse", held.id, why=f"not run: {exc}")))
        if status in _RAN_OR_RUNNING:  # another caller of the same call got there first
            raise pipe.blocked_error(
                held.model_copy(update={"status": RequestStatus(status), "outcome": None})
            ) from exc
        raise
    try:
        result = yield Run(spec.func, run_args.args, run_args.kwargs)
    except BaseException as exc:
        yield from _finish(gate, final, ok=False, outcome=pipe.outcome_text(exc=exc), token=token)
        raise
    yield from _finish(gate, final, ok=True, outcome=pipe.outcome_text(result), token=token)
    return result


_RAN_OR_RUNNING = frozenset({"executing", "executed", "failed", "outcome_unknown"})


def _finish(gate: Gatekeeper, req: ApprovalRequest, *, ok: bool, outcome: str, token: str) -> Flow:
    try:
        # The tool has run: its outcome is written even if the task is cancelled meanwhile;
        # the claim's token makes a retry after a lost reply find its own outcome.
        done = yield op("finish", req.id, ok=ok, outcome=outcome, token=token, shield=True)
    except GatekeeperError as exc:  # the tool already ran: say so, don't hide its result
        later = getattr(gate.store, "finish_soon", None)
        passing = isinstance(exc, StoreUnavailable) or "OOM" in exc.message  # may clear
        if passing and later is not None:
            later(req.id, ok=ok, outcome=outcome, token=token)  # retried until recorded
            log.warning("outcome of request %s not recorded yet, retrying: %s", req.id, exc)
        else:
            log.error("could not record the outcome of request %s: %s", req.id, exc)
        return
    log.info(
        "request %s %s",
        req.id,
        "executed" if ok else "failed",
        extra={"request_id": req.id},
    )
    yield Tell("update", done)
