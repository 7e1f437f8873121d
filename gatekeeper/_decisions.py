"""What people do to requests: approve, deny, look, halt, resume, verify.

The CLI, the channels and the web console all decide through these methods
of :class:`~gatekeeper.Gatekeeper`, so every surface applies the same checks:
a configured approver, of the rule's group, for the arguments they reviewed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from ._archive import archive_anchors, whole_chain
from ._canonical import canonical_json, digest, to_json_safe, without_surrogates
from ._clock import Clock
from ._errors import (
    GatekeeperError,
    HaltIncomplete,
    InvalidToolCall,
    NotAuthorized,
    StoreUnavailable,
    TamperingDetected,
    TransitionRefused,
)
from ._progress import Progress, Tally
from ._signing import ANCHOR
from ._telemetry import Telemetry
from ._votes import trust_problem
from .audit import GENESIS, AnchorWatch, ChainReport, Trimmed, anchor_heads, verify_chain
from .logs import get_logger, log_context
from .logs import request_fields as _fields
from .models import ApprovalRequest, Approver, Decision, HaltScope, RequestStatus
from .policy import Policy
from .store import Store

__all__ = ["MAX_RESPONSE_CHARS", "Decisions", "durability_note", "recorded_or_not"]

#: The longest answer a person may write in place of a tool's result.
MAX_RESPONSE_CHARS = 8000

log = get_logger("gatekeeper.decisions")

T = TypeVar("T")


def _about(req: ApprovalRequest | None, request_id: str | None = None) -> log_context:
    """Records made within carry ``req``'s id, agent and session (or just ``request_id``)."""
    if req is None:
        return log_context(request_id=request_id)
    return log_context(request_id=req.id, agent=req.call.agent, session=req.call.session_id)


def recorded_or_not(what: str, check: str, step: Callable[[], T]) -> T:
    """``step()``; a store that fails it says whether ``what`` was recorded, and how to check.

    A write whose reply never came (a timeout, a frozen Redis, a lost reply)
    may have been applied all the same — Redis runs it when it resumes — so
    the person is told its fate is unknown, and how to look (``check``),
    rather than that nothing happened. Only a write that never reached Redis
    (no connection could be made) is reported as not recorded.
    """
    try:
        return step()
    except StoreUnavailable as exc:
        if exc.context.get("applied") == "no":
            raise StoreUnavailable(
                f"{what} was not recorded: {exc.message}; nothing changed, try again",
                applied="no",
            ) from exc
        raise StoreUnavailable(
            f"{what} may or may not have been recorded: {exc.message}; "
            f"check with `{check}` before trying again",
            applied="unknown",
        ) from exc


def durability_note(req: ApprovalRequest) -> str | None:
    """What an approver must be told when their decision is not yet durable; None when it is.

    ``req`` as a decision returned it: ``durable`` is False when the store
    was asked for replicas (``store.durability``) and they did not have the
    decision in time. Every surface (CLI, console, Slack) says this sentence.
    """
    if req.durable is not False:
        return None
    if req.awaiting_replicas:
        return (
            f"Not yet durable: the approval of {req.id} is on the Redis primary but not yet "
            f"on {req.awaiting_replicas} replica(s), so a failover now could lose it. "
            "The call runs only once a replica has it."
        )
    return (
        f"Not yet durable: the decision on {req.id} is on the Redis primary but not yet on "
        "its replicas, so a failover now could lose it; after a failover, check it with "
        f"`gatekeeper show {req.id}`."
    )


