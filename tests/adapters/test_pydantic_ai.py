"""gatekeeper_pydantic_ai: a real Agent, scripted by a FunctionModel, decided through the gate."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest
from pydantic_ai import Agent
from pydantic_ai.capabilities import HandleDeferredToolCalls
from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    TextPart,
    ThinkingPart,
    ToolCallPart,
    ToolReturnPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.tools import (
    DeferredToolRequests,
    ToolApproved,
    ToolDefinition,
    ToolDenied,
)
from pydantic_ai.toolsets import (
    AbstractToolset,
    CombinedToolset,
    DynamicToolset,
    ExternalToolset,
    FunctionToolset,
)

from gatekeeper import (
    AgentHalted,
    ApprovalDenied,
    Gatekeeper,
    MemoryStore,
    Policy,
    RedisStore,
    RequestStatus,
    ToolCallDenied,
)
from gatekeeper.models import ApprovalRequest
from gatekeeper.testing import AutoDecider, RecordingChannel
from gatekeeper_pydantic_ai import (
    GatekeeperToolset,
    decide_deferred,
    decide_deferred_sync,
    deferred_handler,
)
from gatekeeper_pydantic_ai._reason import reason_for_call
from tests.conftest import RedisServer
from tests.gatekit import audit_events

POLICY = """
version: 1
default: allow
rules:
  - {id: refunds, match: {tool: refund}, verdict: require_approval}
  - {id: quick, match: {tool: quick_refund}, verdict: require_approval, approval: {timeout: 0.1}}
  - {id: no-drop, match: {tool: drop_table}, verdict: deny, reason: dropping tables is forbidden}
  - {id: tripwire, match: {tool: open_tunnel}, verdict: halt}
"""

DENIAL = 'Tool call denied by alice: "use the sandbox account". The tool was not run.'


class Tools:
    """The tools the agent is given, and a log of which ran with what."""

    def __init__(self) -> None:
        self.ran: list[tuple[str, dict[str, Any]]] = []
        ran = self.ran

        def lookup(order_id: str) -> str:
            """Look an order up."""
            ran.append(("lookup", {"order_id": order_id}))
            return f"order {order_id}: 50 EUR, paid"

        async def refund(order_id: str, amount: float) -> str:
            """Refund part of an order."""
            ran.append(("refund", {"order_id": order_id, "amount": amount}))
            return f"refunded {amount} on {order_id}"

        def quick_refund(order_id: str) -> str:
            """Refund, if someone answers quickly."""
            ran.append(("quick_refund", {"order_id": order_id}))
            return "refunded"

        def drop_table(name: str) -> str:
            """Drop a table."""
            ran.append(("drop_table", {"name": name}))
            return "dropped"

        def open_tunnel(port: int) -> str:
            """Open a tunnel."""
            ran.append(("open_tunnel", {"port": port}))
            return "open"

        self.toolset: FunctionToolset[None] = FunctionToolset(
            [lookup, refund, quick_refund, drop_table, open_tunnel]
        )


class Script:
    """A FunctionModel that answers from a script and keeps what it was sent at each step."""

    def __init__(self, *steps: ModelResponse) -> None:
        self.steps = list(steps)
        self.inputs: list[list[ModelMessage]] = []
        self.infos: list[AgentInfo] = []
        self.model = FunctionModel(self.respond)

    def respond(self, messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        self.inputs.append(list(messages))
        self.infos.append(info)
        return self.steps[len(self.inputs) - 1]

    def returns(self, step: int) -> dict[str, ToolReturnPart]:
        """The tool results the model was sent at ``step``, by tool call id."""
        request = self.inputs[step][-1]
        assert isinstance(request, ModelRequest)
        return {p.tool_call_id: p for p in request.parts if isinstance(p, ToolReturnPart)}


def call(tool: str, args: dict[str, Any] | str, call_id: str) -> ToolCallPart:
    return ToolCallPart(tool, args, tool_call_id=call_id)


def done() -> ModelResponse:
    return ModelResponse(parts=[TextPart("done")])


def make_gate(*channels: Any, store: Any = None) -> Gatekeeper:
    return Gatekeeper(
        policy=Policy.from_yaml(POLICY), store=store or MemoryStore(), channels=channels
    )


def gated_agent(gate: Gatekeeper, tools: Tools, script: Script, **options: Any) -> Agent[None, str]:
    return Agent(script.model, toolsets=[GatekeeperToolset(gate, tools.toolset, **options)])


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    """Threads standing in for a person deciding elsewhere."""
    with ThreadPoolExecutor(max_workers=2) as executor:
        yield executor


@pytest.fixture
def thread_loop() -> Iterator[None]:
    """Agent.run_sync drives this thread's event loop and leaves it open: close it after."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    yield
    asyncio.set_event_loop(None)
    loop.close()


