"""Audit retention: sealed events archived to JSON-lines files, trimmed from the store.

On every store of the contract (MemoryStore, RedisStore, split by role under
the ACL users, a real Redis Cluster, a Sentinel-watched primary): the events
archived leave the store, what is left verifies alone from the last one
trimmed, and the archive plus the store verify as one chain from event #1.
A crash between writing a file and trimming, another deployment's archive,
a broken chain and an edited archive are each caught, and nothing is lost.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from gatekeeper import Gatekeeper, Policy, RedisStore, audit
from gatekeeper._archive import (
    ArchiveError,
    archive_anchors,
    archive_audit,
    archive_files,
    read_archive,
    whole_chain,
    write_archive,
)
from gatekeeper._signing import ANCHOR
from gatekeeper.store import MemoryStore, Store
from gatekeeper.testing import ManualClock
from tests.storekit import held_event, make_request, vote

HOUR = dt.timedelta(hours=1)


def hold_and_decide(clock: ManualClock, store: Store, n: int) -> None:
    """``n`` requests held and approved: two sealed events each, at the clock's time."""
    for _ in range(n):
        req = make_request(clock)
        store.hold(req, held_event(req))
        store.decide(req.id, vote(clock, req, "alice"))
    store.flush()


def seqs(entries: list[audit.StoredEvent]) -> list[int]:
    return [json.loads(e.body)["seq"] for e in entries]


def test_archived_events_leave_the_store_and_the_chain_verifies_across_files(
    clock: ManualClock, store: Store, tmp_path: Path
) -> None:
    hold_and_decide(clock, store, 5)  # events 1-10
    clock.advance(2 * 3600)
    hold_and_decide(clock, store, 3)  # events 11-16
    clock.advance(2 * 3600)
    hold_and_decide(clock, store, 2)  # events 17-20
    head = store.audit_head()
    assert head[0] == 20

    first = archive_audit(store, tmp_path, older_than=clock.now() - 3 * HOUR)
    assert (first.archived, first.trimmed, first.through) == (10, 10, 10)
    assert [p.name for p in first.files] == ["audit-000000000001-000000000010.jsonl"]
    left = list(store.audit_entries())
    assert seqs(left) == list(range(11, 21))
    base = store.audit_base()
    assert (base.seq, base.hash) == (10, json.loads(left[0].body)["prev_hash"])
    assert base.at is not None
    # The store alone verifies from its base; with the archive, from event #1.
    alone = audit.verify_chain(left, head=store.audit_head(), base=(base.seq, base.hash))
    assert alone.ok and alone.count == 10
    whole = audit.verify_chain(whole_chain(store, tmp_path), head=store.audit_head())
    assert whole.ok and whole.count == 20 and whole.head_hash == head[1]

    again = archive_audit(store, tmp_path, older_than=clock.now() - 3 * HOUR)
    assert (again.archived, again.trimmed, again.files) == (0, 0, [])

    second = archive_audit(store, tmp_path, older_than=clock.now() - HOUR)
    assert (second.archived, second.through) == (6, 16)
    files = archive_files(tmp_path)
    assert [(a, b) for a, b, _ in files] == [(1, 10), (11, 16)]
    archived = list(read_archive(tmp_path))
    assert seqs(archived) == list(range(1, 17))
    # The chain continues across files: file 2's first event follows file 1's last.
    assert json.loads(archived[10].body)["prev_hash"] == archived[9].hash
    assert seqs(list(store.audit_entries())) == [17, 18, 19, 20]
    assert audit.verify_chain(whole_chain(store, tmp_path), head=store.audit_head()).ok
    # Each line is plain JSON a person can read: the event, its place, its hash.
    line = json.loads(files[0][2].read_text().splitlines()[0])
    assert line["body"]["seq"] == 1 and line["body"]["event"]["kind"] == "call.held"
    assert len(line["hash"]) == 64

    # Paging the store stops at the base; nothing before it is answered.
    page = store.audit_page(limit=50)
    assert seqs(page) == [20, 19, 18, 17]
    assert store.audit_page(before=page[-1].entry_id, limit=50) == []
    # New events chain on after the trim.
    hold_and_decide(clock, store, 1)
    assert audit.verify_chain(whole_chain(store, tmp_path), head=store.audit_head()).count == 22


def test_a_crash_between_writing_and_trimming_loses_nothing_and_writes_nothing_twice(
    clock: ManualClock, store: Store, tmp_path: Path
) -> None:
    hold_and_decide(clock, store, 4)
    clock.advance(2 * 3600)
    hold_and_decide(clock, store, 1)
    # The file for events 1-6 was written, then the process died before trimming.
    write_archive(tmp_path, list(store.audit_entries())[:6])
    assert store.audit_base().seq == 0
    result = archive_audit(store, tmp_path, older_than=clock.now() - HOUR)
    assert (result.archived, result.trimmed, result.through) == (2, 8, 8)
    assert [(a, b) for a, b, _ in archive_files(tmp_path)] == [(1, 6), (7, 8)]
    assert seqs(list(store.audit_entries())) == [9, 10]
    report = audit.verify_chain(whole_chain(store, tmp_path), head=store.audit_head())
    assert report.ok and report.count == 10


