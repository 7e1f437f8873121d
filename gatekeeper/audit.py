"""The hash chain behind the audit log: sealing events and checking the chain.

Each event is stored as the canonical JSON of its body (every field but
``hash``) next to ``hash = sha256(prev_hash || body)``; the first event's
``prev_hash`` is 64 zeros. Editing an event breaks its hash; inserting or
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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ._canonical import canonical_json
from .models import AuditEvent

__all__ = ["GENESIS", "ChainReport", "StoredEvent", "draft", "parse_event", "seal", "verify_chain"]

GENESIS = "0" * 64


@dataclass(frozen=True)
class StoredEvent:
    """One entry as the store holds it: its position id, body bytes and hash."""

    entry_id: str
    body: bytes
    hash: str


@dataclass(frozen=True)
class ChainReport:
    """What :func:`verify_chain` found. ``problem`` is None when the chain is whole."""

    count: int
    head_hash: str
    problem: str | None = None
    entry_id: str | None = None
    seq: int | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None


def iso_ms(ms: int) -> str:
    """``2026-11-28T07:34:33.123Z`` for milliseconds since the epoch."""
    stamp = dt.datetime.fromtimestamp(ms / 1000, tz=dt.timezone.utc)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


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
    """An event not yet sealed into the chain (no seq, prev_hash or hash)."""
    return {
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


_DRAFT_FIELDS = ("kind", "actor", "request_id", "call_id", "tool", "agent", "session_id")


def seal(
    prev_hash: str, next_seq: int, drafts: Sequence[Mapping[str, Any]]
) -> list[tuple[bytes, str]]:
    """Chain ``drafts`` after ``prev_hash``: the body bytes and hash of each, in order."""
    out: list[tuple[bytes, str]] = []
    for offset, d in enumerate(drafts):
        at = d["at"]
        data = d.get("data") or {}
        body: dict[str, Any] = {k: d.get(k) for k in _DRAFT_FIELDS}
        body["at"] = iso_ms(at) if isinstance(at, int) else str(at)
        body["data"] = data if isinstance(data, dict) else {}
        body["seq"] = next_seq + offset
        body["prev_hash"] = prev_hash
        raw = canonical_json(body)
        prev_hash = hashlib.sha256(prev_hash.encode("ascii") + raw).hexdigest()
        out.append((raw, prev_hash))
    return out


def parse_event(body: bytes, hash_: str) -> AuditEvent:
    """The :class:`AuditEvent` stored as ``body`` and ``hash_``."""
    return AuditEvent.model_validate({**json.loads(body), "hash": hash_})


def verify_chain(
    entries: Iterable[StoredEvent], *, head: tuple[int, str] | None = None
) -> ChainReport:
    """Walk the chain from its start; report the first entry that breaks it.

    ``head`` is the ``(seq, hash)`` the store keeps of the newest event; when
    given, a chain that ends early (deleted tail) is reported too.
    """
    prev = GENESIS
    expected_seq = 1
    count = 0
    for entry in entries:
        try:
            body = json.loads(entry.body)
            seq = body["seq"]
            claimed_prev = body["prev_hash"]
        except (ValueError, KeyError, TypeError):
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
    if head is not None and head != (count, prev) and not (head[0] == 0 and count == 0):
        return ChainReport(
            count,
            prev,
            f"the log ends at event {count} but the store's head says {head[0]}: "
            "events were removed from the end",
            None,
            head[0],
        )
    return ChainReport(count, prev)
