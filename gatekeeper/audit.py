"""The hash chain behind the audit log: sealing events and checking the chain.

Each event is stored as the canonical JSON of its body,
``{"event": {...}, "prev_hash": P, "seq": N}``, next to
``hash = sha256(prev_hash || body)``; the first event's ``prev_hash`` is 64
zeros. Editing an event breaks its hash; inserting or
deleting one breaks the next event's ``prev_hash`` or the sequence numbers;
cutting the tail is caught against the head the store keeps beside the chain.

Example::

    report = verify_chain(store.audit_entries())
    if not report.ok:
        print(report.problem)
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from ._canonical import canonical_json, without_surrogates
from ._errors import StoreError
from .models import AuditEvent, utc

__all__ = [
    "EVENT_ID",
    "EVENT_ID_WINDOW",
    "GENESIS",
    "ChainReport",
    "StoredEvent",
    "Trimmed",
    "check_event_ids",
    "draft",
    "encode_draft",
    "event_id_problem",
    "parse_event",
    "seal",
    "seal_encoded",
    "verify_chain",
]

GENESIS = "0" * 64

#: Seconds a sealed event's id is remembered: a draft written again within
#: this long (a retried write whose first reply was lost) is not chained twice.
EVENT_ID_WINDOW = 3600

#: What an event id may be: 1 to 64 ASCII letters, digits, ``_`` and ``-``
#: (:func:`draft` makes 20 hex digits). Ids name events in the store's memory
#: of sealed ids, so their size and shape are bounded.
EVENT_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


class StoredEvent(NamedTuple):
    """One entry as the store holds it: its position id, body bytes and hash.

    A tuple of strings and bytes: cheap for the garbage collector to scan,
    though not free. CPython untracks only exact tuples of such values, never
    a NamedTuple's, so a long in-memory log still lengthens full collections
    (MemoryStore's pauses grow with its log; bounding it is a later release's).
    """

    entry_id: str
    body: bytes
    hash: str


class Trimmed(NamedTuple):
    """The last event archived and trimmed from a store: the base the rest chains from.

    ``(0, GENESIS, None)`` while nothing was trimmed. ``at`` is that event's time.
    """

    seq: int
    hash: str
    at: dt.datetime | None


@dataclass(frozen=True)
class ChainReport:
    """What :func:`verify_chain` found. ``problem`` is None when the chain is whole."""

    count: int
    head_hash: str
    problem: str | None = None
    entry_id: str | None = None
    seq: int | None = None
    #: Where the check began when the oldest events were archived and trimmed
    #: and not checked with it (``count`` counts from there); None: from #1.
    trimmed: Trimmed | None = None
    #: Signed anchors of the head the chain was found to hold (see AnchorWatch).
    anchors: int = 0
    #: With several audit chains, each one's own report (chain 0 first).
    chains: tuple[ChainReport, ...] = ()

    @property
    def ok(self) -> bool:
        return self.problem is None


def draft(
    kind: str,
    *,
    at_ms: int,
    actor: str,
    request_id: str | None = None,
    call_id: str | None = None,
    tool: str | None = None,
    agent: str | None = None,
    session_id: str | None = None,
    data: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """An event not yet sealed into the chain (no seq, prev_hash or hash).

    Each draft gets an ``id`` now, before any attempt to store it: a write
    retried after a lost reply may reach the store twice, and the sealer
    chains one event per id (see :data:`EVENT_ID_WINDOW`).
    """
    return {
        "id": secrets.token_hex(10),
        "at": at_ms,
        "kind": kind,
        "actor": actor,
        "request_id": request_id,
        "call_id": call_id,
        "tool": tool,
        "agent": agent,
        "session_id": session_id,
        "data": dict(data) if data else {},
    }


def event_id_problem(d: Mapping[str, Any]) -> str | None:
    """What is wrong with the id of draft ``d``; None if it is fine, or has none (a script's)."""
    event_id = d.get("id")
    if event_id is None:
        return None
    if isinstance(event_id, str) and EVENT_ID.fullmatch(event_id):
        return None
    shown = repr(event_id)
    shown = shown if len(shown) <= 80 else shown[:77] + "..."
    return f"its id {shown} is not 1 to 64 characters of A-Z, a-z, 0-9, _ and -"


def check_event_ids(events: Iterable[Mapping[str, Any]]) -> None:
    """Refuse drafts with a malformed id before any is written (the store calls it).

    Raises :class:`~gatekeeper.StoreError` naming the event; nothing of the
    batch is written then.
    """
    for d in events:
        problem = event_id_problem(d)
        if problem is not None:
            kind = str(d.get("kind"))[:100]
            raise StoreError(f"refused to record the audit event {kind!r}: {problem}")


_DRAFT_FIELDS = ("kind", "actor", "request_id", "call_id", "tool", "agent", "session_id")


def encode_draft(d: Mapping[str, Any]) -> bytes:
    """The canonical JSON of a draft: every field present, ``at`` in epoch milliseconds.

    A lone surrogate anywhere in the draft (UTF-8 can't encode one) is written
    as ``<U+D800>``, so one such event can't stop a batch from being sealed.
    """
    data = d.get("data") or {}
    body: dict[str, Any] = {k: d.get(k) for k in _DRAFT_FIELDS}
    event_id = d.get("id")
    if isinstance(event_id, str):  # events of scripts, and of older releases, have none
        body["id"] = event_id
    body["at"] = int(d["at"])
    body["data"] = data if isinstance(data, dict) else {}
    try:
        return canonical_json(body)
    except UnicodeEncodeError:
        return canonical_json(_without_surrogates(body))


def _without_surrogates(value: Any) -> Any:
    """``value`` with every string in it (keys too) put through ``without_surrogates``."""
    if isinstance(value, str):
        return without_surrogates(value)
    if isinstance(value, dict):
        return {_without_surrogates(k): _without_surrogates(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_without_surrogates(v) for v in value]
    return value


def seal_encoded(
    prev_hash: str, next_seq: int, encoded: Sequence[bytes]
) -> list[tuple[bytes, str]]:
    """Chain already-encoded drafts after ``prev_hash``: the body and hash of each.

    The body is ``{"event": E, "prev_hash": P, "seq": S}`` in canonical JSON;
    with ``E`` canonical already it is built by concatenation, no parsing.
    """
    out: list[tuple[bytes, str]] = []
    for offset, event in enumerate(encoded):
        body = b"".join(
            (
                b'{"event":',
                event,
                b',"prev_hash":"',
                prev_hash.encode("ascii"),
                b'","seq":',
                str(next_seq + offset).encode("ascii"),
                b"}",
            )
        )
        prev_hash = hashlib.sha256(prev_hash.encode("ascii") + body).hexdigest()
        out.append((body, prev_hash))
    return out


def seal(
    prev_hash: str, next_seq: int, drafts: Sequence[Mapping[str, Any]]
) -> list[tuple[bytes, str]]:
    """Chain ``drafts`` after ``prev_hash``: the body bytes and hash of each, in order."""
    return seal_encoded(prev_hash, next_seq, [encode_draft(d) for d in drafts])


def parse_event(body: bytes, hash_: str) -> AuditEvent:
    """The :class:`AuditEvent` stored as ``body`` and ``hash_``."""
    outer = json.loads(body)
    event = dict(outer["event"])
    event["at"] = utc(int(event["at"]))
    return AuditEvent.model_validate(
        {**event, "seq": outer["seq"], "prev_hash": outer["prev_hash"], "hash": hash_}
    )


def verify_chain(
    entries: Iterable[StoredEvent],
    *,
    head: tuple[int, str] | None = None,
    base: tuple[int, str] = (0, GENESIS),
) -> ChainReport:
    """Walk the chain from its start; report the first entry that breaks it.

    ``head`` is the ``(seq, hash)`` the store kept of the newest event when
    the check began; when given, the walk stops there (events sealed while
    it runs are not judged), and a chain that ends early (deleted tail) or
    whose last event is not the head is reported too.

    ``base`` is the ``(seq, hash)`` of the last event before ``entries``
    begin: events archived and trimmed from the store (see
    :mod:`gatekeeper.audit_archive`). ``count`` then counts from there.
    """
    prev = base[1]
    expected_seq = base[0] + 1
    count = 0
    for entry in entries:
        if head is not None and expected_seq > head[0]:
            break  # sealed after the head was read: for the next check
        try:
            body = json.loads(entry.body)
            seq = body["seq"]
            claimed_prev = body["prev_hash"]
        except (ValueError, KeyError, TypeError, RecursionError):
            return ChainReport(count, prev, "entry is not a readable event", entry.entry_id)
        if hashlib.sha256(prev.encode("ascii") + entry.body).hexdigest() != entry.hash:
            if claimed_prev != prev or seq != expected_seq:
                problem = (
                    f"entry does not follow event {expected_seq - 1}: an event was inserted "
                    "or deleted before it"
                    if seq != expected_seq
                    else "entry's prev_hash does not match the previous event"
                )
            else:
                problem = "entry was edited: its hash does not match its content"
            return ChainReport(count, prev, problem, entry.entry_id, seq)
        if seq != expected_seq:
            return ChainReport(
                count, prev, f"sequence jumps from {expected_seq - 1} to {seq}", entry.entry_id, seq
            )
        if canonical_json(body) != entry.body:
            return ChainReport(count, prev, "entry is not in canonical form", entry.entry_id, seq)
        prev = entry.hash
        expected_seq += 1
        count += 1
    if head is not None and base[0] + count < head[0]:
        return ChainReport(
            count,
            prev,
            f"the log ends at event {base[0] + count} but the store's head says {head[0]}: "
            "events were removed from the end",
            None,
            head[0],
        )
    if head is not None and head[0] > 0 and prev != head[1]:
        return ChainReport(
            count, prev, "the newest event does not match the head the store keeps", None, head[0]
        )
    return ChainReport(count, prev)


def anchor_heads(body: Mapping[str, Any]) -> list[tuple[int, str]]:
    """The ``(seq, hash)`` of each chain an anchor's body names (one chain: its own)."""
    if "chains" in body:
        return [(int(seq), str(h)) for seq, h in body["chains"]]
    return [(int(body["seq"]), str(body["hash"]))]


class AnchorWatch:
    """Checks a chain against signed anchors of its head while it is walked.

    An anchor (``gatekeeper audit anchor``, and the deciding side's sealer
    once a minute) is ``{"seq": N, "hash": H, "at": ms}`` signed with the
    deciders' key: the chain must still hold event N with hash H. A log cut
    short or rewritten after an anchor fails the check even if whoever did it
    rewrote the head the store keeps to match.

    Example::

        watch = AnchorWatch(bodies)
        report = verify_chain(watch.wrap(store.audit_entries()), head=head)
        problem = watch.problem(report, base=store.audit_base())
    """

    def __init__(self, bodies: Iterable[Mapping[str, Any]]) -> None:
        self._want: dict[int, set[str]] = {}
        for body in bodies:
            self._want.setdefault(int(body["seq"]), set()).add(str(body["hash"]))
        self._seen: dict[int, str] = {}

    def wrap(self, entries: Iterable[StoredEvent]) -> Iterable[StoredEvent]:
        for entry in entries:
            try:
                seq = int(json.loads(entry.body)["seq"])
            except (ValueError, KeyError, TypeError, OverflowError, RecursionError):
                seq = -1  # unreadable: verify_chain reports it
            if seq in self._want:
                self._seen[seq] = entry.hash
            yield entry

    def problem(
        self, report: ChainReport, *, base: tuple[int, str] = (0, GENESIS)
    ) -> tuple[int, str | None]:
        """``(anchors that hold, problem)`` once the walk is over; problem None when all hold.

        Anchors of events before ``base`` (archived, not walked) are checked
        only where they name the base itself.
        """
        last = base[0] + report.count
        held = 0
        for seq in sorted(self._want):
            hashes = self._want[seq]
            if seq > last:
                return held, (
                    f"TRUNCATED: a signed anchor says the log held {seq} events, it holds "
                    f"{last}: events were removed from the end"
                )
            if seq < base[0]:
                continue  # archived: checked with --archive
            found = base[1] if seq == base[0] else self._seen.get(seq)
            if found is None or hashes != {found}:
                return held, (
                    f"REWRITTEN: event #{seq} is not the one a signed anchor names "
                    f"(head {sorted(hashes)[0][:16]}): the log was rewritten after it"
                )
            held += 1
        return held, None


# -- entries of several chains ------------------------------------------------------------------
# A deployment may seal into several chains (``store.audit_chains``), one per
# group of agents, each verifiable alone. An entry of chain 0 keeps its
# stream id as its entry id (``1717171717171-0``); one of chain c > 0 is
# ``c/1717171717171-0``. Readers merge the chains by when each event was
# sealed (stream id), then chain number.

_CHAINED = re.compile(r"(?:(\d{1,3})/)?(\d+)(?:-(\d+))?")


def entry_chain(entry_id: str) -> tuple[int, str]:
    """``(chain, stream id)`` of an entry id (a ValueError if it is not one)."""
    m = _CHAINED.fullmatch(entry_id)
    if not m:
        raise ValueError(f"not an audit entry id: {entry_id!r}")
    return int(m.group(1) or 0), entry_id.rpartition("/")[2]


def chained_id(chain: int, stream_id: str) -> str:
    """The entry id of stream entry ``stream_id`` of ``chain``."""
    return stream_id if chain == 0 else f"{chain}/{stream_id}"


def entry_order(entry_id: str) -> tuple[int, int, int]:
    """Where an entry falls among every chain's: (sealed ms, sequence, chain)."""
    chain, sid = entry_chain(entry_id)
    ms_, _, seq = sid.partition("-")
    return int(ms_), int(seq or 0), chain


def sealed_ms(entry_id: str) -> int | None:
    """When a Redis entry was sealed (ms), from its id; None for ids that don't say."""
    try:
        _, sid = entry_chain(entry_id)
    except ValueError:
        return None
    ms_, sep, _ = sid.partition("-")
    return int(ms_) if sep else None


def advance_cursor(cursor: str | None, entry_id: str) -> str:
    """The cursor for ``audit_entries(after=...)`` once ``entry_id`` was read after
    ``cursor``: each chain's last entry read (clocks of a cluster's masters differ, so
    one entry id can't say where every chain was), with the entry id it began after."""
    floor, positions = parse_cursor(cursor)
    chain, sid = entry_chain(entry_id)
    positions[chain] = sid
    return (floor or "") + ";" + ",".join(f"{c}:{positions[c]}" for c in sorted(positions))


def parse_cursor(cursor: str | None) -> tuple[str | None, dict[int, str]]:
    """``(entry id read after first, each chain's last stream id read)`` of a cursor: an
    entry id, or one :func:`advance_cursor` made. A ValueError if it is neither."""
    if not cursor:
        return None, {}
    if ";" not in cursor:
        entry_chain(cursor)
        return cursor, {}
    floor, _, rest = cursor.partition(";")
    if floor:
        entry_chain(floor)
    out: dict[int, str] = {}
    for part in rest.split(",") if rest else []:
        c, _, sid = part.partition(":")
        if not c.isdigit() or "/" in sid or not _CHAINED.fullmatch(sid):
            raise ValueError(f"not an audit cursor: {cursor!r}")
        out[int(c)] = sid
    return floor or None, out
