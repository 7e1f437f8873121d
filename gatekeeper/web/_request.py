"""One request's page: what will run and why it was held, its live state and timeline.

The decision forms on it post to :mod:`._decide`, which renders this page
again (:func:`detail`) with the reason when a decision is refused.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import PlainTextResponse, Response

from .._decisions import MAX_RESPONSE_CHARS
from .._errors import NotAuthorized
from .._gate import Gatekeeper
from .._text import call_lookalikes, lookalike_warnings
from ..models import ApprovalRequest, AuditEvent, RequestStatus
from ._access import decider
from ._browse import Gate, Signed, newest_entries
from ._deps import Refused, Viewer, render, templates
from ._grants_page import grant_offer
from ._present import (
    args_view,
    editable_json,
    prose_line,
    request_events,
    shown,
    time_left,
)

__all__ = ["detail", "fragment", "router"]

router = APIRouter(include_in_schema=False)

TIMELINE_SCAN = 10_000  # audit events looked through for one request's timeline
QUESTION_SHOWN = 16_000  # characters of a question shown on its page; the rest behind a link


def fragment(request: Request, name: str, context: dict[str, Any]) -> Response:
    """A live part of a page (queue, request state), never cached.

    Not :func:`render`: a fragment must not consume the flash meant for the
    next full page.
    """
    response = templates.TemplateResponse(request, name, context)
    response.headers["Cache-Control"] = "no-store"
    return response


# -- one request ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class TimelineEntry:
    """One line of a request's timeline: our words in ``summary``, others' words in ``said``.

    ``said`` holds ``(label, text)`` pairs of text someone else wrote (the
    agent's reason, a tool's outcome, an error, a comment), each kept to one
    line with ``⏎`` for its line breaks; the template quotes each one.
    """

    at: Any
    kind: str
    actor: str
    summary: str
    said: tuple[tuple[str, str], ...] = ()


# data keys holding someone else's words
_SAID = ("comment", "response", "reason", "outcome", "error")


def _summary(event: AuditEvent) -> str:
    data = event.data
    parts: list[str] = []
    if event.kind.startswith("call."):
        parts.append(f"{data.get('verdict', '?')}, {data.get('risk', '?')} risk")
    if "approvals" in data:
        parts.append(f"{data.get('approvals')} of {data.get('quorum')} approvals")
    if "edited_args" in data:
        parts.append("with edited arguments")
    if data.get("channel"):
        parts.append(f"channel: {data['channel']}")
    return shown("; ".join(parts), 600)


def _said(event: AuditEvent) -> tuple[tuple[str, str], ...]:
    return tuple((key, prose_line(event.data[key])) for key in _SAID if event.data.get(key))


def _timeline(gate: Gatekeeper, req: ApprovalRequest) -> list[TimelineEntry]:
    gate.store.flush()
    events = request_events(newest_entries(gate, TIMELINE_SCAN), req)
    return [TimelineEntry(e.at, e.kind, e.actor, _summary(e), _said(e)) for e in events]


def _may_decide(gate: Gatekeeper, viewer: Viewer, req: ApprovalRequest) -> str | None:
    """None when ``viewer`` may decide ``req``; otherwise why not, in words."""
    try:
        gate.approver(decider(gate, viewer, req), req)
    except (Refused, NotAuthorized) as exc:
        return f"You can't decide this request: {exc.message}"
    return None


def _detail_context(
    gate: Gatekeeper, viewer: Viewer, req: ApprovalRequest, shown_digest: str | None = None
) -> dict[str, Any]:
    now = gate.clock.now()
    timeline = _timeline(gate, req)
    odd = call_lookalikes(req.call.tool, req.call.agent, req.args)
    return {
        "req": req,
        "now": now,
        "tampering": gate.trust_problem(req),
        "left": time_left(req.expires_at, now),
        "lookalikes": {where: lookalike_warnings(found, 20) for where, found in odd.items()},
        "timeline": timeline,
        # A channel that could not tell anyone (Slack down, a webhook refusing):
        # shown at the top, so whoever opens the request knows others may not have seen it.
        "undelivered": [e for e in timeline if e.kind == "channel.failed"],
        "stale": shown_digest is not None and shown_digest != req.args_digest,
        "fragment_url": f"/fragments/request/{urllib.parse.quote(req.id)}?"
        + urllib.parse.urlencode({"digest": req.args_digest}),
    }


def detail(
    request: Request,
    gate: Gatekeeper,
    viewer: Viewer,
    req: ApprovalRequest,
    *,
    status_code: int = 200,
    error: str | None = None,
    edit_text: str | None = None,
    approve_comment: str = "",
    deny_comment: str = "",
    response_text: str = "",
    grant_form: Mapping[str, Any] | None = None,
) -> Response:
    """The request's page; the ``*_text``/``*_comment``/``grant_form`` refill refused forms.

    ``grant_form`` holds the grant fields posted (``grant_for``, ``bounds``,
    ``comment``) when a standing approval was refused.
    """
    context = _detail_context(gate, viewer, req)
    view = args_view(req.args)
    refill = grant_form or {}
    context.update(
        args=view,
        editable="" if view.truncated else editable_json(req.args),
        open=req.effective_status(context["now"]) is RequestStatus.PENDING,
        refusal=_may_decide(gate, viewer, req),
        # A question is always answerable; a call only where its rule allows a written answer.
        may_respond=gate._may_respond(req),
        max_response=MAX_RESPONSE_CHARS,
        question_cut=len(req.question or "") > QUESTION_SHOWN,
        question_shown=QUESTION_SHOWN,
        error=error,
        edit_text=edit_text,
        approve_comment=approve_comment,
        deny_comment=deny_comment,
        response_text=response_text,
        # Approve, and let matching calls run: only where the request can carry it.
        grant=None
        if view.truncated
        else grant_offer(
            gate, req, chosen=refill.get("grant_for", ""), bounds=refill.get("bounds", ())
        ),
        grant_comment=refill.get("comment", ""),
        # Why the rules naming the tool did not match: computed for the person, not at classify.
        misses=gate.policy.misses(req.call),
    )
    return render(request, "request.html", status_code=status_code, **context)


@router.get("/requests/{request_id}")
def request_page(request: Request, gate: Gate, viewer: Signed, request_id: str) -> Response:
    return detail(request, gate, viewer, gate.get(request_id))


@router.get("/fragments/request/{request_id}")
def request_fragment(
    request: Request, gate: Gate, viewer: Signed, request_id: str, digest: str = ""
) -> Response:
    req = gate.get(request_id)
    return fragment(
        request, "_request_live.html", _detail_context(gate, viewer, req, digest or None)
    )


@router.get("/requests/{request_id}/args")
def request_args(gate: Gate, _viewer: Signed, request_id: str) -> Response:
    """The whole arguments as JSON text; hidden characters are ``\\uXXXX`` escapes."""
    req = gate.get(request_id)
    return PlainTextResponse(
        editable_json(req.args) + "\n",
        media_type="text/plain; charset=utf-8",
        headers={
            "X-Content-Type-Options": "nosniff",
            "Content-Disposition": "inline",
            "Cache-Control": "no-store",
        },
    )
