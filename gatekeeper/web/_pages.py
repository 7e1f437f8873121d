"""The console's HTML pages: the queue, one request and its decisions, edit-and-approve.

Every endpoint is a plain ``def`` (FastAPI runs it in the threadpool) using the
blocking Gatekeeper/Store API. State changes are POSTs that carry the
session's CSRF token and answer with a redirect (303) to the page to read next;
a refused decision renders the page again with the reason and changes
nothing. A decision binds to the digest of the arguments the page showed.

The overview lives in :mod:`._overview`; history, audit, agents and policy
in :mod:`._browse`; this router includes theirs.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response

from .._decisions import MAX_RESPONSE_CHARS
from .._errors import (
    GatekeeperError,
    InvalidToolCall,
    NotAuthorized,
    TransitionRefused,
)
from .._gate import Gatekeeper
from .._text import call_lookalikes, lookalike_warnings
from ..models import ApprovalRequest, AuditEvent, RequestStatus, Risk
from ._access import decider, require_shown_in_full
from ._browse import PAGE_SIZE, Csrf, Gate, Signed, newest_entries
from ._browse import router as browse_router
from ._deps import Refused, Viewer, flash, render, templates
from ._overview import router as overview_router
from ._present import (
    ArgsError,
    args_view,
    compact,
    diff_args,
    editable_json,
    offset_of,
    page_url,
    parse_args_json,
    prose,
    prose_line,
    request_events,
    shown,
    time_left,
)

__all__ = ["router"]

templates.env.filters["visible"] = shown
templates.env.filters["prose"] = prose
templates.env.filters["prose_line"] = prose_line

router = APIRouter(include_in_schema=False)
router.include_router(overview_router)
router.include_router(browse_router)

TIMELINE_SCAN = 10_000  # audit events looked through for one request's timeline
QUESTION_SHOWN = 16_000  # characters of a question shown on its page; the rest behind a link
_DIGEST = re.compile(r"^[0-9a-f]{64}$")

FormText = Annotated[str, Form(max_length=20_000)]


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
    return _fragment(request, "_queue_live.html", context)


def _preview(req: ApprovalRequest) -> str:
    """The queue's one-line look at a request: a question's words, else its arguments."""
    if req.question is not None:
        return prose_line(req.question, 160)
    return compact(req.args, 160)


def _fragment(request: Request, name: str, context: dict[str, Any]) -> Response:
    # Not render(): a fragment must not consume the flash meant for the next full page.
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


def _detail(
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
) -> Response:
    context = _detail_context(gate, viewer, req)
    view = args_view(req.args)
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
        # Why the rules naming the tool did not match: computed for the person, not at classify.
        misses=gate.policy.misses(req.call),
    )
    return render(request, "request.html", status_code=status_code, **context)


@router.get("/requests/{request_id}")
def request_page(request: Request, gate: Gate, viewer: Signed, request_id: str) -> Response:
    return _detail(request, gate, viewer, gate.get(request_id))


@router.get("/fragments/request/{request_id}")
def request_fragment(
    request: Request, gate: Gate, viewer: Signed, request_id: str, digest: str = ""
) -> Response:
    req = gate.get(request_id)
    return _fragment(
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


# -- decisions -------------------------------------------------------------------------------------
def _digest_or_refuse(digest: str) -> str:
    if not _DIGEST.match(digest):
        raise Refused(
            400,
            "no_digest",
            "the form does not say which arguments you reviewed; reload the request and try again",
        )
    return digest


def _decided(request: Request, req: ApprovalRequest, message: str) -> Response:
    response = RedirectResponse(f"/requests/{urllib.parse.quote(req.id)}", status_code=303)
    flash(response, request, message)
    return response


def _outcome(req: ApprovalRequest, edited: bool = False) -> str:
    what = "with edited arguments " if edited else ""
    if req.status is RequestStatus.PENDING:
        return (
            f"Your approval {what}is recorded: {len(req.approvals)} of {req.quorum} approvals; "
            "waiting for more."
        )
    return f"Approved {what}— {req.call.tool} may run now."


def _refusal_status(exc: GatekeeperError) -> int:
    if isinstance(exc, NotAuthorized):
        return 403
    if isinstance(exc, TransitionRefused):
        return 409
    return 422


@router.post("/requests/{request_id}/approve", dependencies=[Csrf])
def approve(
    request: Request,
    gate: Gate,
    viewer: Signed,
    request_id: str,
    digest: FormText = "",
    comment: FormText = "",
) -> Response:
    req = gate.get(request_id)
    approver = decider(gate, viewer, req)
    require_shown_in_full(req, None)
    expect = _digest_or_refuse(digest)
    try:
        after = gate.approve(
            req.id,
            approver=approver,
            comment=comment.strip() or None,
            via=viewer.via,
            expect_digest=expect,
        )
    except (NotAuthorized, TransitionRefused, InvalidToolCall) as exc:
        return _detail(
            request,
            gate,
            viewer,
            gate.get(request_id),
            status_code=_refusal_status(exc),
            error=exc.message,
            approve_comment=comment,
        )
    return _decided(request, after, _outcome(after))


@router.post("/requests/{request_id}/deny", dependencies=[Csrf])
def deny(
    request: Request,
    gate: Gate,
    viewer: Signed,
    request_id: str,
    digest: FormText = "",
    comment: FormText = "",
) -> Response:
    req = gate.get(request_id)
    approver = decider(gate, viewer, req)
    if not comment.strip():
        return _detail(
            request,
            gate,
            viewer,
            req,
            status_code=422,
            error="A comment is required to deny: the agent reads it.",
        )
    try:
        after = gate.deny(req.id, approver=approver, comment=comment.strip(), via=viewer.via)
    except (NotAuthorized, TransitionRefused) as exc:
        return _detail(
            request,
            gate,
            viewer,
            gate.get(request_id),
            status_code=_refusal_status(exc),
            error=exc.message,
            deny_comment=comment,
        )
    if after.kind == "question":
        return _decided(request, after, "Declined the question. The agent reads your reason.")
    return _decided(request, after, f"Denied {after.call.tool}. The agent reads your comment.")


@router.post("/requests/{request_id}/respond", dependencies=[Csrf])
def respond(
    request: Request,
    gate: Gate,
    viewer: Signed,
    request_id: str,
    digest: FormText = "",
    response: FormText = "",
) -> Response:
    """Answer in place of running the tool (or answer a question): the agent gets the text."""
    req = gate.get(request_id)
    approver = decider(gate, viewer, req)
    if not response.strip():
        return _detail(
            request,
            gate,
            viewer,
            req,
            status_code=422,
            error="A response is required: write the result the agent gets.",
        )
    try:
        after = gate.respond(req.id, approver=approver, response=response, via=viewer.via)
    except ValueError as exc:  # over the length limit
        return _detail(
            request, gate, viewer, req, status_code=422, error=str(exc), response_text=response
        )
    except (NotAuthorized, TransitionRefused) as exc:
        return _detail(
            request,
            gate,
            viewer,
            gate.get(request_id),
            status_code=_refusal_status(exc),
            error=exc.message,
            response_text=response,
        )
    if after.kind == "question":
        return _decided(request, after, "Answered the question. The agent gets your text.")
    return _decided(
        request,
        after,
        f"Answered {after.call.tool} instead of running it. The agent gets your text.",
    )


@router.post("/requests/{request_id}/edit", dependencies=[Csrf])
def edit(
    request: Request,
    gate: Gate,
    viewer: Signed,
    request_id: str,
    digest: FormText = "",
    args: Annotated[str, Form()] = "",
) -> Response:
    req = gate.get(request_id)
    decider(gate, viewer, req)
    if req.kind == "question":  # nothing to edit before approving: it is never approved
        return _detail(
            request,
            gate,
            viewer,
            req,
            status_code=409,
            error=f"can't edit request {req.id}: it is a question from the agent; "
            "answer it or decline it",
        )
    require_shown_in_full(req, None)
    expect = _digest_or_refuse(digest)
    try:
        if req.args_digest != expect:
            raise ArgsError(
                "the arguments changed since you loaded the page; review the new ones first"
            )
        edited = parse_args_json(args, gate.max_args_bytes)
        changes = diff_args(req.args, edited)
        if not changes:
            raise ArgsError("the edited arguments are the same as the original; use Approve")
    except ArgsError as exc:
        return _detail(request, gate, viewer, req, status_code=422, error=str(exc), edit_text=args)
    return render(
        request,
        "edit_confirm.html",
        req=req,
        changes=changes,
        edited=args_view(edited),
        digest=expect,
        reshaped=set(edited) != set(req.args),
        args_json=json.dumps(edited, sort_keys=True, separators=(",", ":")),
    )


@router.post("/requests/{request_id}/edit/confirm", dependencies=[Csrf])
def edit_confirm(
    request: Request,
    gate: Gate,
    viewer: Signed,
    request_id: str,
    digest: FormText = "",
    args: Annotated[str, Form()] = "",
    comment: FormText = "",
) -> Response:
    req = gate.get(request_id)
    approver = decider(gate, viewer, req)
    require_shown_in_full(req, None)
    expect = _digest_or_refuse(digest)
    try:
        edited = parse_args_json(args, gate.max_args_bytes)
        after = gate.approve(
            req.id,
            approver=approver,
            comment=comment.strip() or None,
            args=edited,
            via=viewer.via,
            expect_digest=expect,
        )
    except ArgsError as exc:
        return _detail(request, gate, viewer, req, status_code=422, error=str(exc), edit_text=args)
    except (NotAuthorized, TransitionRefused, InvalidToolCall) as exc:
        return _detail(
            request,
            gate,
            viewer,
            gate.get(request_id),
            status_code=_refusal_status(exc),
            error=exc.message,
            edit_text=editable_json(edited),
        )
    return _decided(request, after, _outcome(after, edited=True))
