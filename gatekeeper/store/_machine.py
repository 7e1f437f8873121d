"""The approval state machine as pure functions (no I/O, no clock of its own).

::

    pending ──approve (quorum reached)──▶ approved ──claim──▶ executing ──▶ executed | failed
       │                                    └──refuse (not run)──▶ failed
       │ ──deny──────────────────────────▶ denied
       │ ──respond (a person writes the result)──▶ responded   (not run)
       │ ──expires_at passes─────────────▶ expired      (fail-safe: = deny)
       └ ──requester cancels─────────────▶ cancelled

    pending | approved ──caller's lease lapses──▶ abandoned        (never runs)
    executing ──────────caller's lease lapses──▶ outcome_unknown  ──resolve (a person)──▶
                                                  executed | failed   (or the caller's late finish)

``MemoryStore`` applies these directly under its lock; ``RedisStore`` runs the
same rules as Lua scripts (``lua/*.lua``), and one contract test suite holds
both to the same behaviour. Each function returns a :class:`Step`: the request
after the step, the audit drafts to append, and the refusal to raise (a step
can change the request *and* refuse, as a late approval does: the request
expires and the vote is refused).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .._errors import TransitionRefused
from ..audit import draft
from ..models import ApprovalRequest, Decision, RequestStatus, lapsed_status

__all__ = [
    "Step",
    "cancel",
    "claim",
    "decide",
    "expire",
    "finish",
    "lapse",
    "refuse",
    "renew",
    "resolve",
]

P = RequestStatus


@dataclass
class Step:
    request: ApprovalRequest
    events: list[dict[str, Any]] = field(default_factory=list)
    refused: TransitionRefused | None = None
    changed: bool = True


def _ms(at: dt.datetime) -> int:
    return int(at.timestamp() * 1000)


def _event(
    req: ApprovalRequest, kind: str, now: dt.datetime, actor: str, **data: Any
) -> dict[str, Any]:
    call = req.call
    return draft(
        kind,
        at_ms=_ms(now),
        actor=actor,
        request_id=req.id,
        call_id=call.id,
        tool=call.tool,
        agent=call.agent,
        session_id=call.session_id,
        data={k: v for k, v in data.items() if v is not None},
    )


def _refuse(req: ApprovalRequest, action: str, why: str) -> TransitionRefused:
    return TransitionRefused(
        f"can't {action} request {req.id}: {why}",
        request_id=req.id,
        status=req.status.value,
        action=action,
    )


#: The audit event of each status that time alone can bring.
_LAPSE_EVENTS = {
    P.EXPIRED: "request.expired",
    P.ABANDONED: "request.abandoned",
    P.OUTCOME_UNKNOWN: "request.outcome_unknown",
}


def lapse_why(status: P, lease_until: dt.datetime | None) -> str:
    """Why an action on a request that just lapsed to ``status`` is refused."""
    if status is P.EXPIRED:
        return "it expired before a decision (expiry = deny)"
    at = f"its lease ran out at {lease_until:%H:%M:%S} UTC" if lease_until else "no lease"
    if status is P.ABANDONED:
        return f"its caller is gone ({at}): nothing is waiting to run it"
    return (
        f"its caller is gone ({at}) while the tool ran: "
        "whether it ran is unknown; a person must look"
    )


def _lapse(req: ApprovalRequest, now: dt.datetime, action: str) -> Step | None:
    """What time alone did to ``req`` (expiry, a lapsed lease), with ``action`` refused."""
    to = lapsed_status(req, now)
    if to is None:
        return None
    update: dict[str, Any] = {"status": to}
    data: dict[str, Any] = {}
    if to is not P.EXPIRED:
        data = {"was": req.status.value, "lease_until": _ms(req.lease_until or now)}
    if req.status is P.PENDING:
        update["decided_at"] = now
    lapsed = req.model_copy(update=update)
    step = Step(lapsed, [_event(req, _LAPSE_EVENTS[to], now, "system", **data)])
    step.refused = _refuse(lapsed, action, lapse_why(to, req.lease_until))
    return step


def lapse(req: ApprovalRequest, now: dt.datetime) -> Step:
    """Apply what time alone did to ``req`` (the sweep); unchanged when nothing lapsed."""
    step = _lapse(req, now, "sweep")
    if step is None:
        return Step(req, changed=False)
    step.refused = None
    return step


def renew(req: ApprovalRequest, now: dt.datetime, *, until: dt.datetime) -> Step:
    """The caller is still there: extend the lease of a live request to ``until``.

    A lease that already lapsed is not revived: the request becomes abandoned
    (or its outcome unknown) and the renewal is refused, so every process
    reads the same history whatever order renewals and sweeps come in.
    """
    lapsed = _lapse(req, now, "renew")
    if lapsed:
        return lapsed
    if not req.status.live:
        return Step(req, refused=_refuse(req, "renew", f"it is {req.status.value}"), changed=False)
    return Step(req.model_copy(update={"lease_until": until}))


def resolve(
    req: ApprovalRequest, now: dt.datetime, *, by: str, ran: bool, comment: str | None
) -> Step:
    """outcome_unknown -> executed | failed: a person looked and says whether the tool ran."""
    cur, events = req, []
    if req.status is P.EXECUTING:  # a lease that ran out meanwhile: it is unknown now
        lapsed = _lapse(req, now, "resolve")
        if lapsed:
            cur, events = lapsed.request, list(lapsed.events)
    if cur.status is not P.OUTCOME_UNKNOWN:
        why = f"it is {cur.status.value}; only a request whose outcome is unknown is resolved"
        return Step(cur, refused=_refuse(cur, "resolve", why), changed=False)
    status = P.EXECUTED if ran else P.FAILED
    outcome = comment or ("a person says it ran" if ran else "a person says it did not run")
    done = cur.model_copy(update={"status": status, "outcome": outcome, "finished_at": now})
    events.append(_event(req, "request.resolved", now, f"approver:{by}", ran=ran, comment=comment))
    return Step(done, events)


def decide(
    req: ApprovalRequest,
    decision: Decision,
    now: dt.datetime,
    *,
    args: Mapping[str, Any] | None = None,
) -> Step:
    """One approver's vote. Quorum counts distinct approvers for the current arguments."""
    action = "approve" if decision.approve else "deny"
    if decision.response is not None:
        action = "respond"
    lapsed = _lapse(req, now, action)
    if lapsed:
        return lapsed
    repeat = any(
        d.approver == decision.approver
        and d.approve == decision.approve
        and d.args_digest == decision.args_digest
        and d.response == decision.response  # another answer by the same person is no repeat
        for d in req.decisions
    )
    if req.status is not P.PENDING:
        if repeat:  # a retried vote that already counted: nothing to do
            return Step(req, changed=False)
        return Step(
            req, refused=_refuse(req, action, f"it is already {req.status.value}"), changed=False
        )
    actor = f"approver:{decision.approver}"
    if decision.response is not None:
        answered = req.model_copy(
            update={
                "status": P.RESPONDED,
                "decisions": (*req.decisions, decision),
                "decided_at": now,
                "decided_by": decision.approver,
                "comment": decision.comment,
                "response": decision.response,
            }
        )
        ev = _event(
            req,
            "request.responded",
            now,
            actor,
            response=decision.response,
            comment=decision.comment,
            via=decision.via,
            signed=decision.signed,
        )
        return Step(answered, [ev])
    if not decision.approve:
        denied = req.model_copy(
            update={
                "status": P.DENIED,
                "decisions": (*req.decisions, decision),
                "decided_at": now,
                "decided_by": decision.approver,
                "comment": decision.comment,
            }
        )
        ev = _event(
            req,
            "request.denied",
            now,
            actor,
            comment=decision.comment,
            via=decision.via,
            signed=decision.signed,
        )
        return Step(denied, [ev])
    if repeat:
        return Step(req, changed=False)
    update: dict[str, Any] = {}
    if decision.args_digest != req.args_digest:
        if args is None:
            why = "its arguments changed since you reviewed them; review them again"
            return Step(req, refused=_refuse(req, action, why), changed=False)
        # The approver edited the arguments: earlier approvals were for other
        # arguments and no longer count toward the quorum.
        update["args"] = dict(args)
        update["args_digest"] = decision.args_digest
    digest = update.get("args_digest", req.args_digest)
    voters = {d.approver for d in req.decisions if d.approve and d.args_digest == digest}
    voters.add(decision.approver)
    update["decisions"] = (*req.decisions, decision)
    reached = len(voters) >= req.quorum
    data: dict[str, Any] = {
        "comment": decision.comment,
        "via": decision.via,
        "args_digest": digest,
        "approvals": len(voters),
        "quorum": req.quorum,
        "signed": decision.signed,
    }
    if "args" in update:
        data["edited_args"] = update["args"]
    if reached:
        update.update(
            status=P.APPROVED,
            decided_at=now,
            decided_by=decision.approver,
            comment=decision.comment,
        )
    kind = "request.approved" if reached else "request.vote"
    return Step(req.model_copy(update=update), [_event(req, kind, now, actor, **data)])


