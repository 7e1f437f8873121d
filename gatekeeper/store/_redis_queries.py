"""The console's read queries on Redis, written once for both faces.

Each query is a *flow*: a generator that yields a batch of raw Redis commands,
is sent the batch's replies, and returns its result (the shape of httpx's
``Auth.auth_flow``). The blocking and async faces only send each batch as one
non-transactional pipeline; what to read and how to filter it lives here.

Reads are not one snapshot: a request decided between two batches can show
up with its new status, or drop out of a page, as in any paginated listing.
"""

from __future__ import annotations

import bisect
import datetime as dt
import json
import math
import re
from collections import deque
from collections.abc import Generator, Sequence
from typing import Any, TypeVar

from ..audit import StoredEvent, chained_id, entry_chain, entry_order
from ..logs import get_logger, quoted
from ..models import ApprovalRequest, RequestStatus, Risk
from ._halts import ms
from ._redis_ops import Keys, agent_names, request_from_hash

__all__ = [
    "HISTORY_SCAN",
    "RISKS_MOST_URGENT_FIRST",
    "Command",
    "Flow",
    "audit_page",
    "get_many",
    "history",
    "pending",
    "queue",
]

T = TypeVar("T")

#: One Redis command as sent: name then arguments (``pipe.execute_command(*cmd)``).
Command = tuple[Any, ...]
#: Yields command batches, is sent their replies, returns the result.
Flow = Generator[list[Command], list[Any], T]

RISKS_MOST_URGENT_FIRST = (Risk.CRITICAL, Risk.HIGH, Risk.MEDIUM, Risk.LOW)

_log = get_logger("gatekeeper.store")

#: ``history`` looks at no more than this many requests per call.
HISTORY_SCAN = 10_000
_HISTORY_BATCH = 500

_STREAM_ID = re.compile(r"\d+(-\d+)?")


