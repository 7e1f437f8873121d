"""The JSON API, ``/api/v1``: everything the pages do, described by the OpenAPI document.

Authenticate with the session cookie (state changes then need the
``X-CSRF-Token`` header) or ``Authorization: Bearer <token>`` (scopes:
read / decide / admin). Refusals are ``{"error": {"code", "message"}}``.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Query
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    ValidationError,
    field_validator,
    model_validator,
)

from .._canonical import digest, to_json_safe
from .._decisions import MAX_RESPONSE_CHARS
from .._errors import InvalidToolCall
from .._gate import Gatekeeper
from ..audit import parse_event
from ..models import (
    ApprovalRequest,
    AuditEvent,
    Classification,
    Halt,
    RequestStatus,
    Risk,
    ToolCall,
)
from ._access import decider, halter, require_shown_in_full, resumer
from ._agents import AgentSummary, recent_agents
from ._deps import CsrfProtect, Refused, Viewer, get_gate, require
from ._settings import Scope

__all__ = ["ExplainIn", "explain_call", "explained_call", "router"]


class ErrorBody(BaseModel):
    code: str = Field(description="machine-readable, e.g. not_found, conflict, csrf")
    message: str = Field(description="what was wrong, for people")


class ErrorOut(BaseModel):
    error: ErrorBody


_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorOut, "description": text}
    for status, text in (
        (401, "not signed in, or unknown token"),
        (403, "lacks the scope, outside the rule's group, or CSRF token missing"),
        (422, "invalid input"),
    )
}
router = APIRouter(prefix="/api/v1", tags=["api"], responses=_ERRORS)

_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorOut, "description": "no such request"}
}
_CONFLICT: dict[int | str, dict[str, Any]] = {
    **_NOT_FOUND,
    409: {
        "model": ErrorOut,
        "description": "already decided, expired, args changed, args over 64 KiB "
        "approved without their full digest, or a question (answer or decline it)",
    },
}
_RESPOND_CONFLICT: dict[int | str, dict[str, Any]] = {
    **_NOT_FOUND,
    409: {
        "model": ErrorOut,
        "description": "already decided, expired, or the rule that held the call allows "
        "no written answer (approval: respond: false)",
    },
}

Gate = Annotated[Gatekeeper, Depends(get_gate)]
RequestId = Annotated[str, Path(min_length=1, max_length=200)]
Limit = Annotated[int, Query(ge=1, le=500)]
Offset = Annotated[int, Query(ge=0, le=1_000_000)]
Name = Annotated[str | None, Query(max_length=200)]


def _scope(scope: Scope) -> Any:
    return Depends(require(scope))


Reader = Annotated[Viewer, _scope("read")]
Decider = Annotated[Viewer, _scope("decide")]
Admin = Annotated[Viewer, _scope("admin")]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- who am I ---------------------------------------------------------------------------------
class MeOut(BaseModel):
    approver: str | None = Field(description="decisions are recorded as this approver")
    groups: list[str]
    token: str | None = Field(description="the API token's name, when one is used")
    scopes: list[Scope]


@router.get("/me", response_model=MeOut, summary="Who the caller is")
def me(who: Reader) -> MeOut:
    return MeOut(
        approver=who.name,
        groups=list(who.approver.groups) if who.approver else [],
        token=who.token.name if who.token else None,
        scopes=sorted(who.scopes),
    )


# -- requests ------------------------------------------------------------------------------------
class RequestPage(BaseModel):
    items: list[ApprovalRequest]
    total: int | None = Field(description="requests matching (pending only; else null)")
    limit: int
    offset: int


@router.get("/requests", response_model=RequestPage, summary="The queue (or requests by status)")
def list_requests(
    gate: Gate,
    who: Reader,
    status: RequestStatus = RequestStatus.PENDING,
    agent: Name = None,
    tool: Name = None,
    risk: Risk | None = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> RequestPage:
    """Pending: most urgent first (risk, then time left). Other statuses: newest first."""
    if status is RequestStatus.PENDING:
        items, total = gate.store.queue(
            agent=agent, tool=tool, risk=risk, limit=limit, offset=offset
        )
        return RequestPage(items=items, total=total, limit=limit, offset=offset)
    found = gate.store.history(agent=agent, tool=tool, status=status, limit=limit, offset=offset)
    if risk is not None:
        found = [r for r in found if r.classification.risk is risk]
    return RequestPage(items=found, total=None, limit=limit, offset=offset)


@router.get(
    "/requests/{request_id}",
    response_model=ApprovalRequest,
    responses=_NOT_FOUND,
    summary="One request",
)
def get_request(gate: Gate, who: Reader, request_id: RequestId) -> ApprovalRequest:
    return gate.get(request_id)


class ApproveIn(_Body):
    comment: str | None = Field(default=None, max_length=4000)
    args: dict[str, JsonValue] | None = Field(
        default=None, description="edited arguments: the tool runs with these instead"
    )
    expect_digest: str | None = Field(
        default=None,
        pattern=r"^[0-9a-f]{8,64}$",
        description="refuse (409) unless the request's args digest starts with this; "
        "arguments over 64 KiB as JSON need all 64 hex digits (proof they were fetched whole)",
    )


class DenyIn(_Body):
    comment: str = Field(
        min_length=1, max_length=4000, description="why, not blank: the agent reads this"
    )

    @field_validator("comment")
    @classmethod
    def _says_why(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("a denial needs a comment saying why: the agent reads it")
        return value


@router.post(
    "/requests/{request_id}/approve",
    response_model=ApprovalRequest,
    responses=_CONFLICT,
    dependencies=[CsrfProtect],
    summary="Approve (optionally with edited args)",
)
def approve(
    gate: Gate,
    who: Decider,
    request_id: RequestId,
    body: Annotated[ApproveIn | None, Body()] = None,
) -> ApprovalRequest:
    body = body or ApproveIn()
    req = gate.get(request_id)
    approver = decider(gate, who, req)
    require_shown_in_full(req, body.expect_digest)
    return gate.approve(
        req.id,
        approver=approver,
        comment=body.comment,
        args=body.args,
        via=who.via,
        expect_digest=body.expect_digest,
    )


@router.post(
    "/requests/{request_id}/deny",
    response_model=ApprovalRequest,
    responses=_CONFLICT,
    dependencies=[CsrfProtect],
    summary="Deny, with the comment the agent will read",
)
def deny(gate: Gate, who: Decider, request_id: RequestId, body: DenyIn) -> ApprovalRequest:
    req = gate.get(request_id)
    return gate.deny(req.id, approver=decider(gate, who, req), comment=body.comment, via=who.via)


class RespondIn(_Body):
    response: str = Field(
        min_length=1,
        max_length=MAX_RESPONSE_CHARS,
        description="the tool's result, written by a person, not blank: the agent gets "
        "this text instead of running the tool (or as the answer to its question)",
    )
    comment: str | None = Field(
        default=None, max_length=4000, description="a note for the audit log"
    )

    @field_validator("response")
    @classmethod
    def _says_something(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("a response needs text: the agent gets it as the tool's result")
        return value


@router.post(
    "/requests/{request_id}/respond",
    response_model=ApprovalRequest,
    responses=_RESPOND_CONFLICT,
    dependencies=[CsrfProtect],
    summary="Answer instead of running the tool (or answer a question)",
)
def respond(gate: Gate, who: Decider, request_id: RequestId, body: RespondIn) -> ApprovalRequest:
    """End the request as ``responded``: the tool never runs; the agent's call returns the text.

    The response is recorded as the caller's (the signed-in approver, or the
    token's ``approver``), as approve and deny are.
    """
    req = gate.get(request_id)
    approver = decider(gate, who, req)
    try:
        return gate.respond(
            req.id, approver=approver, response=body.response, comment=body.comment, via=who.via
        )
    except ValueError as exc:  # what the body's checks can't see (the text once made safe)
        raise Refused(422, "invalid", str(exc)) from None


# -- history and audit ---------------------------------------------------------------------------
class HistoryPage(BaseModel):
    items: list[ApprovalRequest]
    limit: int
    offset: int


@router.get("/history", response_model=HistoryPage, summary="Every request, newest first")
def history(
    gate: Gate,
    who: Reader,
    agent: Name = None,
    tool: Name = None,
    status: RequestStatus | None = None,
    approver: Name = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> HistoryPage:
    items = gate.store.history(
        agent=agent,
        tool=tool,
        status=status,
        approver=approver,
        since=_aware(since),
        until=_aware(until),
        limit=limit,
        offset=offset,
    )
    return HistoryPage(items=items, limit=limit, offset=offset)


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=dt.timezone.utc)
    return value


class AuditEntryOut(BaseModel):
    entry_id: str
    hash: str
    event: AuditEvent | None = Field(description="null when the entry can't be read")


class AuditPage(BaseModel):
    items: list[AuditEntryOut]
    next_before: str | None = Field(description="pass as ?before= for the next (older) page")


@router.get("/audit", response_model=AuditPage, summary="Audit events, newest first")
def audit(
    gate: Gate,
    who: Reader,
    before: Annotated[
        str | None, Query(max_length=64, pattern=r"^([0-9]{1,2}/)?[0-9]+(-[0-9]+)?$")
    ] = None,
    limit: Limit = 50,
) -> AuditPage:
    try:
        entries = gate.store.audit_page(before=before, limit=limit)
    except ValueError:
        raise Refused(422, "invalid", f"before: {before!r} is not an audit entry id") from None
    items = []
    for entry in entries:
        try:
            event: AuditEvent | None = parse_event(entry.body, entry.hash)
        except (ValueError, KeyError, TypeError, ValidationError):
            event = None
        items.append(AuditEntryOut(entry_id=entry.entry_id, hash=entry.hash, event=event))
    next_before = entries[-1].entry_id if len(entries) == limit else None
    return AuditPage(items=items, next_before=next_before)


class ChainOut(BaseModel):
    ok: bool
    count: int = Field(description="events checked")
    head_hash: str
    problem: str | None = None
    entry_id: str | None = Field(default=None, description="the entry that breaks the chain")
    seq: int | None = None
    trimmed_through: int = Field(
        default=0,
        description="how many of the oldest events were archived and not checked here (with "
        "one audit chain: the events up to this one)",
    )
    anchors: int = Field(default=0, description="signed anchors of the head the chain holds")


@router.get("/audit/verify", response_model=ChainOut, summary="Check the audit hash chain")
def audit_verify(gate: Gate, who: Reader) -> ChainOut:
    report = gate.verify_audit()
    return ChainOut(
        ok=report.ok,
        count=report.count,
        head_hash=report.head_hash,
        problem=report.problem,
        entry_id=report.entry_id,
        seq=report.seq,
        trimmed_through=report.trimmed.seq if report.trimmed is not None else 0,
        anchors=report.anchors,
    )


# -- agents and the kill switch ----------------------------------------------------------------
@router.get(
    "/agents",
    response_model=list[AgentSummary],
    summary="Agents and sessions seen in the newest 10,000 audit events",
)
def agents(gate: Gate, who: Reader) -> list[AgentSummary]:
    return recent_agents(gate)


@router.get("/halts", response_model=list[Halt], summary="Halts in force")
def halts(gate: Gate, who: Reader) -> list[Halt]:
    return gate.store.halts()


class _Target(_Body):
    agent: str | None = Field(default=None, min_length=1, max_length=200)
    session: str | None = Field(default=None, min_length=1, max_length=200)
    all: bool = Field(default=False, description="every agent")

    @model_validator(mode="after")
    def _exactly_one(self) -> _Target:
        if sum((self.agent is not None, self.session is not None, self.all)) != 1:
            raise ValueError("give exactly one of: agent, session, all=true")
        return self


class HaltIn(_Target):
    reason: str | None = Field(default=None, max_length=2000)


class ResumeIn(_Target):
    pass


class HaltOut(BaseModel):
    cancelled: list[str] = Field(description="ids of the pending requests the halt cancelled")


class ResumeOut(BaseModel):
    resumed: bool = Field(description="false when no such halt was on")


@router.post(
    "/halts",
    response_model=HaltOut,
    dependencies=[CsrfProtect],
    summary="Halt an agent, a session or everything",
)
def halt(gate: Gate, who: Admin, body: HaltIn) -> HaltOut:
    cancelled = gate.halt(
        agent=body.agent,
        session=body.session,
        everything=body.all,
        by=halter(who, agent=body.agent),
        reason=body.reason,
    )
    return HaltOut(cancelled=cancelled)


@router.delete(
    "/halts",
    response_model=ResumeOut,
    dependencies=[CsrfProtect],
    summary="Resume (needs an approver identity)",
)
def resume(gate: Gate, who: Admin, body: ResumeIn) -> ResumeOut:
    name = resumer(gate, who)
    resumed = gate.resume(agent=body.agent, session=body.session, everything=body.all, by=name)
    return ResumeOut(resumed=resumed)


# -- policy --------------------------------------------------------------------------------------
class PolicyOut(BaseModel):
    source: str
    digest: str
    document: dict[str, Any] = Field(description="the loaded policy, as JSON")


@router.get("/policy", response_model=PolicyOut, summary="The loaded policy")
def policy(gate: Gate, who: Reader) -> PolicyOut:
    p = gate.policy
    return PolicyOut(
        source=p.source, digest=p.digest, document=p.document.model_dump(mode="json", by_alias=True)
    )


class ExplainIn(_Body):
    tool: str = Field(min_length=1, max_length=200)
    args: dict[str, JsonValue] = Field(default_factory=dict)
    agent: str = Field(default="default", min_length=1, max_length=200)
    scopes: list[Annotated[str, Field(max_length=200)]] = Field(
        default_factory=list, max_length=100, description="scopes granted to the session"
    )
    tool_scopes: list[Annotated[str, Field(max_length=200)]] = Field(
        default_factory=list, max_length=100, description="scopes the tool declares"
    )
    irreversible: bool = False


@router.post(
    "/policy/explain",
    response_model=Classification,
    summary="Classify one call with the loaded policy, with reasons",
)
def explain(gate: Gate, who: Reader, body: ExplainIn) -> Classification:
    return explain_call(gate, body)


def explain_call(gate: Gatekeeper, body: ExplainIn) -> Classification:
    """What the loaded policy says about one call (shared with the policy page)."""
    return gate.policy.classify(explained_call(gate, body))


def explained_call(gate: Gatekeeper, body: ExplainIn) -> ToolCall:
    """The call ``body`` describes, as the policy sees it."""
    try:
        args = to_json_safe(dict(body.args), where="args")
    except (TypeError, ValueError) as exc:
        raise InvalidToolCall(f"args: {exc}", tool=body.tool) from None
    return ToolCall(
        id="explain",
        tool=body.tool,
        args=args,
        args_digest=digest(args),
        agent=body.agent,
        session_id="explain",
        granted_scopes=tuple(sorted(set(body.scopes))),
        required_scopes=tuple(sorted(set(body.tool_scopes))),
        irreversible=body.irreversible,
        created_at=gate.clock.now(),
    )
