"""The fault suite: each test gets a redis-server of its own to freeze, kill and restart.

Not the session's shared server: these tests stop theirs with SIGSTOP, kill it
with SIGKILL and start it again on the same port from its append-only file
(``appendfsync always``, so what a reply confirmed survives the kill).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.conftest import _free_port


class FaultyRedis:
    """A redis-server of one test's own, with AOF on, that the test freezes, kills, restarts."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.exit("redis-server is not installed (see tests/conftest.py)", returncode=3)
        self.binary = binary
        self.dir = workdir
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.frozen = False
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        """Start it (again): same port, same directory, the data of its append-only file."""
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.dir),
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url, socket_timeout=1)
        deadline = time.monotonic() + 10
        try:
            while True:
                try:
                    client.ping()
                    return
                except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
                    if time.monotonic() > deadline or self.proc.poll() is not None:
                        raise RuntimeError("redis-server did not start") from None
                    time.sleep(0.02)
        finally:
            client.close()

    def _signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, sig)

    def freeze(self) -> None:
        """SIGSTOP: the process stops; its sockets stay open, nothing answers."""
        self._signal(signal.SIGSTOP)
        self.frozen = True

    def thaw(self) -> None:
        """SIGCONT: it runs again, and works through what was sent meanwhile."""
        self._signal(signal.SIGCONT)
        self.frozen = False

    def kill(self) -> None:
        """SIGKILL: gone at once, without writing anything more."""
        assert self.proc is not None
        self._signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        if self.frozen:
            self.thaw()
        self.proc.terminate()
        self.proc.wait(timeout=10)


@pytest.fixture
def faulty_redis(tmp_path: Path) -> Iterator[FaultyRedis]:
    server = FaultyRedis(tmp_path)
    yield server
    server.stop()


@dataclass
class Outcome:
    """How one guarded call ended, and when (wall clock, as expiry is)."""

    n: int
    face: str
    returned_at: float
    result: Any = None
    error: BaseException | None = None

    @property
    def request_id(self) -> str | None:
        return getattr(self.error, "request_id", None)


class Callers:
    """Guarded calls made at once: ``sync`` threads and ``async`` tasks on a loop of their own."""

    def __init__(self) -> None:
        self.outcomes: list[Outcome] = []
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self.loop = asyncio.new_event_loop()
        self._loop_thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._loop_thread.start()
        self._futures: list[Any] = []

    def _done(self, outcome: Outcome) -> None:
        with self._lock:
            self.outcomes.append(outcome)

    def call(self, n: int, func: Callable[[int], Any]) -> None:
        """``func(n)`` on a thread of its own (the blocking face)."""

        def run() -> None:
            try:
                result = func(n)
            except BaseException as exc:
                self._done(Outcome(n, "sync", time.time(), error=exc))
            else:
                self._done(Outcome(n, "sync", time.time(), result=result))

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        self._threads.append(thread)

    def acall(self, n: int, func: Callable[[int], Coroutine[Any, Any, Any]]) -> None:
        """``await func(n)`` as a task on the callers' loop (the async face)."""

        async def run() -> None:
            try:
                result = await func(n)
            except Exception as exc:
                self._done(Outcome(n, "async", time.time(), error=exc))
            else:
                self._done(Outcome(n, "async", time.time(), result=result))

        self._futures.append(asyncio.run_coroutine_threadsafe(run(), self.loop))

    def join(self, timeout: float) -> list[Outcome]:
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(deadline - time.monotonic(), 0))
        for future in self._futures:
            future.result(timeout=max(deadline - time.monotonic(), 0.01))
        assert not any(t.is_alive() for t in self._threads), "a blocking call never returned"
        return sorted(self.outcomes, key=lambda o: (o.face, o.n))

    def close(self, *stores: Any) -> None:
        async def shut_down() -> None:
            for store in stores:
                await store.aio.aclose()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shut_down(), self.loop).result(timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._loop_thread.join(5)
        self.loop.close()


def wait_until(what: str, check: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait for ``check()`` to hold (a state to reach, not a time to pass)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def assert_settled(store: Any) -> None:
    """What every fault scenario ends with, read by a deciding store once the faults are over.

    - After a sweep, no request is pending, approved or executing without a
      live lease: each one left has a caller renewing it, or it was moved to
      abandoned / outcome unknown (or expired).
    - No audit event id was sealed twice, and the hash chain verifies.
    """
    import datetime as dt

    from gatekeeper.audit import parse_event, verify_chain

    store.sweep()
    now = dt.datetime.now(dt.timezone.utc)
    stuck = [
        (r.id, r.status.value, r.lease_until)
        for r in store.history(limit=10_000)
        if r.status.live and (r.lease_until is None or r.lease_until <= now)
    ]
    assert stuck == [], f"live requests without a live lease after the sweep: {stuck}"
    store.flush()
    entries = list(store.audit_entries())
    ids = [parse_event(e.body, e.hash).id for e in entries]
    twice = sorted({i for i in ids if i and ids.count(i) > 1})
    assert twice == [], f"audit event ids sealed twice: {twice}"
    report = verify_chain(entries)
    assert report.ok, report.problem
