"""gatekeeper_openai with the OpenAI Agents SDK: real Agent and Runner, a scripted model.

The model is a ``Model`` of our own that answers each turn from a script and
keeps what the SDK sent it (``input`` and ``tools``), so the tests read what
the model would have read after each tool call.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import threading
import warnings
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

import pytest
from agents import (
    Agent,
    FunctionTool,
    Model,
    ModelResponse,
    RunConfig,
    Runner,
    RunResult,
    Usage,
    function_tool,
)
from agents.exceptions import ModelBehaviorError
from agents.models.chatcmpl_converter import Converter as ChatConverter
from agents.models.openai_responses import Converter as ResponsesConverter
from openai.types.responses import (
    ResponseFunctionToolCall,
    ResponseOutputMessage,
    ResponseOutputText,
    ResponseReasoningItem,
)
from openai.types.responses.response_reasoning_item import Summary

from gatekeeper import (
    ApprovalDenied,
    Gatekeeper,
    MemoryStore,
    Policy,
    RedisStore,
    ToolCallBlocked,
    ToolCallDenied,
)
from gatekeeper.testing import AutoDecider, RecordingChannel
from gatekeeper_openai import (
    CallReasons,
    decide_interruptions,
    decide_interruptions_sync,
    gate_tool,
    gate_tools,
)
from tests.conftest import RedisServer
from tests.gatekit import audit_events

POLICY = """
version: 1
default: allow
rules:
  - {id: refunds, match: {tool: refund}, verdict: require_approval}
  - {id: wires, match: {tool: wire}, verdict: require_approval}
  - {id: slow, match: {tool: slow_report}, verdict: require_approval}
  - {id: quick, match: {tool: quick_refund}, verdict: require_approval, approval: {timeout: 0.1}}
  - {id: no-drop, match: {tool: drop_table}, verdict: deny, reason: dropping tables is forbidden}
