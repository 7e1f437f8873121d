"""GatekeeperToolset: every call of a toolset through the gate, during the run."""

from __future__ import annotations

import inspect
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from pydantic_ai.exceptions import ApprovalRequired, ModelRetry, ToolFailed
from pydantic_ai.messages import ToolReturn
from pydantic_ai.tools import AgentDepsT, RunContext, ToolDenied
from pydantic_ai.toolsets import (
    AbstractToolset,
    ApprovalRequiredToolset,
    CombinedToolset,
    FunctionToolset,
    ToolsetTool,
    WrapperToolset,
)
from pydantic_core import to_jsonable_python

from gatekeeper import (
    ApprovalPending,
    Gatekeeper,
    InvalidToolCall,
    ToolCallBlocked,
    TransitionRefused,
)

from ._reason import OnBlocked, check_on_blocked, reason_for_call
from ._resume import call_key_for, waiting_metadata

__all__ = ["GatekeeperToolset"]


@dataclass(init=False)
class GatekeeperToolset(WrapperToolset[AgentDepsT]):
    """A toolset whose every call goes through ``gate`` before the wrapped toolset runs it.

    Pydantic AI lists the wrapped toolset's tools unchanged and validates the
    model's arguments against their schemas first: a call with bad arguments
    gets Pydantic AI's own retry message and never reaches the gate. A valid
    call is classified by the policy; an allowed one runs at once, a held one
    waits (without blocking the event loop) for a person to decide it, and an
    approved one runs with exactly the approved, possibly edited, arguments.
    The model's text and thinking beside the call are the call's reason.

    A call that is not run (denied, timed out, halted) comes back to the model
    as a denied tool result carrying ``exc.model_message``, the same
    ``ToolReturnPart(outcome="denied")`` Pydantic AI records for a
    :class:`~pydantic_ai.tools.ToolDenied`; the run goes on.
    ``on_blocked="raise"`` raises the :class:`~gatekeeper.ToolCallBlocked`
    out of the run instead. Arguments gatekeeper can't record (too large, no
    JSON form) are a failed tool result either way.

    ``resumable=True`` ends the run instead of waiting while a held call is
    pending: the call is held under its tool call id and deferred
    (``ApprovalRequired``), so the run ends with
    :class:`~pydantic_ai.tools.DeferredToolRequests` whose ``metadata`` names
    each call's gatekeeper request (and a ``DeferredToolRequestsEvent`` shows
    it in the event stream). The agent's ``output_type`` must include
    ``DeferredToolRequests``. Carry the messages and the requests to any
    process and resume with :func:`~gatekeeper_pydantic_ai.deferred_results`:
    each call re-attaches to its request and runs once if a person approved
    it; an approval in the ``DeferredToolResults`` is never taken as one.

    Don't wrap tools that also need Pydantic AI's approval
    (``ApprovalRequiredToolset``, ``requires_approval=True``): each call would
    be decided twice, so the constructor refuses them (``ValueError``). A
    ``DynamicToolset`` is only built during the run, so it can't be checked.

    Example::

        tools = FunctionToolset([lookup_order, refund])
        agent = Agent(model, toolsets=[GatekeeperToolset(gate, tools)])
        with gate.session(agent="billing-bot"):
            result = await agent.run("Refund order A-1")
    """

    gate: Gatekeeper
    on_blocked: OnBlocked
    resumable: bool

    def __init__(
        self,
        gate: Gatekeeper,
        wrapped: AbstractToolset[AgentDepsT],
        *,
        on_blocked: OnBlocked = "return",
        resumable: bool = False,
    ) -> None:
        # Keyword names match the fields: WrapperToolset copies itself with
        # dataclasses.replace() when the wrapped toolset changes per run.
        _refuse_approval_required(wrapped)
        self.wrapped = wrapped
        self.gate = gate
        self.on_blocked = check_on_blocked(on_blocked)
        self.resumable = resumable

    async def call_tool(
        self,
        name: str,
        tool_args: dict[str, Any],
        ctx: RunContext[AgentDepsT],
        tool: ToolsetTool[AgentDepsT],
    ) -> Any:
        wrapped = self.wrapped

        async def run(**approved: Any) -> Any:
            # The tool runs with the approved arguments. Unedited (the same
            # JSON as the call), they are the values Pydantic AI validated; an
            # approver's edit arrives as JSON and is validated the same way
            # before the tool sees it.
            args = (
                dict(approved)
                if _canonical(approved) == _canonical(tool_args)
                else await _validate_edit(name, approved, ctx, tool)
            )
            return await wrapped.call_tool(name, args, ctx, tool)

        reason = reason_for_call(ctx.messages, ctx.tool_call_id)
        guarded = self.gate.tool(name, run)
        try:
            if self.resumable and ctx.tool_call_id:
                # Whatever the DeferredToolResults said (ctx.tool_call_approved), the
                # decision is the one the store holds for this call's request.
                ran = await guarded.arun(
                    tool_args, reason=reason, key=call_key_for(ctx.tool_call_id), wait=False
                )
            else:
                ran = await guarded.arun(tool_args, reason=reason)
        except ApprovalPending as exc:  # resumable: the run ends, the request stays
            raise ApprovalRequired(metadata=waiting_metadata(exc)) from None
        except TransitionRefused as exc:  # resumed with other arguments than the held call's
            raise ToolFailed(f"{exc.message}. The tool was not run.") from exc
        except InvalidToolCall as exc:
            # Not a decision: a failed tool result, whatever on_blocked says.
            raise ToolFailed(f"{exc.message}. The tool was not run.") from exc
        except ToolCallBlocked as exc:
            if self.on_blocked == "raise":
                raise
            return ToolDenied(exc.model_message)
        if ran.note is not None and not isinstance(ran.result, ToolReturn):
            # What the approvers did goes to the model beside the tool's own result.
            return ToolReturn(return_value=ran.result, content=ran.note)
        return ran.result