@pytest.fixture
def redis_gates(
    redis_server: RedisServer, redis_prefix: str
) -> Iterator[tuple[Gatekeeper, Gatekeeper, RecordingChannel]]:
    """The agent's gate and an approver's gate: two RedisStores on one Redis (two processes)."""
    channel = RecordingChannel()
    agent_gate = make_gate(channel, store=RedisStore(redis_server.url, prefix=redis_prefix))
    approver_gate = make_gate(store=RedisStore(redis_server.url, prefix=redis_prefix))
    yield agent_gate, approver_gate, channel
    agent_gate.close()
    approver_gate.close()


def decide_as_alice(
    approver_gate: Gatekeeper, channel: RecordingChannel, count: int
) -> Callable[[], list[ApprovalRequest]]:
    """Alice, in another process: approves A-1's refund at 5 EUR, denies every other."""

    def decide() -> list[ApprovalRequest]:
        seen = [channel.wait_for_request(i) for i in range(1, count + 1)]
        for request in seen:
            assert request.id in {r.id for r in approver_gate.pending()}
            if request.call.args["order_id"] == "A-1":
                approver_gate.approve(
                    request.id, approver="alice", args={**request.call.args, "amount": 5}
                )
            else:
                approver_gate.deny(request.id, approver="alice", comment="use the sandbox account")
        return seen

    return decide


# -- GatekeeperToolset: decided during the run --------------------------------------------


@pytest.mark.redis
async def test_a_run_with_an_allowed_an_approved_and_a_denied_call(
    redis_gates: tuple[Gatekeeper, Gatekeeper, RecordingChannel], pool: ThreadPoolExecutor
) -> None:
    """Lookup runs at once; alice (another process) approves one refund with an edit, denies one."""
    agent_gate, approver_gate, channel = redis_gates
    tools = Tools()
    script = Script(
        ModelResponse(
            parts=[
                ThinkingPart("The customer was charged twice."),
                TextPart("I'll check the order, then refund both charges."),
                call("lookup", {"order_id": "A-1"}, "c-lookup"),
                call("refund", {"order_id": "A-1", "amount": 50}, "c-approved"),
                call("refund", '{"order_id": "B-2", "amount": 7.5}', "c-denied"),
            ]
        ),
        done(),
    )
    alice: Future[list[ApprovalRequest]] = pool.submit(
        decide_as_alice(approver_gate, channel, count=2)
    )
    with agent_gate.session(agent="billing-bot"):
        result = await gated_agent(agent_gate, tools, script).run("Refund the double charge")

    assert result.output == "done"
    held = alice.result(timeout=10)
    returned = script.returns(1)
    assert returned["c-lookup"].content == "order A-1: 50 EUR, paid"
    assert returned["c-approved"].content == "refunded 5.0 on A-1"
    assert returned["c-denied"].content == DENIAL
    assert returned["c-denied"].outcome == "denied"
    # the approved call ran with alice's arguments; the denied one never ran
    assert sorted(tools.ran, key=str) == [
        ("lookup", {"order_id": "A-1"}),
        ("refund", {"order_id": "A-1", "amount": 5.0}),
    ]
    # the approvers read the model's own words, and the arguments as validated
    assert {r.call.reason for r in held} == {
        "The customer was charged twice.\n\nI'll check the order, then refund both charges."
    }
    assert {r.call.agent for r in held} == {"billing-bot"}
    by_order = sorted(held, key=lambda r: str(r.call.args["order_id"]))
    assert [r.call.args["amount"] for r in by_order] == [50.0, 7.5]
    finals = {approver_gate.get(r.id).status for r in held}
    assert finals == {RequestStatus.EXECUTED, RequestStatus.DENIED}
    kinds = [e.kind for e in audit_events(agent_gate) if e.tool == "lookup"]
    assert kinds[0] == "call.allowed"


async def test_sync_and_async_tools_both_run_through_the_gate() -> None:
    """A sync tool (run by Pydantic AI in a thread) and an async one are gated alike."""
    channel = RecordingChannel()
    gate = make_gate(channel, AutoDecider(approver="alice"))
    tools = Tools()
    script = Script(
        ModelResponse(
            parts=[
                call("lookup", {"order_id": "A-1"}, "c-sync"),
                call("refund", {"order_id": "A-1", "amount": 3}, "c-async"),
            ]
        ),
        done(),
    )
    await gated_agent(gate, tools, script).run("go")
    returned = script.returns(1)
    assert returned["c-sync"].content == "order A-1: 50 EUR, paid"
    assert returned["c-async"].content == "refunded 3.0 on A-1"
    assert [r.call.tool for r in channel.notified] == ["refund"]
    kinds = {(e.tool, e.kind) for e in audit_events(gate)}
    assert {("lookup", "call.allowed"), ("refund", "call.held")} <= kinds


