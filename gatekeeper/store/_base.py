"""The ``Store`` protocol: where requests, halts and the audit chain live.

Two faces of one store: ``Store`` (blocking) and ``AsyncStore`` (coroutines),
reached as ``store.aio``. Both enforce the same state machine; every method
that changes a request appends its audit event in the same atomic step.

Audit events are passed in as *drafts* (see :func:`gatekeeper.audit.draft`);
the store seals them into the hash chain.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from ..audit import StoredEvent
from ..models import ApprovalRequest, Decision, Halt, HaltScope

__all__ = ["AsyncStore", "Draft", "Store"]

Draft = Mapping[str, Any]


@runtime_checkable
class Store(Protocol):
    """Blocking face of a store. ``MemoryStore`` and ``RedisStore`` implement it."""

    @property
    def aio(self) -> AsyncStore:
        """The async face of this same store."""
        ...

    # -- the hot path -----------------------------------------------------
    def admit(self, event: Draft, *, agent: str, session_id: str) -> None:
        """Append ``event`` unless the agent, session or everything is halted.

        Raises :class:`~gatekeeper.AgentHalted` (and appends nothing) when halted.
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
    def hold(self, request: ApprovalRequest, event: Draft) -> None:
        """Create a pending request and append ``event``, unless halted (then AgentHalted)."""
        ...

    def get(self, request_id: str) -> ApprovalRequest:
        """The request as stored (RequestNotFound if there is none)."""
        ...

    def pending(self, *, limit: int = 100, offset: int = 0) -> list[ApprovalRequest]:
        """Pending, unexpired requests, oldest first."""
        ...

    def decide(
        self, request_id: str, decision: Decision, *, args: Mapping[str, Any] | None = None
    ) -> ApprovalRequest:
        """Record one approver's vote; with ``args``, the approver edited the arguments."""
        ...

    def expire(self, request_id: str) -> ApprovalRequest:
        """pending -> expired, once ``expires_at`` has passed."""
        ...

    def cancel(self, request_id: str, *, by: str, reason: str | None = None) -> ApprovalRequest:
        """pending -> cancelled."""
        ...

    def claim(self, request_id: str, *, args_digest: str) -> ApprovalRequest:
        """approved -> executing, at most once, unless halted; ``args_digest`` must match."""
        ...

    def finish(self, request_id: str, *, ok: bool, outcome: str | None) -> ApprovalRequest:
        """executing -> executed (ok) or failed."""
        ...

    def wait(self, request_id: str, timeout: float) -> ApprovalRequest:
        """Block until the request leaves ``pending`` or ``timeout`` seconds pass; return it."""
        ...

    # -- kill switch --------------------------------------------------------
    def halt(
        self, scope: HaltScope, target: str, *, by: str, reason: str | None = None
    ) -> list[str]:
        """Turn the kill switch on; cancel the scope's pending requests; return their ids."""
        ...

    def resume(self, scope: HaltScope, target: str, *, by: str) -> bool:
        """Turn it off again; False if it was not on."""
        ...

    def halts(self) -> list[Halt]:
        """Every halt in force."""
        ...

    # -- audit ----------------------------------------------------------------
    def audit_entries(self, *, after: str | None = None) -> Iterator[StoredEvent]:
        """Sealed entries in chain order, after entry id ``after`` (from the start if None)."""
        ...

    def audit_head(self) -> tuple[int, str]:
        """``(seq, hash)`` of the newest sealed event; ``(0, GENESIS)`` when empty."""
        ...

    def close(self) -> None:
        """Flush and release connections."""
        ...


@runtime_checkable
class AsyncStore(Protocol):
    """Async face of a store: the same operations as :class:`Store`, as coroutines."""

    async def admit(self, event: Draft, *, agent: str, session_id: str) -> None: ...
    async def record(self, events: Sequence[Draft]) -> None: ...
    def record_soon(self, events: Sequence[Draft]) -> None: ...
    async def hold(self, request: ApprovalRequest, event: Draft) -> None: ...
    async def get(self, request_id: str) -> ApprovalRequest: ...
    async def pending(self, *, limit: int = 100, offset: int = 0) -> list[ApprovalRequest]: ...
    async def decide(
        self, request_id: str, decision: Decision, *, args: Mapping[str, Any] | None = None
    ) -> ApprovalRequest: ...
    async def expire(self, request_id: str) -> ApprovalRequest: ...
    async def cancel(
        self, request_id: str, *, by: str, reason: str | None = None
    ) -> ApprovalRequest: ...
    async def claim(self, request_id: str, *, args_digest: str) -> ApprovalRequest: ...
    async def finish(
        self, request_id: str, *, ok: bool, outcome: str | None
    ) -> ApprovalRequest: ...
    async def wait(self, request_id: str, timeout: float) -> ApprovalRequest: ...
    async def halt(
        self, scope: HaltScope, target: str, *, by: str, reason: str | None = None
    ) -> list[str]: ...
    async def resume(self, scope: HaltScope, target: str, *, by: str) -> bool: ...
    async def halts(self) -> list[Halt]: ...
    async def aclose(self) -> None: ...
