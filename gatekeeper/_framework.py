"""What the framework adapters build on: tools called with one mapping of arguments.

A framework hands a tool call over as a name and a JSON object, not as a
Python call. :meth:`Gatekeeper.tool <gatekeeper.Gatekeeper.tool>` turns a
function taking those arguments into a :class:`GuardedTool`: the same
classification, holding, approval, exact-arguments release and audit as
``@gate.guard``, with the model's own words as the call's reason.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import _pipeline as pipe
from ._answers import approval_note
from ._canonical import without_surrogates
from ._errors import AgentHalted, InvalidToolCall, StoreUnavailable, ToolCallDenied
from ._flow import adrive, drive, guarded_call
from ._session import current_session
from ._tool import MappingToolSpec
from .models import ApprovalRequest, Classification, Risk, ToolCall, Verdict

if TYPE_CHECKING:
    from ._gate import Gatekeeper

__all__ = ["GuardedTool", "Ran", "arefuse_unknown_tool", "refuse_unknown_tool"]


class GuardedTool:
    """A tool whose arguments arrive as one mapping, put through a gate.

    Call it with the arguments (``tool(args, reason=...)``), or ``await
    tool.acall(args, reason=...)`` when the function is a coroutine. A call
    that does not run raises a :class:`~gatekeeper.ToolCallBlocked` whose
    ``model_message`` is a sentence the model can read.

    Example::

        refund = gate.tool("refund", lambda **args: billing.refund(**args), irreversible=True)
        refund({"order_id": "A-1", "amount": 5}, reason="the customer asked twice")
    """

    def __init__(self, gate: Gatekeeper, spec: MappingToolSpec) -> None:
        self.gate = gate
        self.spec = spec

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def is_async(self) -> bool:
        return self.spec.is_async

    def __call__(
        self, args: Mapping[str, Any], /, *, reason: str | None = None, key: str | None = None
    ) -> Any:
        """Run the tool with ``args`` through the gate (a sync function).

        ``key``: the call's idempotency key, e.g. the framework's tool-call id
        (see :func:`gatekeeper.call_key`).
        """
        return self.run(args, reason=reason, key=key).result

    async def acall(
        self, args: Mapping[str, Any], /, *, reason: str | None = None, key: str | None = None
    ) -> Any:
        """Run the tool with ``args`` through the gate (a coroutine function)."""
        return (await self.arun(args, reason=reason, key=key)).result

    def run(
        self,
        args: Mapping[str, Any],
        /,
        *,
        reason: str | None = None,
        key: str | None = None,
        wait: bool = True,
    ) -> Ran:
        """As calling the tool, but also says what the people who approved it did.

        Returns a :class:`Ran`: the result, the request as approved (None
        when the call was not held) and :func:`~gatekeeper.approval_note`'s
        sentence for the model. Adapters add the note to the tool's output.

        ``key``: the call's idempotency key (the framework's tool-call id): made
        again under it — after a restart, or by a resumed run — the call
        re-attaches to its earlier request instead of asking twice.
        ``wait=False``: a call still pending raises
        :class:`~gatekeeper.ApprovalPending` at once (its request stays for the
        same call under the same key to pick up later; a key is required).
        """
        if self.spec.is_async:
            raise TypeError(f"tool {self.name} is a coroutine function: await tool.acall(args)")
        decided: list[ApprovalRequest] = []
        mapping = _mapping(self.name, args)
        flow = guarded_call(self.gate, self.spec, (), mapping, reason, decided, key, wait)
        result = drive(self.gate, flow)
        return Ran(result, decided[0] if decided else None)

    async def arun(
        self,
        args: Mapping[str, Any],
        /,
        *,
        reason: str | None = None,
        key: str | None = None,
        wait: bool = True,
    ) -> Ran:
        """:meth:`run` for a coroutine function."""
        if not self.spec.is_async:
            raise TypeError(f"tool {self.name} is not a coroutine function: call tool(args)")
        decided: list[ApprovalRequest] = []
        mapping = _mapping(self.name, args)
        flow = guarded_call(self.gate, self.spec, (), mapping, reason, decided, key, wait)
        result = await adrive(self.gate, flow)
        return Ran(result, decided[0] if decided else None)

    def __repr__(self) -> str:
        return f"GuardedTool({self.name!r})"


@dataclass(frozen=True)
class Ran:
    """A guarded call that returned: its result, and the approval it ran under (if held)."""

    result: Any
    request: ApprovalRequest | None = None

    @property
    def note(self) -> str | None:
        """What the people who approved it did, for the model (see approval_note)."""
        return approval_note(self.request)


def make_tool(
    gate: Gatekeeper,
    name: str,
    func: Callable[..., Any],
    *,
    scopes: Iterable[str] = (),
    irreversible: bool = False,
    risk: Risk | str | None = None,
    schema: Mapping[str, Any] | None = None,
    server: str | None = None,
) -> GuardedTool:
    spec = MappingToolSpec(
        func=func,
        name=name,
        schema=dict(schema) if schema is not None else None,
        scopes=tuple(sorted(set(scopes))),
        irreversible=irreversible,
        risk=Risk(risk) if risk is not None else None,
        is_async=inspect.iscoroutinefunction(func),
        question=name in gate._questions,  # a framework's call of the gate's ask-a-person tool
        server=server,
    )
    return GuardedTool(gate, spec)


def refuse_unknown_tool(
    gate: Gatekeeper, name: str, args: Mapping[str, Any], *, reason: str | None = None
) -> ToolCallDenied:
    """Audit a call to a tool that does not exist; returns the error to give the model.

    Nothing runs. The call is recorded as denied (``call.denied``, rule
    ``unknown-tool``) with the arguments the model sent, or none when they
    are not a JSON object within the size limit.
    """
    call, cls = _unknown(gate, name, args, reason)
    try:
        gate.store.admit(pipe.call_event(call, cls), agent=call.agent, session_id=call.session_id)
    except (AgentHalted, StoreUnavailable):
        gate.store.record_soon([pipe.call_event(call, cls, kind="call.refused")])
    return pipe.denied_error(call, cls)


async def arefuse_unknown_tool(
    gate: Gatekeeper, name: str, args: Mapping[str, Any], *, reason: str | None = None
) -> ToolCallDenied:
    """:func:`refuse_unknown_tool` on the store's async face."""
    call, cls = _unknown(gate, name, args, reason)
    try:
        await gate.store.aio.admit(
            pipe.call_event(call, cls), agent=call.agent, session_id=call.session_id
        )
    except (AgentHalted, StoreUnavailable):
        gate.store.record_soon([pipe.call_event(call, cls, kind="call.refused")])
    return pipe.denied_error(call, cls)


