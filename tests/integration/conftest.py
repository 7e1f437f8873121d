"""Fixtures shared by the store tests: one contract, both stores, a clock that moves on demand."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gatekeeper.store import MemoryStore, RedisStore, Store
from gatekeeper.testing import ManualClock
from tests.aclkit import RoleSplitStore
from tests.aiokit import AsyncFace
from tests.conftest import RedisServer
from tests.storekit import MANUAL_LEASE
from tests.trustkit import dep  # noqa: F401  (a fixture for the trust-boundary suites)

#: Modules whose store tests also run on each store's async face (``-aio`` ids).
ON_BOTH_FACES = {
    "test_store_contract.py",
    "test_store_queries.py",
    "test_respond.py",
    "test_store_leases.py",
}


#: Modules whose store tests also run on a Redis Cluster and a Sentinel-watched primary.
ON_EVERY_REDIS = {
    "test_store_contract.py",
    "test_store_queries.py",
    "test_store_leases.py",
    "test_audit_archive.py",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The ``-aio`` stores run only in :data:`ON_BOTH_FACES` (the contract, not every user);
    the cluster and Sentinel ones only in :data:`ON_EVERY_REDIS`."""
    keep, drop = [], []
    for item in items:
        on_aio = "-aio]" in item.nodeid or "-aio-" in item.nodeid
        distributed = "redis-cluster" in item.nodeid or "redis-sentinel" in item.nodeid
        out = (on_aio and item.path.name not in ON_BOTH_FACES) or (
            distributed and item.path.name not in ON_EVERY_REDIS
        )
        (drop if out else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(
    params=[
        "memory",
        "redis",
        "redis-acl",
        "memory-aio",
        "redis-aio",
        "redis-cluster",
        "redis-cluster-acl",
        "redis-cluster-aio",
        "redis-sentinel",
        "redis-sentinel-aio",
    ]
)
def clock_and_store(
    request: pytest.FixtureRequest, redis_prefix: str
) -> Iterator[tuple[ManualClock, Store]]:
    """Each test runs on a MemoryStore, a RedisStore, and a RedisStore split by role under
    the shipped ACL users (see tests/aclkit.py), with a ManualClock; in the contract
    modules (:data:`ON_BOTH_FACES`), also on the async faces of the first two
    (tests/aiokit.py); in :data:`ON_EVERY_REDIS`, also on a RedisStore on a real
    Redis Cluster (both faces, and split by role under the ACL users) and on a
    Sentinel-watched primary (both faces)."""
    clock = ManualClock()
    store: Store
    kind = str(request.param)
    if kind.startswith("memory"):
        store = MemoryStore(clock=clock)
    elif kind == "redis-cluster-acl":
        cluster = request.getfixturevalue("redis_cluster")
        store = RoleSplitStore(cluster.url, redis_prefix, clock)  # type: ignore[assignment]
    elif kind.startswith(("redis-cluster", "redis-sentinel")):
        where = request.getfixturevalue(
            "redis_cluster" if kind.startswith("redis-cluster") else "redis_sentinel"
        )
        store = RedisStore(where.url, prefix=redis_prefix, clock=clock, lease=MANUAL_LEASE)
    elif kind.startswith("redis") and kind != "redis-acl":
        server: RedisServer = request.getfixturevalue("redis_server")
        store = RedisStore(server.url, prefix=redis_prefix, clock=clock, lease=MANUAL_LEASE)
    else:
        server = request.getfixturevalue("redis_server")
        store = RoleSplitStore(server.url, redis_prefix, clock)  # type: ignore[assignment]
    if kind.endswith("-aio"):
        store = AsyncFace(store)  # type: ignore[assignment]
    yield clock, store
    store.close()


@pytest.fixture
def clock(clock_and_store: tuple[ManualClock, Store]) -> ManualClock:
    return clock_and_store[0]


@pytest.fixture
def store(clock_and_store: tuple[ManualClock, Store]) -> Store:
    return clock_and_store[1]
