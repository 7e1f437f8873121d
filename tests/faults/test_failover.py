"""A master killed (kill -9) while calls are held and decided: a cluster and a Sentinel set-up.

Agents of several names, each call held for a person; an approver in another
process approves them as they come. Midway, the master that holds the
deployment's own keys (its slot on the cluster; the primary under Sentinel)
is killed with SIGKILL, and its replica is promoted. With a retry bound
longer than the failover (``store.retry``), nothing fails: every call is
approved and runs exactly once, every approval the approver was told of is
one that ran (none stranded), every waiter is back by its expiry, and the
audit chain verifies.

The kill comes once the replica has every write the master acknowledged
(writes paused, replica caught up: see ``Node.kill_once_replicated``); the
commands under way then fail with the master. A crash that loses writes the
replica never got is tests/faults/test_failover_durable.py's (decisions
acknowledged only once a replica has them: ``store.durability``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gatekeeper import Gatekeeper, Policy, RedisStore, RequestStatus
from gatekeeper.store._redis import RetryPolicy
from tests.clusterkit import Cluster, Sentinels
from tests.faults.conftest import assert_settled, wait_until

pytestmark = pytest.mark.redis

AGENTS = [f"agent-{n}" for n in range(12)]
CALLS_PER_AGENT = 4
EXPIRY = 40.0
RETRY = {"attempts": 500, "within": 20.0, "max_wait": 0.25}  # longer than any failover here
ROOT = Path(__file__).resolve().parents[2]

APPROVER = textwrap.dedent(
    """
    import sys, time
    from gatekeeper import Gatekeeper, Policy, RedisStore, StoreUnavailable
    from gatekeeper.store._redis import RetryPolicy
    url, prefix, calls = sys.argv[1], sys.argv[2], int(sys.argv[3])
    store = RedisStore(url, prefix=prefix, retry=RetryPolicy(attempts=500, within=20.0,
                                                            max_wait=0.25))
    gate = Gatekeeper(policy=Policy.empty(), store=store)
    done = set()
    give_up = time.monotonic() + 90
    while len(done) < calls and time.monotonic() < give_up:
        try:
            pending = gate.pending(limit=500)
        except StoreUnavailable as exc:
            print(f"read: {exc}", file=sys.stderr, flush=True)
            continue
        for req in pending:
            if req.id in done:
                continue
            try:
                gate.approve(req.id, approver="alice")
            except Exception as exc:
                print(f"{req.id}: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
                continue
            done.add(req.id)
            print(req.id, flush=True)  # told: approved
        time.sleep(0.02)
    gate.close()
    """
)


def _agents_store(url: str, prefix: str) -> RedisStore:
    return RedisStore(url, prefix=prefix, retry=RetryPolicy(**RETRY))


def _run_scenario(url: str, prefix: str, kill: Any) -> None:
    store = _agents_store(url, prefix)
    gate = Gatekeeper(policy=Policy.empty(), store=store, default_timeout=EXPIRY)
    ran: list[tuple[str, int]] = []
    lock = threading.Lock()

    @gate.guard
    def deploy(agent: str, n: int) -> str:
        with lock:
            ran.append((agent, n))
        return f"{agent}/{n}"

    outcomes: dict[tuple[str, int], Any] = {}
    returned_at: dict[tuple[str, int], float] = {}

    def agent_calls(agent: str) -> None:
        with gate.session(agent=agent):
            for n in range(CALLS_PER_AGENT):
                try:
                    outcomes[agent, n] = deploy(agent, n)
                except Exception as exc:
                    outcomes[agent, n] = exc
                returned_at[agent, n] = time.time()

    calls = len(AGENTS) * CALLS_PER_AGENT
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "adapters")])}
    approver = subprocess.Popen(
        [sys.executable, "-c", APPROVER, url, prefix, str(calls)],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        threads = [threading.Thread(target=agent_calls, args=(a,), daemon=True) for a in AGENTS]
        for thread in threads:
            thread.start()
        wait_until("a first round of calls run", lambda: len(ran) >= len(AGENTS), timeout=60)
        killed_at = time.time()
        kill()  # mid-way: some calls held, some being approved, some about to run
        for thread in threads:
            thread.join(EXPIRY + 30)
        assert not any(t.is_alive() for t in threads), "a waiter never came back"
        told, _ = approver.communicate(timeout=120)
    finally:
        if approver.poll() is None:  # a failed run leaves no approver behind
            approver.kill()
            approver.communicate()
    approved = set(told.split())

    reader = _agents_store(url, prefix)
    try:
        history = {r.id: r for r in reader.history(limit=1000)}
        by_call = {(r.call.agent, int(r.args["n"])): r for r in history.values()}
        errors = {k: repr(v) for k, v in outcomes.items() if isinstance(v, Exception)}
        assert errors == {}, errors  # the failover cost time, not calls
        assert len(outcomes) == calls
        assert Counter(ran) == Counter(dict.fromkeys(outcomes, 1))  # each ran exactly once
        for key, result in outcomes.items():
            assert result == f"{key[0]}/{key[1]}"
            assert by_call[key].status is RequestStatus.EXECUTED
            assert returned_at[key] <= by_call[key].expires_at.timestamp() + 1.0
        stranded = sorted(
            rid for rid in approved if history[rid].status is not RequestStatus.EXECUTED
        )
        assert stranded == []  # every approval the approver was told of ran
        assert approved == set(history)  # and each request was one it approved
        assert any(by_call[key].created_at.timestamp() > killed_at for key in by_call)
        assert_settled(reader)
    finally:
        reader.close()
        gate.close()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    made = Cluster(tmp_path / "cluster")
    yield made
    made.stop()


@pytest.fixture
def sentinels(tmp_path: Path) -> Iterator[Sentinels]:
    made = Sentinels(tmp_path / "sentinel")
    yield made
    made.stop()


def test_a_cluster_master_killed_mid_way_loses_no_call_and_strands_no_approval(
    cluster: Cluster, redis_prefix: str
) -> None:
    from redis.cluster import RedisCluster

    probe = RedisCluster(host="127.0.0.1", port=cluster.nodes[0].port)
    masters = {probe.get_node_from_key(f"{{{redis_prefix}:{agent}}}").port for agent in AGENTS}
    probe.close()
    assert len(masters) == 3  # the agents' keys are spread over all three masters
    victim = cluster.master_of(f"{{{redis_prefix}}}")  # the deployment's own keys too

    def kill() -> None:
        victim.kill_once_replicated()

    _run_scenario(cluster.url, redis_prefix, kill)
    assert victim not in cluster.masters()
    assert cluster.ok()  # its replica took over its slots


def test_a_sentinel_failover_mid_way_loses_no_call_and_strands_no_approval(
    sentinels: Sentinels, redis_prefix: str
) -> None:
    before = sentinels.primary_port()

    def kill() -> None:
        sentinels.primary.kill_once_replicated()

    _run_scenario(sentinels.url, redis_prefix, kill)
    assert sentinels.primary_port() == sentinels.replica.port != before
