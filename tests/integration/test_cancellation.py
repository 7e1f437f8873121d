"""A cancelled task's held call never runs, even when the cancellation is swallowed on the way.

On Python 3.10 and 3.11 ``asyncio.wait_for`` (inside redis-py's asyncio
client) can drop a cancellation that lands as the awaited command finishes.
The store below swallows one exactly so, at each step of the held call; the
flow must still withdraw the request and end with ``CancelledError``. It must
do so without the cancellation count that only Python 3.11 and newer keep
(``Task.cancelling()``): each case runs once more with that count hidden, as
on 3.10.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

import pytest

from gatekeeper import Gatekeeper, MemoryStore, Policy, RedisStore, RequestStatus, _flow
from gatekeeper.store import Store
from tests.conftest import RedisServer


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest, redis_prefix: str) -> Iterator[Store]:
    if request.param == "memory":
        made: Store = MemoryStore()
    else:
        server: RedisServer = request.getfixturevalue("redis_server")
        made = RedisStore(server.url, prefix=redis_prefix)
    yield made
    made.close()


def swallow_a_cancel_in(store: Store, method: str, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make ``store.aio.<method>`` finish its work even when cancelled, and return normally."""
    aio = store.aio
    real = getattr(aio, method)
    swallowed: list[str] = []

    async def finishes_anyway(*args: Any, **kwargs: Any) -> Any:
        work = asyncio.ensure_future(real(*args, **kwargs))
        try:
            return await asyncio.shield(work)
        except asyncio.CancelledError:  # what the wait_for bug does: the result wins
            swallowed.append(method)
            if method == "wait":  # it had just read the request when the cancel came
                work.cancel()
                return await aio.get(args[0])
            return await work

    monkeypatch.setattr(aio, method, finishes_anyway)
    return swallowed


@pytest.mark.parametrize("count", ["counted", "as-on-3.10"])
@pytest.mark.parametrize("step", ["hold", "wait"])
async def test_a_swallowed_cancel_still_withdraws_the_request_and_runs_nothing(
    store: Store, step: str, count: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if count == "as-on-3.10":  # no Task.cancelling() to find a swallowed cancellation by
        monkeypatch.setattr(_flow, "_cancelling", lambda: 0)
    gate = Gatekeeper(policy=Policy.empty(), store=store, default_timeout=30)
    ran: list[str] = []

    @gate.guard
    async def wire(to: str) -> str:
        ran.append(to)
        return "sent"

    if step == "hold":
        real_hold = store.aio.hold

        async def slow_hold(*args: Any, **kwargs: Any) -> Any:
            await asyncio.sleep(0.2)  # the cancel lands while the hold is under way
            return await real_hold(*args, **kwargs)

        monkeypatch.setattr(store.aio, "hold", slow_hold)
    swallowed = swallow_a_cancel_in(store, step, monkeypatch)
    task = asyncio.create_task(wire("ACME"))
    await asyncio.sleep(0.1 if step == "hold" else 0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 10)
    assert swallowed == [step]
    (req,) = store.history(limit=10)
    assert req.status is RequestStatus.CANCELLED
    assert req.comment == "the caller stopped waiting"
    assert ran == []


async def test_a_cancellation_caught_before_the_call_is_not_held_against_it(store: Store) -> None:
    gate = Gatekeeper(policy=Policy.from_yaml("version: 1\ndefault: allow\n"), store=store)

    @gate.guard
    async def lookup(key: str) -> str:
        return key

    async def caller() -> str:
        task = asyncio.current_task()
        assert task is not None
        task.cancel()
        # caught, and carried on without uncancel(): common in older code
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(1)
        return await lookup("k")

    assert await caller() == "k"