@pytest.mark.usefixtures("thread_loop")
def test_run_sync_works_and_keeps_the_session() -> None:
    """Agent.run_sync carries the gatekeeper session into the tool call."""
    channel = RecordingChannel()
    gate = make_gate(channel, AutoDecider(approver="alice"))
    tools = Tools()
    script = Script(
        ModelResponse(parts=[call("refund", {"order_id": "A-1", "amount": 3}, "c1")]), done()
    )
    with gate.session(agent="billing-bot", reason="customer called"):
        assert gated_agent(gate, tools, script).run_sync("go").output == "done"
    assert tools.ran == [("refund", {"order_id": "A-1", "amount": 3.0})]
    (request,) = channel.notified
    assert request.call.agent == "billing-bot"
    assert request.call.reason == "customer called"  # the model said nothing: the session's


@pytest.mark.parametrize(
    ("tool_call", "expected"),
    [
        (
            call("drop_table", {"name": "orders"}, "c1"),
            "Tool call drop_table denied by policy: dropping tables is forbidden. "
            "The tool was not run.",
        ),
        (call("quick_refund", {"order_id": "A-1"}, "c1"), "was not approved before"),
        (call("open_tunnel", {"port": 22}, "c1"), "halted"),
    ],
    ids=["policy-deny", "timeout", "halt"],
)
async def test_a_call_that_does_not_run_is_a_denied_result_the_model_reads(
    tool_call: ToolCallPart, expected: str
) -> None:
    gate = make_gate()  # nobody answers: the quick refund times out
    tools = Tools()
    script = Script(ModelResponse(parts=[tool_call]), done())
    result = await gated_agent(gate, tools, script).run("go")
    assert result.output == "done"  # the run went on
    returned = script.returns(1)["c1"]
    assert returned.outcome == "denied"
    assert expected in str(returned.content)
    assert str(returned.content).endswith("The tool was not run.")
    assert tools.ran == []


async def test_a_run_cancelled_while_a_call_waits_withdraws_its_request() -> None:
    channel = RecordingChannel()
    gate = make_gate(channel)
    tools = Tools()
    script = Script(
        ModelResponse(parts=[call("refund", {"order_id": "A-1", "amount": 3}, "c1")]), done()
    )
    run = asyncio.ensure_future(gated_agent(gate, tools, script).run("go"))
    request = await asyncio.to_thread(channel.wait_for_request)
    assert gate.get(request.id).status is RequestStatus.PENDING
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert gate.get(request.id).status is RequestStatus.CANCELLED
    assert tools.ran == []


async def test_on_blocked_raise_ends_the_run_with_the_gatekeeper_error() -> None:
    gate = make_gate(AutoDecider(approve=False, approver="alice", comment="no"))
    tools = Tools()
    script = Script(
        ModelResponse(parts=[call("refund", {"order_id": "A-1", "amount": 3}, "c1")]), done()
    )
    agent = gated_agent(gate, tools, script, on_blocked="raise")
    with pytest.raises(ApprovalDenied) as denied:
        await agent.run("go")
    assert denied.value.approver == "alice"
    assert tools.ran == []
    assert len(script.inputs) == 1  # the model was not asked again

    halting = Script(ModelResponse(parts=[call("open_tunnel", {"port": 22}, "c1")]), done())
    with pytest.raises(AgentHalted):
        await gated_agent(make_gate(), tools, halting, on_blocked="raise").run("go")


async def test_invalid_arguments_get_pydantic_ais_retry_and_never_reach_the_gate() -> None:
    """Pydantic AI validates first: nobody is asked to approve arguments that can't run."""
    channel = RecordingChannel()
    gate = make_gate(channel, AutoDecider(approver="alice"))
    tools = Tools()
    script = Script(
        ModelResponse(
            parts=[
                call("refund", {"order_id": "A-1", "amount": "lots"}, "c-type"),
                call("refund", '{"order_id": "A-1", "amou', "c-json"),
                call("lookup", {"order": "A-1"}, "c-missing"),
            ]
        ),
        ModelResponse(parts=[call("refund", {"order_id": "A-1", "amount": 2}, "c-fixed")]),
        done(),
    )
    await gated_agent(gate, tools, script).run("go")
    retries = script.returns(1)
    assert {p.outcome for p in retries.values()} == {"retried"}
    assert "valid number" in str(retries["c-type"].content)
    assert "Invalid JSON" in str(retries["c-json"].content)
    assert "order_id" in str(retries["c-missing"].content)
    # only the corrected call reached the gate (and the approver)
    assert [r.call.args for r in channel.notified] == [{"order_id": "A-1", "amount": 2.0}]
    assert tools.ran == [("refund", {"order_id": "A-1", "amount": 2.0})]
    assert {e.call_id for e in audit_events(gate)} == {channel.notified[0].call.id}


