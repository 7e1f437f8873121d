"""Attacks a hostile review made with an agent's credentials, each kept as a regression test.

Same set-up as ``test_trust_boundary``: the shipped ACL users on a real
redis-server; ``dep.attacker`` is a raw client logged in as billing-bot's user.
"""

from __future__ import annotations

import io
import json
import threading
import time
from typing import Any

import pytest
import redis

from gatekeeper import ApprovalTimeout, Gatekeeper, HaltScope, RequestStatus, TamperingDetected
from gatekeeper._clock import SystemClock
from gatekeeper.audit import verify_chain
from gatekeeper.cli._commands import IO, show
from gatekeeper.testing import ManualClock
from tests.storekit import held_event, make_request
from tests.trustkit import POLICY, Deployment, HeldCall, chain

# Every guarded call here runs on the blocking driver and on the async one.
pytestmark = pytest.mark.usefixtures("both_faces")


def _register(dep: Deployment) -> None:
    """billing-bot's process makes a call: the agent is in the registry, its journal read."""
    event = {"kind": "call.allowed", "at": 1, "actor": "agent:billing-bot", "agent": "billing-bot"}
    dep.agent.admit(event, agent="billing-bot", session_id="s1")


def _refused(dep: Deployment) -> list[Any]:
    return [e for e in chain(dep) if e.kind == "audit.refused"]


def test_an_agent_user_cannot_send_a_script_of_its_own(dep: Deployment) -> None:
    """EVAL could busy-loop the server where no SCRIPT KILL reaches it: agents run ours only."""
    a = dep.agent.keys.of("billing-bot")
    with pytest.raises(redis.exceptions.NoPermissionError):
        dep.attacker.eval("while true do end", 1, a.journal)
    with pytest.raises(redis.exceptions.NoPermissionError):
        dep.attacker.script_load("return 1")
    event = held_event(make_request(ManualClock(), agent="billing-bot"))
    dep.agent.admit(event, agent="billing-bot", session_id="s1")  # the store's own still run


def test_scripts_lost_by_a_redis_restart_come_back_through_the_deciders(dep: Deployment) -> None:
    event = held_event(make_request(ManualClock(), agent="billing-bot"))
    dep.admin.script_flush()
    with pytest.raises(Exception, match=r"a deciding process .* loads them"):
        dep.agent.admit(event, agent="billing-bot", session_id="s1")
    dep.decider._scripts_checked = -1e9
    dep.decider.flush()  # the sealer of a deciding process loads them again
    dep.agent.admit(event, agent="billing-bot", session_id="s1")


def test_an_agent_waits_within_its_retry_bound_for_the_deciders_to_reload_the_scripts(
    dep: Deployment,
) -> None:
    """A failover to a replica without the scripts costs the agent a moment, not the call:
    it tries again (the script never ran) while a deciding process reloads them."""
    event = held_event(make_request(ManualClock(), agent="billing-bot"))
    dep.admin.script_flush()

    def reload_soon() -> None:
        time.sleep(0.4)
        dep.decider._scripts_checked = -1e9
        dep.decider.keep_scripts_loaded()

    helper = threading.Thread(target=reload_soon)
    started = time.monotonic()
    helper.start()
    try:
        dep.agent.admit(event, agent="billing-bot", session_id="s1")
    finally:
        helper.join()
    assert 0.35 < time.monotonic() - started < 2.0


def test_an_unreadable_agent_name_does_not_stop_the_kill_switch_or_the_sealer(
    dep: Deployment,
) -> None:
    dep.attacker.sadd(dep.agent.keys.agents, b"\xff\xfe")
    other = make_request(SystemClock(), agent="other-bot")  # pending now, by the store's clock
    dep.decider.hold(other, held_event(other))
    assert dep.decider.halt(HaltScope.ALL, "*", by="ops") == [other.id]
    assert {h.scope for h in dep.decider.halts()} == {HaltScope.ALL}
    assert dep.decider.queue() == ([], 0)
    assert "call.held" in [e.kind for e in chain(dep)]  # the sealer went on
    assert dep.decider.resume(HaltScope.ALL, "*", by="alice") is True


