"""Standing approvals and earned autonomy: granted, used, expired, revoked, demoted, audited.

A real gate on MemoryStore, RedisStore, and RedisStore split by role under the
shipped ACL users (the agent's gate reads grants as the agent's Redis user).
The agent is a thread; a person decides from the gate. Every step is read off
what ran and off the audit log. The agent as the adversary: its Redis user
can't write a grant, and a grant written by someone without the deciders'
key is never used.
"""

from __future__ import annotations

import contextvars
import threading
import time
from typing import Any

import pytest
import redis

from gatekeeper import ApprovalDenied, Gatekeeper, Policy, TransitionRefused
from gatekeeper._grants import new_grant, sign_grant
from gatekeeper._signing import DecisionKeys
from gatekeeper.audit import parse_event
from gatekeeper.models import ApprovalRequest
from gatekeeper.store import Store
from gatekeeper.testing import ManualClock, RecordingChannel
from tests.aclkit import RoleSplitStore
from tests.webkit import APPROVERS

POLICY = """
version: 1
default: allow
rules:
  - {id: refunds-wait, match: {tool: refund}, verdict: require_approval}
  - {id: lookups-wait, match: {tool: lookup}, verdict: require_approval}
  - id: wires-need-two
    match: {tool: wire}
    verdict: require_approval
    approval: {quorum: 2}
limits:
  - {id: lookups-per-hour, match: {tool: lookup}, rate: 6/hour}
autonomy:
  - {id: trusted-lookups, match: {tool: lookup}, after: 3, within: 1h}
"""


class Rig:
    def __init__(self, store: Store) -> None:
        self.channel = RecordingChannel()
        self.gate = Gatekeeper(
            policy=Policy.from_yaml(POLICY),
            store=store,
            approvers=APPROVERS,
            channels=[self.channel],
            default_timeout=30,
            default_agent="billing-bot",
        )
        self.ran: list[str] = []
        ran = self.ran

        def refund(order_id: str, amount: float) -> str:
            ran.append(f"refund {order_id} {amount}")
            return "refunded"

        def lookup(customer: str) -> str:
            ran.append(f"lookup {customer}")
            return "found"

        def wire(to: str) -> str:
            ran.append(f"wire {to}")
            return "sent"

        self.tools = {f.__name__: self.gate.guard(f) for f in (refund, lookup, wire)}

    def at_once(self, tool: str, **kw: Any) -> Any:
        """A call that must run without anyone asked (fails if it is held)."""
        seen = len(self.channel.notified)
        out = self.tools[tool](**kw)
        assert len(self.channel.notified) == seen, f"{tool} was held"
        return out

    def held(self, tool: str, **kw: Any) -> tuple[threading.Thread, list[Any], ApprovalRequest]:
        seen = len(self.channel.notified)
        box: list[Any] = []
        context = contextvars.copy_context()

        def run() -> None:
            try:
                box.append(context.run(self.tools[tool], **kw))
            except Exception as exc:
                box.append(exc)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread, box, self.channel.wait_for_request(seen + 1)

    def kinds(self) -> list[str]:
        self.gate.store.flush()
        return [parse_event(e.body, e.hash).kind for e in self.gate.store.audit_entries()]


@pytest.fixture
def rig(store: Store) -> Rig:
    return Rig(store)  # the store fixture closes the store


def test_a_standing_approval_lets_matching_calls_run_until_revoked(rig: Rig) -> None:
    thread, box, req = rig.held("refund", order_id="A-1", amount=80.0)
    with pytest.raises(ValueError, match="lowered, not raised"):
        rig.gate.approve(req.id, approver="alice", grant_for=3600, bounds={"amount": 500})
    assert rig.gate.get(req.id).approvals == ()  # refused before anything was recorded
    rig.gate.approve(req.id, approver="alice", grant_for=3600, bounds={"amount": 50})
    thread.join(10)
    assert box == ["refunded"]
    (grant,) = rig.gate.grants()
    assert grant.by == "alice" and grant.args["amount"] == {"gte": 0, "lte": 50}

    assert rig.at_once("refund", order_id="A-1", amount=40.0) == "refunded"
    for other in ({"order_id": "A-1", "amount": 60.0}, {"order_id": "B-2", "amount": 10.0}):
        thread, box, req = rig.held("refund", **other)  # past the bound, or another order
        rig.gate.deny(req.id, approver="alice", comment="not covered")
        thread.join(10)
        assert isinstance(box[0], ApprovalDenied)

    rig.gate.revoke_grant(grant.id, by="bob", reason="done with A-1")
    thread, box, req = rig.held("refund", order_id="A-1", amount=40.0)
    rig.gate.deny(req.id, approver="alice", comment="revoked")
    thread.join(10)
    assert rig.ran == ["refund A-1 80.0", "refund A-1 40.0"]
    kinds = rig.kinds()
    assert kinds.count("grant.created") == 1 and kinds.count("grant.used") == 1
    assert kinds.count("grant.revoked") == 1


