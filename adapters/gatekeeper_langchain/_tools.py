"""Gated LangChain tools: the same tool to the model, a gate in front of every run."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from langchain_core.callbacks import Callbacks
from langchain_core.messages import ToolCall
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool, Tool
from langchain_core.tools.base import ArgsSchema
from langchain_core.utils.pydantic import get_fields
from langgraph.prebuilt import ToolRuntime
from pydantic import PrivateAttr
from typing_extensions import override

from gatekeeper import (
    Gatekeeper,
    GuardedTool,
    InvalidToolCall,
    Response,
    Risk,
    ToolCallBlocked,
)

from ._messages import answer, reason_for, refusal, with_note
from ._resume import (
    arun_resumable,
    in_graph_run,
    refuse_answered_hitl,
    refuse_stacked_hitl,
    run_resumable,
    stream_waiting,
)
from ._schema import (
    RUNTIME,
    check_args,
    gated_function,
    hidden_fields,
    invalid_message,
    is_single_input,
    same_args,
    wants_runtime,
    with_defaults,
    with_runtime,
)

__all__ = ["GatedTool", "OnBlocked", "gate_tool", "gate_tools"]

OnBlocked = Literal["return", "raise"]


@dataclass(frozen=True)
class _Call:
    """One call as it reached the tool: the model's arguments and what LangGraph injected.

    ``args`` are complete: every default the tool would fill in is there.
    """

    args: dict[str, Any]
    injected: dict[str, Any]
    reason: str | None


class GatedTool(BaseTool):
    """A LangChain tool that asks the gate before the original ``tool`` runs.

    Made by :func:`gate_tool`. To the model it is the original tool (same
    name, description and schema); each call is validated against that
    schema, classified, held for a person if the policy says so, and then
    the original tool runs with exactly the approved arguments.
    """

    tool: BaseTool
    """The original tool: what runs once the gate lets a call through."""
    gate: Gatekeeper
    on_blocked: OnBlocked = "return"
    scopes: tuple[str, ...] = ()
    irreversible: bool = False
    risk: Risk | None = None
    resumable: bool = False
    """Interrupt the LangGraph run while a held call waits, instead of waiting (gate_tool)."""

    _hidden: frozenset[str] = PrivateAttr(default=frozenset())
    _pass_runtime: bool = PrivateAttr(default=False)
    _input_schema: Any = PrivateAttr(default=None)

    @override
    def model_post_init(self, context: Any, /) -> None:
        super().model_post_init(context)
        self._hidden = hidden_fields(self.tool)
        self._pass_runtime = wants_runtime(self.tool)
        self._input_schema = with_runtime(self.tool)

    # -- what the model and the frameworks see: the original tool's --------------------------
    @property
    @override
    def tool_call_schema(self) -> ArgsSchema:
        return self.tool.tool_call_schema

    @override
    def get_input_schema(self, config: RunnableConfig | None = None) -> Any:
        # The original input schema plus an injected ``runtime`` argument: LangGraph's
        # ToolNode then hands this tool the agent state, where the model's words are.
        return self._input_schema

    # -- running ----------------------------------------------------------------------------
    @override
    async def ainvoke(
        self,
        input: str | dict[str, Any] | ToolCall,
        config: RunnableConfig | None = None,
        **kwargs: Any,
    ) -> Any:
        # BaseTool's: a legacy ``Tool`` would run a tool without a coroutine in a thread.
        return await BaseTool.ainvoke(self, input, config, **kwargs)

    @override
    def run(
        self,
        tool_input: str | dict[str, Any],
        verbose: bool | None = None,
        start_color: str | None = "green",
        color: str | None = "green",
        callbacks: Callbacks = None,
        *,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        run_name: str | None = None,
        run_id: uuid.UUID | None = None,
        config: RunnableConfig | None = None,
        tool_call_id: str | None = None,
        **kwargs: Any,
    ) -> Any:
        """Run the call through the gate; the original tool runs only if it is let through."""
        call = self._read(tool_input, tool_call_id)
        if isinstance(call, str):
            return refusal(call, tool_call_id=tool_call_id, name=self.name)
        if getattr(self.tool, "func", True) is None:  # a coroutine-only tool: as LangChain says
            raise NotImplementedError(f"Tool {self.name} does not support sync invocation.")
        forward = dict(
            verbose=verbose,
            start_color=start_color,
            color=color,
            callbacks=callbacks,
            tags=tags,
            metadata=metadata,
            run_name=run_name,
            run_id=run_id,
            config=config,
            tool_call_id=tool_call_id,
            **kwargs,
        )

        def release(**approved: Any) -> Any:
            return self.tool.run(self._original_input(approved, call), **forward)

        try:
            guarded = self._guarded(release)
            if self.resumable and tool_call_id and in_graph_run():
                ran = run_resumable(
                    guarded,
                    call.args,
                    reason=call.reason,
                    tool_call_id=tool_call_id,
                    name=self.name,
                )
            else:
                with stream_waiting(tool_call_id=tool_call_id, name=self.name):
                    ran = guarded.run(call.args, reason=call.reason)
        except InvalidToolCall as exc:
            return refusal(_not_run(exc), tool_call_id=tool_call_id, name=self.name)
        except ToolCallBlocked as exc:
            return self._blocked(exc, tool_call_id)
        if isinstance(ran.result, Response):  # a person wrote the result; the tool did not run
            return answer(str(ran.result), tool_call_id=tool_call_id, name=self.name)
        return with_note(ran.result, ran.note)

    @override
    async def arun(
        self,
        tool_input: str | dict[str, Any],
        verbose: bool | None = None,
        start_color: str | None = "green",
        color: str | None = "green",
        callbacks: Callbacks = None,
        *,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        run_name: str | None = None,
        run_id: uuid.UUID | None = None,
        config: RunnableConfig | None = None,
        tool_call_id: str | None = None,
        **kwargs: Any,
    ) -> Any:
        """Run the call through the gate without blocking the event loop while it is held."""
        call = self._read(tool_input, tool_call_id)
        if isinstance(call, str):
            return refusal(call, tool_call_id=tool_call_id, name=self.name)
        forward = dict(
            verbose=verbose,
            start_color=start_color,
            color=color,
            callbacks=callbacks,
            tags=tags,
            metadata=metadata,
            run_name=run_name,
            run_id=run_id,
            config=config,
            tool_call_id=tool_call_id,
            **kwargs,
        )

        async def release(**approved: Any) -> Any:
            return await self.tool.arun(self._original_input(approved, call), **forward)

        try:
            guarded = self._guarded(release)
            if self.resumable and tool_call_id and in_graph_run():
                ran = await arun_resumable(
                    guarded,
                    call.args,
                    reason=call.reason,
                    tool_call_id=tool_call_id,
                    name=self.name,
                )
            else:
                with stream_waiting(tool_call_id=tool_call_id, name=self.name):
                    ran = await guarded.arun(call.args, reason=call.reason)
        except InvalidToolCall as exc:
            return refusal(_not_run(exc), tool_call_id=tool_call_id, name=self.name)
        except ToolCallBlocked as exc:
            return self._blocked(exc, tool_call_id)
        if isinstance(ran.result, Response):
            return answer(str(ran.result), tool_call_id=tool_call_id, name=self.name)
        return with_note(ran.result, ran.note)

    @override
    def _run(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("a gated tool runs through invoke()/run(), never _run()")

    # -- the steps --------------------------------------------------------------------------
    def _read(self, tool_input: str | dict[str, Any], tool_call_id: str | None) -> _Call | str:
        """Split the input into the model's arguments and injected ones, and check the former.

        The model's arguments come back with the tool's defaults filled in, so
        the gate sees what will run. Returns the message for the model instead
        when the arguments don't fit.
        """
        if isinstance(tool_input, str):
            names = list(self._model_fields())
            if len(names) != 1:
                return invalid_message(self.name, "it takes named arguments, not one string")
            tool_input = {names[0]: tool_input}
        args: dict[str, Any] = {}
        injected: dict[str, Any] = {}
        runtime: ToolRuntime[Any, Any] | None = None
        for key, value in tool_input.items():
            if key == RUNTIME and isinstance(value, ToolRuntime):
                runtime = value  # LangGraph's, never the model's: JSON can't make one
                if self._pass_runtime:
                    injected[key] = value
            elif key in self._hidden:
                injected[key] = value
            else:
                args[key] = value
        if injected and runtime is None and tool_call_id is not None:
            # A tool call that did not come through LangGraph's ToolNode (which strips
            # hidden arguments the model sent and injects its own, with a ToolRuntime):
            # values for hidden arguments here may be the model's, never shown to anyone.
            sent = ", ".join(sorted(k for k in injected if k != RUNTIME))
            return invalid_message(
                self.name,
                f"argument(s) {sent} are injected by the application, not sent by the model",
            )
        problem = check_args(self.tool, args)
        if problem is not None:
            return invalid_message(self.name, problem)
        args = with_defaults(self.tool, args)
        reason = None
        if runtime is not None:
            refuse_stacked_hitl(runtime.state)  # HITL pauses too: the person is asked twice
            refuse_answered_hitl(runtime.config)
            reason = reason_for(runtime.state, runtime.tool_call_id or tool_call_id)
        return _Call(args=args, injected=injected, reason=reason)

    def _model_fields(self) -> Iterable[str]:
        if is_single_input(self.tool):
            return ("__arg1",)
        shown = self.tool_call_schema
        if isinstance(shown, dict):
            return tuple(shown.get("properties", {}))
        return tuple(get_fields(shown))

    def _guarded(self, release: Callable[..., Any]) -> GuardedTool:
        """The gate's view of this one call: ``release(**approved)`` runs the original tool."""
        return self.gate.tool(
            self.name, release, scopes=self.scopes, irreversible=self.irreversible, risk=self.risk
        )

    def _original_input(self, approved: Mapping[str, Any], call: _Call) -> dict[str, Any]:
        """What the original tool gets: the approved arguments (checked again) and the injected."""
        if not same_args(approved, call.args):  # edited: the edit must still fit the schema
            problem = check_args(self.tool, approved)
            if problem is not None:
                raise InvalidToolCall(
                    f"the approved arguments for {self.name} don't fit its schema: {problem}",
                    tool=self.name,
                )
        return {**approved, **call.injected}

    def _blocked(self, exc: ToolCallBlocked, tool_call_id: str | None) -> Any:
        if self.on_blocked == "raise":
            raise exc
        return refusal(exc.model_message, tool_call_id=tool_call_id, name=self.name)


