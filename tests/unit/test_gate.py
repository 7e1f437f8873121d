"""The gate end to end on a MemoryStore: guarding, verdicts, approvals, edits, sessions."""

from __future__ import annotations

import asyncio
import inspect
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from gatekeeper import (
    AgentHalted,
    ApprovalDenied,
    ApprovalRequest,
    ApprovalTimeout,
    Approver,
    ArgumentsChanged,
    Gatekeeper,
    InvalidToolCall,
    MemoryStore,
    NotAuthorized,
    RequestStatus,
    ToolCallDenied,
    current_session,
)
from gatekeeper.testing import AutoDecider, RecordingChannel
from tests.gatekit import audit_events, audit_kinds, make_policy

# Every guarded call here runs on the blocking driver and on the async one.
pytestmark = pytest.mark.usefixtures("both_faces")

S = RequestStatus


@pytest.fixture
def gate() -> Gatekeeper:
    return Gatekeeper(policy=make_policy(), store=MemoryStore())


class Approving:
    """A channel that runs ``before(req)`` and then approves (as ``approver``)."""

    def __init__(self, before: Any = None, approver: str = "alice", **kw: Any) -> None:
        self.before = before
        self.approver = approver
        self.kw = kw
        self.gate: Gatekeeper | None = None

    def bind(self, gate: Gatekeeper) -> None:
        self.gate = gate

    def notify(self, req: ApprovalRequest) -> None:
        if self.before is not None:
            self.before(req)
        assert self.gate is not None
        self.gate.approve(req.id, approver=self.approver, **self.kw)

    def update(self, req: ApprovalRequest) -> None:
        pass


# -- the decorator ------------------------------------------------------------------------


def test_guard_bare_and_with_options_keep_name_doc_signature_and_wrapped(gate: Gatekeeper) -> None:
    def read_doc(query: str, limit: int = 3) -> str:
        """Search the docs."""
        return query

    bare = gate.guard(read_doc)
    named = gate.guard(name="read_named", scopes={"docs:read"})(read_doc)
    for wrapped in (bare, named):
        assert wrapped.__name__ == "read_doc"
        assert wrapped.__doc__ == "Search the docs."
        assert wrapped.__wrapped__ is read_doc  # type: ignore[attr-defined]
        assert inspect.signature(wrapped) == inspect.signature(read_doc)
    assert bare("x") == "x"


async def test_guard_async_function_stays_a_coroutine_function(gate: Gatekeeper) -> None:
    @gate.guard
    async def read_async(n: int) -> int:
        """Async tool."""
        return n * 2

    assert inspect.iscoroutinefunction(read_async)
    assert read_async.__doc__ == "Async tool."
    assert await read_async(21) == 42


def test_guarded_method_does_not_record_self(gate: Gatekeeper) -> None:
    class Docs:
        @gate.guard
        def read_page(self, page: int) -> int:
            return page + 1

        @gate.guard
        def write_page(self, page: int) -> int:
            return page

    chan = AutoDecider()
    gate.add_channel(chan)
    assert Docs().read_page(1) == 2
    assert Docs().write_page(page=7) == 7
    events = audit_events(gate)
    assert events[0].data["args"] == {"page": 1}
    assert chan.decided[0].args == {"page": 7}


async def test_guarded_async_method_runs_with_its_instance(gate: Gatekeeper) -> None:
    class Client:
        base = 10

        @gate.guard
        async def read_value(self, n: int) -> int:
            return self.base + n

    assert await Client().read_value(5) == 15
    assert audit_events(gate)[0].data["args"] == {"n": 5}


# -- verdicts -----------------------------------------------------------------------------


def test_allowed_call_runs_once_and_is_audited(gate: Gatekeeper) -> None:
    runs: list[str] = []

    @gate.guard
    def read_docs(q: str) -> str:
        runs.append(q)
        return q.upper()

    assert read_docs("abc") == "ABC"
    assert runs == ["abc"]
    gate.store.flush()
    assert audit_kinds(gate) == ["call.allowed", "call.executed"]


def test_failing_allowed_call_is_audited_as_failed(gate: Gatekeeper) -> None:
    @gate.guard
    def read_broken() -> None:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        read_broken()
    assert audit_kinds(gate) == ["call.allowed", "call.failed"]


