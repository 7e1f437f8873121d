"""Replay: run a candidate policy over the recorded audit log and say what would change.

``gatekeeper policy replay CANDIDATE.yaml --since 7d`` reads every recorded
call (``call.allowed``, ``call.held``, ``call.denied``), classifies it with
the candidate, rebuilds the sequence, limit and novelty state as it goes (in a
:class:`~gatekeeper.store._behaviour.BehaviourState` of its own, at the
recorded times), and compares the candidate's verdict with the recorded one.

How a replayed call counts as having run (what moves limits, clears ``not``
steps and makes values known):

- the candidate allows it: it runs when it was recorded;
- the candidate holds it: it runs only if it ran in the recording — allowed
  then, or released after a person approved it (``request.released``); the
  replay can't know what a person would have said about a call nobody was
  asked about, so it takes what happened;
- the candidate denies or halts it: it does not run.

A halt the candidate would have pulled is reported as a change; the calls the
agent made after it are still replayed as recorded (what the agent would have
done once stopped can't be known). Calls refused because of a halt at the
time (``call.refused``) are not compared. With ``--since`` the state starts
empty at that moment (what the agent did before is not rebuilt): novelty rules
then find everything new. Replay from the start of the log for exact state.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from ._progress import Progress, Tally
from .models import Risk, ToolCall, Verdict
from .policy import Policy
from .store._behaviour import BehaviourState

__all__ = ["Change", "ReplayReport", "events_from_export", "events_from_store", "replay"]

_CALL_KINDS = {"call.allowed", "call.held", "call.denied"}
EXAMPLES = 5


@dataclass(frozen=True)
class Change:
    """One replayed call whose verdict the candidate changes."""

    at: dt.datetime
    agent: str
    session_id: str
    tool: str
    call_id: str
    recorded: str
    candidate: str
    reasons: tuple[str, ...]


@dataclass
class ReplayReport:
    """What the candidate would have done differently."""

    calls: int = 0
    events: int = 0
    first: dt.datetime | None = None
    last: dt.datetime | None = None
    same: int = 0
    changes: Counter[tuple[str, str]] = field(default_factory=Counter)
    examples: dict[tuple[str, str], list[Change]] = field(default_factory=dict)
    skipped: int = 0  # calls refused by a halt at the time: not compared

    @property
    def changed(self) -> int:
        return sum(self.changes.values())

    def as_json(self) -> dict[str, Any]:
        return {
            "events": self.events,
            "calls": self.calls,
            "same": self.same,
            "changed": self.changed,
            "not_compared": self.skipped,
            "first": self.first.isoformat() if self.first else None,
            "last": self.last.isoformat() if self.last else None,
            "changes": [
                {
                    "recorded": rec,
                    "candidate": cand,
                    "count": n,
                    "examples": [
                        {
                            "at": c.at.isoformat(),
                            "agent": c.agent,
                            "session_id": c.session_id,
                            "tool": c.tool,
                            "call_id": c.call_id,
                            "reasons": list(c.reasons),
                        }
                        for c in self.examples.get((rec, cand), [])
                    ],
                }
                for (rec, cand), n in sorted(self.changes.items())
            ],
        }


def _at(value: Any) -> dt.datetime:
    if isinstance(value, (int, float)):
        return dt.datetime.fromtimestamp(value / 1000, tz=dt.timezone.utc)
    return dt.datetime.fromisoformat(str(value))


def events_from_store(entries: Iterable[Any]) -> Iterator[Mapping[str, Any]]:
    """The events of ``store.audit_entries()``, as plain dicts (no model validation: fast)."""
    for entry in entries:
        outer = json.loads(entry.body)
        yield outer["event"]


def events_from_export(lines: Iterable[str]) -> Iterator[Mapping[str, Any]]:
    """The events of a ``gatekeeper audit export`` file (JSON lines)."""
    for line in lines:
        if line.strip():
            yield json.loads(line)


def replay(
    policy: Policy,
    events: Iterable[Mapping[str, Any]],
    *,
    since: dt.datetime | None = None,
    progress: Progress | None = None,
    total: int | None = None,
) -> ReplayReport:
    """Replay ``events`` (in log order) under ``policy``; see the module docs.

    ``progress``, when given, is called with ``(events read, total)`` as the
    replay goes (``total``: how many ``events`` holds, if known); nothing is
    printed.
    """
    if progress is None:
        return _replayed(policy, events, since)
    tally = Tally(progress, total)
    report = _replayed(policy, tally.over(events), since)
    tally.end()
    return report


def _replayed(
    policy: Policy, events: Iterable[Mapping[str, Any]], since: dt.datetime | None
) -> ReplayReport:
    report = ReplayReport()
    state = BehaviourState()
    waiting: dict[str, tuple[str, dict[str, Any]]] = {}  # request id -> (agent, plan)
    since_ms = since.timestamp() * 1000 if since is not None else None
    for event in events:
        report.events += 1
        kind = event.get("kind")
        if kind == "request.released":
            held = waiting.pop(str(event.get("request_id")), None)
            if held is not None:
                state.apply(held[0], held[1], "release", _ms(event["at"]))
            continue
        if kind == "call.refused":
            report.skipped += 1
            continue
        if kind not in _CALL_KINDS:
            continue
        now = _ms(event["at"])
        if since_ms is not None and now < since_ms:
            continue
        report.calls += 1
        call = _call(event, now)
        report.first = report.first or call.created_at
        report.last = call.created_at
        recorded = _recorded_verdict(event)
        cls = policy.classify(call)
        plan = policy.plan(call)
        wire = plan.wire() if plan is not None else None
        if wire is not None:
            mode = "attempt" if cls.verdict is Verdict.REQUIRE_APPROVAL else "admit"
            raw, escalated = state.apply(
                call.agent, wire, mode, now, verdict=cls.verdict.value, request_id=None
            )
            enforced = [h for h in raw if h.get("sh") != 1]
            if enforced and (mode == "attempt" or escalated):
                cls = policy.escalate(cls, policy.hits(enforced))
        verdict = cls.verdict
        ran_recorded = kind == "call.allowed"
        if wire is not None and verdict is Verdict.REQUIRE_APPROVAL:
            if ran_recorded:  # it ran then; held now, it runs if a person lets it: as then
                state.apply(call.agent, wire, "release", now)
            elif kind == "call.held" and event.get("request_id"):
                waiting[str(event["request_id"])] = (call.agent, wire)
        if verdict.value == recorded:
            report.same += 1
            continue
        pair = (recorded or "?", verdict.value)
        report.changes[pair] += 1
        shown = report.examples.setdefault(pair, [])
        if len(shown) < EXAMPLES:
            shown.append(
                Change(
                    at=call.created_at,
                    agent=call.agent,
                    session_id=call.session_id,
                    tool=call.tool,
                    call_id=call.id,
                    recorded=pair[0],
                    candidate=pair[1],
                    reasons=cls.reasons,
                )
            )
    return report


def _recorded_verdict(event: Mapping[str, Any]) -> str:
    """The verdict the policy gave a recorded call.

    A call a standing approval or earned autonomy let through is recorded as
    allowed, with ``grant:ID`` among its rules; the policy held it (grants are
    people's, not the policy's), so it compares as a hold.
    """
    data = event.get("data") or {}
    recorded = str(data.get("verdict", ""))
    if recorded == "allow" and any(str(r).startswith("grant:") for r in data.get("rules", ())):
        return "require_approval"
    return recorded


def _ms(value: Any) -> int:
    if isinstance(value, (int, float)):
        return int(value)
    return int(_at(value).timestamp() * 1000)


@dataclass(slots=True)
class _Recorded:
    """A recorded call, with what the policy reads of a :class:`ToolCall` (built fast)."""

    id: str
    tool: str
    args: Mapping[str, Any]
    args_digest: str
    agent: str
    session_id: str
    granted_scopes: tuple[str, ...]
    required_scopes: tuple[str, ...]
    irreversible: bool
    declared_risk: Risk | None
    reason: str | None
    created_at: dt.datetime


def _call(event: Mapping[str, Any], now: int) -> ToolCall:
    data = event.get("data") or {}
    risk = data.get("declared_risk")
    recorded = _Recorded(
        id=str(event.get("call_id") or ""),
        tool=str(event.get("tool") or ""),
        args=data.get("args") or {},
        args_digest=str(data.get("args_digest") or ""),
        agent=str(event.get("agent") or ""),
        session_id=str(event.get("session_id") or ""),
        granted_scopes=tuple(data.get("granted_scopes") or ()),
        required_scopes=tuple(data.get("required_scopes") or ()),
        irreversible=bool(data.get("irreversible")),
        declared_risk=Risk(risk) if risk else None,
        reason=data.get("reason"),
        created_at=dt.datetime.fromtimestamp(now / 1000, tz=dt.timezone.utc),
    )
    return cast("ToolCall", recorded)
