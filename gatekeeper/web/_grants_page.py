"""Standing approvals in the console: the offer on a request's page, and the Grants page.

A request that can carry a standing approval (see
:meth:`~gatekeeper.Gatekeeper.check_grantable`) gets a second approve form on
its page: approve, and let the agent's matching calls of the tool run without
asking for a chosen time. The form lists exactly what later calls must match
(the same rules holding them; each argument equal to the value shown, where
the approver may turn a number of zero or more into a range from 0 up to a
bound no higher than the value) and posts to the same ``/requests/ID/approve``
route as Approve, so it passes the same checks (CSRF, the digest reviewed,
the approver and the group); :func:`grant_terms` reads its extra fields.

``/grants`` lists the grants in force per agent, each with a Revoke button
(a POST with the CSRF token); approvers only.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from starlette.responses import RedirectResponse, Response

from .._errors import TransitionRefused
from .._gate import Gatekeeper
from .._grants import Grant, conditions_for
from ..models import ApprovalRequest, RequestStatus
from ._access import grant_keeper, revoker
from ._browse import Csrf, Gate, Signed
from ._deps import flash, render
from ._present import VALUE_LIMIT, compact

__all__ = [
    "GRANT_CHOICES",
    "GrantOffer",
    "GrantTermsError",
    "grant_made",
    "grant_offer",
    "grant_terms",
    "router",
]

router = APIRouter(include_in_schema=False)

#: The durations a person may choose on a request's page: (seconds, label).
GRANT_CHOICES: tuple[tuple[int, str], ...] = (
    (900, "15 min"),
    (3600, "1 h"),
    (8 * 3600, "8 h"),
    (86400, "1 day"),
)
_NUMBER = re.compile(r"^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$")


class GrantTermsError(ValueError):
    """The grant fields of an approve form can't be read; the message says which and why."""


@dataclass(frozen=True)
class Condition:
    """One argument's condition, as the page shows it.

    ``name`` is the argument's name as the agent wrote it (the template makes
    it visible); ``value`` the value (or a range's upper bound), as one line of
    JSON already made visible and bounded; ``ranged`` whether the condition is
    a range from ``low`` up to ``value``; ``boundable`` whether the approver
    may make it one (a number of zero or more).
    """

    name: str
    value: str
    ranged: bool = False
    low: str = "0"
    boundable: bool = False


@dataclass(frozen=True)
class GrantOffer:
    """What the second approve form offers: the durations and the conditions later calls meet."""

    conditions: tuple[Condition, ...]
    choices: tuple[tuple[int, str], ...] = GRANT_CHOICES
    chosen: int = 3600
    bounds: tuple[str, ...] = ()  # what the approver typed, shown again after a refusal

    def bound_text(self, index: int) -> str:
        """What the ``index``-th bound field holds: empty (exact) unless typed before."""
        return self.bounds[index] if index < len(self.bounds) else ""


def _boundable(value: Any) -> bool:
    """A number the approver may turn into a range 0..bound (as ``narrowed`` allows)."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return number and math.isfinite(value) and value >= 0


def grant_offer(
    gate: Gatekeeper,
    req: ApprovalRequest,
    *,
    chosen: str = "",
    bounds: Sequence[str] = (),
) -> GrantOffer | None:
    """The standing approval the page may offer for ``req``; None when it can't carry one."""
    if req.is_question or req.effective_status(gate.clock.now()) is not RequestStatus.PENDING:
        return None
    try:
        gate.check_grantable(req)
    except TransitionRefused:
        return None
    conditions = [
        Condition(name, compact(cond.get("eq"), VALUE_LIMIT), boundable=_boundable(cond.get("eq")))
        for name, cond in sorted(conditions_for(req.args).items())
    ]
    seconds = {s for s, _ in GRANT_CHOICES}
    picked = int(chosen) if chosen.isdigit() and int(chosen) in seconds else 3600
    return GrantOffer(tuple(conditions), chosen=picked, bounds=tuple(bounds))