def test_deny_verdict_raises_and_never_runs(gate: Gatekeeper) -> None:
    runs: list[str] = []

    @gate.guard
    def drop_table(name: str) -> None:
        runs.append(name)

    with pytest.raises(ToolCallDenied) as info:
        drop_table("users")
    assert runs == []
    assert info.value.rules == ["no-drop"]
    assert "not run" in info.value.model_message
    assert audit_kinds(gate) == ["call.denied"]


async def test_async_deny_verdict_never_runs(gate: Gatekeeper) -> None:
    runs: list[str] = []

    @gate.guard
    async def drop_table(name: str) -> None:
        runs.append(name)

    with pytest.raises(ToolCallDenied):
        await drop_table("users")
    assert runs == []


def test_halt_verdict_halts_the_agent_until_resumed(gate: Gatekeeper) -> None:
    runs: list[str] = []

    @gate.guard
    def open_tunnel(host: str) -> None:
        runs.append(host)

    @gate.guard
    def read_docs() -> str:
        runs.append("read")
        return "ok"

    with gate.session(agent="bot"):
        with pytest.raises(AgentHalted):
            open_tunnel("evil.example")
        with pytest.raises(AgentHalted):
            read_docs()
        assert runs == []
        assert gate.resume(agent="bot", by="ops") is True
        assert read_docs() == "ok"
    assert runs == ["read"]
    kinds = audit_kinds(gate)
    assert kinds[:3] == ["call.denied", "halt.set", "call.refused"]
    assert "halt.cleared" in kinds


# -- approvals ----------------------------------------------------------------------------


def test_held_call_approved_runs_with_exactly_the_approved_args(gate: Gatekeeper) -> None:
    calls: list[tuple[str, float]] = []
    decider = AutoDecider(approver="alice", comment="fine")
    gate.add_channel(decider)

    @gate.guard
    def refund(order_id: str, amount: float) -> str:
        calls.append((order_id, amount))
        return "done"

    assert refund("A-1", amount=20.0) == "done"
    assert calls == [("A-1", 20.0)]
    req = gate.get(decider.decided[0].id)
    assert req.status is S.EXECUTED
    assert req.args == {"order_id": "A-1", "amount": 20.0}
    assert audit_kinds(gate) == [
        "call.held",
        "request.approved",
        "request.released",
        "request.executed",
    ]


async def test_async_held_call_approved_runs(gate: Gatekeeper) -> None:
    gate.add_channel(AutoDecider())

    @gate.guard
    async def refund(order_id: str) -> str:
        return f"refunded {order_id}"

    assert await refund("A-2") == "refunded A-2"


def test_denied_call_raises_with_approver_and_comment(gate: Gatekeeper) -> None:
    runs: list[int] = []
    gate.add_channel(AutoDecider(approve=False, approver="bob", comment="use the sandbox"))

    @gate.guard
    def refund(amount: int) -> None:
        runs.append(amount)

    with pytest.raises(ApprovalDenied) as info:
        refund(5)
    assert runs == []
    assert info.value.approver == "bob"
    assert info.value.comment == "use the sandbox"
    assert info.value.model_message == (
        'Tool call denied by bob: "use the sandbox". The tool was not run.'
    )


def test_a_denial_without_a_comment_is_refused_on_every_surface(gate: Gatekeeper) -> None:
    """Decisions.deny is where the CLI, console, API, Slack and terminal all deny: no reason, no
    denial (the model reads it); nothing is recorded."""
    chan = RecordingChannel()
    gate.add_channel(chan)

    @gate.guard
    def refund(amount: int) -> int:
        return amount

    with ThreadPoolExecutor(1) as pool:
        fut = pool.submit(refund, 5)
        req = chan.wait_for_request()
        for blank in (None, "", "  \n"):
            with pytest.raises(ValueError, match="without a comment: say why"):
                gate.deny(req.id, approver="alice", comment=blank)
        assert gate.get(req.id).status is S.PENDING
        assert gate.get(req.id).decisions == ()
        gate.deny(req.id, approver="alice", comment="use the sandbox")
        with pytest.raises(ApprovalDenied):
            fut.result(timeout=10)


def test_an_auto_decider_without_a_comment_denies_with_a_default_reason(gate: Gatekeeper) -> None:
    gate.add_channel(AutoDecider(approve=False, approver="bob"))

    @gate.guard
    def refund(amount: int) -> None:
        raise AssertionError("denied calls never run")

    with pytest.raises(ApprovalDenied) as info:
        refund(5)
    assert info.value.comment == "denied by AutoDecider"


