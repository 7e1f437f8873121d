"""The data gatekeeper passes around: calls, verdicts, requests, decisions, audit events.

Every model round-trips through JSON (``model_dump_json`` / ``model_validate_json``).
Times are timezone-aware UTC datetimes.
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
)

from ._telemetry import parse_traceparent

__all__ = [
    "ApprovalRequest",
    "ApprovalRequirement",
    "Approver",
    "AuditEvent",
    "BehaviourHit",
    "Classification",
    "Decision",
    "Halt",
    "HaltScope",
    "RequestStatus",
    "Risk",
    "ShadowNote",
    "StepCall",
    "ToolCall",
    "Verdict",
    "utc",
]


def utc(ms: int) -> dt.datetime:
    """A UTC datetime from milliseconds since the epoch."""
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.timezone.utc)


class Verdict(str, enum.Enum):
    """What happens to a call. Stricter verdicts win: halt > deny > require_approval > allow."""

    ALLOW = "allow"
    REQUIRE_APPROVAL = "require_approval"
    DENY = "deny"
    HALT = "halt"

    @property
    def strictness(self) -> int:
        return _VERDICT_ORDER[self]

    def __str__(self) -> str:
        return self.value


_VERDICT_ORDER = {
    Verdict.ALLOW: 0,
    Verdict.REQUIRE_APPROVAL: 1,
    Verdict.DENY: 2,
    Verdict.HALT: 3,
}


class Risk(str, enum.Enum):
    """How bad it is if the call does the wrong thing: low < medium < high < critical."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def level(self) -> int:
        return _RISK_ORDER[self]

    def __str__(self) -> str:
        return self.value


_RISK_ORDER = {Risk.LOW: 0, Risk.MEDIUM: 1, Risk.HIGH: 2, Risk.CRITICAL: 3}


class RequestStatus(str, enum.Enum):
    """Where an approval request is in its state machine (see docs/concepts.md)."""

    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    EXECUTING = "executing"
    EXECUTED = "executed"
    FAILED = "failed"
    RESPONDED = "responded"
    #: Pending or approved, and its caller stopped renewing its lease: nobody
    #: is waiting for it, so it never runs.
    ABANDONED = "abandoned"
    #: Released to run, and its caller stopped renewing its lease: the tool
    #: may or may not have run. A person must look (``gatekeeper resolve``).
    OUTCOME_UNKNOWN = "outcome_unknown"

    @property
    def decided(self) -> bool:
        """True once the request has left ``pending``."""
        return self is not RequestStatus.PENDING

    @property
    def live(self) -> bool:
        """True while a caller may still act on it (pending, approved or executing)."""
        return self in _LIVE

    @property
    def ended(self) -> bool:
        """True once nothing more happens to it by itself (every status but the live ones)."""
        return self not in _LIVE

    def __str__(self) -> str:
        return self.value


_LIVE = frozenset({RequestStatus.PENDING, RequestStatus.APPROVED, RequestStatus.EXECUTING})