class Decisions:
    """Deciding, reading and halting: the part of the gate people use."""

    store: Store
    clock: Clock
    policy: Policy
    approvers: dict[str, Approver] | None
    max_args_bytes: int
    telemetry: Telemetry

    def approver(self, name: str, request: ApprovalRequest | None = None) -> Approver:
        """The configured approver ``name``, checked against ``request``'s group."""
        if self.approvers is None:
            found = Approver(name=name) if name else None
        else:
            found = self.approvers.get(name)
        if found is None:
            raise NotAuthorized(f"{name!r} is not a configured approver", approver=name)
        if request is not None and self.approvers is not None and not found.may_decide(request):
            raise NotAuthorized(
                f"{name} may not decide request {request.id}: it needs an approver "
                f"of group {request.group!r}",
                approver=name,
                request_id=request.id,
            )
        return found

    def _decision(
        self,
        req: ApprovalRequest,
        approver: str,
        approve: bool,
        comment: str | None,
        via: str,
        args: Mapping[str, Any] | None,
        expect_digest: str | None,
        response: str | None = None,
    ) -> tuple[Decision, dict[str, Any] | None]:
        self.approver(approver, req)
        if approve and req.is_question:
            raise TransitionRefused(
                f"can't approve request {req.id}: it is a question from the agent; "
                "answer it (respond) or decline it (deny)",
                request_id=req.id,
                status=req.status.value,
                action="approve",
            )
        if expect_digest is not None and len(expect_digest) < 8:
            raise ValueError("expect_digest needs at least 8 characters of the sha256")
        if expect_digest is not None and not req.args_digest.startswith(expect_digest):
            raise TransitionRefused(
                f"can't decide request {req.id}: its arguments are not the ones you reviewed "
                f"(digest {req.args_digest[:12]}, you expected {expect_digest})",
                request_id=req.id,
                status=req.status.value,
                action="approve" if approve else "deny",
            )
        edited: dict[str, Any] | None = None
        args_digest = req.args_digest
        if args is not None:
            if set(args) != set(req.args):
                raise InvalidToolCall(
                    "edited arguments must name the same parameters as the call: "
                    f"{sorted(req.args)}",
                    tool=req.call.tool,
                )
            edited = to_json_safe(dict(args), where="edited args")
            _check_edit(req, edited)
            if len(canonical_json(edited)) > self.max_args_bytes:
                raise InvalidToolCall(
                    "edited arguments are over the size limit", tool=req.call.tool
                )
            args_digest = digest(edited)
            if args_digest == req.args_digest:
                edited = None
        decision = Decision(
            approver=approver,
            approve=approve,
            # A person's words, but they may have pasted agent text: never unencodable.
            comment=without_surrogates(comment) if comment else None,
            at=self.clock.now(),
            args_digest=args_digest,
            edited=edited is not None,
            via=via,
            response=response,
        )
        return decision, edited

    def approve(
        self,
        request_id: str,
        *,
        approver: str,
        comment: str | None = None,
        args: Mapping[str, Any] | None = None,
        via: str = "api",
        expect_digest: str | None = None,
        grant_for: float | None = None,
        bounds: Mapping[str, float] | None = None,
    ) -> ApprovalRequest:
        """Approve as ``approver`` (optionally with edited ``args``); returns the request after.

        ``grant_for`` (seconds, at most 7 days): also let this agent's matching
        calls of the tool run without asking until then — a standing approval
        (see docs/concepts.md, "Standing approvals"); ``bounds`` lowers the
        most a number argument may be (``{"amount": 50}``). Refused before
        anything is recorded when the request can't carry one.
        """
        req = self._read_to_decide(request_id, "your approval")
        decision, edited = self._decision(req, approver, True, comment, via, args, expect_digest)
        if grant_for is not None:
            if edited is not None:
                req = req.model_copy(update={"args": dict(edited)})
            # Every refusal (can't carry one, a bound raised, a duration out of range)
            # before the approval is recorded: nothing at all changes.
            self.grant_terms(req, seconds=grant_for, bounds=bounds)  # type: ignore[attr-defined]
        after = self._decide(request_id, "your approval", decision, edited, read=req)
        if grant_for is not None and after.status in (
            RequestStatus.APPROVED,
            RequestStatus.EXECUTING,
            RequestStatus.EXECUTED,
        ):
            self.grant_from(  # type: ignore[attr-defined]
                req, approver=approver, seconds=grant_for, bounds=bounds, comment=comment
            )
        self._after_decision(after, approve=True, by=approver)
        return after

    def _after_decision(self, req: ApprovalRequest, *, approve: bool, by: str) -> None:
        """Earned autonomy follows each decision; its failure never undoes the decision."""
        try:
            with _about(req):
                if approve:
                    self.after_approval(req)  # type: ignore[attr-defined]
                else:
                    self.after_denial(req, by=by)  # type: ignore[attr-defined]
        except GatekeeperError as exc:
            log.warning(
                "autonomy not updated after request %s: %s", req.id, exc, extra=_fields(req)
            )

    def deny(
        self,
        request_id: str,
        *,
        approver: str,
        comment: str | None = None,
        via: str = "api",
    ) -> ApprovalRequest:
        """Deny as ``approver``; the waiting call raises ApprovalDenied with ``comment``.

        ``comment`` is required on every surface (the model reads it to decide
        what to do instead): a missing or blank one raises ``ValueError`` and
        nothing is recorded. Code that stops a call for its own reasons
        cancels it (a halt) rather than denying it.
        """
        if comment is None or not comment.strip():
            raise ValueError(
                f"can't deny request {request_id} without a comment: say why (the agent reads it)"
            )
        req = self._read_to_decide(request_id, "your denial")
        decision, _ = self._decision(req, approver, False, comment, via, None, None)
        after = self._decide(request_id, "your denial", decision, read=req)
        self._after_decision(after, approve=False, by=approver)
        return after

    def respond(
        self,
        request_id: str,
        *,
        approver: str,
        response: str,
        comment: str | None = None,
        via: str = "api",
    ) -> ApprovalRequest:
        """Answer in place of running the tool: ``response`` becomes the tool's result.

        The request ends as ``responded``; the tool never runs, and the
        waiting call returns ``response`` (a :class:`~gatekeeper.Response`)
        to the agent. One approver's answer ends the request, as a denial
        does: it runs nothing. Refused when the rule that held the call sets
        ``approval: {respond: false}``. ``response`` is required, at most
        :data:`MAX_RESPONSE_CHARS` characters.
        """
        text = without_surrogates(response) if isinstance(response, str) else ""
        if not text.strip():
            raise ValueError(
                f"can't respond to request {request_id} without a response: write the result "
                "the agent should get"
            )
        if len(text) > MAX_RESPONSE_CHARS:
            raise ValueError(
                f"can't respond to request {request_id}: the response is {len(text):,} "
                f"characters, over the limit of {MAX_RESPONSE_CHARS:,}"
            )
        req = self._read_to_decide(request_id, "your response")
        if not self._may_respond(req):
            raise TransitionRefused(
                f"can't respond to request {req.id}: its rule does not allow a written answer "
                f"(approval: respond: false); approve or deny it",
                request_id=req.id,
                status=req.status.value,
                action="respond",
            )
        decision, _ = self._decision(req, approver, False, comment, via, None, None, text)
        return self._decide(request_id, "your response", decision, read=req)

    def _read_to_decide(self, request_id: str, what: str) -> ApprovalRequest:
        """The request about to be decided; a store unavailable now has recorded nothing."""
        try:
            return self.store.get(request_id)
        except StoreUnavailable as exc:
            raise StoreUnavailable(
                f"{what} of request {request_id} was not recorded: {exc.message}; "
                "nothing changed, try again",
                applied="no",
            ) from exc

    def _decide(
        self,
        request_id: str,
        what: str,
        decision: Decision,
        edited: Mapping[str, Any] | None = None,
        read: ApprovalRequest | None = None,
    ) -> ApprovalRequest:
        def step() -> ApprovalRequest:
            with _about(read, request_id):
                after = recorded_or_not(
                    f"{what} of request {request_id}",
                    f"gatekeeper show {request_id}",
                    lambda: self.store.decide(request_id, decision, args=edited, request=read),
                )
                # Who decided, how and where: never the comment, the answer or an argument.
                log.info(
                    "request %s: %s by %s via %s%s; now %s",
                    request_id,
                    what.removeprefix("your "),
                    decision.approver,
                    decision.via,
                    " (arguments edited)" if decision.edited else "",
                    after.status.value,
                    extra=_fields(after),
                )
            return after

        if not self.telemetry.active:
            return step()
        return self.telemetry.deciding(read, decision, step)  # a span linked to the call's

    def _may_respond(self, req: ApprovalRequest) -> bool:
        """Whether a person may answer ``req``, by this process's own policy where it can say."""
        if req.is_question:
            return True
        try:
            return self.policy.classify(req.call).approval.respond
        except Exception:  # a call this policy can't judge: what the request recorded
            return req.classification.approval.respond

    def trust_problem(self, req: ApprovalRequest) -> str | None:
        """Why what the store says of ``req`` is not what the deciders signed; None if it is.

        Checked against this process's trusted keys and the quorum its own
        policy asks for the call (see :func:`gatekeeper._votes.trust_problem`).
        """
        try:
            quorum = self.policy.classify(req.call).approval.quorum
        except Exception:  # a call this policy can't judge: the stored quorum alone
            quorum = None
        return trust_problem(req, self.store.decision_keys.trusted, quorum)

    def get(self, request_id: str) -> ApprovalRequest:
        """One request, by id."""
        return self.store.get(request_id)

    def pending(self, *, limit: int = 100, offset: int = 0) -> list[ApprovalRequest]:
        """Requests waiting for a decision, oldest first."""
        return self.store.pending(limit=limit, offset=offset)

    def halt(
        self,
        *,
        agent: str | None = None,
        session: str | None = None,
        everything: bool = False,
        by: str,
        reason: str | None = None,
    ) -> list[str]:
        """Pull the kill switch for one agent, one session or everything; returns cancelled ids."""
        scope, target = _halt_scope(agent, session, everything)
        reason = without_surrogates(reason) if reason else reason
        try:
            cancelled: list[str] = recorded_or_not(
                f"the halt of {_scope_name(scope, target)}",
                "gatekeeper halts",
                lambda: self.store.halt(scope, target, by=without_surrogates(by), reason=reason),
            )
        except HaltIncomplete:  # recorded: the grants go too, and the person is told
            self._halt_revokes(None, by=by, what="halt")
            self.telemetry.halted(scope.value, "person")
            raise
        self.telemetry.halted(scope.value, "person")
        self._halt_revokes(agent if scope is HaltScope.AGENT else None, by=by, what="halt")
        return cancelled

    def _halt_revokes(self, agent: str | None, *, by: str, what: str) -> None:
        """A halt revokes grants (a session's or everything's: every agent's)."""
        try:
            self.revoke_grants_for_halt(agent, by=by, why=what)  # type: ignore[attr-defined]
        except GatekeeperError as exc:
            log.warning("grants not revoked after the %s: %s", what, exc)

    def resume(
        self,
        *,
        agent: str | None = None,
        session: str | None = None,
        everything: bool = False,
        by: str,
    ) -> bool:
        """Release the kill switch again; False if it was not on."""
        scope, target = _halt_scope(agent, session, everything)
        resumed: bool = recorded_or_not(
            f"the resume of {_scope_name(scope, target)}",
            "gatekeeper halts",
            lambda: self.store.resume(scope, target, by=by),
        )
        # A halt the agent's own gate pulled (a sequence, a halt rule) could not
        # revoke grants (its Redis user may not); the resume does, so no grant
        # from before the halt outlives it.
        if resumed:
            self._halt_revokes(agent if scope is HaltScope.AGENT else None, by=by, what="resume")
        return resumed

    def verify_audit(
        self, *, archive: str | os.PathLike[str] | None = None, progress: Progress | None = None
    ) -> ChainReport:
        """Check every audit chain up to its head: from its first event with the
        ``archive`` directory, else from its last event archived and trimmed; and that
        each still holds every signed anchor of its head (the store's, the archive's).

        With several chains (``store.audit_chains``) each is checked alone; the
        report is the first broken one's (its problem names the chain), else their
        sum, with each chain's own report in ``chains``.

        ``progress``, when given, is called with ``(events checked, events to check)``
        as the walk goes (see :mod:`gatekeeper._progress`); nothing is printed.
        """
        n = getattr(self.store, "audit_chains", 1)
        report = ChainReport(0, GENESIS)
        for _ in range(3):  # again if an archiving run trimmed during the walk
            bases = [self.store.audit_base(c) for c in range(n)]
            bodies, unreadable = self._anchor_bodies(archive)
            tally = None
            if progress is not None:
                tally = Tally(progress, self._audit_total(bases, archive))
            reports = [self._verify_chain(c, bases[c], bodies, archive, tally) for c in range(n)]
            if tally is not None:
                tally.end()
            report = _combined(reports, unreadable, len(bodies))
            if report.ok or [self.store.audit_base(c) for c in range(n)] == bases:
                return report
        return report

    def _verify_chain(
        self,
        chain: int,
        base: Trimmed,
        bodies: list[dict[str, Any]],
        archive: str | os.PathLike[str] | None,
        tally: Tally | None = None,
    ) -> ChainReport:
        anchored = []
        for body in bodies:
            heads = anchor_heads(body)
            if chain < len(heads):
                anchored.append({"seq": heads[chain][0], "hash": heads[chain][1]})
        watch = AnchorWatch(anchored)
        head = self.store.audit_head(chain)  # first: events sealed during the walk aren't judged
        start: tuple[int, str] = (0, GENESIS)
        if archive is not None:
            whole = whole_chain(self.store, archive, chain)
            report = verify_chain(watch.wrap(tally.over(whole) if tally else whole), head=head)
        else:
            start = (base.seq, base.hash)
            kept = self.store.audit_entries(chain=chain)
            entries = watch.wrap(tally.over(kept) if tally else kept)
            report = verify_chain(entries, head=head, base=start)
            if base.seq:
                report = dataclasses.replace(report, trimmed=base)
        if report.ok:
            held, problem = watch.problem(report, base=start)
            report = dataclasses.replace(report, anchors=held, problem=problem)
        return report

    def _audit_total(self, bases: list[Trimmed], archive: str | os.PathLike[str] | None) -> int:
        """How many events a check walks: every chain's from #1 (archive) or its base."""
        total = 0
        for c, base in enumerate(bases):
            total += self.store.audit_head(c)[0] - (0 if archive is not None else base.seq)
        return total

    def _anchor_bodies(
        self, archive: str | os.PathLike[str] | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """The anchors' bodies whose signatures hold, and a problem if one is forged.

        An anchor signed with a key this process does not trust (another
        deployment's, a retired key, junk) is passed over: it can't vouch for
        the chain, and leaving it out lets nothing tampered pass. One that names
        a trusted key and whose signature is wrong is a forgery: the problem.
        """
        signed = [text for _, text in self.store.audit_anchors()]
        if archive is not None:
            signed = [text for _, text in archive_anchors(archive)] + signed
        bodies: list[dict[str, Any]] = []
        trusted = self.store.decision_keys.trusted
        if not len(trusted):
            return bodies, None  # no key to check them with: the chain alone is checked
        for text in signed:
            try:
                body = trusted.verify(ANCHOR, text)
                anchor_heads(body)
            except TamperingDetected as exc:
                if "is wrong" in str(exc):
                    return bodies, f"an anchor of the audit chain is forged: {exc}"
                continue  # not ours to check
            except (KeyError, TypeError, ValueError):
                continue
            bodies.append(body)
        return bodies, None


def _combined(reports: list[ChainReport], unreadable: str | None, anchors: int) -> ChainReport:
    """One report of every chain's: the first broken one (naming its chain), else the sum."""
    if len(reports) == 1:
        only = reports[0]
        return dataclasses.replace(only, problem=unreadable) if only.ok and unreadable else only
    for c, r in enumerate(reports):
        if not r.ok:
            return dataclasses.replace(r, problem=f"chain {c}: {r.problem}", chains=tuple(reports))
    heads = hashlib.sha256("".join(r.head_hash for r in reports).encode()).hexdigest()
    cut = [r.trimmed for r in reports if r.trimmed is not None]
    trimmed = None
    if cut:  # how many were archived in all, up to when
        times = [t.at for t in cut if t.at is not None]
        trimmed = Trimmed(sum(t.seq for t in cut), "", max(times) if times else None)
    return ChainReport(
        sum(r.count for r in reports),
        heads,
        unreadable,
        trimmed=trimmed,
        anchors=anchors if all(r.anchors or not r.count for r in reports) else 0,
        chains=tuple(reports),
    )


def _halt_scope(agent: str | None, session: str | None, everything: bool) -> tuple[HaltScope, str]:
    chosen = [x for x in (agent, session) if x] + (["*"] if everything else [])
    if len(chosen) != 1:
        raise ValueError("halt exactly one of: agent=..., session=..., everything=True")
    if everything:
        return HaltScope.ALL, "*"
    if agent:
        return HaltScope.AGENT, agent
    return HaltScope.SESSION, str(session)


def _scope_name(scope: HaltScope, target: str) -> str:
    return "everything" if scope is HaltScope.ALL else f"{scope.value} {target}"


def _check_edit(req: ApprovalRequest, edited: Mapping[str, Any]) -> None:
    """Refuse an edit the tool can't take, now, with the reason (not at release)."""
    schema = req.args_schema
    if not schema:
        return
    import jsonschema  # type: ignore[import-untyped]  # jsonschema ships no type hints

    try:
        validator = jsonschema.Draft202012Validator(schema)
        error = jsonschema.exceptions.best_match(validator.iter_errors(dict(edited)))
    except jsonschema.exceptions.SchemaError:
        return  # a schema we can't use: the agent still checks at release
    if error is not None:
        where = ".".join(str(p) for p in error.absolute_path) or "the arguments"
        raise InvalidToolCall(
            f"edited arguments don't fit tool {req.call.tool}: {where}: {error.message}",
            tool=req.call.tool,
            request_id=req.id,
        )
