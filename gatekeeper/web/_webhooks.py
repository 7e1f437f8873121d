"""``POST /webhooks/decision``: signed decisions from the system a webhook channel notifies.

The receiving system (a Teams bot, an internal tool...) shows the request to a
person and posts their decision back, signed with the channel's
``decision_secret`` by the scheme gatekeeper signs its deliveries with.
Only that secret verifies a decision: the delivery secret is held by the
agents, which must never be able to decide.

The decision secret authenticates the *system*, not a person. So a channel
decides only as one of its own
``approvers`` (the people that system vouches for), and casts at most one vote
per request: a quorum of N always needs N different systems or people, never
one secret. Every refusal is ``{"error": {"code", "message"}}`` and changes
nothing:

====  ==================  =============================================================
401   ``bad_signature``   no or wrong ``X-Gatekeeper-Signature`` / ``-Timestamp``
401   ``stale``           timestamp more than 300 s from the console's clock
409   ``replayed``        this exact signature was used before
422   ``invalid``         the body is not the JSON described by :class:`DecisionIn`
403   ``not_authorized``  not one of this channel's approvers, unknown, or not of the group
404   ``not_found``       no such request
409   ``already_decided`` the request is no longer pending (``status`` says what it is)
409   ``already_voted``   this channel has already decided on this request (one vote each)
409   ``digest_mismatch`` the arguments are not those the person reviewed
409   ``conflict``        refused by the state machine (this approver already approved)
====  ==================  =============================================================
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response

from .._decisions import MAX_RESPONSE_CHARS
from .._errors import (
    GatekeeperError,
    InvalidToolCall,
    NotAuthorized,
    RequestNotFound,
    StoreUnavailable,
    TransitionRefused,
)
from .._gate import Gatekeeper
from ..channels.webhook import (
    DECISION_PATH,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    TOLERANCE,
    WebhookChannel,
    signature_matches,
)
from ..logs import get_logger
from ..models import ApprovalRequest, RequestStatus
from ._deps import get_gate, read_bounded

__all__ = ["DecisionIn", "DecisionOut", "accepting", "router"]

log = get_logger("gatekeeper.web")

MAX_BODY = 64 * 1024
#: How long a used signature is remembered: longer than the whole window it is valid in
#: (``TOLERANCE`` either side of the clock), with a minute of margin.
REPLAY_TTL = 2 * TOLERANCE + 60
#: How long a channel's vote is remembered beyond the request's expiry (it is then moot).
VOTE_MARGIN = 3600.0


class DecisionIn(BaseModel):
    """A person's decision, as the deciding system posts it."""

    model_config = ConfigDict(extra="forbid")

    request_id: str = Field(min_length=1, max_length=200)
    approver: str = Field(
        min_length=1,
        max_length=200,
        description="the person who decided: one of the approvers this webhook channel "
        "may decide for",
    )
    decision: Literal["approve", "deny", "respond"]
    comment: str | None = Field(default=None, max_length=4000, description="the agent reads it")
    response: str | None = Field(
        default=None,
        max_length=MAX_RESPONSE_CHARS,
        description="with decision respond (required then): the result the agent gets "
        "instead of running the tool",
    )
    args_digest: str | None = Field(
        default=None,
        pattern=r"^[0-9a-f]{8,64}$",
        description="the request's args_digest (or its first 8+ characters) the person was "
        "shown; required to approve, ignored on deny",
    )

    @model_validator(mode="after")
    def _approve_needs_digest(self) -> DecisionIn:
        if self.decision == "approve" and self.args_digest is None:
            raise ValueError("args_digest is required to approve: the digest the approver saw")
        if self.decision == "deny" and not (self.comment or "").strip():
            raise ValueError("comment is required to deny: the agent reads why")
        if self.decision == "respond" and not (self.response or "").strip():
            raise ValueError("response is required to respond: the agent gets it as the result")
        if self.decision != "respond" and self.response is not None:
            raise ValueError("response goes only with decision respond")
        return self


class DecisionOut(BaseModel):
    id: str
    status: RequestStatus = Field(description="pending while a quorum still needs approvals")
    decided_by: str | None
    approvals: int = Field(description="approvals counted so far")


class _ErrorBody(BaseModel):
    code: str
    message: str
    status: RequestStatus | None = Field(
        default=None, description="the request's status (already_decided, digest_mismatch)"
    )


class _ErrorOut(BaseModel):
    error: _ErrorBody


router = APIRouter(tags=["webhooks"])


