"""An agent whose clock disagrees with Redis's still stops waiting at its own expiry."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import pytest

from gatekeeper import ApprovalTimeout, Gatekeeper, Policy, RedisStore, RequestStatus
from tests.conftest import RedisServer

pytestmark = [pytest.mark.redis, pytest.mark.usefixtures("both_faces")]


class Skewed:
    """The wall clock, off by ``seconds``."""

    def __init__(self, seconds: float) -> None:
        self.offset = dt.timedelta(seconds=seconds)

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.timezone.utc) + self.offset


@pytest.mark.parametrize("skew", [20.0, -20.0, 0.0])
def test_a_waiter_returns_at_its_own_expiry_whatever_the_clocks(
    skew: float, redis_server: RedisServer, redis_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = RedisStore(redis_server.url, prefix=redis_prefix)  # judges expiry by Redis's TIME
    gate = Gatekeeper(policy=Policy.empty(), store=store, clock=Skewed(skew), default_timeout=1.0)
    expires: list[Any] = []
    for face in (store, store.aio):
        real = face.expire

        def counted(*args: Any, _real: Any = real, **kwargs: Any) -> Any:
            expires.append(args)
            return _real(*args, **kwargs)

        monkeypatch.setattr(face, "expire", counted)

    @gate.guard
    def rotate_keys() -> str:
        return "rotated"

    started = time.monotonic()
    with pytest.raises(ApprovalTimeout) as caught:
        rotate_keys()
    took = time.monotonic() - started
    # Its own expiry (1 s), not the skew (20 s) or the old grace of 5 s; the margin
    # is for a loaded 2-core CI machine.
    assert 0.95 <= took <= 1.6, took
    assert len(expires) <= 1  # no polling of the store while the clocks disagree
    req = gate.get(caught.value.request_id or "")
    assert req.status in (RequestStatus.EXPIRED, RequestStatus.CANCELLED)
    if req.status is RequestStatus.CANCELLED:
        assert req.comment == "expired by the agent's own clock"
    gate.close()