async def test_arguments_too_large_to_record_are_a_failed_result_and_nothing_runs() -> None:
    gate = Gatekeeper(policy=Policy.from_yaml(POLICY), store=MemoryStore(), max_args_bytes=64)
    tools = Tools()
    script = Script(ModelResponse(parts=[call("lookup", {"order_id": "A" * 100}, "c1")]), done())
    await gated_agent(gate, tools, script).run("go")
    returned = script.returns(1)["c1"]
    assert returned.outcome == "failed"
    assert "over the limit of 64" in str(returned.content)
    assert str(returned.content).endswith("The tool was not run.")
    assert tools.ran == []


async def test_an_unknown_tool_gets_pydantic_ais_answer_and_never_reaches_the_gate() -> None:
    """Pydantic AI resolves names before any toolset is called, so nothing is audited."""
    gate = make_gate()
    tools = Tools()
    script = Script(ModelResponse(parts=[call("rm_rf", {"path": "/"}, "c1")]), done())
    await gated_agent(gate, tools, script).run("go")
    returned = script.returns(1)["c1"]
    assert returned.outcome == "retried"
    assert "Unknown tool name: 'rm_rf'" in str(returned.content)
    assert audit_events(gate) == []
    assert tools.ran == []


async def test_the_model_sees_the_same_tools_and_instructions_with_and_without_the_gate() -> None:
    tools = FunctionToolset(list(Tools().toolset.tools.values()), instructions="Be brief.")
    plain, gated = Script(done()), Script(done())
    await Agent(plain.model, toolsets=[tools]).run("go")
    await Agent(gated.model, toolsets=[GatekeeperToolset(make_gate(), tools)]).run("go")
    names = [t.name for t in gated.infos[0].function_tools]
    assert names == ["lookup", "refund", "quick_refund", "drop_table", "open_tunnel"]
    assert gated.infos[0].function_tools == plain.infos[0].function_tools
    assert gated.infos[0].instructions == plain.infos[0].instructions == "Be brief."


async def test_a_toolset_rebuilt_for_each_run_is_still_gated() -> None:
    """WrapperToolset copies itself around a per-run toolset (dataclasses.replace)."""
    channel = RecordingChannel()
    gate = make_gate(channel, AutoDecider(approver="alice"))
    tools = Tools()
    dynamic: DynamicToolset[None] = DynamicToolset(lambda ctx: tools.toolset)
    script = Script(
        ModelResponse(parts=[call("refund", {"order_id": "A-1", "amount": 3}, "c1")]), done()
    )
    await Agent(script.model, toolsets=[GatekeeperToolset(gate, dynamic)]).run("go")
    assert [r.call.tool for r in channel.notified] == ["refund"]
    assert tools.ran == [("refund", {"order_id": "A-1", "amount": 3.0})]


async def test_an_approvers_edit_that_fails_the_tools_schema_is_not_run() -> None:
    channel = RecordingChannel()
    edit = {"order_id": "A-1", "amount": "lots"}
    gate = make_gate(channel, AutoDecider(approver="alice", args=edit))
    tools = Tools()
    script = Script(
        ModelResponse(parts=[call("refund", {"order_id": "A-1", "amount": 3}, "c1")]), done()
    )
    await gated_agent(gate, tools, script).run("go")
    returned = script.returns(1)["c1"]
    assert returned.outcome == "failed"
    assert returned.content == (
        "The approver's edited arguments for refund are invalid: "
        "amount: Input should be a valid number, unable to parse string as a number. "
        "The tool was not run."
    )
    assert tools.ran == []
    (request,) = channel.notified
    assert gate.get(request.id).status is RequestStatus.FAILED


