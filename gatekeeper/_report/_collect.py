"""Reading the audit log once, oldest first, into the counts a report shows. No I/O here.

:class:`Collector` takes stored entries one at a time and keeps only
aggregates, so a log of millions of events is read in constant memory apart
from what the caps below bound: agents, tools per agent, approvers, rules
hit, policy versions, and the held requests still waiting for their end.

An event belongs to the window by when the log recorded it: on Redis the
stream entry's id, which the store sets when it seals the event and no agent
chooses; on the embedded store (whose entries have no time of their own) the
event's ``at``. An agent that writes its calls with a false time can't move
them out of a report. Latency is measured between the events' own times.
"""

from __future__ import annotations

import bisect
import datetime as dt
import json
import math
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .._canonical import truncate
from ..audit import StoredEvent, sealed_ms
from ..models import utc
from ..policy import Policy
from ._model import (
    VERDICTS,
    AgentRow,
    ApproverRow,
    Autonomy,
    AutonomyItem,
    Bucket,
    DecidedRow,
    DecisionItem,
    Grants,
    HaltItem,
    Halts,
    HitRow,
    Latency,
    LatencyBucket,
    LoadedPolicy,
    Others,
    Policies,
    PolicyVersion,
    Report,
    Requests,
    Timeline,
    ToolRow,
    Verdicts,
)

__all__ = ["LATENCY_EDGES", "Collector", "bucket_size", "percentile"]

NAME = 200  # characters kept of a name (agent, tool, approver, rule, digest)
TEXT = 500  # of a reason or comment
MAX_AGENTS = 1_000
MAX_TOOLS = 200  # per agent
MAX_SCOPES = 100  # per agent
MAX_APPROVERS = 200
MAX_APPROVER_ROWS = 200  # (agent, tool) rows per approver
MAX_RULES = 500  # sequences, limits and novelty rules hit
MAX_RULE_AGENTS = 50  # agents counted apart per rule
MAX_POLICIES = 100
MAX_OPEN = 200_000  # held requests remembered until their end, for latency
MAX_HOURS = 100_000  # hours of the timeline (11 years)
SHOWN = 100  # newest decisions, halts and autonomy changes listed

_VERDICT = {v: i for i, v in enumerate(VERDICTS)}
_CALL_KINDS = {
    "call.allowed": "allowed",
    "call.observed": "allowed",
    "call.held": "held",
    "call.denied": "denied",
    "call.refused": "refused",
}
_DECISIONS = {
    "request.vote": "voted",
    "request.approved": "approved",
    "request.denied": "denied",
    "request.responded": "answered",
}
#: Request events that end a request, and what each counts as.
_ENDS = {
    "request.approved": "approved",
    "request.denied": "denied",
    "request.responded": "answered",
    "request.expired": "expired",
    "request.cancelled": "cancelled",
    "request.abandoned": "abandoned",
}
_LATER = {
    "request.outcome_unknown": "outcome_unknown",
    "request.executed": "executed",
    "request.failed": "failed",
}
_GRANTS = {"grant.created", "grant.used", "grant.revoked", "grant.expired"}
_HOUR_MS = 3_600_000

#: Upper bounds (seconds) of the latency histogram's buckets; the last has none.
LATENCY_EDGES = (10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 14400.0, 86400.0)
_LATENCY_LABELS = (
    "< 10s",
    "10–30s",
    "30s–1m",
    "1–2m",
    "2–5m",
    "5–10m",
    "10–30m",
    "30m–1h",
    "1–4h",
    "4h–1d",
    "≥ 1d",
)
_BUCKETS_S = (3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 7 * 86400, 30 * 86400)
_MOST_BUCKETS = 60


def percentile(ordered: list[float], p: float) -> float:
    """The nearest-rank ``p``-th percentile of ``ordered`` (sorted, not empty)."""
    return ordered[max(math.ceil(p / 100 * len(ordered)) - 1, 0)]


