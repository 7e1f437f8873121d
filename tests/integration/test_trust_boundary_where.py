"""A hostile review of the one-round-trip hold: the agent's user may name `where` in EVALSHA.

Same set-up as ``test_trust_boundary``: the shipped ACL users on a real
redis-server; ``dep.attacker`` is a raw client logged in as billing-bot's user.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis

from gatekeeper import StoreError, TransitionRefused
from gatekeeper._clock import SystemClock
from gatekeeper._signing import DecisionKeys, TrustedKeys
from gatekeeper.models import HaltScope
from gatekeeper.store import RedisStore
from gatekeeper.store._acl import acl_rules, acl_user
from tests.storekit import held_event, make_request, vote
from tests.trustkit import Deployment, chain

# What a script run by the agent's user tries on `where` (KEYS[1]); each under pcall.
_PROBE = """
local out = {}
local function try(name, ...)
  local r = redis.pcall(...)
  if type(r) == 'table' and r.err then out[#out + 1] = name .. '=denied'
  else out[#out + 1] = name .. '=ran' end
end
try('hget', 'HGET', KEYS[1], 'x')
try('hsetnx', 'HSETNX', KEYS[1], 'probe-new-id', 'billing-bot')
try('hset', 'HSET', KEYS[1], ARGV[1], 'billing-bot')
try('hdel', 'HDEL', KEYS[1], ARGV[1])
try('hgetall', 'HGETALL', KEYS[1])
try('hincrby', 'HINCRBY', KEYS[1], 'n', 1)
try('pexpire', 'PEXPIRE', KEYS[1], 1)
try('persist', 'PERSIST', KEYS[1])
try('del', 'DEL', KEYS[1])
try('unlink', 'UNLINK', KEYS[1])
try('rename', 'RENAME', KEYS[1], KEYS[2])
try('copy', 'COPY', KEYS[2], KEYS[1], 'REPLACE')
try('exists', 'EXISTS', KEYS[1])
return out
"""


def _other_writes(dep: Deployment) -> dict[bytes, Any]:
    """Every key of the deployment outside billing-bot's tag, as DUMPs (where as a dict)."""
    own = f"{{{dep.prefix}:billing-bot}}".encode()
    out: dict[bytes, Any] = {}
    for key in dep.admin.scan_iter(match=f"{{{dep.prefix}*", count=1000):
        if key.startswith(own):
            continue
        if key == dep.agent.keys.where.encode():
            out[key] = dep.admin.hgetall(key)
        else:
            out[key] = (dep.admin.dump(key), dep.admin.pttl(key))
    return out


def test_a_script_run_by_the_agent_may_only_hget_and_hsetnx_where(dep: Deployment) -> None:
    """The new selector widens what EVALSHA may *name*, not what a script may *do*: any script
    the deciders ever load (here a probe loaded as admin) still runs each command as the agent."""
    other = make_request(SystemClock(), agent="other-bot")
    dep.decider.hold(other, held_event(other))
    k = dep.agent.keys
    mine = k.of("billing-bot").req("probe")
    sha = dep.admin.script_load(_PROBE)
    out = [x.decode() for x in dep.attacker.evalsha(sha, 2, k.where, mine, other.id)]
    assert out == [
        "hget=ran",
        "hsetnx=ran",
        "hset=denied",
        "hdel=denied",
        "hgetall=denied",
        "hincrby=denied",
        "pexpire=denied",
        "persist=denied",
        "del=denied",
        "unlink=denied",
        "rename=denied",
        "copy=denied",
        "exists=denied",
    ]
    assert dep.admin.hget(k.where, other.id) == b"other-bot"
    # where only with the agent's own keys: never with another agent's, nor other shared keys
    for with_ in (k.of("other-bot").req(other.id), k.halts, k.agents, k.journal, k.audit):
        with pytest.raises(redis.exceptions.NoPermissionError):
            dep.attacker.evalsha(sha, 2, k.where, with_, other.id)
    # and no command but HGET, HSETNX and EVALSHA on where itself
    for cmd in (("HSET", k.where, other.id, "x"), ("HDEL", k.where, other.id), ("DEL", k.where)):
        with pytest.raises(redis.exceptions.NoPermissionError):
            dep.attacker.execute_command(*cmd)
    with pytest.raises(redis.exceptions.NoPermissionError):
        dep.attacker.execute_command("EVALSHA_RO", sha, 2, k.where, mine, other.id)


@pytest.fixture
def recorded(dep: Deployment, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every store script run (name, keys, args), by the agent's store and the deciders'."""
    ops_run: list[Any] = []
    for store in (dep.agent, dep.decider):
        real = store._run

        def spy(op: Any, real: Any = real) -> Any:
            ops_run.append((op.script, list(op.keys), list(op.args)))
            return real(op)

        monkeypatch.setattr(store, "_run", spy)
    return ops_run


def test_no_store_script_run_by_the_agent_with_where_among_its_keys_writes_outside_its_slot(
    dep: Deployment, recorded: list[Any]
) -> None:
    """Replay every script the store ran (agent's and deciders') as the attacker, with `where`
    in each key position in turn: no existing `where` entry changes, and no key outside
    billing-bot's tag but `where` (new fields only) changes at all."""
    clock = SystemClock()
    other = make_request(clock, agent="other-bot")
    dep.decider.hold(other, held_event(other))
    reqs = [make_request(clock, agent="billing-bot", key=f"k{i}", lease=30) for i in range(4)]
    for r in reqs:
        dep.agent.hold(r, held_event(r))
    dep.decider.decide(reqs[0].id, vote(clock, reqs[0], "alice"))
    dep.decider.decide(reqs[1].id, vote(clock, reqs[1], "alice", approve=False))
    dep.agent.claim(reqs[0].id, args_digest=reqs[0].args_digest)
    dep.agent.finish(reqs[0].id, ok=True, outcome="done")
    dep.decider.cancel(reqs[2].id, by="alice", reason="x")
    dep.decider.halt(HaltScope.AGENT, "billing-bot", by="ops")
    dep.decider.resume(HaltScope.AGENT, "billing-bot", by="alice")
    dep.decider.halt(HaltScope.ALL, "*", by="ops")
    dep.decider.resume(HaltScope.ALL, "*", by="alice")
    dep.decider.sweep()
    dep.decider.flush()
    seen = {name for name, _, _ in recorded}
    assert {"hold", "cancel", "halt"} <= seen, seen
    shas = {name: s.sha for name, s in dep.decider._scripts.items()}
    where = dep.agent.keys.where
    before = _other_writes(dep)
    ran = refused = 0
    for name, keys, args in recorded:
        for i in range(len(keys) + 1):
            ks = list(keys)
            if i == len(ks):
                ks.append(where)
            else:
                ks[i] = where
            try:
                dep.attacker.evalsha(shas[name], len(ks), *ks, *args)
                ran += 1
            except redis.exceptions.ResponseError:
                refused += 1
    after = _other_writes(dep)
    old_where, new_where = before.pop(where.encode()), after.pop(where.encode())
    assert {f: v for f, v in new_where.items() if f in old_where} == old_where
    assert new_where[other.id.encode()] == b"other-bot"
    assert after.keys() == before.keys()
    for key, (dump, ttl) in before.items():
        assert after[key][0] == dump, key
        assert (after[key][1] == -1) == (ttl == -1) and abs(after[key][1] - ttl) < 5000, key
    print(f"replayed {len(recorded)} runs of {sorted(seen)}: {ran} ran, {refused} refused")
    assert ran > 0 and refused > 0


def test_a_refused_id_leaves_nothing_behind(dep: Deployment) -> None:
    other = make_request(SystemClock(), agent="other-bot")
    dep.decider.hold(other, held_event(other))
    dep.agent.flush()
    mine = make_request(SystemClock(), agent="billing-bot").model_copy(update={"id": other.id})
    a = dep.agent.keys.of("billing-bot")
    journal = dep.admin.llen(a.journal)
    with pytest.raises(TransitionRefused, match="already exists"):
        dep.agent.hold(mine, held_event(mine))
    assert dep.admin.hget(dep.agent.keys.where, other.id) == b"other-bot"
    assert other.id not in dep.agent._where
    assert not dep.admin.exists(a.req(other.id))
    for idx in (a.pending, a.requests, a.pending_by_risk(mine.classification.risk), a.live):
        assert dep.admin.zscore(idx, other.id) is None
    assert not dep.admin.hexists(a.owners, other.id)
    assert dep.admin.llen(a.journal) == journal
    assert dep.decider.get(other.id).call.agent == "other-bot"


def test_a_hold_whose_reply_was_lost_is_retried_into_the_same_request(
    dep: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    req = make_request(SystemClock(), agent="billing-bot")
    dep.agent._ensure("billing-bot")
    script = dep.agent._scripts["hold"]
    calls: list[int] = []

    class Lost:
        sha = script.sha

        def __call__(self, **kw: Any) -> Any:
            reply = script(**kw)
            calls.append(1)
            if len(calls) == 1:
                raise redis.exceptions.ConnectionError("reply lost")
            return reply

    monkeypatch.setitem(dep.agent._scripts, "hold", Lost())
    assert dep.agent.hold(req, held_event(req)) == req
    assert len(calls) == 2
    assert dep.admin.hget(dep.agent.keys.where, req.id) == b"billing-bot"
    assert [e.kind for e in chain(dep) if e.request_id == req.id] == ["call.held"]


def test_an_agent_user_from_the_previous_release_is_told_to_rerun_gatekeeper_acl(
    dep: Deployment,
) -> None:
    """Upgrade: billing-bot's user as the previous `gatekeeper acl` made it (no where selector)."""
    passwords: dict[str, str] = {}
    (argv,) = acl_rules(dep.prefix, agents=["billing-bot"], passwords=passwords, roles=())
    old = [x for x in argv if not x.startswith("(+evalsha")]
    assert len(old) == len(argv) - 1
    dep.admin.execute_command(*old)
    user = acl_user(dep.prefix, "agent", "billing-bot")
    url = dep.decider.client.connection_pool.connection_kwargs
    store = RedisStore(
        f"redis://{user}:{passwords[user]}@{url['host']}:{url['port']}/0",
        prefix=dep.prefix,
        decision_keys=DecisionKeys(trusted=TrustedKeys({dep.key.key_id: dep.key.public_text})),
    )
    try:
        req = make_request(SystemClock(), agent="billing-bot")
        with pytest.raises(StoreError) as info:
            store.hold(req, held_event(req))
        said = str(info.value)
        assert "scripts are not loaded" not in said  # they are: the message must not say so
        assert "gatekeeper acl" in said  # and it tells the operator what to do
        assert f'ACL SETUSER {user} "(+evalsha' in said
    finally:
        store.close()


def _hold_with_kmap(dep: Deployment, target: str) -> str:
    """billing-bot holds a request, then points its (own, writable) hash's kmap at ``target``."""
    req = make_request(SystemClock(), agent="billing-bot", timeout=3600)
    dep.agent.hold(req, held_event(req))
    a = dep.agent.keys.of("billing-bot")
    dep.attacker.hset(a.req(req.id), mapping={"kmap": target, "retain": "1"})
    return req.id


@pytest.mark.parametrize("which", ["halts", "dec_journal", "flags", "resumes", "claims"])
def test_a_rewritten_kmap_cannot_make_a_decider_expire_keys_the_agent_may_not_write(
    dep: Deployment, which: str
) -> None:
    """kmap is agent-writable; ended() PEXPIREs it with the decider's rights. It must only
    ever be a call key ({prefix:agent}:req:key:*), never the agent's halts, the deciders'
    journal about it, its tamper flags, resumes or claims (pre-existing; unchanged here)."""
    a = dep.agent.keys.of("billing-bot")
    target = f"{a.tag}:claims" if which == "claims" else getattr(a, which)
    dep.admin.hset(target, "probe", "1") if which != "dec_journal" else dep.admin.rpush(
        target, "probe"
    )
    rid = _hold_with_kmap(dep, target)
    dep.decider.cancel(rid, by="alice", reason="no")  # a decider's script: ended()
    assert dep.admin.pttl(target) == -1, f"{target} now expires"


def test_a_rewritten_kmap_cannot_undo_a_halt(dep: Deployment) -> None:
    """End to end: the agent's halt vanishes 1 ms after the operator sets it."""
    a = dep.agent.keys.of("billing-bot")
    _hold_with_kmap(dep, a.halts)
    cancelled = dep.decider.halt(HaltScope.AGENT, "billing-bot", by="ops")
    assert len(cancelled) == 1
    time.sleep(0.05)
    assert dep.decider.halts(), "the halt is gone, with no resume"


def test_a_rewritten_kmap_cannot_erase_a_halt_from_the_audit_log(
    dep: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    """End to end: the deciders' journal about the agent (halt.set, the cancellations) expires
    before a sealer reads it (here: the halting process's sealer is a moment late, as when
    `gatekeeper halt` runs in the CLI and `serve` seals on its next round)."""
    a = dep.agent.keys.of("billing-bot")
    rid = _hold_with_kmap(dep, a.dec_journal)
    monkeypatch.setattr(dep.decider._sealer, "kick", lambda *a, **k: None)
    dep.decider.halt(HaltScope.AGENT, "billing-bot", by="ops")
    time.sleep(0.05)
    kinds = [(e.kind, e.request_id) for e in chain(dep)]
    assert ("request.cancelled", rid) in kinds
    assert "halt.set" in [k for k, _ in kinds]


def test_a_keyed_call_reattached_leaves_no_where_entry_for_the_id_it_did_not_use(
    dep: Deployment,
) -> None:
    """An id is claimed in `where` only for a request made with it: a keyed call re-attached
    to its earlier request leaves no entry for the id it did not use (nothing prunes one)."""
    first = make_request(SystemClock(), agent="billing-bot", key="k1")
    dep.agent.hold(first, held_event(first))
    again = make_request(SystemClock(), agent="billing-bot", key="k1")
    assert dep.agent.hold(again, held_event(again)).id == first.id
    assert dep.admin.hget(dep.agent.keys.where, again.id) is None
