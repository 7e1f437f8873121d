"""A policy and helpers shared by the gate tests (unit and integration)."""

from __future__ import annotations

from gatekeeper import Gatekeeper, Policy
from gatekeeper.audit import parse_event
from gatekeeper.store import Store

POLICY_YAML = """
version: 1
default: require_approval
rules:
  - {id: reads, match: {tool: "read_*"}, verdict: allow}
  - {id: no-drop, match: {tool: drop_table}, verdict: deny, reason: "dropping tables is forbidden"}
  - {id: tripwire, match: {tool: open_tunnel}, verdict: halt}
  - id: finance
    match: {tool: big_refund}
    verdict: require_approval
    approval: {group: finance, quorum: 2}
  - id: quick
    match: {tool: "quick_*"}
    verdict: require_approval
    approval: {timeout: 0.2}
"""


def make_policy(extra: str = "") -> Policy:
    return Policy.from_yaml(POLICY_YAML + extra)


def audit_kinds(gate: Gatekeeper | Store) -> list[str]:
    store = gate.store if isinstance(gate, Gatekeeper) else gate
    store.flush()
    return [parse_event(e.body, e.hash).kind for e in store.audit_entries()]


def audit_events(gate: Gatekeeper | Store) -> list:  # type: ignore[type-arg]
    store = gate.store if isinstance(gate, Gatekeeper) else gate
    store.flush()
    return [parse_event(e.body, e.hash) for e in store.audit_entries()]