def accepting(gate: Gatekeeper, webhooks: Iterable[WebhookChannel] | None) -> list[WebhookChannel]:
    """The channels whose signed decisions the console takes (default: the gate's own).

    A channel that accepts decisions must hold its ``decision_secret`` here:
    without it the console could only check the delivery secret, which the
    agents hold. That is refused at once rather than skipped quietly.
    """
    if webhooks is None:
        webhooks = [c for c in gate.channels if isinstance(c, WebhookChannel)]
    hooks = [hook for hook in webhooks if hook.accept_decisions]
    for hook in hooks:
        if hook.decision_secret is None:
            raise ValueError(
                f"webhook channel {hook.name!r} accepts decisions but has no decision_secret: "
                "give the console's copy of the channel decision_secret=... (a secret the "
                "agents don't hold; the delivery secret never verifies a decision)"
            )
    return hooks


class _Refusal(Exception):
    def __init__(self, status: int, code: str, message: str, *, current: str | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.current = status, code, message, current

    def response(self) -> Response:
        body = {"code": self.code, "message": self.message}
        if self.current is not None:
            body["status"] = self.current  # the request's status
        headers = {"WWW-Authenticate": "Signature"} if self.status == 401 else None
        return JSONResponse({"error": body}, status_code=self.status, headers=headers)


def _refusals() -> dict[int | str, dict[str, Any]]:
    texts = {
        401: "missing or wrong signature, or a stale timestamp",
        403: "not one of this channel's approvers, unknown, or not of the request's group",
        404: "no such request, or no webhook channel takes decisions here",
        409: "replayed signature, already decided, already voted, or args digest mismatch",
        413: "body over 64 KiB",
        422: "the body is not a valid decision",
        503: "the store is unavailable",
    }
    return {code: {"model": _ErrorOut, "description": text} for code, text in texts.items()}


async def _read_body(request: Request) -> bytes:
    body = await read_bounded(request, MAX_BODY)
    if body is None:
        raise _Refusal(413, "too_large", f"the body is over {MAX_BODY} bytes")
    return body


def _signer(
    hooks: Sequence[WebhookChannel], timestamp: str | None, signature: str | None, body: bytes
) -> WebhookChannel:
    if not timestamp or not signature:
        raise _Refusal(
            401, "bad_signature", f"missing {TIMESTAMP_HEADER} or {SIGNATURE_HEADER} header"
        )
    if not (timestamp.isascii() and timestamp.isdigit()) or len(timestamp) > 12:
        raise _Refusal(401, "bad_signature", f"{TIMESTAMP_HEADER} must be unix seconds")
    found = None
    for hook in hooks:  # every one, so the time taken does not say which secret matched
        # Only the decision secret: the delivery secret is in every agent's hands.
        secret = hook.decision_secret
        if secret is not None and signature_matches(secret, timestamp, body, signature):
            found = found or hook
    if found is None:
        raise _Refusal(401, "bad_signature", "the signature does not verify")
    return found


def _fresh(gate: Gatekeeper, timestamp: str) -> None:
    skew = int(timestamp) - gate.clock.now().timestamp()
    if abs(skew) > TOLERANCE:
        when = "in the future" if skew > 0 else "old"
        raise _Refusal(
            401,
            "stale",
            f"the timestamp is {abs(int(skew))} s {when}; at most {TOLERANCE} s either way "
            "(sign each attempt afresh, and keep clocks in sync)",
        )


def _parse(body: bytes) -> DecisionIn:
    try:
        return DecisionIn.model_validate_json(body)
    except ValidationError as exc:
        parts = []
        for error in exc.errors(include_url=False)[:5]:
            loc = ".".join(str(x) for x in error.get("loc", ())) or "body"
            parts.append(f"{loc}: {error.get('msg', 'invalid')}")
        raise _Refusal(422, "invalid", "; ".join(parts) or "invalid decision") from None


def _already_voted(hook: WebhookChannel, req: ApprovalRequest, status: RequestStatus) -> _Refusal:
    return _Refusal(
        409,
        "already_voted",
        f"webhook channel {hook.name!r} has already decided on request {req.id}; a channel "
        "casts one vote per request (decide in the console or another channel)",
        current=status.value,
    )


def _decide(gate: Gatekeeper, hook: WebhookChannel, decision: DecisionIn) -> ApprovalRequest:
    """The decision, through the gate's own checks (approver, group, digest, state machine).

    First the channel's own limits: it speaks only for its ``approvers``, and
    casts one vote per request (claimed atomically in the store, so concurrent
    posts from one channel can't both count).
    """
    if not hook.speaks_for(decision.approver):
        raise _Refusal(
            403,
            "not_authorized",
            f"webhook channel {hook.name!r} may not decide as {decision.approver!r}: "
            "it is not one of the channel's approvers",
        )
    req = gate.get(decision.request_id)
    gate.approver(decision.approver, req)
    now = gate.clock.now()
    status = req.effective_status(now)
    if status is not RequestStatus.PENDING:
        raise _Refusal(
            409,
            "already_decided",
            f"request {req.id} is {status.value}, no longer pending",
            current=status.value,
        )
    via = hook.via
    if any(d.via == via for d in req.decisions):
        raise _already_voted(hook, req, status)
    expected = decision.args_digest or ""
    if decision.decision == "approve" and not req.args_digest.startswith(expected):
        raise _Refusal(
            409,
            "digest_mismatch",
            f"request {req.id}'s arguments (digest {req.args_digest[:12]}) are not the ones "
            f"reviewed ({expected[:12]}); show the current ones and decide again",
            current=status.value,
        )
    # Refusals the gate would make anyway come first: a refused decision costs no vote.
    if decision.decision == "approve" and req.is_question:
        raise _Refusal(
            409,
            "conflict",
            f"request {req.id} is a question from the agent: answer it (decision respond) "
            "or decline it (deny)",
            current=status.value,
        )
    if decision.decision == "respond" and not gate._may_respond(req):
        raise _Refusal(
            409,
            "conflict",
            f"request {req.id}'s rule takes no written answer (approval: respond: false); "
            "approve or deny it",
            current=status.value,
        )
    ttl = max((req.expires_at - now).total_seconds(), 0.0) + VOTE_MARGIN
    if not gate.store.use_once(f"webhook-vote:{hook.name}:{req.id}", ttl):
        raise _already_voted(hook, req, status)
    if decision.decision == "deny":
        return gate.deny(req.id, approver=decision.approver, comment=decision.comment, via=via)
    if decision.decision == "respond":
        return gate.respond(
            req.id,
            approver=decision.approver,
            response=decision.response or "",
            comment=decision.comment,
            via=via,
        )
    return gate.approve(
        req.id,
        approver=decision.approver,
        comment=decision.comment,
        via=via,
        expect_digest=expected,
    )


def _refusal_of(exc: GatekeeperError) -> _Refusal:
    if isinstance(exc, NotAuthorized):
        return _Refusal(403, "not_authorized", exc.message)
    if isinstance(exc, RequestNotFound):
        return _Refusal(404, "not_found", exc.message)
    if isinstance(exc, TransitionRefused):
        pending = exc.status == RequestStatus.PENDING.value
        return _Refusal(
            409, "conflict" if pending else "already_decided", exc.message, current=exc.status
        )
    if isinstance(exc, InvalidToolCall):
        return _Refusal(422, "invalid", exc.message)
    if isinstance(exc, StoreUnavailable):
        log.error("store unavailable: %s", exc)
        return _Refusal(503, "store_unavailable", exc.message)
    return _Refusal(400, "bad_request", exc.message)


@router.post(
    DECISION_PATH,
    response_model=DecisionOut,
    responses=_refusals(),
    summary="Approve or deny, signed with a webhook channel's decision secret",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": DecisionIn.model_json_schema()}},
        }
    },
)
async def webhook_decision(
    request: Request,
    x_gatekeeper_timestamp: Annotated[
        str | None, Header(description="unix seconds when the body was signed")
    ] = None,
    x_gatekeeper_signature: Annotated[
        str | None,
        Header(description='v1=<hex hmac_sha256(decision_secret, b"v1:{timestamp}:" + body)>'),
    ] = None,
) -> Response:
    """Signed with the decision secret of a webhook channel the console was given.

    Checks, in order: signature, freshness, replay, body, that the approver
    is one the channel may decide for, then the same approver, group and
    state checks as every other way of deciding, that the channel has not
    voted on the request yet (one vote per channel), and the digest. The
    decision is recorded ``via`` ``webhook:<channel name>``.
    """
    gate = get_gate(request)
    hooks: list[WebhookChannel] = request.app.state.webhooks
    try:
        if not hooks:
            raise _Refusal(404, "not_found", "no webhook channel takes decisions on this console")
        body = await _read_body(request)
        hook = _signer(hooks, x_gatekeeper_timestamp, x_gatekeeper_signature, body)
        assert x_gatekeeper_timestamp is not None
        assert x_gatekeeper_signature is not None
        _fresh(gate, x_gatekeeper_timestamp)
        key = "webhook:" + x_gatekeeper_signature
        if not await run_in_threadpool(gate.store.use_once, key, REPLAY_TTL):
            raise _Refusal(409, "replayed", "this signature was used before; sign each request")
        decision = _parse(body)
        try:
            after = await run_in_threadpool(_decide, gate, hook, decision)
        except GatekeeperError as exc:
            raise _refusal_of(exc) from exc
    except _Refusal as refusal:
        if refusal.status in (401, 409):
            log.warning("webhook decision refused (%s): %s", refusal.code, refusal.message)
        return refusal.response()
    except GatekeeperError as exc:  # the store, before the decision
        return _refusal_of(exc).response()
    out = DecisionOut(
        id=after.id,
        status=after.status,
        decided_by=after.decided_by,
        approvals=len(after.approvals),
    )
    return JSONResponse(out.model_dump(mode="json"))