class _GatedSingleInputTool(GatedTool, Tool):
    """A gated legacy ``Tool``: still a ``Tool``, so LangChain describes it the same way."""


def gate_tool(
    gate: Gatekeeper,
    tool: BaseTool,
    *,
    on_blocked: OnBlocked = "return",
    scopes: Iterable[str] = (),
    irreversible: bool = False,
    risk: Risk | str | None = None,
    resumable: bool = False,
) -> GatedTool:
    """Put ``tool`` behind ``gate``; use the result wherever the tool was used.

    The model sees the same name, description and argument schema. Arguments
    that don't fit the schema come back as an error result and nothing runs.
    A call the gate blocks (policy denial, a person's denial, timeout, halt)
    comes back as a ``ToolMessage(status="error")`` carrying the blocked
    call's ``model_message`` when the tool was invoked with a tool call (as
    LangGraph's ``ToolNode`` does), or as that text when invoked with plain
    arguments; ``on_blocked="raise"`` raises the :class:`~gatekeeper.ToolCallBlocked`
    instead. Inside a LangGraph ``ToolNode`` (``create_agent``), the text the
    model wrote before the call is the call's reason.

    ``resumable=True``: inside a LangGraph run with a checkpointer, a held call
    that is still pending ends the run with an ``interrupt()`` naming its
    gatekeeper request instead of waiting; resumed later (any process), the
    call re-attaches to the request by its tool call id and runs once if it
    was approved (see :class:`~gatekeeper_langchain.GatekeeperMiddleware`).

    Example::

        refund = gate_tool(gate, refund, irreversible=True, scopes={"payments:write"})
        agent = create_agent(model, [lookup_order, refund])
    """
    if isinstance(tool, GatedTool):
        raise ValueError(f"tool {tool.name} is already gated")
    if not isinstance(tool, BaseTool):
        raise TypeError(
            f"gate_tool() takes a LangChain BaseTool, not {type(tool).__name__}: "
            "make a function a tool with @tool first"
        )
    if gated_function(tool):
        raise ValueError(
            f"tool {tool.name} already runs a @gate.guard function: it is gated already; "
            "use it as it is, or make the tool from the unguarded function"
        )
    if on_blocked not in ("return", "raise"):
        raise ValueError(f"on_blocked must be 'return' or 'raise', not {on_blocked!r}")
    cls = _GatedSingleInputTool if isinstance(tool, Tool) else GatedTool
    fields: dict[str, Any] = {
        "name": tool.name,
        "description": tool.description,
        "args_schema": tool.args_schema,
        "return_direct": tool.return_direct,
        "response_format": tool.response_format,
        "tags": tool.tags,
        "metadata": tool.metadata,
        "extras": tool.extras,
        "tool": tool,
        "gate": gate,
        "on_blocked": on_blocked,
        "scopes": tuple(sorted(set(scopes))),
        "irreversible": irreversible,
        "risk": Risk(risk) if risk is not None else None,
        "resumable": resumable,
    }
    if cls is _GatedSingleInputTool:
        fields["func"] = None  # never called: the original tool runs
    return cls(**fields)


def gate_tools(
    gate: Gatekeeper,
    tools: Sequence[BaseTool],
    *,
    on_blocked: OnBlocked = "return",
    scopes: Iterable[str] = (),
    irreversible: bool = False,
    risk: Risk | str | None = None,
    resumable: bool = False,
) -> list[BaseTool]:
    """:func:`gate_tool` for each of ``tools``, with the same options."""
    return [
        gate_tool(
            gate,
            t,
            on_blocked=on_blocked,
            scopes=scopes,
            irreversible=irreversible,
            risk=risk,
            resumable=resumable,
        )
        for t in tools
    ]


def _not_run(exc: InvalidToolCall) -> str:
    return f"{exc.message}. The tool was not run."
