"""Keeping the store bounded: leftovers of expired requests dropped, old audit archived.

A request's record expires ``store.retention`` after it ends; what it leaves
behind (signed votes, index entries) is dropped by :meth:`Store.prune`. The
audit stream is bounded by ``audit.keep``: older sealed events are written to
the ``audit.archive`` directory and trimmed (see :mod:`gatekeeper._archive`).
``gatekeeper serve`` does both every ``audit.every`` seconds;
``gatekeeper audit archive`` archives once (from cron, say).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ._archive import ArchiveResult, archive_audit
from .logs import get_logger

if TYPE_CHECKING:
    from ._gate import Gatekeeper

__all__ = ["Keeping", "keep_once", "keeping"]

log = get_logger("gatekeeper.retention")


@dataclass(frozen=True)
class Keeping:
    """What ``gatekeeper serve`` keeps bounded, and how often."""

    archive: str | None
    keep: float
    every: float


def keep_once(gate: Gatekeeper, job: Keeping) -> tuple[int, ArchiveResult | None]:
    """Prune the store, then archive (when an archive is set): (requests pruned, result)."""
    pruned = gate.store.prune()
    if job.archive is None:
        return pruned, None
    cutoff = gate.clock.now() - dt.timedelta(seconds=job.keep)
    result = archive_audit(gate.store, job.archive, older_than=cutoff)
    if result.archived or result.trimmed:
        log.info(
            "audit: archived %d events to %s and trimmed %d (the archive ends at event #%d)",
            result.archived,
            job.archive,
            result.trimmed,
            result.through,
        )
    return pruned, result


async def keeping(gate: Gatekeeper, job: Keeping) -> None:
    """:func:`keep_once` every ``job.every`` seconds until cancelled."""
    while True:
        try:
            await asyncio.to_thread(keep_once, gate, job)
        except Exception:  # outlive a bad moment; say it loudly, it must not go unseen
            log.exception(
                "retention: pruning or archiving failed; trying again in %.0f s", job.every
            )
        await asyncio.sleep(job.every)
