"""The console's Limits page: current usage of every limit of the policy, per agent.

It shows what ``gatekeeper limits`` prints, counted by the same
:func:`~gatekeeper._usage.limit_usage` the store's own counting agrees with:
for each limit of the policy, what it counts and what happens past it, then
one row per agent (and session, tool or argument value, as the limit's
``per`` says) with the amount used in the window. Anyone signed in with the
``read`` scope may see it; it changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from .._gate import Gatekeeper
from .._usage import LimitUsage, amount, limit_usage, span
from ..policy import LimitRule
from ._browse import Gate, Signed
from ._deps import render

__all__ = ["router"]

router = APIRouter(include_in_schema=False)


@dataclass(frozen=True)
class UsageRow:
    """One key's usage as the page shows it."""

    agent: str
    per: str
    part: str  # the key's own part: a digest for sessions, tools and values
    used: str  # "3/20"
    percent: int  # 0..100, for the meter
    full: bool


@dataclass(frozen=True)
class LimitView:
    """One limit of the policy with its rows."""

    rule: LimitRule
    counts: str  # what it counts, as the policy says it
    rows: list[UsageRow]


def _counts(rule: LimitRule) -> str:
    if rule.kind == "rate":
        return f"at most {rule.rate} calls"
    if rule.kind == "budget":
        return f"{rule.sum} adds up to at most {amount(rule.max or 0)} per {span(rule.window or 0)}"
    return f"at most {rule.concurrent} running at once"


def _row(use: LimitUsage) -> UsageRow:
    percent = 100 if use.max <= 0 else min(100, round(100 * use.used / use.max))
    part = "" if use.per in ("agent", "all agents") else use.part.split(":", 1)[-1]
    return UsageRow(
        agent=use.agent,
        per=use.per,
        part=part,
        used=f"{amount(use.used)}/{amount(use.max)}",
        percent=percent,
        full=use.full,
    )


def limit_views(gate: Gatekeeper, agent: str = "") -> list[LimitView]:
    """Every limit of the policy, in the policy's order, with its current usage."""
    usage = limit_usage(gate.policy, gate.store.behaviour_usage(), gate.clock.now())
    wanted = agent.strip()
    views = []
    for rule in gate.policy.limits:
        rows = [_row(u) for u in usage if u.limit == rule.id and (not wanted or u.agent == wanted)]
        views.append(LimitView(rule=rule, counts=_counts(rule), rows=rows))
    return views


@router.get("/limits")
def limits(
    request: Request,
    gate: Gate,
    _viewer: Signed,
    agent: Annotated[str, Query(max_length=200)] = "",
) -> Response:
    return render(request, "limits.html", views=limit_views(gate, agent), agent=agent.strip())
