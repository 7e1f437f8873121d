"""The audit sealer of a RedisStore: journal drafts into the hash-chained stream.

Every agent appends to a journal of its own (``{prefix:agent}:journal``), the
deciding side to the deployment's (``{prefix}:journal``). Processes of the
deciding side seal them all, off the callers' path, in one daemon thread per
store; the ``seal`` script's compare-and-set on the chain head and on the
journal's cursor keeps the chain linear and every draft sealed once however
many processes seal at once. Agents never write the chain.

What an agent's journal holds is not taken on trust: a draft must name that
agent, and be of a kind an agent produces (``call.*``, releases, outcomes,
cancellations, expiries, halts, tampering reports) or carry a vote or resume
signed by a trusted decision key. Anything else is sealed as
``audit.refused`` (what it claimed, and why it was refused) and logged as an
error: forged history never enters the chain as history.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .._errors import GatekeeperError, TamperingDetected
from .._signing import RESUME, VOTE, TrustedKeys
from ..audit import GENESIS, draft, encode_draft, seal_encoded
from ..models import HaltScope
from . import _redis_ops as ops
from ._base import Draft

if TYPE_CHECKING:
    from ._redis import RedisStore

__all__ = ["Sealer"]

log = logging.getLogger("gatekeeper.store")


class Sealer:
    """Moves journal drafts into the chained stream, off the callers' path.

    Also writes the events queued with ``record_soon``. Runs in one daemon
    thread per store, started on first use; ``flush`` does the same work now,
    in the calling thread.
    """

    BATCH = 500

    def __init__(self, store: RedisStore, linger: float) -> None:
        self._store = store
        self._linger = linger
        self._queue: deque[Draft] = deque()
        self._kicked = threading.Event()
        self._work = threading.Lock()
        self._start = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopping = False

    def kick(self) -> None:
        if self._thread is None:
            with self._start:
                if self._thread is None and not self._stopping:
                    self._thread = threading.Thread(
                        target=self._loop, name="gatekeeper-audit-sealer", daemon=True
                    )
                    self._thread.start()
        self._kicked.set()

    def enqueue(self, events: Sequence[Draft]) -> None:
        self._queue.extend(events)
        self.kick()

    def _loop(self) -> None:
        backoff = 0.1
        while not self._stopping:
            self._kicked.wait()
            if self._stopping:
                return
            time.sleep(self._linger)  # gather what arrives meanwhile into one batch
            self._kicked.clear()
            try:
                with self._work:
                    # Checked under the lock: once stop() has run, the store's
                    # connections are closed and must not be opened again.
                    if self._stopping:
                        return
                    self._flush_locked()
                backoff = 0.1
            except Exception as exc:
                log.warning("audit sealer could not seal, will retry: %s", exc)
                time.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                self._kicked.set()

    def flush(self) -> None:
        with self._work:
            self._flush_locked()

    def _flush_locked(self) -> None:
        if self._queue:
            drafts = []
            while self._queue:
                drafts.append(self._queue.popleft())
            try:
                self._store.record(drafts)
            except GatekeeperError:
                self._queue.extendleft(reversed(drafts))
                raise
        if not self._store.seals:
            return
        store, k = self._store, self._store.keys
        journals: list[tuple[str | None, str, str]] = [(None, k.journal, k.trimmed)]
        for name in store._agents():
            a = k.of(name)
            journals.append((name, a.journal, a.trimmed))
        for owner, journal, trimmed in journals:
            while self._seal_batch(owner, journal, trimmed):
                pass

    def _seal_batch(self, agent: str | None, journal: str, trimmed: str) -> bool:
        """Seal up to BATCH drafts of one journal; True if there may be more."""
        store, k = self._store, self._store.keys
        field = "c:" + (journal if agent is None else agent)
        seq, hash_, cursor = store._call(lambda: store.client.hmget(k.head, "seq", "hash", field))
        c = int(cursor) if cursor else 0
        raw = store._run(ops.trim_read(journal, trimmed, c, self.BATCH))
        if not raw:
            return False
        head_seq = int(seq) if seq else 0
        head_hash = ops.text(hash_) if hash_ else GENESIS
        encoded = [admit_draft(r, agent, store.decision_keys.trusted) for r in raw]
        sealed = seal_encoded(head_hash, head_seq + 1, encoded)
        argv: list[Any] = [head_hash, len(sealed), head_seq + len(sealed), field, c]
        for body, h in sealed:
            argv += [body, h]
        script = store._scripts["seal"]
        sealed_now = store._call(lambda: script(keys=[k.audit, k.head], args=argv))
        if sealed_now and agent is not None:
            self._spread_halts(agent, encoded)
        # Sealed or not (another process sealed first), read again.
        return True

    def _spread_halts(self, agent: str, encoded: Sequence[bytes]) -> None:
        """An agent halted everything or a session: apply it to every agent now."""
        for body in encoded:
            if b'"halt.set"' not in body:
                continue
            event = json.loads(body)
            data = event.get("data") or {}
            scope = data.get("scope")
            if event.get("kind") != "halt.set" or scope not in ("all", "session"):
                continue
            target = str(data.get("target") or "*")
            reason = data.get("reason")
            self._store.halt(
                HaltScope(scope),
                target,
                # Who halted is the journal's agent, whatever the event claims.
                by=f"agent:{agent} ({str(event.get('actor'))[:100]})",
                reason=reason if isinstance(reason, str) else None,
            )

    def stop(self) -> None:
        try:
            with self._work:
                try:
                    self._flush_locked()
                finally:
                    self._stopping = True
        finally:
            self._kicked.set()


#: What an agent's own gate writes to its journal, unsigned.
AGENT_KINDS = frozenset(
    {
        "call.allowed",
        "call.denied",
        "call.held",
        "call.refused",
        "call.executed",
        "call.failed",
        "call.observed",
        "request.released",
        "request.executed",
        "request.failed",
        "request.cancelled",
        "request.expired",
        "request.tampering",
        "halt.set",
        "channel.failed",
    }
)
#: Kinds that an agent's journal may hold only with a trusted signature.
SIGNED_KINDS = {
    "request.vote": VOTE,
    "request.approved": VOTE,
    "request.denied": VOTE,
    "halt.cleared": RESUME,
}


def admit_draft(raw: bytes, agent: str | None, trusted: TrustedKeys) -> bytes:
    """The canonical draft to seal for a journal entry of ``agent`` (None: the deciders').

    An agent's entry that it could not have written honestly becomes an
    ``audit.refused`` draft saying what it claimed and why it was refused.
    """
    if agent is None:
        return raw[1:] if raw[:1] == b"=" else encode_draft(_parse_draft(raw))
    body = raw[1:] if raw[:1] == b"=" else raw
    value = _parse_draft(body)
    why = _refusal(value, agent, trusted)
    if why is None:
        return body if raw[:1] == b"=" else encode_draft(value)
    log.error("audit: refused a journal entry of agent %r: %s", agent, why)
    text = raw.decode("utf-8", "replace")
    return encode_draft(
        draft(
            "audit.refused",
            at_ms=int(time.time() * 1000),
            actor="sealer",
            agent=agent,
            request_id=rid if isinstance(rid := value.get("request_id"), str) else None,
            data={
                "problem": why,
                "claimed_kind": str(value.get("kind"))[:100],
                "sha256": hashlib.sha256(raw).hexdigest(),
                "raw": text[:2_000],
            },
        )
    )


def _refusal(value: dict[str, Any], agent: str, trusted: TrustedKeys) -> str | None:
    kind = value.get("kind")
    if kind == "audit.unreadable":
        return None  # kept, flagged, as for the deciders' journal
    if value.get("agent") != agent:
        return f"names agent {str(value.get('agent'))[:100]!r} in agent {agent!r}'s journal"
    if kind in AGENT_KINDS:
        return None
    purpose = SIGNED_KINDS.get(str(kind))
    if purpose is None:
        return f"an agent does not write {str(kind)[:100]!r} events"
    data = value.get("data")
    signed = data.get("signed") if isinstance(data, dict) else None
    if not isinstance(signed, str):
        return f"a {kind} event must carry a signed record, and this one carries none"
    try:
        body = trusted.verify(purpose, signed)
    except TamperingDetected as exc:
        return f"its signed record fails its check: {exc}"
    if purpose == VOTE:
        wants_approve = kind != "request.denied"
        same = (
            body.get("request_id") == value.get("request_id")
            and body.get("agent") == agent
            and body.get("approve") is wants_approve
            and value.get("actor") == f"approver:{body.get('approver')}"
        )
        if not same:
            return "its signed vote is for another request, approver or outcome"
    return None


def _parse_draft(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw)
        if isinstance(value, dict) and isinstance(value.get("kind"), str):
            return value
    except ValueError:
        pass
    # Never drop what the journal holds: keep it, flagged, in the chain.
    text = raw.decode("utf-8", "replace")
    return draft(
        "audit.unreadable",
        at_ms=int(time.time() * 1000),
        actor="system",
        data={"raw": text[:10_000]},
    )
