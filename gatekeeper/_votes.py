"""Signed votes: what the deciding side signs, and what a releasing agent checks.

Each vote an approver casts is signed on its own (:data:`~gatekeeper._signing.VOTE`)
and binds the request id, the agent, session, tool and call id, the vote,
the digest of the exact arguments voted on (and those arguments, when the
approver edited them), the quorum the approver was shown, the digest of the
deciding side's policy, and the time. The final status is not taken from the
store: the releasing agent recomputes it from the signed votes — a quorum of
distinct approvers who signed an approval of the digest it is about to run,
and no signed denial — so nothing an agent can write to the store makes a
call run.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from ._canonical import digest
from ._errors import TamperingDetected
from ._signing import RESUME, VOTE, SigningKey, TrustedKeys
from .models import ApprovalRequest, Decision, ToolCall

__all__ = [
    "answered_by",
    "approved_run",
    "check_resume",
    "denied_by",
    "sign_resume",
    "sign_vote",
    "trust_problem",
]


def _ms(decision: Decision) -> int:
    return int(decision.at.timestamp() * 1000)


def sign_vote(
    key: SigningKey, req: ApprovalRequest, decision: Decision, args: Mapping[str, Any] | None
) -> Decision:
    """``decision`` with its signed record attached (``args``: the approver's edit)."""
    call = req.call
    body: dict[str, Any] = {
        "request_id": req.id,
        "agent": call.agent,
        "session_id": call.session_id,
        "tool": call.tool,
        "call_id": call.id,
        "approver": decision.approver,
        "approve": decision.approve,
        "args_digest": decision.args_digest,
        "quorum": req.quorum,
        "policy_digest": decision.policy_digest,
        "at": _ms(decision),
        "via": decision.via,
        "comment": decision.comment,
    }
    if args is not None:
        body["args"] = dict(args)
    if decision.response is not None:
        body["response"] = decision.response
    return decision.model_copy(update={"signed": key.sign(VOTE, body)})


def sign_resume(key: SigningKey, field: str, by: str, at_ms: int, halt_at_ms: int) -> str:
    """The signed resume of the halt under ``field``, bound to when that halt was set."""
    return key.sign(RESUME, {"field": field, "by": by, "at": at_ms, "halt_at": halt_at_ms})


def check_resume(
    trusted: TrustedKeys, field: str, halt_at_ms: int, signed: bytes | str | None
) -> str | None:
    """None when ``signed`` is a trusted resume of halt ``field`` set then; else why not."""
    if signed is None:
        return "there is no resume"
    try:
        body = trusted.verify(RESUME, signed)
    except TamperingDetected as exc:
        return str(exc)
    if body.get("field") != field:
        return "the resume is for another halt"
    if not isinstance(body.get("halt_at"), int) or body["halt_at"] < halt_at_ms:
        return "the resume is older than the halt"
    return None


def _refuse(req: ApprovalRequest, why: str) -> TamperingDetected:
    return TamperingDetected(
        f"Tool call {req.call.tool}: request {req.id} {why}; not run, and the attempt is audited",
        tool=req.call.tool,
        request_id=req.id,
        call_id=req.call.id,
    )


def _verified_votes(
    stored: ApprovalRequest, call: ToolCall, trusted: TrustedKeys
) -> list[dict[str, Any]]:
    """The signed bodies of ``stored``'s votes, each checked against the copy stored beside it."""
    if not len(trusted):
        raise _refuse(stored, "can't be checked: this process trusts no decision key")
    votes: list[dict[str, Any]] = []
    for d in stored.decisions:
        if d.signed is None:
            raise _refuse(stored, f"carries a vote by {d.approver!r} that nobody signed")
        try:
            body = trusted.verify(VOTE, d.signed)
        except TamperingDetected as exc:
            raise _refuse(stored, f"carries a vote that fails its check ({exc})") from None
        bound = (
            body.get("request_id") == stored.id
            and body.get("agent") == call.agent
            and body.get("tool") == call.tool
            and body.get("call_id") == call.id
            and body.get("session_id") == call.session_id
        )
        if not bound:
            raise _refuse(stored, "carries a signed vote made for another request")
        same = (
            body.get("approver") == d.approver
            and body.get("approve") is d.approve
            and body.get("args_digest") == d.args_digest
            and body.get("response") == d.response
        )
        if not same:
            raise _refuse(stored, "carries a vote whose stored copy differs from what was signed")
        votes.append(body)
    return votes


def answered_by(
    stored: ApprovalRequest,
    call: ToolCall,
    trusted: TrustedKeys,
    deadline: dt.datetime | None = None,
) -> Decision:
    """The signed *respond* decision that ended ``stored``: who answered, and what.

    As :func:`approved_run`, ``call`` and ``deadline`` come from this
    process's memory. Raises :class:`~gatekeeper.TamperingDetected` unless a
    trusted key signed a response for exactly this request, in time, and the
    stored text is the signed one.
    """
    votes = _verified_votes(stored, call, trusted)
    late_ms = None if deadline is None else int(deadline.timestamp() * 1000)
    for d, body in zip(stored.decisions, votes, strict=True):
        text = body.get("response")
        if not isinstance(text, str):
            continue
        if late_ms is not None and not (isinstance(body.get("at"), int) and body["at"] <= late_ms):
            raise _refuse(stored, "carries a response signed after it expired")
        if stored.response is not None and stored.response != text:
            raise _refuse(stored, "holds a response in the store that is not the signed one")
        return d
    raise _refuse(stored, "reads answered, but carries no signed response")


def denied_by(stored: ApprovalRequest, call: ToolCall, trusted: TrustedKeys) -> Decision:
    """The signed denial that ended ``stored``: who denied it, and the reason they gave.

    The model reads a denial's reason, so it must be a person's words: the
    stored status, approver and comment are the agent's to write. Raises
    :class:`~gatekeeper.TamperingDetected` unless a trusted key signed a
    denial of exactly this request, and returns it as signed.
    """
    votes = _verified_votes(stored, call, trusted)
    for d, body in zip(stored.decisions, votes, strict=True):
        if body.get("approve") is False and not isinstance(body.get("response"), str):
            return d.model_copy(update={"comment": body.get("comment")})
    raise _refuse(stored, "reads denied, but carries no signed denial")


def approved_run(
    stored: ApprovalRequest,
    call: ToolCall,
    quorum: int,
    trusted: TrustedKeys,
    deadline: dt.datetime | None = None,
) -> tuple[str, dict[str, Any] | None]:
    """What may run for an approved request: ``(digest, edited args or None)``.

    ``stored`` is the request as the store returned it (anyone with the
    agent's credentials may have written it); ``call`` and ``quorum`` are
    what this process itself held, from memory, and so is ``deadline`` (its
    expiry plus clock skew): a vote signed after it does not count. Raises
    :class:`~gatekeeper.TamperingDetected` unless signed votes of trusted
    keys approve exactly these arguments.
    """
    votes = _verified_votes(stored, call, trusted)
    denials = [v for v in votes if v["approve"] is False]
    if denials:
        how = "answered" if isinstance(denials[0].get("response"), str) else "denied"
        raise _refuse(stored, f"was {how} by {denials[0]['approver']}, yet reads approved")
    run_digest = stored.args_digest
    late_ms = None if deadline is None else int(deadline.timestamp() * 1000)
    approvers = {
        v["approver"]
        for v in votes
        if v["approve"]
        and v["args_digest"] == run_digest
        and (late_ms is None or (isinstance(v.get("at"), int) and v["at"] <= late_ms))
    }
    needed = max(quorum, 1)
    if len(approvers) < needed:
        raise _refuse(
            stored,
            f"reads approved with {len(approvers)} signed approval(s) of its arguments, "
            f"not the {needed} it needs",
        )
    edited: dict[str, Any] | None = None
    if run_digest != call.args_digest:
        for v in votes:
            args = v.get("args")
            if v["approve"] and isinstance(args, dict) and digest(args) == run_digest:
                edited = args
                break
        else:
            raise _refuse(stored, "runs edited arguments that no approver signed")
    if digest(stored.args) != run_digest:
        raise _refuse(stored, "holds arguments in the store that are not the approved ones")
    # The same arguments as signed (same digest), in the order the approver wrote them.
    return run_digest, None if edited is None else dict(stored.args)


_RELEASED = ("approved", "executing", "executed", "failed")


def trust_problem(
    req: ApprovalRequest, trusted: TrustedKeys, quorum: int | None = None
) -> str | None:
    """Why the store's word on ``req`` can't be trusted, for the people who read it; else None.

    A request an agent refused as tampering says so; a request that reads
    approved (or later) must carry the signed votes that would release it;
    every vote must be one the deciders signed. ``quorum`` is what the
    reader's own policy asks for this call (the stored one is the agent's to
    write); the larger of the two counts.
    """
    if req.tampering:
        return f"an agent refused to release it: {req.tampering}"
    if not len(trusted):
        return None  # a process that trusts no key can't tell (no config for it)
    for d in req.decisions:
        if d.signed is None:
            return f"the vote of {d.approver!r} carries no signature"
        try:
            trusted.verify(VOTE, d.signed)
        except TamperingDetected as exc:
            return f"the vote of {d.approver!r} fails its check: {exc}"
    if req.status.value in _RELEASED:
        try:
            approved_run(req, req.call, max(req.quorum, quorum or 1), trusted)
        except TamperingDetected as exc:
            return exc.message
    if req.status.value == "responded":
        try:
            answer = answered_by(req, req.call, trusted)
        except TamperingDetected as exc:
            return exc.message
        if req.decided_by != answer.approver:
            return f"it reads answered by {req.decided_by!r}, but {answer.approver!r} signed it"
    elif req.response is not None:
        return f"it holds a response, but it is {req.status.value}: nobody signed an answer"
    if req.status.value == "denied":
        try:
            denial = denied_by(req, req.call, trusted)
        except TamperingDetected as exc:
            return exc.message
        if (req.decided_by, req.comment) != (denial.approver, denial.comment):
            return (
                f"it reads denied by {req.decided_by!r}, but the signed denial is "
                f"{denial.approver!r}'s, with another reason"
            )
    return None
