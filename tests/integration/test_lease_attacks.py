"""Leases and call keys attacked with exactly an agent's credentials.

Each test uses the shipped ACL users (``dep``): ``dep.agent`` is billing-bot's
store (its ACL user, public key only), ``dep.decider`` the deciders', and
``dep.attacker`` a raw Redis client logged in as billing-bot's user, which may
rewrite the agent's own request hashes and call-key pointers. Nothing it
writes there may get a call run unapproved, run twice, run on fewer approvals
than its rule asks, or answered with another call's answer.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from gatekeeper import ApprovalPending, Gatekeeper, Policy, TamperingDetected, call_key
from gatekeeper._canonical import digest
from tests.trustkit import Deployment

POLICY = Policy.from_yaml(
    """
version: 1
default: require_approval
rules:
  - id: two-people
    match: {tool: refund}
    verdict: require_approval
    approval: {quorum: 2}
"""
)


def gates(dep: Deployment) -> tuple[Gatekeeper, Gatekeeper]:
    agent = Gatekeeper(policy=POLICY, store=dep.agent, default_timeout=600)
    decider = Gatekeeper(policy=POLICY, store=dep.decider)
    return agent, decider


def test_flipping_an_executed_request_back_to_approved_runs_it_twice(dep: Deployment) -> None:
    """An executed call, made again under its key, must raise AlreadyRan whatever the hash says."""
    gate, decider = gates(dep)
    ran: list[dict[str, Any]] = []
    tool = gate.tool("pay", lambda **a: ran.append(a) or "paid", irreversible=True)
    args = {"to": "ACME", "amount": 100}
    with gate.session(agent="billing-bot"):
        with pytest.raises(ApprovalPending) as first:
            tool.run(args, key="pay:invoice-7", wait=False)
        decider.approve(first.value.request_id, approver="alice")
        assert tool.run(args, key="pay:invoice-7").result == "paid"  # resumes: runs once
        assert len(ran) == 1
        rid = first.value.request_id
        assert dep.decider.get(rid).status.value == "executed"
        # The escaped agent, with billing-bot's own Redis user:
        a = dep.agent.keys.of("billing-bot")
        dep.attacker.hset(a.req(rid), mapping={"status": "approved"})
        dep.attacker.hdel(a.req(rid), "claimant")
        # An honest resume (a restarted run, a framework replaying its step) of the same call:
        try:
            tool.run(args, key="pay:invoice-7")
        except Exception as exc:  # AlreadyRan is what should happen
            print("second run raised", type(exc).__name__, exc)
    print("tool ran", len(ran), "times; status now", dep.decider.get(rid).status.value)
    assert len(ran) == 1, f"the approved call ran {len(ran)} times"


def test_lowering_the_stored_quorum_then_resuming_runs_with_one_approval(
    dep: Deployment,
) -> None:
    """The rule needs 2 approvers; a resume must check the quorum of its own policy."""
    gate, decider = gates(dep)
    ran: list[dict[str, Any]] = []
    tool = gate.tool("refund", lambda **a: ran.append(a) or "refunded", irreversible=True)
    args = {"order_id": "A-1", "amount": 5000}
    with gate.session(agent="billing-bot"):
        with pytest.raises(ApprovalPending) as parked:
            tool.run(args, key="refund:A-1", wait=False)
        rid = parked.value.request_id
        assert dep.decider.get(rid).quorum == 2
        a = dep.agent.keys.of("billing-bot")
        doc = json.loads(dep.attacker.hget(a.req(rid), "doc"))
        doc["quorum"] = 1
        dep.attacker.hset(a.req(rid), mapping={"quorum": 1, "doc": json.dumps(doc)})
        after = decider.approve(rid, approver="alice")  # ONE person approves
        print("after alice alone:", after.status.value, "quorum shown", after.quorum)
        try:
            print("resume:", tool.run(args, key="refund:A-1").result)
        except Exception as exc:
            print("resume raised", type(exc).__name__, exc)
    print("ran:", ran)
    assert ran == [], "a quorum-2 refund ran on one approval"


def test_a_resumed_call_of_another_tool_runs_on_the_first_tools_approval(
    dep: Deployment,
) -> None:
    """An approval of read_file(path) must never release delete_tree(path)."""
    gate, decider = gates(dep)
    ran: list[str] = []
    read = gate.tool("read_file", lambda path: ran.append(f"read {path}") or "data")
    delete = gate.tool("delete_tree", lambda path: ran.append(f"DELETE {path}") or "gone")
    args = {"path": "/srv/prod"}
    with gate.session(agent="billing-bot"):
        with pytest.raises(ApprovalPending) as parked:
            read.run(args, key="step-3", wait=False)
        rid = parked.value.request_id
        decider.approve(rid, approver="alice")
        # The attacker points the key of a later, honest delete_tree call at that
        # approved request and renames the hash's `tool` field (not the doc).
        a = dep.agent.keys.of("billing-bot")
        dep.attacker.hset(a.call_key("step-9"), "id", rid)
        dep.attacker.hset(a.req(rid), "tool", "delete_tree")
        try:
            print("delete_tree:", delete.run(args, key="step-9", wait=False).result)
        except Exception as exc:
            print("delete_tree raised", type(exc).__name__, exc)
    print("ran:", ran, "; nobody was ever asked about delete_tree")
    assert not any(r.startswith("DELETE") for r in ran)


def test_an_abandoned_approved_request_can_be_resurrected_and_run(dep: Deployment) -> None:
    """Abandoned = never runs (docs). With the agent's user, can it be revived?"""
    gate, decider = gates(dep)
    ran: list[dict[str, Any]] = []
    tool = gate.tool("pay", lambda **a: ran.append(a) or "paid")
    args = {"to": "ACME", "amount": 1}
    with gate.session(agent="billing-bot"):
        with pytest.raises(ApprovalPending) as parked:
            tool.run(args, key="k-abandon", wait=False)
        rid = parked.value.request_id
        decider.approve(rid, approver="alice")
        a = dep.agent.keys.of("billing-bot")
        dep.attacker.hset(a.req(rid), "lease", 1)  # as if its lease ran out long ago
        dep.attacker.zadd(a.live, {rid: 1})
        dep.decider.sweep()
        assert dep.decider.get(rid).status.value == "abandoned"
        dep.attacker.hset(a.req(rid), mapping={"status": "approved", "lease": 2**50})
        try:
            tool.run(args, key="k-abandon")
        except Exception as exc:
            print("raised", type(exc).__name__, exc)
    print("ran:", ran)
    assert ran == [], "an abandoned request ran"