"""
DENIAL = 'Tool call denied by alice: "use the sandbox account". The tool was not run.'


# -- a scripted model -------------------------------------------------------------------------
Step = Sequence[Any] | Callable[[list[Any]], Sequence[Any]]


class ScriptModel(Model):
    """Answers turn n with ``steps[n]``; remembers each turn's input and tools."""

    def __init__(self, steps: Sequence[Step]) -> None:
        self.steps = list(steps)
        self.inputs: list[list[Any]] = []
        self.tools: list[list[Any]] = []

    async def get_response(
        self,
        system_instructions: str | None,
        input: str | list[Any],
        model_settings: Any,
        tools: list[Any],
        output_schema: Any,
        handoffs: list[Any],
        tracing: Any,
        *,
        previous_response_id: str | None,
        conversation_id: str | None,
        prompt: Any,
    ) -> ModelResponse:
        items = [{"role": "user", "content": input}] if isinstance(input, str) else input
        self.inputs.append(copy.deepcopy(items))
        self.tools.append(list(tools))
        step = self.steps[len(self.inputs) - 1]
        output = step(self.inputs[-1]) if callable(step) else step
        return ModelResponse(output=list(output), usage=Usage(), response_id=None)

    def stream_response(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        raise NotImplementedError("these tests run Runner.run")

    def outputs(self, turn: int) -> dict[str, str]:
        """The tool results the model read at ``turn`` (0-based), by call id."""
        return {
            item["call_id"]: item["output"]
            for item in self.inputs[turn]
            if isinstance(item, dict) and item.get("type") == "function_call_output"
        }


def say(text: str) -> ResponseOutputMessage:
    return ResponseOutputMessage(
        id=f"msg-{abs(hash(text))}",
        type="message",
        role="assistant",
        status="completed",
        content=[ResponseOutputText(type="output_text", text=text, annotations=[])],
    )


def think(text: str) -> ResponseReasoningItem:
    return ResponseReasoningItem(
        id="rs-1", type="reasoning", summary=[Summary(type="summary_text", text=text)]
    )


def call(name: str, args: dict[str, Any] | str, call_id: str) -> ResponseFunctionToolCall:
    raw = args if isinstance(args, str) else json.dumps(args)
    return ResponseFunctionToolCall(
        type="function_call", name=name, arguments=raw, call_id=call_id, id=f"fc-{call_id}"
    )


async def run(agent: Agent[Any], start: Any) -> RunResult:
    return await Runner.run(agent, start, run_config=RunConfig(tracing_disabled=True))


# -- tools ---------------------------------------------------------------------------------------
class Ledger:
    """Tools that record what ran, with what."""

    def __init__(self, *, needs_approval: bool = False) -> None:
        self.ran: list[tuple[str, dict[str, Any]]] = []
        ran = self.ran

        @function_tool
        def lookup(order_id: str) -> str:
            """Look up an order."""
            ran.append(("lookup", {"order_id": order_id}))
            return f"order {order_id}: shipped"

        @function_tool(needs_approval=needs_approval)
        async def refund(order_id: str, amount: float) -> str:
            """Refund part of an order.

            Args:
                order_id: The order to refund.
                amount: How much to refund.
            """
            ran.append(("refund", {"order_id": order_id, "amount": amount}))
            return f"refunded {amount} on {order_id}"

        @function_tool(needs_approval=needs_approval)
        def wire(to: str, amount: float) -> str:
            """Wire money to an account."""
            ran.append(("wire", {"to": to, "amount": amount}))
            return "sent"

        @function_tool
        def drop_table(name: str) -> str:
            """Drop a table."""
            ran.append(("drop_table", {"name": name}))
            return "dropped"

        self.lookup, self.refund, self.wire, self.drop_table = lookup, refund, wire, drop_table

    @property
    def tools(self) -> list[FunctionTool]:
        return [self.lookup, self.refund, self.wire, self.drop_table]


def memory_gate(*channels: Any) -> Gatekeeper:
    return Gatekeeper(policy=Policy.from_yaml(POLICY), store=MemoryStore(), channels=channels)


# -- the whole run -------------------------------------------------------------------------------
@pytest.fixture
def redis_gates(redis_server: RedisServer, redis_prefix: str) -> Iterator[tuple[Gatekeeper, ...]]:
    """The agent's gate and an approver's own gate, on one Redis: two processes' view."""
    stores = [RedisStore(redis_server.url, prefix=redis_prefix) for _ in range(2)]
    yield tuple(Gatekeeper(policy=Policy.from_yaml(POLICY), store=s) for s in stores)
    for store in stores:
        store.close()


@pytest.mark.redis
async def test_a_run_with_an_allowed_an_approved_and_a_denied_call(
    redis_gates: tuple[Gatekeeper, Gatekeeper],
) -> None:
    """The model reads the lookup, the refund as approved (edited) and the wire's denial."""
    gate, approver_gate = redis_gates
    recorder = RecordingChannel()
    gate.add_channel(recorder)
    ledger = Ledger()
    reasons = CallReasons()
    model = ScriptModel(
        [
            [say("Let me check the order first."), call("lookup", {"order_id": "A-1"}, "c1")],
            [
                say("The parcel was damaged, so the customer is owed 20."),
                call("refund", {"order_id": "A-1", "amount": 20}, "c2"),
                call("wire", {"to": "acct-9", "amount": 1000}, "c3"),
            ],
            [say("Done.")],
        ]
    )
    agent = Agent(
        name="billing-bot",
        model=model,
        tools=gate_tools(gate, ledger.tools, reasons=reasons),
        hooks=reasons,
    )

    def approver() -> None:  # another process: told by the channel, deciding through its own gate
        for n in (1, 2):
            request = recorder.wait_for_request(n)
            if request.call.tool == "refund":
                approver_gate.approve(
                    request.id, approver="alice", args={"order_id": "A-1", "amount": 15}
                )
            else:
                approver_gate.deny(request.id, approver="alice", comment="use the sandbox account")

    deciding = threading.Thread(target=approver)
    deciding.start()
    result = await run(agent, "refund order A-1, it arrived broken")
    deciding.join(timeout=10)

    assert result.final_output == "Done."
    assert model.outputs(1) == {"c1": "order A-1: shipped"}
    assert model.outputs(2) == {
        "c1": "order A-1: shipped",
        "c2": "refunded 15.0 on A-1\n\nNote from the approval (alice): alice changed the "
        'arguments; the tool ran with {"amount":15,"order_id":"A-1"}.',
        "c3": DENIAL,
    }
    assert ledger.ran == [
        ("lookup", {"order_id": "A-1"}),
        ("refund", {"order_id": "A-1", "amount": 15.0}),  # the approver's amount, not the model's
    ]
    reasons_read = {r.call.tool: r.call.reason for r in recorder.notified}
    assert reasons_read == {
        "refund": "The parcel was damaged, so the customer is owed 20.",
        "wire": "The parcel was damaged, so the customer is owed 20.",
    }
    kinds = {(e.kind, e.tool) for e in audit_events(approver_gate)}  # one record, both processes
    assert {
        ("call.allowed", "lookup"),
        ("request.approved", "refund"),
        ("request.executed", "refund"),
        ("request.denied", "wire"),
    } <= kinds


# -- what the model sees -------------------------------------------------------------------------
def test_the_model_is_shown_the_same_tools() -> None:
    """Name, description, schema and strictness: identical on the wire, both APIs."""
    ledger = Ledger()
    gated = gate_tools(memory_gate(), ledger.tools)
    assert ResponsesConverter.convert_tools(gated, []).tools == (
        ResponsesConverter.convert_tools(ledger.tools, []).tools
    )
    assert [ChatConverter.tool_to_openai(t) for t in gated] == [
        ChatConverter.tool_to_openai(t) for t in ledger.tools
    ]
    for plain, wrapped in zip(ledger.tools, gated, strict=True):
        assert (wrapped.name, wrapped.description, wrapped.strict_json_schema) == (
            plain.name,
            plain.description,
            plain.strict_json_schema,
        )
        assert wrapped.params_json_schema == plain.params_json_schema
        assert wrapped is not plain


async def test_the_model_is_handed_the_gated_tools_by_the_runner() -> None:
    ledger = Ledger()
    model = ScriptModel([[say("nothing to do")]])
    gated = gate_tools(memory_gate(), ledger.tools)
    await run(Agent(name="a", model=model, tools=gated), "hi")
    assert [t.name for t in model.tools[0]] == ["lookup", "refund", "wire", "drop_table"]
    assert model.tools[0] == gated


# -- sync and async tools --------------------------------------------------------------------------
async def test_sync_and_async_tools_are_held_and_run_once_approved() -> None:
    recorder = RecordingChannel()
    gate = memory_gate(recorder, AutoDecider(approver="alice"))
    ledger = Ledger()
    model = ScriptModel(
        [
            [
                call("refund", {"order_id": "A-1", "amount": 5}, "c1"),  # async def
                call("wire", {"to": "acct-1", "amount": 7}, "c2"),  # def
            ],
            [say("ok")],
        ]
    )
    await run(Agent(name="a", model=model, tools=gate_tools(gate, ledger.tools)), "go")
    assert model.outputs(1) == {"c1": "refunded 5.0 on A-1", "c2": "sent"}
    assert sorted(ledger.ran, key=lambda r: r[0]) == [
        ("refund", {"order_id": "A-1", "amount": 5.0}),
        ("wire", {"to": "acct-1", "amount": 7.0}),
    ]
    assert sorted(r.call.tool for r in recorder.notified) == ["refund", "wire"]
    assert all(r.call.reason is None for r in recorder.notified)  # no CallReasons given


async def test_a_hand_made_function_tool_is_gated_too() -> None:
    seen: list[str] = []

    async def invoke(ctx: Any, args_json: str) -> str:
        seen.append(args_json)
        return "made"

    tool = FunctionTool(
        name="refund",
        description="Refund an order.",
        params_json_schema={
            "type": "object",
            "properties": {"order_id": {"type": "string"}},
            "required": ["order_id"],
            "additionalProperties": False,
        },
        on_invoke_tool=invoke,
    )
    gate = memory_gate(AutoDecider(approver="alice", args={"order_id": "A-2"}))
    model = ScriptModel([[call("refund", {"order_id": "A-1"}, "c1")], [say("ok")]])
    await run(Agent(name="a", model=model, tools=[gate_tool(gate, tool)]), "go")
    assert model.outputs(1) == {
        "c1": "made\n\nNote from the approval (alice): alice changed the arguments; the tool "
        'ran with {"order_id":"A-2"}.'
    }
    assert [json.loads(s) for s in seen] == [{"order_id": "A-2"}]


# -- bad arguments from the model ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("arguments", "problem"),
    [
        ('{"order_id": "A-1", "amount": ', "the arguments are not valid JSON"),
        ('["A-1", 5]', "the arguments must be a JSON object, not an array"),
        ('{"order_id": "A-1", "amount": NaN}', "not valid JSON"),
        ('{"order_id": "A-1"}', "'amount' is a required property"),
        ('{"order_id": "A-1", "amount": "five"}', "'five' is not of type 'number' (at amount)"),
        (
            '{"order_id": "A-1", "amount": 5, "note": "x"}',
            "Additional properties are not allowed ('note' was unexpected)",
        ),
    ],
)
async def test_bad_arguments_come_back_to_the_model_and_nobody_is_asked(
    arguments: str, problem: str
) -> None:
    recorder = RecordingChannel()
    gate = memory_gate(recorder)
    ledger = Ledger()
    model = ScriptModel([[call("refund", arguments, "c1")], [say("sorry")]])
    await run(Agent(name="a", model=model, tools=gate_tools(gate, ledger.tools)), "go")
    (output,) = model.outputs(1).values()
    assert output.startswith("Invalid arguments for tool refund: ")
    assert problem in output
    assert output.endswith(
        "The tool was not run; call it again with arguments that fit its schema."
    )
    assert ledger.ran == []
    assert recorder.notified == []
    assert gate.pending() == []


