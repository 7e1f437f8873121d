"""OpenAI Agents SDK function tools put through a gate.

:func:`gate_tool` returns a copy of a ``FunctionTool`` that the model sees
exactly as before (name, description, JSON schema, strictness) but whose
``on_invoke_tool`` first checks the model's arguments against that schema,
then runs the call through :meth:`Gatekeeper.tool <gatekeeper.Gatekeeper.tool>`:
classified by the policy, held for a person if it must be, and run by the
original tool with exactly the approved arguments. ``Runner.run`` is used as
it is.
"""

# No ``from __future__ import annotations`` here: the SDK reads the annotations
# of ``on_invoke_tool`` on every call, and real ones cost it a third of strings.
import copy
import json
from collections.abc import Iterable
from typing import Any, Literal

from agents import FunctionTool
from agents.exceptions import AgentsException
from agents.tool import invoke_function_tool
from agents.tool_context import ToolContext

from gatekeeper import (
    Gatekeeper,
    GatekeeperError,
    InvalidToolCall,
    Risk,
    ToolCallBlocked,
)

from ._agents_args import ArgumentCheck, not_run
from ._agents_reasons import CallReasons

__all__ = ["OnBlocked", "gate_tool", "gate_tools"]

OnBlocked = Literal["return", "raise"]


def gate_tool(
    gate: Gatekeeper,
    tool: FunctionTool,
    *,
    on_blocked: OnBlocked = "return",
    scopes: Iterable[str] = (),
    irreversible: bool = False,
    risk: Risk | str | None = None,
    reasons: CallReasons | None = None,
) -> FunctionTool:
    """A copy of ``tool`` whose every call goes through ``gate``.

    The model sees the same tool. When the model calls it:

    - arguments that are not a JSON object matching the tool's schema come
      back to the model as a tool result naming the problem; nothing runs and
      nobody is asked;
    - an allowed call runs at once; a held call waits for a person's decision
      (any channel, any process sharing the store) and then runs with exactly
      the approved, possibly edited, arguments;
    - a denied, timed-out, cancelled or halted call comes back to the model as
      a tool result (``exc.model_message``), or, with ``on_blocked="raise"``,
      ``Runner.run`` raises the :class:`~gatekeeper.ToolCallBlocked` itself.

    ``scopes``, ``irreversible`` and ``risk`` describe the tool to the policy
    (see :meth:`Gatekeeper.tool <gatekeeper.Gatekeeper.tool>`). ``reasons``
    (the same :class:`CallReasons` set as the agent's ``hooks``) passes the
    model's words before each call to the approver as the call's reason.

    The tool's own ``timeout_seconds`` bounds its run, not the wait for a
    person. Example::

        agent = Agent(name="billing", tools=[gate_tool(gate, refund, irreversible=True)])
        result = await Runner.run(agent, "refund order A-1")
    """
    if not isinstance(tool, FunctionTool):
        raise TypeError(f"gate_tool() takes a FunctionTool, not {type(tool).__name__}")
    if on_blocked not in ("return", "raise"):
        raise ValueError(f'on_blocked must be "return" or "raise", not {on_blocked!r}')
    if isinstance(getattr(tool.on_invoke_tool, "__self__", None), _GatedInvocation):
        raise ValueError(f"tool {tool.name} is already gated")
    if tool.needs_approval:  # the SDK would stop for its own approval, then gatekeeper asks again
        raise ValueError(
            f"tool {tool.name} has needs_approval set: use gate_tool() or the SDK's approvals "
            "(decide_interruptions()), not both"
        )
    gated = copy.copy(tool)  # every setting stays: guardrails, is_enabled, error handling...
    gated.on_invoke_tool = _GatedInvocation(
        gate,
        tool,
        on_blocked=on_blocked,
        scopes=tuple(scopes),
        irreversible=irreversible,
        risk=risk,
        reasons=reasons,
    ).invoke
    # The SDK would time the whole invocation, wait for a person included; the
    # original timeout is applied to the tool's own run instead (invoke_function_tool).
    gated.timeout_seconds = None
    return gated


def gate_tools(
    gate: Gatekeeper,
    tools: Iterable[FunctionTool],
    *,
    on_blocked: OnBlocked = "return",
    reasons: CallReasons | None = None,
) -> list[FunctionTool]:
    """:func:`gate_tool` for each tool, with default scopes, reversibility and risk.

    Give the policy's rules the tool names; gate a tool on its own with
    :func:`gate_tool` where it needs ``scopes``, ``irreversible`` or ``risk``.
    """
    return [gate_tool(gate, t, on_blocked=on_blocked, reasons=reasons) for t in tools]


