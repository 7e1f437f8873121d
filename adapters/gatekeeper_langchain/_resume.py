"""Ending a LangGraph run while a held call waits for a person, and resuming it later.

In resumable mode a held call is made without waiting, under the tool call's
id as its key. While its request is pending the call raises
:class:`~gatekeeper.ApprovalPending`; the adapter turns that into a LangGraph
``interrupt()`` whose value names the request, so the run ends there (its
checkpoint saved) and the stream shows what it waits for. Resumed — in this
process or another, with ``Command(resume=...)`` — the tool node runs again,
the same call is made under the same key and re-attaches to its request:
still pending, it interrupts again; approved, it runs once; denied, the model
reads the denial. The resume value is never read: what the store holds, signed
by the deciders, is the decision.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

from langgraph.config import get_config, get_stream_writer
from langgraph.errors import GraphInterrupt
from langgraph.types import Command, Interrupt, interrupt

from gatekeeper import ApprovalPending, GuardedTool, Ran, on_held

__all__ = [
    "HITL_STATE_KEY",
    "WAITING",
    "StackedApprovals",
    "arun_resumable",
    "call_key_for",
    "in_graph_run",
    "is_hitl_interrupt",
    "refuse_answered_hitl",
    "refuse_stacked_hitl",
    "resume_command",
    "run_resumable",
]

#: The ``type`` of the interrupt value of a held call (as HITL's per-call
#: ``ToolApprovalRequest`` has ``type: "tool_approval"``).
WAITING = "gatekeeper_approval"

#: A key HumanInTheLoopMiddleware writes into the agent state when it pauses a model turn.
HITL_STATE_KEY = "hitl_edited_tool_calls"

_MAX_KEY = 256  # gatekeeper's limit on a call key


class StackedApprovals(ValueError):
    """gatekeeper and LangChain's HumanInTheLoopMiddleware both pause the same calls."""

    def __init__(self) -> None:
        super().__init__(
            "this agent pauses its tool calls twice: once in LangChain's "
            "HumanInTheLoopMiddleware and once in gatekeeper, so a person would be asked twice "
            "about each call. Use one: gatekeeper alone (GatekeeperMiddleware(gate, "
            "resumable=True) ends the run while a call waits, as HITL does), or keep "
            "HumanInTheLoopMiddleware without gatekeeper's middleware or gated tools and decide "
            "its pauses through gatekeeper with decide_hitl()"
        )


def call_key_for(tool_call_id: str) -> str:
    """The call key for a tool call id (a digest of it if it is longer than a key may be)."""
    if len(tool_call_id) <= _MAX_KEY and tool_call_id.strip():
        return tool_call_id
    return "sha256:" + hashlib.sha256(tool_call_id.encode("utf-8", "replace")).hexdigest()


def in_graph_run() -> bool:
    """Whether the code runs inside a LangGraph run (where ``interrupt()`` can end it)."""
    try:
        get_config()
    except RuntimeError:
        return False
    return True


def waiting_value(
    exc: ApprovalPending, *, tool_call_id: str, name: str, args: Mapping[str, Any]
) -> dict[str, Any]:
    """The interrupt value of a held call: what the run waits for (JSON, for any checkpointer).

    The field names follow LangChain's per-call ``ToolApprovalRequest``
    (``type``, ``tool_call_id``, ``name``, ``args``, ``description``), plus the
    gatekeeper request's id and expiry.
    """
    expires = getattr(exc.expires_at, "isoformat", None)
    return {
        "type": WAITING,
        "gatekeeper_request_id": exc.request_id,
        "tool_call_id": tool_call_id,
        "name": name,
        "args": dict(args),
        "expires_at": expires() if expires is not None else None,
        "description": exc.message,
    }


def run_resumable(
    guarded: GuardedTool,
    args: Mapping[str, Any],
    *,
    reason: str | None,
    tool_call_id: str,
    name: str,
) -> Ran:
    """Run ``guarded`` without waiting; while its request is pending, interrupt the run.

    ``interrupt()`` ends the run the first time; when the run is resumed the
    node runs again, this call re-attaches to its request, and a resume that
    comes while the request is still pending meets the next ``interrupt()``
    of this loop, which ends the run again.
    """
    key = call_key_for(tool_call_id)
    while True:
        try:
            return guarded.run(args, reason=reason, key=key, wait=False)
        except ApprovalPending as exc:
            value = waiting_value(exc, tool_call_id=tool_call_id, name=name, args=args)
        interrupt(value)  # the resume value is not read: the store holds the decision


