"""Notes (``remember`` / ``recall``): one contract for MemoryStore and RedisStore, both faces.

Memory notes expire by the store's clock (the ManualClock here); Redis notes
expire in Redis's own time, as ``use_once`` and ``hit`` keys do.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator

import pytest
import redis

from gatekeeper import StoreError, StoreUnavailable
from gatekeeper.store import MemoryStore, RedisStore, Store
from gatekeeper.store._base import NOTE_MAX_BYTES
from gatekeeper.store._redis import RetryPolicy
from gatekeeper.testing import ManualClock
from tests.conftest import RedisServer


def _let_time_pass(clock: ManualClock, store: Store, seconds: float) -> None:
    """Memory notes go by the store's clock; Redis notes expire in Redis's own time."""
    if isinstance(store, MemoryStore):
        clock.advance(seconds)
    else:
        time.sleep(seconds)


def test_a_note_reads_back_as_set(store: Store) -> None:
    ref = '{"channel": "C0123", "ts": "1712345678.000200", "text": "héllo \u202e"}'
    store.remember("slack:r1", ref, 3600)
    assert store.recall("slack:r1") == ref
    assert store.recall("slack:r2") is None


def test_an_unknown_note_is_none(store: Store) -> None:
    assert store.recall("never-set") is None


def test_remember_overwrites_value_and_ttl(clock: ManualClock, store: Store) -> None:
    store.remember("k", "first", 0.2)
    store.remember("k", "second", 3600)
    assert store.recall("k") == "second"
    _let_time_pass(clock, store, 0.3)
    assert store.recall("k") == "second"  # the new ttl counts, not the old one


def test_a_note_is_gone_after_its_ttl(clock: ManualClock, store: Store) -> None:
    store.remember("short", "v", 0.2)
    store.remember("long", "w", 3600)
    assert store.recall("short") == "v"
    _let_time_pass(clock, store, 0.3)
    assert store.recall("short") is None
    assert store.recall("long") == "w"
    store.remember("short", "again", 60)  # and can be set anew
    assert store.recall("short") == "again"


def test_an_empty_note_is_not_a_missing_one(store: Store) -> None:
    store.remember("empty", "", 60)
    assert store.recall("empty") == ""


@pytest.mark.parametrize("ttl", [0, -1, -0.5, float("nan"), float("inf")])
def test_ttl_must_be_a_finite_number_above_zero(store: Store, ttl: float) -> None:
    with pytest.raises(ValueError, match="ttl"):
        store.remember("k", "v", ttl)
    assert store.recall("k") is None


def test_a_value_over_64_kib_is_refused(store: Store) -> None:
    store.remember("big", "x" * NOTE_MAX_BYTES, 60)  # exactly 64 KiB is fine
    assert store.recall("big") == "x" * NOTE_MAX_BYTES
    with pytest.raises(ValueError, match="64 KiB"):
        store.remember("big", "x" * (NOTE_MAX_BYTES + 1), 60)
    with pytest.raises(ValueError, match="64 KiB"):  # counted in UTF-8 bytes, not characters
        store.remember("big", "é" * (NOTE_MAX_BYTES // 2 + 1), 60)
    assert store.recall("big") == "x" * NOTE_MAX_BYTES  # the refused ones changed nothing


async def test_async_face_shares_the_notes(clock: ManualClock, store: Store) -> None:
    aio = store.aio
    try:
        await aio.remember("a", "from aio", 60)
        assert store.recall("a") == "from aio"
        store.remember("b", "from sync", 60)
        assert await aio.recall("b") == "from sync"
        assert await aio.recall("nope") is None
        with pytest.raises(ValueError, match="ttl"):
            await aio.remember("a", "v", 0)
        with pytest.raises(ValueError, match="64 KiB"):
            await aio.remember("a", "x" * (NOTE_MAX_BYTES + 1), 60)
        await aio.remember("c", "brief", 0.2)
        _let_time_pass(clock, store, 0.3)
        assert await aio.recall("c") is None
        assert await aio.recall("a") == "from aio"
    finally:
        await aio.aclose()


def test_memory_notes_past_their_ttl_are_dropped(clock: ManualClock) -> None:
    store = MemoryStore(clock=clock)
    store.remember("k", "v", 10)
    clock.advance(10)  # the ttl is up at exactly ttl seconds
    assert store.recall("k") is None
    assert "k" not in store._notes


@pytest.mark.redis
def test_redis_notes_share_the_hash_tag_and_carry_a_ttl(
    redis_server: RedisServer, redis_prefix: str
) -> None:
    store = RedisStore(redis_server.url, prefix=redis_prefix)
    raw = redis.Redis.from_url(redis_server.url)
    try:
        store.remember("slack:r1", "C1/1.2", 60)
        keys = [k.decode() for k in raw.keys(f"{{{redis_prefix}}}:*")]
        assert keys == [f"{{{redis_prefix}}}:note:slack:r1"]
        assert raw.get(keys[0]) == b"C1/1.2"
        assert 0 < raw.pttl(keys[0]) <= 60_000
    finally:
        store.close()
        raw.close()


@pytest.mark.redis
def test_redis_note_of_the_wrong_type_is_a_store_error(
    redis_server: RedisServer, redis_prefix: str
) -> None:
    store = RedisStore(redis_server.url, prefix=redis_prefix)
    raw = redis.Redis.from_url(redis_server.url)
    try:
        raw.rpush(store.keys.note("listy"), "x")
        with pytest.raises(StoreError, match="WRONGTYPE") as info:
            store.recall("listy")
        assert not isinstance(info.value, StoreUnavailable)
    finally:
        raw.delete(store.keys.note("listy"))
        store.close()
        raw.close()


# -- Redis down --------------------------------------------------------------------------------
def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens once the socket is closed


@pytest.fixture
def dead_store() -> Iterator[RedisStore]:
    store = RedisStore(
        f"redis://127.0.0.1:{_closed_port()}/0",
        prefix="dead",
        retry=RetryPolicy(attempts=2, within=0.3, max_wait=0.01),
    )
    yield store
    with contextlib.suppress(StoreUnavailable):
        store.close()


@pytest.mark.redis
def test_notes_on_an_unreachable_redis_raise_store_unavailable(dead_store: RedisStore) -> None:
    with pytest.raises(StoreUnavailable) as info:
        dead_store.remember("k", "v", 60)
    assert isinstance(info.value.__cause__, redis.ConnectionError)
    with pytest.raises(StoreUnavailable):
        dead_store.recall("k")
    with pytest.raises(ValueError, match="ttl"):  # checked before anything is sent
        dead_store.remember("k", "v", 0)


@pytest.mark.redis
async def test_notes_on_an_unreachable_redis_raise_store_unavailable_async(
    dead_store: RedisStore,
) -> None:
    with pytest.raises(StoreUnavailable):
        await dead_store.aio.remember("k", "v", 60)
    with pytest.raises(StoreUnavailable):
        await dead_store.aio.recall("k")
    await dead_store.aio.aclose()