async def test_arguments_an_approver_edits_are_checked_against_the_schema_too() -> None:
    gate = memory_gate(AutoDecider(approver="alice", args={"order_id": "A-1", "amount": "lots"}))
    ledger = Ledger()
    model = ScriptModel([[call("refund", {"order_id": "A-1", "amount": 5}, "c1")], [say("ok")]])
    await run(Agent(name="a", model=model, tools=gate_tools(gate, ledger.tools)), "go")
    (output,) = model.outputs(1).values()
    assert output.startswith("Invalid arguments for tool refund as the approver edited them: ")
    assert ledger.ran == []


async def test_an_unknown_tool_name_stops_the_run_in_the_sdk_before_anything_runs() -> None:
    """The SDK dispatches by name and refuses unknown names itself: no tool of ours is reached."""
    ledger = Ledger()
    gate = memory_gate()
    model = ScriptModel(
        [[call("lookup", {"order_id": "A-1"}, "c1"), call("rm_rf", {"path": "/"}, "c2")]]
    )
    with pytest.raises(ModelBehaviorError, match="Tool rm_rf not found"):
        await run(Agent(name="a", model=model, tools=gate_tools(gate, ledger.tools)), "go")
    assert ledger.ran == []


# -- blocked calls ---------------------------------------------------------------------------------
async def test_blocked_calls_say_why_in_the_models_next_input() -> None:
    gate = memory_gate()
    ledger = Ledger()

    @function_tool
    def quick_refund(order_id: str) -> str:
        """Refund at once."""
        ledger.ran.append(("quick_refund", {"order_id": order_id}))
        return "refunded"

    model = ScriptModel(
        [
            [
                call("drop_table", {"name": "orders"}, "c1"),
                call("quick_refund", {"order_id": "A-1"}, "c2"),  # nobody decides within 0.1 s
            ],
            [say("ok")],
        ]
    )
    agent = Agent(name="a", model=model, tools=gate_tools(gate, [*ledger.tools, quick_refund]))
    await run(agent, "go")
    outputs = model.outputs(1)
    assert outputs["c1"] == (
        "Tool call drop_table denied by policy: dropping tables is forbidden. The tool was not run."
    )
    assert outputs["c2"].startswith("Tool call quick_refund was not approved before ")
    assert outputs["c2"].endswith("(no decision counts as a denial). The tool was not run.")
    assert ledger.ran == []


