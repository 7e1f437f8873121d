"""A decision reads its request once: the deciding side signs the vote with the request it
checked the approver against, and the store step judges the request as Redis holds it."""

from __future__ import annotations

from typing import Any

import pytest

from gatekeeper import Gatekeeper, Policy, RedisStore, RequestStatus, TransitionRefused
from gatekeeper.testing import ManualClock
from tests.conftest import RedisServer
from tests.storekit import MANUAL_LEASE, held_event, make_request

pytestmark = pytest.mark.redis


def test_an_approval_reads_the_request_once_and_the_step_still_judges_it(
    redis_server: RedisServer, redis_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = ManualClock()
    store = RedisStore(redis_server.url, prefix=redis_prefix, clock=clock, lease=MANUAL_LEASE)
    gate = Gatekeeper(policy=Policy.empty(), store=store, clock=clock)
    try:
        first, second = make_request(clock), make_request(clock)
        for req in (first, second):
            store.hold(req, held_event(req))
        reads: list[str] = []
        real_get = store.get

        def counted(request_id: str) -> Any:
            reads.append(request_id)
            return real_get(request_id)

        monkeypatch.setattr(store, "get", counted)
        after = gate.approve(first.id, approver="alice")
        assert after.status is RequestStatus.APPROVED and after.decisions[0].signed
        assert reads == [first.id]
        # Decided elsewhere after this approver's read: the step refuses on what Redis holds.
        read = real_get(second.id)
        gate.deny(second.id, approver="bob", comment="no")
        decision = after.decisions[0].model_copy(update={"signed": None, "approver": "carol"})
        with pytest.raises(TransitionRefused, match="already denied"):
            store.decide(second.id, decision, request=read)
    finally:
        gate.close()
