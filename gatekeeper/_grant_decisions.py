"""The deciding side of grants: standing approvals made, listed, revoked; autonomy earned and lost.

Mixed into :class:`~gatekeeper.Gatekeeper` beside :class:`~gatekeeper._decisions.Decisions`.
Every change is an audit event in the deployment's journal (which only
deciders write): ``grant.created``, ``grant.revoked``, ``autonomy.promoted``,
``autonomy.demoted``. See :mod:`gatekeeper._grants` for what a grant covers.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from ._errors import GatekeeperError, TransitionRefused
from ._grants import Grant, conditions_for, narrowed, new_grant, read_grant, sign_grant
from .audit import draft
from .logs import get_logger
from .models import ApprovalRequest, RequestStatus

__all__ = ["MAX_GRANT_SECONDS", "GrantDecisions"]

log = get_logger("gatekeeper.grants")

#: The longest a person's standing approval may last.
MAX_GRANT_SECONDS = 7 * 86400.0

_APPROVED = (RequestStatus.APPROVED, RequestStatus.EXECUTING, RequestStatus.EXECUTED)


class GrantDecisions:
    """Standing approvals and earned autonomy, as the deciding side handles them."""

    store: Any
    clock: Any
    policy: Any

    # -- standing approvals --------------------------------------------------------------
    def check_grantable(self, req: ApprovalRequest) -> None:
        """Refuse (TransitionRefused) a standing approval ``req`` can't carry."""
        why = None
        if req.is_question:
            why = "it is a question, not a call"
        elif req.quorum != 1:
            why = f"it needs {req.quorum} approvals, and a standing approval is one person's"
        elif req.classification.behaviour:
            hit = req.classification.behaviour[0]
            why = (
                f"a {hit.kind} ({hit.id}) held it; a standing approval covers only calls "
                "the policy holds on their own"
            )
        if why:
            raise TransitionRefused(
                f"can't approve request {req.id} for later calls too: {why}; approve it alone",
                request_id=req.id,
                status=req.status.value,
                action="approve",
            )

    def grant_terms(
        self,
        req: ApprovalRequest,
        *,
        seconds: float,
        bounds: Mapping[str, float] | None = None,
    ) -> dict[str, dict[str, Any]]:
        """The conditions a standing approval from ``req`` would have; refused if it can't be.

        TransitionRefused when ``req`` can't carry one; ValueError for a
        duration out of range or a bound raised (or naming no number argument).
        Decisions.approve asks this before recording anything.
        """
        if not 0 < seconds <= MAX_GRANT_SECONDS:
            raise ValueError(
                f"a standing approval lasts more than 0 s and at most 7 days, not {seconds:g} s"
            )
        self.check_grantable(req)
        return narrowed(conditions_for(req.args), bounds or {})

    def grant_from(
        self,
        req: ApprovalRequest,
        *,
        approver: str,
        seconds: float,
        bounds: Mapping[str, float] | None = None,
        comment: str | None = None,
    ) -> Grant:
        """A standing approval made from ``req`` (approved by ``approver``); kept and audited."""
        conditions = self.grant_terms(req, seconds=seconds, bounds=bounds)
        grant = new_grant(
            agent=req.call.agent,
            tool=req.call.tool,
            args=conditions,
            by=approver,
            now=self.clock.now(),
            seconds=seconds,
            request_id=req.id,
            comment=comment,
            group=req.group,
            rules=req.classification.rules,
        )
        self._keep(grant, "grant.created", actor=approver)
        return grant

    def grants(self, agent: str | None = None) -> list[Grant]:
        """The grants in force (signatures checked), per agent; expired ones left out."""
        now = self.clock.now()
        out = []
        for who, _gid, signed in self.store.all_grants():
            if agent is not None and who != agent:
                continue
            try:
                grant = read_grant(self.store.decision_keys, signed)
            except (GatekeeperError, ValueError) as exc:
                log.warning("grant of agent %s does not verify: %s", who, exc)
                continue
            if grant.expires_at is None or grant.expires_at > now:
                out.append(grant)
        return sorted(out, key=lambda g: (g.agent, g.created_at))

    def revoke_grant(self, grant_id: str, *, by: str, reason: str | None = None) -> Grant:
        """Revoke a grant at once (KeyError when there is none of that id)."""
        for who, gid, signed in self.store.all_grants():
            if gid == grant_id:
                grant = read_grant(self.store.decision_keys, signed)
                self.store.drop_grants(who, [gid])
                self._audit_drop(grant, by=by, why=reason or "revoked")
                return grant
        raise KeyError(grant_id)

    def revoke_grants_for_halt(self, agent: str | None, *, by: str, why: str) -> list[str]:
        """A halt revokes grants: the agent's, or (everything, or a session) every agent's."""
        gone: list[str] = []
        for who, gid, signed in self.store.all_grants():
            if agent is not None and who != agent:
                continue
            try:
                grant = read_grant(self.store.decision_keys, signed)
            except (GatekeeperError, ValueError):
                grant = None
            if self.store.drop_grants(who, [gid]):
                gone.append(gid)
                if grant is not None:
                    self._audit_drop(grant, by=by, why=why)
        return gone

    # -- earned autonomy -----------------------------------------------------------------
    def after_approval(self, req: ApprovalRequest) -> None:
        """An approval may complete an agent's record: promote it (autonomy grant)."""
        if req.status not in _APPROVED or req.is_question:
            return
        for rule in self.policy.autonomy_for(req.call):
            if self._has_autonomy(req.call.agent, rule.id):
                continue
            since = self.clock.now() - dt.timedelta(seconds=rule.within)
            approved, denied = self._record(req, rule, since)
            if denied or approved < rule.after:
                continue
            grant = new_grant(
                agent=req.call.agent,
                tool=req.call.tool,
                args={},
                by=f"autonomy:{rule.id}",
                now=self.clock.now(),
                seconds=None,
                kind="autonomy",
                rule=rule.id,
                comment=f"{approved} approvals and no denial within {rule.within:g} s",
            )
            self._keep(grant, "autonomy.promoted", actor=f"autonomy:{rule.id}")

    def after_denial(self, req: ApprovalRequest, *, by: str) -> None:
        """A denial of a matching call demotes the agent: its autonomy grants go."""
        rules = {rule.id for rule in self.policy.autonomy_for(req.call, tool_only=True)}
        if not rules:
            return
        for who, gid, signed in self.store.all_grants():
            if who != req.call.agent:
                continue
            try:
                grant = read_grant(self.store.decision_keys, signed)
            except (GatekeeperError, ValueError):
                continue
            if (
                grant.kind == "autonomy"
                and grant.rule in rules
                and self.store.drop_grants(who, [gid])
            ):
                self._audit_drop(grant, by=by, why=f"request {req.id} was denied")

    def _has_autonomy(self, agent: str, rule_id: str) -> bool:
        for grant in self.grants(agent):
            if grant.kind == "autonomy" and grant.rule == rule_id:
                return True
        return False

    def _record(self, req: ApprovalRequest, rule: Any, since: dt.datetime) -> tuple[int, int]:
        """(approved, denied) requests of ``req``'s agent matching ``rule`` since ``since``."""
        approved = denied = 0
        history = self.store.history(agent=req.call.agent, since=since, limit=10_000)
        for past in history:
            if past.is_question or rule not in self.policy.autonomy_for(past.call):
                continue
            if past.status in (RequestStatus.DENIED, RequestStatus.EXPIRED):
                denied += 1  # no decision counts as a denial
            elif past.status in _APPROVED or (
                past.status is RequestStatus.FAILED and any(d.approve for d in past.approvals)
            ):
                approved += 1
        return approved, denied

    # -- keeping and auditing ------------------------------------------------------------
    def _keep(self, grant: Grant, kind: str, *, actor: str) -> None:
        signed = sign_grant(self.store.decision_keys, grant)
        self.store.put_grant(grant.agent, grant.id, signed)
        self._audit(kind, grant, actor=actor)

    def _audit_drop(self, grant: Grant, *, by: str, why: str) -> None:
        kind = "autonomy.demoted" if grant.kind == "autonomy" else "grant.revoked"
        self._audit(kind, grant, actor=by, why=why)

    def _audit(self, kind: str, grant: Grant, *, actor: str, why: str | None = None) -> None:
        data: dict[str, Any] = {
            "agent": grant.agent,
            "tool": grant.tool,
            "grant": grant.id,
            "kind": grant.kind,
            "conditions": grant.args,
            "covers": grant.describe(),
        }
        if grant.rule:
            data["rule"] = grant.rule
        if grant.request_id:
            data["from_request"] = grant.request_id
        if grant.expires_at:
            data["expires_at"] = grant.expires_at.isoformat()
        if why:
            data["why"] = why
        event = draft(
            kind,
            at_ms=int(self.clock.now().timestamp() * 1000),
            actor=actor,
            tool=grant.tool,
            # In the deployment's journal, which only deciders write (not the agent's).
            data=data,
        )
        self.store.record([event])