def test_another_deployments_archive_is_refused_and_nothing_is_trimmed(
    clock: ManualClock, store: Store, tmp_path: Path
) -> None:
    other = MemoryStore(clock=clock)
    hold_and_decide(clock, other, 2)
    archive_audit(other, tmp_path, older_than=clock.now() + HOUR)
    hold_and_decide(clock, store, 3)
    with pytest.raises(ArchiveError, match=r"not the one this store trimmed|differs from"):
        archive_audit(store, tmp_path, older_than=clock.now() + HOUR)
    assert store.audit_base().seq == 0
    assert len(list(store.audit_entries())) == 6
    # An empty directory is fine; a store that trimmed past the archive is not.
    archive_audit(store, tmp_path / "mine", older_than=clock.now() + HOUR)
    with pytest.raises(ArchiveError, match="files are missing"):
        archive_audit(store, tmp_path / "empty", older_than=clock.now() + HOUR)


def test_an_edited_or_missing_archive_file_is_reported(
    clock: ManualClock, store: Store, tmp_path: Path
) -> None:
    hold_and_decide(clock, store, 6)
    clock.advance(2 * 3600)
    hold_and_decide(clock, store, 1)
    archive_audit(store, tmp_path, older_than=clock.now() - HOUR, per_file=4)
    files = archive_files(tmp_path)
    assert [(a, b) for a, b, _ in files] == [(1, 4), (5, 8), (9, 12)]
    head = store.audit_head()
    assert audit.verify_chain(whole_chain(store, tmp_path), head=head).ok

    path = files[1][2]
    original = path.read_text()
    path.write_text(original.replace('"amount":20.0', '"amount":2000.0', 1))
    report = audit.verify_chain(whole_chain(store, tmp_path), head=head)
    assert not report.ok and "edited" in (report.problem or "")
    assert report.entry_id == f"{path.name}:1"

    path.write_text("not json\n" + original)
    report = audit.verify_chain(whole_chain(store, tmp_path), head=head)
    assert not report.ok and report.problem == "entry is not a readable event"

    path.unlink()
    report = audit.verify_chain(whole_chain(store, tmp_path), head=head)
    assert not report.ok and "inserted or deleted" in (report.problem or "")
    assert report.count == 4


def test_the_embedded_store_keeps_at_most_max_events(tmp_path: Path) -> None:
    clock = ManualClock()
    kept = MemoryStore(clock=clock, max_events=20, archive=tmp_path / "archive")
    dropped = MemoryStore(clock=clock, max_events=20)
    for store in (kept, dropped):
        hold_and_decide(clock, store, 25)  # 50 events
        entries = list(store.audit_entries())
        assert len(entries) <= 20
        base = store.audit_base()
        assert base.seq == 50 - len(entries)
        assert audit.verify_chain(entries, head=store.audit_head(), base=(base.seq, base.hash)).ok
    report = audit.verify_chain(whole_chain(kept, tmp_path / "archive"), head=kept.audit_head())
    assert report.ok and report.count == 50
    assert not (tmp_path / "dropped").exists()
    with pytest.raises(ValueError, match="max_events"):
        MemoryStore(max_events=0)


def test_an_agent_cannot_trim_the_audit_log(
    redis_server: object, redis_prefix: str, tmp_path: Path
) -> None:
    """With exactly an agent's ACL user, trimming (even what is archived) is refused."""
    from gatekeeper._errors import GatekeeperError
    from tests.aclkit import RoleSplitStore

    clock = ManualClock()
    split = RoleSplitStore(redis_server.url, redis_prefix, clock)  # type: ignore[attr-defined]
    try:
        hold_and_decide(clock, split, 3)  # type: ignore[arg-type]
        agent = split.agent("billing-bot")
        entries = list(split.audit_entries())
        with pytest.raises(GatekeeperError):
            agent.audit_trim(entries[-1], at=clock.now())
        assert split.audit_base().seq == 0
        assert len(list(split.audit_entries())) == 6
    finally:
        split.close()


@pytest.fixture
def anchored(
    redis_server: object, redis_prefix: str
) -> Iterator[tuple[Gatekeeper, Any, ManualClock]]:
    """A deciding store on a real Redis, and a client with full access to it (the attacker)."""
    clock = ManualClock()
    url = redis_server.url  # type: ignore[attr-defined]
    store = RedisStore(url, prefix=redis_prefix, clock=clock)
    gate = Gatekeeper(policy=Policy.empty(), store=store, clock=clock)
    admin = redis.Redis.from_url(url)
    yield gate, admin, clock
    admin.close()
    gate.close()


