"""Random operation sequences run in lockstep on MemoryStore and RedisStore, each on its blocking
and its async face (tests/aiokit.py), must agree."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from gatekeeper import audit
from gatekeeper._canonical import digest
from gatekeeper._errors import GatekeeperError
from gatekeeper.models import ApprovalRequest, Decision, HaltScope, RequestStatus
from gatekeeper.store import MemoryStore, RedisStore, Store
from gatekeeper.testing import ManualClock
from tests.aiokit import AsyncFace
from tests.conftest import RedisServer
from tests.storekit import held_event, make_request

pytestmark = pytest.mark.redis
S = RequestStatus
TERMINAL = {S.DENIED, S.RESPONDED, S.EXPIRED, S.CANCELLED, S.EXECUTED, S.FAILED}
APPROVERS = ("alice", "bob", "carol")
# storekit's default args, and two edits of them: editing back to earlier args happens too.
EDITS = (
    {"order_id": "A-1", "amount": 20.0},
    {"order_id": "A-1", "amount": 5.0},
    {"order_id": "A-1", "amount": 7.0},
)
AGENTS = ("bot", "other")
REFUSED = object()


def _view(req: ApprovalRequest) -> dict[str, Any]:
    return {
        "status": req.status,
        "args": req.args,
        "args_digest": req.args_digest,
        "approvals": len(req.approvals),
        "decisions": len(req.decisions),
        "decided_by": req.decided_by,
        "comment": req.comment,
        "response": req.response,
        "outcome": req.outcome,
    }


def _kinds(store: Store) -> list[str]:
    store.flush()
    return [audit.parse_event(e.body, e.hash).kind for e in store.audit_entries()]


class LockstepStores(RuleBasedStateMachine):
    url = ""

    def __init__(self) -> None:
        super().__init__()
        self.clock = ManualClock()
        self.memory = MemoryStore(clock=self.clock)
        self.redis = RedisStore(self.url, prefix=f"sm{uuid.uuid4().hex[:10]}", clock=self.clock)
        # The same two stores again, driven through their async faces.
        memory_aio = MemoryStore(clock=self.clock)
        redis_aio = RedisStore(self.url, prefix=f"sm{uuid.uuid4().hex[:10]}", clock=self.clock)
        self.stores: list[Any] = [
            self.memory,
            self.redis,
            AsyncFace(memory_aio),
            AsyncFace(redis_aio),
        ]
        self.names = ["memory", "redis", "memory-aio", "redis-aio"]
        self.requests: list[ApprovalRequest] = []
        self.last: dict[str, ApprovalRequest] = {}

    def teardown(self) -> None:
        for store in self.stores:
            store.close()

    # -- driving both stores -------------------------------------------------------------
    def both(self, op: str, *args: Any, **kwargs: Any) -> Any:
        """``op`` on every store; they must all agree (``both``: the two stores, two faces)."""
        outcomes = []
        for store in self.stores:
            try:
                outcomes.append(("ok", getattr(store, op)(*args, **kwargs)))
            except GatekeeperError as exc:
                outcomes.append(("refused", type(exc).__name__))
        mk, mv = outcomes[0]
        for name, (kind, value) in zip(self.names[1:], outcomes[1:], strict=True):
            assert kind == mk, f"{op}: memory {outcomes[0]} but {name} {(kind, value)}"
            if mk == "refused":
                assert value == mv, f"{op}: memory raised {mv}, {name} raised {value}"
            elif isinstance(mv, ApprovalRequest):
                assert _view(mv) == _view(value), f"{op}: {_view(mv)} != {name} {_view(value)}"
            else:
                assert mv == value, f"{op}: {mv!r} != {name} {value!r}"
        return REFUSED if mk == "refused" else mv

    def pick(self, i: int) -> ApprovalRequest:
        return self.memory.get(self.requests[i % len(self.requests)].id)

    # -- rules ----------------------------------------------------------------------------
    @rule(quorum=st.integers(1, 3), agent=st.sampled_from(AGENTS))
    def hold(self, quorum: int, agent: str) -> None:
        req = make_request(self.clock, quorum=quorum, agent=agent, timeout=60)
        if self.both("hold", req, held_event(req)) is REFUSED and not self._halted(agent):
            raise AssertionError("hold refused without a halt")
        if self._exists(req.id):
            self.requests.append(req)

    @precondition(lambda self: self.requests)
    @rule(i=st.integers(0, 20), who=st.sampled_from(APPROVERS), approve=st.booleans())
    def decide(self, i: int, who: str, approve: bool) -> None:
        req = self.pick(i)
        d = Decision(
            approver=who,
            approve=approve,
            at=self.clock.now(),
            args_digest=req.args_digest,
            via="test",
        )
        self.both("decide", req.id, d)

    @precondition(lambda self: self.requests)
    @rule(i=st.integers(0, 20), who=st.sampled_from(APPROVERS))
    def respond(self, i: int, who: str) -> None:
        req = self.pick(i)
        d = Decision(
            approver=who,
            approve=False,
            at=self.clock.now(),
            args_digest=req.args_digest,
            via="test",
            response=f"answered by {who}",
        )
        self.both("decide", req.id, d)

    @precondition(lambda self: self.requests)
    @rule(i=st.integers(0, 20), who=st.sampled_from(APPROVERS), edit=st.sampled_from(EDITS))
    def edit_approve(self, i: int, who: str, edit: dict[str, Any]) -> None:
        req = self.pick(i)
        d = Decision(
            approver=who,
            approve=True,
            at=self.clock.now(),
            args_digest=digest(edit),
            edited=True,
            via="test",
        )
        self.both("decide", req.id, d, args=edit)

    @precondition(lambda self: self.requests)
    @rule(i=st.integers(0, 20), seconds=st.sampled_from([0, 30, 61]))
    def expire(self, i: int, seconds: int) -> None:
        self.clock.advance(seconds)
        self.both("expire", self.pick(i).id)

    @precondition(lambda self: self.requests)
    @rule(i=st.integers(0, 20))
    def cancel(self, i: int) -> None:
        self.both("cancel", self.pick(i).id, by="agent:bot", reason="gave up")

    @precondition(lambda self: self.requests)
    @rule(i=st.integers(0, 20), stale=st.booleans())
    def claim(self, i: int, stale: bool) -> None:
        req = self.pick(i)
        wanted = req.call.args_digest if stale else req.args_digest
        self.both("claim", req.id, args_digest=wanted)

    @precondition(lambda self: self.requests)
    @rule(i=st.integers(0, 20), ok=st.booleans())
    def finish(self, i: int, ok: bool) -> None:
        self.both("finish", self.pick(i).id, ok=ok, outcome="done" if ok else "boom")

    @rule(agent=st.sampled_from(AGENTS))
    def halt(self, agent: str) -> None:
        self.both("halt", HaltScope.AGENT, agent, by="ops", reason="test")

    @rule(agent=st.sampled_from(AGENTS))
    def resume(self, agent: str) -> None:
        self.both("resume", HaltScope.AGENT, agent, by="ops")

    def _halted(self, agent: str) -> bool:
        return any(h.target == agent for h in self.memory.halts())

    def _exists(self, rid: str) -> bool:
        try:
            self.memory.get(rid)
        except GatekeeperError:
            return False
        return True

    # -- invariants -------------------------------------------------------------------------
    @invariant()
    def stores_agree_and_rules_hold(self) -> None:
        for req in self.requests:
            mem = self.memory.get(req.id)
            for name, store in zip(self.names[1:], self.stores[1:], strict=True):
                assert _view(mem) == _view(store.get(req.id)), name
            before = self.last.get(req.id)
            if before is not None and before.status in TERMINAL:
                assert mem.status is before.status, f"terminal {before.status} became {mem.status}"
            if mem.status in (S.EXECUTED, S.FAILED) and (
                before is None or before.status is not mem.status
            ):
                assert before is not None
                assert before.status is S.EXECUTING
            if mem.status in (S.APPROVED, S.EXECUTING, S.EXECUTED, S.FAILED):
                assert len({d.approver for d in mem.approvals}) >= mem.quorum
            self.last[req.id] = mem
        kinds = _kinds(self.memory)
        for name, store in zip(self.names[1:], self.stores[1:], strict=True):
            assert _kinds(store) == kinds, name


def test_memory_and_redis_stores_agree_on_both_faces(redis_server: RedisServer) -> None:
    LockstepStores.url = redis_server.url
    run_state_machine_as_test(
        LockstepStores,
        settings=settings(
            max_examples=40,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
            database=None,
        ),
    )


@pytest.mark.parametrize("kind", ["memory", "redis"])
def test_edit_back_to_earlier_args_counts_their_earlier_approvals(
    kind: str, redis_server: RedisServer, redis_prefix: str
) -> None:
    """Approvals bind to an args digest: edited away and back, they count again (both stores)."""
    clock = ManualClock()
    store: Store = (
        MemoryStore(clock=clock)
        if kind == "memory"
        else RedisStore(redis_server.url, prefix=redis_prefix, clock=clock)
    )
    try:
        req = make_request(clock, quorum=2)
        store.hold(req, held_event(req))
        first, second = EDITS[1], EDITS[2]
        steps = [
            ("alice", first, S.PENDING),
            ("bob", second, S.PENDING),
            ("carol", first, S.APPROVED),
        ]
        for who, args, status in steps:
            d = Decision(
                approver=who,
                approve=True,
                at=clock.now(),
                args_digest=digest(args),
                edited=True,
                via="test",
            )
            after = store.decide(req.id, d, args=args)
            assert after.status is status, who
        assert {d.approver for d in after.approvals} == {"alice", "carol"}
        assert after.args == first
    finally:
        store.close()
