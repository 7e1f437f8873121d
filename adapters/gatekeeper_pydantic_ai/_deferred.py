"""Pydantic AI's own approval requests, decided by people through gatekeeper.

A tool that needs approval (``requires_approval=True``, an
``ApprovalRequiredToolset``, ``raise ApprovalRequired``) ends the run with
:class:`~pydantic_ai.tools.DeferredToolRequests`, or is handed to a
``HandleDeferredToolCalls`` handler during the run. Each approval request
becomes a gatekeeper call whose "function" only hands the approved arguments
back; Pydantic AI then runs the tool itself, so gatekeeper's record of the
call ends at its release.

Pydantic AI validates the model's arguments again after the approval and
fills the tool's defaults then. So each call's arguments are first validated
with the tool's own validator: the policy and the approver see the complete
arguments (defaults included), and the approval hands exactly those back as
``override_args`` whenever they differ from what the model sent.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import Any

from pydantic import ValidationError
from pydantic_ai.messages import ModelMessage, ToolCallPart
from pydantic_ai.models.test import TestModel
from pydantic_ai.tools import (
    DeferredToolApprovalResult,
    DeferredToolRequests,
    DeferredToolResults,
    RunContext,
    ToolApproved,
    ToolDenied,
)
from pydantic_ai.toolsets import AbstractToolset, ToolsetTool
from pydantic_ai.usage import RunUsage
from pydantic_core import to_jsonable_python

from gatekeeper import Gatekeeper, InvalidToolCall, Response, ToolCallBlocked

from ._reason import OnBlocked, check_on_blocked, reason_for_call

__all__ = ["decide_deferred", "decide_deferred_sync", "deferred_handler"]

DeferredHandler = Callable[
    [RunContext[Any], DeferredToolRequests], Awaitable[DeferredToolResults | None]
]


async def decide_deferred(
    gate: Gatekeeper,
    requests: DeferredToolRequests,
    *,
    toolset: AbstractToolset[Any],
    deps: Any = None,
    messages: Sequence[ModelMessage] | None = None,
    on_blocked: OnBlocked = "return",
) -> DeferredToolResults:
    """Decide every approval in ``requests`` through ``gate``; the results for the next run.

    ``toolset`` is the agent's toolset holding the deferred tools (``deps``
    the run's dependencies, if its tools are prepared from them): each call's
    arguments are validated with its tool's validator first, so the policy and
    the approver see them with the tool's defaults filled in, as they will run.
    A call whose tool is not in ``toolset``, or whose arguments fail the
    validator, is denied.

    Each call is classified by the policy: an allowed call is approved at once,
    a held one waits for a person (all of them at the same time, so approvers
    see them together). An approval becomes ``ToolApproved()`` when the
    approved arguments are exactly the model's, otherwise
    ``ToolApproved(override_args=...)`` with the approved arguments (an
    approver's edit, or the defaults filled in); a denial, timeout or halt
    becomes ``ToolDenied(model_message)``, so the model reads who said no and
    why. ``on_blocked="raise"`` raises the
    first :class:`~gatekeeper.ToolCallBlocked` instead (calls still waiting
    are withdrawn).

    ``messages`` (``result.all_messages()``) supply each call's reason: the
    model's text and thinking beside it. Calls in ``requests.calls`` (external
    tools) are left alone.

    Example::

        result = await agent.run("Refund order A-1", output_type=[str, DeferredToolRequests])
        if isinstance(result.output, DeferredToolRequests):
            results = await decide_deferred(
                gate, result.output, toolset=tools, messages=result.all_messages()
            )
            result = await agent.run(
                message_history=result.all_messages(), deferred_tool_results=results
            )
    """
    mode = check_on_blocked(on_blocked)
    # Outside a run there is no RunContext: this one only lists the tools (a
    # placeholder model; nothing is sent to it).
    ctx = RunContext(deps=deps, model=TestModel(), usage=RunUsage(), messages=list(messages or []))
    tools = await toolset.get_tools(ctx) if requests.approvals else {}
    return await _decide_all(gate, requests, tools, ctx, messages, mode)


async def _decide_all(
    gate: Gatekeeper,
    requests: DeferredToolRequests,
    tools: Mapping[str, ToolsetTool[Any]],
    ctx: RunContext[Any],
    messages: Sequence[ModelMessage] | None,
    mode: OnBlocked,
) -> DeferredToolResults:
    decisions = await _all(
        [
            _decide(
                gate,
                call,
                tools.get(call.tool_name),
                ctx,
                reason_for_call(messages, call.tool_call_id),
                mode,
            )
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
    toolset: AbstractToolset[Any],
    deps: Any = None,
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
            decide_deferred(
                gate,
                requests,
                toolset=toolset,
                deps=deps,
                messages=messages,
                on_blocked=on_blocked,
            )
        )
    raise RuntimeError(
        "decide_deferred_sync() was called inside a running event loop: "
        "await decide_deferred(...) there instead"
    )


def deferred_handler(gate: Gatekeeper, *, on_blocked: OnBlocked = "return") -> DeferredHandler:
    """A ``HandleDeferredToolCalls`` handler that decides approvals through ``gate`` mid-run.

    The run waits while people decide, then goes on: approved calls run (with
    the approved arguments, which include the tool's defaults: the run's own
    tools validate them before they are held), denied ones give the model the denial. Requests
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
        manager = ctx.tool_manager
        tools = (manager.tools if manager is not None else None) or {}
        return await _decide_all(gate, requests, tools, ctx, ctx.messages, mode)

    return handle


