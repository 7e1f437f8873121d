"""The change feed behind ``store.aio.changes()``, shared by both stores.

Each reader has a bounded queue of request ids. A reader that falls behind
does not hold up the store or the other readers: when its queue is full, what
it held is dropped and :data:`RESYNC` takes its place, telling it to re-read
everything it shows.
"""

from __future__ import annotations

import asyncio

__all__ = ["FEED_QUEUE", "RESYNC", "offer_change"]

#: Yielded by ``changes()`` instead of an id: something may have been missed, re-read all.
RESYNC = ""

#: Changes a reader may fall behind by before it is told to resync instead.
FEED_QUEUE = 1000


def offer_change(queue: asyncio.Queue[str], rid: str) -> None:
    """Put ``rid`` on a reader's queue; when the queue is full, leave only RESYNC there.

    Ids queued before a RESYNC add nothing to it (the reader re-reads all), so
    a full queue is emptied rather than trimmed by one.
    """
    if queue.full():
        while not queue.empty():
            queue.get_nowait()
        rid = RESYNC
    queue.put_nowait(rid)
