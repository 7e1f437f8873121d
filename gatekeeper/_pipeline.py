"""The pure steps of a guarded call: what to record, what to raise. No I/O here.

The sync and async drivers in ``_gate.py`` call these in the same order:
build the call -> classify -> admit / hold -> wait -> release -> record.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from ._canonical import first_surrogate, truncate, without_surrogates
from ._errors import (
    AgentHalted,
    AlreadyRan,
    ApprovalCancelled,
    ApprovalDenied,
    ApprovalPending,
    ApprovalTimeout,
    InvalidToolCall,
    OutcomeUnknown,
    RequestAbandoned,
    ToolCallBlocked,
    ToolCallDenied,
)
from ._session import Session
from ._tool import BoundCall, ToolSpec
from .audit import draft
from .models import (
    ApprovalRequest,
    BehaviourHit,
    Classification,
    RequestStatus,
    ToolCall,
    Verdict,
)

__all__ = [
    "OUTCOME_LIMIT",
    "REASON_LIMIT",
    "blocked_error",
    "build_call",
    "call_event",
    "denied_error",
    "new_request",
    "outcome_event",
    "outcome_text",
]

REASON_LIMIT = 4000
OUTCOME_LIMIT = 2000


def _ms(at: dt.datetime) -> int:
    return int(at.timestamp() * 1000)


def build_call(
    call_id: str,
    spec: ToolSpec,
    bound: BoundCall,
    session: Session,
    now: dt.datetime,
    reason: str | None,
) -> ToolCall:
    """The :class:`ToolCall` record of one call (already validated, so constructed directly).

    Raises :class:`InvalidToolCall` when the reason, the agent's name or the
    session id holds a lone surrogate: such text can't be recorded or shown,
    so the call is refused before anything is held or run.
    """
    stated = reason if reason is not None else session.reason
    for what, text in (
        ("the tool name", spec.name),
        ("the reason", stated),
        ("the agent name", session.agent),
        ("the session id", session.id),
    ):
        code = first_surrogate(text) if isinstance(text, str) else None
        if code is not None:
            raise InvalidToolCall(
                f"{without_surrogates(spec.name)}: {what} contains a lone surrogate ({code}), "
                "which is not valid Unicode text; the call was refused before anything was "
                "held or run",
                tool=without_surrogates(spec.name),
            )
    return ToolCall.model_construct(
        id=call_id,
        tool=spec.name,
        args=bound.json_args,
        args_digest=bound.digest,
        agent=session.agent,
        session_id=session.id,
        granted_scopes=tuple(sorted(session.scopes)),
        required_scopes=spec.scopes,
        irreversible=spec.irreversible,
        declared_risk=spec.risk,
        reason=truncate(stated, REASON_LIMIT) if stated else None,
        created_at=now,
        server=spec.server,
    )


_KIND = {
    Verdict.ALLOW: "call.allowed",
    Verdict.DENY: "call.denied",
    Verdict.HALT: "call.denied",
    Verdict.REQUIRE_APPROVAL: "call.held",
}


def call_event(
    call: ToolCall,
    cls: Classification,
    *,
    request: ApprovalRequest | None = None,
    kind: str | None = None,
) -> dict[str, Any]:
    """The audit draft recording a call and how it was classified."""
    data: dict[str, Any] = {
        "args": call.args,
        "args_digest": call.args_digest,
        "verdict": cls.verdict.value,
        "risk": cls.risk.value,
        "rules": list(cls.rules),
        "reasons": list(cls.reasons),
    }
    if call.reason:
        data["reason"] = call.reason
    if call.granted_scopes:
        data["granted_scopes"] = list(call.granted_scopes)
    if call.required_scopes:
        data["required_scopes"] = list(call.required_scopes)
    if call.irreversible:  # what the code declared, so a replay classifies it alike
        data["irreversible"] = True
    if call.declared_risk is not None:
        data["declared_risk"] = call.declared_risk.value
    if cls.behaviour:  # the sequences it completed, the limits it reached
        data["behaviour"] = [h.model_dump(mode="json", exclude_none=True) for h in cls.behaviour]
    if cls.policy_digest:  # which version of the policy was in force (the report counts them)
        data["policy_digest"] = cls.policy_digest
    if request is not None:
        data["expires_at"] = request.expires_at.isoformat()
        data["quorum"] = request.quorum
        if request.group:
            data["group"] = request.group
    return draft(
        kind or _KIND[cls.verdict],
        at_ms=_ms(call.created_at),
        actor=f"agent:{call.agent}",
        request_id=request.id if request else None,
        call_id=call.id,
        tool=call.tool,
        agent=call.agent,
        session_id=call.session_id,
        data=data,
    )


def grant_used_event(call: ToolCall, grant: Any) -> dict[str, Any]:
    """The audit draft recording that a grant let ``call`` run without asking."""
    return draft(
        "grant.used",
        at_ms=_ms(call.created_at),
        actor=f"agent:{call.agent}",
        call_id=call.id,
        tool=call.tool,
        agent=call.agent,
        session_id=call.session_id,
        data={"grant": grant.id, "kind": grant.kind, "by": grant.by, "rule": grant.rule},
    )


def demoted_event(call: ToolCall, grant: Any) -> dict[str, Any]:
    """The audit draft recording that a sequence or limit hit ended an agent's autonomy."""
    return draft(
        "autonomy.demoted",
        at_ms=_ms(call.created_at),
        actor=f"agent:{call.agent}",
        tool=grant.tool,
        agent=call.agent,
        data={
            "grant": grant.id,
            "rule": grant.rule,
            "why": "a sequence or limit fired for this agent since it was earned",
        },
    )


