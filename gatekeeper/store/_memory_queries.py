"""The console's queries over requests held in memory, as pure functions.

They mirror the Redis flows in ``_redis_queries`` exactly, down to comparing
times to the millisecond (Redis scores are milliseconds), so both stores give
the same answers.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from ..models import ApprovalRequest, RequestStatus, Risk
from ._halts import ms

__all__ = ["HISTORY_SCAN", "history", "queue"]

#: ``history`` looks at no more than this many requests per call (as on Redis).
HISTORY_SCAN = 10_000


def queue(
    requests: Iterable[ApprovalRequest],
    now: dt.datetime,
    *,
    agent: str | None,
    tool: str | None,
    risk: Risk | str | None,
    limit: int,
    offset: int,
) -> tuple[list[ApprovalRequest], int]:
    """Pending, unexpired, matching requests, most urgent first; and how many in all."""
    wanted = None if risk is None else Risk(risk)
    now_ms = ms(now)
    live = [
        r
        for r in requests
        if r.status is RequestStatus.PENDING
        and ms(r.expires_at) > now_ms
        and (wanted is None or r.classification.risk is wanted)
        and (agent is None or r.call.agent == agent)
        and (tool is None or r.call.tool == tool)
    ]
    live.sort(key=lambda r: (-r.classification.risk.level, ms(r.expires_at), r.id))
    offset = max(offset, 0)
    return live[offset : offset + max(limit, 0)], len(live)


def history(
    requests: Iterable[ApprovalRequest],
    now: dt.datetime,
    *,
    agent: str | None,
    tool: str | None,
    status: RequestStatus | str | None,
    approver: str | None,
    since: dt.datetime | None,
    until: dt.datetime | None,
    limit: int,
    offset: int,
) -> list[ApprovalRequest]:
    """Requests of any status, newest first, filtered, within the scan bound."""
    wanted = None if status is None else RequestStatus(status)
    now_ms = ms(now)
    low = ms(since) if since is not None else None
    high = ms(until) if until is not None else None
    in_range = [
        r
        for r in requests
        if (low is None or ms(r.created_at) >= low) and (high is None or ms(r.created_at) < high)
    ]
    in_range.sort(key=lambda r: (ms(r.created_at), r.id), reverse=True)
    found = [
        r
        for r in in_range[:HISTORY_SCAN]
        if (agent is None or r.call.agent == agent)
        and (tool is None or r.call.tool == tool)
        and (wanted is None or _status_now(r, now_ms) is wanted)
        and (approver is None or any(d.approver == approver for d in r.decisions))
    ]
    offset = max(offset, 0)
    return found[offset : offset + max(limit, 0)]


def _status_now(req: ApprovalRequest, now_ms: int) -> RequestStatus:
    if req.status is RequestStatus.PENDING and now_ms >= ms(req.expires_at):
        return RequestStatus.EXPIRED
    return req.status