async def _decide(
    gate: Gatekeeper,
    call: ToolCallPart,
    tool: ToolsetTool[Any] | None,
    ctx: RunContext[Any],
    reason: str | None,
    on_blocked: OnBlocked,
) -> DeferredToolApprovalResult:
    name = call.tool_name
    try:
        raw = call.args_as_dict(raise_if_invalid=True)
    except (ValueError, AssertionError):
        raw = None

    async def release(**approved: Any) -> dict[str, Any]:
        return approved

    try:
        if raw is None:
            raise InvalidToolCall(f"{name}: the arguments are not a JSON object", tool=name)
        # Pydantic AI fills the tool's defaults when it validates the approved
        # call: fill them now, so the policy and the approver see what will run.
        args = _complete_args(name, raw, tool, ctx)
        approved = await gate.tool(name, release).acall(args, reason=reason)
    except InvalidToolCall as exc:
        if on_blocked == "raise":
            raise
        return ToolDenied(f"{exc.message}. The tool was not run.")
    except ToolCallBlocked as exc:
        if on_blocked == "raise":
            raise
        return ToolDenied(exc.model_message)
    if isinstance(approved, Response):  # a person wrote the result instead: the model reads it
        return ToolDenied(str(approved))
    if _canonical(approved) == _canonical(raw):
        return ToolApproved()
    return ToolApproved(override_args=dict(approved))


def _complete_args(
    name: str, raw: dict[str, Any], tool: ToolsetTool[Any] | None, ctx: RunContext[Any]
) -> dict[str, Any]:
    """``raw`` validated by the tool's own validator, defaults filled, in JSON form."""
    if tool is None:
        raise InvalidToolCall(
            f"{name}: no such tool in the toolset, so its arguments can't be checked", tool=name
        )
    try:
        validated = tool.args_validator.validate_python(raw, context=ctx.validation_context)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in error["loc"])
        detail = f"{where}: {error['msg']}" if where else str(error["msg"])
        raise InvalidToolCall(f"{name}: invalid arguments ({detail})", tool=name) from exc
    try:
        complete = to_jsonable_python(validated)
    except ValueError as exc:
        raise InvalidToolCall(f"{name}: the arguments have no JSON form", tool=name) from exc
    if not isinstance(complete, dict):
        raise InvalidToolCall(f"{name}: the arguments are not a JSON object", tool=name)
    return complete


def _canonical(args: Mapping[str, Any]) -> str:
    return json.dumps(args, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


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
