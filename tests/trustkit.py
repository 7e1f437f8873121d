"""The trust-boundary set-up shared by the attack suites: ACL users, an agent and a decider.

``dep`` (a fixture, registered in tests/integration/conftest.py) sets up the
shipped ACL users on the session's redis-server; ``dep.agent`` is a store
logged in as billing-bot's user holding only the trusted public key,
``dep.decider`` one logged in as the decider with the signing key, and
``dep.attacker`` a raw Redis client with billing-bot's credentials.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis

from gatekeeper import Gatekeeper, Policy
from gatekeeper._signing import DecisionKeys, SigningKey, TrustedKeys
from gatekeeper.audit import parse_event
from gatekeeper.store import RedisStore
from gatekeeper.store._acl import acl_rules, acl_user
from tests.conftest import RedisServer

POLICY = Policy.from_yaml(
    """
version: 1
default: require_approval
rules:
  - {id: read-only, match: {tool: "search_*"}, verdict: allow}
"""
)


@dataclass
class Deployment:
    prefix: str
    admin: redis.Redis
    attacker: redis.Redis  # the agent's own ACL user
    agent: RedisStore
    decider: RedisStore
    key: SigningKey

    def url(self, server: RedisServer, user: str, password: str) -> str:
        return server.url.replace("redis://", f"redis://{user}:{password}@")


@pytest.fixture
def dep(redis_server: RedisServer, redis_prefix: str) -> Iterator[Deployment]:
    admin = redis.Redis.from_url(redis_server.url)
    passwords: dict[str, str] = {}
    for argv in acl_rules(redis_prefix, agents=["billing-bot", "other-bot"], passwords=passwords):
        admin.execute_command(*argv)
    key = SigningKey.generate()
    trusted = TrustedKeys({key.key_id: key.public_text})

    def url(role: str, agent: str | None = None) -> str:
        user = acl_user(redis_prefix, role, agent)
        return redis_server.url.replace("redis://", f"redis://{user}:{passwords[user]}@")

    agent = RedisStore(
        url("agent", "billing-bot"),
        prefix=redis_prefix,
        decision_keys=DecisionKeys(trusted=trusted),
        seal_linger=0,
    )
    decider = RedisStore(
        url("decider"), prefix=redis_prefix, decision_keys=DecisionKeys(key), seal_linger=0
    )
    decider.load_scripts()  # as `gatekeeper serve` does at start: agents may only run them
    attacker = redis.Redis.from_url(url("agent", "billing-bot"))
    yield Deployment(redis_prefix, admin, attacker, agent, decider, key)
    for store in (agent, decider):
        store.close()
    attacker.close()
    for user in passwords:
        admin.execute_command("ACL", "DELUSER", user)
    admin.close()


class HeldCall:
    """A guarded refund run in a thread of the agent process; records what ran."""

    def __init__(self, dep: Deployment, args: dict[str, Any] | None = None) -> None:
        self.ran: list[dict[str, Any]] = []
        self.gate = Gatekeeper(policy=POLICY, store=dep.agent, default_timeout=20)
        self.decider = Gatekeeper(policy=POLICY, store=dep.decider)
        self.error: BaseException | None = None
        self.result: Any = None

        @self.gate.guard(irreversible=True)
        def refund(order_id: str, amount: float, to_account: str = "CUSTOMER") -> str:
            self.ran.append({"order_id": order_id, "amount": amount, "to_account": to_account})
            return "refunded"

        def run() -> None:
            with self.gate.session(agent="billing-bot", reason="customer asked"):
                try:
                    self.result = refund(**(args or {"order_id": "A-1", "amount": 20.0}))
                except BaseException as exc:
                    self.error = exc

        self.thread = threading.Thread(target=run)
        self.thread.start()
        self.id = self._wait_pending(dep)

    def _wait_pending(self, dep: Deployment) -> str:
        for _ in range(500):
            page, _ = dep.decider.queue()
            if page:
                return page[0].id
            threading.Event().wait(0.01)
        raise AssertionError("the call was never held")

    def join(self) -> None:
        self.thread.join(30)
        assert not self.thread.is_alive()


def pause_after_decision(
    dep: Deployment, monkeypatch: pytest.MonkeyPatch
) -> tuple[threading.Event, threading.Event]:
    """Pause the agent between hearing the decision and acting on it (as by SIGSTOP).

    Returns ``(decided, go)``: ``decided`` is set once the agent has seen the
    request decided; it then waits for ``go`` and reads the store again, so
    whatever was written meanwhile is what it acts on.
    """
    decided, go = threading.Event(), threading.Event()
    real_wait = dep.agent.wait

    def paused_wait(rid: str, timeout: float) -> Any:
        req = real_wait(rid, timeout)
        if req.status.decided:
            decided.set()
            go.wait(10)
            return dep.agent.get(rid)  # resumed: it reads the store again
        return req

    monkeypatch.setattr(dep.agent, "wait", paused_wait)
    return decided, go


def wake(dep: Deployment, rid: str) -> None:
    """Wake the waiting agent as a transition would (the agent's user may do this)."""
    a = dep.agent.keys.of("billing-bot")
    dep.attacker.lpush(a.wake(rid), "1")
    dep.attacker.publish(a.channel, rid)  # its own channel: the only one it may publish on


def chain(dep: Deployment) -> list[Any]:
    dep.agent.flush()
    dep.decider.flush()
    return [parse_event(e.body, e.hash) for e in dep.decider.audit_entries()]


def tampering_recorded(dep: Deployment, rid: str) -> None:
    kinds = [(e.kind, e.request_id) for e in chain(dep)]
    assert ("request.tampering", rid) in kinds
    assert dep.decider.get(rid).tampering  # the console shows it
