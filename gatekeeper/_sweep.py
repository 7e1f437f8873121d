"""The sweep: requests whose caller is gone, made visible and announced.

A waiting or running caller renews its request's lease (see
:mod:`gatekeeper.store._leases`). When a caller dies, every transition of its
request already treats it as abandoned; the sweep moves the requests nobody
touches again, tells the channels (the Slack message and the console then
say so) and logs what a person should do:

- ``abandoned`` (it was pending or approved): nothing ran and nothing will;
  the agent asks again if it still needs the call.
- ``outcome_unknown`` (it was running): the tool may or may not have run.
  Someone checks the system the tool acts on and records what they found
  with ``gatekeeper resolve ID --ran`` or ``--not-run``.

``gatekeeper serve`` sweeps every :data:`SWEEP_EVERY` seconds; ``gatekeeper
sweep`` sweeps once (for deployments without the console, e.g. from cron).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from ._text import inline
from .logs import get_logger, request_fields
from .models import ApprovalRequest, RequestStatus

if TYPE_CHECKING:
    from ._gate import Gatekeeper

__all__ = ["SWEEP_EVERY", "advice", "sweep", "sweeping"]

log = get_logger("gatekeeper.sweep")

#: Seconds between two sweeps of ``gatekeeper serve``.
SWEEP_EVERY = 5.0


def advice(req: ApprovalRequest) -> str:
    """What a person should do about ``req``, in one line (empty when nothing)."""
    s = req.status
    if s is RequestStatus.OUTCOME_UNKNOWN:
        return (
            f"check whether {inline(req.call.tool, 60)} ran, then record it: "
            f"gatekeeper resolve {req.id} --ran (or --not-run) --as NAME -m 'what you found'"
        )
    if s is RequestStatus.ABANDONED:
        return "nothing ran and nothing will; the agent asks again if it still needs it"
    if s is RequestStatus.APPROVED:
        return "approved, not yet started by its agent"
    if s is RequestStatus.EXECUTING:
        return "running now"
    return ""


def sweep(gate: Gatekeeper) -> list[ApprovalRequest]:
    """Sweep ``gate``'s store once; tell the channels and log each request it moved."""
    moved = gate.store.sweep()
    gate.telemetry.swept(moved)
    for req in moved:
        gate._tell("update", req)
        level = logging.ERROR if req.status is RequestStatus.OUTCOME_UNKNOWN else logging.WARNING
        log.log(
            level,
            "request %s (%s by agent %s) is %s: %s",
            req.id,
            inline(req.call.tool, 60),
            inline(req.call.agent, 60),
            req.status.value,
            advice(req),
            extra=request_fields(req),
        )
    return moved


async def sweeping(gate: Gatekeeper, every: float = SWEEP_EVERY) -> None:
    """Sweep every ``every`` seconds until cancelled (``gatekeeper serve``'s background task)."""
    while True:
        try:
            await asyncio.to_thread(sweep, gate)
        except Exception:  # the sweep must outlive a bad moment (Redis restarting, ...)
            log.exception("sweep failed; trying again in %.0f s", every)
        await asyncio.sleep(every)