def shadow_event(
    call: ToolCall, cls: Classification, hits: tuple[BehaviourHit, ...]
) -> dict[str, Any]:
    """The audit draft recording what shadow-mode entries would have done with a call.

    ``data.would_be`` is the verdict the call would have had with them
    enforced; ``data.verdict`` the one it had.
    """
    would = cls.shadow.verdict if cls.shadow is not None else cls.verdict
    for hit in hits:
        if hit.verdict.strictness > would.strictness:
            would = hit.verdict
    data: dict[str, Any] = {
        "verdict": cls.verdict.value,
        "would_be": would.value,
        "rules": list(cls.shadow.rules) if cls.shadow is not None else [],
        "reasons": [
            *(cls.shadow.reasons if cls.shadow is not None else ()),
            *(h.reason for h in hits),
        ],
        "args_digest": call.args_digest,
    }
    if hits:
        data["behaviour"] = [h.model_dump(mode="json", exclude_none=True) for h in hits]
    return draft(
        "call.shadow",
        at_ms=_ms(call.created_at),
        actor=f"agent:{call.agent}",
        call_id=call.id,
        tool=call.tool,
        agent=call.agent,
        session_id=call.session_id,
        data=data,
    )


def outcome_text(result: Any = None, exc: BaseException | None = None) -> str:
    """A bounded, one-value summary of what the tool returned or raised.

    Always text that can be recorded: a lone surrogate in the result or the
    error message (which UTF-8 can't encode) is written as ``<U+D800>``.
    """
    if exc is not None:
        return truncate(without_surrogates(f"{type(exc).__name__}: {exc}"), OUTCOME_LIMIT)
    return truncate(without_surrogates(repr(result)), OUTCOME_LIMIT)


def outcome_event(
    call: ToolCall, now: dt.datetime, *, ok: bool, outcome: str, duration_ms: float
) -> dict[str, Any]:
    """The audit draft recording how an allowed call ended."""
    return draft(
        "call.executed" if ok else "call.failed",
        at_ms=_ms(now),
        actor=f"agent:{call.agent}",
        call_id=call.id,
        tool=call.tool,
        agent=call.agent,
        session_id=call.session_id,
        data={"outcome": outcome, "duration_ms": round(duration_ms, 3)},
    )


def new_request(
    request_id: str,
    call: ToolCall,
    cls: Classification,
    now: dt.datetime,
    timeout: float,
    args_schema: dict[str, Any] | None = None,
    *,
    question: bool = False,
    lease: float | None = None,
    key: str | None = None,
    parked: bool = False,
) -> ApprovalRequest:
    """A pending request for a held call (``question``: the agent asks a person).

    ``lease``: seconds the caller's lease lasts from ``now`` (None: no lease);
    ``key``: the call's idempotency key.
    """
    return ApprovalRequest(
        id=request_id,
        call=call,
        classification=cls,
        kind="question" if question else "call",
        created_at=now,
        expires_at=now + dt.timedelta(seconds=timeout),
        quorum=cls.approval.quorum,
        group=cls.approval.group,
        args=call.args,
        args_digest=call.args_digest,
        args_schema=args_schema,
        lease_until=None if lease is None else now + dt.timedelta(seconds=lease),
        key=key,
        parked=parked,
    )


