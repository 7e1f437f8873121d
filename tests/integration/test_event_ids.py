"""Every audit event has an id fixed before its first write; the chain holds it once.

A write whose reply is lost (a real proxy drops it) is retried, and lands in
Redis twice; the sealer chains one event per id.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gatekeeper import Gatekeeper, Policy, RedisStore
from gatekeeper.audit import draft, parse_event
from gatekeeper.store import Store
from gatekeeper.store._redis import RetryPolicy
from gatekeeper.testing import ManualClock
from tests.conftest import RedisServer
from tests.faultkit import ReplyDropper
from tests.gatekit import audit_events


def test_a_draft_written_twice_is_sealed_once(clock: ManualClock, store: Store) -> None:
    event = draft("channel.failed", at_ms=1, actor="system", data={"channel": "x"})
    store.record([event])
    store.record([event])  # the same draft again: what a retried write leaves behind
    store.record([draft("channel.failed", at_ms=2, actor="system", data={"channel": "y"})])
    sealed = [e for e in audit_events(store) if e.kind == "channel.failed"]
    assert [e.data["channel"] for e in sealed] == ["x", "y"]
    assert sealed[0].id == event["id"] and len({e.id for e in sealed}) == 2


@pytest.fixture
def dropper(redis_server: RedisServer) -> Iterator[ReplyDropper]:
    proxy = ReplyDropper(redis_server.port)
    yield proxy
    proxy.close()


@pytest.mark.redis
def test_an_allowed_call_whose_admit_reply_was_lost_is_audited_once(
    dropper: ReplyDropper, redis_server: RedisServer, redis_prefix: str
) -> None:
    store = RedisStore(
        dropper.url,
        prefix=redis_prefix,
        socket_timeout=0.3,
        retry=RetryPolicy(attempts=5, within=5.0),
    )
    gate = Gatekeeper(policy=Policy.from_yaml("version: 1\ndefault: allow\n"), store=store)

    @gate.guard
    def lookup(key: str) -> str:
        return key

    assert lookup("warm-up") == "warm-up"  # registers the agent, loads the scripts
    dropper.drop_replies = 1  # the admit script runs; its reply never comes back
    assert lookup("k-1") == "k-1"
    assert dropper.dropped == 1
    store.flush()
    reader = RedisStore(redis_server.url, prefix=redis_prefix)
    events = [parse_event(e.body, e.hash) for e in reader.audit_entries()]
    allowed = [e for e in events if e.kind == "call.allowed" and e.data["args"] == {"key": "k-1"}]
    assert len(allowed) == 1
    journal = reader.keys.of("default").journal
    assert reader.client.llen(journal) == 0  # both copies were consumed (one sealed)
    ids = [e.id for e in events if e.id is not None]
    assert len(ids) == len(set(ids))
    gate.close()
    reader.close()


@pytest.mark.redis
def test_an_agent_cannot_drop_a_deciders_event_by_reusing_its_id(
    redis_server: RedisServer, redis_prefix: str
) -> None:
    decider = RedisStore(redis_server.url, prefix=redis_prefix)
    theirs = draft("halt.set", at_ms=5, actor="alice", agent=None, data={"scope": "all"})
    # An agent's event that carries the same id (it saw the id, or guessed it)...
    mine = draft("call.allowed", at_ms=4, actor="agent:billing-bot", agent="billing-bot", data={})
    mine["id"] = theirs["id"]
    decider.admit(mine, agent="billing-bot", session_id="s-1")
    decider.record([theirs])
    kinds = [e.kind for e in audit_events(decider)]
    # ...is its own: ids count per writer, so both are sealed.
    assert kinds.count("call.allowed") == 1 and kinds.count("halt.set") == 1
    decider.close()