def grant_terms(
    req: ApprovalRequest, grant_for: str, bounds: Sequence[str]
) -> tuple[float, dict[str, int | float]]:
    """The seconds and the bounds an approve form asks for (GrantTermsError if odd).

    ``bounds`` are the form's bound fields, one per number argument of zero
    or more, in the order the page lists them (by name). An empty one keeps
    the number exact; a number makes it a range from 0 up to it, and one
    higher than the approved value is passed on, for the gate to refuse by name.
    """
    seconds = {str(s): float(s) for s, _ in GRANT_CHOICES}.get(grant_for.strip())
    if seconds is None:
        labels = ", ".join(label for _, label in GRANT_CHOICES)
        raise GrantTermsError(f"choose how long matching calls may run: {labels}")
    numbers = [(name, value) for name, value in sorted(req.args.items()) if _boundable(value)]
    if len(bounds) != len(numbers):
        raise GrantTermsError(
            "the form's bounds are not the call's number arguments; reload the request"
        )
    ranges: dict[str, int | float] = {}
    for (name, approved), text in zip(numbers, bounds, strict=True):
        given = text.strip()
        if not given:
            continue  # left empty: the number stays exact
        if not _NUMBER.match(given):
            raise GrantTermsError(
                f"the bound for {json.dumps(name, ensure_ascii=True)[:200]} must be a number "
                f"from 0 up to {approved!r}, or left empty to keep it exact; not "
                f"{json.dumps(given, ensure_ascii=True)[:60]}"
            )
        ranges[name] = float(given) if any(c in given for c in ".eE") else int(given)
    return seconds, ranges


def grant_made(gate: Gatekeeper, req: ApprovalRequest) -> Grant | None:
    """The standing approval made with ``req``'s approval, if it is in force."""
    for grant in gate.grants(req.call.agent):
        if grant.kind == "standing" and grant.request_id == req.id:
            return grant
    return None


# -- the grants page -----------------------------------------------------------------------------
@dataclass(frozen=True)
class GrantRow:
    """One grant on the page: the grant, its conditions as shown, when it ends, where from."""

    grant: Grant
    conditions: tuple[Condition, ...]
    until: str
    request_url: str | None


def _row(grant: Grant, now: dt.datetime) -> GrantRow:
    shown = []
    for name, cond in sorted(grant.args.items()):
        if "lte" in cond:
            low = compact(cond.get("gte", 0))
            shown.append(Condition(name, compact(cond["lte"]), ranged=True, low=low))
        else:
            shown.append(Condition(name, compact(cond.get("eq"), VALUE_LIMIT)))
    url = f"/requests/{urllib.parse.quote(grant.request_id, safe='')}" if grant.request_id else None
    return GrantRow(grant, tuple(shown), _until(grant, now), url)


def _until(grant: Grant, now: dt.datetime) -> str:
    """When ``grant`` ends, in words for the page."""
    if grant.expires_at is None:
        return "until revoked, or demoted by a denial, a halt, a sequence or a limit"
    minutes = max(int((grant.expires_at - now).total_seconds()), 0) // 60
    hours, minutes = divmod(minutes, 60)
    left = f"{hours} h {minutes} min" if hours else f"{minutes} min"
    return f"{grant.expires_at:%Y-%m-%d %H:%M} UTC (in {left})"


@router.get("/grants")
def grants(request: Request, gate: Gate, viewer: Signed) -> Response:
    grant_keeper(gate, viewer)
    now = gate.clock.now()
    by_agent: dict[str, list[GrantRow]] = {}
    for grant in gate.grants():
        by_agent.setdefault(grant.agent, []).append(_row(grant, now))
    return render(request, "grants.html", by_agent=sorted(by_agent.items()))


@router.post("/grants/{grant_id}/revoke", dependencies=[Csrf])
def revoke(
    request: Request,
    gate: Gate,
    viewer: Signed,
    grant_id: str,
    reason: Annotated[str, Form(max_length=1000)] = "",
) -> Response:
    found = next((g for g in gate.grants() if g.id == grant_id), None)
    by = revoker(gate, viewer, agent=found.agent if found else None)
    if found is None:
        return _back(request, f"No grant {grant_id[:40]} is in force: revoked or expired already.")
    try:
        gone = gate.revoke_grant(grant_id, by=by, reason=reason.strip() or None)
    except KeyError:  # revoked elsewhere meanwhile
        return _back(request, f"No grant {grant_id[:40]} is in force: revoked or expired already.")
    what = "autonomy" if gone.kind == "autonomy" else "standing approval"
    return _back(
        request,
        f"Revoked the {what} {gone.id} of {gone.agent}: its calls of {gone.tool} ask again.",
    )


def _back(request: Request, message: str) -> Response:
    response = RedirectResponse("/grants", status_code=303)
    flash(response, request, message)
    return response