async def test_the_reason_is_the_words_of_the_response_that_made_the_call() -> None:
    channel = RecordingChannel()
    gate = make_gate(channel, AutoDecider(approver="alice"))
    tools = Tools()
    script = Script(
        ModelResponse(parts=[TextPart("Looking it up."), call("lookup", {"order_id": "A"}, "a")]),
        ModelResponse(
            parts=[
                ThinkingPart("It was paid twice."),
                call("refund", {"order_id": "A", "amount": 1}, "b"),
                TextPart("Refunding the second charge."),
            ]
        ),
        ModelResponse(parts=[call("refund", {"order_id": "A", "amount": 2}, "c")]),
        done(),
    )
    await gated_agent(gate, tools, script).run("go")
    reasons = [r.call.reason for r in channel.notified]
    assert reasons == ["It was paid twice.\n\nRefunding the second charge.", None]


def test_reason_for_call_finds_the_response_with_that_call() -> None:
    messages: list[ModelMessage] = [
        ModelResponse(parts=[TextPart("first"), call("x", {}, "1")]),
        ModelResponse(parts=[TextPart("  "), call("x", {}, "2")]),
        ModelResponse(parts=[TextPart("third"), call("x", {}, "3")]),
    ]
    assert reason_for_call(messages, "1") == "first"
    assert reason_for_call(messages, "2") is None
    assert reason_for_call(messages, "4") is None
    assert reason_for_call(messages, None) is None
    assert reason_for_call(None, "1") is None


def test_the_public_surface_is_exactly_all() -> None:
    import gatekeeper_pydantic_ai as package

    public = {name for name in vars(package) if not name.startswith("_")}
    assert package.__all__ == sorted(package.__all__)
    assert public == set(package.__all__)
    assert all(getattr(package, name).__doc__ for name in package.__all__)


def test_on_blocked_must_be_return_or_raise() -> None:
    gate = make_gate()
    with pytest.raises(ValueError, match="on_blocked"):
        GatekeeperToolset(gate, Tools().toolset, on_blocked="ignore")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="on_blocked"):
        deferred_handler(gate, on_blocked="log")  # type: ignore[arg-type]


# -- Pydantic AI's own approvals, decided through the gate ---------------------------------


def approval_agent(tools: Tools, script: Script) -> Agent[None, str | DeferredToolRequests]:
    needs_approval = tools.toolset.approval_required(
        lambda ctx, tool_def, args: tool_def.name != "lookup"
    )
    return Agent(script.model, toolsets=[needs_approval], output_type=[str, DeferredToolRequests])


@pytest.mark.redis
async def test_deferred_requests_decided_by_a_person_then_resumed(
    redis_gates: tuple[Gatekeeper, Gatekeeper, RecordingChannel], pool: ThreadPoolExecutor
) -> None:
    """Run → DeferredToolRequests → alice decides elsewhere → the next run uses her answers."""
    agent_gate, approver_gate, channel = redis_gates
    tools = Tools()
    script = Script(
        ModelResponse(
            parts=[
                TextPart("Refunding both charges."),
                call("lookup", {"order_id": "A-1"}, "c-lookup"),
                call("refund", {"order_id": "A-1", "amount": 50}, "c-approved"),
                call("refund", {"order_id": "B-2", "amount": 7}, "c-denied"),
            ]
        ),
        done(),
    )
    agent = approval_agent(tools, script)
    first = await agent.run("Refund the double charge")
    requests = first.output
    assert isinstance(requests, DeferredToolRequests)
    assert [c.tool_call_id for c in requests.approvals] == ["c-approved", "c-denied"]
    assert tools.ran == [("lookup", {"order_id": "A-1"})]

    alice = pool.submit(decide_as_alice(approver_gate, channel, count=2))
    results = await decide_deferred(
        agent_gate, requests, toolset=tools.toolset, messages=first.all_messages()
    )
    held = alice.result(timeout=10)
    assert results.approvals == {
        "c-approved": ToolApproved(override_args={"order_id": "A-1", "amount": 5}),
        "c-denied": ToolDenied(DENIAL),
    }
    assert {r.call.reason for r in held} == {"Refunding both charges."}
    # gatekeeper's record ends at the release: Pydantic AI runs the tool
    statuses = sorted(approver_gate.get(r.id).status.value for r in held)
    assert statuses == ["denied", "executed"]

    second = await agent.run(message_history=first.all_messages(), deferred_tool_results=results)
    assert second.output == "done"
    returned = script.returns(1)
    assert returned["c-approved"].content == "refunded 5.0 on A-1"
    assert returned["c-denied"].content == DENIAL
    assert returned["c-denied"].outcome == "denied"
    assert tools.ran[1:] == [("refund", {"order_id": "A-1", "amount": 5.0})]