def test_a_standing_approval_expires(rig: Rig) -> None:
    thread, _, req = rig.held("refund", order_id="A-1", amount=5.0)
    rig.gate.approve(req.id, approver="alice", grant_for=1)
    thread.join(10)
    assert rig.at_once("refund", order_id="A-1", amount=5.0) == "refunded"
    clock = rig.gate.clock
    if isinstance(clock, ManualClock):
        clock.advance(1.1)
    else:
        time.sleep(1.1)
    thread, _, req = rig.held("refund", order_id="A-1", amount=5.0)
    rig.gate.deny(req.id, approver="alice", comment="expired")
    thread.join(10)
    assert rig.gate.grants() == []


def test_a_halt_revokes_every_grant_of_the_agent(rig: Rig) -> None:
    thread, _, req = rig.held("refund", order_id="A-1", amount=5.0)
    rig.gate.approve(req.id, approver="alice", grant_for=3600)
    thread.join(10)
    rig.gate.halt(agent="billing-bot", by="alice", reason="stop")
    rig.gate.resume(agent="billing-bot", by="alice")
    assert rig.gate.grants() == []
    thread, _, req = rig.held("refund", order_id="A-1", amount=5.0)
    rig.gate.deny(req.id, approver="alice", comment="after the halt")
    thread.join(10)
    assert "grant.revoked" in rig.kinds()


def test_what_a_standing_approval_can_not_carry_is_refused_before_anything_is_recorded(
    rig: Rig,
) -> None:
    thread, _, req = rig.held("wire", to="acct-9")
    with pytest.raises(TransitionRefused, match="needs 2 approvals"):
        rig.gate.approve(req.id, approver="alice", grant_for=3600)
    assert rig.gate.get(req.id).approvals == ()  # nothing recorded
    rig.gate.deny(req.id, approver="alice", comment="no")
    thread.join(10)


def test_autonomy_is_earned_used_and_lost(rig: Rig) -> None:
    for n in range(3):
        thread, _, req = rig.held("lookup", customer=f"c{n}")
        rig.gate.approve(req.id, approver="alice")
        thread.join(10)
    (grant,) = rig.gate.grants()
    assert grant.kind == "autonomy" and grant.rule == "trusted-lookups"
    assert rig.at_once("lookup", customer="c3") == "found"  # earned: nobody asked
    assert rig.at_once("lookup", customer="c4") == "found"
    assert rig.at_once("lookup", customer="c5") == "found"
    # The seventh lookup of the hour passes the limit: held, and autonomy ends.
    thread, _, req = rig.held("lookup", customer="c6")
    assert req.classification.behaviour[0].id == "lookups-per-hour"
    rig.gate.approve(req.id, approver="alice")
    thread.join(10)
    thread, _, req = rig.held("lookup", customer="c7")  # demoted: asked again
    rig.gate.deny(req.id, approver="alice", comment="enough")
    thread.join(10)
    assert rig.gate.grants() == []  # the denial drops the autonomy grant for good
    kinds = rig.kinds()
    assert kinds.count("autonomy.promoted") == 1
    assert kinds.count("autonomy.demoted") >= 1
    assert kinds.count("grant.used") == 3


@pytest.mark.parametrize("clock_and_store", ["redis-acl"], indirect=True)
def test_the_agent_can_not_grant_itself(store: Store, rig: Rig) -> None:
    assert isinstance(store, RoleSplitStore)  # the agent's gate logs in as its own user
    forged = new_grant(
        agent="billing-bot",
        tool="refund",
        args={"order_id": {"eq": "A-1"}, "amount": {"lte": 1e9}},
        by="alice",
        now=rig.gate.clock.now(),
        seconds=3600,
    )
    agent_store = store.agent("billing-bot")
    # Even holding a grant the deciders signed (one it saw before, say), its user can't store it.
    genuine = sign_grant(store.decider.decision_keys, forged)
    with pytest.raises(Exception, match=r"(?i)no permissions|NOPERM|may not"):
        agent_store.put_grant("billing-bot", forged.id, genuine)
    # A grant someone wrote with a key the agent does not trust is never used.
    rogue = sign_grant(DecisionKeys.ephemeral(), forged)
    admin = redis.Redis.from_url(store._url)
    admin.hset(f"{store.keys.of('billing-bot').tag}:grants", forged.id, rogue)
    thread, _, req = rig.held("refund", order_id="A-1", amount=5.0)
    rig.gate.deny(req.id, approver="alice", comment="no")
    thread.join(10)
    assert rig.ran == []


