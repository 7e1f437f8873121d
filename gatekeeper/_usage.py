"""Current usage of the policy's limits, per limit and per agent (``gatekeeper limits``).

Reads the entries the store keeps for each limit key and counts them the way
the store does when it checks a call: a rate counts the calls in its sliding
window, a budget sums their amounts, a concurrency cap counts the slots held.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from .policy import Policy
from .policy._behaviour import UNIT

__all__ = ["LimitUsage", "amount", "limit_usage", "span"]

_PER_PART = {"a": "agent", "s": "session", "t": "tool", "v": "value", "g": "all agents"}


@dataclass(frozen=True)
class LimitUsage:
    """One limit's use under one key: by one agent (and session, tool or value)."""

    limit: str
    kind: str
    agent: str  # "*" for a limit counted across all agents (per: global)
    per: str  # what the key counts apart: agent, session, tool, value, all agents
    part: str  # the key's own part (a digest for sessions, tools and values)
    used: float
    max: float
    window_s: float

    @property
    def full(self) -> bool:
        return self.used >= self.max


def limit_usage(
    policy: Policy, usage: list[tuple[str, str, list[tuple[int, float]]]], now: dt.datetime
) -> list[LimitUsage]:
    """The store's raw entries (``store.behaviour_usage()``) counted as the store counts them.

    Keys of limits the policy no longer has are left out; keys with nothing
    in their window are too.
    """
    now_ms = int(now.timestamp() * 1000)
    by_id = {lim.id: lim for lim in policy.limits}
    out: list[LimitUsage] = []
    for agent, key, entries in usage:
        if not key.startswith("lim:"):
            continue
        rest = key[4:]
        # Ids may hold ':': the longest limit id that prefixes the key is the one.
        found = [i for i in by_id if rest.startswith(i + ":")]
        if not found:
            continue
        lid = max(found, key=len)
        rule, part = by_id[lid], rest[len(lid) + 1 :]
        if rule.kind == "concurrent":
            window, live = 0.0, [a for at, a in entries if at > now_ms]
            limit_max = float(rule.concurrent or 0)
        elif rule.kind == "budget":
            window = float(rule.window or 0)
            live = [a for at, a in entries if at > now_ms - window * 1000]
            limit_max = float(rule.max or 0)
        else:
            count, window = rule.parsed_rate
            live = [a for at, a in entries if at > now_ms - window * 1000]
            limit_max = float(count)
        if not live:
            continue
        used = sum(live) / UNIT if rule.kind == "budget" else float(len(live))
        per = _PER_PART.get(part.split(":", 1)[0], part)
        out.append(LimitUsage(lid, rule.kind, agent, per, part, used, limit_max, window))
    out.sort(key=lambda u: (u.limit, u.agent, u.part))
    return out


def amount(value: float) -> str:
    """A used or maximum amount as people write it: ``3``, ``12.5``."""
    return str(int(value)) if value == int(value) else f"{value:g}"


def span(seconds: float) -> str:
    """A window as the policy writes it: ``1h``, ``1d``, ``90s``."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