def test_policy_timeout_expires_the_request(gate: Gatekeeper) -> None:
    runs: list[int] = []
    chan = RecordingChannel()
    gate.add_channel(chan)

    @gate.guard
    def quick_refund(amount: int) -> None:
        runs.append(amount)

    with pytest.raises(ApprovalTimeout):
        quick_refund(5)
    assert runs == []
    assert gate.get(chan.notified[0].id).status is S.EXPIRED
    assert chan.updated[-1].status is S.EXPIRED


async def test_default_timeout_expires_async_requests() -> None:
    gate = Gatekeeper(policy=make_policy(), default_timeout=0.2)
    runs: list[int] = []

    @gate.guard
    async def refund(amount: int) -> None:
        runs.append(amount)

    with pytest.raises(ApprovalTimeout):
        await refund(1)
    assert runs == []
    assert audit_kinds(gate) == ["call.held", "request.expired"]


def test_edit_and_approve_runs_with_edited_args(gate: Gatekeeper) -> None:
    seen: list[tuple[str, int]] = []
    gate.add_channel(AutoDecider(args={"order_id": "A-1", "amount": 15.0}))

    @gate.guard
    def refund(order_id: str, amount: int) -> str:
        seen.append((order_id, amount))
        return "ok"

    assert refund("A-1", 500) == "ok"
    assert seen == [("A-1", 15)]  # 15.0 was validated (coerced) against the int annotation
    assert "request.executed" in audit_kinds(gate)


def test_edited_args_that_do_not_fit_the_signature_are_refused(gate: Gatekeeper) -> None:
    """Refused to the approver when the edit is made (nothing recorded), not at release."""
    runs: list[int] = []
    refusals: list[Exception] = []

    class Editor:
        def bind(self, g: Gatekeeper) -> None:
            self.gate = g

        def notify(self, req: Any) -> None:
            try:
                self.gate.approve(req.id, approver="alice", args={"amount": "a lot"})
            except InvalidToolCall as exc:
                refusals.append(exc)
            assert self.gate.get(req.id).decisions == ()
            self.gate.deny(req.id, approver="alice", comment="bad edit")

        def update(self, req: Any) -> None:
            pass

    gate.add_channel(Editor())

    @gate.guard
    def refund(amount: int) -> None:
        runs.append(amount)

    with pytest.raises(ApprovalDenied):
        refund(5)
    assert runs == []
    assert "amount: 'a lot' is not of type 'integer'" in str(refusals[0])


def test_edited_args_naming_other_parameters_are_refused_at_decision_time(
    gate: Gatekeeper,
) -> None:
    """An edit must name exactly the call's parameters; a bad one records nothing."""
    runs: list[int] = []
    refusals: list[Exception] = []

    class Editor:
        def bind(self, g: Gatekeeper) -> None:
            self.gate = g

        def notify(self, req: Any) -> None:
            for args in ({"amount": 1, "to_account": "attacker"}, {}):
                try:
                    self.gate.approve(req.id, approver="alice", args=args)
                except InvalidToolCall as exc:
                    refusals.append(exc)
            assert self.gate.get(req.id).decisions == ()
            self.gate.deny(req.id, approver="alice", comment="bad edit")

        def update(self, req: Any) -> None:
            pass

    gate.add_channel(Editor())

    @gate.guard
    def refund(amount: int) -> None:
        runs.append(amount)

    with pytest.raises(ApprovalDenied):
        refund(5)
    assert runs == []
    assert [str(e) for e in refusals] == [
        "edited arguments must name the same parameters as the call: ['amount']"
    ] * 2


def test_argument_mutated_while_held_is_not_run(gate: Gatekeeper) -> None:
    runs: list[list[str]] = []
    targets = ["a@example.com"]
    gate.add_channel(Approving(before=lambda _req: targets.append("all@example.com")))

    @gate.guard
    def send_email(to: list[str]) -> None:
        runs.append(list(to))

    with pytest.raises(ArgumentsChanged) as info:
        send_email(targets)
    assert runs == []
    req = gate.get(info.value.request_id)  # type: ignore[arg-type]
    assert req.args == {"to": ["a@example.com"]}
    assert req.status is S.FAILED  # closed, so it can't be released later
    assert "call.refused" in audit_kinds(gate)