async def arun_resumable(
    guarded: GuardedTool,
    args: Mapping[str, Any],
    *,
    reason: str | None,
    tool_call_id: str,
    name: str,
) -> Ran:
    """:func:`run_resumable` for a coroutine function."""
    key = call_key_for(tool_call_id)
    while True:
        try:
            return await guarded.arun(args, reason=reason, key=key, wait=False)
        except ApprovalPending as exc:
            value = waiting_value(exc, tool_call_id=tool_call_id, name=name, args=args)
        interrupt(value)


def resume_command(interrupts: Iterable[Interrupt]) -> Command[Any]:
    """The ``Command`` that resumes a run paused on gatekeeper's held calls.

    ``interrupts`` are the run's pending interrupts (``result.interrupts`` of
    ``invoke(..., version="v2")``, or ``agent.get_state(config).interrupts``);
    those of held calls are resumed, each by its id. The value sent is not a
    decision — gatekeeper reads the decision from its store — so resuming
    before anyone decided just pauses again, and resuming after a denial gives
    the model the denial.

    Example::

        result = agent.invoke(resume_command(agent.get_state(config).interrupts), config)
    """
    held = [i for i in interrupts if _is_waiting(i.value)]
    if not held:
        raise ValueError("none of these interrupts is a gatekeeper call waiting for approval")
    return Command(resume={i.id: {"gatekeeper": "resume"} for i in held})


def refuse_stacked_hitl(state: Any) -> None:
    """Raise :class:`StackedApprovals` if HumanInTheLoopMiddleware paused this agent's turns."""
    if isinstance(state, Mapping) and HITL_STATE_KEY in state:
        raise StackedApprovals()


def refuse_answered_hitl(config: Any) -> None:
    """Raise :class:`StackedApprovals` if HITL paused this very call before it reached us.

    HumanInTheLoopMiddleware in ``per_call`` mode, listed before gatekeeper's,
    interrupts inside the tool call and, once answered, hands the call on.
    Then, as the call reaches gatekeeper, an ``interrupt()`` was already made in
    this task (gatekeeper's own are made later, so whatever a run is resumed
    with never counts) and the first resume value is a HITL decision (a
    mapping whose ``type`` is one of its decision types). LangGraph keeps both
    in a private place; if it moves, this check finds nothing.
    """
    try:
        scratchpad = config["configurable"]["__pregel_scratchpad"]
        resumed = list(scratchpad.resume)
        interrupted = getattr(scratchpad.interrupt_counter, "_counter", None) is not None
    except (KeyError, TypeError, AttributeError):
        return
    if interrupted and resumed and _is_hitl_decision(resumed[0]):
        raise StackedApprovals()


def _is_hitl_decision(value: Any) -> bool:
    return isinstance(value, Mapping) and value.get("type") in _HITL_DECISIONS


_HITL_DECISIONS = frozenset({"approve", "edit", "reject", "respond"})


def is_hitl_interrupt(exc: GraphInterrupt) -> bool:
    """Whether ``exc`` is HumanInTheLoopMiddleware pausing a call (per call, or a batch)."""
    for found in exc.args[0] if exc.args else ():
        value = getattr(found, "value", None)
        if isinstance(value, Mapping) and (
            value.get("type") == "tool_approval" or "action_requests" in value
        ):
            return True
    return False


def _is_waiting(value: Any) -> bool:
    return isinstance(value, Mapping) and value.get("type") == WAITING


def stream_waiting(
    *, tool_call_id: str | None, name: str
) -> contextlib.AbstractContextManager[None]:
    """While a blocking call waits, say so in the LangGraph run's ``custom`` stream.

    Writes ``{"type": "gatekeeper_waiting", "gatekeeper_request_id": ...,
    "tool_call_id": ..., "name": ..., "expires_at": ...}`` once the call is
    held, so a UI streaming with ``stream_mode="custom"`` shows "waiting for
    approval" instead of "running". Outside a graph run: nothing.
    """
    if not in_graph_run():
        return contextlib.nullcontext()
    try:
        writer = get_stream_writer()
    except RuntimeError:  # no stream here
        return contextlib.nullcontext()

    def held(request: Any) -> None:
        writer(
            {
                "type": "gatekeeper_waiting",
                "gatekeeper_request_id": request.id,
                "tool_call_id": tool_call_id,
                "name": name,
                "expires_at": request.expires_at.isoformat(),
            }
        )

    return on_held(held)
