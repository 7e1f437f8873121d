"""Who may decide, halt and resume: the one set of checks the JSON API and the pages share.

Every deciding route of both surfaces calls these, whoever is asking (a
session cookie holds every scope; a bearer token only its own):

- :func:`decider` for approve, deny and edit: the ``decide`` scope, an
  approver to record, and never a token that belongs to the agent whose
  request it is. Whether that approver may decide this request (group,
  quorum) is then the gate's own check.
- :func:`halter` and :func:`resumer` for the kill switch: the ``admin``
  scope. A token that belongs to an agent may halt only that agent and may
  resume nothing: an agent must not be able to lift a halt.
- :func:`require_shown_in_full` for approvals: arguments too large for the
  console page to show whole are approved only by naming their full sha256,
  which is given only together with the full arguments.
- :func:`grant_keeper` for the grants page and :func:`revoker` for revoking
  a grant: the ``decide`` scope and a configured approver. A token that
  belongs to an agent may revoke only that agent's grants.
"""

from __future__ import annotations

from .._gate import Gatekeeper
from ..models import ApprovalRequest
from ._deps import Refused, Viewer, check_scope
from ._present import ARGS_LIMIT, shown_in_full

__all__ = ["decider", "grant_keeper", "halter", "require_shown_in_full", "resumer", "revoker"]


def decider(gate: Gatekeeper, who: Viewer, req: ApprovalRequest) -> str:
    """The approver name ``who`` decides ``req`` as; Refused (403) if they may not decide it."""
    check_scope(who, "decide")
    if not who.name:
        raise Refused(403, "forbidden", "this API token names no approver to decide as")
    token = who.token
    if token is not None and token.agent is not None and req.call.agent == token.agent:
        # Nobody approves their own calls: a token that belongs to an agent
        # can't decide what that agent asked for.
        raise Refused(
            403,
            "forbidden",
            f"token {token.name!r} belongs to agent {token.agent!r}, whose request "
            "this is: it can't decide it",
        )
    return who.name


def halter(who: Viewer, *, agent: str | None) -> str:
    """Who a halt is recorded as; Refused (403) without ``admin``.

    ``agent`` is the halted agent, or None for a session or everything. A
    token that belongs to an agent may halt that agent only.
    """
    check_scope(who, "admin")
    token = who.token
    if token is not None and token.agent is not None and agent != token.agent:
        raise Refused(
            403,
            "forbidden",
            f"token {token.name!r} belongs to agent {token.agent!r}: it may halt that agent only",
        )
    return who.label


def resumer(gate: Gatekeeper, who: Viewer) -> str:
    """The configured approver a resume is recorded as; Refused (403) if ``who`` may not resume."""
    check_scope(who, "admin")
    token = who.token
    if token is not None and token.agent is not None:
        raise Refused(
            403,
            "forbidden",
            f"token {token.name!r} belongs to agent {token.agent!r}: an agent's token "
            "can't resume anything",
        )
    if not who.name:
        raise Refused(403, "forbidden", "resuming needs an approver; this API token names none")
    gate.approver(who.name)  # a configured approver, or NotAuthorized
    return who.name


def grant_keeper(gate: Gatekeeper, who: Viewer) -> str:
    """The configured approver ``who`` is; Refused (403) or NotAuthorized otherwise."""
    check_scope(who, "decide")
    if not who.name:
        raise Refused(403, "forbidden", "grants are for approvers; this API token names none")
    gate.approver(who.name)  # a configured approver, or NotAuthorized
    return who.name


def revoker(gate: Gatekeeper, who: Viewer, *, agent: str | None) -> str:
    """The approver a revocation of a grant of ``agent`` is recorded as; Refused (403) if not."""
    name = grant_keeper(gate, who)
    token = who.token
    if token is not None and token.agent is not None and agent != token.agent:
        raise Refused(
            403,
            "forbidden",
            f"token {token.name!r} belongs to agent {token.agent!r}: it may revoke that "
            "agent's grants only",
        )
    return name


def require_shown_in_full(req: ApprovalRequest, full_digest: str | None) -> None:
    """Refuse (409) approving arguments the console can't show whole, unless ``full_digest``.

    ``full_digest`` must be all 64 hex digits of the arguments' sha256: the
    console page shows only 16, so the approver must have fetched the request
    itself (``GET /api/v1/requests/ID``, ``gatekeeper show ID``), which carries
    the whole arguments. The pages pass None: they never approve such arguments.
    """
    if shown_in_full(req.args) or full_digest == req.args_digest:
        return
    how = (
        "read them whole (gatekeeper show ID, or GET /api/v1/requests/ID) and approve "
        "naming their full sha256 (gatekeeper approve ID --digest SHA256, or expect_digest)"
    )
    raise Refused(
        409,
        "not_shown_in_full",
        f"the arguments of {req.id} are over {ARGS_LIMIT // 1024} KiB, more than the console "
        f"shows; nobody approves what they were not shown: {how}",
    )
