"""The console's read queries on Redis, written once for both faces.

Each query is a *flow*: a generator that yields a batch of raw Redis commands,
is sent the batch's replies, and returns its result (the shape of httpx's
``Auth.auth_flow``). The blocking and async faces only send each batch as one
non-transactional pipeline; what to read and how to filter it lives here.

Reads are not one snapshot: a request decided between two batches can show
up with its new status, or drop out of a page, as in any paginated listing.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Generator, Sequence
from typing import Any, TypeVar

from ..audit import StoredEvent
from ..models import ApprovalRequest, RequestStatus, Risk
from ._halts import ms
from ._redis_ops import Keys, request_from_hash

__all__ = [
    "HISTORY_SCAN",
    "RISKS_MOST_URGENT_FIRST",
    "Command",
    "Flow",
    "audit_page",
    "get_many",
    "history",
    "queue",
]

T = TypeVar("T")

#: One Redis command as sent: name then arguments (``pipe.execute_command(*cmd)``).
Command = tuple[Any, ...]
#: Yields command batches, is sent their replies, returns the result.
Flow = Generator[list[Command], list[Any], T]

RISKS_MOST_URGENT_FIRST = (Risk.CRITICAL, Risk.HIGH, Risk.MEDIUM, Risk.LOW)

#: ``history`` looks at no more than this many requests per call.
HISTORY_SCAN = 10_000
_HISTORY_BATCH = 500

_STREAM_ID = re.compile(r"\d+(-\d+)?")


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def owner_fields(value: str) -> tuple[str, str, str]:
    """``(agent, session, tool)`` from an ``owners`` value: a JSON array of the three.

    Values written by earlier releases (``"agent\\nsession[\\ntool]"``) still read.
    """
    if value.startswith("["):
        try:
            agent, session, tool = json.loads(value)
            return str(agent), str(session), str(tool)
        except ValueError:
            pass
    agent, _, rest = value.partition("\n")
    session, sep, tool = rest.rpartition("\n")
    return (agent, session, tool) if sep else (agent, rest, "")


def get_many(k: Keys, ids: Sequence[str]) -> Flow[list[ApprovalRequest]]:
    """The requests with these ids, in order; ids with no request are skipped."""
    if not ids:
        return []
    cmds: list[Command] = []
    for rid in ids:
        cmds += [("HGETALL", k.req(rid)), ("LRANGE", k.votes(rid), 0, -1)]
    replies = yield cmds
    return [
        request_from_hash(fields, votes)
        for fields, votes in zip(replies[::2], replies[1::2], strict=True)
        if fields
    ]


def queue(
    k: Keys,
    now: dt.datetime,
    *,
    agent: str | None,
    tool: str | None,
    risk: Risk | str | None,
    limit: int,
    offset: int,
) -> Flow[tuple[list[ApprovalRequest], int]]:
    """Pending, unexpired requests, most urgent first, and how many match in all.

    The per-risk indexes are scored by expiry, so ``score > now`` leaves out
    requests past their expiry that no transition has settled yet, both from
    the page and from the total.
    """
    risks = [r for r in RISKS_MOST_URGENT_FIRST if risk is None or r is Risk(risk)]
    keys = [k.pending_by_risk(r) for r in risks]
    live = f"({ms(now)}"
    limit, offset = max(limit, 0), max(offset, 0)
    if agent is None and tool is None:
        counts = [int(c) for c in (yield [("ZCOUNT", key, live, "+inf") for key in keys])]
        total = sum(counts)
        page: list[Command] = []
        skip, want = offset, limit
        for key, count in zip(keys, counts, strict=True):
            if want <= 0:
                break
            if skip >= count:
                skip -= count
                continue
            take = min(want, count - skip)
            page.append(("ZRANGEBYSCORE", key, live, "+inf", "LIMIT", skip, take))
            skip, want = 0, want - take
        ids = [_text(i) for reply in ((yield page) if page else []) for i in reply]
    else:
        every = [
            _text(i)
            for reply in (yield [("ZRANGEBYSCORE", key, live, "+inf") for key in keys])
            for i in reply
        ]
        owners = (yield [("HMGET", k.owners, *every)])[0] if every else []
        matching = []
        for rid, value in zip(every, owners, strict=True):
            if value is None:
                continue  # settled since the index was read
            a, _, t = owner_fields(_text(value))
            if (agent is None or a == agent) and (tool is None or t == tool):
                matching.append(rid)
        total = len(matching)
        ids = matching[offset : offset + limit]
    requests = yield from get_many(k, ids)
    return [r for r in requests if r.status is RequestStatus.PENDING], total


def history(
    k: Keys,
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
) -> Flow[list[ApprovalRequest]]:
    """Requests of any status, newest first, filtered; see ``RedisStore.history``.

    Walks ``{prefix}:requests`` from the newest (bounded by ``since``/``until``
    in the range itself), reading only the fields the filters need, and
    fetches whole requests for the page alone.
    """
    wanted = None if status is None else RequestStatus(status)
    now_ms = ms(now)
    top = f"({ms(until)}" if until is not None else "+inf"
    bottom = ms(since) if since is not None else "-inf"
    limit, offset = max(limit, 0), max(offset, 0)
    page: list[str] = []
    matched = scanned = 0
    while scanned < HISTORY_SCAN and len(page) < limit:
        n = min(_HISTORY_BATCH, HISTORY_SCAN - scanned)
        (raw,) = yield [("ZREVRANGEBYSCORE", k.requests, top, bottom, "LIMIT", scanned, n)]
        ids = [_text(i) for i in raw]
        scanned += len(ids)
        cmds: list[Command] = [
            ("HMGET", k.req(rid), "agent", "tool", "status", "expires") for rid in ids
        ]
        if approver is not None:
            cmds += [("LRANGE", k.votes(rid), 0, -1) for rid in ids]
        replies = (yield cmds) if cmds else []
        found, votes = replies[: len(ids)], replies[len(ids) :] or [None] * len(ids)
        for rid, fields, cast in zip(ids, found, votes, strict=True):
            if not _history_match(fields, cast, now_ms, agent, tool, wanted, approver):
                continue
            if matched >= offset and len(page) < limit:
                page.append(rid)
            matched += 1
        if len(ids) < n:
            break
    return (yield from get_many(k, page))


def _history_match(
    fields: list[Any],
    votes: list[bytes] | None,
    now_ms: int,
    agent: str | None,
    tool: str | None,
    status: RequestStatus | None,
    approver: str | None,
) -> bool:
    a, t, s, expires = (None if v is None else _text(v) for v in fields)
    if s is None or expires is None:
        return False  # indexed but gone
    if (agent is not None and a != agent) or (tool is not None and t != tool):
        return False
    if status is not None:
        if s == RequestStatus.PENDING.value and now_ms >= int(expires):
            s = RequestStatus.EXPIRED.value  # what any transition would find now
        if s != status.value:
            return False
    if approver is not None:
        return any(json.loads(v).get("approver") == approver for v in votes or ())
    return True


def check_entry_id(before: str) -> None:
    """Refuse what is not a stream entry id (``ms`` or ``ms-seq``) with a ValueError."""
    if not _STREAM_ID.fullmatch(before):
        raise ValueError(f"not an audit entry id: {before!r}")


def audit_page(k: Keys, *, before: str | None, limit: int) -> Flow[list[StoredEvent]]:
    """Sealed entries newest first, strictly older than entry ``before`` (the caller flushes)."""
    if before is not None:
        check_entry_id(before)
    if limit <= 0 or (before is not None and not before.strip("0-")):
        return []  # nothing is older than the first possible id (and "(0-0" is refused)
    top = f"({before}" if before is not None else "+"
    (raw,) = yield [("XREVRANGE", k.audit, top, "-", "COUNT", limit)]
    return [
        StoredEvent(_text(eid), fields.get(b"b", b""), _text(fields.get(b"h", b"")))
        for eid, fields in raw
    ]
