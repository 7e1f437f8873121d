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


@pytest.mark.parametrize(
    "bad_id",
    ["", "x" * 65, "has space", "slash/in/it", "nul\x00", "é-accent", 42, ["a"]],
    ids=["empty", "65-chars", "space", "slash", "nul", "non-ascii", "int", "list"],
)
def test_a_draft_with_a_malformed_id_is_refused_and_nothing_is_written(
    bad_id: object, clock: ManualClock, store: Store
) -> None:
    """Ids are bounded (1-64 of A-Z a-z 0-9 _ -): the store refuses the rest, with why."""
    from gatekeeper import StoreError
    from tests.storekit import held_event, make_request

    event = draft("channel.failed", at_ms=1, actor="system", data={"channel": "x"})
    event["id"] = bad_id
    before = len(audit_events(store))
    with pytest.raises(StoreError, match="1 to 64 characters of A-Z, a-z, 0-9, _ and -"):
        store.record([event, draft("channel.failed", at_ms=1, actor="system")])
    with pytest.raises(StoreError, match=r"refused to record the audit event 'channel\.failed'"):
        store.admit(event, agent="billing-bot", session_id="s1")
    req = make_request(clock)
    bad_hold = {**held_event(req), "id": bad_id}
    with pytest.raises(StoreError):
        store.hold(req, bad_hold)
    assert len(audit_events(store)) == before  # nothing of the refused batch
    with pytest.raises(Exception, match="no approval request"):
        store.get(req.id)


def test_ids_of_the_right_shape_are_taken(clock: ManualClock, store: Store) -> None:
    for event_id in ("a", "A-1_z" * 12 + "1234", None):
        event = draft("channel.failed", at_ms=1, actor="system", data={"channel": str(event_id)})
        event["id"] = event_id
        store.record([event])
    sealed = [e for e in audit_events(store) if e.kind == "channel.failed"]
    assert [e.id for e in sealed] == ["a", "A-1_z" * 12 + "1234", None]


@pytest.mark.redis
def test_an_agents_journal_entry_with_a_malformed_id_is_sealed_as_refused(
    redis_server: RedisServer, redis_prefix: str
) -> None:
    """Written past the library (an agent's user may RPUSH its journal): refused in the chain."""
    import json

    decider = RedisStore(redis_server.url, prefix=redis_prefix)
    decider.admit(
        draft("call.allowed", at_ms=1, actor="agent:bot", agent="bot", data={}),
        agent="bot",
        session_id="s",
    )
    forged = draft("call.allowed", at_ms=2, actor="agent:bot", agent="bot", data={})
    forged["id"] = "y" * 5000
    raw = json.dumps(forged).encode()
    decider.client.rpush(decider.keys.of("bot").journal, raw)
    events = audit_events(decider)
    refused = [e for e in events if e.kind == "audit.refused"]
    assert len(refused) == 1
    assert "is not 1 to 64 characters" in str(refused[0].data["problem"])
    assert all(e.id is None or len(e.id) <= 64 for e in events)
    assert decider.client.zcard(decider.keys.event_ids) >= 1
    assert all(len(m) <= 80 for m in decider.client.zrange(decider.keys.event_ids, 0, -1))
    decider.close()
