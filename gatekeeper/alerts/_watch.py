"""Which audit events are worth an alert, and what the alert says. Pure: no I/O.

:class:`Watch` reads sealed entries one at a time, in chain order:

- ``call.held`` / ``call.denied`` whose ``data.behaviour`` holds a hit: a
  sequence, a limit, or a novelty hold, one alert per hit;
- ``call.denied`` of verdict ``deny`` with no hit, at ``deny_risk`` or above:
  a denial;
- a halt: the halting ``call.denied`` (verdict ``halt``), the ``halt.set``
  and the cancellations it made, gathered into one alert by
  :class:`~._halts.Halts` (a person's ``halt.set`` alone is one too).

Everything read from an event is treated as the agent's text (see
:mod:`gatekeeper.alerts._alert`); a malformed event is skipped, never an error.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any
from urllib.parse import quote

from ..audit import StoredEvent
from ..models import ApprovalRequest, Risk
from ._alert import KINDS, MAX_ITEMS, REASON_LIMIT, Alert, AlertKind, shown
from ._halts import Halts

__all__ = ["Watch", "audit_link"]

# A cheap look at the bytes first: most events are none of these, and are not parsed.
_WATCHED = (
    b'"kind":"call.denied"',
    b'"kind":"call.held"',
    b'"kind":"halt.set"',
    b'"kind":"request.cancelled"',
)
_HIT_KINDS = ("sequence", "limit", "novelty")


def audit_link(console_url: str, entry_id: str) -> str:
    """The console's audit page with entry ``entry_id`` at its top.

    The page lists entries strictly older than ``before``: this is the id
    right after it (``1767225600000-3`` -> ``...-4`` on Redis, ``7`` -> ``8``
    in memory); an id of another shape links the newest page.
    """
    head, _, seq = entry_id.partition("-")
    if head.isdigit() and (seq.isdigit() or not seq) and len(entry_id) <= 41:
        after = f"{head}-{int(seq) + 1}" if seq else str(int(head) + 1)
        return f"{console_url}/audit?before={after}"
    return f"{console_url}/audit"


def _read(body: bytes) -> dict[str, Any] | None:
    if not any(marker in body for marker in _WATCHED):
        return None
    try:
        outer = json.loads(body)
    except ValueError:
        return None
    event = outer.get("event") if isinstance(outer, dict) else None
    return event if isinstance(event, dict) else None


def _at(event: Mapping[str, Any]) -> dt.datetime:
    ms = event.get("at")
    if not isinstance(ms, int) or isinstance(ms, bool):
        ms = 0
    ms = min(max(ms, 0), 253_402_300_799_000)  # within what a datetime can hold
    return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc)


def _steps(hits: Iterable[Mapping[str, Any]]) -> tuple[str, ...]:
    """A sequence's earlier calls as lines: ``dns_lookup at 12:01:02 UTC (request 01J...)``."""
    lines: list[str] = []
    for hit in hits:
        calls = hit.get("calls")
        if hit.get("kind") != "sequence" or not isinstance(calls, list):
            continue
        for call in calls[:MAX_ITEMS]:
            if not isinstance(call, dict):
                continue
            line = shown(call.get("tool")) or "(unnamed tool)"
            at = call.get("at")
            if isinstance(at, str):
                try:
                    when = dt.datetime.fromisoformat(at).astimezone(dt.timezone.utc)
                    line += f" at {when:%H:%M:%S} UTC"
                except ValueError:
                    pass
            request = shown(call.get("request_id"))
            if request:
                line += f" (request {request})"
            lines.append(line)
        break  # the first sequence's story; the others are named in the reasons
    return tuple(lines)