def test_the_same_key_for_other_arguments_is_refused(
    dep: Deployment,
) -> None:
    """Sanity: with no tampering, the same key for other arguments is refused."""
    gate, _ = gates(dep)
    tool = gate.tool("pay", lambda **a: "paid")
    with gate.session(agent="billing-bot"):
        with pytest.raises(ApprovalPending):
            tool.run({"to": "A", "amount": 1}, key="k-sane", wait=False)
        with pytest.raises(Exception, match="a key names one call"):
            tool.run({"to": "B", "amount": 1}, key="k-sane", wait=False)
    assert digest({"a": 1})  # keep the import used
    assert call_key  # documented entry point exists


def _other_bots_lapsed_request(dep: Deployment) -> str:
    import time

    from gatekeeper._clock import SystemClock
    from tests.storekit import held_event, make_request

    req = make_request(SystemClock(), agent="other-bot", lease=0.2, timeout=600)
    dep.decider.hold(req, held_event(req))
    time.sleep(0.4)
    return req.id


@pytest.mark.parametrize(
    "poison",
    [
        {"id": "p1", "status": "pending", "expires": "soon"},  # Lua: compare nil with number
        {"id": "p1", "status": "pending", "expires": "1", "lease": "1e3"},  # Python int("1e3")
    ],
    ids=["expires-not-a-number", "lease-1e3"],
)
def test_one_agents_poisoned_hash_stops_the_sweep_for_every_agent(
    dep: Deployment, poison: dict[str, str]
) -> None:
    victim = _other_bots_lapsed_request(dep)
    a = dep.agent.keys.of("billing-bot")
    dep.attacker.hset(a.req("p1"), mapping=poison)  # billing-bot's own keys: allowed
    dep.attacker.zadd(a.live, {"p1": 0})
    dep.attacker.sadd(dep.agent.keys.agents, "billing-bot")  # registered, as after any call
    try:
        moved = dep.decider.sweep()
        print("sweep moved", [(r.id, r.status.value) for r in moved])
    except Exception as exc:
        print("sweep raised", type(exc).__name__, str(exc)[:300])
    print("other-bot's request:", dep.decider.get(victim).status.value)
    assert dep.decider.history(status="abandoned", limit=10), (
        "other-bot's lapsed request never swept"
    )


