"""The agent is the adversary: attacks made with exactly an agent's credentials.

Each test sets up the shipped ACL users (``acl_rules``) on a real
redis-server, runs a guarded tool in an agent process's store (the agent's
ACL user, trusted public key only) and decides from the deciders' store (the
decider user, the signing key). The attacker is a raw Redis client logged in
as the agent's user — what an escaped agent holds. Where the ACL stops an
attack, the test also checks the second wall (signatures) by making the same
write as the server's admin, as if the ACL had been misconfigured.
"""

from __future__ import annotations

import io
import json
import threading
from typing import Any

import pytest
import redis

from gatekeeper import (
    AgentHalted,
    ConfigError,
    Gatekeeper,
    NotAuthorized,
    Policy,
    RequestStatus,
    StoreError,
    TamperingDetected,
)
from gatekeeper._signing import SigningKey, TrustedKeys
from gatekeeper.audit import verify_chain
from gatekeeper.models import HaltScope
from gatekeeper.store import RedisStore
from gatekeeper.store import _redis_ops as ops
from gatekeeper.store._acl import acl_user
from gatekeeper.testing import ManualClock
from tests.conftest import RedisServer
from tests.storekit import held_event, make_request, vote
from tests.trustkit import (
    POLICY,
    Deployment,
    HeldCall,
    chain,
    pause_after_decision,
    tampering_recorded,
    wake,
)

# Every guarded call here runs on the blocking driver and on the async one.
pytestmark = pytest.mark.usefixtures("both_faces")


def test_writing_status_approved_runs_nothing(dep: Deployment) -> None:
    call = HeldCall(dep)
    a = dep.agent.keys.of("billing-bot")
    dep.attacker.hset(a.req(call.id), "status", "approved")  # the ACL lets it write its request
    wake(dep, call.id)
    call.join()
    assert call.ran == []
    assert isinstance(call.error, TamperingDetected)
    assert "nobody signed" in str(call.error) or "0 signed approval" in str(call.error)
    tampering_recorded(dep, call.id)
    assert dep.decider.get(call.id).status is not RequestStatus.EXECUTED


def test_writing_args_and_digest_runs_nothing(dep: Deployment) -> None:
    call = HeldCall(dep)
    a = dep.agent.keys.of("billing-bot")
    evil = {"order_id": "A-1", "amount": 99999, "to_account": "ATTACKER"}
    from gatekeeper._canonical import digest

    dep.attacker.hset(
        a.req(call.id),
        mapping={"args": json.dumps(evil), "digest": digest(evil), "status": "approved"},
    )
    wake(dep, call.id)
    call.join()
    assert call.ran == [] and isinstance(call.error, TamperingDetected)
    tampering_recorded(dep, call.id)