def test_malformed_entries_are_refused_and_the_others_are_still_sealed(dep: Deployment) -> None:
    _register(dep)
    a = dep.agent.keys.of("billing-bot")
    other = make_request(ManualClock(), agent="other-bot")
    dep.decider.hold(other, held_event(other))
    for bad in (
        {"kind": "call.allowed", "agent": "billing-bot", "actor": "agent:billing-bot"},  # no at
        {"kind": "call.allowed", "agent": "billing-bot", "actor": "x", "at": "x", "data": {}},
        {"kind": "call.allowed", "agent": "billing-bot", "at": 1, "actor": 5, "data": {}},
    ):
        dep.attacker.rpush(a.journal, json.dumps(bad))
    noncanonical = b'={"kind": "call.allowed",  "agent":"other-bot","agent":"billing-bot",'
    noncanonical += b'"actor":"agent:billing-bot","at":1,"data":{}}'
    dep.attacker.rpush(a.journal, noncanonical)
    events = chain(dep)
    assert [e.data["claimed_kind"] for e in events if e.kind == "audit.refused"].count(
        "call.allowed"
    ) == 3
    assert ("call.held", other.id) in [(e.kind, e.request_id) for e in events]
    report = verify_chain(dep.decider.audit_entries(), head=dep.decider.audit_head())
    assert report.ok, report.problem


def test_an_oversized_entry_is_never_read_whole(dep: Deployment) -> None:
    _register(dep)
    a = dep.agent.keys.of("billing-bot")
    dep.attacker.rpush(a.journal, b"x" * (9 * 1024 * 1024))
    events = chain(dep)
    unreadable = [e for e in events if e.kind == "audit.unreadable"]
    assert unreadable and "over the limit" in str(unreadable[0].data["problem"])
    assert unreadable[0].agent == "billing-bot"


def test_an_agents_journal_holds_no_decisions_even_with_a_real_signature(
    dep: Deployment,
) -> None:
    """Replaying alice's real signed vote as a `request.approved` of quorum 2 is refused."""
    call = HeldCall(dep)
    a = dep.agent.keys.of("billing-bot")
    call.decider.approve(call.id, approver="alice")
    call.join()
    vote = json.loads(dep.attacker.lrange(a.votes(call.id), 0, 0)[0])
    forged = {
        "kind": "request.approved",
        "at": 1,
        "actor": "approver:alice",
        "agent": "billing-bot",
        "request_id": call.id,
        "data": {"approvals": 2, "signed": vote["signed"], "edited_args": {"amount": 99999}},
    }
    dep.attacker.rpush(a.journal, json.dumps(forged))
    refused = _refused(dep)
    assert [e.data["claimed_kind"] for e in refused] == ["request.approved"]
    assert "never from an agent's journal" in str(refused[0].data["problem"])


def test_an_agent_cannot_write_into_another_agents_timeline(dep: Deployment) -> None:
    _register(dep)
    other = make_request(ManualClock(), agent="other-bot")
    dep.decider.hold(other, held_event(other))
    a = dep.agent.keys.of("billing-bot")
    base = {"at": 1, "agent": "billing-bot", "data": {}, "request_id": other.id}
    for kind, actor in (
        ("request.executed", "agent:billing-bot"),  # someone else's request
        ("call.allowed", "approver:alice"),  # an actor it is not
        ("audit.unreadable", "system"),  # a kind only the sealer writes
    ):
        dep.attacker.rpush(a.journal, json.dumps({**base, "kind": kind, "actor": actor}))
    refused = _refused(dep)
    assert sorted(e.data["claimed_kind"] for e in refused) == [
        "audit.unreadable",
        "call.allowed",
        "request.executed",
    ]
    timeline = [e for e in chain(dep) if e.request_id == other.id and e.kind != "audit.refused"]
    assert [e.kind for e in timeline] == ["call.held"]