class Watch:
    """Turns sealed audit entries into alerts (not yet throttled). Pure; one reader at a time.

    ``kinds``: the kinds wanted; ``deny_risk``: the least risk a denial must
    have to alert; ``console_url``: the console's public URL, for links;
    ``grace``: seconds the events of a halt are gathered for before its alert.
    """

    def __init__(
        self,
        *,
        kinds: Iterable[AlertKind] = KINDS,
        deny_risk: Risk = Risk.HIGH,
        console_url: str | None = None,
        grace: float = 2.0,
    ) -> None:
        self.kinds = frozenset(kinds)
        self.deny_risk = deny_risk
        self.console_url = console_url.rstrip("/") if console_url else None
        self._halts = Halts(grace)

    # -- links -------------------------------------------------------------------------------
    def _link(self, path: str) -> str | None:
        return f"{self.console_url}{path}" if self.console_url else None

    def request_link(self, request_id: str) -> str | None:
        return self._link(f"/requests/{quote(request_id, safe='')}")

    def _entry_link(self, entry_id: str) -> str | None:
        return audit_link(self.console_url, entry_id) if self.console_url else None

    # -- the log -----------------------------------------------------------------------------
    def read(self, entry: StoredEvent, now: float) -> list[Alert]:
        """The alerts entry ``entry`` calls for, read at ``now`` (unix seconds)."""
        event = _read(entry.body)
        if event is None:
            return []
        kind = event.get("kind")
        if kind == "halt.set":
            return self._halt_set(event, now)
        if kind == "request.cancelled":
            self._cancelled(event)
            return []
        if kind in ("call.held", "call.denied"):
            return self._call(event, entry.entry_id, now)
        return []

    def due(self, now: float) -> list[Alert]:
        """The halts whose events were gathered long enough, one alert each."""
        return self._halts.due(now)

    def _call(self, event: Mapping[str, Any], entry_id: str, now: float) -> list[Alert]:
        data = event.get("data")
        data = data if isinstance(data, dict) else {}
        verdict, risk = shown(data.get("verdict"), 20), shown(data.get("risk"), 20)
        raw_hits = data.get("behaviour")
        hits = [
            h
            for h in (raw_hits if isinstance(raw_hits, list) else [])
            if isinstance(h, dict) and h.get("kind") in _HIT_KINDS and h.get("shadow") is not True
        ][:MAX_ITEMS]
        request_id = shown(event.get("request_id"))
        agent = shown(event.get("agent"))
        base = Alert(
            kind="halt",
            at=_at(event),
            key=(),
            agent=agent,
            session_id=shown(event.get("session_id")),
            tool=shown(event.get("tool")),
            verdict=verdict,
            risk=risk,
            request_id=request_id,
            link=self.request_link(request_id) if request_id else self._entry_link(entry_id),
        )
        if event.get("kind") == "call.denied" and verdict == "halt":
            return self._halting_call(data, hits, base, now)
        alerts: list[Alert] = []
        seen: set[tuple[str, str]] = set()
        for hit in hits:
            hit_kind: AlertKind = hit["kind"]
            hit_id = shown(hit.get("id")) or "(no id)"
            if hit_kind not in self.kinds or (hit_kind, hit_id) in seen:
                continue
            seen.add((hit_kind, hit_id))
            reason = shown(hit.get("reason"), REASON_LIMIT)
            alerts.append(
                replace(
                    base,
                    kind=hit_kind,
                    key=(hit_kind, agent or "", hit_id),
                    rule=hit_id,
                    reasons=(reason,) if reason else (),
                    steps=_steps([hit]),
                )
            )
        if not hits and self._worth_a_denial(event, verdict, risk):
            rules = data.get("rules")
            rule = shown(rules[0]) if isinstance(rules, list) and rules else None
            alerts.append(
                replace(
                    base,
                    kind="denial",
                    key=("denial", agent or "", rule or ""),
                    rule=rule,
                    reasons=self._reasons(data),
                )
            )
        return alerts

    def _worth_a_denial(
        self, event: Mapping[str, Any], verdict: str | None, risk: str | None
    ) -> bool:
        if "denial" not in self.kinds or event.get("kind") != "call.denied" or verdict != "deny":
            return False
        try:
            return Risk(risk).level >= self.deny_risk.level
        except ValueError:
            return False

    @staticmethod
    def _reasons(data: Mapping[str, Any]) -> tuple[str, ...]:
        reasons = data.get("reasons")
        if not isinstance(reasons, list):
            return ()
        found = (shown(r, REASON_LIMIT) for r in reasons[:MAX_ITEMS])
        return tuple(r for r in found if r)

    # -- halts -------------------------------------------------------------------------------
    def _halting_call(
        self, data: Mapping[str, Any], hits: list[dict[str, Any]], base: Alert, now: float
    ) -> list[Alert]:
        if "halt" not in self.kinds:
            return []
        rules = data.get("rules")
        rule = shown(hits[0].get("id")) if hits else None
        if rule is None and isinstance(rules, list) and rules:
            rule = shown(rules[0])
        alert = replace(
            base,
            key=("halt", "agent", base.agent or ""),
            rule=rule,
            reasons=self._reasons(data),
            steps=_steps(hits),
            link=self._link("/agents"),
        )
        return self._halts.call(alert, now)

    def _halt_set(self, event: Mapping[str, Any], now: float) -> list[Alert]:
        if "halt" not in self.kinds:
            return []
        data = event.get("data")
        data = data if isinstance(data, dict) else {}
        scope = shown(data.get("scope"), 20) or "agent"
        target = shown(data.get("target")) or "(unnamed)"
        pending = data.get("pending")
        reason = shown(data.get("reason"), REASON_LIMIT)
        alert = Alert(
            kind="halt",
            at=_at(event),
            key=("halt", scope, target),
            agent=shown(event.get("agent")),
            session_id=shown(event.get("session_id")),
            reasons=(reason,) if reason else (),
            halt_scope=scope,
            halt_target=target,
            by=shown(event.get("actor")),
            cancelled=len(pending) if isinstance(pending, list) else 0,
            link=self._link("/agents"),
        )
        return self._halts.halt_set(alert, counted=isinstance(pending, list), now=now)

    def _cancelled(self, event: Mapping[str, Any]) -> None:
        data = event.get("data")
        reason = data.get("reason") if isinstance(data, dict) else None
        if "halt" in self.kinds and isinstance(reason, str) and reason.startswith("halted"):
            self._halts.cancelled(
                shown(event.get("actor")), shown(event.get("agent")), shown(event.get("session_id"))
            )

    # -- the queue ---------------------------------------------------------------------------
    def queue(self, request: ApprovalRequest, waited: float, at: dt.datetime) -> Alert | None:
        """The alert for ``request``, the oldest pending one, having waited ``waited`` seconds."""
        if "queue" not in self.kinds:
            return None
        call = request.call
        return Alert(
            kind="queue",
            at=at,
            key=("queue",),
            agent=shown(call.agent),
            session_id=shown(call.session_id),
            tool=shown(call.tool),
            risk=request.classification.risk.value,
            reasons=tuple(
                r for r in (shown(x, REASON_LIMIT) for x in request.classification.reasons) if r
            )[:MAX_ITEMS],
            request_id=shown(request.id),
            waited=waited,
            link=self.request_link(request.id),
        )
