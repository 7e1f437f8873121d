"""A run that ends while gatekeeper holds a call, carried across processes and resumed.

:class:`~gatekeeper_pydantic_ai.GatekeeperToolset` with ``resumable=True`` defers
a held call that is still pending (``ApprovalRequired``) with metadata naming its
gatekeeper request; the run ends with ``DeferredToolRequests``. Whoever resumes
the run — any process with the message history and the requests — builds the
``DeferredToolResults`` with :func:`deferred_results`, from what the store says.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
from collections.abc import Mapping
from typing import Any

from pydantic_ai.tools import DeferredToolRequests, DeferredToolResults, ToolApproved

from gatekeeper import (
    ApprovalPending,
    ApprovalRequest,
    Gatekeeper,
    RequestNotFound,
    RequestStatus,
)

__all__ = ["REQUEST_ID", "call_key_for", "deferred_results", "deferred_results_sync"]

#: The key of the gatekeeper request id in a deferred call's metadata.
REQUEST_ID = "gatekeeper_request_id"


def call_key_for(tool_call_id: str) -> str:
    """The call key for a tool call id (a digest of it if it is longer than a key may be)."""
    if len(tool_call_id) <= 256 and tool_call_id.strip():
        return tool_call_id
    return "sha256:" + hashlib.sha256(tool_call_id.encode("utf-8", "replace")).hexdigest()


def waiting_metadata(exc: ApprovalPending) -> dict[str, Any]:
    """A deferred call's metadata: the gatekeeper request it waits for (JSON)."""
    expires = getattr(exc.expires_at, "isoformat", None)
    return {
        REQUEST_ID: exc.request_id,
        "tool": exc.tool,
        "expires_at": expires() if expires is not None else None,
        "description": exc.message,
    }


async def deferred_results(
    gate: Gatekeeper, requests: DeferredToolRequests
) -> DeferredToolResults | None:
    """The results to resume a run whose held calls people decided; None while all still wait.

    ``requests`` is the ``DeferredToolRequests`` a run of a resumable
    :class:`~gatekeeper_pydantic_ai.GatekeeperToolset` ended with (read back
    from wherever it was kept). For each call it deferred, the store is asked
    about the request named in the call's metadata. While every one is still
    pending, this returns None: there is nothing to resume yet. Otherwise it
    returns a ``ToolApproved()`` for each of them — "call the tool again" —
    and the toolset, which puts the call to the gate under its tool call id,
    then does what the people decided, as the store holds it and the
    deciders signed it: runs an approved call (once, with any edit), gives
    the model a denial, or defers a call still pending once more.

    Approvals and calls in ``requests`` that are not gatekeeper's are left
    out: add their results (``results.approvals[...] = ...``) before resuming.

    Example::

        results = await deferred_results(gate, requests)
        if results is not None:
            result = await agent.run(message_history=messages, deferred_tool_results=results)
    """
    held = _held(requests)
    found = await asyncio.gather(*(_status(gate, rid) for rid in held.values()))
    return _results(gate, held, found)


def deferred_results_sync(
    gate: Gatekeeper, requests: DeferredToolRequests
) -> DeferredToolResults | None:
    """:func:`deferred_results` on the store's blocking face."""
    held = _held(requests)
    return _results(gate, held, [_status_sync(gate, rid) for rid in held.values()])


def _held(requests: DeferredToolRequests) -> dict[str, str]:
    """Tool call id -> gatekeeper request id, for the approvals gatekeeper deferred."""
    held: dict[str, str] = {}
    for call in requests.approvals:
        meta = requests.metadata.get(call.tool_call_id)
        rid = meta.get(REQUEST_ID) if isinstance(meta, Mapping) else None
        if isinstance(rid, str):
            held[call.tool_call_id] = rid
    if not held:
        raise ValueError(
            "none of these deferred calls was deferred by a resumable GatekeeperToolset "
            f"(no {REQUEST_ID!r} in their metadata)"
        )
    return held


def _results(
    gate: Gatekeeper, held: dict[str, str], found: list[ApprovalRequest | None]
) -> DeferredToolResults | None:
    now = gate.clock.now()
    if all(_waiting(req, now) for req in found):
        return None
    return DeferredToolResults(approvals={call_id: ToolApproved() for call_id in held})


def _waiting(req: ApprovalRequest | None, now: dt.datetime) -> bool:
    """Still waiting for people: pending and not past its expiry (then resuming tells the model)."""
    return req is not None and req.status is RequestStatus.PENDING and req.expires_at > now


async def _status(gate: Gatekeeper, request_id: str) -> ApprovalRequest | None:
    try:
        return await gate.store.aio.get(request_id)
    except RequestNotFound:  # gone (its record's retention ran out): the toolset asks anew
        return None


def _status_sync(gate: Gatekeeper, request_id: str) -> ApprovalRequest | None:
    try:
        return gate.get(request_id)
    except RequestNotFound:
        return None
