"""The SDK's own approvals (``needs_approval``) decided through gatekeeper.

An app that marks tools ``needs_approval=True`` gets a run that stops with
``result.interruptions``. :func:`decide_interruptions` turns each one into a
gatekeeper request (policy, channels, approvers, audit), waits for the
decisions, and records them on the run's state with ``state.approve`` or
``state.reject``; the app resumes with ``Runner.run(agent, state)``.

Here the SDK runs the tool, after this returns: gatekeeper's record of an
approved call ends at its release. The SDK can only run a call with the
arguments the model sent, so a call an approver *edited* is rejected and the
model is told the approver's arguments, to call again with them. So is a call
that left out arguments with a schema ``default``: the gate judges it with the
defaults filled in, and the model is told those complete arguments.
"""

from __future__ import annotations

import asyncio
import json
import warnings
from collections.abc import Mapping
from typing import Any

from agents import FunctionTool, RunResult, RunResultStreaming, RunState, ToolApprovalItem

from gatekeeper import Gatekeeper, InvalidToolCall, Response, ToolCallBlocked

from ._agents import OnBlocked
from ._agents_args import ArgumentCheck, not_run
from ._agents_reasons import words_before

__all__ = ["decide_interruptions", "decide_interruptions_sync"]

RELEASED = "released to the Agents SDK, which runs the tool"


async def decide_interruptions(
    gate: Gatekeeper,
    result: RunResult | RunResultStreaming,
    *,
    on_blocked: OnBlocked = "return",
) -> RunState[Any]:
    """Decide every pending tool approval of ``result`` through ``gate``; returns the state.

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
    items = list(result.interruptions)
    unreadable = [item.qualified_name or item.name for item in items if item.arguments is None]
    if unreadable:
        raise ValueError(
            "decide_interruptions() decides calls with JSON arguments (function tools); "
            f"decide these with state.approve/reject: {unreadable}"
        )
    state = result.to_state()
    if not items:
        return state
    tasks = [asyncio.ensure_future(_decide(gate, item, result, on_blocked)) for item in items]
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
    for item, task in zip(items, tasks, strict=True):
        verdict = task.result()
        if verdict is None:
            state.approve(item)
        else:
            state.reject(item, rejection_message=verdict)
    return state


def decide_interruptions_sync(
    gate: Gatekeeper,
    result: RunResult | RunResultStreaming,
    *,
    on_blocked: OnBlocked = "return",
) -> RunState[Any]:
    """:func:`decide_interruptions` for code without an event loop (``Runner.run_sync``).

    Like ``Runner.run_sync``, it runs on the thread's default event loop and
    leaves it open, so both keep using one loop. It can't be called from
    inside a running loop: there, ``await decide_interruptions(...)``.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeError(
            "decide_interruptions_sync() was called inside a running event loop: "
            "await decide_interruptions(...) there instead"
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
    return loop.run_until_complete(decide_interruptions(gate, result, on_blocked=on_blocked))


async def _decide(
    gate: Gatekeeper,
    item: ToolApprovalItem,
    result: RunResult | RunResultStreaming,
    on_blocked: OnBlocked,
) -> str | None:
    """None to approve ``item``, or the message for the model to reject it with."""
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
    try:
        ran = await tool.acall(args, reason=words_before(result.raw_responses, item.call_id))
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