class Opaque:
    pass


def _open_file() -> Any:
    return tempfile.TemporaryFile()  # no `with`: the test closes it after the call


@pytest.mark.parametrize("make_bad", [Opaque, _open_file])
def test_non_json_args_are_refused_before_anything_runs(gate: Gatekeeper, make_bad: Any) -> None:
    runs: list[object] = []

    @gate.guard
    def read_thing(thing: object) -> None:
        runs.append(thing)

    bad = make_bad()
    try:
        with pytest.raises(InvalidToolCall, match="thing"):
            read_thing(bad)
    finally:
        if hasattr(bad, "close"):
            bad.close()
    assert runs == []
    assert audit_kinds(gate) == []


def test_excluded_parameter_is_passed_through_unrecorded(gate: Gatekeeper) -> None:
    got: list[object] = []
    ctx = Opaque()

    @gate.guard(exclude=["ctx"])
    def read_with_ctx(ctx: Opaque, q: str) -> str:
        got.append(ctx)
        return q

    assert read_with_ctx(ctx, "x") == "x"
    assert got == [ctx]
    assert audit_events(gate)[0].data["args"] == {"q": "x"}


def test_guard_exclude_of_unknown_parameter_is_an_error(gate: Gatekeeper) -> None:
    with pytest.raises(ValueError, match="ctx"):

        @gate.guard(exclude=["ctx"])
        def read_plain(q: str) -> str:
            return q


def test_args_over_the_size_limit_are_refused() -> None:
    gate = Gatekeeper(policy=make_policy(), max_args_bytes=100)
    runs: list[str] = []

    @gate.guard
    def read_blob(data: str) -> None:
        runs.append(data)

    with pytest.raises(InvalidToolCall, match="over the limit"):
        read_blob("x" * 200)
    assert runs == []


# -- sessions -------------------------------------------------------------------------------


async def test_session_follows_asyncio_tasks_and_to_thread(gate: Gatekeeper) -> None:
    @gate.guard
    def read_sync() -> str | None:
        s = current_session()
        return s.agent if s else None

    @gate.guard
    async def read_async() -> str | None:
        s = current_session()
        return s.agent if s else None

    async with gate.session(agent="planner"):
        in_task = await asyncio.create_task(read_async())
        in_thread = await asyncio.to_thread(read_sync)
    assert (in_task, in_thread) == ("planner", "planner")
    agents = {e.agent for e in audit_events(gate)}
    assert agents == {"planner"}


def test_session_wrap_carries_it_into_a_thread_pool(gate: Gatekeeper) -> None:
    @gate.guard
    def read_docs() -> str:
        return "ok"

    session = gate.session(agent="worker", reason="batch job")
    with ThreadPoolExecutor(2) as pool:
        assert pool.submit(session.wrap(read_docs)).result() == "ok"
        assert pool.submit(read_docs).result() == "ok"  # no session: the default agent
    events = audit_events(gate)
    allowed = [e for e in events if e.kind == "call.allowed"]
    assert [e.agent for e in allowed] == ["worker", "default"]
    assert allowed[0].session_id == session.id
    assert allowed[0].data["reason"] == "batch job"


def test_calls_outside_a_session_use_the_default_agent() -> None:
    gate = Gatekeeper(policy=make_policy(), default_agent="solo")

    @gate.guard
    def read_docs() -> None:
        pass

    read_docs()
    assert audit_events(gate)[0].agent == "solo"


async def test_one_session_object_entered_by_overlapping_tasks(gate: Gatekeeper) -> None:
    """Tasks sharing one Session object may leave it in any order (not only LIFO)."""
    session = gate.session(agent="shared")
    first_in, second_in, first_out = asyncio.Event(), asyncio.Event(), asyncio.Event()
    seen: list[str | None] = []

    async def first() -> None:
        async with session:
            first_in.set()
            await second_in.wait()
        seen.append(getattr(current_session(), "agent", None))
        first_out.set()

    async def second() -> None:
        await first_in.wait()
        async with session:
            second_in.set()
            await first_out.wait()
            seen.append(getattr(current_session(), "agent", None))
        seen.append(getattr(current_session(), "agent", None))

    await asyncio.gather(first(), second())
    assert seen == [None, "shared", None]


# -- channels and approvers -----------------------------------------------------------------


