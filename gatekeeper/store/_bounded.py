"""Store steps a caller can stop waiting for: bounded by a deadline on both faces.

A Redis that is frozen (SIGSTOP, a stalled VM) or a reply lost on the way
keeps a command waiting for its whole socket timeout (10 s by default), and
retries add to that. A waiting call must not: it returns at its expiry
whatever Redis does. So the steps of a wait are bounded here:

- :func:`within` (blocking face) runs the step on a daemon worker thread and
  stops waiting for it at the deadline. The step itself goes on until
  redis-py gives up on it; a connection whose read timed out is closed by
  redis-py, never handed to the next command.
- :func:`awithin` (async face) wraps the step in :func:`asyncio.wait_for`;
  the cancelled read makes redis-py close its connection too (it disconnects
  on any exception during a read), so no pooled connection is reused with a
  reply still on its way.

At the deadline both raise :class:`~gatekeeper.StoreUnavailable` with
``applied="unknown"``: the step may have reached Redis, or not.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TypeVar

from .._errors import StoreUnavailable

__all__ = ["READ_FLOOR", "Backoff", "awithin", "within"]

T = TypeVar("T")

#: The least time a waiter's read is given, even at its deadline (a wait of 0 s
#: still reads once).
READ_FLOOR = 0.02

#: Worker threads at most for bounded blocking steps, per process. A step
#: stuck on a frozen Redis holds one until its socket timeout; steps beyond
#: these wait their turn, and their callers still stop waiting on time.
MOST_WORKERS = 64


class Backoff:
    """Pauses between failed reads of a waiter: 50 ms, doubling, at most ``most`` seconds."""

    def __init__(self, first: float = 0.05, most: float = 1.0) -> None:
        self._first = first
        self._most = most
        self._next = first

    def reset(self) -> None:
        self._next = self._first

    def next(self) -> float:
        pause = self._next
        self._next = min(self._next * 2, self._most)
        return pause


class _Workers:
    """Daemon threads running blocking steps whose callers may stop waiting for them.

    Daemon threads, unlike ``concurrent.futures``' workers, do not hold the
    interpreter at exit while a step waits on a frozen Redis.
    """

    def __init__(self, most: int) -> None:
        self._most = most
        self._jobs: queue.SimpleQueue[tuple[Future[object], Callable[[], object]]] = (
            queue.SimpleQueue()
        )
        self._idle = threading.Semaphore(0)  # one token per worker waiting for a job
        self._lock = threading.Lock()
        self._count = 0

    def submit(self, fn: Callable[[], T]) -> Future[T]:
        future: Future[T] = Future()
        self._jobs.put((future, fn))  # type: ignore[arg-type]  # one queue for every T
        if not self._idle.acquire(blocking=False):
            with self._lock:
                if self._count < self._most:
                    self._count += 1
                    threading.Thread(target=self._work, name="gatekeeper-step", daemon=True).start()
        return future

    def _work(self) -> None:
        while True:
            future, fn = self._jobs.get()
            if future.set_running_or_notify_cancel():  # False: its caller gave up already
                try:
                    future.set_result(fn())
                except BaseException as exc:  # handed to the caller, whatever it is
                    future.set_exception(exc)
            self._idle.release()


_workers = _Workers(MOST_WORKERS)


def _late(seconds: float) -> StoreUnavailable:
    return StoreUnavailable(
        f"the store did not answer within {max(seconds, 0.0):.2f} s", applied="unknown"
    )


def within(seconds: float, step: Callable[[], T]) -> T:
    """``step()``, or :class:`StoreUnavailable` once ``seconds`` pass without its answer."""
    future = _workers.submit(step)
    try:
        return future.result(timeout=max(seconds, 0.0))
    except FutureTimeout:
        future.cancel()  # not started yet: it never will be
        raise _late(seconds) from None


async def awithin(seconds: float, step: Awaitable[T]) -> T:
    """``await step``, or :class:`StoreUnavailable` once ``seconds`` pass without its answer."""
    try:
        return await asyncio.wait_for(step, max(seconds, 0.0))
    except asyncio.TimeoutError:
        raise _late(seconds) from None
