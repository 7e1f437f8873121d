"""The decisions posted from a request's page: approve, deny, respond, edit-and-approve.

Each is a POST carrying the session's CSRF token, answered with a redirect
(303) back to the request and a message saying what happened; a refused
decision renders the request page again with the reason, and changes nothing.
Approve and edit bind to the digest of the arguments the page showed. Approve
with ``grant_for`` (and ``bound`` fields) also makes a standing approval, see
:mod:`._grants_page`.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from typing import Annotated

from fastapi import APIRouter, Form, Request
from starlette.responses import RedirectResponse, Response

from .._decisions import durability_note
from .._errors import (
    GatekeeperError,
    InvalidToolCall,
    NotAuthorized,
    TransitionRefused,
)
from ..models import ApprovalRequest, RequestStatus
from ._access import decider, require_shown_in_full
from ._browse import Csrf, Gate, Signed
from ._deps import Refused, flash, render
from ._grants_page import grant_made, grant_terms
from ._present import (
    ArgsError,
    args_view,
    diff_args,
    editable_json,
    parse_args_json,
)
from ._request import detail

__all__ = ["router"]

router = APIRouter(include_in_schema=False)

_DIGEST = re.compile(r"^[0-9a-f]{64}$")

FormText = Annotated[str, Form(max_length=20_000)]


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
    note = durability_note(req)
    flash(response, request, f"{message} {note}" if note else message)
    return response


def _outcome(req: ApprovalRequest, edited: bool = False) -> str:
    what = "with edited arguments " if edited else ""
    if req.status is RequestStatus.PENDING:
        return (
            f"Your approval {what}is recorded: {len(req.approvals)} of {req.quorum} approvals; "
            "waiting for more."
        )
    if req.awaiting_replicas:
        return f"Approved {what}— {req.call.tool} runs once a Redis replica has the approval."
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
    grant_for: Annotated[str, Form(max_length=20)] = "",
    bound: Annotated[list[str] | None, Form()] = None,
) -> Response:
    """Approve; with ``grant_for`` (seconds) also let matching calls run that long.

    ``bound`` are the number arguments' bounds, in the page's order; a bound
    raised past the approved value is refused (422) and nothing is recorded.
    """
    req = gate.get(request_id)
    approver = decider(gate, viewer, req)
    require_shown_in_full(req, None)
    expect = _digest_or_refuse(digest)
    bounds_text = [b[:100] for b in (bound or [])[:1000]]
    granting = bool(grant_for or bound)
    refill = {"grant_for": grant_for, "bounds": bounds_text, "comment": comment}
    try:
        seconds: float | None = None
        bounds: dict[str, int | float] | None = None
        if granting:
            gate.check_grantable(req)  # first: no form fields make a grant possible
            seconds, bounds = grant_terms(req, grant_for, bounds_text)
        after = gate.approve(
            req.id,
            approver=approver,
            comment=comment.strip() or None,
            via=viewer.via,
            expect_digest=expect,
            grant_for=seconds,
            bounds=bounds,
        )
    except (NotAuthorized, TransitionRefused, InvalidToolCall) as exc:
        return detail(
            request,
            gate,
            viewer,
            gate.get(request_id),
            status_code=_refusal_status(exc),
            error=exc.message,
            approve_comment="" if granting else comment,
            grant_form=refill if granting else None,
        )
    except ValueError as exc:  # GrantTermsError, or a bound raised: nothing was recorded
        return detail(
            request,
            gate,
            viewer,
            gate.get(request_id),
            status_code=422,
            error=str(exc),
            grant_form=refill,
        )
    if not granting:
        return _decided(request, after, _outcome(after))
    grant = grant_made(gate, after)
    if grant is None or grant.expires_at is None:
        return _decided(request, after, _outcome(after) + " No standing approval was made.")
    return _decided(
        request,
        after,
        f"{_outcome(after)} Matching calls run without asking until "
        f"{grant.expires_at:%Y-%m-%d %H:%M} UTC (standing approval {grant.id}; "
        "revoke it on the Grants page).",
    )


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
        return detail(
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
        return detail(
            request,
            gate,
            viewer,
            gate.get(request_id),
            status_code=_refusal_status(exc),
            error=exc.message,
            deny_comment=comment,
        )
    if after.is_question:
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
        return detail(
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
        return detail(
            request, gate, viewer, req, status_code=422, error=str(exc), response_text=response
        )
    except (NotAuthorized, TransitionRefused) as exc:
        return detail(
            request,
            gate,
            viewer,
            gate.get(request_id),
            status_code=_refusal_status(exc),
            error=exc.message,
            response_text=response,
        )
    if after.is_question:
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
    if req.is_question:  # nothing to edit before approving: it is never approved
        return detail(
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
        return detail(request, gate, viewer, req, status_code=422, error=str(exc), edit_text=args)
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
        return detail(request, gate, viewer, req, status_code=422, error=str(exc), edit_text=args)
    except (NotAuthorized, TransitionRefused, InvalidToolCall) as exc:
        return detail(
            request,
            gate,
            viewer,
            gate.get(request_id),
            status_code=_refusal_status(exc),
            error=exc.message,
            edit_text=editable_json(edited),
        )
    return _decided(request, after, _outcome(after, edited=True))
