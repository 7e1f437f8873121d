"""``MemoryStore``: the embedded store for one process (demo, notebooks, tests)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from .._clock import Clock, SystemClock
from .._errors import AgentHalted, RequestNotFound, StoreError, TransitionRefused
from .._signing import DecisionKeys
from .._votes import sign_resume, sign_vote
from ..audit import GENESIS, StoredEvent, Trimmed, check_event_ids, draft, parse_cursor, seal
from ..logs import get_logger
from ..models import ApprovalRequest, Decision, Halt, HaltScope, RequestStatus, Risk, halt_key
from . import _machine
from . import _memory_queries as queries
from ._base import REATTACH_ENDS, AsyncStore, Draft, attach_check, check_note
from ._behaviour import BehaviourState
from ._changes import offer_change
from ._halts import halted_message, ms
from ._memory_async import AsyncMemoryStore

__all__ = ["MemoryStore"]


#: How many sealed event ids a MemoryStore remembers, to chain a repeated draft once.
_IDS_KEPT = 100_000

#: Sealed audit events a MemoryStore keeps by default (see ``max_events``).
MAX_EVENTS = 100_000

log = get_logger("gatekeeper.store")


class MemoryStore:
    """Everything in this process's memory, guarded by one lock.

    Same state machine and audit chain as :class:`~gatekeeper.store.RedisStore`;
    nothing survives the process, and other processes can't see it.

    Its audit log is bounded: past ``max_events`` sealed events (``None``: no
    bound), the oldest tenth is written to the ``archive`` directory, when
    one is given (an empty directory of its own: the files ``gatekeeper
    audit verify --archive`` checks), then dropped from memory; without an
    archive they are dropped (logged once). If the archive can't be written
    they stay in memory (logged) until it can. The chain left verifies from
    the last event dropped (:meth:`audit_base`).

    Example::

        store = MemoryStore()
        gate = Gatekeeper(policy=policy, store=store)
    """

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        decision_keys: DecisionKeys | None = None,
        max_events: int | None = MAX_EVENTS,
        archive: str | os.PathLike[str] | None = None,
    ) -> None:
        if max_events is not None and max_events < 10:
            raise ValueError(f"max_events must be at least 10 or None, got {max_events!r}")
        self.max_events = max_events
        self.archive = archive
        if archive is not None:
            from .._archive import archive_files

            if archive_files(archive):
                raise ValueError(
                    f"the audit archive {os.fspath(archive)!r} already holds a chain: each "
                    "embedded store starts a chain of its own, so give it an empty directory "
                    "(one per process and run)"
                )
        self._base = Trimmed(0, GENESIS, None)
        self._dropped_told = False
        self.clock = clock or SystemClock()
        #: Votes and resumes are signed and checked here too (a key of this
        #: process's own by default), so both stores run one release path.
        self.decision_keys = decision_keys or DecisionKeys.ephemeral()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._requests: dict[str, ApprovalRequest] = {}
        self._halts: dict[str, Halt] = {}
        self._entries: list[StoredEvent] = []
        self._drafts: list[Mapping[str, Any]] = []
        self._sealed_ids: dict[str, None] = {}  # the newest _IDS_KEPT, oldest first
        self._head: tuple[int, str] = (0, GENESIS)
        self._async_waiters: dict[str, list[Callable[[], None]]] = {}
        self._claims: dict[str, str] = {}
        self._finishers: dict[str, str] = {}  # request id -> token of the finish that ended it
        self._keys: dict[tuple[str, str], str] = {}  # (agent, idempotency key) -> request id
        # changes() readers: the loop each reads on, and its queue.
        self._feeds: set[tuple[asyncio.AbstractEventLoop, asyncio.Queue[str]]] = set()
        self._once: dict[str, dt.datetime] = {}  # key -> when it may be used again
        self._hits: dict[str, tuple[dt.datetime, int]] = {}  # key -> (window end, hits)
        self._notes: dict[str, tuple[dt.datetime, str]] = {}  # key -> (expiry, value)
        self._behaviour = BehaviourState()
        self._plans: dict[str, Mapping[str, Any]] = {}  # request id -> its behaviour plan
        self._grants: dict[str, dict[str, str]] = {}  # agent -> {grant id: signed grant}
        self._aio = AsyncMemoryStore(self)

    @property
    def aio(self) -> AsyncStore:
        return self._aio

    # -- audit ---------------------------------------------------------------
    def _seal_locked(self) -> None:
        if not self._drafts:
            return
        drafts = []
        for d in self._drafts:  # one event per id, as RedisStore's sealer does
            event_id = d.get("id")
            if isinstance(event_id, str):
                if event_id in self._sealed_ids:
                    continue
                self._sealed_ids[event_id] = None
                if len(self._sealed_ids) > _IDS_KEPT:
                    del self._sealed_ids[next(iter(self._sealed_ids))]
            drafts.append(d)
        self._drafts.clear()
        if not drafts:
            return
        seq, prev = self._head
        sealed = seal(prev, seq + 1, drafts)
        for raw, hash_ in sealed:
            seq += 1
            self._entries.append(StoredEvent(str(seq), raw, hash_))
        self._head = (seq, sealed[-1][1])
        if self.max_events is not None and len(self._entries) > self.max_events:
            self._shed_locked(len(self._entries) - self.max_events + self.max_events // 10)

    def _shed_locked(self, count: int) -> None:
        """Archive (when an archive is set) and drop the oldest ``count`` sealed events."""
        gone = self._entries[:count]
        if self.archive is not None:
            from .._archive import ArchiveError, write_archive

            try:
                write_archive(self.archive, gone)
            except ArchiveError as exc:  # keep them: memory grows rather than history lost
                log.error("audit: %s; keeping the events in memory", exc)
                return
        elif not self._dropped_told:
            self._dropped_told = True
            log.warning(
                "audit: the embedded store keeps %d events at most and dropped the oldest %d "
                "(give MemoryStore an archive directory, or use Redis, to keep them)",
                self.max_events,
                count,
            )
        last = gone[-1]
        at = dt.datetime.fromtimestamp(json.loads(last.body)["event"]["at"] / 1000, dt.timezone.utc)
        self._base = Trimmed(int(last.entry_id), last.hash, at)
        del self._entries[:count]

    def prune(self, *, batch: int = 500) -> int:
        return 0  # requests live as long as the process; nothing expires here

    def audit_anchors(self) -> list[tuple[str, str]]:
        return []  # the chain and whoever could rewrite it live in this one process

    def audit_base(self, chain: int = 0) -> Trimmed:
        with self._lock:
            return self._base

    def audit_trim(self, through: StoredEvent, *, at: dt.datetime) -> int:
        with self._lock:
            self._seal_locked()
            first = self._base.seq + 1
            if not re.fullmatch(r"\d+", through.entry_id):
                raise StoreError(f"not an audit entry id of this store: {through.entry_id!r}")
            seq = int(through.entry_id)
            if seq < first:
                return 0
            index = seq - first
            if index >= len(self._entries) or self._entries[index].hash != through.hash:
                raise StoreError(
                    f"audit entry {through.entry_id} is not in the log as archived: nothing trimmed"
                )
            del self._entries[: index + 1]
            self._base = Trimmed(seq, through.hash, at)
            return index + 1

    def record(self, events: Sequence[Draft]) -> None:
        check_event_ids(events)
        with self._lock:
            self._drafts.extend(events)

    record_soon = record

    def flush(self) -> None:
        with self._lock:
            self._seal_locked()

    #: The embedded store seals into one chain.
    audit_chains = 1

    def audit_entries(
        self, *, after: str | None = None, chain: int | None = None
    ) -> Iterator[StoredEvent]:
        if chain not in (None, 0):
            raise ValueError(f"no audit chain {chain} (this store has 1)")
        floor, positions = parse_cursor(after)
        after = positions.get(0, floor)
        with self._lock:
            self._seal_locked()
            entries = list(self._entries)
            first = self._base.seq + 1
        start = max(int(after) + 1 - first, 0) if after else 0
        return iter(entries[start:])

    def audit_head(self, chain: int = 0) -> tuple[int, str]:
        with self._lock:
            self._seal_locked()
            return self._head

    def audit_page(self, *, before: str | None = None, limit: int = 50) -> list[StoredEvent]:
        """Sealed entries newest first, strictly older than entry id ``before`` ("1", "2", ...)."""
        if before is not None and not re.fullmatch(r"\d+", before):
            raise ValueError(f"not an audit entry id: {before!r}")
        with self._lock:
            self._seal_locked()
            first = self._base.seq + 1
            end = len(self._entries)
            if before is not None:
                end = min(int(before) - first, end)
            start = max(end - max(limit, 0), 0)
            page = self._entries[start:end] if end > 0 else []
        return page[::-1]

    # -- shared by every console --------------------------------------------------
    def use_once(self, key: str, ttl: float) -> bool:
        """True the first time ``key`` is used within ``ttl`` seconds (by this store's clock)."""
        now = self.clock.now()
        with self._lock:
            _forget_past(self._once, now, lambda until: until)
            until = self._once.get(key)
            if until is not None and now < until:
                return False
            self._once[key] = now + dt.timedelta(seconds=ttl)
            return True

    def hit(self, key: str, window: float) -> int:
        """Count a hit on ``key``; the hits in its current window, this one included."""
        now = self.clock.now()
        with self._lock:
            _forget_past(self._hits, now, lambda entry: entry[0])
            ends, count = self._hits.get(key, (now, 0))
            if now >= ends:
                ends, count = now + dt.timedelta(seconds=window), 0
            self._hits[key] = (ends, count + 1)
            return count + 1

    def remember(self, key: str, value: str, ttl: float) -> None:
        """Set note ``key`` to ``value`` for ``ttl`` seconds (by this store's clock).

        Example: ``store.remember("slack:" + request.id, ref, 86400)``.
        """
        check_note(value, ttl)
        now = self.clock.now()
        with self._lock:
            _forget_past(self._notes, now, lambda entry: entry[0])
            self._notes[key] = (now + dt.timedelta(seconds=ttl), value)

    def recall(self, key: str) -> str | None:
        """The value of note ``key``; None if never set or past its ttl.

        Example: ``ref = store.recall("slack:" + request.id)``.
        """
        now = self.clock.now()
        with self._lock:
            entry = self._notes.get(key)
            if entry is None:
                return None
            expires, value = entry
            if now >= expires:
                del self._notes[key]
                return None
            return value

    # -- halts -----------------------------------------------------------------
    def _halted_locked(self, agent: str, session_id: str) -> Halt | None:
        halts = self._halts
        if not halts:
            return None
        return halts.get("all") or halts.get(f"agent:{agent}") or halts.get(f"session:{session_id}")

    def admit(
        self,
        event: Draft,
        *,
        agent: str,
        session_id: str,
        plan: Mapping[str, Any] | None = None,
        verdict: str = "allow",
    ) -> list[dict[str, Any]]:
        check_event_ids([event])
        with self._lock:
            halt = self._halted_locked(agent, session_id)
            if halt is None:
                hits: list[dict[str, Any]] = []
                if plan is not None:
                    hits, escalated = self._behaviour.apply(
                        agent, plan, "admit", self._now_ms(), verdict=verdict
                    )
                    if escalated:
                        return hits
                self._drafts.append(event)
                return hits  # those of shadow-mode entries, if any
        raise AgentHalted(halted_message(halt), scope=halt.key, tool=event.get("tool"))

    def observe(
        self,
        plan: Mapping[str, Any],
        *,
        agent: str,
        mode: str = "attempt",
        request_id: str | None = None,
    ) -> list[dict[str, Any]]:
        with self._lock:
            hits, _ = self._behaviour.apply(
                agent, plan, mode, self._now_ms(), request_id=request_id
            )
            return hits

    def _now_ms(self) -> int:
        return int(self.clock.now().timestamp() * 1000)

    def grants_for(self, agent: str) -> tuple[dict[str, str], int | None]:
        """The agent's signed grants by id, and when its own side last demoted it (ms)."""
        with self._lock:
            return dict(self._grants.get(agent, {})), self._behaviour.demoted.get(agent)

    def put_grant(self, agent: str, grant_id: str, signed: str) -> None:
        with self._lock:
            self._grants.setdefault(agent, {})[grant_id] = signed

    def drop_grants(self, agent: str, grant_ids: Sequence[str] | None = None) -> list[str]:
        with self._lock:
            held = self._grants.get(agent, {})
            ids = list(held) if grant_ids is None else list(grant_ids)
            return [gid for gid in ids if held.pop(gid, None) is not None]

    def all_grants(self) -> list[tuple[str, str, str]]:
        with self._lock:
            return [
                (agent, gid, signed)
                for agent, held in sorted(self._grants.items())
                for gid, signed in sorted(held.items())
            ]

    def known_values(self) -> list[tuple[str, str, str, dict[str, Any]]]:
        """What each agent has done that a novelty rule watches (``gatekeeper known``).

        ``(agent, key, digest, {"s": shown, "at": ms, "c": call id})``.
        """
        with self._lock:
            return self._behaviour.known_values()

    def forget_known(self, agent: str, key: str, digest: str) -> bool:
        """Make a known value new again for ``agent`` (its next call asks a person)."""
        with self._lock:
            return self._behaviour.forget(agent, key, digest)

    def behaviour_usage(self) -> list[tuple[str, str, list[tuple[int, float]]]]:
        """Limit entries by key (``gatekeeper limits``): ``(agent or "*", key, entries)``."""
        with self._lock:
            return self._behaviour.usage()

    def halt(
        self,
        scope: HaltScope,
        target: str,
        *,
        by: str,
        reason: str | None = None,
        agent: str | None = None,
    ) -> list[str]:
        now = self.clock.now()
        target = "*" if scope is HaltScope.ALL else target
        record = Halt(scope=scope, target=target, by=by, reason=reason, at=now)
        cancelled: list[str] = []
        with self._lock:
            self._halts[record.key] = record
            covered = sorted(
                r.id
                for r in self._requests.values()
                if r.status is RequestStatus.PENDING and _covers(record, r)
            )
            # Same order and content as halt.lua: the halt first, naming the pending
            # requests it covers, then one cancellation (or expiry) per request.
            data: dict[str, Any] = {"scope": scope.value, "target": target, "reason": reason}
            if covered:
                data["pending"] = covered
            self._drafts.append(
                draft(
                    "halt.set",
                    at_ms=ms(now),
                    actor=by,
                    agent=target if scope is HaltScope.AGENT else None,
                    session_id=target if scope is HaltScope.SESSION else None,
                    data=data,
                )
            )
            for rid in covered:
                step = _machine.cancel(
                    self._requests[rid], now, by=by, reason=f"halted: {reason or 'kill switch'}"
                )
                self._apply_locked(step)
                if step.refused is None:
                    cancelled.append(rid)
        return cancelled

    def resume(self, scope: HaltScope, target: str, *, by: str) -> bool:
        now = self.clock.now()
        target = "*" if scope is HaltScope.ALL else target
        signer = self.decision_keys.signer()
        field = halt_key(scope, target)
        with self._lock:
            removed = self._halts.pop(field, None)
            if removed is not None:
                signed = sign_resume(signer, field, by, ms(now), ms(removed.at))
                self._drafts.append(
                    draft(
                        "halt.cleared",
                        at_ms=ms(now),
                        actor=by,
                        agent=target if scope is HaltScope.AGENT else None,
                        session_id=target if scope is HaltScope.SESSION else None,
                        data={"scope": scope.value, "target": target, "signed": signed},
                    )
                )
        return removed is not None

    def halts(self) -> list[Halt]:
        with self._lock:
            return list(self._halts.values())

    # -- requests ----------------------------------------------------------------
    #: No leases here: every caller lives in this process, and dies with the store.
    lease_ttl: float | None = None

    def hold(
        self, request: ApprovalRequest, event: Draft, plan: Mapping[str, Any] | None = None
    ) -> ApprovalRequest:
        check_event_ids([event])
        with self._lock:
            halt = self._halted_locked(request.call.agent, request.call.session_id)
            if halt is not None:
                raise AgentHalted(halted_message(halt), scope=halt.key, tool=request.call.tool)
            existing = self._requests.get(request.id)
            if existing is not None and existing.call.id == request.call.id:
                return existing  # the same call retried: already held
            if existing is not None:
                raise TransitionRefused(
                    f"request {request.id} already exists",
                    request_id=request.id,
                    status=self._requests[request.id].status.value,
                    action="hold",
                )
            if request.key is not None:
                slot = (request.call.agent, request.key)
                earlier = self._requests.get(self._keys.get(slot, ""))
                if earlier is not None:
                    attached = self._attach_locked(earlier, request)
                    if attached is not None:
                        return attached
                self._keys[slot] = request.id
            self._requests[request.id] = request
            if plan is not None:
                self._plans[request.id] = plan
            self._drafts.append(event)
            self._announce_locked(request.id)
            return request

    def _attach_locked(
        self, earlier: ApprovalRequest, request: ApprovalRequest
    ) -> ApprovalRequest | None:
        """The request ``request`` re-attaches to (its key's), or None to hold it anew."""
        now = self.clock.now()
        self._apply_locked(_machine.lapse(earlier, now))
        earlier = self._requests[earlier.id]
        attach_check(earlier, request)
        if earlier.status in (RequestStatus.PENDING, RequestStatus.APPROVED):
            if request.lease_until is not None:
                self._apply_locked(_machine.renew(earlier, now, until=request.lease_until))
            return self._requests[earlier.id]
        if earlier.status in REATTACH_ENDS:
            return earlier
        return None  # expired, cancelled or abandoned: ask again

    def renew(self, request_ids: Sequence[str], *, ttl: float) -> dict[str, RequestStatus]:
        """Extend each live request's lease to ``ttl`` s from now; returns each one's status after.

        A request whose lease already lapsed is not revived (it reads
        ``abandoned`` or ``outcome_unknown``); an unknown id is left out.
        """
        now = self.clock.now()
        until = now + dt.timedelta(seconds=ttl)
        out: dict[str, RequestStatus] = {}
        with self._lock:
            for rid in request_ids:
                req = self._requests.get(rid)
                if req is None:
                    continue
                step = _machine.renew(req, now, until=until)
                self._apply_locked(step)
                out[rid] = step.request.status
        return out

    def keep(self, request_id: str) -> None:
        """Renew ``request_id``'s lease while this process waits for it or runs it (no-op here)."""

    def drop(self, request_id: str) -> None:
        """Stop renewing ``request_id``'s lease (no-op here: see :meth:`keep`)."""

    def sweep(self) -> list[ApprovalRequest]:
        """Apply what time did: expired, abandoned, outcome unknown. Returns the changed ones."""
        now = self.clock.now()
        changed = []
        with self._lock:
            for req in list(self._requests.values()):
                if req.status.live:
                    step = _machine.lapse(req, now)
                    if step.changed:
                        self._apply_locked(step)
                        changed.append(step.request)
        return changed

    def get(self, request_id: str) -> ApprovalRequest:
        with self._lock:
            return self._get_locked(request_id)

    def _get_locked(self, request_id: str) -> ApprovalRequest:
        try:
            return self._requests[request_id]
        except KeyError:
            raise RequestNotFound(request_id) from None

    def registered_agents(self) -> int:
        """How many agents have made requests here (``gatekeeper_registered_agents``)."""
        with self._lock:
            return len({r.call.agent for r in self._requests.values()})

    def pending(self, *, limit: int = 100, offset: int = 0) -> list[ApprovalRequest]:
        now = self.clock.now()
        with self._lock:
            live = [
                r
                for r in self._requests.values()
                if r.status is RequestStatus.PENDING and r.expires_at > now
            ]
        live.sort(key=lambda r: (r.created_at, r.id))
        return live[offset : offset + limit]

    def get_many(self, ids: Sequence[str]) -> list[ApprovalRequest]:
        """The requests with these ids, in order; unknown ids are skipped."""
        with self._lock:
            found = (self._requests.get(rid) for rid in ids)
            return [r for r in found if r is not None]

    def queue(
        self,
        *,
        agent: str | None = None,
        tool: str | None = None,
        risk: Risk | str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[list[ApprovalRequest], int]:
        """Pending, unexpired requests, most urgent first, and the number matching in all."""
        now = self.clock.now()
        with self._lock:
            requests = list(self._requests.values())
        return queries.queue(
            requests, now, agent=agent, tool=tool, risk=risk, limit=limit, offset=offset
        )

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
        """Requests of any status, newest first, filtered (see :meth:`Store.history`).

        Looks at no more than the newest 10,000 requests in ``[since, until)``
        per call, as :class:`~gatekeeper.store.RedisStore` does.
        """
        now = self.clock.now()
        with self._lock:
            requests = list(self._requests.values())
        return queries.history(
            requests,
            now,
            agent=agent,
            tool=tool,
            status=status,
            approver=approver,
            since=since,
            until=until,
            limit=limit,
            offset=offset,
        )

    def _apply_locked(self, step: _machine.Step) -> None:
        if step.changed:
            self._requests[step.request.id] = step.request
            if step.request.status.ended:
                self._plans.pop(step.request.id, None)
            self._drafts.extend(step.events)
            self._changed.notify_all()
            for wake in self._async_waiters.get(step.request.id, ()):
                wake()
            self._announce_locked(step.request.id)

    def _announce_locked(self, request_id: str) -> None:
        """Tell every ``changes()`` reader, on its own loop, that a request changed."""
        for feed in list(self._feeds):
            loop, queue = feed
            try:
                loop.call_soon_threadsafe(offer_change, queue, request_id)
            except RuntimeError:  # its loop is closed: nobody reads it any more
                self._feeds.discard(feed)

    def _transition(
        self, request_id: str, fn: Callable[[ApprovalRequest], _machine.Step]
    ) -> ApprovalRequest:
        with self._lock:
            step = fn(self._get_locked(request_id))
            self._apply_locked(step)
        if step.refused is not None:
            raise step.refused
        return step.request

    def decide(
        self,
        request_id: str,
        decision: Decision,
        *,
        args: Mapping[str, Any] | None = None,
        request: ApprovalRequest | None = None,
    ) -> ApprovalRequest:
        now = self.clock.now()  # the request is read under the lock: ``request`` isn't needed
        signer = self.decision_keys.signer()

        def step(req: ApprovalRequest) -> _machine.Step:
            signed = sign_vote(signer, req, decision, args)
            return _machine.decide(req, signed, now, args=args)

        return self._transition(request_id, step)

    def flag_tampering(self, request_id: str, why: str, event: Draft) -> None:
        """Mark ``request_id`` as a target of tampering and audit ``event`` with it."""
        check_event_ids([event])
        with self._lock:
            req = self._requests.get(request_id)
            if req is not None:
                self._requests[request_id] = req.model_copy(update={"tampering": why})
                self._announce_locked(request_id)
            self._drafts.append(event)

    def expire(self, request_id: str) -> ApprovalRequest:
        now = self.clock.now()
        return self._transition(request_id, lambda r: _machine.expire(r, now))

    def cancel(self, request_id: str, *, by: str, reason: str | None = None) -> ApprovalRequest:
        now = self.clock.now()
        return self._transition(request_id, lambda r: _machine.cancel(r, now, by=by, reason=reason))

    def refuse(self, request_id: str, *, why: str) -> ApprovalRequest:
        """approved -> failed without running: this process refused the release."""
        now = self.clock.now()
        return self._transition(request_id, lambda r: _machine.refuse(r, now, why=why))

    def claim(
        self,
        request_id: str,
        *,
        args_digest: str,
        token: str | None = None,
        created_at: dt.datetime | None = None,  # one process: no halt can be lifted behind it
        plan: Mapping[str, Any] | None = None,
    ) -> ApprovalRequest:
        now = self.clock.now()
        with self._lock:
            req = self._get_locked(request_id)
            if (
                token
                and req.status is RequestStatus.EXECUTING
                and self._claims.get(req.id) == token
            ):
                return req  # the same release attempt, asking again
            halt = self._halted_locked(req.call.agent, req.call.session_id)
            if halt is not None and req.status is RequestStatus.APPROVED:
                raise AgentHalted(
                    halted_message(halt), scope=halt.key, tool=req.call.tool, request_id=req.id
                )
            step = _machine.claim(req, now, args_digest=args_digest)
            self._apply_locked(step)
            if step.refused is None and token:
                self._claims[req.id] = token
            if plan is not None and req.id in self._plans:
                self._plans[req.id] = plan  # what runs is what counts (edited arguments)
            kept = self._plans.get(req.id)
            if step.refused is None and step.changed and kept is not None:
                # It runs now: its 'not' steps clear, its limits count it.
                self._behaviour.apply(req.call.agent, kept, "release", self._now_ms())
        if step.refused is not None:
            raise step.refused
        return step.request

    def finish(
        self, request_id: str, *, ok: bool, outcome: str | None, token: str | None = None
    ) -> ApprovalRequest:
        now = self.clock.now()
        with self._lock:
            same = bool(token) and self._claims.get(request_id) == token
            done = bool(token) and self._finishers.get(request_id) == token
            step = _machine.finish(
                self._get_locked(request_id),
                now,
                ok=ok,
                outcome=outcome,
                same_caller=same,
                finished_it=done,
            )
            plan = self._plans.get(request_id)
            self._apply_locked(step)
            if step.refused is None and step.changed and token:
                self._finishers[request_id] = token
            if step.refused is None and step.changed and plan is not None:
                self._behaviour.apply(step.request.call.agent, plan, "done", self._now_ms())
        if step.refused is not None:
            raise step.refused
        return step.request

    def resolve(
        self, request_id: str, *, by: str, ran: bool, comment: str | None = None
    ) -> ApprovalRequest:
        """A person says whether a request of unknown outcome ran (see :meth:`Store.resolve`)."""
        now = self.clock.now()
        return self._transition(
            request_id, lambda r: _machine.resolve(r, now, by=by, ran=ran, comment=comment)
        )

    def wait(self, request_id: str, timeout: float) -> ApprovalRequest:
        with self._changed:
            self._changed.wait_for(
                lambda: self._get_locked(request_id).status.decided, timeout=max(timeout, 0.0)
            )
            return self._get_locked(request_id)

    def close(self) -> None:
        self.flush()


def _forget_past(entries: dict[str, Any], now: dt.datetime, ends: Callable[[Any], Any]) -> None:
    """Drop lapsed entries once there are many, so one-off keys don't pile up."""
    if len(entries) >= 10_000:
        for key in [k for k, v in entries.items() if now >= ends(v)]:
            del entries[key]


def _covers(halt: Halt, req: ApprovalRequest) -> bool:
    if halt.scope is HaltScope.ALL:
        return True
    if halt.scope is HaltScope.AGENT:
        return req.call.agent == halt.target
    return req.call.session_id == halt.target