class Broken:
    def notify(self, req: ApprovalRequest) -> None:
        raise RuntimeError("slack is down")

    def update(self, req: ApprovalRequest) -> None:
        raise RuntimeError("slack is down")


def test_failing_channel_leaves_the_request_pending_for_others(gate: Gatekeeper) -> None:
    recorder = RecordingChannel()
    gate.add_channel(Broken())
    gate.add_channel(recorder)
    runs: list[int] = []

    @gate.guard
    def refund(amount: int) -> int:
        runs.append(amount)
        return amount

    def approve_when_seen() -> None:
        req = recorder.wait_for_request()
        assert gate.get(req.id).status is S.PENDING
        gate.approve(req.id, approver="carol")

    helper = threading.Thread(target=approve_when_seen)
    helper.start()
    assert refund(3) == 3
    helper.join()
    assert runs == [3]
    failed = [e for e in audit_events(gate) if e.kind == "channel.failed"]
    assert failed
    assert failed[0].data["channel"] == "Broken"
    assert "slack is down" in str(failed[0].data["error"])


def _finance_gate() -> tuple[Gatekeeper, RecordingChannel]:
    chan = RecordingChannel()
    gate = Gatekeeper(
        policy=make_policy(),
        approvers=[
            Approver(name="alice", groups=("finance",)),
            Approver(name="bob", groups=("finance",)),
            Approver(name="mallory", groups=("ops",)),
        ],
        channels=[chan],
    )
    return gate, chan


def test_unknown_approver_and_outsider_are_not_authorized() -> None:
    gate, chan = _finance_gate()
    done: list[str] = []

    @gate.guard
    def big_refund(amount: int) -> str:
        done.append("ran")
        return "ok"

    with ThreadPoolExecutor(1) as pool:
        fut = pool.submit(big_refund, 1000)
        req = chan.wait_for_request()
        with pytest.raises(NotAuthorized, match="not a configured approver"):
            gate.approve(req.id, approver="eve")
        with pytest.raises(NotAuthorized, match="finance"):
            gate.approve(req.id, approver="mallory")
        with pytest.raises(NotAuthorized):
            gate.deny(req.id, approver="mallory", comment="no")
        assert gate.get(req.id).status is S.PENDING
        assert gate.approve(req.id, approver="alice").status is S.PENDING
        assert gate.approve(req.id, approver="alice").status is S.PENDING  # counts once
        assert len(gate.get(req.id).approvals) == 1
        assert gate.approve(req.id, approver="bob").status is S.APPROVED
        assert fut.result(timeout=10) == "ok"
    assert done == ["ran"]


# -- interrupts -----------------------------------------------------------------------------


class InterruptedStore(MemoryStore):
    """A store whose blocking wait is interrupted, like Ctrl-C during the wait."""

    def wait(self, request_id: str, timeout: float) -> ApprovalRequest:
        raise KeyboardInterrupt


@pytest.mark.sync_face_only(
    "Ctrl-C lands in the blocking wait; the async face's interrupt is task cancellation"
)
def test_keyboard_interrupt_while_waiting_cancels_the_request() -> None:
    chan = RecordingChannel()
    gate = Gatekeeper(policy=make_policy(), store=InterruptedStore(), channels=[chan])
    runs: list[int] = []

    @gate.guard
    def refund(amount: int) -> None:
        runs.append(amount)

    with pytest.raises(KeyboardInterrupt):
        refund(1)
    req = gate.get(chan.notified[0].id)
    assert req.status is S.CANCELLED
    assert runs == []


async def test_cancelled_task_cancels_its_request(gate: Gatekeeper) -> None:
    chan = RecordingChannel()
    gate.add_channel(chan)
    runs: list[int] = []

    @gate.guard
    async def refund(amount: int) -> None:
        runs.append(amount)

    task = asyncio.create_task(refund(1))
    req = await asyncio.to_thread(chan.wait_for_request)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert gate.get(req.id).status is S.CANCELLED
    assert runs == []


# -- the audit chain ------------------------------------------------------------------------