@pytest.mark.sync_face_only("it pauses the agent inside the blocking face's wait")
def test_swapping_args_between_an_edited_approval_and_the_release_runs_nothing(
    dep: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The agent is paused after the decision (as by SIGSTOP); the args are swapped meanwhile."""
    decided, go = pause_after_decision(dep, monkeypatch)
    call = HeldCall(dep)
    edit = {"order_id": "A-1", "amount": 15.0, "to_account": "CUSTOMER"}
    call.decider.approve(call.id, approver="alice", args=edit)
    assert decided.wait(10)
    a = dep.agent.keys.of("billing-bot")
    swapped = {"order_id": "A-1", "amount": 15.0, "to_account": "ATTACKER"}
    dep.attacker.hset(a.req(call.id), "args", json.dumps(swapped))
    go.set()
    call.join()
    assert call.ran == [] and isinstance(call.error, TamperingDetected)
    tampering_recorded(dep, call.id)


def test_an_honest_edited_approval_runs_exactly_the_edit(dep: Deployment) -> None:
    call = HeldCall(dep)
    edit = {"order_id": "A-1", "amount": 15.0, "to_account": "CUSTOMER"}
    call.decider.approve(call.id, approver="alice", args=edit)
    call.join()
    assert call.error is None and call.ran == [edit]


def test_forged_journal_events_are_refused_by_the_sealer(dep: Deployment) -> None:
    call = HeldCall(dep)
    a = dep.agent.keys.of("billing-bot")
    forged = {
        "kind": "request.approved",
        "at": 1,
        "actor": "approver:alice",
        "request_id": call.id,
        "agent": "billing-bot",
        "data": {"approvals": 1},
    }
    with pytest.raises(redis.exceptions.NoPermissionError):
        dep.attacker.lpush(a.journal, json.dumps(forged))  # only appending is allowed
    dep.attacker.rpush(a.journal, json.dumps(forged))
    other = {**forged, "kind": "call.allowed", "agent": "other-bot"}
    dep.attacker.rpush(a.journal, json.dumps(other))
    call.decider.deny(call.id, approver="bob", comment="no")
    call.join()
    events = chain(dep)
    assert not [e for e in events if e.kind == "request.approved"]
    refused = [e for e in events if e.kind == "audit.refused"]
    assert {e.data["claimed_kind"] for e in refused} == {"request.approved", "call.allowed"}
    assert [e.kind for e in events if e.request_id == call.id and e.kind == "request.denied"]
    report = verify_chain(dep.decider.audit_entries(), head=dep.decider.audit_head())
    assert report.ok
    with pytest.raises(redis.exceptions.NoPermissionError):
        dep.attacker.xadd(dep.agent.keys.audit, {"b": "x", "h": "y"})
    with pytest.raises(redis.exceptions.NoPermissionError):
        dep.attacker.delete(a.journal)


def test_an_agent_cannot_unhalt_itself(dep: Deployment) -> None:
    dep.decider.halt(HaltScope.AGENT, "billing-bot", by="ops", reason="runaway")
    a = dep.agent.keys.of("billing-bot")
    event = held_event(make_request(ManualClock(), agent="billing-bot"))
    with pytest.raises(AgentHalted):
        dep.agent.admit(event, agent="billing-bot", session_id="s1")
    with pytest.raises(redis.exceptions.NoPermissionError):
        dep.attacker.hdel(a.halts, "agent:billing-bot")
    with pytest.raises(StoreError):  # the resume script, run with the agent's user
        dep.agent._run(ops.resume(a, "agent:billing-bot", "{}", None))
    assert dep.admin.hexists(a.halts, "agent:billing-bot")
    # The second wall: the halt lifted behind the ACL's back, with no signed resume.
    dep.admin.hdel(a.halts, "agent:billing-bot")
    with pytest.raises(AgentHalted, match="without a signed resume"):
        dep.agent.admit(event, agent="billing-bot", session_id="s1")
    kinds = [e.kind for e in chain(dep)]
    assert "request.tampering" in kinds
    # A person resumes, signed: the agent runs again.
    dep.decider.halt(HaltScope.AGENT, "billing-bot", by="ops")
    assert dep.decider.resume(HaltScope.AGENT, "billing-bot", by="alice") is True
    dep.agent.admit(event, agent="billing-bot", session_id="s1")


def test_an_old_signed_resume_does_not_lift_a_new_halt(dep: Deployment) -> None:
    a = dep.agent.keys.of("billing-bot")
    event = held_event(make_request(ManualClock(), agent="billing-bot"))
    dep.decider.halt(HaltScope.AGENT, "billing-bot", by="ops")
    dep.decider.resume(HaltScope.AGENT, "billing-bot", by="alice")
    threading.Event().wait(0.01)
    dep.decider.halt(HaltScope.AGENT, "billing-bot", by="ops")
    with pytest.raises(AgentHalted):
        dep.agent.admit(event, agent="billing-bot", session_id="s1")
    dep.admin.hdel(a.halts, "agent:billing-bot")  # the old resume is still beside it
    with pytest.raises(AgentHalted, match="older than the halt"):
        dep.agent.admit(event, agent="billing-bot", session_id="s1")


def test_an_agent_cannot_touch_another_agents_keys_or_vote(dep: Deployment) -> None:
    clock = ManualClock()
    theirs = make_request(clock, agent="other-bot")
    dep.decider.hold(theirs, held_event(theirs))
    b = dep.agent.keys.of("other-bot")
    for attack in (
        lambda: dep.attacker.hset(b.req(theirs.id), "status", "approved"),
        lambda: dep.attacker.hset(b.halts, "agent:other-bot", "{}"),
        lambda: dep.attacker.rpush(b.journal, "{}"),
        lambda: dep.attacker.hget(b.req(theirs.id), "args"),
        lambda: dep.attacker.hset(dep.agent.keys.where, theirs.id, "billing-bot"),
    ):
        with pytest.raises(redis.exceptions.NoPermissionError):
            attack()
    mine = make_request(clock, agent="billing-bot")
    dep.agent.hold(mine, held_event(mine))
    with pytest.raises(ConfigError, match="no decision signing key"):  # not in an agent
        dep.agent.decide(mine.id, vote(clock, mine, "alice"))
    a = dep.agent.keys.of("billing-bot")
    with pytest.raises(NotAuthorized):  # the decide script itself, under the agent's user
        dep.agent._run(ops.decide(dep.agent.keys, a, mine.id, vote(clock, mine, "alice"), "", None))
    assert dep.decider.get(mine.id).status is RequestStatus.PENDING


def _approve_behind_the_acl(dep: Deployment, rid: str, signed_vote: str, digest: str) -> None:
    """What a misconfigured ACL would allow: votes and status written directly."""
    a = dep.agent.keys.of("billing-bot")
    record = json.loads(signed_vote)
    stored = {
        "approver": record["body"]["approver"],
        "approve": True,
        "at": record["body"]["at"],
        "args_digest": digest,
        "edited": False,
        "via": "test",
        "signed": signed_vote,
    }
    dep.admin.rpush(a.votes(rid), json.dumps(stored))
    dep.admin.hset(a.req(rid), "status", "approved")
    wake(dep, rid)


def test_replaying_an_old_signed_approval_onto_a_new_request_runs_nothing(
    dep: Deployment,
) -> None:
    first = HeldCall(dep)
    first.decider.approve(first.id, approver="alice")
    first.join()
    assert len(first.ran) == 1
    old = dep.decider.get(first.id).decisions[0]
    second = HeldCall(dep)  # the very same arguments
    assert old.signed is not None
    _approve_behind_the_acl(dep, second.id, old.signed, old.args_digest)
    second.join()
    assert second.ran == [] and isinstance(second.error, TamperingDetected)
    assert "another request" in str(second.error)
    tampering_recorded(dep, second.id)


def test_a_decision_signed_by_an_untrusted_key_runs_nothing(dep: Deployment) -> None:
    call = HeldCall(dep)
    req = dep.decider.get(call.id)
    rogue = SigningKey.generate()
    from gatekeeper._votes import sign_vote

    signed = sign_vote(rogue, req, vote(ManualClock(), req, "alice"), None)
    assert signed.signed is not None
    _approve_behind_the_acl(dep, call.id, signed.signed, req.args_digest)
    call.join()
    assert call.ran == [] and isinstance(call.error, TamperingDetected)
    assert "not trusted" in str(call.error)
    tampering_recorded(dep, call.id)


def test_an_honest_approval_runs_once_under_the_acl(dep: Deployment) -> None:
    call = HeldCall(dep)
    call.decider.approve(call.id, approver="alice")
    call.join()
    assert call.error is None and len(call.ran) == 1
    assert dep.decider.get(call.id).status is RequestStatus.EXECUTED
    kinds = [e.kind for e in chain(dep) if e.request_id == call.id]
    assert kinds == ["call.held", "request.approved", "request.released", "request.executed"]
    assert "audit.refused" not in [e.kind for e in chain(dep)]


def test_key_rotation_old_trusted_key_verifies_removed_key_does_not() -> None:
    from gatekeeper._votes import approved_run, sign_vote

    clock = ManualClock()
    req = make_request(clock)
    old, new = SigningKey.generate(), SigningKey.generate()
    decision = sign_vote(old, req, vote(clock, req, "alice"), None)
    approved = req.model_copy(update={"status": RequestStatus.APPROVED, "decisions": (decision,)})
    both = TrustedKeys({old.key_id: old.public_text, new.key_id: new.public_text})
    assert approved_run(approved, req.call, 1, both) == (req.args_digest, None)
    only_new = TrustedKeys({new.key_id: new.public_text})
    with pytest.raises(TamperingDetected, match="not trusted"):
        approved_run(approved, req.call, 1, only_new)


def _cli(*argv: str) -> tuple[int, str]:
    import io

    from gatekeeper.cli import main

    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue() + err.getvalue()


def test_keys_generate_acl_and_an_anchor_that_catches_a_truncated_log(
    redis_server: RedisServer, redis_prefix: str, tmp_path: Any
) -> None:
    """`keys generate` makes the pair; `acl` prints users Redis accepts; `audit anchor`
    plus `audit verify --anchor` catch a log that was emptied, which a plain verify passes."""
    code, text = _cli("keys", "generate", "--dir", str(tmp_path), "--id", "k1")
    assert code == 0 and (tmp_path / "decider.pem").stat().st_mode & 0o777 == 0o600
    trusted_line = next(line for line in text.splitlines() if "trusted_keys" in line)
    config = tmp_path / "gatekeeper.yaml"
    config.write_text(
        f"version: 1\nstore: {{url: '{redis_server.url}', prefix: {redis_prefix}}}\n"
        f"decisions:\n  signing_key: decider.pem\n{trusted_line}\n"
    )
    code, text = _cli("acl", "--prefix", redis_prefix, "--agent", "bot-1")
    assert code == 0
    admin = redis.Redis.from_url(redis_server.url)
    try:
        import shlex

        lines = [shlex.split(line) for line in text.splitlines() if line.startswith("ACL")]
        assert len(lines) == 3
        for argv in lines:
            assert admin.execute_command(*argv) == b"OK"
        store = RedisStore(redis_server.url, prefix=redis_prefix, seal_linger=0)
        gate = Gatekeeper(policy=POLICY, store=store)
        gate.halt(agent="bot-1", by="ops")  # a few events in the chain
        gate.resume(agent="bot-1", by="ops")
        store.flush()
        code, anchor = _cli("-c", str(config), "audit", "anchor")
        assert code == 0
        (tmp_path / "anchor.json").write_text(anchor)
        code, text = _cli(
            "-c", str(config), "audit", "verify", "--anchor", str(tmp_path / "anchor.json")
        )
        assert code == 0, text
        admin.delete(store.keys.audit, store.keys.head)  # emptied by someone with the server
        assert _cli("-c", str(config), "audit", "verify")[0] == 0  # the chain alone can't tell
        code, text = _cli(
            "-c", str(config), "audit", "verify", "--anchor", str(tmp_path / "anchor.json")
        )
        assert code == 1 and "TRUNCATED" in text
        store.close()
    finally:
        for argv in lines:
            admin.execute_command("ACL", "DELUSER", argv[2])
        admin.close()


def test_acl_adds_an_agent_alone_and_the_deciders_password_keeps_working(
    redis_server: RedisServer, redis_prefix: str
) -> None:
    """`acl --role agents` prints the new agent's user only: pasting it whole into a
    running server leaves the decider's and auditor's passwords as they were."""
    import shlex

    def applied(*argv: str) -> list[list[str]]:
        code, text = _cli("acl", "--prefix", redis_prefix, *argv)
        assert code == 0, text
        lines = [shlex.split(line) for line in text.splitlines() if line.startswith("ACL")]
        for line in lines:
            assert admin.execute_command(*line) == b"OK"
        return lines

    def works(argv: list[str]) -> bool:
        user, password = argv[2], next(a[1:] for a in argv if a.startswith(">"))
        client = redis.Redis(
            host="127.0.0.1", port=redis_server.port, username=user, password=password
        )
        try:
            return bool(client.ping())
        except redis.AuthenticationError:
            return False
        finally:
            client.close()

    admin = redis.Redis.from_url(redis_server.url)
    first: list[list[str]] = []
    added: list[list[str]] = []
    try:
        first = applied("--agent", "bot-1")
        added = applied("--role", "agents", "--agent", "bot-2")
        assert [a[2] for a in added] == [acl_user(redis_prefix, "agent", "bot-2")]
        assert all(works(argv) for argv in first + added)
    finally:
        for argv in first + added:
            admin.execute_command("ACL", "DELUSER", argv[2])
        admin.close()


def test_an_agents_halt_of_everything_halts_it_at_once_and_the_rest_when_sealed(
    dep: Deployment, redis_server: RedisServer
) -> None:
    """A halt may come from anyone: an agent's own `halt_scope: all` verdict, made with
    its ACL user, stops it at once and every other agent once the deciders seal it."""
    policy = Policy.from_yaml(
        """
version: 1
default: allow
rules:
  - {id: tunnel, match: {tool: open_tunnel}, verdict: halt, halt_scope: all}
"""
    )
    gate = Gatekeeper(policy=policy, store=dep.agent)

    @gate.guard
    def open_tunnel(host: str) -> str:
        raise AssertionError("must not run")

    @gate.guard
    def search_docs(q: str) -> str:
        return "ok"

    with gate.session(agent="billing-bot"):
        with pytest.raises(AgentHalted, match="every agent"):
            open_tunnel("evil.example")
        with pytest.raises(AgentHalted):
            search_docs("x")
    other_event = held_event(make_request(ManualClock(), agent="other-bot"))
    dep.decider.admit(other_event, agent="other-bot", session_id="s2")  # not yet spread
    dep.agent.flush()
    dep.decider.flush()  # the sealer sees billing-bot's halt.set and spreads it
    with pytest.raises(AgentHalted, match="every agent"):
        dep.decider.admit(other_event, agent="other-bot", session_id="s2")
    assert [h.by for h in dep.decider.halts()] == ["agent:billing-bot (policy:tunnel)"]


def test_the_console_shows_what_the_store_claims_without_signatures(
    dep: Deployment, redis_server: RedisServer
) -> None:
    """A status an agent wrote (no signed votes), and a refused release, read as tampering
    on the request page; an honest approval does not."""
    from gatekeeper.web import WebSettings, create_app
    from tests.webkit import SECRET_KEY, TOKENS, TestClient, bearer

    call = HeldCall(dep)
    a = dep.agent.keys.of("billing-bot")
    dep.attacker.hset(a.req(call.id), "status", "approved")
    console = Gatekeeper(policy=POLICY, store=dep.decider)
    settings = WebSettings(secret_key=SECRET_KEY, api_tokens=tuple(TOKENS.values()))
    with TestClient(create_app(console, settings), headers=bearer("tok-reader")) as client:
        page = client.get(f"/requests/{call.id}").text
        assert 'id="tampering"' in page and "signed approval" in page
        from gatekeeper.cli._commands import IO, show

        printed = io.StringIO()
        show(console, call.id, as_json=False, io=IO(out=printed, err=printed, inp=io.StringIO()))
        assert "TAMPERING: not what the deciders signed" in printed.getvalue()
        wake(dep, call.id)
        call.join()
        page = client.get(f"/requests/{call.id}").text
        assert 'id="tampering"' in page and "refused to release" in page
        honest = HeldCall(dep)
        honest.decider.approve(honest.id, approver="alice")
        honest.join()
        assert 'id="tampering"' not in client.get(f"/requests/{honest.id}").text
