"""The console's reading pages and the kill switch: history, audit, agents, policy.

Included by :mod:`._pages` (whose router the app mounts). Halting and resuming
are two steps: a GET confirmation page, then a POST carrying the CSRF token.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from pydantic import ValidationError
from starlette.responses import RedirectResponse, Response

from .._errors import GatekeeperError
from .._gate import Gatekeeper
from ..audit import StoredEvent, Trimmed, entry_chain, parse_event
from ..models import AuditEvent, Classification, Halt, HaltScope, RequestStatus, halt_key
from ._access import halter, resumer
from ._agents import SCAN, VerdictCounts, recent_agents
from ._api import ExplainIn, explained_call
from ._deps import Refused, Viewer, csrf_protect, flash, get_gate, render, require_page
from ._present import (
    ArgsError,
    compact,
    offset_of,
    page_url,
    parse_args_json,
    parse_time,
    prose_line,
    shown,
)

__all__ = ["PAGE_SIZE", "Csrf", "Gate", "Signed", "newest_entries", "router"]

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 50
_ENTRY_ID = re.compile(r"^([0-9]{1,2}/)?[0-9]{1,20}(-[0-9]{1,20})?$")

Gate = Annotated[Gatekeeper, Depends(get_gate)]
Signed = Annotated[Viewer, Depends(require_page("read"))]
Csrf = Depends(csrf_protect)
Field = Annotated[str, Form(max_length=2000)]


def newest_entries(gate: Gatekeeper, limit: int) -> Iterator[StoredEvent]:
    """Audit entries newest first, at most ``limit``, fetched a page at a time."""
    before: str | None = None
    seen = 0
    while seen < limit:
        page = gate.store.audit_page(before=before, limit=min(1000, limit - seen))
        if not page:
            return
        yield from page
        seen += len(page)
        before = page[-1].entry_id


# -- history -------------------------------------------------------------------------------------
@router.get("/history")
def history(
    request: Request,
    gate: Gate,
    _viewer: Signed,
    agent: str = "",
    tool: str = "",
    status: str = "",
    approver: str = "",
    since: str = "",
    until: str = "",
    offset: str = "",
) -> Response:
    filters = {
        "agent": agent.strip(),
        "tool": tool.strip(),
        "status": status.strip(),
        "approver": approver.strip(),
        "since": since.strip(),
        "until": until.strip(),
    }
    start = offset_of(offset)
    error: str | None = None
    try:
        wanted = RequestStatus(filters["status"]) if filters["status"] else None
        after = parse_time(filters["since"]) if filters["since"] else None
        before = parse_time(filters["until"]) if filters["until"] else None
    except ValueError as exc:
        error = str(exc)
    items = []
    if error is None:
        items = gate.store.history(
            agent=filters["agent"] or None,
            tool=filters["tool"] or None,
            status=wanted,
            approver=filters["approver"] or None,
            since=after,
            until=before,
            limit=PAGE_SIZE,
            offset=start,
        )
    prev_url = page_url("/history", filters, max(start - PAGE_SIZE, 0)) if start else None
    more = len(items) == PAGE_SIZE
    return render(
        request,
        "history.html",
        status_code=422 if error else 200,
        items=items,
        filters=filters,
        statuses=[s.value for s in RequestStatus],
        error=error,
        now=gate.clock.now(),
        prev_url=prev_url,
        next_url=page_url("/history", filters, start + PAGE_SIZE) if more else None,
        retention=_span_of(getattr(gate.store, "retention", None)),
        trimmed=_trimmed(gate),
    )


def _span_of(seconds: float | None) -> str | None:
    if not seconds:
        return None
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        if seconds >= size and seconds % size == 0:
            n = int(seconds // size)
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return f"{seconds:g} seconds"


def _trimmed(gate: Gatekeeper) -> Trimmed | None:
    """The newest last-archived event of every chain (None when nothing was archived)."""
    bases = [gate.store.audit_base(c) for c in range(gate.store.audit_chains)]
    cut = [b for b in bases if b.seq]
    if not cut:
        return None
    return max(cut, key=lambda b: b.at.timestamp() if b.at is not None else 0.0)


# -- audit ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AuditRow:
    entry_id: str
    event: AuditEvent | None
    fields: tuple[tuple[str, str], ...]  # (key, value) of the event's data, each one line
    more: int  # data keys past AUDIT_FIELDS
    json: str  # the whole data as indented JSON, bounded; one click away on the page
    broken: bool
    chain: int = 0  # which audit chain (0 unless the deployment has several)


AUDIT_FIELDS = 12
AUDIT_VALUE = 160
AUDIT_JSON = 8000


def _field(key: str, value: Any) -> str:
    if key == "signed":  # the signed record repeats the other fields; the JSON has it whole
        return "yes (Ed25519; see JSON)"
    if key.endswith("digest") and isinstance(value, str):
        return shown(value[:16]) + "…"
    if isinstance(value, str):
        return prose_line(value, AUDIT_VALUE)  # someone else's words stay on one line
    return compact(value, AUDIT_VALUE)


def _audit_row(entry: StoredEvent, broken_id: str | None) -> AuditRow:
    try:
        event: AuditEvent | None = parse_event(entry.body, entry.hash)
    except (ValueError, KeyError, TypeError):
        event = None
    data = event.data if event is not None else {}
    keys = sorted(data)
    fields = tuple((shown(k, 60), _field(k, data[k])) for k in keys[:AUDIT_FIELDS])
    text = json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) if data else ""
    return AuditRow(
        entry.entry_id,
        event,
        fields,
        max(len(keys) - AUDIT_FIELDS, 0),
        shown(text, AUDIT_JSON),
        entry.entry_id == broken_id,
        entry_chain(entry.entry_id)[0] if "/" in entry.entry_id else 0,
    )


@router.get("/audit")
def audit(request: Request, gate: Gate, _viewer: Signed, before: str = "") -> Response:
    if before and not _ENTRY_ID.match(before):
        raise Refused(400, "bad_request", "before= must be an audit entry id from this page")
    report = gate.verify_audit()
    page = gate.store.audit_page(before=before or None, limit=PAGE_SIZE)
    rows = [_audit_row(entry, report.entry_id) for entry in page]
    older = (
        f"/audit?before={urllib.parse.quote(page[-1].entry_id)}" if len(page) == PAGE_SIZE else None
    )
    return render(
        request,
        "audit.html",
        report=report,
        rows=rows,
        before=before,
        prev_url="/audit" if before else None,
        next_url=older,
    )


# -- agents and the kill switch ------------------------------------------------------------------
@dataclass(frozen=True)
class ActivityRow:
    """One line of the agents or sessions table.

    ``halt`` is the row's own halt (Resume lifts it); ``stopped_by`` is the halt
    in force for it: its own, else its agent's (for a session), else the halt
    of everything. A session of a halted agent is halted, and shows it.
    """

    name: str
    agent: str
    counts: VerdictCounts
    last_seen: dt.datetime | None
    sessions: int
    halt: Halt | None
    stopped_by: Halt | None = None

    @property
    def inherited(self) -> Halt | None:
        """The halt that stops this row although it is not the row's own, if any."""
        return self.stopped_by if self.halt is None else None


