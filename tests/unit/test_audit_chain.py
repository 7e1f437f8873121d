"""The audit hash chain: sealing, and finding exactly which entry was tampered with."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from gatekeeper.audit import GENESIS, StoredEvent, draft, seal, verify_chain


def _chain(n: int = 5) -> tuple[list[StoredEvent], tuple[int, str]]:
    drafts = [
        draft(
            "call.allowed",
            at_ms=1_700_000_000_000 + i,
            actor="agent:a",
            tool=f"t{i}",
            data={"i": i},
        )
        for i in range(n)
    ]
    sealed = seal(GENESIS, 1, drafts)
    entries = [StoredEvent(str(i + 1), body, h) for i, (body, h) in enumerate(sealed)]
    return entries, (n, sealed[-1][1])


def test_whole_chain_verifies() -> None:
    entries, head = _chain()
    report = verify_chain(entries, head=head)
    assert report.ok
    assert report.count == 5
    assert report.head_hash == head[1]


def test_empty_chain_verifies_against_empty_head() -> None:
    assert verify_chain([], head=(0, GENESIS)).ok


def test_edited_entry_is_found() -> None:
    entries, head = _chain()
    body = json.loads(entries[2].body)
    body["event"]["tool"] = "rm_rf"
    forged = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    entries[2] = StoredEvent(entries[2].entry_id, forged, entries[2].hash)
    report = verify_chain(entries, head=head)
    assert not report.ok
    assert "edited" in (report.problem or "")
    assert (report.entry_id, report.seq) == ("3", 3)
    assert report.count == 2


def test_inserted_entry_is_found() -> None:
    entries, head = _chain()
    # A well-formed entry sealed after event 2, slipped in before event 3.
    ((body, h),) = seal(entries[1].hash, 3, [draft("call.allowed", at_ms=1, actor="x")])
    entries.insert(2, StoredEvent("2-1", body, h))
    report = verify_chain(entries, head=head)
    assert not report.ok
    assert report.entry_id == "3"  # the original event 3 no longer follows its predecessor


def test_deleted_middle_entry_is_found() -> None:
    entries, head = _chain()
    del entries[2]
    report = verify_chain(entries, head=head)
    assert not report.ok
    assert (report.entry_id, report.seq) == ("4", 4)
    assert "inserted or deleted" in (report.problem or "")


def test_deleted_tail_is_found_with_the_head() -> None:
    entries, head = _chain()
    assert verify_chain(entries[:3]).ok  # without the head a cut tail looks whole
    report = verify_chain(entries[:3], head=head)
    assert not report.ok
    assert report.seq == 5
    assert "removed from the end" in (report.problem or "")


def test_reordered_entries_are_found() -> None:
    entries, head = _chain()
    entries[1], entries[2] = entries[2], entries[1]
    report = verify_chain(entries, head=head)
    assert not report.ok
    assert report.entry_id == "3"


def test_unreadable_entry_is_found() -> None:
    entries, head = _chain()
    entries[0] = StoredEvent("1", b"not json", entries[0].hash)
    report = verify_chain(entries, head=head)
    assert (report.ok, report.entry_id) == (False, "1")


json_leaf = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20)
json_value = st.recursive(
    json_leaf,
    lambda kids: (
        st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=5), kids, max_size=3)
    ),
    max_leaves=10,
)
drafts_strategy = st.lists(
    st.builds(
        lambda kind, at, actor, data: draft(kind, at_ms=at, actor=actor, data=data),
        st.sampled_from(["call.allowed", "call.held", "request.approved", "halt.set"]),
        st.integers(0, 4_000_000_000_000),
        st.text(min_size=1, max_size=10),
        st.dictionaries(st.text(max_size=5), json_value, max_size=4),
    ),
    min_size=1,
    max_size=8,
)


@settings(max_examples=60, deadline=None)
@given(drafts=drafts_strategy)
def test_sealed_events_always_verify(drafts: list[dict]) -> None:  # type: ignore[type-arg]
    sealed = seal(GENESIS, 1, drafts)
    entries = [StoredEvent(str(i + 1), b, h) for i, (b, h) in enumerate(sealed)]
    assert verify_chain(entries, head=(len(sealed), sealed[-1][1])).ok


@settings(max_examples=80, deadline=None)
@given(drafts=drafts_strategy, data=st.data())
def test_any_single_byte_change_is_detected(drafts: list[dict], data: st.DataObject) -> None:  # type: ignore[type-arg]
    sealed = seal(GENESIS, 1, drafts)
    entries = [StoredEvent(str(i + 1), b, h) for i, (b, h) in enumerate(sealed)]
    which = data.draw(st.integers(0, len(entries) - 1))
    body = bytearray(entries[which].body)
    pos = data.draw(st.integers(0, len(body) - 1))
    new = data.draw(st.integers(0, 255).filter(lambda b: b != body[pos]))
    body[pos] = new
    entries[which] = StoredEvent(entries[which].entry_id, bytes(body), entries[which].hash)
    report = verify_chain(entries, head=(len(sealed), sealed[-1][1]))
    assert not report.ok
    assert report.entry_id == entries[which].entry_id


def test_events_sealed_after_the_head_was_read_are_not_judged() -> None:
    """A live log grows while it is checked: verify stops at the head it started from."""
    drafts = [draft("call.allowed", at_ms=i, actor="a") for i in range(5)]
    sealed = seal(GENESIS, 1, drafts)
    entries = [StoredEvent(str(i + 1), b, h) for i, (b, h) in enumerate(sealed)]
    head_then = (3, entries[2].hash)
    report = verify_chain(entries, head=head_then)
    assert report.ok and report.count == 3
    wrong_head = verify_chain(entries[:3], head=(3, "f" * 64))
    assert wrong_head.problem == "the newest event does not match the head the store keeps"
