"""Fixtures shared by the store tests: one contract, both stores, a clock that moves on demand."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gatekeeper.store import MemoryStore, RedisStore, Store
from gatekeeper.testing import ManualClock
from tests.aclkit import RoleSplitStore
from tests.conftest import RedisServer
from tests.trustkit import dep  # noqa: F401  (a fixture for the trust-boundary suites)


@pytest.fixture(params=["memory", "redis", "redis-acl"])
def clock_and_store(
    request: pytest.FixtureRequest, redis_prefix: str
) -> Iterator[tuple[ManualClock, Store]]:
    """Each test runs on a MemoryStore, a RedisStore, and a RedisStore split by role under
    the shipped ACL users (see tests/aclkit.py), with a ManualClock."""
    clock = ManualClock()
    store: Store
    if request.param == "memory":
        store = MemoryStore(clock=clock)
    elif request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        store = RedisStore(server.url, prefix=redis_prefix, clock=clock)
    else:
        server = request.getfixturevalue("redis_server")
        store = RoleSplitStore(server.url, redis_prefix, clock)  # type: ignore[assignment]
    yield clock, store
    store.close()


@pytest.fixture
def clock(clock_and_store: tuple[ManualClock, Store]) -> ManualClock:
    return clock_and_store[0]


@pytest.fixture
def store(clock_and_store: tuple[ManualClock, Store]) -> Store:
    return clock_and_store[1]