async def test_a_halted_agent_is_told_so() -> None:
    gate = memory_gate()
    ledger = Ledger()
    gate.halt(agent="billing-bot", by="ops", reason="incident")
    model = ScriptModel([[call("lookup", {"order_id": "A-1"}, "c1")], [say("ok")]])
    agent = Agent(name="a", model=model, tools=gate_tools(gate, ledger.tools))
    with gate.session(agent="billing-bot"):
        await run(agent, "go")
    (output,) = model.outputs(1).values()
    assert "halted" in output and output.endswith("The tool was not run.")
    assert ledger.ran == []


async def test_on_blocked_raise_lets_runner_run_raise_the_gatekeeper_error() -> None:
    gate = memory_gate(AutoDecider(approve=False, approver="alice", comment="no"))
    ledger = Ledger()
    model = ScriptModel([[call("refund", {"order_id": "A-1", "amount": 5}, "c1")], [say("x")]])
    agent = Agent(name="a", model=model, tools=gate_tools(gate, ledger.tools, on_blocked="raise"))
    with pytest.raises(ApprovalDenied) as denied:
        await run(agent, "go")
    assert isinstance(denied.value, ToolCallBlocked)
    assert denied.value.approver == "alice"
    assert denied.value.model_message == 'Tool call denied by alice: "no". The tool was not run.'
    assert type(denied.value).__name__ == "ApprovalDenied"
    assert ledger.ran == []

    model = ScriptModel([[call("drop_table", {"name": "t"}, "c1")]])
    agent = Agent(name="a", model=model, tools=gate_tools(gate, ledger.tools, on_blocked="raise"))
    with pytest.raises(ToolCallDenied, match="dropping tables is forbidden"):
        await run(agent, "go")
    assert ledger.ran == []


# -- reasons ---------------------------------------------------------------------------------------
async def test_the_approver_reads_the_models_words_and_reasoning_before_the_call() -> None:
    recorder = RecordingChannel()
    gate = memory_gate(recorder, AutoDecider(approver="alice"))
    reasons = CallReasons()
    ledger = Ledger()
    model = ScriptModel(
        [
            [
                think("The order arrived broken; policy allows a refund."),
                say("I'll refund the 5 now."),
                call("refund", {"order_id": "A-1", "amount": 5}, "c1"),
            ],
            [say("ok")],
        ]
    )
    agent = Agent(
        name="a", model=model, tools=gate_tools(gate, ledger.tools, reasons=reasons), hooks=reasons
    )
    await run(agent, "go")
    (request,) = recorder.notified
    assert request.call.reason == (
        "The order arrived broken; policy allows a refund.\nI'll refund the 5 now."
    )


async def test_without_words_the_session_reason_stands() -> None:
    recorder = RecordingChannel()
    gate = memory_gate(recorder, AutoDecider(approver="alice"))
    reasons = CallReasons()
    ledger = Ledger()
    model = ScriptModel([[call("refund", {"order_id": "A-1", "amount": 5}, "c1")], [say("ok")]])
    agent = Agent(
        name="a", model=model, tools=gate_tools(gate, ledger.tools, reasons=reasons), hooks=reasons
    )
    with gate.session(agent="billing-bot", reason="ticket 42"):
        await run(agent, "go")
    (request,) = recorder.notified
    assert (request.call.reason, request.call.agent) == ("ticket 42", "billing-bot")