async def test_decide_deferred_follows_the_policy_and_keeps_unedited_arguments() -> None:
    channel = RecordingChannel()
    gate = make_gate(channel, AutoDecider(approver="alice"))
    requests = DeferredToolRequests(
        approvals=[
            call("lookup", {"order_id": "A-1"}, "allowed"),
            call("refund", '{"order_id": "A-1", "amount": 5.5}', "approved"),
            call("drop_table", {"name": "orders"}, "denied"),
            call("refund", '{"order_id": ', "garbled"),
            call("rm_rf", {"path": "/"}, "unknown"),
            call("refund", {"order_id": "A-1", "amount": "lots"}, "invalid"),
        ]
    )
    results = await decide_deferred(gate, requests, toolset=Tools().toolset)
    assert results.approvals == {
        "allowed": ToolApproved(),
        "approved": ToolApproved(),
        "denied": ToolDenied(
            "Tool call drop_table denied by policy: dropping tables is forbidden. "
            "The tool was not run."
        ),
        "garbled": ToolDenied("refund: the arguments are not a JSON object. The tool was not run."),
        "unknown": ToolDenied(
            "rm_rf: no such tool in the toolset, so its arguments can't be checked. "
            "The tool was not run."
        ),
        "invalid": ToolDenied(
            "refund: invalid arguments (amount: Input should be a valid number, "
            "unable to parse string as a number). The tool was not run."
        ),
    }
    assert [r.call.args for r in channel.notified] == [{"order_id": "A-1", "amount": 5.5}]


async def test_decide_deferred_raise_withdraws_the_calls_still_waiting() -> None:
    channel = RecordingChannel()
    gate = make_gate(channel)  # nobody decides the refund
    requests = DeferredToolRequests(
        approvals=[
            call("refund", {"order_id": "A-1", "amount": 5}, "held"),
            call("drop_table", {"name": "orders"}, "denied"),
        ]
    )
    with pytest.raises(ToolCallDenied):
        await decide_deferred(gate, requests, toolset=Tools().toolset, on_blocked="raise")
    # The refund may or may not have been held when the denial came: whatever it
    # reached, nothing is left waiting, and what was held is cancelled.
    assert gate.pending() == []
    assert {r.status for r in gate.store.history(limit=10)} <= {RequestStatus.CANCELLED}


def test_decide_deferred_sync_blocks_until_decided() -> None:
    gate = make_gate(
        AutoDecider(approve=False, approver="alice", comment="use the sandbox account")
    )
    requests = DeferredToolRequests(approvals=[call("refund", {"order_id": "B", "amount": 1}, "x")])
    with gate.session(agent="billing-bot"):
        results = decide_deferred_sync(gate, requests, toolset=Tools().toolset)
    assert results.approvals == {"x": ToolDenied(DENIAL)}
    (event,) = [e for e in audit_events(gate) if e.kind == "call.held"]
    assert event.agent == "billing-bot"


async def test_decide_deferred_sync_refuses_to_run_inside_an_event_loop() -> None:
    with pytest.raises(RuntimeError, match="await decide_deferred"):
        decide_deferred_sync(make_gate(), DeferredToolRequests(), toolset=Tools().toolset)


async def test_deferred_handler_decides_during_the_run() -> None:
    """With HandleDeferredToolCalls the run waits for the people and goes on."""
    channel = RecordingChannel()
    alice = AutoDecider(
        approve=lambda r: r.call.args["order_id"] == "A-1",
        approver="alice",
        comment="use the sandbox account",
        args=lambda r: {**r.call.args, "amount": 5},
    )
    gate = make_gate(channel, alice)
    tools = Tools()
    script = Script(
        ModelResponse(
            parts=[
                TextPart("Refunding both."),
                call("refund", {"order_id": "A-1", "amount": 50}, "c-approved"),
                call("refund", {"order_id": "B-2", "amount": 7}, "c-denied"),
            ]
        ),
        done(),
    )
    agent = Agent(
        script.model,
        toolsets=[tools.toolset.approval_required()],
        capabilities=[HandleDeferredToolCalls(handler=deferred_handler(gate))],
    )
    result = await agent.run("go")
    assert result.output == "done"
    returned = script.returns(1)
    assert returned["c-approved"].content == "refunded 5.0 on A-1"
    assert returned["c-denied"].content == DENIAL
    assert returned["c-denied"].outcome == "denied"
    assert tools.ran == [("refund", {"order_id": "A-1", "amount": 5.0})]
    assert {r.call.reason for r in channel.notified} == {"Refunding both."}


