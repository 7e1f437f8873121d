"""What one alert says: :class:`Alert`, its headline in our own words, its JSON document.

Every value that came from the audit log (agent, session and tool names, rule
ids, the policy's reasons, a halting person's name) is agent-controlled as far
as an alert is concerned: an agent's process writes the drafts its events are
sealed from. So those values are made visible and bounded when the alert is
built (:func:`shown`), and they stay in fields of their own: the headline is
always our own words. Slack escapes them again for mrkdwn
(:mod:`gatekeeper.channels.slack._alerts`); a webhook receiver gets them as
JSON strings. An alert never carries a call's arguments.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Literal

from .._text import inline

__all__ = ["KINDS", "NAME_LIMIT", "REASON_LIMIT", "Alert", "AlertKind", "shown", "span"]

AlertKind = Literal["halt", "sequence", "limit", "denial", "novelty", "queue"]
#: Every kind of alert, in the order the docs list them.
KINDS: tuple[AlertKind, ...] = ("halt", "sequence", "limit", "denial", "novelty", "queue")

NAME_LIMIT = 120  # characters of one name or id (agent, session, tool, rule, request)
REASON_LIMIT = 300  # characters of one of the policy's reasons
MAX_ITEMS = 10  # reasons, or a sequence's steps, in one alert

_NOUNS: dict[str, str] = {
    "halt": "halts",
    "sequence": "sequence hits",
    "limit": "limits exceeded",
    "denial": "denials of high-risk calls",
    "novelty": "novelty holds",
    "queue": "requests waiting too long",
}
_OUTCOME = {"require_approval": "held for a person", "deny": "denied", "halt": "halted"}
_SCOPES = {"session": "Session", "agent": "Agent", "all": "Every agent"}
_RISKS = ("low", "medium", "high", "critical")


def shown(text: object, limit: int = NAME_LIMIT) -> str | None:
    """Agent-controlled text for an alert: one line, hidden characters made visible, at most
    ``limit`` characters (a cut one ends with ``…``).

    Anything but a non-empty string is None (a forged event may put a number
    or a list where a name belongs).
    """
    if not isinstance(text, str) or not text:
        return None
    if len(text) <= limit and text.isascii() and text.isprintable():
        return text
    pieces: list[str] = []
    used = 0
    for i, ch in enumerate(text):
        piece = inline(ch, 1)  # the character, or its <U+XXXX> code
        last = i == len(text) - 1
        if used + len(piece) > (limit if last else limit - 1):
            return "".join(pieces) + "…"
        pieces.append(piece)
        used += len(piece)
    return "".join(pieces)


def span(seconds: float) -> str:
    """``seconds`` in words: ``45 s``, ``10 min``, ``2 h 5 min``, ``3 days``."""
    total = max(int(seconds), 0)
    if total < 60:
        return f"{total} s"
    minutes = total // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{hours // 24} days"


@dataclass(frozen=True)
class Alert:
    """One message to the people on call: a halt, a sequence hit, a limit, a denial...

    Alerts are built from the sealed audit log and the queue by
    :class:`~gatekeeper.alerts.Alerter`; a target (Slack, a webhook) only
    renders and sends them. Text fields are already visible and bounded
    (see :func:`shown`) but still the agent's: escape them for whatever
    markup shows them.

    ``key`` says which alerts are counted together (kind, agent, rule): at
    most one message per key per window, the others counted in
    ``suppressed``. ``id`` is the same in every process that builds this
    alert, so two consoles on one store send it once. A ``summary`` alert
    reports only ``suppressed`` alerts of its key held back in the window
    before; ``capped`` ones were held back because more than the most
    alerts a window allows were sent.
    """

    kind: AlertKind
    at: dt.datetime
    key: tuple[str, ...]
    agent: str | None = None
    session_id: str | None = None
    tool: str | None = None
    rule: str | None = None
    verdict: str | None = None
    risk: str | None = None
    reasons: tuple[str, ...] = ()
    steps: tuple[str, ...] = ()
    request_id: str | None = None
    halt_scope: str | None = None
    halt_target: str | None = None
    by: str | None = None
    cancelled: int = 0
    waited: float | None = None
    link: str | None = None
    id: str = ""
    suppressed: int = 0
    summary: bool = False
    capped: bool = False
    window: float = 0.0

    @property
    def headline(self) -> str:
        """One line in our own words (no agent text), e.g. ``Session halted by policy``."""
        if self.summary:
            noun = _NOUNS[self.kind]
            if self.capped:
                return (
                    f"{self.suppressed:,} more {noun} were not sent: too many alerts "
                    f"in {span(self.window)}"
                )
            return f"{self.suppressed:,} more {noun} like this in {span(self.window)}"
        outcome = _OUTCOME.get(self.verdict or "", "stopped")
        if self.kind == "halt":
            scope = _SCOPES.get(self.halt_scope or "", "The agent")
            who = "policy" if self.by is None or self.by.startswith("policy") else "a person"
            return f"{scope} halted by {who}"
        if self.kind == "sequence":
            return f"Sequence completed: the call was {outcome}"
        if self.kind == "limit":
            return f"Limit exceeded: the call was {outcome}"
        if self.kind == "denial":
            risk = self.risk if self.risk in _RISKS else "high"
            return f"{risk.capitalize()}-risk call denied by policy"
        if self.kind == "novelty":
            return f"New behaviour: the call was {outcome}"
        return f"A request has waited {span(self.waited or 0)} for a decision"

    @property
    def note(self) -> str | None:
        """What was held back before this alert (our words), or None."""
        if self.summary or not self.suppressed:
            return None
        return (
            f"{self.suppressed:,} more like it in the {span(self.window)} before were "
            "not sent one by one"
        )

    def document(self) -> dict[str, Any]:
        """The alert as JSON for a webhook (``type: "alert"``); no call arguments, ever."""
        return {
            "type": "alert",
            "id": self.id,
            "kind": self.kind,
            "headline": self.headline,
            "note": self.note,
            "at": self.at.astimezone(dt.timezone.utc).isoformat(),
            "agent": self.agent,
            "session_id": self.session_id,
            "tool": self.tool,
            "rule": self.rule,
            "verdict": self.verdict,
            "risk": self.risk,
            "reasons": list(self.reasons),
            "steps": list(self.steps),
            "request_id": self.request_id,
            "halt": (
                {"scope": self.halt_scope, "target": self.halt_target, "by": self.by}
                if self.kind == "halt"
                else None
            ),
            "cancelled": self.cancelled,
            "waited_seconds": None if self.waited is None else round(self.waited, 1),
            "summary": self.summary,
            "suppressed": self.suppressed,
            "window_seconds": self.window,
            "console_url": self.link,
        }