# -- timeouts --------------------------------------------------------------------------------------
async def test_the_tools_own_timeout_bounds_its_run_not_the_wait_for_a_person() -> None:
    recorder = RecordingChannel()
    gate = memory_gate(recorder)
    finished: list[str] = []

    @function_tool(timeout=0.05)
    async def slow_report(days: int) -> str:
        """Build a report."""
        await asyncio.sleep(0 if days < 10 else 5)
        finished.append(f"{days} days")
        return f"report of {days} days"

    def approve_later() -> None:
        for n in (1, 2):
            request = recorder.wait_for_request(n)
            threading.Event().wait(0.15)  # a person takes longer than the tool may
            gate.approve(request.id, approver="alice")

    model = ScriptModel(
        [
            [call("slow_report", {"days": 7}, "c1")],
            [call("slow_report", {"days": 30}, "c2")],
            [say("ok")],
        ]
    )
    deciding = threading.Thread(target=approve_later)
    deciding.start()
    await run(Agent(name="a", model=model, tools=[gate_tool(gate, slow_report)]), "go")
    deciding.join(timeout=10)
    assert model.outputs(1) == {"c1": "report of 7 days"}
    assert model.outputs(2)["c2"] == "Tool 'slow_report' timed out after 0.05 seconds."
    assert finished == ["7 days"]


# -- misuse ----------------------------------------------------------------------------------------
def test_gating_twice_or_gating_something_else_is_refused() -> None:
    gate = memory_gate()
    ledger = Ledger()
    once = gate_tool(gate, ledger.refund)
    with pytest.raises(ValueError, match="already gated"):
        gate_tool(gate, once)
    with pytest.raises(TypeError, match="takes a FunctionTool"):
        gate_tool(gate, lambda: None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="on_blocked"):
        gate_tool(gate, ledger.refund, on_blocked="ignore")  # type: ignore[arg-type]


# -- the SDK's own approvals, decided through gatekeeper ------------------------------------------
async def test_needs_approval_interruptions_are_decided_by_gatekeeper() -> None:
    """Approved runs on resume; denied, edited and malformed calls are rejected with a reason."""
    recorder = RecordingChannel()

    def decide(request: Any) -> bool:
        return bool(request.call.args.get("amount", 0) < 100)

    gate = memory_gate(
        recorder,
        AutoDecider(approve=decide, approver="alice", comment="use the sandbox account"),
    )
    ledger = Ledger(needs_approval=True)
    model = ScriptModel(
        [
            [
                say("Refunding the broken parcel."),
                call("refund", {"order_id": "A-1", "amount": 20}, "c1"),
                call("wire", {"to": "acct-9", "amount": 1000}, "c2"),
                call("refund", '{"order_id": "A-2"}', "c3"),
            ],
            [say("Done.")],
        ]
    )
    agent = Agent(name="billing-bot", model=model, tools=ledger.tools)
    result = await run(agent, "refund A-1")
    assert [i.call_id for i in result.interruptions] == ["c1", "c2", "c3"]
    assert ledger.ran == []

    state = await decide_interruptions(gate, result)
    assert ledger.ran == []  # the SDK runs the approved call when the run resumes
    result = await run(agent, state)

    assert result.final_output == "Done."
    assert ledger.ran == [("refund", {"order_id": "A-1", "amount": 20.0})]
    outputs = model.outputs(1)
    assert outputs["c1"] == "refunded 20.0 on A-1"
    assert outputs["c2"] == (
        'Tool call denied by alice: "use the sandbox account". The tool was not run.'
    )
    assert outputs["c3"].startswith(
        "Invalid arguments for tool refund: 'amount' is a required property."
    )
    held = {r.call.tool: r for r in recorder.notified}
    assert set(held) == {"refund", "wire"}  # nobody was asked about the malformed call
    assert held["refund"].call.reason == "Refunding the broken parcel."
    (released,) = [e for e in audit_events(gate) if e.kind == "request.executed"]
    assert released.tool == "refund"
    assert "released to the Agents SDK" in released.data["outcome"]


async def test_an_edited_approval_is_rejected_with_the_approvers_arguments() -> None:
    gate = memory_gate(AutoDecider(approver="alice", args={"order_id": "A-1", "amount": 15}))
    ledger = Ledger(needs_approval=True)
    model = ScriptModel(
        [
            [call("refund", {"order_id": "A-1", "amount": 20}, "c1")],
            [call("refund", {"order_id": "A-1", "amount": 15}, "c2")],
            [say("Done.")],
        ]
    )
    agent = Agent(name="a", model=model, tools=ledger.tools)
    result = await run(agent, "refund A-1")
    result = await run(agent, await decide_interruptions(gate, result))
    assert model.outputs(1)["c1"] == (
        'Tool call refund was approved only with different arguments: {"order_id": "A-1", '
        '"amount": 15}. The tool was not run; call it again with these arguments if they still '
        "serve the task."
    )
    assert ledger.ran == []
    (edited,) = [e for e in audit_events(gate) if e.kind == "request.failed"]
    assert "the model was sent the approved ones" in edited.data["outcome"]
    assert [i.call_id for i in result.interruptions] == ["c2"]  # the model's second try
    result = await run(agent, await decide_interruptions(gate, result))
    assert ledger.ran == [("refund", {"order_id": "A-1", "amount": 15.0})]
    assert result.final_output == "Done."


