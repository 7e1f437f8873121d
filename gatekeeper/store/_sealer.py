"""The audit sealer of a RedisStore: journal drafts into the hash-chained stream.

Each process seals what it (and anyone) journaled, off the callers' path, in
one daemon thread per store; the ``seal`` script's compare-and-set on the
chain head keeps the chain linear however many processes seal at once.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .._errors import GatekeeperError
from ..audit import GENESIS, draft, encode_draft, seal_encoded
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
        while self._seal_batch():
            pass

    def _seal_batch(self) -> bool:
        """Seal up to BATCH journal drafts; True if there may be more."""
        store, k = self._store, self._store.keys

        def read() -> list[Any]:
            # One MULTI/EXEC: the drafts and the head must be one snapshot, or a
            # seal by another process in between could have us seal drafts twice.
            pipe = store.client.pipeline(transaction=True)
            pipe.lrange(k.journal, 0, self.BATCH - 1)
            pipe.hmget(k.head, "seq", "hash")
            replies: list[Any] = pipe.execute()
            return replies

        raw, (seq, hash_) = store._call(read)
        if not raw:
            return False
        head_seq = int(seq) if seq else 0
        head_hash = hash_.decode() if hash_ else GENESIS
        encoded = [r[1:] if r[:1] == b"=" else encode_draft(_parse_draft(r)) for r in raw]
        sealed = seal_encoded(head_hash, head_seq + 1, encoded)
        argv: list[Any] = [head_hash, len(sealed), head_seq + len(sealed)]
        for body, h in sealed:
            argv += [body, h]
        script = store._scripts["seal"]
        store._call(lambda: script(keys=[k.journal, k.audit, k.head], args=argv))
        # Sealed or not (another process sealed first), read again.
        return True

    def stop(self) -> None:
        try:
            with self._work:
                try:
                    self._flush_locked()
                finally:
                    self._stopping = True
        finally:
            self._kicked.set()


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