def test_an_old_time_does_not_hide_a_requests_timeline(dep: Deployment) -> None:
    from gatekeeper.web._present import request_events

    call = HeldCall(dep)
    call.decider.approve(call.id, approver="alice")
    call.join()
    a = dep.agent.keys.of("billing-bot")
    dep.attacker.rpush(
        a.journal,
        json.dumps(
            {
                "kind": "call.allowed",
                "at": 0,
                "actor": "agent:billing-bot",
                "data": {},
                "agent": "billing-bot",
            }
        ),
    )
    dep.decider.flush()
    newest_first = list(reversed(list(dep.decider.audit_entries())))
    kinds = [e.kind for e in request_events(newest_first, dep.decider.get(call.id))]
    assert kinds == ["call.held", "request.approved", "request.released", "request.executed"]


def test_a_lowered_quorum_and_an_erased_flag_still_read_as_tampering(dep: Deployment) -> None:
    """The agent lowers its request's quorum to 1; alice alone approves; the gate refuses;
    then the agent erases its flag and writes `executed`. The deciders' view still says so."""
    policy_two = POLICY.from_yaml(
        "version: 1\ndefault: require_approval\ndefaults: {approval: {quorum: 2}}\n"
    )
    a = dep.agent.keys.of("billing-bot")
    gate = Gatekeeper(policy=policy_two, store=dep.agent, default_timeout=20)
    ran: list[Any] = []

    @gate.guard(irreversible=True)
    def refund(order_id: str) -> str:
        ran.append(order_id)
        return "ok"

    errors: list[BaseException] = []

    def run() -> None:
        with gate.session(agent="billing-bot"):
            try:
                refund("A-2")
            except BaseException as exc:
                errors.append(exc)

    t = threading.Thread(target=run)
    t.start()
    for _ in range(500):
        page, _ = dep.decider.queue()
        if page:
            break
        threading.Event().wait(0.01)
    rid = page[0].id
    dep.attacker.hset(a.req(rid), "quorum", 1)
    doc = json.loads(dep.attacker.hget(a.req(rid), "doc"))
    doc["quorum"] = 1
    dep.attacker.hset(a.req(rid), "doc", json.dumps(doc))
    decider = Gatekeeper(policy=policy_two, store=dep.decider)
    decider.approve(rid, approver="alice")
    t.join(10)
    assert ran == [] and isinstance(errors[0], TamperingDetected)
    dep.agent.flush()
    dep.decider.flush()  # the sealer records the agent's report where it can't erase it
    dep.attacker.hdel(a.req(rid), "tampering")
    dep.attacker.hset(a.req(rid), "status", "executed")
    req = dep.decider.get(rid)
    assert req.tampering and decider.trust_problem(req)
    printed = io.StringIO()
    show(decider, rid, as_json=False, io=IO(out=printed, err=printed, inp=io.StringIO()))
    assert "TAMPERING" in printed.getvalue()
    kinds = [e.kind for e in chain(dep) if e.request_id == rid]
    assert "request.released" not in kinds and "request.failed" in kinds