async def test_interruptions_the_bridge_cannot_read_are_refused_before_anyone_is_asked() -> None:
    recorder = RecordingChannel()
    gate = memory_gate(recorder)
    ledger = Ledger(needs_approval=True)
    model = ScriptModel([[call("refund", {"order_id": "A-1", "amount": 20}, "c1")]])
    result = await run(Agent(name="a", model=model, tools=ledger.tools), "go")
    (item,) = result.interruptions
    item.raw_item = {"type": "shell_call", "call_id": "c9", "name": "shell"}  # no arguments
    with pytest.raises(ValueError, match=r"decide these with state\.approve/reject"):
        await decide_interruptions(gate, result)
    assert recorder.notified == []


async def test_on_blocked_raise_raises_the_first_refusal_and_withdraws_the_rest() -> None:
    recorder = RecordingChannel()
    gate = memory_gate(recorder)  # nobody decides the refund
    ledger = Ledger(needs_approval=True)

    @function_tool(needs_approval=True)
    def drop_table(name: str) -> str:
        """Drop a table."""
        ledger.ran.append(("drop_table", {"name": name}))
        return "dropped"

    model = ScriptModel(
        [
            [
                call("refund", {"order_id": "A-1", "amount": 20}, "c1"),
                call("drop_table", {"name": "orders"}, "c2"),  # the policy denies it
            ]
        ]
    )
    result = await run(Agent(name="a", model=model, tools=[ledger.refund, drop_table]), "go")
    with pytest.raises(ToolCallDenied, match="dropping tables is forbidden"):
        await decide_interruptions(gate, result, on_blocked="raise")
    # The refund may or may not have been held when the denial came: whatever it
    # reached, nothing is left waiting for a person, and nothing ran.
    assert gate.pending() == []
    assert {r.status.value for r in gate.store.history(limit=10)} <= {"cancelled"}
    assert ledger.ran == []


@pytest.fixture
def default_loop() -> Iterator[None]:
    """Close the thread's default event loop that Runner.run_sync leaves open on purpose."""
    yield
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        asyncio.get_event_loop_policy().get_event_loop().close()
        asyncio.set_event_loop(None)


@pytest.mark.usefixtures("default_loop")
def test_the_sync_bridge_works_with_run_sync() -> None:
    gate = memory_gate(AutoDecider(approver="alice"))
    ledger = Ledger(needs_approval=True)
    model = ScriptModel([[call("wire", {"to": "acct-1", "amount": 7}, "c1")], [say("Sent.")]])
    agent = Agent(name="a", model=model, tools=ledger.tools)
    config = RunConfig(tracing_disabled=True)
    result = Runner.run_sync(agent, "go", run_config=config)
    state = decide_interruptions_sync(gate, result)
    result = Runner.run_sync(agent, state, run_config=config)
    assert result.final_output == "Sent."
    assert ledger.ran == [("wire", {"to": "acct-1", "amount": 7.0})]


async def test_the_sync_bridge_refuses_to_run_inside_an_event_loop() -> None:
    gate = memory_gate()
    model = ScriptModel([[say("hi")]])
    result = await run(Agent(name="a", model=model), "go")
    with pytest.raises(RuntimeError, match="await decide_interruptions"):
        decide_interruptions_sync(gate, result)


async def test_a_streamed_run_goes_through_the_gate_too() -> None:
    """``Runner.run_streamed`` runs tools the same way (the SDK's own ScriptedModel streams)."""
    from agents.testing import ScriptedModel, assistant_message, function_call

    gate = memory_gate(AutoDecider(approve=False, approver="alice", comment="not today"))
    ledger = Ledger()
    model = ScriptedModel(
        [
            [function_call("refund", {"order_id": "A-1", "amount": 5}, call_id="c1")],
            [assistant_message("ok")],
        ]
    )
    agent = Agent(name="a", model=model, tools=gate_tools(gate, ledger.tools))
    streamed = Runner.run_streamed(agent, "go", run_config=RunConfig(tracing_disabled=True))
    async for _ in streamed.stream_events():
        pass
    assert streamed.final_output == "ok"
    last = model.last_call
    assert last is not None
    (output,) = [i["output"] for i in last.input if i.get("type") == "function_call_output"]
    assert output == 'Tool call denied by alice: "not today". The tool was not run.'
    assert ledger.ran == []


async def test_a_store_that_cannot_be_reached_ends_the_run_with_gatekeepers_error() -> None:
    """Nothing runs unaudited: the run stops with StoreUnavailable itself, not the SDK's wrapper."""
    from gatekeeper import StoreUnavailable
    from gatekeeper.store import RetryPolicy
    from tests.conftest import _free_port

    store = RedisStore(
        f"redis://127.0.0.1:{_free_port()}/0", retry=RetryPolicy(attempts=1, within=0.5)
    )
    gate = Gatekeeper(policy=Policy.from_yaml(POLICY), store=store)
    ledger = Ledger()
    model = ScriptModel([[call("lookup", {"order_id": "A-1"}, "c1")], [say("x")]])
    try:
        with pytest.raises(StoreUnavailable):
            await run(Agent(name="a", model=model, tools=gate_tools(gate, ledger.tools)), "go")
    finally:
        with contextlib.suppress(StoreUnavailable):  # its queued audit can't be written either
            store.close()
    assert ledger.ran == []


