"""A deployment spread over a real Redis Cluster: 500 held calls of 20 agents on all three masters.

Each agent's keys share its own hash tag, so agents land on different
masters; the console's queue and the deciding side read and decide across
every shard as they do on one node.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from gatekeeper import AgentHalted, Gatekeeper, HaltIncomplete, Policy, RedisStore, RequestStatus
from gatekeeper.models import HaltScope
from gatekeeper.testing import ManualClock
from tests.storekit import MANUAL_LEASE, held_event, make_request

pytestmark = pytest.mark.redis

AGENTS = [f"agent-{n:02d}" for n in range(20)]
CALLS = 500


def test_500_held_calls_of_20_agents_spread_over_every_master_and_are_decided(
    redis_cluster: Any, redis_prefix: str
) -> None:
    clock = ManualClock()
    store = RedisStore(redis_cluster.url, prefix=redis_prefix, clock=clock, lease=MANUAL_LEASE)
    gate = Gatekeeper(policy=Policy.empty(), store=store, clock=clock)
    try:
        held = []
        for n in range(CALLS):
            req = make_request(clock, agent=AGENTS[n % len(AGENTS)], args={"n": n}, timeout=600)
            held.append(store.hold(req, held_event(req)).id)

        # Where the requests are: every master holds some agents' requests, none holds all.
        per_master: Counter[int] = Counter()
        for node in redis_cluster.masters():
            with node.client() as client:
                for key in client.scan_iter(match=f"{{{redis_prefix}:*}}:req:*", count=1000):
                    if not key.endswith((b":wake",)):
                        per_master[node.port] += 1
        assert len(per_master) == 3, per_master
        assert sum(per_master.values()) == CALLS
        assert max(per_master.values()) < CALLS

        # The console's queue reads every shard: all 500, in pages, each once.
        seen: list[str] = []
        for offset in range(0, CALLS, 100):
            page, total = store.queue(limit=100, offset=offset)
            assert total == CALLS
            seen += [r.id for r in page]
        assert sorted(seen) == sorted(held)
        assert {r.call.agent for r in store.queue(limit=CALLS)[0]} == set(AGENTS)

        # Decided across the shards: every other one approved, the rest denied.
        for n, rid in enumerate(held):
            if n % 2:
                gate.deny(rid, approver="alice", comment="no")
            else:
                gate.approve(rid, approver="alice")
        ended = Counter(store.get(rid).status for rid in held)
        assert ended == {RequestStatus.APPROVED: CALLS // 2, RequestStatus.DENIED: CALLS // 2}
        assert store.queue(limit=10)[1] == 0
    finally:
        gate.close()


def test_a_global_halt_reaches_the_agents_of_every_master(
    redis_cluster: Any, redis_prefix: str
) -> None:
    clock = ManualClock()
    store = RedisStore(redis_cluster.url, prefix=redis_prefix, clock=clock, lease=MANUAL_LEASE)
    try:
        held = []
        for n in range(60):
            req = make_request(clock, agent=AGENTS[n % len(AGENTS)], args={"n": n}, timeout=600)
            held.append(store.hold(req, held_event(req)).id)
        cancelled = store.halt(HaltScope.ALL, "*", by="ops", reason="drill")
        assert sorted(cancelled) == sorted(held)  # every shard's pending requests
        assert {store.get(rid).status for rid in held} == {RequestStatus.CANCELLED}
        for agent in AGENTS:  # and every agent, wherever its keys live, is refused at once
            req = make_request(clock, agent=agent, args={"after": True})
            with pytest.raises(AgentHalted):
                store.hold(req, held_event(req))
    finally:
        store.close()


def test_a_global_halt_that_cannot_reach_an_agent_says_so_and_is_finished_by_halting_again(
    redis_cluster: Any, redis_prefix: str
) -> None:
    """One agent's keys can't be written (damaged here; a shard down in life): the halt is
    recorded and reaches the others, the caller is told which agent it did not reach and
    that its pending requests were not cancelled, and halting again finishes the job."""
    clock = ManualClock()
    store = RedisStore(redis_cluster.url, prefix=redis_prefix, clock=clock, lease=MANUAL_LEASE)
    gate = Gatekeeper(policy=Policy.empty(), store=store, clock=clock)
    try:
        held: dict[str, list[str]] = {}
        for n in range(30):
            agent = AGENTS[n % 6]
            req = make_request(clock, agent=agent, args={"n": n}, timeout=600)
            held.setdefault(agent, []).append(store.hold(req, held_event(req)).id)
        broken = store.keys.of(AGENTS[3])
        admin: Any = store.client
        admin.delete(broken.halts)
        admin.set(broken.halts, "not a hash")  # every halt script on this agent now fails
        with pytest.raises(HaltIncomplete) as caught:
            gate.halt(everything=True, by="ops", reason="drill")
        err = caught.value
        assert err.unreached == [AGENTS[3]]
        assert "agent-03" in str(err) and "not cancelled" in str(err) and "halt again" in str(err)
        reached = sorted(rid for a, ids in held.items() if a != AGENTS[3] for rid in ids)
        assert sorted(err.cancelled) == reached
        assert {store.get(rid).status for rid in held[AGENTS[3]]} == {RequestStatus.PENDING}
        assert admin.hkeys(store.keys.halts) == [b"all"]  # recorded all the same

        admin.delete(broken.halts)  # the shard answers again
        assert sorted(gate.halt(everything=True, by="ops")) == sorted(held[AGENTS[3]])
        assert {store.get(rid).status for rid in held[AGENTS[3]]} == {RequestStatus.CANCELLED}
    finally:
        gate.close()


def test_a_global_limit_is_refused_on_a_cluster_at_once_and_says_why(
    redis_cluster: Any, redis_prefix: str
) -> None:
    """`per: global` counts every agent under the deployment's tag: on a cluster no step
    may touch that and an agent's slot, so the gate refuses the policy when it is made,
    and a plan that slips through later is refused before Redis sees it."""
    from gatekeeper import PolicyError, StoreError
    from gatekeeper.store._redis_ops import plan_json

    policy = Policy.from_yaml(
        """
version: 1
default: allow
limits:
  - {id: all-refunds, match: {tool: refund}, rate: 5/hour, per: global}
"""
    )
    store = RedisStore(redis_cluster.url, prefix=redis_prefix, lease=MANUAL_LEASE)
    try:
        with pytest.raises(PolicyError, match=r"limit 'all-refunds'.*per: agent"):
            Gatekeeper(policy=policy, store=store)
        with pytest.raises(StoreError, match="Redis Cluster"):
            plan_json(store.keys, {"s": [], "l": [{"g": 1, "k": "lim:x:g"}], "c": "c1"})
        Gatekeeper(policy=Policy.empty(), store=store)  # without one, fine
    finally:
        store.close()