def test_the_cli_approves_for_later_lists_and_revokes(rig: Rig) -> None:
    import io as _io

    from gatekeeper.cli import _commands as cmd

    def run(fn: Any, *args: Any, **kw: Any) -> tuple[int, str, str]:
        out, err = _io.StringIO(), _io.StringIO()
        code = fn(rig.gate, *args, io=cmd.IO(out=out, err=err, inp=_io.StringIO()), **kw)
        return code, out.getvalue(), err.getvalue()

    decide: dict[str, Any] = {
        "approve": True,
        "approver": "alice",
        "comment": None,
        "edited": None,
        "digest": None,
    }
    thread, box, req = rig.held("refund", order_id="A-1", amount=80.0)
    code, _, err = run(cmd.decide, req.id, grant_for="1h", bounds=["amount=900"], **decide)
    assert code == 1 and "lowered, not raised" in err and "nothing recorded" in err
    assert rig.gate.get(req.id).approvals == ()
    code, _, err = run(cmd.decide, req.id, grant_for=None, bounds=["amount=5"], **decide)
    assert code == 1 and "give --for" in err
    code, out, _ = run(cmd.decide, req.id, grant_for="1h", bounds=["amount=50"], **decide)
    assert code == 0 and "standing approval g_" in out and "0 <= amount <= 50" in out
    thread.join(10)
    assert box == ["refunded"]

    code, out, _ = run(cmd.grants, agent="billing-bot", as_json=False)
    (row,) = out.splitlines()[1:]
    grant_id = row.split()[0]
    assert row.split()[1:4] == ["standing", "billing-bot", "alice"]
    assert rig.at_once("refund", order_id="A-1", amount=50.0) == "refunded"

    code, out, _ = run(cmd.revoke, grant_id, approver="bob", reason="done")
    assert code == 0 and out.startswith(f"revoked {grant_id}")
    assert run(cmd.revoke, grant_id, approver="bob", reason="again")[0] == 1
    assert run(cmd.grants, agent=None, as_json=False)[1].startswith("no grants in force")


def test_numbers_stay_exact_unless_bounded_and_negatives_never_pass(rig: Rig) -> None:
    """A number may be an id: a grant covers the approved value only, unless bounded."""
    thread, _, req = rig.held("refund", order_id="A-1", amount=80.0)
    rig.gate.approve(req.id, approver="alice", grant_for=3600)
    thread.join(10)
    assert rig.at_once("refund", order_id="A-1", amount=80.0) == "refunded"
    for amount in (79.0, -80.0):  # not the approved value: asked again
        thread, _, req = rig.held("refund", order_id="A-1", amount=amount)
        rig.gate.deny(req.id, approver="alice", comment="not covered")
        thread.join(10)
    thread, _, req = rig.held("refund", order_id="B-1", amount=30.0)
    rig.gate.approve(req.id, approver="alice", grant_for=3600, bounds={"amount": 30})
    thread.join(10)
    thread, _, req = rig.held("refund", order_id="B-1", amount=-1e9)  # below the floor of 0
    rig.gate.deny(req.id, approver="alice", comment="negative")
    thread.join(10)
    assert rig.ran == ["refund A-1 80.0", "refund A-1 80.0", "refund B-1 30.0"]


def test_a_grant_covers_no_call_held_by_other_rules_or_for_another_group(store: Store) -> None:
    rig = Rig(store)
    rig.gate.policy = Policy.from_yaml(  # type: ignore[misc]
        POLICY.replace(
            "  - {id: lookups-wait,",
            "  - id: card-testing-finance\n"
            "    match: {tool: refund, args: {amount: {lt: 5}}}\n"
            "    verdict: require_approval\n"
            "    approval: {group: finance}\n"
            "  - {id: lookups-wait,",
        )
    )
    # carol (no group) approves a refund of 30, and later ones of 0 to 30 ...
    thread, _, req = rig.held("refund", order_id="A-1", amount=30.0)
    rig.gate.approve(req.id, approver="carol", grant_for=3600, bounds={"amount": 30})
    thread.join(10)
    assert rig.at_once("refund", order_id="A-1", amount=20.0) == "refunded"
    # ... but one a finance rule holds is not hers to let through, though within bounds.
    thread, _, req = rig.held("refund", order_id="A-1", amount=2.0)
    assert req.group == "finance"
    rig.gate.approve(req.id, approver="alice", grant_for=3600, bounds={"amount": 2})
    thread.join(10)
    (alices,) = [g for g in rig.gate.grants() if g.by == "alice"]
    assert alices.group == "finance"
    assert set(alices.rules) == {"refunds-wait", "card-testing-finance"}
    # alice's grant (finance, both rules) covers what the default rule alone holds too.
    assert rig.at_once("refund", order_id="A-1", amount=1.0) == "refunded"
    assert rig.ran == ["refund A-1 30.0", "refund A-1 20.0", "refund A-1 2.0", "refund A-1 1.0"]
