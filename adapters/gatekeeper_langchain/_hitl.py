"""LangChain's HumanInTheLoopMiddleware: its pauses decided by people through gatekeeper.

An app built on ``HumanInTheLoopMiddleware`` gets runs that stop with an
interrupt per model turn (``batched``) or per call (``per_call``), and answers
them with ``Command(resume=...)``. :func:`decide_hitl` is that answer: each
paused call becomes a gatekeeper call (policy, channels — Slack, the console —
approvers, audit), and the people's decisions become HITL decisions
(``approve``, ``edit``, ``reject``, ``respond``).

HumanInTheLoopMiddleware runs the tool after this returns, so gatekeeper's
record of an approved call ends at its release. Each call is made under its
tool call id as key: a decider that restarts before its requests' leases run
out re-attaches to them instead of asking the people again, and a call
already released is not released twice. The decider waits: to let the run's
process exit while people decide, use gatekeeper's own pause instead
(``GatekeeperMiddleware(gate, resumable=True)``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.messages import AIMessage
from langchain_core.tools import BaseTool
from langgraph.types import Command, Interrupt, StateSnapshot

from gatekeeper import Gatekeeper, InvalidToolCall, Response, ToolCallBlocked

from ._messages import reason_for
from ._resume import call_key_for
from ._schema import check_args, invalid_message, same_args, with_defaults
from ._tools import OnBlocked

__all__ = ["adecide_hitl", "decide_hitl"]

RELEASED = "released to LangChain's HumanInTheLoopMiddleware, which runs the tool"
_ALL = ("approve", "edit", "reject", "respond")


@dataclass(frozen=True)
class _Pause:
    """One call HumanInTheLoopMiddleware paused, and what its reviewer may answer."""

    tool_call_id: str
    name: str
    args: dict[str, Any]
    allowed: tuple[str, ...]


def decide_hitl(
    gate: Gatekeeper,
    paused: StateSnapshot,
    *,
    tools: Sequence[BaseTool],
    on_blocked: OnBlocked = "return",
) -> Command[Any]:
    """Decide every HumanInTheLoopMiddleware pause of a run through ``gate``; the resume command.

    ``paused`` is the agent's state (``agent.get_state(config)``); ``tools``
    the agent's tools, so each call is checked against its tool's schema and
    judged with the tool's defaults filled in, as it will run. All paused calls
    are held at once (approvers see them together) and this blocks until each
    is decided. Then:

    - allowed or approved: ``{"type": "approve"}``;
    - approved with edited arguments: ``{"type": "edit", ...}`` with the
      approved arguments, where the tool allows edits; otherwise a rejection
      telling the model the approved arguments to call again with;
    - answered by a person instead (*respond*): ``{"type": "respond"}`` with
      their text where allowed, otherwise a rejection carrying it;
    - denied, timed out, halted, or arguments that don't fit the schema: a
      rejection with ``exc.model_message`` (``on_blocked="raise"`` raises the
      first :class:`~gatekeeper.ToolCallBlocked` instead and withdraws the
      requests still waiting).

    Don't also put :class:`~gatekeeper_langchain.GatekeeperMiddleware` or gated
    tools in this agent: each call would be decided twice. Interrupts that are
    not HumanInTheLoopMiddleware's are left out of the command.

    Example::

        result = agent.invoke({"messages": [...]}, config, version="v2")
        while result.interrupts:
            command = decide_hitl(gate, agent.get_state(config), tools=tools)
            result = agent.invoke(command, config, version="v2")
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(adecide_hitl(gate, paused, tools=tools, on_blocked=on_blocked))
    raise RuntimeError(
        "decide_hitl() was called inside a running event loop: await adecide_hitl(...) there"
    )


async def adecide_hitl(
    gate: Gatekeeper,
    paused: StateSnapshot,
    *,
    tools: Sequence[BaseTool],
    on_blocked: OnBlocked = "return",
) -> Command[Any]:
    """:func:`decide_hitl` on the event loop (for ``ainvoke``/``astream`` apps)."""
    if on_blocked not in ("return", "raise"):
        raise ValueError(f'on_blocked must be "return" or "raise", not {on_blocked!r}')
    values = paused.values if isinstance(paused.values, Mapping) else {}
    messages = values.get("messages") or []
    by_name = {t.name: t for t in tools}
    batches: list[tuple[Interrupt, bool, list[_Pause]]] = []
    for found in paused.interrupts:
        value = found.value
        if isinstance(value, Mapping) and value.get("type") == "tool_approval":
            pause = _Pause(
                str(value["tool_call_id"]),
                str(value["name"]),
                dict(value.get("args") or {}),
                _allowed_by_schema(found.response_schema),
            )
            batches.append((found, False, [pause]))
        elif isinstance(value, Mapping) and "action_requests" in value:
            batches.append((found, True, _batched(value, messages)))
    if not batches:
        raise ValueError("the run is not paused by HumanInTheLoopMiddleware: nothing to decide")
    pauses = [pause for _, _, group in batches for pause in group]
    decisions = await _all(
        [
            _decide(
                gate,
                pause,
                by_name.get(pause.name),
                reason_for(messages, pause.tool_call_id),
                on_blocked,
            )
            for pause in pauses
        ]
    )
    by_call = {p.tool_call_id: d for p, d in zip(pauses, decisions, strict=True)}
    resume: dict[str, Any] = {}
    for found, batched, group in batches:
        if batched:
            resume[found.id] = {"decisions": [by_call[p.tool_call_id] for p in group]}
        else:
            resume[found.id] = by_call[group[0].tool_call_id]
    return Command(resume=resume)


