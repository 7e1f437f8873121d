"""An approver whose decision met a store error is told whether it was recorded.

A write whose reply never came may have been applied (Redis runs it when it
resumes): the approver hears that its fate is unknown and how to check, not
that "Redis is unavailable" as if nothing happened. Only a decision that never
reached Redis is reported as not recorded.
"""

from __future__ import annotations

from typing import Any

import pytest

from gatekeeper import Gatekeeper, MemoryStore, Policy, StoreUnavailable
from gatekeeper.store._redis import translate_redis_error
from gatekeeper.testing import ManualClock
from tests.storekit import held_event, make_request


class FailingDecide(MemoryStore):
    """A store whose decisions (and, when asked, reads) fail as a Redis store's do."""

    def __init__(self, applied: str, *, reads_fail: bool = False) -> None:
        super().__init__(clock=ManualClock())
        self.applied = applied
        self.reads_fail = reads_fail

    def decide(self, *args: Any, **kwargs: Any) -> Any:
        raise StoreUnavailable(
            "Redis is unavailable: Timeout reading from 127.0.0.1:6390", applied=self.applied
        )

    def get(self, request_id: str) -> Any:
        if self.reads_fail:
            raise StoreUnavailable(
                "Redis is unavailable: Timeout reading from x", applied="unknown"
            )
        return super().get(request_id)


def _held(store: MemoryStore) -> str:
    req = make_request(store.clock)
    store.hold(req, held_event(req))
    return req.id


@pytest.mark.parametrize("how", ["approve", "deny", "respond"])
def test_a_decision_that_may_have_reached_redis_is_reported_as_of_unknown_fate(how: str) -> None:
    store = FailingDecide("unknown")
    gate = Gatekeeper(policy=Policy.empty(), store=store)
    rid = _held(store)
    kwargs: dict[str, Any] = {"approver": "alice"}
    if how == "deny":
        kwargs["comment"] = "no"
    if how == "respond":
        kwargs["response"] = "here you are"
    with pytest.raises(StoreUnavailable) as caught:
        getattr(gate, how)(rid, **kwargs)
    said = str(caught.value)
    assert f"of request {rid} may or may not have been recorded" in said
    assert f"check with `gatekeeper show {rid}`" in said
    assert "Timeout reading" in said  # what Redis did, too
    assert caught.value.context["applied"] == "unknown"


def test_a_decision_that_never_reached_redis_is_reported_as_not_recorded() -> None:
    store = FailingDecide("no")
    gate = Gatekeeper(policy=Policy.empty(), store=store)
    rid = _held(store)
    with pytest.raises(StoreUnavailable) as caught:
        gate.approve(rid, approver="alice")
    assert str(caught.value).startswith(f"your approval of request {rid} was not recorded:")
    assert "may or may not" not in str(caught.value)


def test_a_read_that_fails_before_deciding_records_nothing() -> None:
    """The request is read first; failing there, the decision was never sent."""
    store = FailingDecide("unknown", reads_fail=True)
    gate = Gatekeeper(policy=Policy.empty(), store=store)
    with pytest.raises(StoreUnavailable, match="your denial of request r-x was not recorded"):
        gate.deny("r-x", approver="alice", comment="no")


def test_a_halt_of_unknown_fate_says_where_to_look() -> None:
    class FailingHalt(MemoryStore):
        def halt(self, *args: Any, **kwargs: Any) -> Any:
            raise StoreUnavailable("Redis is unavailable: Timeout reading", applied="unknown")

    gate = Gatekeeper(policy=Policy.empty(), store=FailingHalt())
    with pytest.raises(
        StoreUnavailable, match=r"the halt of agent bot may or may not.*`gatekeeper halts`"
    ):
        gate.halt(agent="bot", by="alice")


def test_redis_errors_say_whether_the_command_can_have_reached_redis() -> None:
    """redis-py's own words for a connection never made, versus a reply never read."""
    import redis.exceptions as rexc

    refused = rexc.ConnectionError("Error 111 connecting to 127.0.0.1:6390. Connection refused.")
    connect_timeout = rexc.TimeoutError("Timeout connecting to server")
    read_timeout = rexc.TimeoutError("Timeout reading from 127.0.0.1:6390")
    reset = rexc.ConnectionError("Error while reading from 127.0.0.1:6390 : (104, 'reset')")
    loading = rexc.BusyLoadingError("Redis is loading the dataset in memory")

    def applied(exc: BaseException, tries: list[BaseException] | None = None) -> Any:
        return translate_redis_error(exc, tries or []).context.get("applied")

    assert applied(refused) == "no"
    assert applied(connect_timeout) == "no"
    assert applied(loading) == "no"
    assert applied(read_timeout) == "unknown"
    assert applied(reset) == "unknown"
    # A first try that timed out reading, then retries that could not connect: unknown.
    assert applied(refused, [read_timeout, refused, refused]) == "unknown"
    assert applied(refused, [refused, connect_timeout]) == "no"
