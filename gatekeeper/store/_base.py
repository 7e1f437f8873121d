"""The ``Store`` protocol: where requests, halts and the audit chain live.

Two faces of one store: ``Store`` (blocking) and ``AsyncStore`` (coroutines),
reached as ``store.aio``. Both enforce the same state machine; every method
that changes a request appends its audit event in the same atomic step.

Audit events are passed in as *drafts* (see :func:`gatekeeper.audit.draft`);
the store seals them into the hash chain.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from .._errors import TransitionRefused
from .._signing import DecisionKeys
from ..audit import StoredEvent, Trimmed
from ..models import ApprovalRequest, Decision, Halt, HaltScope, RequestStatus, Risk

__all__ = [
    "NOTE_MAX_BYTES",
    "REATTACH_ENDS",
    "AsyncStore",
    "Draft",
    "Store",
    "attach_check",
    "check_note",
]

Draft = Mapping[str, Any]

#: The largest value :meth:`Store.remember` keeps: 64 KiB of UTF-8.
NOTE_MAX_BYTES = 64 * 1024


def check_note(value: str, ttl: float) -> bytes:
    """``value`` as UTF-8, once it and ``ttl`` are fit for :meth:`Store.remember`.

    Raises ValueError for a ``ttl`` that is not a finite number above zero,
    or a value over :data:`NOTE_MAX_BYTES`; TypeError for a value that is not
    a str.
    """
    if not isinstance(value, str):
        raise TypeError(f"a note's value must be a str, not {type(value).__name__}")
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not math.isfinite(ttl):
        raise ValueError(f"ttl must be a finite number of seconds above zero, got {ttl!r}")
    if ttl <= 0:
        raise ValueError(f"ttl must be more than zero seconds, got {ttl!r}")
    raw = value.encode("utf-8")
    if len(raw) > NOTE_MAX_BYTES:
        raise ValueError(
            f"a note's value is at most {NOTE_MAX_BYTES:,} bytes (64 KiB) of UTF-8; "
            f"this one is {len(raw):,}"
        )
    return raw


#: Ended requests a call re-attaches to by its key (it gets the same answer again);
#: expired, cancelled and abandoned ones are asked again as a new request.
REATTACH_ENDS = frozenset(
    {
        RequestStatus.EXECUTING,
        RequestStatus.DENIED,
        RequestStatus.RESPONDED,
        RequestStatus.EXECUTED,
        RequestStatus.FAILED,
        RequestStatus.OUTCOME_UNKNOWN,
    }
)


def attach_check(earlier: ApprovalRequest, request: ApprovalRequest) -> None:
    """Refuse to re-attach ``request`` to ``earlier`` unless it is the same call.

    One key, one call: the same tool with the same arguments, as first asked
    (an approver's edit does not count against it). Anything else under a
    used key is refused rather than merged with a decision about another call.
    """
    a, b = earlier.call, request.call
    if a.tool != b.tool or a.args_digest != b.args_digest:
        raise TransitionRefused(
            f"call key {request.key!r} already belongs to request {earlier.id} "
            f"({a.tool} with other arguments); a key names one call",
            request_id=earlier.id,
            status=earlier.status.value,
            action="hold",
        )


@runtime_checkable
class Store(Protocol):
    """Blocking face of a store. ``MemoryStore`` and ``RedisStore`` implement it."""

    #: The deciders' signing key (deciding side only) and the trusted public keys.
    decision_keys: DecisionKeys

    @property
    def aio(self) -> AsyncStore:
        """The async face of this same store."""
        ...

    # -- the hot path -----------------------------------------------------
    def admit(
        self,
        event: Draft,
        *,
        agent: str,
        session_id: str,
        plan: Mapping[str, Any] | None = None,
        verdict: str = "allow",
    ) -> list[dict[str, Any]]:
        """Append ``event`` unless the agent, session or everything is halted.

        Raises :class:`~gatekeeper.AgentHalted` (and appends nothing) when halted.
        ``plan`` (the policy's behaviour plan for the call, ``Plan.wire()``) is
        applied in the same atomic step, for a call whose verdict is
        ``verdict``: when a sequence it completes or a limit it passes is
        stricter than that verdict, nothing is appended and those hits are
        returned (the caller escalates the call); else ``[]``, and an allowed
        call is counted by its limits.
        """
        ...

    def observe(
        self,
        plan: Mapping[str, Any],
        *,
        agent: str,
        mode: str = "attempt",
        request_id: str | None = None,
    ) -> list[dict[str, Any]]:
        """Apply a behaviour plan apart from admitting a call; returns the hits.

        ``attempt``: a call about to be held (sequences move on; limits are
        checked, not consumed); ``release``: counted as running; ``done``: an
        allowed call ended (frees its concurrency slots).
        """
        ...

    def record(self, events: Sequence[Draft]) -> None:
        """Append events now; returns once they are durable."""
        ...

    def record_soon(self, events: Sequence[Draft]) -> None:
        """Queue events that need not hold up the caller (outcomes); see :meth:`flush`."""
        ...

    def flush(self) -> None:
        """Write every queued event and seal the chain."""
        ...

    # -- approval requests ------------------------------------------------
    #: Seconds a caller's lease lasts unless renewed (None: this store keeps no leases).
    lease_ttl: float | None

    def behaviour_usage(self) -> list[tuple[str, str, list[tuple[int, float]]]]:
        """Limit entries by key: ``(agent or "*", key, [(ms, amount), ...])``."""
        ...

    def known_values(self) -> list[tuple[str, str, str, dict[str, Any]]]:
        """Values novelty rules know, per agent: ``(agent, key, digest, entry)``."""
        ...

    def grants_for(self, agent: str) -> tuple[dict[str, str], int | None]:
        """An agent's signed grants by id, and when its own side last demoted it (ms)."""
        ...

    def put_grant(self, agent: str, grant_id: str, signed: str) -> None:
        """Keep a signed grant (deciding side only)."""
        ...

    def drop_grants(self, agent: str, grant_ids: Sequence[str] | None = None) -> list[str]:
        """Remove some (or all) of an agent's grants; the ids removed."""
        ...

    def all_grants(self) -> list[tuple[str, str, str]]:
        """Every agent's grants: ``(agent, id, signed)``."""
        ...

    def forget_known(self, agent: str, key: str, digest: str) -> bool:
        """Make a known value new again for ``agent``; False when it was not known."""
        ...

    def hold(
        self, request: ApprovalRequest, event: Draft, plan: Mapping[str, Any] | None = None
    ) -> ApprovalRequest:
        """Store a new pending request (refused if its agent or session is halted).

        Returns the request as held. When ``request.key`` names a request this
        agent made before (the same call, made again after a restart), that
        one is returned instead — pending or approved with its lease renewed,
        or ended with its answer — and nothing new is stored; an expired,
        cancelled or abandoned one is asked again as ``request``.
        """
        ...

    def renew(self, request_ids: Sequence[str], *, ttl: float) -> dict[str, RequestStatus]:
        """Extend each live request's lease to ``ttl`` seconds from now; their statuses after."""
        ...

    def keep(self, request_id: str) -> None:
        """Renew the lease of ``request_id`` in the background until :meth:`drop`."""
        ...

    def drop(self, request_id: str) -> None:
        """Stop renewing the lease of ``request_id``."""
        ...

    def sweep(self) -> list[ApprovalRequest]:
        """Move every request time has changed (expired, abandoned, outcome unknown); those."""
        ...

    def resolve(
        self, request_id: str, *, by: str, ran: bool, comment: str | None = None
    ) -> ApprovalRequest:
        """outcome_unknown -> executed (``ran``) or failed: a person looked (deciding side)."""
        ...

    def get(self, request_id: str) -> ApprovalRequest:
        """The request as stored (RequestNotFound if there is none)."""
        ...

    def pending(self, *, limit: int = 100, offset: int = 0) -> list[ApprovalRequest]:
        """Pending, unexpired requests, oldest first."""
        ...

    # -- what the console reads -------------------------------------------
    def get_many(self, ids: Sequence[str]) -> list[ApprovalRequest]:
        """The requests with these ids, in the order given; ids with no request are skipped."""
        ...

    def queue(
        self,
        *,
        agent: str | None = None,
        tool: str | None = None,
        risk: Risk | str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[list[ApprovalRequest], int]:
        """One page of the approval queue, and how many requests match in all.

        Pending requests whose expiry is still ahead (by the store's clock),
        most urgent first: risk critical > high > medium > low, then the one
        expiring soonest, then by id. ``agent``, ``tool`` and ``risk`` narrow
        it (an unknown risk name is a ValueError). Expiry is compared to the
        millisecond.

        Example::

            page, total = store.queue(risk="critical", limit=20)
        """
        ...

    def history(
        self,
        *,
        agent: str | None = None,
        tool: str | None = None,
        status: RequestStatus | str | None = None,
        approver: str | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[ApprovalRequest]:
        """Requests of any status, newest first (created_at, then id, both descending).

        ``approver`` matches a request on which that approver cast any vote;
        ``status`` matches the status a transition would find now (a pending
        request past its expiry counts as expired); ``since`` (inclusive) and
        ``until`` (exclusive) bound ``created_at``, to the millisecond. At
        most the newest 10,000 requests in ``[since, until)`` are looked at
        per call (``offset`` included): a rare match further back needs a
        narrower time range.

        Example::

            denied_by_bob = store.history(status="denied", approver="bob")
        """
        ...

    def decide(
        self,
        request_id: str,
        decision: Decision,
        *,
        args: Mapping[str, Any] | None = None,
        request: ApprovalRequest | None = None,
    ) -> ApprovalRequest:
        """Record one approver's vote; with ``args``, the approver edited the arguments.

        ``request``: the request as the caller has just read it, to sign the vote
        with instead of reading it again (the vote signs only what a request never
        changes: its id, agent, session, tool, call id and quorum). The step itself
        judges the request as Redis holds it.
        """
        ...

    def expire(self, request_id: str) -> ApprovalRequest:
        """pending -> expired, once ``expires_at`` has passed."""
        ...

    def cancel(self, request_id: str, *, by: str, reason: str | None = None) -> ApprovalRequest:
        """pending -> cancelled."""
        ...

    def claim(
        self,
        request_id: str,
        *,
        args_digest: str,
        token: str | None = None,
        created_at: dt.datetime | None = None,
        plan: Mapping[str, Any] | None = None,
    ) -> ApprovalRequest:
        """approved -> executing, at most once, unless halted; ``args_digest`` must match.

        ``token`` (one per release attempt) makes a retry idempotent: claiming
        again with the same token returns the claim instead of refusing it.
        ``created_at`` (when the releasing process held the call, from its own
        memory) refuses a request that was waiting when a halt of its scope,
        since lifted, was pulled.
        """
        ...

    def refuse(self, request_id: str, *, why: str) -> ApprovalRequest:
        """approved -> failed without running: the releasing process refused it (tampering)."""
        ...

    def finish(
        self, request_id: str, *, ok: bool, outcome: str | None, token: str | None = None
    ) -> ApprovalRequest:
        """executing (or outcome_unknown) -> executed (ok) or failed.

        ``token``: the claim's; a retry after a lost reply gets the recorded
        outcome back instead of a refusal.
        """
        ...

    def wait(self, request_id: str, timeout: float) -> ApprovalRequest:
        """Block until the request leaves ``pending`` or ``timeout`` seconds pass; return it.

        Back by then whatever the backend does: a read that fails or hangs is
        given up at the deadline, and tried again meanwhile. Raises
        ``StoreUnavailable`` only when no read succeeded by the deadline.
        """
        ...

    def flag_tampering(self, request_id: str, why: str, event: Draft) -> None:
        """Mark ``request_id`` as tampered with (consoles show ``why``); audit ``event``."""
        ...

    # -- kill switch --------------------------------------------------------
    def halt(
        self,
        scope: HaltScope,
        target: str,
        *,
        by: str,
        reason: str | None = None,
        agent: str | None = None,
    ) -> list[str]:
        """Turn the kill switch on; cancel the scope's pending requests; return their ids.

        ``agent`` names the agent whose own gate halts (a ``halt`` verdict). A
        store holding only an agent's credentials can't write other agents'
        keys: it halts that agent at once, and the deciding side's sealer
        spreads a halt of everything or of a session to every agent when it
        seals the ``halt.set`` event.
        """
        ...

    def resume(self, scope: HaltScope, target: str, *, by: str) -> bool:
        """Turn it off again; False if it was not on."""
        ...

    def halts(self) -> list[Halt]:
        """Every halt in force."""
        ...

    # -- audit ----------------------------------------------------------------
    #: How many hash chains the audit log is sealed into (1 unless configured).
    audit_chains: int

    def audit_entries(
        self, *, after: str | None = None, chain: int | None = None
    ) -> Iterator[StoredEvent]:
        """Sealed entries after ``after`` (from the start if None): every chain's, merged
        by when they were sealed, or ``chain``'s alone in chain order.

        ``after`` is an entry id, or a cursor :func:`~gatekeeper.audit.advance_cursor`
        made (each chain's last entry read: what a reader that follows the log keeps).
        """
        ...

    def audit_head(self, chain: int = 0) -> tuple[int, str]:
        """``(seq, hash)`` of ``chain``'s newest sealed event; ``(0, GENESIS)`` when empty."""
        ...

    def prune(self, *, batch: int = 500) -> int:
        """Drop what is left of requests whose record expired (votes, marks, index
        entries); how many requests. The embedded store keeps its requests: 0."""
        ...

    def audit_anchors(self) -> list[tuple[str, str]]:
        """The signed anchors of the chain's head the store keeps, oldest first, as
        ``(id, signed text)`` (the deciding side adds one a minute at most while the
        chain grows). The embedded store keeps none."""
        ...

    def audit_base(self, chain: int = 0) -> Trimmed:
        """The last event of ``chain`` archived and trimmed (``seq`` 0 when none was).

        The entries left chain from it: :func:`~gatekeeper.audit.verify_chain`
        takes it as ``base``.
        """
        ...

    def audit_trim(self, through: StoredEvent, *, at: dt.datetime) -> int:
        """Drop the sealed entries up to and including ``through`` (archived first!).

        ``through`` must be an entry of this store as read, ``at`` its event's
        time; the store keeps both as its :meth:`audit_base`. Answers how many
        entries were dropped; a StoreError if ``through`` is not in the log as
        given. See :func:`gatekeeper._archive.archive_audit`.
        """
        ...

    def audit_page(self, *, before: str | None = None, limit: int = 50) -> list[StoredEvent]:
        """Up to ``limit`` sealed entries, newest first, strictly older than entry id ``before``.

        Queued events are sealed first. Pass the last entry id of one page as
        ``before`` to get the next; ``before`` that is not an entry id of this
        store is a ValueError.

        Example::

            page = store.audit_page(limit=50)
            older = store.audit_page(before=page[-1].entry_id)
        """
        ...

    # -- shared by every console process ---------------------------------------
    def use_once(self, key: str, ttl: float) -> bool:
        """True the first time ``key`` is used within ``ttl`` seconds, False after that.

        For one-time tokens: ``if not store.use_once("login:" + nonce, ttl): refuse``.
        """
        ...

    def hit(self, key: str, window: float) -> int:
        """Count a hit on ``key`` and return the hits in its window, this one included.

        The window opens with the first hit and lasts ``window`` seconds; the
        count starts again after it. For rate limits:
        ``if store.hit("login:" + who, 300) > 5: refuse``.
        """
        ...

    def remember(self, key: str, value: str, ttl: float) -> None:
        """Set note ``key`` to ``value`` for ``ttl`` seconds, for every process to :meth:`recall`.

        Overwrites the note (and its ttl). ``ttl`` must be more than zero and
        ``value`` at most 64 KiB of UTF-8 (ValueError otherwise). For small
        shared state: ``store.remember("slack:" + request.id, ref, 86400)``.
        """
        ...

    def recall(self, key: str) -> str | None:
        """The value of note ``key``, or None if it was never set or its ttl has passed.

        Example: ``ref = store.recall("slack:" + request.id)``.
        """
        ...

    def close(self) -> None:
        """Flush and release connections."""
        ...


@runtime_checkable
class AsyncStore(Protocol):
    """Async face of a store: the same operations as :class:`Store`, as coroutines."""

    async def admit(
        self,
        event: Draft,
        *,
        agent: str,
        session_id: str,
        plan: Mapping[str, Any] | None = None,
        verdict: str = "allow",
    ) -> list[dict[str, Any]]: ...
    async def observe(
        self,
        plan: Mapping[str, Any],
        *,
        agent: str,
        mode: str = "attempt",
        request_id: str | None = None,
    ) -> list[dict[str, Any]]: ...
    async def grants_for(self, agent: str) -> tuple[dict[str, str], int | None]: ...
    async def record(self, events: Sequence[Draft]) -> None: ...
    def record_soon(self, events: Sequence[Draft]) -> None: ...
    async def hold(
        self, request: ApprovalRequest, event: Draft, plan: Mapping[str, Any] | None = None
    ) -> ApprovalRequest: ...
    async def get(self, request_id: str) -> ApprovalRequest: ...
    async def pending(self, *, limit: int = 100, offset: int = 0) -> list[ApprovalRequest]: ...
    async def get_many(self, ids: Sequence[str]) -> list[ApprovalRequest]: ...
    async def queue(
        self,
        *,
        agent: str | None = None,
        tool: str | None = None,
        risk: Risk | str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[list[ApprovalRequest], int]: ...
    async def history(
        self,
        *,
        agent: str | None = None,
        tool: str | None = None,
        status: RequestStatus | str | None = None,
        approver: str | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[ApprovalRequest]: ...
    async def audit_page(
        self, *, before: str | None = None, limit: int = 50
    ) -> list[StoredEvent]: ...
    async def use_once(self, key: str, ttl: float) -> bool: ...
    async def hit(self, key: str, window: float) -> int: ...
    async def remember(self, key: str, value: str, ttl: float) -> None:
        """:meth:`Store.remember`: ``await store.aio.remember("slack:" + rid, ref, 86400)``."""
        ...

    async def recall(self, key: str) -> str | None:
        """:meth:`Store.recall`: ``ref = await store.aio.recall("slack:" + rid)``."""
        ...

    def changes(self) -> AsyncIterator[str]:
        """Ids of requests created or changed, by any process; ``""`` means re-read everything.

        An endless async iterator; stop iterating (or ``aclose()`` it) to
        unsubscribe. The first value is ``""``, once the feed is live: read
        what you show then, and every later change is reported. ``""`` comes
        again whenever changes may have been missed (the Redis subscription
        was re-established, or this reader fell more than 1,000 changes
        behind). One id can come several times; read the request to see what
        changed.

        Example::

            async for rid in store.aio.changes():
                if rid == "":
                    refresh_everything()
                else:
                    refresh(await store.aio.get(rid))
        """
        ...

    async def decide(
        self, request_id: str, decision: Decision, *, args: Mapping[str, Any] | None = None
    ) -> ApprovalRequest: ...
    async def expire(self, request_id: str) -> ApprovalRequest: ...
    async def cancel(
        self, request_id: str, *, by: str, reason: str | None = None
    ) -> ApprovalRequest: ...
    async def claim(
        self,
        request_id: str,
        *,
        args_digest: str,
        token: str | None = None,
        created_at: dt.datetime | None = None,
        plan: Mapping[str, Any] | None = None,
    ) -> ApprovalRequest: ...
    async def refuse(self, request_id: str, *, why: str) -> ApprovalRequest: ...
    async def finish(
        self, request_id: str, *, ok: bool, outcome: str | None, token: str | None = None
    ) -> ApprovalRequest: ...
    async def renew(
        self, request_ids: Sequence[str], *, ttl: float
    ) -> dict[str, RequestStatus]: ...
    def keep(self, request_id: str) -> None: ...
    def drop(self, request_id: str) -> None: ...
    async def sweep(self) -> list[ApprovalRequest]: ...
    async def resolve(
        self, request_id: str, *, by: str, ran: bool, comment: str | None = None
    ) -> ApprovalRequest: ...
    async def wait(self, request_id: str, timeout: float) -> ApprovalRequest: ...
    async def flag_tampering(self, request_id: str, why: str, event: Draft) -> None: ...
    async def halt(
        self,
        scope: HaltScope,
        target: str,
        *,
        by: str,
        reason: str | None = None,
        agent: str | None = None,
    ) -> list[str]: ...
    async def resume(self, scope: HaltScope, target: str, *, by: str) -> bool: ...
    async def halts(self) -> list[Halt]: ...
    async def aclose(self) -> None: ...