def test_audit_chain_verifies_after_a_mixed_run(gate: Gatekeeper) -> None:
    decider = AutoDecider(approve=lambda r: r.call.args.get("amount", 0) < 10)
    gate.add_channel(decider)

    @gate.guard
    def read_docs() -> str:
        return "ok"

    @gate.guard
    def refund(amount: int) -> int:
        return amount

    @gate.guard
    def drop_table() -> None:
        pass

    with gate.session(agent="mixed"):
        read_docs()
        refund(5)
        with pytest.raises(ApprovalDenied):
            refund(50)
        with pytest.raises(ToolCallDenied):
            drop_table()
    report = gate.verify_audit()
    assert report.ok, report.problem
    assert report.count == len(audit_kinds(gate)) >= 8


def test_positional_and_keyword_calls_record_the_same_args() -> None:
    """The positional fast path binds exactly as Signature.bind does; wrong arity is refused."""
    from gatekeeper._tool import ToolSpec

    def move(src: str, dst: str) -> None: ...

    spec = ToolSpec.create(move, name=None, scopes=(), irreversible=False, risk=None, exclude=())
    by_position = spec.bind(("a", "b"), {}, 1024)
    by_keyword = spec.bind((), {"dst": "b", "src": "a"}, 1024)
    assert by_position.json_args == by_keyword.json_args == {"src": "a", "dst": "b"}
    assert by_position.digest == by_keyword.digest
    assert by_position.bound.args == ("a", "b")
    with pytest.raises(InvalidToolCall, match="missing a required argument"):
        spec.bind(("a",), {}, 1024)


def test_rebind_refuses_edits_that_would_run_other_values() -> None:
    """**kwargs can't shadow a named parameter; parameters can't be dropped; bytes round-trip."""
    from gatekeeper._tool import ToolSpec

    def f(a: int, **kw: int) -> None: ...

    def pay(amount: int, dry_run: bool = True) -> None: ...

    def put(blob: bytes) -> None: ...

    def spec(fn: Any) -> ToolSpec:
        return ToolSpec.create(fn, name=None, scopes=(), irreversible=False, risk=None, exclude=())

    original = spec(f).bind((1,), {"b": 2}, 1024).bound
    with pytest.raises(InvalidToolCall, match=r"repeats parameters \['a'\]"):
        spec(f).rebind({"a": 1, "kw": {"a": 2}}, original)
    paid = spec(pay).bind((100,), {"dry_run": False}, 1024).bound
    with pytest.raises(InvalidToolCall, match=r"missing \['dry_run'\]"):
        spec(pay).rebind({"amount": 5}, paid)
    assert spec(pay).rebind({"amount": 5, "dry_run": False}, paid).arguments == {
        "amount": 5,
        "dry_run": False,
    }
    stored = spec(put).bind((b"\x00\xff",), {}, 1024)
    assert spec(put).rebind(stored.json_args, stored.bound).arguments == {"blob": b"\x00\xff"}


def test_an_edit_of_the_wrong_type_is_refused_when_it_is_made() -> None:
    """`--args '{"amount": "fifty"}'` is refused to the approver with the reason, and the
    request stays pending for a proper decision (it is not reported as released)."""
    from gatekeeper import Approver, InvalidToolCall, Policy
    from gatekeeper.testing import RecordingChannel

    channel = RecordingChannel()
    gate = Gatekeeper(
        policy=Policy.from_yaml("version: 1\ndefault: require_approval\n"),
        approvers=[Approver(name="alice")],
        channels=[channel],
    )
    ran: list[float] = []

    @gate.guard
    def refund(order_id: str, amount: float) -> str:
        ran.append(amount)
        return "ok"

    import threading

    result: list[str] = []
    agent = threading.Thread(target=lambda: result.append(refund("A-1", 20.0)))
    agent.start()
    req = channel.wait_for_request()
    assert req.args_schema is not None
    with pytest.raises(InvalidToolCall, match="amount: 'fifty' is not of type 'number'"):
        gate.approve(req.id, approver="alice", args={"order_id": "A-1", "amount": "fifty"})
    assert gate.get(req.id).status.value == "pending" and gate.get(req.id).decisions == ()
    gate.approve(req.id, approver="alice", args={"order_id": "A-1", "amount": 15})
    agent.join(5)
    assert result == ["ok"] and ran == [15.0]


def test_an_invalid_tool_call_is_a_blocked_call() -> None:
    """The loop the docs recommend catches ToolCallBlocked: bad arguments are one too."""
    from gatekeeper import InvalidToolCall, ToolCallBlocked

    assert issubclass(InvalidToolCall, ToolCallBlocked)
