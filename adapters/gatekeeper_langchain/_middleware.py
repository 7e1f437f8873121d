"""``create_agent`` middleware that gates every tool call of the agent."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, TypedDict

from langchain.agents.middleware import AgentMiddleware, ToolCallRequest
from langchain_core.messages import ToolMessage
from langchain_core.tools import BaseTool
from langgraph.errors import GraphInterrupt
from langgraph.types import Command

from gatekeeper import (
    Gatekeeper,
    GuardedTool,
    InvalidToolCall,
    Ran,
    Response,
    Risk,
    ToolCallBlocked,
)

from ._messages import reason_for, refusal, with_note
from ._resume import (
    StackedApprovals,
    arun_resumable,
    in_graph_run,
    is_hitl_interrupt,
    refuse_answered_hitl,
    refuse_stacked_hitl,
    run_resumable,
    stream_waiting,
)
from ._schema import check_args, gated_function, hidden_fields, invalid_message, with_defaults
from ._tools import GatedTool, OnBlocked

__all__ = ["GatekeeperMiddleware", "ToolOptions"]

ToolResult = ToolMessage | Command[Any]


class ToolOptions(TypedDict, total=False):
    """What a tool declares to the policy (as for ``gate.tool``): per tool name."""

    scopes: Iterable[str]
    irreversible: bool
    risk: Risk | str


class GatekeeperMiddleware(AgentMiddleware):
    """Gate every tool call a ``create_agent`` agent makes, without wrapping its tools.

    The reason shown to the approver is what the model wrote before the
    call. An allowed call runs at once; a held one waits for the decision
    and then runs with exactly the approved (possibly edited) arguments; a
    blocked one becomes a ``ToolMessage(status="error")`` the model reads
    (``on_blocked="raise"`` raises the :class:`~gatekeeper.ToolCallBlocked`
    instead). Arguments that don't fit the tool's schema are sent back to
    the model before any person is asked; a tool name the agent doesn't
    have is refused and audited.

    ``tools`` maps tool names to what they declare to the policy
    (:class:`ToolOptions`); tools not named are still gated, with no scopes,
    not irreversible and no declared risk.

    ``resumable=True`` ends the run instead of waiting while a held call is
    pending: the call is held under its tool call id and the run stops at a
    LangGraph ``interrupt()`` whose value names the gatekeeper request (see
    :func:`~gatekeeper_langchain.resume_command`). The agent needs a
    checkpointer; resumed later, in this process or another, the call
    re-attaches to its request and runs once if a person approved it. The
    resume value is ignored: the decision is the one in gatekeeper's store.

    LangChain's ``HumanInTheLoopMiddleware`` in the same agent would ask the
    person a second time about each call; a call reaching this middleware
    after it paused the agent raises ``ValueError`` (decide its pauses with
    :func:`~gatekeeper_langchain.decide_hitl` instead, or use this middleware
    alone).

    Example::

        agent = create_agent(
            model,
            [lookup_order, refund],
            middleware=[GatekeeperMiddleware(gate, tools={"refund": {"irreversible": True}})],
        )
    """

    def __init__(
        self,
        gate: Gatekeeper,
        *,
        on_blocked: OnBlocked = "return",
        tools: Mapping[str, ToolOptions] | None = None,
        resumable: bool = False,
    ) -> None:
        if on_blocked not in ("return", "raise"):
            raise ValueError(f"on_blocked must be 'return' or 'raise', not {on_blocked!r}")
        self.gate = gate
        self.on_blocked: OnBlocked = on_blocked
        self.resumable = resumable
        # Not ``self.tools``: create_agent reads that attribute as tools the middleware adds.
        self.tool_options: dict[str, ToolOptions] = {
            name: _checked(name, options) for name, options in (tools or {}).items()
        }
        # id(tool) -> (tool, its injected arguments): worked out once per tool, not per call.
        self._hidden: dict[int, tuple[BaseTool, frozenset[str]]] = {}

    def wrap_tool_call(
        self,
        request: ToolCallRequest,
        handler: Callable[[ToolCallRequest], ToolResult],
    ) -> ToolResult:
        """Gate one tool call of the agent (the sync agent: ``invoke``/``stream``)."""
        ready = self._ready(request)
        if isinstance(ready, _Unknown):
            refused = self.gate.refuse_unknown_tool(ready.name, ready.args, reason=ready.reason)
            return self._unknown(request, refused)
        if not isinstance(ready, _Ready):
            return ready
        if ready.passthrough:
            return handler(request)

        def release(**approved: Any) -> ToolResult:
            try:
                return handler(_with_args(request, approved))
            except GraphInterrupt as exc:
                if is_hitl_interrupt(exc):  # HITL pauses inside: the person is asked again
                    raise StackedApprovals() from None
                raise

        guarded = self.gate.tool(ready.name, release, **ready.options)
        try:
            ran = self._run(guarded, ready, request)
        except InvalidToolCall as exc:
            return _refuse(request, f"{exc.message}. The tool was not run.")
        except ToolCallBlocked as exc:
            return self._blocked(exc, request)
        if isinstance(ran.result, Response):
            return _answered(request, ran.result)
        result: ToolResult = with_note(ran.result, ran.note)
        return result

    async def awrap_tool_call(
        self,
        request: ToolCallRequest,
        handler: Callable[[ToolCallRequest], Awaitable[ToolResult]],
    ) -> ToolResult:
        """Gate one tool call of the agent (the async agent: ``ainvoke``/``astream``)."""
        ready = self._ready(request)
        if isinstance(ready, _Unknown):
            refused = await self.gate.arefuse_unknown_tool(
                ready.name, ready.args, reason=ready.reason
            )
            return self._unknown(request, refused)
        if not isinstance(ready, _Ready):
            return ready
        if ready.passthrough:
            return await handler(request)

        async def release(**approved: Any) -> ToolResult:
            try:
                return await handler(_with_args(request, approved))
            except GraphInterrupt as exc:
                if is_hitl_interrupt(exc):
                    raise StackedApprovals() from None
                raise

        guarded = self.gate.tool(ready.name, release, **ready.options)
        try:
            ran = await self._arun(guarded, ready, request)
        except InvalidToolCall as exc:
            return _refuse(request, f"{exc.message}. The tool was not run.")
        except ToolCallBlocked as exc:
            return self._blocked(exc, request)
        if isinstance(ran.result, Response):
            return _answered(request, ran.result)
        result: ToolResult = with_note(ran.result, ran.note)
        return result

    def _run(self, guarded: GuardedTool, ready: _Ready, request: ToolCallRequest) -> Ran:
        """The gated call: waiting for a person, or (resumable) interrupting the run meanwhile."""
        call_id = request.tool_call["id"]
        if self.resumable and call_id and in_graph_run():
            return run_resumable(
                guarded, ready.args, reason=ready.reason, tool_call_id=call_id, name=ready.name
            )
        with stream_waiting(tool_call_id=call_id, name=ready.name):
            return guarded.run(ready.args, reason=ready.reason)

    async def _arun(self, guarded: GuardedTool, ready: _Ready, request: ToolCallRequest) -> Ran:
        call_id = request.tool_call["id"]
        if self.resumable and call_id and in_graph_run():
            return await arun_resumable(
                guarded, ready.args, reason=ready.reason, tool_call_id=call_id, name=ready.name
            )
        with stream_waiting(tool_call_id=call_id, name=ready.name):
            return await guarded.arun(ready.args, reason=ready.reason)

    def _ready(self, request: ToolCallRequest) -> _Ready | _Unknown | ToolMessage:
        """The call, checked and completed: or why it can't go to the gate.

        The arguments that go to the gate have the tool's defaults filled in
        (as the tool would fill them), so the policy and the approver see what
        runs, and the tool is then handed all of them.
        """
        refuse_stacked_hitl(request.state)
        refuse_answered_hitl(getattr(request.runtime, "config", None))
        call = request.tool_call
        name, call_id = call["name"], call["id"]
        raw = call.get("args")
        args: dict[str, Any] = dict(raw) if isinstance(raw, Mapping) else {}
        tool = request.tool
        if isinstance(tool, GatedTool) or (tool is not None and gated_function(tool)):
            # it asks its own gate (a gated tool, or @tool over @gate.guard): don't ask twice
            return _Ready(name, args, None, {}, passthrough=True)
        reason = reason_for(request.state, call_id)
        if tool is None:
            return _Unknown(name, args, reason)
        # ToolNode overwrites injected arguments after this point; the model can't set them.
        hidden = self._hidden_fields(tool)
        args = {k: v for k, v in args.items() if k not in hidden}
        problem = check_args(tool, args)
        if problem is not None:
            return _refuse(request, invalid_message(name, problem))
        args = with_defaults(tool, args)
        return _Ready(name, args, reason, self.tool_options.get(name, {}))

    def _unknown(self, request: ToolCallRequest, refused: ToolCallBlocked) -> ToolMessage:
        """What the model reads for a call to a tool the agent doesn't have (audited already)."""
        if self.on_blocked == "raise":
            raise refused
        known = sorted(t.name for t in getattr(request.runtime, "tools", None) or ())
        offer = f" The tools you have are: {', '.join(known)}." if known else ""
        return _refuse(request, refused.model_message + offer)

    def _hidden_fields(self, tool: BaseTool) -> frozenset[str]:
        known = self._hidden.get(id(tool))
        if known is None or known[0] is not tool:
            known = self._hidden[id(tool)] = (tool, hidden_fields(tool))
        return known[1]

    def _blocked(self, exc: ToolCallBlocked, request: ToolCallRequest) -> ToolMessage:
        if self.on_blocked == "raise":
            raise exc
        return _refuse(request, exc.model_message)