def bucket_size(span_s: float) -> int:
    """Seconds per bar of the timeline: the smallest of 1h, 3h, 6h, 12h, 1d, 7d, 30d
    that draws ``span_s`` in at most 60 bars (whole days past that)."""
    for size in _BUCKETS_S:
        if span_s / size <= _MOST_BUCKETS:
            return size
    return math.ceil(span_s / _MOST_BUCKETS / 86400) * 86400


def _name(value: Any) -> str | None:
    if value is None:
        return None
    if type(value) is str and len(value) <= NAME:  # the common case, first
        return value
    return truncate(value if isinstance(value, str) else str(value), NAME)


def _text(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return truncate(value if isinstance(value, str) else str(value), TEXT)


@dataclass
class _Agent:
    calls: list[int] = field(default_factory=lambda: [0] * 5)
    tools: dict[str, list[int]] = field(default_factory=dict)
    other_tools: list[int] = field(default_factory=lambda: [0] * 5)
    other_rows: set[str] = field(default_factory=set)  # bounded: counted up to MAX_TOOLS more
    scopes: set[str] = field(default_factory=set)
    first: int | None = None
    last: int | None = None


@dataclass
class _Approver:
    votes: list[int] = field(default_factory=lambda: [0, 0, 0])  # approved, denied, answered
    rows: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    other_rows: int = 0


@dataclass
class _Rule:
    verdicts: dict[str, int] = field(default_factory=dict)
    agents: dict[str, int] = field(default_factory=dict)
    hits: int = 0


@dataclass
class _Policy:
    calls: int
    first: int
    last: int


def _recorded_ms(entry: StoredEvent) -> int | None:
    """When the store recorded ``entry``: a Redis stream id's milliseconds, else None."""
    return sealed_ms(entry.entry_id)


_decode = json.JSONDecoder().decode

# In canonical JSON the kind is written exactly so; entries older than the
# window are parsed only when they may hold a call being held or a request's end.
_OLD_NEEDED = (b'"kind":"call.held"', b'"kind":"request.')


class Collector:
    """Counts for a report over ``[since, until]``; feed it entries oldest first.

    Example::

        collector = Collector(since=start, until=now)
        for entry in store.audit_entries():
            collector.feed(entry)
        report = collector.report(generated_at=now, policy=gate.policy)
    """

    def __init__(self, *, since: dt.datetime | None, until: dt.datetime) -> None:
        self.since = since
        self.until = until
        self._since_ms = int(since.timestamp() * 1000) if since is not None else None
        self._until_ms = int(until.timestamp() * 1000)
        self.read = 0
        self.events = 0
        self.unreadable = 0
        self._calls = [0] * 5
        self._agents: dict[str, _Agent] = {}
        self._other_agents: list[int] = [0] * 5
        self._other_agent_names: set[str] = set()
        self._requests: dict[str, int] = dict.fromkeys(Requests.model_fields, 0)
        self._open: dict[tuple[str | None, str], int] = {}  # (agent, request) -> held at, ms
        self._latencies: list[float] = []
        self._unmatched = 0
        self._approvers: dict[str, _Approver] = {}
        self._decisions: deque[DecisionItem] = deque(maxlen=SHOWN)
        self._halts = Halts()
        self._halt_items: deque[HaltItem] = deque(maxlen=SHOWN)
        self._rules: dict[tuple[str, str], _Rule] = {}
        self._autonomy = [0, 0]
        self._autonomy_items: deque[AutonomyItem] = deque(maxlen=SHOWN)
        self._grants: dict[str, int] = dict.fromkeys(Grants.model_fields, 0)
        self._policies: dict[str, _Policy] = {}
        self._unrecorded = 0
        self._hours: dict[int, list[int]] = {}
        self._first_ms: int | None = None
        self._last_ms: int | None = None
        self._notes: set[str] = set()

    # -- reading ------------------------------------------------------------------------------
    def feed_all(self, entries: Iterable[StoredEvent]) -> Collector:
        for entry in entries:
            self.feed(entry)
        return self

    def feed(self, entry: StoredEvent) -> None:
        """Count one stored entry (entries must come oldest first)."""
        self.read += 1
        recorded = _recorded_ms(entry)
        older = recorded is not None and self._since_ms is not None and recorded < self._since_ms
        if older and not any(needle in entry.body for needle in _OLD_NEEDED):
            return
        try:
            event = _decode(entry.body.decode("utf-8"))["event"]
            kind = event["kind"]
            at = int(event["at"])
            if not isinstance(kind, str) or not isinstance(event.get("data", {}), dict):
                raise TypeError(kind)
        except (ValueError, KeyError, TypeError):
            self.unreadable += 1
            return
        when = recorded if recorded is not None else at
        inside = (self._since_ms is None or when >= self._since_ms) and when <= self._until_ms
        self._track_requests(kind, event, at, inside)
        if inside:
            self.events += 1
            self._count(kind, event, when, at)

    def _track_requests(self, kind: str, event: Mapping[str, Any], at: int, inside: bool) -> None:
        """Remember when each call was held; measure its wait when a person ends it."""
        rid = event.get("request_id")
        if not isinstance(rid, str):
            return
        key = (event.get("agent"), rid)
        if kind == "call.held":
            if len(self._open) >= MAX_OPEN:
                del self._open[next(iter(self._open))]  # the oldest: long gone, most likely
                self._notes.add(
                    f"more than {MAX_OPEN:,} requests were held and not ended at once; "
                    "the latency of the oldest is not measured"
                )
            self._open[key] = at
            return
        ended = _ENDS.get(kind)
        if ended is None:
            return
        held_at = self._open.pop(key, None)
        if not inside or ended not in ("approved", "denied", "answered"):
            return
        if held_at is None:
            self._unmatched += 1
        else:
            self._latencies.append(max(at - held_at, 0) / 1000)

    def _count(self, kind: str, event: Mapping[str, Any], when: int, at: int) -> None:
        data: Mapping[str, Any] = event.get("data") or {}
        verdict = _CALL_KINDS.get(kind)
        if verdict is not None:
            if kind == "call.denied" and data.get("verdict") == "halt":
                verdict = "halted"
                self._halts.halted_calls += 1
            self._call(verdict, event, data, when)
            if kind == "call.held":
                self._requests["held"] += 1
            if kind != "call.refused":  # a refused call's hits were counted when it was judged
                self._hits(event, data)
            return
        ended = _ENDS.get(kind) or _LATER.get(kind)
        if ended is not None:
            self._requests[ended] += 1
        decision = _DECISIONS.get(kind)
        if decision is not None:
            self._decision(decision, event, data, at)
        elif kind in ("halt.set", "halt.cleared"):
            self._halt(kind, event, data, at)
        elif kind in ("autonomy.promoted", "autonomy.demoted"):
            self._autonomy_change(kind, event, data, at)
        elif kind in _GRANTS:
            self._grants[kind.partition(".")[2]] += 1

    def _call(
        self, verdict: str, event: Mapping[str, Any], data: Mapping[str, Any], when: int
    ) -> None:
        i = _VERDICT[verdict]
        self._calls[i] += 1
        if self._first_ms is None or when < self._first_ms:
            self._first_ms = when
        if self._last_ms is None or when > self._last_ms:
            self._last_ms = when
        hour = when // _HOUR_MS
        row = self._hours.get(hour)
        if row is None:
            if len(self._hours) >= MAX_HOURS:
                self._notes.add(f"the timeline keeps at most {MAX_HOURS:,} hours")
            else:
                row = self._hours[hour] = [0] * 5
        if row is not None:
            row[i] += 1
        self._policy(data.get("policy_digest"), when)
        agent = self._agent(_name(event.get("agent")) or "")
        if agent is None:
            self._other_agents[i] += 1
            return
        agent.calls[i] += 1
        if agent.first is None or when < agent.first:
            agent.first = when
        if agent.last is None or when > agent.last:
            agent.last = when
        tool = _name(event.get("tool")) or ""
        counts = agent.tools.get(tool)
        if counts is None and len(agent.tools) < MAX_TOOLS:
            counts = agent.tools[tool] = [0] * 5
        if counts is None:
            agent.other_tools[i] += 1
            if len(agent.other_rows) < MAX_TOOLS:
                agent.other_rows.add(tool)
        else:
            counts[i] += 1
        scopes = data.get("granted_scopes")
        if (
            isinstance(scopes, list)
            and len(agent.scopes) < MAX_SCOPES
            and (not agent.scopes.issuperset(s for s in scopes if type(s) is str))
        ):
            for scope in scopes[:MAX_SCOPES]:
                if isinstance(scope, str) and len(agent.scopes) < MAX_SCOPES:
                    agent.scopes.add(truncate(scope, NAME))

    def _agent(self, name: str) -> _Agent | None:
        agent = self._agents.get(name)
        if agent is None:
            if len(self._agents) >= MAX_AGENTS:
                if len(self._other_agent_names) < MAX_AGENTS:
                    self._other_agent_names.add(name)
                return None
            agent = self._agents[name] = _Agent()
        return agent

    def _policy(self, digest: Any, when: int) -> None:
        if not isinstance(digest, str) or not digest:
            self._unrecorded += 1
            return
        digest = truncate(digest, NAME)
        seen = self._policies.get(digest)
        if seen is None:
            if len(self._policies) >= MAX_POLICIES:
                self._notes.add(
                    f"more than {MAX_POLICIES} policy versions: the rest are not listed"
                )
                return
            self._policies[digest] = _Policy(1, when, when)
            return
        seen.calls += 1
        seen.first = min(seen.first, when)
        seen.last = max(seen.last, when)

    def _hits(self, event: Mapping[str, Any], data: Mapping[str, Any]) -> None:
        hits = data.get("behaviour")
        if not isinstance(hits, list):
            return
        agent = _name(event.get("agent")) or ""
        for hit in hits[:50]:
            if not isinstance(hit, dict):
                continue
            key = (_name(hit.get("kind")) or "?", _name(hit.get("id")) or "?")
            rule = self._rules.get(key)
            if rule is None:
                if len(self._rules) >= MAX_RULES:
                    self._notes.add(
                        f"more than {MAX_RULES} rules were hit: the rest are not listed"
                    )
                    continue
                rule = self._rules[key] = _Rule()
            rule.hits += 1
            verdict = _name(hit.get("verdict")) or "?"
            rule.verdicts[verdict] = rule.verdicts.get(verdict, 0) + 1
            if agent in rule.agents or len(rule.agents) < MAX_RULE_AGENTS:
                rule.agents[agent] = rule.agents.get(agent, 0) + 1

    def _decision(
        self, decision: str, event: Mapping[str, Any], data: Mapping[str, Any], at: int
    ) -> None:
        actor = str(event.get("actor") or "")
        name = _name(actor.removeprefix("approver:")) or "?"
        agent, tool = _name(event.get("agent")), _name(event.get("tool"))
        self._decisions.append(
            DecisionItem(
                at=utc(at),
                approver=name,
                decision=decision,
                agent=agent,
                tool=tool,
                request_id=_name(event.get("request_id")),
                comment=_text(data.get("comment")),
            )
        )
        person = self._approvers.get(name)
        if person is None:
            if len(self._approvers) >= MAX_APPROVERS:
                self._notes.add(f"more than {MAX_APPROVERS} approvers: the rest are not listed")
                return
            person = self._approvers[name] = _Approver()
        column = {"voted": 0, "approved": 0, "denied": 1, "answered": 2}[decision]
        person.votes[column] += 1
        row_key = (agent or "", tool or "")
        row = person.rows.get(row_key)
        if row is None:
            if len(person.rows) >= MAX_APPROVER_ROWS:
                person.other_rows += 1
                return
            row = person.rows[row_key] = [0, 0, 0]
        row[column] += 1

    def _halt(self, kind: str, event: Mapping[str, Any], data: Mapping[str, Any], at: int) -> None:
        action = "set" if kind == "halt.set" else "cleared"
        if action == "set":
            self._halts.set += 1
        else:
            self._halts.cleared += 1
        pending = data.get("pending")
        self._halt_items.append(
            HaltItem(
                at=utc(at),
                action=action,
                scope=_name(data.get("scope")) or "?",
                target=_name(data.get("target")) or "",
                by=_name(event.get("actor")) or "?",
                reason=_text(data.get("reason")),
                cancelled=len(pending) if isinstance(pending, list) else 0,
            )
        )

    def _autonomy_change(
        self, kind: str, event: Mapping[str, Any], data: Mapping[str, Any], at: int
    ) -> None:
        self._autonomy[0 if kind == "autonomy.promoted" else 1] += 1
        rule = data.get("rule") or data.get("grant") or data.get("id")
        self._autonomy_items.append(
            AutonomyItem(
                at=utc(at),
                kind=kind.partition(".")[2],
                agent=_name(event.get("agent") or data.get("agent")),
                tool=_name(event.get("tool") or data.get("tool")),
                rule=_name(rule),
                reason=_text(data.get("reason")),
            )
        )

    # -- the report ---------------------------------------------------------------------------
    def report(self, *, generated_at: dt.datetime, policy: Policy | None = None) -> Report:
        """The report of what was fed; ``policy`` (the one loaded now) names the agents'
        scopes and which version of the policy is loaded."""
        declared: dict[str, list[str]] = {}
        loaded = None
        if policy is not None:
            declared = {name: sorted(spec.scopes) for name, spec in policy.document.agents.items()}
            loaded = LoadedPolicy(source=_name(policy.source) or "", digest=policy.digest)
        return Report(
            generated_at=generated_at,
            since=self.since,
            until=self.until,
            events=self.events,
            read=self.read,
            unreadable=self.unreadable,
            calls=_verdicts(self._calls),
            agents=self._agent_rows(declared),
            other_agents=(
                Others(rows=len(self._other_agent_names), calls=_verdicts(self._other_agents))
                if self._other_agent_names
                else None
            ),
            requests=Requests(**self._requests),
            latency=self._latency(),
            approvers=self._approver_rows(),
            decisions=list(reversed(self._decisions)),
            halts=self._halts.model_copy(update={"items": list(reversed(self._halt_items))}),
            behaviour=self._hit_rows(),
            autonomy=Autonomy(
                promoted=self._autonomy[0],
                demoted=self._autonomy[1],
                items=list(reversed(self._autonomy_items)),
            ),
            grants=Grants(**self._grants),
            policies=self._policy_versions(loaded),
            timeline=self._timeline(),
            notes=sorted(self._notes),
        )

    def _agent_rows(self, declared: Mapping[str, list[str]]) -> list[AgentRow]:
        rows = []
        for name in sorted(set(self._agents) | set(declared)):
            acc = self._agents.get(name) or _Agent()
            tools = sorted(acc.tools.items(), key=lambda kv: (-sum(kv[1]), kv[0]))
            rows.append(
                AgentRow(
                    agent=name,
                    policy_scopes=declared.get(name),
                    session_scopes=sorted(acc.scopes),
                    calls=_verdicts(acc.calls),
                    tools=[ToolRow(tool=t, calls=_verdicts(c)) for t, c in tools],
                    other_tools=(
                        Others(rows=len(acc.other_rows), calls=_verdicts(acc.other_tools))
                        if acc.other_rows
                        else None
                    ),
                    first_seen=utc(acc.first) if acc.first is not None else None,
                    last_seen=utc(acc.last) if acc.last is not None else None,
                )
            )
        rows.sort(key=lambda r: (-r.calls.total, r.agent))
        return rows

    def _latency(self) -> Latency:
        ordered = sorted(self._latencies)
        counts = [0] * (len(LATENCY_EDGES) + 1)
        for seconds in ordered:
            counts[bisect.bisect_right(LATENCY_EDGES, seconds)] += 1
        uppers: list[float | None] = [*LATENCY_EDGES, None]
        buckets = [
            LatencyBucket(label=label, upto_s=upto, count=n)
            for label, upto, n in zip(_LATENCY_LABELS, uppers, counts, strict=True)
        ]
        if not ordered:
            return Latency(decisions=0, buckets=buckets, unmatched=self._unmatched)
        return Latency(
            decisions=len(ordered),
            p50_s=percentile(ordered, 50),
            p95_s=percentile(ordered, 95),
            max_s=ordered[-1],
            buckets=buckets,
            unmatched=self._unmatched,
        )

    def _approver_rows(self) -> list[ApproverRow]:
        rows = []
        for name, acc in self._approvers.items():
            what = [
                DecidedRow(agent=agent, tool=tool, approved=a, denied=d, answered=r)
                for (agent, tool), (a, d, r) in sorted(
                    acc.rows.items(), key=lambda kv: (-sum(kv[1]), kv[0])
                )
            ]
            a, d, r = acc.votes
            rows.append(
                ApproverRow(
                    approver=name,
                    approved=a,
                    denied=d,
                    answered=r,
                    what=what,
                    other_rows=acc.other_rows,
                )
            )
        rows.sort(key=lambda r: (-(r.approved + r.denied + r.answered), r.approver))
        return rows

    def _hit_rows(self) -> list[HitRow]:
        rows = [
            HitRow(
                kind=kind,
                id=rule_id,
                hits=acc.hits,
                verdicts=dict(sorted(acc.verdicts.items())),
                agents=dict(sorted(acc.agents.items(), key=lambda kv: (-kv[1], kv[0]))),
            )
            for (kind, rule_id), acc in self._rules.items()
        ]
        rows.sort(key=lambda r: (r.kind, -r.hits, r.id))
        return rows

    def _policy_versions(self, loaded: LoadedPolicy | None) -> Policies:
        versions = [
            PolicyVersion(
                digest=digest,
                calls=acc.calls,
                first_seen=utc(acc.first),
                last_seen=utc(acc.last),
                loaded=loaded is not None and digest == loaded.digest,
            )
            for digest, acc in sorted(self._policies.items(), key=lambda kv: kv[1].first)
        ]
        return Policies(loaded=loaded, versions=versions, unrecorded=self._unrecorded)

    def _timeline(self) -> Timeline:
        start_ms = self._since_ms if self._since_ms is not None else self._first_ms
        if start_ms is None or not self._hours:
            return Timeline(bucket_s=3600, buckets=[])
        end_ms = max(self._until_ms, start_ms)
        if self._since_ms is None and self._last_ms is not None:
            end_ms = min(end_ms, self._last_ms)
        size = bucket_size((end_ms - start_ms) / 1000)
        size_ms = size * 1000
        first = start_ms // size_ms
        last = end_ms // size_ms
        sums: dict[int, list[int]] = {}
        for hour, counts in self._hours.items():
            index = hour * _HOUR_MS // size_ms
            row = sums.setdefault(index, [0] * 5)
            for i, n in enumerate(counts):
                row[i] += n
        buckets = [
            Bucket(start=utc(index * size_ms), calls=_verdicts(sums.get(index, [0] * 5)))
            for index in range(first, last + 1)
        ]
        return Timeline(bucket_s=size, buckets=buckets)


def _verdicts(counts: list[int]) -> Verdicts:
    return Verdicts(**dict(zip(VERDICTS, counts, strict=True)))