def anchor_now(gate: Gatekeeper) -> None:
    gate.store._sealer._next_anchor = 0.0  # type: ignore[attr-defined]
    gate.store.flush()


def test_the_deciding_side_anchors_the_head_and_verify_holds_the_chain_to_it(
    anchored: tuple[Gatekeeper, Any, ManualClock],
) -> None:
    gate, admin, clock = anchored
    hold_and_decide(clock, gate.store, 3)
    anchor_now(gate)
    anchors = gate.store.audit_anchors()
    assert len(anchors) == 1
    body = gate.store.decision_keys.trusted.verify(ANCHOR, anchors[0][1])
    assert (body["seq"], body["hash"]) == gate.store.audit_head()
    anchor_now(gate)  # the head did not move: no new anchor
    assert len(gate.store.audit_anchors()) == 1
    report = gate.verify_audit()
    assert report.ok and report.anchors == 1

    # Someone with Redis access cuts the last two events and rewrites the head to match:
    # the chain and head agree, the signed anchor does not.
    k = gate.store.keys
    last_two = admin.xrevrange(k.audit, "+", "-", count=3)
    admin.xdel(k.audit, last_two[0][0], last_two[1][0])
    kept = json.loads(last_two[2][1][b"b"])
    admin.hset(k.head, mapping={"seq": kept["seq"], "hash": last_two[2][1][b"h"]})
    assert audit.verify_chain(gate.store.audit_entries(), head=gate.store.audit_head()).ok
    report = gate.verify_audit()
    assert not report.ok and (report.problem or "").startswith("TRUNCATED")


def test_a_rewritten_or_forged_anchor_is_reported(
    anchored: tuple[Gatekeeper, Any, ManualClock],
) -> None:
    gate, admin, clock = anchored
    hold_and_decide(clock, gate.store, 2)
    anchor_now(gate)
    k = gate.store.keys
    # The newest event rewritten and re-chained, head and all: only the anchor tells.
    newest = admin.xrevrange(k.audit, "+", "-", count=1)[0]
    body = json.loads(newest[1][b"b"])
    body["event"]["actor"] = "approver:mallory"
    raw = audit.canonical_json(body)
    digest = hashlib.sha256(body["prev_hash"].encode() + raw).hexdigest()
    admin.xdel(k.audit, newest[0])
    admin.xadd(k.audit, {"b": raw, "h": digest})
    admin.hset(k.head, "hash", digest)
    report = gate.verify_audit()
    assert not report.ok and (report.problem or "").startswith("REWRITTEN")

    # An anchor of a key not trusted here vouches for nothing and is passed over; one
    # naming the deciders' key with a wrong signature is a forgery.
    admin.delete(k.anchors)
    admin.xadd(k.anchors, {"a": '{"body":{"seq":1,"hash":"x"},"key_id":"k","sig":"AA=="}'})
    assert "REWRITTEN" not in (gate.verify_audit().problem or "")
    kid = gate.store.decision_keys.trusted.ids[0]
    forged = json.dumps({"body": {"seq": 1, "hash": "x", "at": 1}, "key_id": kid, "sig": "AA=="})
    admin.xadd(k.anchors, {"a": forged})
    report = gate.verify_audit()
    assert not report.ok and "forged" in (report.problem or "")


def test_archived_anchors_check_the_archive_too(
    anchored: tuple[Gatekeeper, Any, ManualClock], tmp_path: Path
) -> None:
    gate, admin, clock = anchored
    hold_and_decide(clock, gate.store, 2)
    anchor_now(gate)
    clock.advance(7200)
    hold_and_decide(clock, gate.store, 2)
    anchor_now(gate)
    archive_audit(gate.store, tmp_path, older_than=clock.now() - HOUR)
    assert len(archive_anchors(tmp_path)) == 2
    archive_audit(gate.store, tmp_path, older_than=clock.now() - HOUR)  # appends nothing new
    assert len(archive_anchors(tmp_path)) == 2
    report = gate.verify_audit(archive=tmp_path)
    assert report.ok and report.anchors == 2
    # An archive file cut short and its name changed to match: the anchor at #4 says no.
    path = archive_files(tmp_path)[0][2]
    lines = path.read_text().splitlines()
    path.unlink()
    (tmp_path / "audit-000000000001-000000000003.jsonl").write_text("\n".join(lines[:3]) + "\n")
    admin.delete(gate.store.keys.anchors)
    report = gate.verify_audit(archive=tmp_path)
    assert not report.ok
