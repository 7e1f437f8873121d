"""The overview page: what needs a person now, and how today went, at a glance.

Everything comes from the store's read APIs, each read capped (the caps are
module constants and the page says when one was reached), so opening the page
costs the same on a store with a year of audit log as on an empty one:

- pending now: the :data:`PENDING_SCAN` most urgent of the queue, shown oldest first;
- decisions today (UTC): requests asked since yesterday 00:00 UTC, at most
  :data:`DECIDED_SCAN`, decided (or expired) since today 00:00 UTC; a request
  a person answered instead of running (``responded``) counts as answered;
- calls per agent over the last 24 hours: the newest :data:`CALLS_SCAN` audit
  events, stopping at the first one older than that.

The chart is SVG drawn by the template from the numbers here: no script, no
inline style (the console's CSP forbids both); colours come from style.css.
"""

from __future__ import annotations

import datetime as dt
import math
import statistics
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from pydantic import ValidationError
from starlette.responses import Response

from .._gate import Gatekeeper
from .._text import visible
from ..audit import parse_event
from ..models import ApprovalRequest, Halt, RequestStatus
from ._agents import _VERDICT
from ._browse import Gate, Signed, newest_entries
from ._deps import render
from ._present import time_left

__all__ = ["CALLS_SCAN", "DECIDED_SCAN", "PENDING_SCAN", "duration", "router"]

router = APIRouter(include_in_schema=False)

PENDING_SCAN = 500  # queue entries read (most urgent first) to find the oldest
PENDING_SHOWN = 10
DECIDED_SCAN = 1_000  # requests asked since yesterday read for today's decisions
CALLS_SCAN = 5_000  # newest audit events read for the last day's calls
CHART_AGENTS = 8  # bars drawn; the rest are summed into one line
LABEL_CHARS = 40  # of a bar's label: SVG text does not wrap (the <title> has the whole name)

# How each status a person decided counts today (an approved call may have run since).
_DECIDED = {
    RequestStatus.APPROVED: "approved",
    RequestStatus.EXECUTING: "approved",
    RequestStatus.EXECUTED: "approved",
    RequestStatus.FAILED: "approved",
    RequestStatus.DENIED: "denied",
    RequestStatus.RESPONDED: "answered",
}


def duration(seconds: float) -> str:
    """``42s``, ``4m05s``, ``2h10m`` or ``3d04h``: an age or a latency, short."""
    s = max(int(seconds), 0)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def percentile(values: list[float], p: float) -> float:
    """The nearest-rank ``p``-th percentile of non-empty ``values``."""
    ordered = sorted(values)
    return ordered[max(math.ceil(p / 100 * len(ordered)) - 1, 0)]


# -- pending now ------------------------------------------------------------------------
@dataclass(frozen=True)
class PendingRow:
    req: ApprovalRequest
    age: str
    left: str


@dataclass(frozen=True)
class Pending:
    rows: list[PendingRow]
    total: int
    scanned: int

    @property
    def capped(self) -> bool:
        return self.total > self.scanned


def pending_now(gate: Gatekeeper, now: dt.datetime) -> Pending:
    items, total = gate.store.queue(limit=PENDING_SCAN)
    oldest = sorted(items, key=lambda r: (r.created_at, r.id))[:PENDING_SHOWN]
    rows = [
        PendingRow(r, duration((now - r.created_at).total_seconds()), time_left(r.expires_at, now))
        for r in oldest
    ]
    return Pending(rows, total, len(items))


# -- decisions today ----------------------------------------------------------------------
@dataclass(frozen=True)
class Today:
    since: dt.datetime
    approved: int
    denied: int
    answered: int  # responded: a person wrote the result (or answered a question)
    expired: int
    cancelled: int
    median: str | None  # approval latency: asked -> decided by a person
    p90: str | None
    scanned: int

    @property
    def decided(self) -> int:
        return self.approved + self.denied + self.answered

    @property
    def capped(self) -> bool:
        return self.scanned >= DECIDED_SCAN