async def test_deferred_handler_leaves_external_calls_to_the_app() -> None:
    gate = make_gate()
    external: AbstractToolset[None] = ExternalToolset(
        [
            ToolDefinition(
                name="ask_warehouse",
                parameters_json_schema={"type": "object", "properties": {}},
            )
        ]
    )
    script = Script(ModelResponse(parts=[call("ask_warehouse", {}, "c1")]), done())
    agent = Agent(
        script.model,
        toolsets=[external],
        output_type=[str, DeferredToolRequests],
        capabilities=[HandleDeferredToolCalls(handler=deferred_handler(gate))],
    )
    result = await agent.run("go")
    assert isinstance(result.output, DeferredToolRequests)
    assert [c.tool_call_id for c in result.output.calls] == ["c1"]
    assert audit_events(gate) == []


# -- defaults, double gating, invalid calls, edits -------------------------------------------

PAY_POLICY = """
version: 1
default: require_approval
rules:
  - {id: big, match: {tool: pay, args: {amount: {gt: 100}}}, verdict: deny, reason: too much}
"""


def pay_tools(ran: list[tuple[str, float]]) -> FunctionToolset[None]:
    def pay(to: str, amount: float = 5000) -> str:
        """Pay someone (5000 unless told otherwise)."""
        ran.append((to, amount))
        return f"paid {amount} to {to}"

    return FunctionToolset([pay])


async def test_the_deferred_handler_checks_the_arguments_with_their_defaults() -> None:
    """The model leaves out amount (default 5000): the policy sees 5000 and denies."""
    channel = RecordingChannel()
    gate = Gatekeeper(
        policy=Policy.from_yaml(PAY_POLICY),
        store=MemoryStore(),
        channels=[channel, AutoDecider(approver="alice")],
    )
    ran: list[tuple[str, float]] = []
    script = Script(ModelResponse(parts=[call("pay", {"to": "x"}, "c1")]), done())
    agent = Agent(
        script.model,
        toolsets=[pay_tools(ran).approval_required()],
        capabilities=[HandleDeferredToolCalls(handler=deferred_handler(gate))],
    )
    await agent.run("pay x")
    returned = script.returns(1)["c1"]
    assert returned.outcome == "denied"
    assert "denied by policy: too much" in str(returned.content)
    assert ran == []
    assert channel.notified == []


async def test_decide_deferred_shows_the_approver_the_defaults_and_runs_exactly_those() -> None:
    """Out of the run: the approver sees amount=5000, and ToolApproved carries it."""
    policy = Policy.from_yaml("version: 1\ndefault: require_approval\n")
    channel = RecordingChannel()
    gate = Gatekeeper(
        policy=policy, store=MemoryStore(), channels=[channel, AutoDecider(approver="alice")]
    )
    ran: list[tuple[str, float]] = []
    tools = pay_tools(ran)
    requests = DeferredToolRequests(approvals=[call("pay", {"to": "x"}, "c1")])
    results = await decide_deferred(gate, requests, toolset=tools.approval_required())
    (request,) = channel.notified
    assert request.call.args == {"to": "x", "amount": 5000.0}
    assert results.approvals == {"c1": ToolApproved(override_args={"to": "x", "amount": 5000.0})}


def test_a_toolset_that_also_needs_pydantic_ais_approval_is_refused() -> None:
    """GatekeeperToolset + approval_required() would ask a person twice for one call."""
    gate = make_gate()
    tools = Tools().toolset
    flagged: FunctionToolset[None] = FunctionToolset(
        list(Tools().toolset.tools.values()), requires_approval=True
    )
    for wrapped in (
        tools.approval_required(),
        tools.approval_required().prefixed("billing"),
        CombinedToolset([FunctionToolset([]), tools.approval_required()]),
        flagged,
    ):
        with pytest.raises(ValueError, match="decided twice"):
            GatekeeperToolset(gate, wrapped)
    GatekeeperToolset(gate, tools.prefixed("billing"))  # no approval inside: fine


async def test_unrecordable_arguments_are_a_failed_result_even_with_on_blocked_raise() -> None:
    gate = Gatekeeper(policy=Policy.from_yaml(POLICY), store=MemoryStore(), max_args_bytes=64)
    tools = Tools()
    script = Script(ModelResponse(parts=[call("lookup", {"order_id": "A" * 100}, "c1")]), done())
    result = await gated_agent(gate, tools, script, on_blocked="raise").run("go")
    assert result.output == "done"
    returned = script.returns(1)["c1"]
    assert returned.outcome == "failed"
    assert "over the limit of 64" in str(returned.content)
    assert tools.ran == []