def test_two_resumes_racing_for_one_approved_request(dep: Deployment) -> None:
    """Honest: two processes resume the same parked, approved call at once."""
    import threading

    from gatekeeper._signing import DecisionKeys, TrustedKeys
    from gatekeeper.store import RedisStore

    gate, decider = gates(dep)
    ran: list[int] = []
    start = threading.Barrier(2)
    tool = gate.tool("pay", lambda **a: ran.append(1) or "paid")
    args = {"to": "ACME", "amount": 3}
    with gate.session(agent="billing-bot"), pytest.raises(ApprovalPending) as parked:
        tool.run(args, key="k-race", wait=False)
    decider.approve(parked.value.request_id, approver="alice")
    trusted = TrustedKeys({dep.key.key_id: dep.key.public_text})
    second_store = RedisStore(
        dep.agent.url, prefix=dep.prefix, decision_keys=DecisionKeys(trusted=trusted)
    )
    gate2 = Gatekeeper(policy=POLICY, store=second_store, default_timeout=600)
    tool2 = gate2.tool("pay", lambda **a: ran.append(2) or "paid")
    outcomes: list[str] = []

    def resume(t: Any, g: Gatekeeper) -> None:
        with g.session(agent="billing-bot"):
            start.wait()
            try:
                outcomes.append(f"result {t.run(args, key='k-race').result}")
            except Exception as exc:
                outcomes.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=resume, args=p) for p in ((tool, gate), (tool2, gate2))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    second_store.close()
    print("ran:", ran, "outcomes:", outcomes)
    assert len(ran) == 1
    loser = [o for o in outcomes if not o.startswith("result")]
    assert loser and loser[0].startswith(("AlreadyRan", "OutcomeUnknown")), loser


def test_a_persons_answer_to_one_call_is_returned_for_another(dep: Deployment) -> None:
    """A person's written answer (respond) is bound to its request; can it reach another call?"""
    gate, decider = gates(dep)
    balance = gate.tool("get_balance", lambda account: "REAL BALANCE")
    limit = gate.tool("get_credit_limit", lambda account: "REAL LIMIT")
    args = {"account": "ACME"}
    with gate.session(agent="billing-bot"):
        with pytest.raises(ApprovalPending) as parked:
            balance.run(args, key="turn-1", wait=False)
        rid = parked.value.request_id
        decider.respond(rid, approver="alice", response="balance is 12 EUR")
        a = dep.agent.keys.of("billing-bot")
        dep.attacker.hset(a.call_key("turn-2"), "id", rid)
        dep.attacker.hset(a.req(rid), "tool", "get_credit_limit")
        with pytest.raises(TamperingDetected, match="is for another call"):
            limit.run(args, key="turn-2")


def test_a_key_pointed_at_another_agents_approved_request_does_not_attach(dep: Deployment) -> None:
    other = Gatekeeper(policy=POLICY, store=dep.decider, default_timeout=600)
    _, decider = gates(dep)
    gate, _ = gates(dep)
    ran: list[str] = []
    args = {"to": "ACME", "amount": 9}
    with other.session(agent="other-bot"), pytest.raises(ApprovalPending) as theirs:
        other.tool("pay", lambda **a: ran.append("other") or "paid").run(args, key="k", wait=False)
    decider.approve(theirs.value.request_id, approver="alice")
    a = dep.agent.keys.of("billing-bot")
    dep.attacker.hset(a.call_key("k"), "id", theirs.value.request_id)
    with gate.session(agent="billing-bot"), pytest.raises(ApprovalPending) as mine:
        gate.tool("pay", lambda **a: ran.append("mine") or "paid").run(args, key="k", wait=False)
    assert mine.value.request_id != theirs.value.request_id and ran == []


def test_the_agents_user_cannot_resolve(dep: Deployment) -> None:
    from gatekeeper import NotAuthorized

    gate, _ = gates(dep)
    with gate.session(agent="billing-bot"), pytest.raises(ApprovalPending) as parked:
        gate.tool("pay", lambda **a: "paid").run({"to": "x"}, key="k-res", wait=False)
    rid = parked.value.request_id
    a = dep.agent.keys.of("billing-bot")
    dep.attacker.hset(a.req(rid), "status", "outcome_unknown")
    with pytest.raises(NotAuthorized):
        dep.agent.resolve(rid, by="alice", ran=True, comment="x")
    assert dep.decider.get(rid).status.value == "outcome_unknown"
