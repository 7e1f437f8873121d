"""Pydantic AI's own approval requests, decided by people through gatekeeper.

A tool that needs approval (``requires_approval=True``, an
``ApprovalRequiredToolset``, ``raise ApprovalRequired``) ends the run with
:class:`~pydantic_ai.tools.DeferredToolRequests`, or is handed to a
``HandleDeferredToolCalls`` handler during the run. Each approval request
becomes a gatekeeper call whose "function" only hands the approved arguments
back; Pydantic AI then runs the tool itself, so gatekeeper's record of the
call ends at its release.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

from pydantic_ai.messages import ModelMessage, ToolCallPart
from pydantic_ai.tools import (
    DeferredToolApprovalResult,
    DeferredToolRequests,
    DeferredToolResults,
    RunContext,
    ToolApproved,
    ToolDenied,
)

from gatekeeper import Gatekeeper, InvalidToolCall, ToolCallBlocked

from ._reason import OnBlocked, check_on_blocked, reason_for_call

__all__ = ["decide_deferred", "decide_deferred_sync", "deferred_handler"]

DeferredHandler = Callable[
    [RunContext[Any], DeferredToolRequests], Awaitable[DeferredToolResults | None]
]


async def decide_deferred(
    gate: Gatekeeper,
    requests: DeferredToolRequests,
    *,
    messages: Sequence[ModelMessage] | None = None,
    on_blocked: OnBlocked = "return",
) -> DeferredToolResults:
    """Decide every approval in ``requests`` through ``gate``; the results for the next run.

    Each call is classified by the policy: an allowed call is approved at once,
    a held one waits for a person (all of them at the same time, so approvers
    see them together). An approval becomes ``ToolApproved()``, or
    ``ToolApproved(override_args=...)`` when the approver edited the
    arguments; a denial, timeout or halt becomes ``ToolDenied(model_message)``,
    so the model reads who said no and why. ``on_blocked="raise"`` raises the
    first :class:`~gatekeeper.ToolCallBlocked` instead (calls still waiting
    are withdrawn).

    ``messages`` (``result.all_messages()``) supply each call's reason: the
    model's text and thinking beside it. Calls in ``requests.calls`` (external
    tools) are left alone.

    Example::

        result = await agent.run("Refund order A-1", output_type=[str, DeferredToolRequests])
        if isinstance(result.output, DeferredToolRequests):
            results = await decide_deferred(gate, result.output, messages=result.all_messages())
            result = await agent.run(
                message_history=result.all_messages(), deferred_tool_results=results
            )
    """
    mode = check_on_blocked(on_blocked)
    decisions = await _all(
        [
            _decide(gate, call, reason_for_call(messages, call.tool_call_id), mode)
            for call in requests.approvals
        ]
    )
    return DeferredToolResults(
        approvals={
            call.tool_call_id: decision
            for call, decision in zip(requests.approvals, decisions, strict=True)
        }
    )


def decide_deferred_sync(
    gate: Gatekeeper,
    requests: DeferredToolRequests,
    *,
    messages: Sequence[ModelMessage] | None = None,
    on_blocked: OnBlocked = "return",
) -> DeferredToolResults:
    """:func:`decide_deferred` for code without an event loop (blocks until all are decided).

    It runs its own event loop, so it can't be called from inside one: there,
    ``await decide_deferred(...)``.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(
            decide_deferred(gate, requests, messages=messages, on_blocked=on_blocked)
        )
    raise RuntimeError(
        "decide_deferred_sync() was called inside a running event loop: "
        "await decide_deferred(...) there instead"
    )


def deferred_handler(gate: Gatekeeper, *, on_blocked: OnBlocked = "return") -> DeferredHandler:
    """A ``HandleDeferredToolCalls`` handler that decides approvals through ``gate`` mid-run.

    The run waits while people decide, then goes on: approved calls run (with
    the approved arguments), denied ones give the model the denial. Requests
    for external tools are declined, so they still end the run as
    ``DeferredToolRequests``.

    Example::

        agent = Agent(
            model,
            toolsets=[tools.approval_required()],
            capabilities=[HandleDeferredToolCalls(handler=deferred_handler(gate))],
        )
    """
    mode = check_on_blocked(on_blocked)

    async def handle(
        ctx: RunContext[Any], requests: DeferredToolRequests
    ) -> DeferredToolResults | None:
        if not requests.approvals:
            return None
        return await decide_deferred(gate, requests, messages=ctx.messages, on_blocked=mode)

    return handle


async def _decide(
    gate: Gatekeeper, call: ToolCallPart, reason: str | None, on_blocked: OnBlocked
) -> DeferredToolApprovalResult:
    name = call.tool_name
    try:
        args = call.args_as_dict(raise_if_invalid=True)
    except (ValueError, AssertionError):
        args = None

    async def release(**approved: Any) -> dict[str, Any]:
        return approved

    try:
        if args is None:
            raise InvalidToolCall(f"{name}: the arguments are not a JSON object", tool=name)
        approved = await gate.tool(name, release).acall(args, reason=reason)
    except ToolCallBlocked as exc:
        if on_blocked == "raise":
            raise
        return ToolDenied(exc.model_message)
    except InvalidToolCall as exc:
        if on_blocked == "raise":
            raise
        return ToolDenied(f"{exc.message}. The tool was not run.")
    if approved == args:
        return ToolApproved()
    return ToolApproved(override_args=dict(approved))


async def _all(coros: Sequence[Coroutine[Any, Any, DeferredToolApprovalResult]]) -> list[Any]:
    """Run ``coros`` together; if one raises, withdraw the others and raise it."""
    tasks = [asyncio.ensure_future(coro) for coro in coros]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()  # a held call that is cancelled withdraws its request
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