def _unknown(
    gate: Gatekeeper, name: str, args: Mapping[str, Any], reason: str | None
) -> tuple[ToolCall, Classification]:
    # The name and reason are the model's own words, recorded even when they
    # hold a lone surrogate (written as <U+D800>): refusing here would leave
    # the model's call to a tool that does not exist unaudited.
    spec = MappingToolSpec(func=_nothing, name=without_surrogates(name) if name else "<no name>")
    if reason is not None:
        reason = without_surrogates(reason)
    try:
        bound = spec.bind((), _mapping(spec.name, args), gate.max_args_bytes)
    except InvalidToolCall:
        bound = spec.bind((), {}, gate.max_args_bytes)
    session = current_session() or gate._default_session
    call = pipe.build_call(gate._ids(), spec, bound, session, gate.clock.now(), reason)
    cls = Classification(
        verdict=Verdict.DENY,
        risk=Risk.HIGH,
        rules=("unknown-tool",),
        reasons=(f"no tool named {spec.name!r} is offered to this agent",),
    )
    return call, cls


def _mapping(name: str, args: Any) -> Mapping[str, Any]:
    if not isinstance(args, Mapping):
        raise InvalidToolCall(
            f"{name}: the arguments must be a JSON object, not {type(args).__name__}", tool=name
        )
    for key in args:
        if not isinstance(key, str):
            raise InvalidToolCall(f"{name}: argument names must be strings", tool=name)
    return args


def _nothing(**_: Any) -> None:  # the function of a tool that does not exist: never called
    raise AssertionError("an unknown tool was run")