async def test_a_cancelled_run_withdraws_the_call_it_was_waiting_on() -> None:
    recorder = RecordingChannel()
    gate = memory_gate(recorder)
    ledger = Ledger()
    model = ScriptModel([[call("refund", {"order_id": "A-1", "amount": 5}, "c1")], [say("x")]])
    agent = Agent(name="a", model=model, tools=gate_tools(gate, ledger.tools))
    running = asyncio.ensure_future(run(agent, "go"))
    request = await asyncio.to_thread(recorder.wait_for_request, 1)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    # The SDK cancels the tool's task as the run ends; the wait is withdrawn as it stops.
    after = await gate.store.aio.wait(request.id, 5.0)
    assert after.status.value == "cancelled"  # nobody can approve it later
    assert ledger.ran == []


@pytest.mark.usefixtures("default_loop")
def test_gated_tools_work_under_run_sync() -> None:
    gate = memory_gate(AutoDecider(approver="alice", args={"to": "acct-1", "amount": 3}))
    ledger = Ledger()
    model = ScriptModel([[call("wire", {"to": "acct-1", "amount": 7}, "c1")], [say("Sent.")]])
    agent = Agent(name="a", model=model, tools=gate_tools(gate, ledger.tools))
    result = Runner.run_sync(agent, "go", run_config=RunConfig(tracing_disabled=True))
    assert result.final_output == "Sent."
    assert ledger.ran == [("wire", {"to": "acct-1", "amount": 3.0})]


# -- defaults are filled in before the gate -----------------------------------------------------
DEFAULTS_POLICY = """
version: 1
default: allow
rules:
  - {id: big, match: {tool: pay, args: {amount: {gt: 100}}}, verdict: deny, reason: too much}
  - {id: hold, match: {tool: pay}, verdict: require_approval}
"""


def pay_tool(ran: list[Any], *, needs_approval: bool = False) -> FunctionTool:
    @function_tool(strict_mode=False, needs_approval=needs_approval)
    def pay(to: str, amount: float = 5000.0, memo: str = "") -> str:
        """Pay someone."""
        ran.append((to, amount, memo))
        return f"paid {amount} to {to}"

    return pay


def tool_context(tool: FunctionTool, raw: str) -> Any:
    from agents.tool_context import ToolContext

    return ToolContext(context=None, tool_name=tool.name, tool_call_id="c1", tool_arguments=raw)


async def test_an_omitted_argument_with_a_high_default_is_denied_by_the_policy() -> None:
    ran: list[Any] = []
    gate = Gatekeeper(policy=Policy.from_yaml(DEFAULTS_POLICY), store=MemoryStore())
    gated = gate_tool(gate, pay_tool(ran))
    raw = '{"to": "x"}'
    answer = await gated.on_invoke_tool(tool_context(gated, raw), raw)
    assert answer == "Tool call pay denied by policy: too much. The tool was not run."
    assert ran == []
    (denied,) = [e for e in audit_events(gate) if e.kind == "call.denied"]
    assert denied.data["args"] == {"to": "x", "amount": 5000.0, "memo": ""}


async def test_the_approver_sees_the_defaults_and_the_tool_runs_with_exactly_those() -> None:
    ran: list[Any] = []
    recorder = RecordingChannel()
    decider = AutoDecider(approver="alice")
    gate = Gatekeeper(
        policy=Policy.from_yaml(DEFAULTS_POLICY), store=MemoryStore(), channels=[recorder, decider]
    )
    decider.bind(gate)
    gated = gate_tool(gate, pay_tool(ran))
    raw = '{"to": "x", "amount": 50}'
    ctx = tool_context(gated, raw)
    assert await gated.on_invoke_tool(ctx, raw) == "paid 50.0 to x"
    (held,) = recorder.notified
    assert held.call.args == {"to": "x", "amount": 50, "memo": ""}
    assert ran == [("x", 50.0, "")]
    assert json.loads(ctx.tool_arguments) == {"to": "x", "amount": 50, "memo": ""}


async def test_an_approver_edit_that_is_not_json_comes_back_as_a_tool_result() -> None:
    ran: list[Any] = []
    decider = AutoDecider(approver="alice", args={"to": "x", "amount": 50, "memo": b"hi"})
    gate = Gatekeeper(
        policy=Policy.from_yaml(DEFAULTS_POLICY), store=MemoryStore(), channels=[decider]
    )
    decider.bind(gate)
    gated = gate_tool(gate, pay_tool(ran))
    raw = '{"to": "x", "amount": 50}'
    answer = await gated.on_invoke_tool(tool_context(gated, raw), raw)
    assert "as the approver edited them" in answer
    assert "The tool was not run" in answer
    assert ran == []


def test_arguments_that_are_not_json_become_invalid_tool_call_not_a_crash() -> None:
    """Bytes in an edit (the core converts them today, and will stop producing them)."""
    from gatekeeper import InvalidToolCall
    from gatekeeper_openai._agents import _json

    with pytest.raises(InvalidToolCall, match="as the approver edited them: they are not JSON"):
        _json("pay", {"memo": b"hi"}, " as the approver edited them")