def _text(value: Any) -> str:
    """A reply as str. An agent's user may write its own keys: bytes that are not
    UTF-8 read as U+FFFD (an id that names no request), never as an error."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


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


def _agents(k: Keys, agent: str | None) -> Flow[list[str]]:
    """Every registered agent (or just ``agent``), sorted."""
    if agent is not None:
        return [agent]
    (raw,) = yield [("SMEMBERS", k.agents)]
    return agent_names(raw)


def get_many(k: Keys, ids: Sequence[str]) -> Flow[list[ApprovalRequest]]:
    """The requests with these ids, in order; ids with no request are skipped."""
    if not ids:
        return []
    (owners,) = yield [("HMGET", k.where, *ids)]
    found = [(rid, _text(o)) for rid, o in zip(ids, owners, strict=True) if o is not None]
    return (yield from _fetch(k, found))


def _listed(k: Keys, listed: Sequence[tuple[str, str]]) -> Flow[list[ApprovalRequest]]:
    """The requests of ``(id, agent)`` pairs read from agents' indexes, in order.

    An agent's user may write its own indexes: an id it lists that ``where``
    gives to another agent (or to none), or lists twice, is skipped, so it
    can't put another agent's request in its place in the queue or under its
    name.
    """
    if not listed:
        return []
    (owners,) = yield [("HMGET", k.where, *(rid for rid, _ in listed))]
    seen: set[str] = set()
    found = []
    for (rid, agent), owner in zip(listed, owners, strict=True):
        if owner is not None and _text(owner) == agent and rid not in seen:
            seen.add(rid)
            found.append((rid, agent))
    return (yield from _fetch(k, found))


def _fetch(k: Keys, found: list[tuple[str, str]]) -> Flow[list[ApprovalRequest]]:
    """Whole requests of ``(id, agent)`` pairs; one its agent's user garbled is skipped
    (and logged): a list shows every other request, ``get`` of it still fails."""
    if not found:
        return []
    cmds: list[Command] = []
    for rid, agent in found:
        a = k.of(agent)
        cmds += [("HGETALL", a.req(rid)), ("LRANGE", a.votes(rid), 0, -1), ("HGET", a.flags, rid)]
    replies = yield cmds
    triples = zip(found, replies[::3], replies[1::3], replies[2::3], strict=True)
    out = []
    for (rid, agent), fields, votes, flag in triples:
        if not fields:
            continue
        try:
            out.append(request_from_hash(fields, votes, agent, flag))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            _log.warning(
                "request %s of agent %s could not be read (%s): left out of the list; its "
                "agent's Redis user can write it, so treat it as tampering",
                quoted(rid),
                quoted(agent),
                type(exc).__name__,
            )
    return out


def _merged(replies: list[Any], agents: Sequence[str]) -> list[tuple[float, str, str]]:
    """``ZRANGE ... WITHSCORES`` replies of ``agents`` (one each) as one sorted list of
    (score, id, agent)."""
    out: list[tuple[float, str, str]] = []
    for reply, agent in zip(replies, agents, strict=True):
        out += [(float(score), _text(member), agent) for member, score in _pairs(reply)]
    out.sort()
    return out


def _pairs(reply: Any) -> list[tuple[Any, Any]]:
    if reply and isinstance(reply[0], (list, tuple)):
        return [(m, sc) for m, sc in reply]
    return list(zip(reply[::2], reply[1::2], strict=True))


def pending(k: Keys, now: dt.datetime, *, limit: int, offset: int) -> Flow[list[ApprovalRequest]]:
    """Pending, unexpired requests of every agent, oldest first."""
    agents = yield from _agents(k, None)
    limit, offset = max(limit, 0), max(offset, 0)
    if not agents or not limit:
        return []
    replies = yield [
        ("ZRANGE", k.of(a).pending, 0, offset + limit - 1, "WITHSCORES") for a in agents
    ]
    page = [(rid, a) for _, rid, a in _merged(replies, agents)][offset : offset + limit]
    requests = yield from _listed(k, page)
    return [r for r in requests if r.effective_status(now) is RequestStatus.PENDING]


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

    The per-risk indexes of each agent are scored by expiry, so ``score >
    now`` leaves out requests past their expiry that no transition has
    settled yet, both from the page and from the total. Each risk's entries
    of every agent are merged by expiry, then id.
    """
    risks = [r for r in RISKS_MOST_URGENT_FIRST if risk is None or r is Risk(risk)]
    agents = yield from _agents(k, agent)
    live = f"({ms(now)}"
    limit, offset = max(limit, 0), max(offset, 0)
    if not agents:
        return [], 0
    keys = [[k.of(a).pending_by_risk(r) for a in agents] for r in risks]
    if tool is None:
        flat = [key for per_risk in keys for key in per_risk]
        counts = [int(c) for c in (yield [("ZCOUNT", key, live, "+inf") for key in flat])]
        total = sum(counts)
        n = len(agents)
        ids: list[tuple[str, str]] = []
        skip = offset  # a risk wholly before the page is skipped by its count alone
        for i in range(len(risks)):
            in_risk = counts[i * n : (i + 1) * n]
            if skip >= sum(in_risk):
                skip -= sum(in_risk)
                continue
            room = limit - len(ids)
            if room <= 0:
                break
            ids += yield from _page_of(keys[i], agents, in_risk, live, skip, room)
            skip = 0
    else:
        flat = [key for per_risk in keys for key in per_risk]
        replies = yield [("ZRANGEBYSCORE", key, live, "+inf", "WITHSCORES") for key in flat]
        n = len(agents)
        ordered_pairs: list[tuple[str, str]] = []  # (agent, id), most urgent first
        for i in range(len(risks)):
            per_agent = replies[i * n : (i + 1) * n]
            merged = []
            for a, reply in zip(agents, per_agent, strict=True):
                merged += [(float(sc), _text(m), a) for m, sc in _pairs(reply)]
            merged.sort()
            ordered_pairs += [(a, rid) for _, rid, a in merged]
        cmds = [("HGET", k.of(a).owners, rid) for a, rid in ordered_pairs]
        owners = (yield cmds) if cmds else []
        matching = []
        for (a, rid), value in zip(ordered_pairs, owners, strict=True):
            if value is None:
                continue  # settled since the index was read
            _, _, t = owner_fields(_text(value))
            if t == tool:
                matching.append((rid, a))
        total = len(matching)
        ids = matching[offset : offset + limit]
    requests = yield from _listed(k, ids)
    return [r for r in requests if r.status is RequestStatus.PENDING], total


