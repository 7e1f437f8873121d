"""Decisions that survive a failover (``store.durability``), on a real cluster and Sentinel set-up.

With ``replicas: 1`` a decision is acknowledged to the approver once a
replica of the agent's master has it (``WAIT``), and an approved call runs
only then. With the replica cut off (``SIGSTOP``: it stops reading the
replication stream) the decision comes back within the timeout saying it is
not yet durable, and the call waits until the replica has it. The fixtures
are session-wide: every test gives its replica back running and in sync.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from gatekeeper import ApprovalTimeout, Gatekeeper, Policy, RequestStatus
from gatekeeper._errors import GatekeeperError, NotAuthorized, TransitionRefused
from gatekeeper.store import Durability, RedisStore
from gatekeeper.store._redis_ops import Keys
from gatekeeper.testing import ManualClock
from tests.aclkit import RoleSplitStore
from tests.clusterkit import Node, _until
from tests.faults.conftest import wait_until
from tests.storekit import held_event, make_request, vote

pytestmark = pytest.mark.redis

AGENT = "deployer"


def _replica_of(where: str, fixture: Any, key: str) -> tuple[Node, Node]:
    """The master that holds ``key`` now, and its replica."""
    if where == "sentinel":
        port = fixture.primary_port()
        nodes = [fixture.primary, fixture.replica]
        master = next(n for n in nodes if n.port == port)
        return master, next(n for n in nodes if n is not master)
    master = fixture.master_of(key)
    for node in fixture.nodes:
        if node.proc.poll() is not None or node is master:
            continue
        with node.client() as c:
            info = c.info("replication")
            if info.get("role") == "slave" and int(info.get("master_port", 0)) == master.port:
                return master, node
    raise RuntimeError(f"no replica of the master of {key!r}")


@contextlib.contextmanager
def _cut_off(master: Node, replica: Node) -> Iterator[None]:
    """The replica stops reading its master's stream (SIGSTOP); back and in sync after."""
    os.kill(replica.proc.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(replica.proc.pid, signal.SIGCONT)

        def caught_up() -> bool:
            with master.client() as m, replica.client() as r:
                offset = int(m.info("replication")["master_repl_offset"])
                info = r.info("replication")
                return (
                    info.get("master_link_status") == "up"
                    and int(info.get("slave_repl_offset", -1)) >= offset
                )

        _until("the replica to be back in sync", caught_up, timeout=30)


def _on_replica(replica: Node, key: str) -> dict[str, str]:
    """The request's hash as the replica holds it (read from the replica itself)."""
    with replica.client() as c:
        with contextlib.suppress(redis.ResponseError):  # not a cluster node
            c.execute_command("READONLY")
        raw = c.hgetall(key)
    return {k.decode(): v.decode() for k, v in raw.items()}


@pytest.fixture(params=["cluster", "sentinel"])
def deployment(
    request: pytest.FixtureRequest, redis_prefix: str
) -> Iterator[tuple[str, Any, RedisStore]]:
    """Where, the fixture, and a store with ``durability: {replicas: 1}`` on it."""
    fixture = request.getfixturevalue(f"redis_{request.param}")
    store = RedisStore(
        fixture.url, prefix=redis_prefix, durability=Durability(replicas=1, timeout=0.3)
    )
    yield request.param, fixture, store
    with contextlib.suppress(GatekeeperError):  # closed already by the test's gate
        store.close()


class _Agent:
    """An agent's call held in a thread of its own, with what ran."""

    def __init__(self, store: RedisStore, timeout: float = 30.0) -> None:
        self.gate = Gatekeeper(policy=Policy.empty(), store=store, default_timeout=timeout)
        self.ran = threading.Event()
        self.outcome: Any = None

        @self.gate.guard
        def deploy(version: str) -> str:
            self.ran.set()
            return f"deployed {version}"

        def call() -> None:
            try:
                with self.gate.session(agent=AGENT):
                    self.outcome = deploy("v2")
            except Exception as exc:
                self.outcome = exc

        self.thread = threading.Thread(target=call, daemon=True)
        self.thread.start()
        wait_until("the call to be held", lambda: bool(store.pending()))
        self.request_id = store.pending()[0].id


def test_an_approval_is_acknowledged_only_once_a_replica_has_it(
    deployment: tuple[str, Any, RedisStore],
) -> None:
    where, fixture, store = deployment
    store.durability = Durability(replicas=1, timeout=10.0)
    agent = _Agent(store)
    a = store.keys.of(AGENT)
    master, replica = _replica_of(where, fixture, a.tag)
    answer: list[Any] = []
    with _cut_off(master, replica):
        approving = threading.Thread(
            target=lambda: answer.append(agent.gate.approve(agent.request_id, approver="alice"))
        )
        approving.start()
        approving.join(0.5)
        assert approving.is_alive()  # not acknowledged while the replica lacks it
        assert not agent.ran.is_set()  # nor run
    approving.join(10)
    after = answer[0]
    assert after.durable is True
    assert after.awaiting_replicas == 0
    on_replica = _on_replica(replica, a.req(agent.request_id))
    assert on_replica["status"] in ("approved", "executing", "executed")
    assert "awaiting_replicas" not in on_replica
    agent.thread.join(10)
    assert agent.outcome == "deployed v2"
    agent.gate.close()


def test_with_the_replica_cut_off_the_approver_is_told_and_the_call_waits_for_it(
    deployment: tuple[str, Any, RedisStore],
) -> None:
    where, fixture, store = deployment
    agent = _Agent(store)
    a = store.keys.of(AGENT)
    master, replica = _replica_of(where, fixture, a.tag)
    with _cut_off(master, replica):
        started = time.monotonic()
        after = agent.gate.approve(agent.request_id, approver="alice")
        took = time.monotonic() - started
        assert took < 0.3 + 1.0  # back within the timeout (and a round trip or two)
        assert after.status is RequestStatus.APPROVED
        assert after.durable is False
        assert after.awaiting_replicas == 1
        # The agent checks for itself (a WAIT of its own, 0.3 s) and waits on.
        assert not agent.ran.wait(0.8)
        assert store.get(agent.request_id).status is RequestStatus.APPROVED
    # The replica has it now: the waiting agent sees so, confirms, and runs it.
    assert agent.ran.wait(10)
    agent.thread.join(10)
    assert agent.outcome == "deployed v2"
    done = store.get(agent.request_id)
    assert done.status is RequestStatus.EXECUTED
    assert done.awaiting_replicas == 0
    _until(
        "the replica to have the outcome",
        lambda: _on_replica(replica, a.req(agent.request_id)).get("status") == "executed",
    )
    agent.gate.close()


def test_a_denial_with_the_replica_cut_off_is_reported_not_durable(
    deployment: tuple[str, Any, RedisStore],
) -> None:
    where, fixture, store = deployment
    agent = _Agent(store)
    master, replica = _replica_of(where, fixture, store.keys.of(AGENT).tag)
    with _cut_off(master, replica):
        after = agent.gate.deny(agent.request_id, approver="alice", comment="not today")
        assert after.status is RequestStatus.DENIED
        assert after.durable is False
        assert after.awaiting_replicas == 0  # nothing runs on a denial: nothing held back
    agent.thread.join(10)
    assert not agent.ran.is_set()
    assert type(agent.outcome).__name__ == "ApprovalDenied"
    agent.gate.close()


def test_without_any_replica_an_approval_never_runs_and_ends_by_its_expiry(
    redis_server: Any, redis_prefix: str
) -> None:
    """``replicas: 1`` on a single node: told not durable; the call never runs, nothing stuck."""
    store = RedisStore(
        redis_server.url, prefix=redis_prefix, durability=Durability(replicas=1, timeout=0.2)
    )
    agent = _Agent(store, timeout=2.0)
    after = agent.gate.approve(agent.request_id, approver="alice")
    assert (after.status, after.durable, after.awaiting_replicas) == (
        RequestStatus.APPROVED,
        False,
        1,
    )
    agent.thread.join(10)
    assert not agent.thread.is_alive()
    assert not agent.ran.is_set()
    assert isinstance(agent.outcome, (GatekeeperError, ApprovalTimeout)), agent.outcome
    ended = store.get(agent.request_id)
    assert ended.status.ended and ended.status is not RequestStatus.EXECUTED
    with pytest.raises(TransitionRefused):
        store.claim(agent.request_id, args_digest=ended.args_digest, token="late")
    agent.gate.close()
    store.close()


def test_a_store_without_durability_neither_waits_nor_says(
    redis_server: Any, redis_prefix: str
) -> None:
    store = RedisStore(redis_server.url, prefix=redis_prefix)
    agent = _Agent(store)
    after = agent.gate.approve(agent.request_id, approver="alice")
    assert (after.durable, after.awaiting_replicas) == (None, 0)
    agent.thread.join(10)
    assert agent.outcome == "deployed v2"
    agent.gate.close()
    store.close()


def test_the_agents_acl_user_may_confirm_its_approval_but_not_approve(
    redis_cluster: Any, redis_prefix: str
) -> None:
    """Under the shipped ACL users: the agent's own WAIT and confirm work; deciding does not."""
    clock = ManualClock()
    split = RoleSplitStore(redis_cluster.url, redis_prefix, clock)
    try:
        agent_store = split.agent(AGENT)
        for s in (split.decider, agent_store):
            s.durability = Durability(replicas=1, timeout=1.0)
        a = Keys(redis_prefix).of(AGENT)
        assert agent_store.replicated(a, 1, 1.0) == 1  # WAIT is the agent's to send
        req = make_request(clock, agent=AGENT)
        split.hold(req, held_event(req))
        # Even holding a signing key, the agent's Redis user can't record a decision.
        forger = RedisStore(
            agent_store.url, prefix=redis_prefix, decision_keys=split.decision_keys, seal=False
        )
        forger.durability = Durability(replicas=1, timeout=1.0)
        try:
            with pytest.raises(NotAuthorized):
                forger.decide(req.id, vote(clock, req, "alice"))
        finally:
            forger.close()
        assert split.decider.get(req.id).status is RequestStatus.PENDING
        # Decided with the replica cut off: held back until the agent sees a replica has it.
        master, replica = _replica_of("cluster", redis_cluster, a.tag)
        with _cut_off(master, replica):
            after = split.decider.decide(req.id, vote(clock, req, "alice"))
            assert (after.durable, after.awaiting_replicas) == (False, 1)
            with pytest.raises(TransitionRefused, match="not yet known to be on 1"):
                agent_store.claim(req.id, args_digest=req.args_digest, token="t1")
        claimed = agent_store.claim(req.id, args_digest=req.args_digest, token="t1")
        assert claimed.status is RequestStatus.EXECUTING
        assert claimed.awaiting_replicas == 0
    finally:
        split.close()


def test_an_async_agent_waits_for_the_replica_too(
    deployment: tuple[str, Any, RedisStore],
) -> None:
    """The async face: the held-back approval is confirmed by the waiting agent's own check."""
    import asyncio

    where, fixture, store = deployment
    gate = Gatekeeper(policy=Policy.empty(), store=store, default_timeout=30)
    ran = threading.Event()
    outcome: list[Any] = []

    @gate.guard
    async def deploy(version: str) -> str:
        ran.set()
        return f"deployed {version}"

    async def call() -> None:
        try:
            with gate.session(agent=AGENT):
                outcome.append(await deploy("v3"))
        except Exception as exc:
            outcome.append(exc)
        await store.aio.aclose()

    thread = threading.Thread(target=lambda: asyncio.run(call()), daemon=True)
    thread.start()
    wait_until("the call to be held", lambda: bool(store.pending()))
    rid = store.pending()[0].id
    master, replica = _replica_of(where, fixture, store.keys.of(AGENT).tag)
    with _cut_off(master, replica):
        after = gate.approve(rid, approver="alice")
        assert (after.durable, after.awaiting_replicas) == (False, 1)
        assert not ran.wait(0.8)
    thread.join(15)
    assert outcome == ["deployed v3"]
    assert store.get(rid).status is RequestStatus.EXECUTED
    gate.close()