def test_a_tool_with_needs_approval_is_not_gated_twice() -> None:
    gate = Gatekeeper(policy=Policy.from_yaml(DEFAULTS_POLICY), store=MemoryStore())
    with pytest.raises(ValueError, match="not both"):
        gate_tool(gate, pay_tool([], needs_approval=True))


async def test_the_bridge_judges_defaults_and_has_the_model_send_them() -> None:
    ran: list[Any] = []
    recorder = RecordingChannel()
    decider = AutoDecider(approver="alice")
    gate = Gatekeeper(
        policy=Policy.from_yaml(DEFAULTS_POLICY), store=MemoryStore(), channels=[recorder, decider]
    )
    decider.bind(gate)
    model = ScriptModel(
        [
            [call("pay", {"to": "x"}, "c1"), call("pay", {"to": "y", "amount": 5}, "c2")],
            [call("pay", {"to": "y", "amount": 5, "memo": ""}, "c3")],
            [say("Done.")],
        ]
    )
    agent = Agent(name="a", model=model, tools=[pay_tool(ran, needs_approval=True)])
    result = await run(agent, "pay")
    result = await run(agent, await decide_interruptions(gate, result))
    outputs = model.outputs(1)
    assert outputs["c1"] == "Tool call pay denied by policy: too much. The tool was not run."
    assert outputs["c2"].startswith(
        'Tool call pay was approved only with different arguments: {"to": "y", "amount": 5, '
        '"memo": ""}.'
    )
    assert [r.call.args for r in recorder.notified] == [{"to": "y", "amount": 5, "memo": ""}]
    assert ran == []
    result = await run(agent, await decide_interruptions(gate, result))
    assert ran == [("y", 5.0, "")]
    assert result.final_output == "Done."


# -- a person writes the result instead ----------------------------------------------------------
async def test_a_written_response_is_the_output_the_model_reads() -> None:
    gate = memory_gate(AutoDecider(approver="alice", respond="Refunded by hand already."))
    ledger = Ledger()
    model = ScriptModel([[call("refund", {"order_id": "A-1", "amount": 5}, "c1")], [say("ok")]])
    agent = Agent(name="a", model=model, tools=gate_tools(gate, ledger.tools))
    await run(agent, "go")
    assert model.outputs(1) == {"c1": "Refunded by hand already."}
    assert ledger.ran == []


async def test_a_written_response_to_an_sdk_approval_becomes_the_rejection_the_model_reads() -> (
    None
):
    gate = memory_gate(AutoDecider(approver="alice", respond="Done by hand; don't retry."))
    ledger = Ledger(needs_approval=True)
    model = ScriptModel([[call("refund", {"order_id": "A-1", "amount": 5}, "c1")], [say("ok")]])
    agent = Agent(name="billing-bot", model=model, tools=ledger.tools)
    result = await run(agent, "refund A-1")
    state = await decide_interruptions(gate, result)
    await run(agent, state)
    assert model.outputs(1) == {"c1": "Done by hand; don't retry."}
    assert ledger.ran == []


async def test_the_ask_a_person_tool_is_held_once_as_a_question_and_answered() -> None:
    inbox = RecordingChannel()
    gate = memory_gate(inbox, AutoDecider(approver="alice", respond="EUR"))
    ask = function_tool(gate.ask_tool())
    model = ScriptModel(
        [[call("ask_a_person", {"question": "Which currency?"}, "q1")], [say("ok")]]
    )
    agent = Agent(name="a", model=model, tools=gate_tools(gate, [ask]))
    await run(agent, "go")
    assert model.outputs(1) == {"q1": "EUR"}
    assert [r.kind for r in inbox.notified] == ["question"]


async def test_an_approvers_comment_reaches_the_model_with_the_output() -> None:
    gate = memory_gate(AutoDecider(approver="alice", comment="fine, this once"))
    ledger = Ledger()
    model = ScriptModel([[call("refund", {"order_id": "A-1", "amount": 5}, "c1")], [say("ok")]])
    await run(Agent(name="a", model=model, tools=gate_tools(gate, ledger.tools)), "go")
    assert model.outputs(1) == {
        "c1": "refunded 5.0 on A-1\n\n"
        'Note from the approval (alice): alice said: "fine, this once".'
    }


async def test_a_waiting_call_is_told_to_on_held_inside_a_run() -> None:
    """`gatekeeper.on_held` around `Runner.run`: the app learns each request a call waits for."""
    from gatekeeper import on_held

    recorder = RecordingChannel()
    gate = memory_gate(recorder, AutoDecider(approver="alice"))
    ledger = Ledger()
    model = ScriptModel([[call("refund", {"order_id": "A-1", "amount": 5}, "c1")], [say("ok")]])
    waiting: list[str] = []
    with on_held(lambda request: waiting.append(request.id)):
        await run(Agent(name="a", model=model, tools=gate_tools(gate, ledger.tools)), "go")
    assert waiting == [r.id for r in recorder.notified] and len(waiting) == 1