def expire(req: ApprovalRequest, now: dt.datetime) -> Step:
    """pending -> expired once ``expires_at`` has passed (abandoned if its lease lapsed first)."""
    if req.status is not P.PENDING:
        if req.status is P.EXPIRED:
            return Step(req, changed=False)
        return Step(req, refused=_refuse(req, "expire", f"it is {req.status.value}"), changed=False)
    lapsed = _lapse(req, now, "expire")
    if lapsed is None:
        return Step(req, refused=_refuse(req, "expire", "it has not expired yet"), changed=False)
    if lapsed.request.status is P.EXPIRED:
        lapsed.refused = None
    return lapsed


def cancel(req: ApprovalRequest, now: dt.datetime, *, by: str, reason: str | None) -> Step:
    """pending -> cancelled."""
    lapsed = _lapse(req, now, "cancel")
    if lapsed:
        return lapsed
    if req.status is not P.PENDING:
        if req.status is P.CANCELLED:
            return Step(req, changed=False)
        return Step(req, refused=_refuse(req, "cancel", f"it is {req.status.value}"), changed=False)
    cancelled = req.model_copy(
        update={"status": P.CANCELLED, "decided_at": now, "decided_by": by, "comment": reason}
    )
    return Step(cancelled, [_event(req, "request.cancelled", now, by, reason=reason)])