async def test_an_edit_equal_in_python_but_not_in_json_runs_as_approved() -> None:
    """true -> 1 compares equal with ==; the tool must still get the approver's 1."""
    ran: list[Any] = []

    def set_limit(value: int | bool) -> str:
        """Set a limit (or turn it on)."""
        ran.append(value)
        return "set"

    gate = Gatekeeper(
        policy=Policy.from_yaml("version: 1\ndefault: require_approval\n"),
        store=MemoryStore(),
        channels=[AutoDecider(approver="alice", args={"value": 1})],
    )
    script = Script(ModelResponse(parts=[call("set_limit", {"value": True}, "c1")]), done())
    toolset = GatekeeperToolset(gate, FunctionToolset([set_limit]))
    await Agent(script.model, toolsets=[toolset]).run("go")
    assert ran == [1]
    assert type(ran[0]) is int


async def test_the_toolset_checks_the_arguments_with_their_defaults() -> None:
    gate = Gatekeeper(policy=Policy.from_yaml(PAY_POLICY), store=MemoryStore())
    ran: list[tuple[str, float]] = []
    script = Script(ModelResponse(parts=[call("pay", {"to": "x"}, "c1")]), done())
    await Agent(script.model, toolsets=[GatekeeperToolset(gate, pay_tools(ran))]).run("go")
    assert "denied by policy: too much" in str(script.returns(1)["c1"].content)
    assert ran == []


# -- a person writes the result instead --------------------------------------------------------
async def test_a_written_response_is_the_tool_return_the_model_reads() -> None:
    gate = make_gate(AutoDecider(approver="alice", respond="Refunded by hand already."))
    tools = Tools()
    script = Script(
        ModelResponse(parts=[call("refund", {"order_id": "A-1", "amount": 5}, "c1")]), done()
    )
    result = await gated_agent(gate, tools, script).run("go")
    assert result.output == "done"
    returned = script.returns(1)["c1"]
    assert returned.content == "Refunded by hand already." and returned.outcome == "success"
    assert tools.ran == []


async def test_a_written_response_to_a_deferred_approval_is_what_the_model_reads() -> None:
    gate = make_gate(AutoDecider(approver="alice", respond="Done by hand; don't retry."))
    tools = Tools()
    script = Script(
        ModelResponse(parts=[call("refund", {"order_id": "A-1", "amount": 5}, "c1")]), done()
    )
    agent = Agent(
        script.model,
        toolsets=[tools.toolset.approval_required()],
        capabilities=[HandleDeferredToolCalls(handler=deferred_handler(gate))],
    )
    assert (await agent.run("go")).output == "done"
    returned = script.returns(1)["c1"]
    # Pydantic AI's approval results approve or deny: the person's text comes back as a denial's
    assert returned.content == "Done by hand; don't retry." and returned.outcome == "denied"
    assert tools.ran == []


async def test_the_ask_a_person_tool_is_held_once_as_a_question_and_answered() -> None:
    inbox = RecordingChannel()
    gate = make_gate(inbox, AutoDecider(approver="alice", respond="EUR"))
    tools = FunctionToolset([gate.ask_tool()])
    script = Script(
        ModelResponse(parts=[call("ask_a_person", {"question": "Which currency?"}, "q1")]), done()
    )
    agent = Agent(script.model, toolsets=[GatekeeperToolset(gate, tools)])
    assert (await agent.run("go")).output == "done"
    assert script.returns(1)["q1"].content == "EUR"
    assert [r.kind for r in inbox.notified] == ["question"]


async def test_an_approvers_comment_reaches_the_model_beside_the_tool_return() -> None:
    gate = make_gate(AutoDecider(approver="alice", comment="fine, this once"))
    tools = Tools()
    script = Script(
        ModelResponse(parts=[call("refund", {"order_id": "A-1", "amount": 5}, "c1")]), done()
    )
    await gated_agent(gate, tools, script).run("go")
    assert script.returns(1)["c1"].content == "refunded 5.0 on A-1"  # the tool's own result
    request = script.inputs[1][-1]
    told = [str(p.content) for p in request.parts if type(p).__name__ == "UserPromptPart"]
    assert told == ['Note from the approval (alice): alice said: "fine, this once".']


async def test_a_waiting_call_is_told_to_on_held_inside_a_run() -> None:
    """`gatekeeper.on_held` around `agent.run`: the app learns each request a call waits for."""
    from gatekeeper import on_held

    channel = RecordingChannel()
    gate = make_gate(channel, AutoDecider(approver="alice"))
    script = Script(
        ModelResponse(parts=[call("refund", {"order_id": "A-1", "amount": 3}, "c1")]), done()
    )
    waiting: list[str] = []
    with on_held(lambda request: waiting.append(request.id)):
        await gated_agent(gate, Tools(), script).run("go")
    assert waiting == [r.id for r in channel.notified] and len(waiting) == 1
