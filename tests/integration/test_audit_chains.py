"""Audit chains per shard on a real Redis Cluster: spread, each verifiable alone, anchored.

With ``store.audit_chains`` above 1, each agent's events are sealed into one
of several hash chains (the deciders' own into chain 0), each under its own
hash tag, so the log spreads over the cluster's masters. Each chain verifies
without the others; signed anchors of every head tie them together; readers
(the console's pages, ``audit_entries``, a follower's cursor) see one log.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gatekeeper import Gatekeeper, Policy, RedisStore, StoreError, audit
from gatekeeper._archive import archive_audit, archive_files
from gatekeeper.store._redis_ops import chain_of
from gatekeeper.testing import ManualClock
from tests.storekit import MANUAL_LEASE, held_event, make_request, vote

pytestmark = pytest.mark.redis

AGENTS = [f"agent-{n:02d}" for n in range(12)]
CHAINS = 4


def busy(clock: ManualClock, store: Any, rounds: int = 2) -> None:
    for _ in range(rounds):
        for agent in AGENTS:
            req = make_request(clock, agent=agent)
            store.hold(req, held_event(req))
            store.decide(req.id, vote(clock, req, "alice"))
        clock.advance(1)
    store.flush()


@pytest.fixture
def site(redis_cluster: Any, redis_prefix: str) -> Iterator[tuple[Gatekeeper, ManualClock]]:
    clock = ManualClock()
    store = RedisStore(
        redis_cluster.url,
        prefix=redis_prefix,
        clock=clock,
        lease=MANUAL_LEASE,
        audit_chains=CHAINS,
    )
    gate = Gatekeeper(policy=Policy.empty(), store=store, clock=clock)
    yield gate, clock
    gate.close()


def agent_of(entry: audit.StoredEvent) -> str | None:
    return json.loads(entry.body)["event"].get("agent")


def test_events_spread_over_chains_on_several_masters_each_verifiable_alone(
    site: tuple[Gatekeeper, ManualClock], redis_cluster: Any
) -> None:
    gate, clock = site
    store = gate.store
    busy(clock, store)
    heads = [store.audit_head(c) for c in range(CHAINS)]
    assert sum(seq for seq, _ in heads) == 2 * 2 * len(AGENTS)
    assert sum(1 for seq, _ in heads if seq) >= 3
    masters = {redis_cluster.master_of(store.keys.chain(c).audit).port for c in range(CHAINS)}
    assert len(masters) >= 2, masters
    for c in range(CHAINS):
        entries = list(store.audit_entries(chain=c))
        # Alone: no other chain read, its own head.
        report = audit.verify_chain(entries, head=store.audit_head(c))
        assert report.ok and report.count == heads[c][0]
        assert {chain_of(agent_of(e) or "", CHAINS) for e in entries} <= {c}
        assert all(e.entry_id.startswith(f"{c}/") == (c > 0) for e in entries)

    merged = list(store.audit_entries())
    assert len(merged) == len({e.entry_id for e in merged}) == sum(s for s, _ in heads)
    assert [audit.entry_order(e.entry_id) for e in merged] == sorted(
        audit.entry_order(e.entry_id) for e in merged
    )
    # The console's pages walk every chain, newest first, each entry once.
    paged: list[str] = []
    before = None
    while True:
        page = store.audit_page(before=before, limit=7)
        if not page:
            break
        paged += [e.entry_id for e in page]
        before = page[-1].entry_id
    assert paged == [e.entry_id for e in reversed(merged)]

    report = gate.verify_audit()
    assert report.ok and report.count == len(merged) and len(report.chains) == CHAINS


def test_a_follower_with_a_cursor_misses_nothing_of_any_chain(
    site: tuple[Gatekeeper, ManualClock],
) -> None:
    gate, clock = site
    store = gate.store
    busy(clock, store, rounds=1)
    cursor = None
    for entry in store.audit_entries():
        cursor = audit.advance_cursor(cursor, entry.entry_id)
    seen = {e.entry_id for e in store.audit_entries()}
    busy(clock, store, rounds=1)
    new = [e.entry_id for e in store.audit_entries(after=cursor)]
    assert len(new) == 2 * len(AGENTS)
    assert not set(new) & seen
    assert set(new) | seen == {e.entry_id for e in store.audit_entries()}


def test_a_broken_chain_is_named_and_the_others_verify_alone(
    site: tuple[Gatekeeper, ManualClock],
) -> None:
    gate, clock = site
    store = gate.store
    busy(clock, store)
    victim = max(range(1, CHAINS), key=lambda c: store.audit_head(c)[0])
    admin: Any = store.client
    key = store.keys.chain(victim).audit
    second = admin.xrange(key, count=2)[1][0]
    admin.xdel(key, second)
    report = gate.verify_audit()
    assert not report.ok and (report.problem or "").startswith(f"chain {victim}: ")
    assert "inserted or deleted" in (report.problem or "")
    for c in range(CHAINS):
        alone = audit.verify_chain(store.audit_entries(chain=c), head=store.audit_head(c))
        assert alone.ok == (c != victim)


def test_anchors_name_every_head_and_catch_a_chain_cut_short(
    site: tuple[Gatekeeper, ManualClock],
) -> None:
    gate, clock = site
    store = gate.store
    busy(clock, store)
    store._sealer._next_anchor = 0.0  # type: ignore[attr-defined]
    store.flush()
    (_, signed), *more = store.audit_anchors()
    assert not more
    body = store.decision_keys.trusted.verify("gatekeeper.anchor.v1", signed)
    assert [tuple(h) for h in body["chains"]] == [store.audit_head(c) for c in range(CHAINS)]
    assert gate.verify_audit().anchors == 1

    victim = max(range(CHAINS), key=lambda c: store.audit_head(c)[0])
    ck = store.keys.chain(victim)
    admin: Any = store.client
    newest, kept = admin.xrevrange(ck.audit, "+", "-", count=2)
    admin.xdel(ck.audit, newest[0])  # the tail cut, the head made to match
    admin.hset(ck.head, mapping={"seq": json.loads(kept[1][b"b"])["seq"], "hash": kept[1][b"h"]})
    report = gate.verify_audit()
    assert not report.ok
    assert (report.problem or "").startswith(f"chain {victim}: TRUNCATED")


def test_each_chain_is_archived_beside_the_others_and_verifies_from_event_one(
    site: tuple[Gatekeeper, ManualClock], tmp_path: Path
) -> None:
    gate, clock = site
    store = gate.store
    busy(clock, store)
    clock.advance(7200)
    busy(clock, store, rounds=1)
    total = sum(store.audit_head(c)[0] for c in range(CHAINS))
    result = archive_audit(store, tmp_path, older_than=clock.now() - dt.timedelta(hours=1))
    assert result.archived == result.trimmed == 2 * 2 * len(AGENTS)
    dirs = {p.name for p in tmp_path.iterdir() if p.is_dir()}
    assert dirs <= {f"chain-{c}" for c in range(1, CHAINS)} and len(dirs) >= 2
    for c in range(1, CHAINS):
        if store.audit_base(c).seq:
            assert archive_files(tmp_path / f"chain-{c}")
    assert len(list(store.audit_entries())) == 2 * len(AGENTS)
    report = gate.verify_audit(archive=tmp_path)
    assert report.ok and report.count == total
    alone = gate.verify_audit()
    assert alone.ok and alone.count == 2 * len(AGENTS)


def test_the_number_of_chains_is_fixed_once_used_and_one_may_become_several(
    redis_cluster: Any, redis_prefix: str
) -> None:
    clock = ManualClock()
    one = RedisStore(redis_cluster.url, prefix=redis_prefix, clock=clock, lease=MANUAL_LEASE)
    gate = Gatekeeper(policy=Policy.empty(), store=one, clock=clock)
    busy(clock, one, rounds=1)
    before = [e.entry_id for e in one.audit_entries()]
    gate.close()

    clock.advance(5)
    four = RedisStore(
        redis_cluster.url, prefix=redis_prefix, clock=clock, lease=MANUAL_LEASE, audit_chains=4
    )
    gate = Gatekeeper(policy=Policy.empty(), store=four, clock=clock)
    try:
        busy(clock, four, rounds=1)
        # The history stays in chain 0; new events go to each agent's chain, none twice.
        assert [e.entry_id for e in four.audit_entries(chain=0)][: len(before)] == before
        ids = [json.loads(e.body)["event"].get("id") for e in four.audit_entries()]
        named = [i for i in ids if i]
        assert len(named) == len(set(named))
        assert len(ids) == 4 * len(AGENTS)
        report = gate.verify_audit()
        assert report.ok and report.count == 4 * len(AGENTS)

        two = RedisStore(
            redis_cluster.url,
            prefix=redis_prefix,
            clock=clock,
            lease=MANUAL_LEASE,
            audit_chains=2,
            seal=False,
        )
        with pytest.raises(StoreError, match="has 4 chains"):
            list(two.audit_entries())
        two.close()
    finally:
        gate.close()


def test_the_shipped_acl_users_seal_and_read_every_chain(
    redis_cluster: Any, redis_prefix: str
) -> None:
    from tests.aclkit import RoleSplitStore

    clock = ManualClock()
    split = RoleSplitStore(redis_cluster.url, redis_prefix, clock, audit_chains=CHAINS)
    try:
        busy(clock, split, rounds=1)
        assert sum(split.decider.audit_head(c)[0] for c in range(CHAINS)) == 2 * len(AGENTS)
        gate = Gatekeeper(policy=Policy.empty(), store=split.decider, clock=clock)
        assert gate.verify_audit().ok
    finally:
        split.close()


def test_the_cli_verifies_each_chain_and_names_the_broken_one(
    site: tuple[Gatekeeper, ManualClock],
) -> None:
    import io

    from gatekeeper.cli._commands import IO, audit_verify

    gate, clock = site
    busy(clock, gate.store)
    out = io.StringIO()
    assert audit_verify(gate, IO(out, io.StringIO(), io.StringIO())) == 0
    lines = out.getvalue().splitlines()
    assert lines[0].startswith(f"ok: {4 * len(AGENTS)} events in {CHAINS} chains, all intact")
    assert [line.split(":")[0].strip() for line in lines[1:]] == [
        f"chain {c}" for c in range(CHAINS)
    ]
    admin: Any = gate.store.client
    key = gate.store.keys.chain(1).audit
    admin.xadd(key, {"b": b"{}", "h": b"0"})
    admin.hincrby(gate.store.keys.chain(1).head, "seq", 1)
    out = io.StringIO()
    assert audit_verify(gate, IO(out, io.StringIO(), io.StringIO())) == 1
    assert "chain 1: entry is not a readable event" in out.getvalue()