#: Below this offset into one risk, a page is read by merging every agent's first
#: ``offset + limit`` entries; from it on, by a pivot found from samples (:func:`_page_of`).
DEEP_OFFSET = 400
#: An agent's index up to this long is read whole to find a deep page's pivot; a longer
#: one is sampled at :func:`samples_for` evenly spaced ranks.
READ_WHOLE = 256


def samples_for(count: int) -> int:
    """How many ranks of an index of ``count`` live entries to sample for a deep page.

    Each sample is one command and costs the client about as much as reading
    30 entries (on a cluster pipeline more: a slot lookup per command); the
    final read takes about ``count / samples`` entries of the index. The two
    balance near ``sqrt(count / 30)``: 5 samples for 1,000 entries, 8 for
    2,000, and at most 32 (from about 31,000).
    """
    return max(4, min(32, math.isqrt(count // 30)))


def _page_of(
    keys: list[str], agents: list[str], counts: list[int], live: str, offset: int, limit: int
) -> Flow[list[tuple[str, str]]]:
    """``(id, agent)`` ``offset`` to ``offset + limit`` of the agents' indexes ``keys`` (one
    per agent of ``agents``) merged by (score, id).

    Near the front, each agent's first ``offset + limit`` entries are merged.
    Deeper in, that would make a page cost its offset (every agent's index read
    up to it), so instead: each agent's index is sampled (read whole when
    short), the highest sampled score with at most ``offset`` entries of all
    agents surely before it is the pivot, the entries before the pivot are
    counted (``ZCOUNT``), and only entries from the pivot on are read — about
    one sampling interval plus ``limit`` of each agent. Four round trips,
    whatever the offset; the same order as the full merge (equal scores by id,
    as Redis orders them within an index). ``counts``: each index's live
    entries (``score > now``, as ``live`` bounds them).
    """
    want = offset + limit

    def merged_from_the_front() -> Flow[list[tuple[str, str]]]:
        replies = yield [
            ("ZRANGEBYSCORE", key, live, "+inf", "WITHSCORES", "LIMIT", 0, want) for key in keys
        ]
        return [(rid, a) for _, rid, a in _merged(replies, agents)][offset:want]

    if offset < DEEP_OFFSET:
        return (yield from merged_from_the_front())
    # (rank, score) samples of each agent; whole indexes when short.
    plans: list[tuple[int, list[int] | None]] = []  # (count, ranks sampled; None: whole)
    cmds: list[Command] = []
    for key, c in zip(keys, counts, strict=True):
        if c <= READ_WHOLE:
            plans.append((c, None))
            cmds.append(("ZRANGEBYSCORE", key, live, "+inf", "WITHSCORES", "LIMIT", 0, c))
        else:
            n = samples_for(c)
            ranks = sorted({c * j // n for j in range(n)})
            plans.append((c, ranks))
            cmds += [
                ("ZRANGEBYSCORE", key, live, "+inf", "WITHSCORES", "LIMIT", r, 1) for r in ranks
            ]
    replies = yield cmds
    samples: list[tuple[list[float], list[int], int]] = []  # per agent: scores, ranks, count
    at = 0
    for c, sampled in plans:
        if sampled is None:
            scores = [float(sc) for _, sc in _pairs(replies[at])]
            samples.append((scores, list(range(len(scores))), len(scores)))
            at += 1
            continue
        got = [(r, _pairs(replies[at + i])) for i, r in enumerate(sampled)]
        at += len(sampled)
        pairs = [(r, float(p[0][1])) for r, p in got if p]
        samples.append(([sc for _, sc in pairs], [r for r, _ in pairs], c))

    def most_before(pivot: float) -> int:
        """At most how many entries of all agents score below ``pivot``: each agent's
        first sample at or above it has its rank's worth before it (all, if none)."""
        total = 0
        for scores, ranks, c in samples:
            j = bisect.bisect_left(scores, pivot)
            total += ranks[j] if j < len(ranks) else c
        return total

    candidates = sorted({sc for scores, _, _ in samples for sc in scores})
    pivot = None
    lo, hi = 0, len(candidates) - 1
    while lo <= hi:  # most_before grows with the pivot: the highest one within the offset
        mid = (lo + hi) // 2
        if most_before(candidates[mid]) <= offset:
            pivot, lo = candidates[mid], mid + 1
        else:
            hi = mid - 1
    if pivot is None:
        return (yield from merged_from_the_front())
    at_pivot = format(pivot, ".17g")
    before = [int(c) for c in (yield [("ZCOUNT", key, live, f"({at_pivot}") for key in keys])]
    skip = offset - sum(before)
    if skip < 0:  # the indexes changed since they were sampled: the plain way
        return (yield from merged_from_the_front())
    replies = yield [
        ("ZRANGEBYSCORE", key, at_pivot, "+inf", "WITHSCORES", "LIMIT", 0, skip + limit)
        for key in keys
    ]
    return [(rid, a) for _, rid, a in _merged(replies, agents)][skip : skip + limit]


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

    Walks each agent's ``idx:requests`` from the newest (bounded by
    ``since``/``until`` in the range itself), merging the agents by creation
    time, reading only the fields the filters need, and fetches whole
    requests for the page alone.
    """
    wanted = None if status is None else RequestStatus(status)
    now_ms = ms(now)
    top = f"({ms(until)}" if until is not None else "+inf"
    bottom = ms(since) if since is not None else "-inf"
    limit, offset = max(limit, 0), max(offset, 0)
    agents = yield from _agents(k, agent)
    if not agents or not limit:
        return []
    newest = _Newest(k, agents, top, bottom)
    page: list[tuple[str, str]] = []
    matched = scanned = 0
    while scanned < HISTORY_SCAN and len(page) < limit:
        chunk = yield from newest.take(min(_HISTORY_BATCH, HISTORY_SCAN - scanned))
        if not chunk:
            break
        scanned += len(chunk)
        cmds: list[Command] = [
            ("HMGET", k.of(a).req(rid), "agent", "tool", "status", "expires") for _, rid, a in chunk
        ]
        if approver is not None:
            cmds += [("LRANGE", k.of(a).votes(rid), 0, -1) for _, rid, a in chunk]
        found_all = yield cmds
        found = found_all[: len(chunk)]
        votes = found_all[len(chunk) :] or [None] * len(chunk)
        for (_, rid, a), stored, cast in zip(chunk, found, votes, strict=True):
            fields = [a.encode(), *stored[1:]]  # the agent is the one whose keys hold it
            if not _history_match(fields, cast, now_ms, agent, tool, wanted, approver):
                continue
            if matched >= offset and len(page) < limit:
                page.append((rid, a))
            matched += 1
    return (yield from _listed(k, page))


class _Newest:
    """Every agent's ``idx:requests`` walked newest first, merged, read 500 at a time.

    An agent's next batch is read only when its last one is used up, so a
    page of recent history costs a few hundred ids per agent, not the whole scan.
    """

    def __init__(self, k: Keys, agents: list[str], top: str, bottom: int | str) -> None:
        self._k, self._top, self._bottom = k, top, bottom
        self._ready: dict[str, deque[tuple[float, str]]] = {a: deque() for a in agents}
        self._read = dict.fromkeys(agents, 0)
        self._done: set[str] = set()

    def take(self, n: int) -> Flow[list[tuple[float, str, str]]]:
        """Up to ``n`` more ``(created, id, agent)``, newest first."""
        out: list[tuple[float, str, str]] = []
        while len(out) < n:
            empty = [a for a, q in self._ready.items() if not q and a not in self._done]
            if empty:  # the merge is in order only while every live agent has one ready
                replies = yield [
                    (
                        "ZREVRANGEBYSCORE",
                        self._k.of(a).requests,
                        self._top,
                        self._bottom,
                        "WITHSCORES",
                        "LIMIT",
                        self._read[a],
                        _HISTORY_BATCH,
                    )
                    for a in empty
                ]
                for a, reply in zip(empty, replies, strict=True):
                    got = [(float(sc), _text(m)) for m, sc in _pairs(reply)]
                    self._ready[a].extend(got)
                    self._read[a] += len(got)
                    if len(got) < _HISTORY_BATCH:
                        self._done.add(a)
            live = [a for a, q in self._ready.items() if q]
            if not live:
                break
            agent = max(live, key=lambda a: self._ready[a][0])
            created, rid = self._ready[agent].popleft()
            out.append((created, rid, agent))
        return out


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
    if s is None or expires is None or not expires.isdigit():
        return False  # indexed but gone (or garbled by its agent's user)
    if (agent is not None and a != agent) or (tool is not None and t != tool):
        return False
    if status is not None:
        if s == RequestStatus.PENDING.value and now_ms >= int(expires):
            s = RequestStatus.EXPIRED.value  # what any transition would find now
        if s != status.value:
            return False
    if approver is not None:
        return any(_vote_by(v) == approver for v in votes or ())
    return True


def _vote_by(raw: bytes) -> Any:
    """Who cast a stored vote; None for one that is not a vote."""
    try:
        vote = json.loads(raw)
    except ValueError:
        return None
    return vote.get("approver") if isinstance(vote, dict) else None


def check_entry_id(before: str) -> None:
    """Refuse what is not an audit entry id (``ms-seq``, ``c/ms-seq``) with a ValueError."""
    _, sid = entry_chain(before)
    if not _STREAM_ID.fullmatch(sid):
        raise ValueError(f"not an audit entry id: {before!r}")


def audit_page(
    k: Keys, *, before: str | None, limit: int, chains: int = 1
) -> Flow[list[StoredEvent]]:
    """Sealed entries of every chain newest first, strictly older than entry ``before``
    in their order (sealed ms, sequence, chain); the caller flushes."""
    top_chain, sid = (0, "+") if before is None else entry_chain(before)
    if before is not None:
        check_entry_id(before)
    if limit <= 0 or (before is not None and chains == 1 and not sid.strip("0-")):
        return []  # nothing is older than the first possible id (and "(0-0" is refused)
    read: list[int] = []  # the chains asked, in the order of the commands
    cmds: list[Command] = []
    for c in range(chains):
        if before is None:
            top = "+"
        elif c < top_chain:
            top = sid  # the same id in an earlier chain comes before
        elif sid.strip("0-"):
            top = f"({sid}"
        else:
            continue  # nothing of this chain is older than its first possible id
        read.append(c)
        cmds.append(("XREVRANGE", k.chain(c).audit, top, "-", "COUNT", limit))
    if not cmds:
        return []
    replies = yield cmds
    found = [
        StoredEvent(chained_id(c, _text(eid)), fields.get(b"b", b""), _text(fields.get(b"h", b"")))
        for c, raw in zip(read, replies, strict=True)
        for eid, fields in raw
    ]
    found.sort(key=lambda e: entry_order(e.entry_id), reverse=True)
    return found[:limit]