def test_an_extended_expiry_does_not_keep_the_agent_waiting(
    dep: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gatekeeper._gate as gate_module

    monkeypatch.setattr(gate_module, "CLOCK_SKEW", 0.3)
    gate = Gatekeeper(policy=POLICY, store=dep.agent, default_timeout=0.5)
    ran: list[str] = []

    @gate.guard(irreversible=True)
    def refund(order_id: str) -> str:
        ran.append(order_id)
        return "ok"

    a = dep.agent.keys.of("billing-bot")
    stop = threading.Event()

    def extend() -> None:  # the attacker keeps pushing the expiry out
        while not stop.is_set():
            for rid in dep.attacker.zrange(a.pending, 0, -1):
                dep.attacker.hset(a.req(rid.decode()), "expires", 2**50)
            stop.wait(0.02)

    t = threading.Thread(target=extend)
    t.start()
    try:
        with gate.session(agent="billing-bot"), pytest.raises(ApprovalTimeout):
            refund("A-1")
    finally:
        stop.set()
        t.join()
    assert ran == []


def test_a_late_vote_does_not_count() -> None:
    import datetime as dt

    from gatekeeper._signing import SigningKey, TrustedKeys
    from gatekeeper._votes import approved_run, sign_vote
    from tests.storekit import vote

    clock = ManualClock()
    req = make_request(clock)
    key = SigningKey.generate()
    trusted = TrustedKeys({key.key_id: key.public_text})
    clock.advance(3600)  # long after the request's expiry
    late = sign_vote(key, req, vote(clock, req, "alice"), None)
    approved = req.model_copy(update={"status": RequestStatus.APPROVED, "decisions": (late,)})
    deadline = req.expires_at + dt.timedelta(seconds=5)
    with pytest.raises(TamperingDetected, match="0 signed approval"):
        approved_run(approved, req.call, 1, trusted, deadline)


def test_garbage_in_an_agents_halts_still_halts_and_breaks_nothing(dep: Deployment) -> None:
    a = dep.agent.keys.of("billing-bot")
    dep.attacker.hset(a.halts, "agent:billing-bot", "not json")
    event = held_event(make_request(ManualClock(), agent="billing-bot"))
    from gatekeeper import AgentHalted

    with pytest.raises(AgentHalted):
        dep.agent.admit(event, agent="billing-bot", session_id="s1")
    halts = dep.decider.halts()
    assert [(h.scope, h.target) for h in halts] == [(HaltScope.AGENT, "billing-bot")]
    assert dep.decider.resume(HaltScope.AGENT, "billing-bot", by="alice") is True
    dep.agent.admit(event, agent="billing-bot", session_id="s1")


def test_a_request_hidden_from_a_halt_is_not_run_after_the_resume(dep: Deployment) -> None:
    call = HeldCall(dep)
    a = dep.agent.keys.of("billing-bot")
    dep.attacker.hdel(a.owners, call.id)  # the halt won't find it to cancel it
    assert dep.decider.halt(HaltScope.AGENT, "billing-bot", by="ops") == []
    dep.decider.resume(HaltScope.AGENT, "billing-bot", by="alice")
    call.decider.approve(call.id, approver="alice")
    call.join()
    assert call.ran == []
    assert "kill switch was pulled" in str(call.error)
    assert dep.decider.get(call.id).status is RequestStatus.FAILED  # closed, not left approved


def test_a_halt_of_everything_reaches_an_agent_the_fan_out_has_not_reached_yet(
    dep: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With many (or fake) agents the deciders' fan-out takes a while; each working agent
    reads the deployment-wide halts itself at most a second apart."""
    import gatekeeper.store._redis as redis_module
    from gatekeeper import AgentHalted

    _register(dep)
    event = {"kind": "call.allowed", "at": 1, "actor": "agent:billing-bot", "agent": "billing-bot"}
    dep.agent.admit(event, agent="billing-bot", session_id="s1")
    # Only the deployment-wide record, as if the fan-out were still on fake agents.
    dep.admin.hset(
        dep.agent.keys.halts,
        "all",
        dep.admin.hget(dep.agent.keys.halts, "all")
        or '{"scope":"all","target":"*","by":"ops","reason":null,"at":"2026-12-04T00:00:00Z"}',
    )
    monkeypatch.setattr(redis_module, "GLOBAL_HALTS_EVERY", 0.0)
    with pytest.raises(AgentHalted, match="every agent"):
        dep.agent.admit(event, agent="billing-bot", session_id="s1")