def _activity(gate: Gatekeeper) -> tuple[list[ActivityRow], list[ActivityRow], list[Halt]]:
    halts = gate.store.halts()
    by_key = {h.key: h for h in halts}
    everything = next((h for h in halts if h.scope is HaltScope.ALL), None)
    agent_rows: dict[str, ActivityRow] = {}
    session_rows: dict[str, ActivityRow] = {}

    def agent_row(name: str, row: ActivityRow) -> ActivityRow:
        halt = by_key.get(halt_key(HaltScope.AGENT, name))
        return replace(row, halt=halt, stopped_by=halt or everything)

    def session_row(name: str, agent: str, row: ActivityRow) -> ActivityRow:
        halt = by_key.get(halt_key(HaltScope.SESSION, name))
        of_agent = by_key.get(halt_key(HaltScope.AGENT, agent)) if agent else None
        return replace(row, halt=halt, stopped_by=halt or of_agent or everything)

    for a in recent_agents(gate):
        agent_rows[a.agent] = agent_row(
            a.agent, ActivityRow(a.agent, a.agent, a.counts, a.last_seen, len(a.sessions), None)
        )
        for s in a.sessions:
            if s.session_id not in session_rows:
                row = ActivityRow(s.session_id, a.agent, s.counts, s.last_seen, 0, None)
                session_rows[s.session_id] = session_row(s.session_id, a.agent, row)
    for h in halts:  # halted but not seen lately: still listed, so it can be resumed here
        rows = {HaltScope.AGENT: agent_rows, HaltScope.SESSION: session_rows}.get(h.scope)
        if rows is not None and h.target not in rows:
            rows[h.target] = ActivityRow(h.target, "", VerdictCounts(), None, 0, h, h)
    return _by_urgency(agent_rows), _by_urgency(session_rows), halts


def _by_urgency(rows: dict[str, ActivityRow]) -> list[ActivityRow]:
    def key(row: ActivityRow) -> tuple[int, float, str]:
        seen = row.last_seen.timestamp() if row.last_seen else 0.0
        return (0 if row.stopped_by else 1, -seen, row.name)

    return sorted(rows.values(), key=key)


@router.get("/agents")
def agents(request: Request, gate: Gate, _viewer: Signed) -> Response:
    agent_rows, session_rows, halts = _activity(gate)
    return render(
        request,
        "agents.html",
        agents=agent_rows,
        sessions=session_rows,
        all_halt=next((h for h in halts if h.scope is HaltScope.ALL), None),
        scan_limit=SCAN,
    )