class _Ready:
    """A call that goes to the gate: the model's arguments, its reason, the tool's options."""

    __slots__ = ("args", "name", "options", "passthrough", "reason")

    def __init__(
        self,
        name: str,
        args: dict[str, Any],
        reason: str | None,
        options: ToolOptions,
        *,
        passthrough: bool = False,
    ) -> None:
        self.name = name
        self.args = args
        self.reason = reason
        self.options = options
        self.passthrough = passthrough


class _Unknown:
    """A call to a tool the agent doesn't have: refused (and audited) by the caller."""

    __slots__ = ("args", "name", "reason")

    def __init__(self, name: str, args: dict[str, Any], reason: str | None) -> None:
        self.name = name
        self.args = args
        self.reason = reason


def _with_args(request: ToolCallRequest, args: Mapping[str, Any]) -> ToolCallRequest:
    """The request with the approved arguments in place of the model's."""
    return request.override(tool_call={**request.tool_call, "args": dict(args)})


def _answered(request: ToolCallRequest, answer: Response) -> ToolMessage:
    """A person wrote the result instead of running the tool: the model reads it as the output."""
    call = request.tool_call
    return ToolMessage(content=str(answer), tool_call_id=call["id"] or "", name=call["name"])


def _refuse(request: ToolCallRequest, text: str) -> ToolMessage:
    call = request.tool_call
    message = refusal(text, tool_call_id=call["id"] or "", name=call["name"])
    assert isinstance(message, ToolMessage)
    return message


_OPTION_NAMES = frozenset(ToolOptions.__annotations__)


def _checked(name: str, options: Mapping[str, Any]) -> ToolOptions:
    unknown = sorted(set(options) - _OPTION_NAMES)
    if unknown:
        raise ValueError(
            f"GatekeeperMiddleware(tools=...): unknown option(s) {unknown} for tool {name!r}; "
            f"the options are {sorted(_OPTION_NAMES)}"
        )
    checked: ToolOptions = {}
    if "scopes" in options:
        scopes = options["scopes"]
        if isinstance(scopes, str):
            raise ValueError(f"tools[{name!r}]['scopes'] must be a list of scopes, not a string")
        checked["scopes"] = tuple(sorted(set(scopes)))
    if "irreversible" in options:
        checked["irreversible"] = bool(options["irreversible"])
    if options.get("risk") is not None:
        checked["risk"] = Risk(options["risk"])
    return checked