class _Released(dict[str, Any]):
    """The approved arguments, handed to HITL; recorded in the audit as released."""

    def __repr__(self) -> str:
        return RELEASED


async def _decide(
    gate: Gatekeeper,
    pause: _Pause,
    tool: BaseTool | None,
    reason: str | None,
    on_blocked: OnBlocked,
) -> dict[str, Any]:
    """The HITL decision for one paused call, from what the people decided in gatekeeper."""
    name = pause.name
    if tool is None:
        refused = await gate.arefuse_unknown_tool(name, pause.args, reason=reason)
        if on_blocked == "raise":
            raise refused
        return _reject(pause, refused.model_message)
    problem = check_args(tool, pause.args)
    if problem is not None:  # nobody is asked about a call that can't run
        return _reject(pause, invalid_message(name, problem))
    # Judged as it will run: the tool fills these defaults in when HITL lets it run.
    args = with_defaults(tool, pause.args)
    can_edit = "edit" in pause.allowed

    async def release(**approved: Any) -> _Released:
        if not same_args(approved, args) and (not can_edit or check_args(tool, approved)):
            raise EditNotAllowed(approved)  # HITL can't run it: the audit says so
        return _Released(approved)

    try:
        ran = await gate.tool(name, release).arun(
            args, reason=reason, key=call_key_for(pause.tool_call_id)
        )
    except EditNotAllowed as exc:
        return _reject(
            pause,
            f"Tool call {name} was approved only with different arguments: "
            f"{json.dumps(exc.approved, ensure_ascii=False, default=str)}. The tool was not run; "
            "call it again with these arguments if they still serve the task.",
        )
    except InvalidToolCall as exc:
        if on_blocked == "raise":
            raise
        return _reject(pause, f"{exc.message}. The tool was not run.")
    except ToolCallBlocked as exc:
        if on_blocked == "raise":
            raise
        return _reject(pause, exc.model_message)
    if isinstance(ran.result, Response):  # a person wrote the result instead of running it
        if "respond" in pause.allowed:
            return {"type": "respond", "message": str(ran.result)}
        return _reject(pause, str(ran.result))
    approved = dict(ran.result)
    if same_args(approved, args):
        return {"type": "approve"}
    return {"type": "edit", "edited_action": {"name": name, "args": approved}}


class EditNotAllowed(Exception):
    """An approver edited the arguments, which this HITL pause can't take (as audited)."""

    def __init__(self, approved: dict[str, Any]) -> None:
        super().__init__(
            "not run: HumanInTheLoopMiddleware takes no edit for this tool (or the edit does "
            "not fit its schema); the model was sent the approved arguments"
        )
        self.approved = approved


def _reject(pause: _Pause, message: str) -> dict[str, Any]:
    if "reject" not in pause.allowed:
        raise ValueError(
            f"HumanInTheLoopMiddleware allows no rejection of {pause.name}, but gatekeeper did "
            f"not let call {pause.tool_call_id} through: {message}"
        )
    return {"type": "reject", "message": message}


def _batched(value: Mapping[str, Any], messages: Sequence[Any]) -> list[_Pause]:
    """The calls of a batched HITL pause, matched to the tool calls of the model turn."""
    actions = list(value.get("action_requests") or [])
    configs = list(value.get("review_configs") or [])
    allowed = {c.get("action_name"): tuple(c.get("allowed_decisions") or _ALL) for c in configs}
    turn = next((m for m in reversed(messages) if isinstance(m, AIMessage) and m.tool_calls), None)
    unused = list(turn.tool_calls) if turn is not None else []
    pauses = []
    for action in actions:
        match = next(
            (
                c
                for c in unused
                if c["name"] == action.get("name") and c.get("args") == action.get("args")
            ),
            None,
        )
        if match is None or not match.get("id"):
            raise ValueError(
                f"HumanInTheLoopMiddleware paused a call of {action.get('name')!r} that is not "
                "among the model's last tool calls (or has no id): pass the state of the "
                "paused run (agent.get_state(config))"
            )
        unused.remove(match)
        name = str(match["name"])
        pauses.append(
            _Pause(str(match["id"]), name, dict(match.get("args") or {}), allowed.get(name, _ALL))
        )
    return pauses


def _allowed_by_schema(schema: Any) -> tuple[str, ...]:
    """The decision types a per-call pause accepts, read from its ``response_schema``."""
    if not isinstance(schema, Mapping):
        return _ALL
    mapping = (schema.get("discriminator") or {}).get("mapping")
    if isinstance(mapping, Mapping):
        return tuple(str(k) for k in mapping)
    const = ((schema.get("properties") or {}).get("type") or {}).get("const")
    return (str(const),) if const else _ALL


async def _all(coros: Sequence[Coroutine[Any, Any, dict[str, Any]]]) -> list[dict[str, Any]]:
    """Run ``coros`` together; if one raises, withdraw the others and raise it."""
    tasks = [asyncio.ensure_future(coro) for coro in coros]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()  # a held call that is cancelled withdraws its request
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
