"""The console's HTML pages: the queue, and the router that includes every other page.

Every endpoint is a plain ``def`` (FastAPI runs it in the threadpool) using the
blocking Gatekeeper/Store API. State changes are POSTs that carry the
session's CSRF token and answer with a redirect (303) to the page to read next;
a refused decision renders the page again with the reason and changes
nothing.

One request's page lives in :mod:`._request`, the decisions posted from it
(approve, deny, respond, edit) in :mod:`._decide`; the overview in
:mod:`._overview`; history, audit, agents and policy in :mod:`._browse`; the
transparency report in :mod:`._report_page`; standing approvals (the grants
page) in :mod:`._grants_page`; limit usage in :mod:`._limits_page`. This router
includes theirs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from .._gate import Gatekeeper
from ..models import ApprovalRequest, Risk
from ._browse import PAGE_SIZE, Gate, Signed
from ._browse import router as browse_router
from ._decide import router as decide_router
from ._deps import render, templates
from ._grants_page import router as grants_router
from ._limits_page import router as limits_router
from ._overview import router as overview_router
from ._present import compact, offset_of, page_url, prose, prose_line, shown, time_left
from ._report_page import router as report_router
from ._request import fragment
from ._request import router as request_router

__all__ = ["router"]

templates.env.filters["visible"] = shown
templates.env.filters["prose"] = prose
templates.env.filters["prose_line"] = prose_line

router = APIRouter(include_in_schema=False)
router.include_router(overview_router)
router.include_router(browse_router)
router.include_router(request_router)
router.include_router(decide_router)
router.include_router(report_router)
router.include_router(grants_router)
router.include_router(limits_router)


# -- the queue ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class QueueRow:
    req: ApprovalRequest
    preview: str
    left: str


def _queue_context(
    gate: Gatekeeper, agent: str, tool: str, risk: str, offset: int
) -> dict[str, Any]:
    filters = {"agent": agent.strip(), "tool": tool.strip(), "risk": risk.strip()}
    error = None
    level: Risk | None = None
    if filters["risk"]:
        try:
            level = Risk(filters["risk"])
        except ValueError:
            error = f"unknown risk {filters['risk']!r}; choose low, medium, high or critical"
            filters["risk"] = ""
    items, total = gate.store.queue(
        agent=filters["agent"] or None,
        tool=filters["tool"] or None,
        risk=level,
        limit=PAGE_SIZE,
        offset=offset,
    )
    now = gate.clock.now()
    rows = [QueueRow(r, _preview(r), time_left(r.expires_at, now)) for r in items]
    prev_url = page_url("/", filters, max(offset - PAGE_SIZE, 0)) if offset else None
    more = offset + len(items) < total
    next_url = page_url("/", filters, offset + PAGE_SIZE) if more else None
    return {
        "rows": rows,
        "total": total,
        "offset": offset,
        "filters": filters,
        "risks": [r.value for r in Risk],
        "now": now,
        "error": error,
        "prev_url": prev_url,
        "next_url": next_url,
        "fragment_url": page_url("/fragments/queue", filters, offset),
    }


@router.get("/")
def queue(
    request: Request,
    gate: Gate,
    _viewer: Signed,
    agent: str = "",
    tool: str = "",
    risk: str = "",
    offset: str = "",
) -> Response:
    context = _queue_context(gate, agent, tool, risk, offset_of(offset))
    return render(request, "queue.html", **context)


@router.get("/fragments/queue")
def queue_fragment(
    request: Request,
    gate: Gate,
    _viewer: Signed,
    agent: str = "",
    tool: str = "",
    risk: str = "",
    offset: str = "",
) -> Response:
    context = _queue_context(gate, agent, tool, risk, offset_of(offset))
    return fragment(request, "_queue_live.html", context)


def _preview(req: ApprovalRequest) -> str:
    """The queue's one-line look at a request: a question's words, else its arguments."""
    if req.question is not None:
        return prose_line(req.question, 160)
    return compact(req.args, 160)