def _refuse_approval_required(toolset: AbstractToolset[Any]) -> None:
    """ValueError if Pydantic AI would also ask for approval of a call in ``toolset``."""
    pending: list[AbstractToolset[Any]] = [toolset]
    while pending:
        current = pending.pop()
        needs_approval = isinstance(current, ApprovalRequiredToolset) or (
            isinstance(current, FunctionToolset)
            and any(tool.requires_approval for tool in current.tools.values())
        )
        if needs_approval:
            raise ValueError(
                "GatekeeperToolset wraps tools that also need Pydantic AI's approval "
                f"({type(current).__name__}): every call would be decided twice. "
                "Use one or the other: GatekeeperToolset around tools without "
                "approval_required()/requires_approval=True, or deferred_handler / "
                "decide_deferred for Pydantic AI's approval requests."
            )
        if isinstance(current, WrapperToolset):
            pending.append(current.wrapped)
        elif isinstance(current, CombinedToolset):
            pending.extend(current.toolsets)


def _canonical(args: Mapping[str, Any]) -> str:
    """One JSON text per set of arguments, to tell an edit from the original."""
    return json.dumps(
        to_jsonable_python(args, fallback=repr),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )


async def _validate_edit(
    name: str, approved: dict[str, Any], ctx: RunContext[Any], tool: ToolsetTool[Any]
) -> dict[str, Any]:
    """Edited arguments, checked as Pydantic AI checks the model's (schema, then validator)."""
    try:
        args: dict[str, Any] = tool.args_validator.validate_python(
            approved, context=ctx.validation_context
        )
        if tool.args_validator_func is not None:
            checked = tool.args_validator_func(ctx, **args)
            if inspect.isawaitable(checked):
                await checked
    except (ValidationError, ModelRetry, ToolFailed) as exc:
        detail = _first_error(exc)
        raise ToolFailed(
            f"The approver's edited arguments for {name} are invalid: {detail}. "
            "The tool was not run."
        ) from exc
    return args


def _first_error(exc: ValidationError | ModelRetry | ToolFailed) -> str:
    if isinstance(exc, ValidationError):
        error = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in error["loc"])
        return f"{where}: {error['msg']}" if where else str(error["msg"])
    return exc.message
