"""What a transparency report says, as data: the JSON format and what md and html draw.

Every name in it (agents, tools, approvers, ids, reasons, comments) is as the
audit log holds it, cut to a bounded length: the Markdown and HTML renderers
make it visible and escape it, the JSON encoder escapes it as JSON.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "FORMAT",
    "VERDICTS",
    "AgentRow",
    "ApproverRow",
    "Autonomy",
    "AutonomyItem",
    "Bucket",
    "DecidedRow",
    "DecisionItem",
    "Grants",
    "HaltItem",
    "Halts",
    "HitRow",
    "Latency",
    "LatencyBucket",
    "LoadedPolicy",
    "Others",
    "Policies",
    "PolicyVersion",
    "Report",
    "Requests",
    "Timeline",
    "ToolRow",
    "Verdicts",
]

#: The JSON report's ``format``: bumped when a field changes meaning or goes away.
FORMAT = "gatekeeper-report/1"

#: What the gate did with a call, in the order every table and chart shows them.
VERDICTS = ("allowed", "held", "denied", "halted", "refused")


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Verdicts(_Part):
    """Calls by what the gate did with them.

    ``allowed`` ran at once; ``held`` waited for a person; ``denied`` was refused
    by the policy; ``halted`` was refused by a ``halt`` verdict, which halted
    its agent or session; ``refused`` was not run because a halt was already
    in force (or, approved, its arguments had changed).
    """

    allowed: int = 0
    held: int = 0
    denied: int = 0
    halted: int = 0
    refused: int = 0

    @property
    def total(self) -> int:
        return self.allowed + self.held + self.denied + self.halted + self.refused

    def of(self, verdict: str) -> int:
        value: int = getattr(self, verdict)
        return value


class ToolRow(_Part):
    tool: str
    calls: Verdicts


class Others(_Part):
    """Rows past a cap, summed into one: how many there were and their calls."""

    rows: int
    calls: Verdicts


class AgentRow(_Part):
    agent: str
    policy_scopes: list[str] | None = Field(
        description="the scopes its `agents:` entry in the loaded policy grants; None: no entry"
    )
    session_scopes: list[str] = Field(
        description="the scopes its sessions were granted, as recorded on its calls"
    )
    calls: Verdicts
    tools: list[ToolRow]
    other_tools: Others | None = None
    first_seen: dt.datetime | None = None
    last_seen: dt.datetime | None = None


class Requests(_Part):
    """What became of held calls' requests, counted by the events of the window."""

    held: int = 0
    approved: int = 0
    denied: int = 0
    answered: int = Field(default=0, description="a person wrote the result instead (responded)")
    expired: int = 0
    cancelled: int = 0
    abandoned: int = 0
    outcome_unknown: int = 0
    executed: int = 0
    failed: int = 0


class LatencyBucket(_Part):
    label: str
    upto_s: float | None = Field(description="upper bound in seconds (exclusive); None: no bound")
    count: int


class Latency(_Part):
    """Seconds from a call being held to the person's decision that ended its request."""

    decisions: int = Field(description="decisions measured (approved, denied or answered)")
    p50_s: float | None = None
    p95_s: float | None = None
    max_s: float | None = None
    buckets: list[LatencyBucket]
    unmatched: int = Field(
        default=0, description="decisions whose request was held before the log began"
    )


class DecidedRow(_Part):
    agent: str
    tool: str
    approved: int = 0
    denied: int = 0
    answered: int = 0


class ApproverRow(_Part):
    """One person's decisions; ``approved`` counts every approving vote (quorum or not)."""

    approver: str
    approved: int = 0
    denied: int = 0
    answered: int = 0
    what: list[DecidedRow]
    other_rows: int = 0


class DecisionItem(_Part):
    at: dt.datetime
    approver: str
    decision: Literal["approved", "voted", "denied", "answered"]
    agent: str | None
    tool: str | None
    request_id: str | None
    comment: str | None = None


class HaltItem(_Part):
    at: dt.datetime
    action: Literal["set", "cleared"]
    scope: str
    target: str
    by: str
    reason: str | None = None
    cancelled: int = Field(default=0, description="pending requests the halt cancelled")


class Halts(_Part):
    set: int = 0
    cleared: int = 0
    halted_calls: int = Field(default=0, description="calls whose verdict was halt")
    items: list[HaltItem] = Field(default_factory=list, description="the newest, newest first")


class HitRow(_Part):
    """A sequence completed, a limit reached or a novelty held: its calls, by verdict and agent."""

    kind: str
    id: str
    hits: int
    verdicts: dict[str, int]
    agents: dict[str, int]


class AutonomyItem(_Part):
    at: dt.datetime
    kind: str
    agent: str | None
    tool: str | None
    rule: str | None
    reason: str | None = None


class Autonomy(_Part):
    promoted: int = 0
    demoted: int = 0
    items: list[AutonomyItem] = Field(default_factory=list, description="newest first")


class Grants(_Part):
    """Standing approvals: made, used by a call, revoked, run out."""

    created: int = 0
    used: int = 0
    revoked: int = 0
    expired: int = 0


class LoadedPolicy(_Part):
    source: str
    digest: str


class PolicyVersion(_Part):
    digest: str
    calls: int
    first_seen: dt.datetime
    last_seen: dt.datetime
    loaded: bool = Field(description="the policy the report was made with")


class Policies(_Part):
    loaded: LoadedPolicy | None
    versions: list[PolicyVersion] = Field(description="recorded on calls, first used first")
    unrecorded: int = Field(
        default=0,
        description="calls whose event names no policy (recorded before this release, or "
        "classified by no policy: a tool that does not exist)",
    )


class Bucket(_Part):
    start: dt.datetime
    calls: Verdicts


class Timeline(_Part):
    bucket_s: int
    buckets: list[Bucket]


class Report(_Part):
    """A transparency report over the audit events recorded in ``[since, until]``."""

    format: str = FORMAT
    generated_at: dt.datetime
    since: dt.datetime | None
    until: dt.datetime
    events: int = Field(description="audit events in the window")
    read: int = Field(description="audit entries read, the window's and older")
    unreadable: int = 0
    calls: Verdicts
    agents: list[AgentRow]
    other_agents: Others | None = None
    requests: Requests
    latency: Latency
    approvers: list[ApproverRow]
    decisions: list[DecisionItem] = Field(description="the newest, newest first")
    halts: Halts
    behaviour: list[HitRow]
    autonomy: Autonomy
    grants: Grants
    policies: Policies
    timeline: Timeline
    notes: list[str] = Field(default_factory=list, description="caps reached and such")
