"""Shadow mode: a rule, sequence, limit or novelty rule (or a whole policy) records what it
would do, and the call is not affected.

A real gate on MemoryStore, RedisStore, and RedisStore under the agent's ACL
user. Each case makes the calls that would trip the shadow entry, checks the
call ran as if it were not there, and reads the ``call.shadow`` event the
audit log holds for it (what the call would have got, and why).
"""

from __future__ import annotations

from typing import Any

import pytest

from gatekeeper import Gatekeeper, Policy
from gatekeeper.audit import parse_event
from gatekeeper.models import AuditEvent
from gatekeeper.store import Store


def gate_with(store: Store, policy: str) -> tuple[Gatekeeper, dict[str, Any], list[str]]:
    gate = Gatekeeper(policy=Policy.from_yaml(policy), store=store, default_timeout=5)
    ran: list[str] = []
    tools: dict[str, Any] = {}
    for name in ("dns_lookup", "open_tunnel", "http_request", "rm_rf", "send_email", "deploy"):

        def tool(target: str, _name: str = name) -> str:
            ran.append(f"{_name} {target}")
            return "ok"

        tool.__name__ = name
        tools[name] = gate.guard(tool)
    return gate, tools, ran


def shadow_events(gate: Gatekeeper) -> list[AuditEvent]:
    gate.store.flush()
    events = [parse_event(e.body, e.hash) for e in gate.store.audit_entries()]
    return [e for e in events if e.kind == "call.shadow"]


def test_a_shadow_rule_records_its_verdict_and_the_call_runs(store: Store) -> None:
    gate, tools, ran = gate_with(
        store,
        """
version: 1
default: allow
rules:
  - {id: no-rm, match: {tool: rm_rf}, verdict: deny, mode: shadow, reason: destroys data}
""",
    )
    assert tools["rm_rf"]("/data") == "ok"
    assert tools["dns_lookup"]("x") == "ok"  # no shadow rule applies: no event
    assert ran == ["rm_rf /data", "dns_lookup x"]
    (event,) = shadow_events(gate)
    assert event.tool == "rm_rf"
    assert event.data["verdict"] == "allow" and event.data["would_be"] == "deny"
    assert event.data["rules"] == ["no-rm"] and event.data["reasons"] == ["destroys data"]


def test_a_policy_in_shadow_mode_runs_everything_and_says_what_it_would_do(store: Store) -> None:
    gate, tools, ran = gate_with(
        store,
        """
version: 1
mode: shadow
default: require_approval
rules:
  - {id: lookups, match: {tool: dns_lookup}, verdict: allow}
  - {id: no-rm, match: {tool: rm_rf}, verdict: halt}
""",
    )
    assert tools["deploy"]("prod") == "ok"
    assert tools["rm_rf"]("/") == "ok"
    assert tools["dns_lookup"]("x") == "ok"
    assert ran == ["deploy prod", "rm_rf /", "dns_lookup x"]
    assert gate.store.halts() == [] and gate.pending() == []
    would = {e.tool: e.data["would_be"] for e in shadow_events(gate)}
    assert would == {"deploy": "require_approval", "rm_rf": "halt", "dns_lookup": "allow"}


def test_shadow_sequence_limit_and_novelty_record_their_hits_and_change_nothing(
    store: Store,
) -> None:
    gate, tools, ran = gate_with(
        store,
        """
version: 1
default: allow
sequences:
  - id: tunnel
    steps: [{tool: dns_lookup}, {tool: open_tunnel}, {tool: http_request}]
    within: 10m
    verdict: halt
    mode: shadow
limits:
  - {id: mail, match: {tool: send_email}, rate: 1/hour, on_exceed: deny, mode: shadow}
novelty:
  - {id: new-deploys, match: {tool: deploy}, new: args.target, mode: shadow}
""",
    )
    for name, target in (
        ("dns_lookup", "h"),
        ("open_tunnel", "h:1"),
        ("http_request", "https://h/"),
        ("send_email", "a@x"),
        ("send_email", "a@x"),
        ("deploy", "prod"),
        ("deploy", "prod"),
    ):
        assert tools[name](target) == "ok"
    assert len(ran) == 7 and gate.store.halts() == []
    events = shadow_events(gate)
    got = [(e.tool, e.data["would_be"], e.data["behaviour"][0]["id"]) for e in events]
    assert got == [
        ("http_request", "halt", "tunnel"),
        ("send_email", "deny", "mail"),
        ("deploy", "require_approval", "new-deploys"),  # the first time only: it ran
    ]
    assert all(e.data["behaviour"][0]["shadow"] for e in events)
    assert all(e.data["verdict"] == "allow" for e in events)


def test_an_enforced_sequence_beside_a_shadow_one_still_decides(store: Store) -> None:
    gate, tools, ran = gate_with(
        store,
        """
version: 1
default: allow
sequences:
  - id: staged
    steps: [{tool: dns_lookup}, {tool: http_request}]
    within: 10m
    verdict: deny
    mode: shadow
  - id: enforced
    steps: [{tool: dns_lookup}, {tool: http_request}]
    within: 10m
    verdict: halt
""",
    )
    tools["dns_lookup"]("h")
    with pytest.raises(Exception, match="halted"):
        tools["http_request"]("https://h/")
    assert ran == ["dns_lookup h"]
    (event,) = shadow_events(gate)
    assert event.data["behaviour"][0]["id"] == "staged"