class _GatedInvocation:
    """What a gated tool does when called: its ``on_invoke_tool`` is :meth:`invoke`."""

    def __init__(
        self,
        gate: Gatekeeper,
        tool: FunctionTool,
        *,
        on_blocked: OnBlocked,
        scopes: tuple[str, ...],
        irreversible: bool,
        risk: Risk | str | None,
        reasons: CallReasons | None,
    ) -> None:
        self.gate = gate
        self.tool = tool
        self.on_blocked = on_blocked
        self.scopes = scopes
        self.irreversible = irreversible
        self.risk = risk
        self.reasons = reasons
        self.check = ArgumentCheck(tool.name, tool.params_json_schema)
        self.direct = _invoked_as_is(tool)

    async def invoke(self, ctx: ToolContext[Any], args_json: str) -> Any:
        """Check the arguments, put the call through the gate, run it if released."""
        reason = self.reasons.pop(ctx.tool_call_id) if self.reasons is not None else None
        try:
            given = self.check.parse(args_json)
            # The gate, the policy and the approver see the arguments the tool will run with:
            # the schema's defaults filled in (a non-strict tool's model may leave them out).
            args = self.check.with_defaults(given)
            asked = _canonical(args)
            completed_json = (
                args_json if asked == _canonical(given) else _json(self.tool.name, args, "")
            )
        except InvalidToolCall as exc:
            return not_run(exc)

        async def release(**approved: Any) -> Any:
            run_json = completed_json
            if _canonical_or_none(approved) != asked:  # an approver edited them: check them
                self.check.check(approved, edited=True)
                run_json = _json(self.tool.name, approved, " as the approver edited them")
            if run_json != args_json:  # the tool runs with, and its context says, these
                ctx.tool_arguments = run_json
            if self.direct:
                return await self.tool.on_invoke_tool(ctx, run_json)
            return await invoke_function_tool(
                function_tool=self.tool, context=ctx, arguments=run_json
            )

        guarded = self.gate.tool(
            self.tool.name,
            release,
            scopes=self.scopes,
            irreversible=self.irreversible,
            risk=self.risk,
        )
        try:
            ran = await guarded.arun(args, reason=reason)
        except InvalidToolCall as exc:  # too large, not JSON-safe, or edited badly
            return not_run(exc)
        except ToolCallBlocked as exc:
            if self.on_blocked == "raise":
                raise through_sdk(exc) from None
            return exc.model_message
        except GatekeeperError as exc:  # the store is down: the run stops, saying why
            raise through_sdk(exc) from None
        if ran.note is not None and isinstance(ran.result, str):
            return f"{ran.result}\n\n{ran.note}"  # what the approvers did, for the model
        return ran.result


def _invoked_as_is(tool: FunctionTool) -> bool:
    """Whether the SDK would call ``tool.on_invoke_tool(ctx, args_json)`` with ``ctx`` as it is.

    It does unless the tool has a timeout or its invoker asks for a plain
    ``RunContextWrapper``; then the release goes through ``invoke_function_tool``,
    which applies both. Calling directly saves the SDK's per-call signature
    inspection a second time.
    """
    if tool.timeout_seconds is not None:
        return False
    try:
        from agents.tool import _get_function_tool_invoke_context

        probe: ToolContext[None] = ToolContext(
            context=None, tool_name=tool.name, tool_call_id="probe", tool_arguments="{}"
        )
        return _get_function_tool_invoke_context(tool, probe) is probe
    except Exception:  # another SDK version: take the public path every time
        return False


def _canonical(args: Any) -> str:
    return json.dumps(args, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _canonical_or_none(args: Any) -> str | None:
    try:
        return _canonical(args)
    except (TypeError, ValueError):  # not JSON (an edit with bytes, say): unlike any JSON
        return None


def _json(tool: str, args: Any, whose: str) -> str:
    """``args`` as the JSON the tool reads; InvalidToolCall (a tool result) if they aren't JSON."""
    try:
        return json.dumps(args, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidToolCall(
            f"Invalid arguments for tool {tool}{whose}: they are not JSON ({exc})",
            tool=tool,
        ) from None


_PASSING: dict[type[GatekeeperError], type[GatekeeperError]] = {}


def through_sdk(exc: GatekeeperError) -> GatekeeperError:
    """``exc`` as an error the Agents SDK lets out of ``Runner.run`` unchanged.

    The SDK wraps any exception from a tool in its own ``UserError``, except
    its own ``AgentsException``. The copy is both (an ``ApprovalDenied`` stays
    an ``ApprovalDenied``, with the same name, message and fields), so the
    caller catches gatekeeper's errors by their own names.
    """
    if isinstance(exc, AgentsException):
        return exc
    cls = type(exc)
    passing = _PASSING.get(cls)
    if passing is None:
        passing = type(
            cls.__name__,
            (cls, AgentsException),
            {
                "__module__": cls.__module__,
                "__qualname__": cls.__qualname__,
                "__doc__": cls.__doc__,
            },
        )
        _PASSING[cls] = passing
    copied = passing.__new__(passing, *exc.args)
    copied.__dict__.update(exc.__dict__)
    copied.__dict__.setdefault("run_data", None)  # AgentsException's field; the SDK fills it
    return copied.with_traceback(exc.__traceback__)
