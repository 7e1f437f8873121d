"""Builders shared by the store tests."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

from gatekeeper._canonical import digest
from gatekeeper._clock import Clock
from gatekeeper.audit import draft
from gatekeeper.models import (
    ApprovalRequest,
    Classification,
    Decision,
    Risk,
    ToolCall,
    Verdict,
)

_ids = itertools.count(1)

#: The lease of stores run on a ManualClock: a test's clock jumps minutes at once,
#: with no beat of the lease thread in between, where a live caller renews every
#: lease/3 s of real time. The lease tests give their requests leases of their own.
MANUAL_LEASE = 30 * 86400.0


def make_request(
    clock: Clock,
    *,
    agent: str = "billing-bot",
    session_id: str = "s1",
    args: dict[str, Any] | None = None,
    quorum: int = 1,
    timeout: float = 60,
    tool: str = "refund",
    risk: Risk = Risk.HIGH,
    lease: float | None = None,
    key: str | None = None,
) -> ApprovalRequest:
    n = next(_ids)
    args = {"order_id": "A-1", "amount": 20.0} if args is None else args
    now = clock.now()
    call = ToolCall(
        id=f"c{n}",
        tool=tool,
        args=args,
        args_digest=digest(args),
        agent=agent,
        session_id=session_id,
        created_at=now,
    )
    cls = Classification(verdict=Verdict.REQUIRE_APPROVAL, risk=risk, reasons=("test",))
    return ApprovalRequest(
        id=f"r{n}-{now.timestamp():.0f}",
        call=call,
        classification=cls,
        created_at=now,
        expires_at=now + dt.timedelta(seconds=timeout),
        quorum=quorum,
        args=args,
        args_digest=call.args_digest,
        lease_until=None if lease is None else now + dt.timedelta(seconds=lease),
        key=key,
    )


def held_event(req: ApprovalRequest) -> dict[str, Any]:
    return draft(
        "call.held",
        at_ms=int(req.created_at.timestamp() * 1000),
        actor=f"agent:{req.call.agent}",
        request_id=req.id,
        call_id=req.call.id,
        tool=req.call.tool,
        agent=req.call.agent,
        session_id=req.call.session_id,
        data={"args": req.args},
    )


def vote(
    clock: Clock,
    req: ApprovalRequest,
    approver: str,
    approve: bool = True,
    *,
    comment: str | None = None,
    args: dict[str, Any] | None = None,
) -> Decision:
    return Decision(
        approver=approver,
        approve=approve,
        comment=comment,
        at=clock.now(),
        args_digest=digest(args) if args is not None else req.args_digest,
        edited=args is not None,
        via="test",
    )