@dataclass(frozen=True)
class Target:
    """What a halt or resume is about, from the query or the form."""

    scope: str  # the form field: agent, session or all
    value: str
    label: str

    def gate_kwargs(self) -> dict[str, Any]:
        if self.scope == "all":
            return {"everything": True}
        return {self.scope: self.value}

    @property
    def key(self) -> str:
        return "all" if self.scope == "all" else f"{self.scope}:{self.value}"


def _target(agent: str, session: str, all_: str) -> Target:
    given = [x for x in (agent, session, all_) if x]
    if len(given) != 1:
        raise Refused(400, "bad_request", "name exactly one of: an agent, a session, or all")
    if agent:
        return Target("agent", agent, f"agent {agent}")
    if session:
        return Target("session", session, f"session {session}")
    return Target("all", "1", "every agent")


def _confirm(request: Request, gate: Gatekeeper, action: str, target: Target) -> Response:
    halts = {h.key: h for h in gate.store.halts()}
    pending = 0
    if action == "halt" and target.scope != "session":
        agent = target.value if target.scope == "agent" else None
        _, pending = gate.store.queue(agent=agent, limit=1)
    return render(
        request,
        "halt_confirm.html",
        action=action,
        scope=target.scope,
        target=target.value,
        target_label=target.label,
        pending=pending,
        halt=halts.get(target.key),
    )


@router.get("/agents/halt")
def halt_confirm(
    request: Request, gate: Gate, _viewer: Signed, agent: str = "", session: str = "", all: str = ""
) -> Response:
    return _confirm(request, gate, "halt", _target(agent, session, all))


@router.get("/agents/resume")
def resume_confirm(
    request: Request, gate: Gate, _viewer: Signed, agent: str = "", session: str = "", all: str = ""
) -> Response:
    return _confirm(request, gate, "resume", _target(agent, session, all))


def _back_to_agents(request: Request, message: str) -> Response:
    response = RedirectResponse("/agents", status_code=303)
    flash(response, request, message)
    return response


@router.post("/agents/halt", dependencies=[Csrf])
def halt(
    request: Request,
    gate: Gate,
    viewer: Signed,
    agent: Field = "",
    session: Field = "",
    all: Field = "",
    reason: Field = "",
) -> Response:
    target = _target(agent, session, all)
    by = halter(viewer, agent=agent if target.scope == "agent" else None)
    cancelled = gate.halt(**target.gate_kwargs(), by=by, reason=reason.strip() or None)
    n = len(cancelled)
    return _back_to_agents(
        request,
        f"Halted {target.label}; {n} pending request{'s' if n != 1 else ''} cancelled.",
    )


@router.post("/agents/resume", dependencies=[Csrf])
def resume(
    request: Request,
    gate: Gate,
    viewer: Signed,
    agent: Field = "",
    session: Field = "",
    all: Field = "",
) -> Response:
    target = _target(agent, session, all)
    was_halted = gate.resume(**target.gate_kwargs(), by=resumer(gate, viewer))
    message = f"Resumed {target.label}." if was_halted else f"{target.label} was not halted."
    return _back_to_agents(request, message)


# -- policy ----------------------------------------------------------------------------------------
def _words(text: str) -> list[str]:
    return sorted({w for w in re.split(r"[\s,]+", text) if w})


@router.get("/policy")
def policy(
    request: Request,
    gate: Gate,
    _viewer: Signed,
    tool: str = "",
    args: str = "",
    agent: str = "",
    scopes: str = "",
    tool_scopes: str = "",
    irreversible: str = "",
) -> Response:
    form = {
        "tool": tool.strip(),
        "args": args,
        "agent": agent.strip(),
        "scopes": scopes,
        "tool_scopes": tool_scopes,
        "irreversible": bool(irreversible),
    }
    explanation: Classification | None = None
    misses: tuple[str, ...] = ()
    error: str | None = None
    if form["tool"]:
        try:
            body = ExplainIn(
                tool=form["tool"],
                args=parse_args_json(args or "{}", 65_536),
                agent=form["agent"] or "default",
                scopes=_words(scopes),
                tool_scopes=_words(tool_scopes),
                irreversible=bool(irreversible),
            )
            call = explained_call(gate, body)
            explanation = gate.policy.classify(call)
            misses = gate.policy.misses(call)
        except ArgsError as exc:
            error = str(exc)
        except ValidationError as exc:
            error = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        except (GatekeeperError, ValueError) as exc:
            error = f"can't explain that call: {exc}"
    doc = gate.policy.document
    return render(
        request,
        "policy.html",
        policy=gate.policy,
        doc=doc,
        rule_args=[
            compact(r.match.model_dump(mode="json", by_alias=True).get("args"), 2000)
            for r in doc.rules
        ],
        form=form,
        explanation=explanation,
        misses=misses,
        explain_error=error,
    )