def decisions_today(gate: Gatekeeper, now: dt.datetime) -> Today:
    midnight = now.astimezone(dt.timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    # A request decided today may have been asked yesterday (long timeouts); older is rare.
    items = gate.store.history(since=midnight - dt.timedelta(days=1), limit=DECIDED_SCAN)
    counts = dict.fromkeys(("approved", "denied", "answered", "expired", "cancelled"), 0)
    latencies: list[float] = []
    for req in items:
        status = req.effective_status(now)
        at = req.decided_at or (req.expires_at if status is RequestStatus.EXPIRED else None)
        if at is None or at < midnight:
            continue
        decided = _DECIDED.get(status)
        if decided is not None:
            counts[decided] += 1
            latencies.append((at - req.created_at).total_seconds())
        elif status in (RequestStatus.EXPIRED, RequestStatus.CANCELLED):
            counts[status.value] += 1
    return Today(
        since=midnight,
        median=duration(statistics.median(latencies)) if latencies else None,
        p90=duration(percentile(latencies, 90)) if latencies else None,
        scanned=len(items),
        **counts,
    )


# -- calls per agent over the last day ------------------------------------------------------
@dataclass(frozen=True)
class Bar:
    """One agent's bar: counts and the chart geometry (viewBox units) of its three parts."""

    agent: str
    label: str  # the name as drawn: hidden characters shown, cut to fit one line
    allowed: int
    held: int
    denied: int
    y: float
    parts: tuple[tuple[str, float, float], ...]  # (kind, x, width)

    @property
    def total(self) -> int:
        return self.allowed + self.held + self.denied


@dataclass(frozen=True)
class Chart:
    bars: list[Bar]
    others: int  # agents beyond the drawn bars
    others_calls: int
    calls: int
    scanned: int
    capped: bool  # stopped at CALLS_SCAN before reaching events a day old
    width: int = 400
    row: int = 44
    bar_height: int = 16
    label_room: int = 56  # right of the bars, for the total

    @property
    def height(self) -> int:
        return max(len(self.bars), 1) * self.row


def _calls_by_agent(gate: Gatekeeper, since: dt.datetime) -> tuple[dict[str, list[int]], int, bool]:
    counts: dict[str, list[int]] = {}
    scanned = 0
    for entry in newest_entries(gate, CALLS_SCAN):
        scanned += 1
        try:
            event = parse_event(entry.body, entry.hash)
        except (ValueError, KeyError, TypeError, ValidationError):
            continue  # the audit page shows unreadable entries; here they count for nothing
        if event.at < since:
            return counts, scanned, False
        kind = _VERDICT.get(event.kind)
        if kind is None or not event.agent:
            continue
        row = counts.setdefault(event.agent, [0, 0, 0])
        row[("allowed", "held", "denied").index(kind)] += 1
    return counts, scanned, scanned >= CALLS_SCAN


def calls_chart(gate: Gatekeeper, now: dt.datetime) -> Chart:
    counts, scanned, capped = _calls_by_agent(gate, now - dt.timedelta(days=1))
    ranked = sorted(counts.items(), key=lambda kv: (-sum(kv[1]), kv[0]))
    shown, rest = ranked[:CHART_AGENTS], ranked[CHART_AGENTS:]
    chart = Chart([], len(rest), sum(sum(c) for _, c in rest), 0, scanned, capped)
    biggest = max((sum(c) for _, c in shown), default=0)
    room = chart.width - chart.label_room
    bars = []
    for i, (agent, (allowed, held, denied)) in enumerate(shown):
        x = 0.0
        parts = []
        for kind, n in (("allowed", allowed), ("held", held), ("denied", denied)):
            if n:
                w = max(room * n / biggest, 2.0)  # a single call still shows
                parts.append((kind, round(x, 1), round(w, 1)))
                x += w
        label = visible(agent)
        if len(label) > LABEL_CHARS:
            label = label[: LABEL_CHARS - 1] + "…"
        bars.append(Bar(agent, label, allowed, held, denied, i * chart.row, tuple(parts)))
    total = sum(sum(c) for c in counts.values())
    return Chart(bars, chart.others, chart.others_calls, total, scanned, capped)


def _halts(gate: Gatekeeper) -> list[Halt]:
    return sorted(gate.store.halts(), key=lambda h: h.at, reverse=True)


def overview_context(gate: Gatekeeper) -> dict[str, Any]:
    now = gate.clock.now()
    gate.store.flush()
    return {
        "now": now,
        "pending": pending_now(gate, now),
        "today": decisions_today(gate, now),
        "halts": _halts(gate),
        "chart": calls_chart(gate, now),
        "caps": {"pending": PENDING_SCAN, "decided": DECIDED_SCAN, "calls": CALLS_SCAN},
    }


@router.get("/overview")
def overview(request: Request, gate: Gate, _viewer: Signed) -> Response:
    return render(request, "overview.html", **overview_context(gate))
