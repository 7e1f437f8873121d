"""The SDK's own approvals (``needs_approval``) decided through gatekeeper.

An app that marks tools ``needs_approval=True`` gets a run that stops with
``result.interruptions``. :func:`decide_interruptions` turns each one into a
gatekeeper request (policy, channels, approvers, audit), waits for the
decisions, and records them on the run's state with ``state.approve`` or
``state.reject``; the app resumes with ``Runner.run(agent, state)``.

Here the SDK runs the tool, after this returns: gatekeeper's record of an
approved call ends at its release.

Each call is held under its SDK call id as key, so a run paused in one process
is decided in another: save ``result.to_state().to_string()``, let
:func:`hold_interruptions` hold the calls without waiting (the requests stay
for the people), and later, anywhere, restore the state with
``RunState.from_string`` and pass it to :func:`decide_interruptions` or
:func:`hold_interruptions` again: each call re-attaches to its request instead
of asking again, and an approval is released once. The SDK can only run a call with the
arguments the model sent, so a call an approver *edited* is rejected and the
model is told the approver's arguments, to call again with them. So is a call
that left out arguments with a schema ``default``: the gate judges it with the
defaults filled in, and the model is told those complete arguments.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import warnings
from collections.abc import Coroutine, Mapping, Sequence
from typing import Any, NamedTuple, TypeVar

from agents import (
    FunctionTool,
    ModelResponse,
    RunResult,
    RunResultStreaming,
    RunState,
    ToolApprovalItem,
)

from gatekeeper import (
    AlreadyRan,
    ApprovalPending,
    Gatekeeper,
    InvalidToolCall,
    Response,
    TamperingDetected,
    ToolCallBlocked,
)

from ._agents import OnBlocked
from ._agents_args import ArgumentCheck, not_run
from ._agents_reasons import words_before

__all__ = [
    "Held",
    "decide_interruptions",
    "decide_interruptions_sync",
    "hold_interruptions",
    "hold_interruptions_sync",
]

RELEASED = "released to the Agents SDK, which runs the tool"
T = TypeVar("T")
Paused = RunResult | RunResultStreaming | RunState[Any]


class Held(NamedTuple):
    """What :func:`hold_interruptions` did: the state to save or resume, and what still waits.

    ``state`` has every call that people (or the policy) decided recorded on it
    (``approve``/``reject``); the calls in ``waiting`` are left undecided.
    ``waiting`` maps each such call's SDK call id to its
    :class:`~gatekeeper.ApprovalPending` (``request_id``, ``tool``,
    ``expires_at``): what a UI shows as "waiting for approval".
    """

    state: RunState[Any]
    waiting: dict[str, ApprovalPending]

    @property
    def done(self) -> bool:
        """Every call is decided: resume the run with ``Runner.run(agent, held.state)``."""
        return not self.waiting


async def decide_interruptions(
    gate: Gatekeeper,
    result: Paused,
    *,
    on_blocked: OnBlocked = "return",
) -> RunState[Any]:
    """Decide every pending tool approval of ``result`` through ``gate``; returns the state.

    ``result`` is the paused run's result, or its ``RunState`` — one restored
    with ``RunState.from_string`` in another process too (then that state is
    returned, decided). Each call is held under its call id: one held before
    (by :func:`hold_interruptions`, or a decider that stopped) is re-attached
    to, not asked again; one already released to the SDK is rejected with
    :class:`~gatekeeper.AlreadyRan`'s message rather than run twice.

    Each interruption becomes a call of ``gate``, held or not as the policy
    says (a tool's scopes, irreversibility and risk come from the policy's
    ``tools:`` section), all at once so people see them together. The call's
    reason is what the model said before it. Then:

    - allowed or approved: ``state.approve(item)``;
    - answered by a person instead (the *respond* decision, or a question
      to the gate's ask-a-person tool): ``state.reject(item,
      rejection_message=<their text>)``, so the model reads the person's
      text as the call's output and the tool does not run;
    - denied, timed out, cancelled or halted: ``state.reject(item,
      rejection_message=exc.model_message)``, which the model reads; with
      ``on_blocked="raise"`` the first such :class:`~gatekeeper.ToolCallBlocked`
      is raised instead and the requests still waiting are withdrawn;
    - approved with edited arguments, or allowed/approved when the model
      left out arguments that have a schema ``default`` (judged with the
      defaults filled in): rejected, and the model is told the complete
      arguments to call again with (the SDK cannot run a call with other
      arguments than the model's);
    - arguments that are not a JSON object matching the tool's schema:
      rejected with a message naming the problem; nobody is asked.

    Resume the run with the returned state::

        while result.interruptions:
            state = await decide_interruptions(gate, result)
            result = await Runner.run(agent, state)
    """
    if on_blocked not in ("return", "raise"):
        raise ValueError(f'on_blocked must be "return" or "raise", not {on_blocked!r}')
    state, items, responses = _paused(result)
    await _check_recorded_approvals(gate, state, responses)
    if not items:
        return state
    verdicts = await _decide_all(gate, items, responses, on_blocked, wait=True)
    for item, verdict in zip(items, verdicts, strict=True):
        assert not isinstance(verdict, ApprovalPending)  # a call that waits ends decided
        _record(state, item, verdict)
    return state


async def hold_interruptions(gate: Gatekeeper, result: Paused) -> Held:
    """Put every pending tool approval of ``result`` to ``gate`` without waiting for people.

    For a run that ends while people decide and resumes later, in any
    process. Each call is held under its call id; what is decided already —
    allowed by the policy, refused, or decided by a person since an earlier
    hold — is recorded on the state as :func:`decide_interruptions` records
    it (an approval is released to the SDK then, once). The others stay
    pending for the people, their requests listed in ``Held.waiting``. A call
    that is not run is rejected with its message (as ``on_blocked="return"``).

    While it is not done, save ``held.state.to_string()``: it carries the
    decisions made so far (an approval is released to one state, once; the
    SDK runs what a state approves, so resume from one copy of it only).
    Later, restore it with ``RunState.from_string`` and hold again; once
    ``held.done``, resume::

        held = await hold_interruptions(gate, result)
        if not held.done:
            Path("run.json").write_text(held.state.to_string())
        ...  # in another process, after the people decided:
        state = await RunState.from_string(agent, Path("run.json").read_text())
        held = await hold_interruptions(gate, state)
        if held.done:
            result = await Runner.run(agent, held.state)
    """
    state, items, responses = _paused(result)
    await _check_recorded_approvals(gate, state, responses)
    waiting: dict[str, ApprovalPending] = {}
    if items:
        verdicts = await _decide_all(gate, items, responses, "return", wait=False)
        for item, verdict in zip(items, verdicts, strict=True):
            if isinstance(verdict, ApprovalPending):
                waiting[item.call_id or ""] = verdict  # held under it: a call id is there
            else:
                _record(state, item, verdict)
    return Held(state, waiting)


def _paused(result: Paused) -> tuple[RunState[Any], list[ToolApprovalItem], list[ModelResponse]]:
    """The run's state, its pending approvals, and the model responses (for the reasons)."""
    if isinstance(result, RunState):
        state = result
        items = state.get_interruptions()
        # A restored state keeps the model's responses only in this field; without
        # them a call held for the first time from a state has no reason.
        responses = list(getattr(state, "_model_responses", None) or [])
    else:
        state = result.to_state()
        items = list(result.interruptions)
        responses = list(result.raw_responses)
    # A restored state may carry decisions recorded before it was saved (a hold that
    # released an approval): those calls are decided, and holding them again would
    # find them released and reject them.
    items = [item for item in items if _decided(state, item) is None]
    unreadable = [item.qualified_name or item.name for item in items if item.arguments is None]
    if unreadable:
        raise ValueError(
            "decide_interruptions() decides calls with JSON arguments (function tools); "
            f"decide these with state.approve/reject: {unreadable}"
        )
    return state, items, responses


async def _decide_all(
    gate: Gatekeeper,
    items: Sequence[ToolApprovalItem],
    responses: Sequence[ModelResponse],
    on_blocked: OnBlocked,
    *,
    wait: bool,
) -> list[str | ApprovalPending | None]:
    """Each item's verdict, all held at once; if one raises, the waits still open are withdrawn."""
    tasks = [
        asyncio.ensure_future(_decide(gate, item, responses, on_blocked, wait)) for item in items
    ]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    finally:  # one failed, or we were cancelled: withdraw the requests still waiting
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in tasks:
        error = None if task.cancelled() else task.exception()
        if error is not None:
            raise error
    return [task.result() for task in tasks]


async def _check_recorded_approvals(
    gate: Gatekeeper, state: RunState[Any], responses: Sequence[ModelResponse]
) -> None:
    """Refuse a restored state that approves a call no person approved through the gate.

    A saved ``RunState`` is a string anyone who can write it can edit; the
    approvals it carries are believed only when the store shows the same call
    (same agent, tool and arguments, under its call id) approved and released
    to the SDK by this bridge. Anything else raises
    :class:`~gatekeeper.TamperingDetected` and nothing is run.
    """
    for item in state.get_interruptions():
        if _decided(state, item) is not True:
            continue  # undecided, or rejected: rejecting never runs anything
        name = item.qualified_name or item.name or "<no name>"
        try:
            verdict = await _decide(gate, item, responses, "raise", wait=False)
        except AlreadyRan as exc:
            earlier = gate.get(exc.request_id) if exc.request_id else None
            if earlier is not None and RELEASED in (earlier.outcome or ""):
                continue  # approved by a person, released to the SDK by this bridge
            verdict = exc.message
        except ToolCallBlocked as exc:
            verdict = exc.message
        if verdict is None:
            continue  # approved by a person and never released: released now
        why = verdict.message if isinstance(verdict, ApprovalPending) else verdict
        raise TamperingDetected(
            f"the restored run state approves tool call {name} ({item.call_id}), but no person "
            f"approved it through the gate ({why}); nothing was run",
            tool=name,
            call_id=item.call_id,
        )


def _decided(state: RunState[Any], item: ToolApprovalItem) -> bool | None:
    """Whether ``state`` already approves (True) or rejects (False) ``item``; None if neither."""
    context = getattr(state, "_context", None)  # the SDK keeps approvals on the run's context
    if context is None or item.call_id is None:
        return None
    decided: bool | None = context.is_tool_approved(item.tool_name or item.name, item.call_id)
    return decided


def _record(state: RunState[Any], item: ToolApprovalItem, verdict: str | None) -> None:
    if verdict is None:
        state.approve(item)
    else:
        state.reject(item, rejection_message=verdict)


def decide_interruptions_sync(
    gate: Gatekeeper,
    result: Paused,
    *,
    on_blocked: OnBlocked = "return",
) -> RunState[Any]:
    """:func:`decide_interruptions` for code without an event loop (``Runner.run_sync``).

    Like ``Runner.run_sync``, it runs on the thread's default event loop and
    leaves it open, so both keep using one loop. It can't be called from
    inside a running loop: there, ``await decide_interruptions(...)``.
    """
    return _on_default_loop(
        decide_interruptions(gate, result, on_blocked=on_blocked), "decide_interruptions"
    )


def hold_interruptions_sync(gate: Gatekeeper, result: Paused) -> Held:
    """:func:`hold_interruptions` for code without an event loop (see the ``_sync`` above)."""
    return _on_default_loop(hold_interruptions(gate, result), "hold_interruptions")


def _on_default_loop(coro: Coroutine[Any, Any, T], name: str) -> T:
    """Run ``coro`` on the thread's default event loop, as ``Runner.run_sync`` does."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        coro.close()
        raise RuntimeError(
            f"{name}_sync() was called inside a running event loop: await {name}(...) there instead"
        )
    with warnings.catch_warnings():  # the default-loop calls are deprecated on new Pythons
        warnings.simplefilter("ignore", DeprecationWarning)
        policy = asyncio.get_event_loop_policy()
        try:
            loop = policy.get_event_loop()
        except RuntimeError:
            loop = None
        if loop is None or loop.is_closed():
            loop = policy.new_event_loop()
            policy.set_event_loop(loop)
    return loop.run_until_complete(coro)


async def _decide(
    gate: Gatekeeper,
    item: ToolApprovalItem,
    responses: Sequence[ModelResponse],
    on_blocked: OnBlocked,
    wait: bool = True,
) -> str | ApprovalPending | None:
    """None to approve ``item``, the message to reject it with, or (not waiting) its request."""
    name = item.qualified_name or item.name or "<no name>"
    check = ArgumentCheck(name, _schema_of(item))
    try:
        given = check.parse(item.arguments)
    except InvalidToolCall as exc:
        return not_run(exc)
    # The policy and the approver see the call as it would run: the schema's defaults filled
    # in. The SDK runs it with the model's arguments, so only a call needing none can run.
    args = check.with_defaults(given)
    sent = _canonical(given)

    async def release(**approved: Any) -> str:
        try:
            runs = _canonical(approved)
        except (TypeError, ValueError) as exc:  # not JSON (an edit with bytes, say)
            raise InvalidToolCall(
                f"Invalid arguments for tool {name} as the approver edited them: "
                f"they are not JSON ({exc})",
                tool=name,
            ) from None
        if runs != sent:
            raise ArgumentsEdited(approved)
        return RELEASED

    tool = gate.tool(name, release)
    reason = words_before(responses, item.call_id)
    try:
        key = _key(item.call_id) if item.call_id else None  # without one: not resumable
        ran = (await tool.arun(args, reason=reason, key=key, wait=wait)).result
    except ApprovalPending as exc:
        return exc  # not waiting: the request stays for the people, the call undecided
    except ArgumentsEdited as exc:
        return (
            f"Tool call {name} was approved only with different arguments: "
            f"{json.dumps(exc.approved, ensure_ascii=False)}. The tool was not run; call it "
            "again with these arguments if they still serve the task."
        )
    except InvalidToolCall as exc:
        return not_run(exc)
    except ToolCallBlocked as exc:
        if on_blocked == "raise":
            raise
        return exc.model_message
    if isinstance(ran, Response):  # a person wrote the result: the model reads it as the output
        return str(ran)
    return None


class ArgumentsEdited(Exception):
    """An approver changed the arguments, which the SDK cannot run: what the audit records."""

    def __init__(self, approved: dict[str, Any]) -> None:
        super().__init__(
            "not run: the Agents SDK runs a call only with the model's arguments; "
            "the model was sent the approved ones (edited, or with defaults filled in)"
        )
        self.approved = approved


def _schema_of(item: ToolApprovalItem) -> Mapping[str, Any]:
    """The JSON schema the model was shown for ``item``'s tool ({} when not a function tool)."""
    tools = getattr(item.agent, "tools", None) or []
    found = [t for t in tools if isinstance(t, FunctionTool) and t.name == item.tool_name]
    if len(found) != 1:  # not a function tool, or namespaced tools sharing the name
        return {"type": "object"}
    return found[0].params_json_schema


def _canonical(args: Any) -> str:
    return json.dumps(args, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _key(call_id: str) -> str:
    """The gatekeeper call key of an SDK call id (a digest if it is longer than a key may be)."""
    if 0 < len(call_id) <= 256 and call_id.strip():
        return call_id
    return "sha256:" + hashlib.sha256(call_id.encode("utf-8", "replace")).hexdigest()
