"""Agents and sessions seen recently, summarised from the newest audit events.

Shared by ``GET /api/v1/agents`` and the agents page.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, Field, ValidationError

from .._gate import Gatekeeper
from ..audit import parse_event
from ..models import AuditEvent

__all__ = ["AgentSummary", "SessionSummary", "VerdictCounts", "recent_agents"]

SCAN = 10_000
_PAGE = 1_000
_VERDICT: dict[str, Literal["allowed", "held", "denied"]] = {
    "call.allowed": "allowed",
    "call.observed": "allowed",
    "call.held": "held",
    "call.denied": "denied",
    "call.refused": "denied",
}


class VerdictCounts(BaseModel):
    """Calls by what the gate did with them."""

    allowed: int = 0
    held: int = 0
    denied: int = 0


class SessionSummary(BaseModel):
    session_id: str
    last_seen: dt.datetime
    counts: VerdictCounts = Field(default_factory=VerdictCounts)
    halted: bool = Field(
        default=False, description="halted on its own, with its agent, or with everything"
    )


class AgentSummary(BaseModel):
    agent: str
    last_seen: dt.datetime
    counts: VerdictCounts = Field(default_factory=VerdictCounts)
    halted: bool = False
    sessions: list[SessionSummary] = Field(default_factory=list)


def _recent_events(gate: Gatekeeper, scan: int) -> list[AuditEvent]:
    events: list[AuditEvent] = []
    before: str | None = None
    seen = 0
    while seen < scan:
        page = gate.store.audit_page(before=before, limit=min(_PAGE, scan - seen))
        if not page:
            break
        seen += len(page)
        before = page[-1].entry_id
        for entry in page:
            try:
                events.append(parse_event(entry.body, entry.hash))
            except (ValueError, KeyError, TypeError, ValidationError):
                continue  # an unreadable entry: the audit page shows it, here it counts for nothing
    return events


def recent_agents(gate: Gatekeeper, scan: int = SCAN) -> list[AgentSummary]:
    """Agents (most recently seen first) with their sessions, from the newest ``scan`` events."""
    halts = {h.key for h in gate.store.halts()}
    everything = "all" in halts
    agents: dict[str, AgentSummary] = {}
    sessions: dict[tuple[str, str], SessionSummary] = {}
    for event in _recent_events(gate, scan):
        if not event.agent:
            continue
        agent = agents.get(event.agent)
        if agent is None:
            agent = agents[event.agent] = AgentSummary(
                agent=event.agent,
                last_seen=event.at,
                halted=everything or f"agent:{event.agent}" in halts,
            )
        agent.last_seen = max(agent.last_seen, event.at)
        session = None
        if event.session_id:
            key = (event.agent, event.session_id)
            session = sessions.get(key)
            if session is None:
                session = sessions[key] = SessionSummary(
                    session_id=event.session_id,
                    last_seen=event.at,
                    halted=agent.halted or f"session:{event.session_id}" in halts,
                )
                agent.sessions.append(session)
            session.last_seen = max(session.last_seen, event.at)
        verdict = _VERDICT.get(event.kind)
        if verdict is not None:
            setattr(agent.counts, verdict, getattr(agent.counts, verdict) + 1)
            if session is not None:
                setattr(session.counts, verdict, getattr(session.counts, verdict) + 1)
    result = sorted(agents.values(), key=lambda a: a.last_seen, reverse=True)
    for agent in result:
        agent.sessions.sort(key=lambda s: s.last_seen, reverse=True)
    return result