def denied_error(call: ToolCall, cls: Classification) -> ToolCallDenied:
    reasons = "; ".join(cls.reasons)
    return ToolCallDenied(
        f"Tool call {call.tool} denied by policy: {reasons}",
        rules=cls.rules,
        reasons=cls.reasons,
        tool=call.tool,
        call_id=call.id,
    )


def pending_error(req: ApprovalRequest) -> ApprovalPending:
    """The error for a call made without waiting whose request is still pending."""
    return ApprovalPending(
        f"Tool call {req.call.tool} is waiting for approval (request {req.id}, "
        f"until {req.expires_at:%H:%M:%S} UTC)",
        expires_at=req.expires_at,
        tool=req.call.tool,
        request_id=req.id,
        call_id=req.call.id,
    )


def blocked_error(req: ApprovalRequest, *, question: bool = False) -> ToolCallBlocked:
    """The error for a request that ended without approval (``question``: the agent asked)."""
    tool, rid, cid = req.call.tool, req.id, req.call.id
    what = "Question" if question else f"Tool call {tool}"
    if req.status is RequestStatus.DENIED:
        approver = req.decided_by or "an approver"
        said = f': "{req.comment}"' if req.comment else ""
        verb = "declined" if question else "denied"
        return ApprovalDenied(
            f"{what} {verb} by {approver}{said}",
            approver=approver,
            comment=req.comment,
            tool=tool,
            request_id=rid,
            call_id=cid,
        )
    if req.status is RequestStatus.EXPIRED:
        if req.comment:  # the waiter's own account: the store unanswered, an approval too late
            return ApprovalTimeout(
                f"{what} timed out at {req.expires_at:%H:%M:%S} UTC: {req.comment}",
                tool=tool,
                request_id=rid,
                call_id=cid,
            )
        if question:
            return ApprovalTimeout(
                f"Question was not answered before {req.expires_at:%H:%M:%S} UTC",
                tool=tool,
                request_id=rid,
                call_id=cid,
            )
        return ApprovalTimeout(
            f"Tool call {tool} was not approved before {req.expires_at:%H:%M:%S} UTC "
            "(no decision counts as a denial)",
            tool=tool,
            request_id=rid,
            call_id=cid,
        )
    if req.status is RequestStatus.CANCELLED:
        comment = req.comment or ""
        if comment.startswith("halted"):
            return AgentHalted(
                f"Tool call {tool} cancelled: {comment}", tool=tool, request_id=rid, call_id=cid
            )
        # Not a person's signed decision: no name is quoted to the model as its author.
        return ApprovalCancelled(
            f"{what} was cancelled: {comment}".rstrip(": "),
            tool=tool,
            request_id=rid,
            call_id=cid,
        )
    if req.status is RequestStatus.ABANDONED:
        since = f" at {req.lease_until:%H:%M:%S} UTC" if req.lease_until else ""
        return RequestAbandoned(
            f"{what} was abandoned: its caller's lease ran out{since} (the caller was gone "
            "or stopped), so it will never run",
            tool=tool,
            request_id=rid,
            call_id=cid,
        )
    if req.status in (RequestStatus.EXECUTING, RequestStatus.OUTCOME_UNKNOWN):
        where = (
            "is running in another process"
            if req.status is RequestStatus.EXECUTING
            else "was released earlier and whether it ran is unknown"
        )
        return OutcomeUnknown(
            f"Tool call {tool} (request {rid}) {where}",
            tool=tool,
            request_id=rid,
            call_id=cid,
        )
    if req.status in (RequestStatus.EXECUTED, RequestStatus.FAILED):
        how = (
            "already ran"
            if req.status is RequestStatus.EXECUTED
            else "already ended without success (it failed, or did not run)"
        )
        said = f": {req.outcome}" if req.outcome else ""
        return AlreadyRan(
            f"Tool call {tool} {how} as request {rid}{said}",
            tool=tool,
            request_id=rid,
            call_id=cid,
        )
    return ToolCallBlocked(
        f"Tool call {tool} can't run: its request is {req.status.value}",
        tool=tool,
        request_id=rid,
        call_id=cid,
    )