class HaltScope(str, enum.Enum):
    """What a halt covers."""

    ALL = "all"
    AGENT = "agent"
    SESSION = "session"

    def __str__(self) -> str:
        return self.value


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ToolCall(_Model):
    """One call an agent wants to make, with its arguments in canonical JSON form."""

    id: str
    tool: str
    args: dict[str, JsonValue]
    args_digest: str = Field(description="hex sha256 of the canonical JSON of args")
    agent: str
    session_id: str
    granted_scopes: tuple[str, ...] = ()
    required_scopes: tuple[str, ...] = ()
    irreversible: bool = False
    declared_risk: Risk | None = None
    reason: str | None = Field(default=None, description="the agent's stated reason")
    created_at: dt.datetime
    server: str | None = Field(
        default=None,
        description="the MCP upstream the tool belongs to, for a call made through "
        "`gatekeeper mcp`; None for a call made in the agent's own process",
    )

    @model_serializer(mode="wrap")
    def _no_server(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # A call made in-process records (and signs) exactly as before `server` existed.
        dumped: dict[str, Any] = handler(self)
        if dumped.get("server") is None:
            dumped.pop("server", None)
        return dumped


class ApprovalRequirement(_Model):
    """Who must approve a held call, how many of them, and by when."""

    group: str | None = None
    quorum: int = Field(default=1, ge=1)
    timeout: float | None = Field(default=None, gt=0, description="seconds; None = config default")
    escalate_after: float | None = Field(
        default=None, gt=0, description="seconds pending before a reminder; None = never"
    )
    respond: bool = Field(
        default=True,
        description="an approver may answer in place of running the tool (the respond decision)",
    )


class StepCall(_Model):
    """An earlier call that matched a step of a sequence (what the approver is shown)."""

    tool: str
    at: dt.datetime
    call_id: str
    request_id: str | None = Field(default=None, description="its request, if it was held")


class BehaviourHit(_Model):
    """A sequence completed, a limit reached, or something new done by this call.

    See docs/policy.md, "Sequences and limits" and "Novelty".
    """

    kind: Literal["sequence", "limit", "novelty"]
    id: str = Field(description="the sequence's, limit's or novelty rule's id")
    verdict: Verdict
    reason: str = Field(description="a sentence a person can read")
    calls: tuple[StepCall, ...] = Field(
        default=(), description="sequence: the earlier calls that matched its steps, in order"
    )
    used: float | None = Field(default=None, description="limit: the count or sum so far")
    max: float | None = Field(default=None, description="limit: what it allows")
    shadow: bool = Field(default=False, description="in shadow mode: recorded, changed nothing")


class ShadowNote(_Model):
    """What rules in shadow mode would have made of a call (they changed nothing)."""

    verdict: Verdict
    rules: tuple[str, ...] = Field(default=(), description="the shadow rules that applied")
    reasons: tuple[str, ...] = ()


class Classification(_Model):
    """The policy's answer for one call."""

    verdict: Verdict
    risk: Risk
    rules: tuple[str, ...] = Field(default=(), description="ids of the rules that decided")
    reasons: tuple[str, ...] = Field(default=(), description="sentences a person can read")
    approval: ApprovalRequirement = ApprovalRequirement()
    halt_scope: HaltScope = HaltScope.AGENT
    granted_scopes: tuple[str, ...] | None = Field(
        default=None,
        description="the scopes the agent held for this call, as the policy counted them "
        "(its `agents:` entry and the session's); None when not recorded (classified "
        "before gatekeeper recorded them)",
    )
    required_scopes: tuple[str, ...] | None = Field(
        default=None,
        description="the scopes this call needed, as the policy counted them (its `tools:` "
        "entry and the tool's declaration); None when not recorded",
    )
    behaviour: tuple[BehaviourHit, ...] = Field(
        default=(),
        description="sequences this call completed and limits it reached (from the store)",
    )
    shadow: ShadowNote | None = Field(
        default=None,
        description="what rules in shadow mode would have decided, when one applied",
    )
    policy_digest: str | None = Field(
        default=None,
        description="sha256 of the policy that classified the call (Policy.digest); None "
        "when no policy did, or classified before gatekeeper recorded it",
    )

    @property
    def missing_scopes(self) -> tuple[str, ...]:
        """Needed scopes the agent was not granted (empty when not recorded)."""
        granted = set(self.granted_scopes or ())
        return tuple(s for s in self.required_scopes or () if s not in granted)


class Decision(_Model):
    """One approver's vote on a request.

    A *respond* decision (``response`` set, ``approve`` False) ends the
    request without running the tool: ``response`` is returned to the
    agent as the tool's result.
    """

    approver: str
    approve: bool
    comment: str | None = None
    response: str | None = Field(
        default=None, description="the tool result a person wrote instead of running it"
    )
    at: dt.datetime
    args_digest: str
    edited: bool = False
    via: str = "api"
    policy_digest: str | None = Field(
        default=None, description="sha256 of the policy the deciding side ran"
    )
    signed: str | None = Field(
        default=None,
        description="the vote as the deciders signed it (Ed25519; see docs/security.md)",
        repr=False,
    )


class ApprovalRequest(_Model):
    """A held call waiting for (or past) a human decision."""

    id: str
    call: ToolCall
    classification: Classification
    kind: Literal["call", "question"] = Field(
        default="call",
        description="`question`: the agent asks a person (answered with respond, never approved)",
    )
    status: RequestStatus = RequestStatus.PENDING
    created_at: dt.datetime
    expires_at: dt.datetime
    quorum: int = 1
    group: str | None = None
    args: dict[str, JsonValue] = Field(description="the arguments that will run if approved")
    args_digest: str
    args_schema: dict[str, JsonValue] | None = Field(
        default=None, description="JSON Schema of the arguments, for checking approvers' edits"
    )
    decisions: tuple[Decision, ...] = ()
    decided_at: dt.datetime | None = None
    decided_by: str | None = None
    comment: str | None = None
    outcome: str | None = Field(default=None, description="bounded result or error text")
    response: str | None = Field(
        default=None, description="what a person answered instead of running the tool"
    )
    finished_at: dt.datetime | None = None
    tampering: str | None = Field(
        default=None, description="why a release was refused as tampering, if it was"
    )
    lease_until: dt.datetime | None = Field(
        default=None,
        description="the caller's lease: past it with nobody renewing, the request is "
        "abandoned (or its outcome unknown); None = no lease (one process, or legacy)",
    )
    parked: bool = Field(
        default=False,
        description="made without waiting (wait=False): a resumed run picks it up later",
    )
    key: str | None = Field(
        default=None,
        description="the call's idempotency key (a framework's tool-call id): the same "
        "call, made again after a restart, re-attaches to this request",
    )
    awaiting_replicas: int = Field(
        default=0,
        ge=0,
        description="approved, and not yet known to be on this many Redis replicas "
        "(store.durability): the agent runs it only once it is; 0 = nothing awaited",
    )
    durable: bool | None = Field(
        default=None,
        description="on the deciding side, as a decision returns: whether it was on the "
        "replicas store.durability asks for (False: recorded on the primary only, so a "
        "failover now could lose it); None when not checked (no replicas asked for, "
        "or an embedded store)",
    )
    trace: str | None = Field(
        default=None,
        description="the W3C traceparent of the call's span, when the agent traces "
        "(docs/observability.md): the deciding side links its span to it; anything "
        "but a well-formed traceparent is dropped as it is read",
    )

    @field_validator("trace", mode="before")
    @classmethod
    def _traceparent(cls, value: Any) -> str | None:
        # Written by the agent: kept only as exactly a traceparent, never an error.
        return value if parse_traceparent(value) is not None else None

    @property
    def question(self) -> str | None:
        """The question, when the agent asked a person (``kind == "question"``).

        None unless the request is a question *and* its arguments are exactly
        a question (``{"question": "..."}``): the stored ``kind`` is the
        agent's to write, so a call marked a question without a question's
        arguments is still shown, and decided, as a call.
        """
        if self.kind != "question" or set(self.args) != {"question"}:
            return None
        text = self.args["question"]
        return text if isinstance(text, str) else None

    @property
    def is_question(self) -> bool:
        """True for a question from the agent (see :attr:`question`)."""
        return self.question is not None

    @property
    def edited(self) -> bool:
        """True when an approver changed the arguments."""
        return self.args_digest != self.call.args_digest

    @property
    def approvals(self) -> tuple[Decision, ...]:
        """Approvals that count toward the quorum (those for the current arguments)."""
        return tuple(d for d in self.decisions if d.approve and d.args_digest == self.args_digest)

    def effective_status(self, now: dt.datetime) -> RequestStatus:
        """The status a transition at ``now`` would see (see :func:`lapsed_status`)."""
        return lapsed_status(self, now) or self.status

    def lease_lapsed(self, now: dt.datetime) -> bool:
        """True when the request has a lease and it ran out before ``now``."""
        return self.lease_until is not None and now >= self.lease_until


def lapsed_status(req: ApprovalRequest, now: dt.datetime) -> RequestStatus | None:
    """What ``req`` becomes at ``now`` by the passing of time alone, or None if nothing.

    A pending request past its expiry is ``expired``; one not yet expired,
    or an approved one, whose caller's lease ran out is ``abandoned``; an executing one
    whose lease ran out is ``outcome_unknown``. The same rule runs in the
    Redis scripts (``lapse`` in ``lua/_prelude.lua``).
    """
    s = req.status
    if s is RequestStatus.EXECUTING:
        return RequestStatus.OUTCOME_UNKNOWN if req.lease_lapsed(now) else None
    if s is RequestStatus.APPROVED:
        return RequestStatus.ABANDONED if req.lease_lapsed(now) else None
    if s is not RequestStatus.PENDING:
        return None
    if now >= req.expires_at:  # expiry first: both mean "never runs", expiry is the rule
        return RequestStatus.EXPIRED
    if req.lease_lapsed(now):
        return RequestStatus.ABANDONED
    return None


class Approver(_Model):
    """A person who may decide requests, and how the channels know them."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.@+-]+$")
    groups: tuple[str, ...] = ()
    slack_user_id: str | None = Field(
        default=None, pattern=r"^[UW][A-Z0-9]+$", description="decides from Slack as this user"
    )
    slack_usergroup: str | None = Field(
        default=None,
        pattern=r"^S[A-Z0-9]+$",
        description="any member of this Slack user group decides as this approver",
    )
    email: str | None = None
    web_secret_hash: str | None = Field(
        default=None,
        description="scrypt hash of the web console secret (`gatekeeper web hash-secret`)",
        repr=False,
    )

    def may_decide(self, request: ApprovalRequest) -> bool:
        """True when the request names no group, or a group this approver is in."""
        return request.group is None or request.group in self.groups


class Halt(_Model):
    """The kill switch, on for one scope."""

    scope: HaltScope
    target: str = Field(description="agent name or session id; '*' for all")
    by: str
    reason: str | None = None
    at: dt.datetime

    @property
    def key(self) -> str:
        return halt_key(self.scope, self.target)


def halt_key(scope: HaltScope, target: str) -> str:
    """The field a halt is stored under: ``all``, ``agent:NAME`` or ``session:ID``."""
    return "all" if scope is HaltScope.ALL else f"{scope.value}:{target}"


AuditKind = Literal[
    "call.allowed",
    "call.denied",
    "call.held",
    "call.refused",
    "call.executed",
    "call.failed",
    "call.observed",
    "call.shadow",
    "novelty.forgotten",
    "grant.created",
    "grant.used",
    "grant.revoked",
    "autonomy.promoted",
    "autonomy.demoted",
    "request.vote",
    "request.approved",
    "request.denied",
    "request.responded",
    "request.expired",
    "request.cancelled",
    "request.abandoned",
    "request.outcome_unknown",
    "request.resolved",
    "request.released",
    "request.executed",
    "request.failed",
    "halt.set",
    "halt.cleared",
    "channel.failed",
    "request.tampering",
    "audit.unreadable",
    "audit.refused",
]


class AuditEvent(_Model):
    """One link of the hash-chained audit log.

    ``hash = sha256(prev_hash || canonical_json(event without "hash"))``, hex.
    """

    seq: int
    id: str | None = Field(
        default=None, description="the event's id, fixed before its first write (None: a script's)"
    )
    at: dt.datetime
    kind: AuditKind
    actor: str
    request_id: str | None = None
    call_id: str | None = None
    tool: str | None = None
    agent: str | None = None
    session_id: str | None = None
    data: dict[str, JsonValue] = {}
    prev_hash: str
    hash: str

    def body(self) -> dict[str, Any]:
        """The JSON object the hash covers (everything but ``hash``)."""
        return self.model_dump(mode="json", exclude={"hash"})