def claim(req: ApprovalRequest, now: dt.datetime, *, args_digest: str) -> Step:
    """approved -> executing, at most once, for exactly the approved arguments."""
    lapsed = _lapse(req, now, "release") if req.status is P.APPROVED else None
    if lapsed:
        return lapsed
    if req.status is not P.APPROVED:
        why = f"it is {req.effective_status(now).value}"
        if req.status is P.EXECUTING:
            why = "it was already released (a request runs at most once)"
        return Step(req, refused=_refuse(req, "release", why), changed=False)
    if args_digest != req.args_digest:
        why = "the arguments to run are not the approved ones"
        return Step(req, refused=_refuse(req, "release", why), changed=False)
    executing = req.model_copy(update={"status": P.EXECUTING})
    ev = _event(req, "request.released", now, f"agent:{req.call.agent}", args_digest=args_digest)
    return Step(executing, [ev])


def finish(
    req: ApprovalRequest,
    now: dt.datetime,
    *,
    ok: bool,
    outcome: str | None,
    same_caller: bool = False,
    finished_it: bool = False,
) -> Step:
    """executing (or outcome_unknown: the caller came back late) -> executed | failed.

    ``same_caller``: the finish comes from the process that claimed it (its
    claim token matched). ``finished_it``: that process already recorded
    this outcome (a retry after a lost reply): nothing changes. A caller that
    comes back after a person resolved the request records what really
    happened, with what the person had said (``resolved_as``).
    """
    resolved = None
    if same_caller and req.status in (P.EXECUTED, P.FAILED):
        if finished_it:
            return Step(req, changed=False)
        resolved = req.status.value
    elif req.status not in (P.EXECUTING, P.OUTCOME_UNKNOWN):
        why = f"it is {req.status.value}, not executing"
        return Step(req, refused=_refuse(req, "finish", why), changed=False)
    status = P.EXECUTED if ok else P.FAILED
    done = req.model_copy(update={"status": status, "outcome": outcome, "finished_at": now})
    kind = "request.executed" if ok else "request.failed"
    actor = f"agent:{req.call.agent}"
    return Step(done, [_event(req, kind, now, actor, outcome=outcome, resolved_as=resolved)])


def refuse(req: ApprovalRequest, now: dt.datetime, *, why: str) -> Step:
    """approved -> failed without running (the release was refused as tampering)."""
    lapsed = _lapse(req, now, "refuse") if req.status is P.APPROVED else None
    if lapsed:
        return lapsed
    if req.status is not P.APPROVED:
        why_not = f"it is {req.status.value}, not approved"
        return Step(req, refused=_refuse(req, "refuse", why_not), changed=False)
    done = req.model_copy(update={"status": P.FAILED, "outcome": why, "finished_at": now})
    return Step(done, [_event(req, "request.failed", now, f"agent:{req.call.agent}", outcome=why)])
