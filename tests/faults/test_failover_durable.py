"""Approvals lost in a failover never ran (``store.durability: {replicas: 1}``).

The issue's evidence, replayed on a real Sentinel set-up: the replication
link is cut (the replica stopped with SIGSTOP), approvals are made, and the
primary is killed (SIGKILL) before the replica gets them; the replica is
promoted without them. Without durability the agents ran those calls, and
the new primary showed them pending with no approval. With it, each of those
approvals is reported to the approver as not yet durable and held back from
the agent, so none of them runs: zero executions whose approval is missing
from the new primary, zero unapproved or double executions. Approvals made
before the cut reached the replica and ran, once each.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gatekeeper import ApprovalDenied, Gatekeeper, GatekeeperError, Policy, RequestStatus
from gatekeeper.store import Durability, RedisStore
from gatekeeper.store._redis import RetryPolicy
from tests.clusterkit import Sentinels, _until
from tests.faults.conftest import assert_settled, wait_until

pytestmark = pytest.mark.redis

AGENTS = [f"agent-{n}" for n in range(6)]
EXPIRY = 40.0
RETRY = RetryPolicy(attempts=500, within=20.0, max_wait=0.25)  # longer than the failover


@pytest.fixture
def sentinels(tmp_path: Path) -> Iterator[Sentinels]:
    made = Sentinels(tmp_path / "sentinel")
    yield made
    made.stop()


def _store(url: str, prefix: str, replicas: int, timeout: float = 0.3) -> RedisStore:
    durability = Durability(replicas=replicas, timeout=timeout)
    return RedisStore(url, prefix=prefix, retry=RETRY, durability=durability)


def _in_sync(sentinels: Sentinels) -> bool:
    with sentinels.primary.client() as p, sentinels.replica.client() as r:
        offset = int(p.info("replication")["master_repl_offset"])
        return int(r.info("replication").get("slave_repl_offset", -1)) >= offset


def _scenario(sentinels: Sentinels, prefix: str, replicas: int) -> dict[str, Any]:
    """Two rounds of calls; the second approved with the link cut, then the primary killed."""
    agents_store = _store(sentinels.url, prefix, replicas)
    gate = Gatekeeper(policy=Policy.empty(), store=agents_store, default_timeout=EXPIRY)
    decider = Gatekeeper(policy=Policy.empty(), store=_store(sentinels.url, prefix, replicas))
    # Round one's approver waits up to 5 s for the replica (WAIT answers as soon as it has
    # the write): on a loaded machine 0.3 s can pass before a healthy replica acknowledges.
    patient = Gatekeeper(
        policy=Policy.empty(), store=_store(sentinels.url, prefix, replicas, timeout=5.0)
    )
    ran: list[tuple[str, int]] = []
    outcomes: dict[tuple[str, int], Any] = {}
    lock = threading.Lock()

    @gate.guard
    def deploy(agent: str, n: int) -> str:
        with lock:
            ran.append((agent, n))
        return f"{agent}/{n}"

    def agent_calls(agent: str) -> None:
        with gate.session(agent=agent):
            for n in range(2):
                try:
                    outcomes[agent, n] = deploy(agent, n)
                except Exception as exc:
                    outcomes[agent, n] = exc

    def held(n: int) -> list[Any]:
        return [r for r in decider.pending(limit=100) if r.args["n"] == n]

    threads = [threading.Thread(target=agent_calls, args=(a,), daemon=True) for a in AGENTS]
    told: dict[str, bool | None] = {}
    try:
        for thread in threads:
            thread.start()
        # Round one: approved with the replica in step; each runs.
        wait_until("round one held", lambda: len(held(0)) == len(AGENTS), timeout=20)
        for req in held(0):
            told[req.id] = patient.approve(req.id, approver="alice").durable
        wait_until("round one run", lambda: len(ran) == len(AGENTS), timeout=20)
        wait_until("round two held", lambda: len(held(1)) == len(AGENTS), timeout=20)
        _until("the replica to have every write so far", lambda: _in_sync(sentinels))
        # Round two: the link cut, then approved; the primary dies before the replica has them.
        # SIGSTOP alone leaves what the primary sends in the socket's buffers, which the
        # replica reads once it runs again: the primary also drops the link.
        os.kill(sentinels.replica.proc.pid, signal.SIGSTOP)
        try:
            with sentinels.primary.client() as primary:
                primary.execute_command("CLIENT", "KILL", "TYPE", "replica")
            second = held(1)
            for req in second:
                told[req.id] = decider.approve(req.id, approver="alice").durable
            time.sleep(1.0)  # the agents' own checks (WAIT, 0.3 s) have their chance to fail
            ran_before_kill = list(ran)
            sentinels.primary.kill()
        finally:
            os.kill(sentinels.replica.proc.pid, signal.SIGCONT)
        _until("the replica promoted", lambda: sentinels.primary_port() == sentinels.replica.port)
        # The approvals of round two are gone with the primary: deny what is pending again.
        reader = decider.store
        wait_until(
            "the promoted replica to answer",
            lambda: bool(_pending_again(reader, second)),
            timeout=30,
        )
        pending_again = _pending_again(reader, second)
        for rid in pending_again:
            decider.deny(rid, approver="alice", comment="lost in a failover; ask again")
        for thread in threads:
            thread.join(EXPIRY + 10)
        assert not any(t.is_alive() for t in threads), "a waiter never came back"
        history = {r.id: r for r in reader.history(limit=1000)}
        by_call = {(r.call.agent, int(r.args["n"])): r for r in history.values()}
        result = {
            "ran": list(ran),
            "ran_before_kill": ran_before_kill,
            "outcomes": dict(outcomes),
            "by_call": by_call,
            "told": told,
            "second": [r.id for r in second],
            "pending_again": pending_again,
        }
        if replicas:
            assert_settled(reader)
        return result
    finally:
        gate.close()
        decider.close()
        patient.close()


def _pending_again(store: RedisStore, second: list[Any]) -> list[str]:
    try:
        found = store.get_many([r.id for r in second])
    except GatekeeperError:  # still failing over
        return []
    return [r.id for r in found if r.status is RequestStatus.PENDING]


def test_approvals_a_failover_loses_were_never_run(sentinels: Sentinels, redis_prefix: str) -> None:
    seen = _scenario(sentinels, redis_prefix, replicas=1)
    ran, by_call, told = seen["ran"], seen["by_call"], seen["told"]
    assert Counter(ran) == Counter(dict.fromkeys(set(ran), 1))  # none ran twice
    # Every call that ran shows, on the promoted replica, an approval and its run.
    for call in ran:
        req = by_call[call]
        assert req.status is RequestStatus.EXECUTED, (call, req.status)
        assert req.approvals, call
    # Round one: acknowledged as durable, and run. Round two: told not durable, never run.
    assert sorted(ran) == sorted((a, 0) for a in AGENTS)
    assert all(told[rid] is False for rid in seen["second"])
    assert all(told[rid] is True for rid in told if rid not in seen["second"])
    assert sorted(seen["pending_again"]) == sorted(seen["second"])  # lost, and not run
    for agent in AGENTS:
        assert isinstance(seen["outcomes"][agent, 1], ApprovalDenied)


def test_without_durability_the_same_failover_loses_approvals_whose_calls_ran(
    sentinels: Sentinels, redis_prefix: str
) -> None:
    """The issue's evidence, for contrast: ``replicas: 0`` runs them, and they come back pending."""
    seen = _scenario(sentinels, redis_prefix, replicas=0)
    lost_but_ran = [
        call for call in seen["ran"] if seen["by_call"][call].id in seen["pending_again"]
    ]
    assert sorted(lost_but_ran) == sorted((a, 1) for a in AGENTS)
    assert all(seen["told"][rid] is None for rid in seen["second"])  # nobody was told
