"""ToolRunner: plain OpenAI function calling through a gate.

The loops use the real ``openai`` clients (sync and async) against a local stand-in of the API
(``openai_standin``), so what the model is sent next is read from the recorded request bodies.
The rest feed the runner the SDK's own objects (or their dict forms) directly.
"""

from __future__ import annotations

import asyncio
import copy
import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pydantic
import pytest
from openai import AsyncOpenAI, OpenAI
from openai.types.chat import ChatCompletion, ChatCompletionMessage
from openai.types.responses import Response

from gatekeeper import (
    ApprovalDenied,
    Gatekeeper,
    MemoryStore,
    Policy,
    RedisStore,
    RequestStatus,
    ToolCallDenied,
)
from gatekeeper.testing import AutoDecider, RecordingChannel
from gatekeeper_openai import ToolRunner
from tests.adapters.openai_standin import (
    CHAT_PATH,
    RESPONSES_PATH,
    OpenAIStandIn,
    chat_completion,
    chat_tool_call,
    function_call,
    message_item,
    reasoning_item,
    response,
)
from tests.conftest import RedisServer
from tests.gatekit import audit_events

POLICY = """
version: 1
default: allow
rules:
  - {id: refunds, match: {tool: refund}, verdict: require_approval}
  - {id: closures, match: {tool: close_account}, verdict: require_approval}
  - {id: big, match: {tool: pay, args: {amount: {gt: 100}}}, verdict: deny, reason: too much}
"""

ORDER_ID = {"type": "string", "description": "The order, e.g. A-1"}
SCHEMAS: dict[str, dict[str, Any]] = {
    "lookup_order": {
        "type": "object",
        "properties": {"order_id": ORDER_ID},
        "required": ["order_id"],
        "additionalProperties": False,
    },
    "refund": {
        "type": "object",
        "properties": {"order_id": ORDER_ID, "amount": {"type": "number"}},
        "required": ["order_id", "amount"],
        "additionalProperties": False,
    },
    "close_account": {
        "type": "object",
        "properties": {"user": {"type": "string"}},
        "required": ["user"],
        "additionalProperties": False,
    },
}
DESCRIPTIONS = {
    "lookup_order": "Look an order up.",
    "refund": "Refund an order.",
    "close_account": "Close a customer's account.",
}
# What the model is offered, in each API's own shape.
CHAT_TOOLS = [
    {
        "type": "function",
        "function": {"name": name, "description": DESCRIPTIONS[name], "parameters": schema},
    }
    for name, schema in SCHEMAS.items()
]
RESPONSES_TOOLS = [
    {
        "type": "function",
        "name": name,
        "description": DESCRIPTIONS[name],
        "parameters": schema,
        "strict": True,
    }
    for name, schema in SCHEMAS.items()
]
DENIAL = 'Tool call denied by bob: "use the sandbox account". The tool was not run.'


class Shop:
    """The tools, remembering what ran (sync functions)."""

    def __init__(self) -> None:
        self.ran: list[tuple[str, dict[str, Any]]] = []

    def lookup_order(self, order_id: str) -> dict[str, Any]:
        self.ran.append(("lookup_order", {"order_id": order_id}))
        if order_id == "A-9":
            raise KeyError(order_id)
        return {"order_id": order_id, "status": "delivered", "total": 20.0}

    def refund(self, order_id: str, amount: float) -> str:
        self.ran.append(("refund", {"order_id": order_id, "amount": amount}))
        return f"refunded {amount} on {order_id}"

    def close_account(self, user: str) -> str:
        self.ran.append(("close_account", {"user": user}))
        return f"closed {user}"

    def tools(self) -> dict[str, Any]:
        return {
            "lookup_order": self.lookup_order,
            "refund": self.refund,
            "close_account": self.close_account,
        }


def make_gate(*channels: Any) -> Gatekeeper:
    return Gatekeeper(policy=Policy.from_yaml(POLICY), store=MemoryStore(), channels=channels)


def chat_message(content: str | None, *calls: dict[str, Any]) -> ChatCompletionMessage:
    """The assistant message the SDK returns for a completion with these tool calls."""
    completion = ChatCompletion.model_validate(chat_completion(content, list(calls)))
    return completion.choices[0].message


@pytest.fixture
def api() -> Iterator[OpenAIStandIn]:
    with OpenAIStandIn() as standin:
        yield standin


@pytest.fixture
def redis_gates(
    redis_server: RedisServer, redis_prefix: str
) -> Iterator[tuple[Gatekeeper, Gatekeeper, RecordingChannel]]:
    """The agent's gate and an approver's gate: separate RedisStores on one URL and prefix."""
    recorder = RecordingChannel()
    agent = Gatekeeper(
        policy=Policy.from_yaml(POLICY),
        store=RedisStore(redis_server.url, prefix=redis_prefix),
        channels=[recorder],
    )
    approver = Gatekeeper(
        policy=Policy.from_yaml(POLICY), store=RedisStore(redis_server.url, prefix=redis_prefix)
    )
    yield agent, approver, recorder
    agent.close()
    approver.close()


# The model is told that a person changed its call, and to what.
EDITED_NOTE = (
    "Note from the approval (alice): alice changed the arguments; the tool ran with "
    '{"amount":20.0,"order_id":"A-1"}.'
)


def approve_then_deny(approver: Gatekeeper, recorder: RecordingChannel) -> list[str]:
    """The approver's process: approve the first held call with a smaller amount, deny the next."""
    first = recorder.wait_for_request(1)
    assert [r.id for r in approver.pending()] == [first.id]
    approver.approve(first.id, approver="alice", args={"order_id": "A-1", "amount": 20.0})
    second = recorder.wait_for_request(2)
    approver.deny(second.id, approver="bob", comment="use the sandbox account")
    return [first.id, second.id]


# -- the loops, through the real clients --------------------------------------------------------
@pytest.mark.redis
def test_a_chat_completions_loop_runs_allowed_approved_and_denied_calls(
    api: OpenAIStandIn, redis_gates: tuple[Gatekeeper, Gatekeeper, RecordingChannel]
) -> None:
    """Allowed runs at once; held calls wait for another process; the model reads the denial."""
    agent, approver, recorder = redis_gates
    shop = Shop()
    offered = copy.deepcopy(CHAT_TOOLS)
    runner = ToolRunner(agent, shop.tools(), parameters=CHAT_TOOLS)
    api.script_chat(
        chat_completion(
            "Let me look order A-1 up first.",
            [chat_tool_call("lookup_order", {"order_id": "A-1"}, "call_lookup")],
        ),
        chat_completion(
            "It was delivered, so I am refunding it.",
            [chat_tool_call("refund", {"order_id": "A-1", "amount": 500}, "call_refund")],
        ),
        chat_completion(
            "Now closing the account, as asked.",
            [chat_tool_call("close_account", {"user": "u-7"}, "call_close")],
        ),
        chat_completion("Refunded 20 on A-1; the account stays open."),
    )
    with (
        ThreadPoolExecutor(1) as pool,
        OpenAI(base_url=api.base_url, api_key="test", max_retries=0) as client,
    ):
        decided = pool.submit(approve_then_deny, approver, recorder)
        messages: list[Any] = [{"role": "user", "content": "Refund A-1 and close u-7."}]
        while True:
            completion = client.chat.completions.create(
                model="gpt-standin", messages=messages, tools=CHAT_TOOLS
            )
            message = completion.choices[0].message
            messages.append(message)
            if not message.tool_calls:
                break
            messages.extend(runner.run_chat(message))
        approved_id, denied_id = decided.result(timeout=10)

    bodies = api.bodies(CHAT_PATH)
    assert len(bodies) == 4
    assert bodies[1]["messages"][-1] == {
        "role": "tool",
        "tool_call_id": "call_lookup",
        "content": '{"order_id":"A-1","status":"delivered","total":20.0}',
    }
    assert bodies[2]["messages"][-1]["content"] == "refunded 20.0 on A-1\n\n" + EDITED_NOTE
    assert bodies[3]["messages"][-1] == {
        "role": "tool",
        "tool_call_id": "call_close",
        "content": DENIAL,
    }
    # the approver's amount ran, not the model's; the denied tool never ran
    assert shop.ran == [
        ("lookup_order", {"order_id": "A-1"}),
        ("refund", {"order_id": "A-1", "amount": 20.0}),
    ]
    assert approver.get(approved_id).status is RequestStatus.EXECUTED
    assert approver.get(denied_id).status is RequestStatus.DENIED
    # the approver saw the model's own words
    assert [r.call.reason for r in recorder.notified] == [
        "It was delivered, so I am refunding it.",
        "Now closing the account, as asked.",
    ]
    # the model is offered the tools exactly as defined: names, descriptions, schemas
    assert all(body["tools"] == offered for body in bodies)
    assert offered == CHAT_TOOLS


@pytest.mark.redis
async def test_a_responses_loop_runs_async_and_sync_tools_through_the_async_client(
    api: OpenAIStandIn, redis_gates: tuple[Gatekeeper, Gatekeeper, RecordingChannel]
) -> None:
    """Same loop on the Responses API: coroutine tools awaited, a sync one run in a thread."""
    agent, approver, recorder = redis_gates
    ran: list[tuple[str, dict[str, Any], bool]] = []
    loop_thread = threading.get_ident()

    async def lookup_order(order_id: str) -> dict[str, Any]:
        ran.append(("lookup_order", {"order_id": order_id}, True))
        return {"order_id": order_id, "status": "delivered"}

    async def refund(order_id: str, amount: float) -> str:
        ran.append(("refund", {"order_id": order_id, "amount": amount}, True))
        return f"refunded {amount} on {order_id}"

    def close_account(user: str) -> str:  # sync: runs off the event loop
        ran.append(("close_account", {"user": user}, threading.get_ident() == loop_thread))
        return f"closed {user}"

    offered = copy.deepcopy(RESPONSES_TOOLS)
    runner = ToolRunner(
        agent,
        {"lookup_order": lookup_order, "refund": refund, "close_account": close_account},
        parameters=RESPONSES_TOOLS,
    )
    api.script_responses(
        response(
            reasoning_item("The user wants a refund; check the order first."),
            function_call("lookup_order", {"order_id": "A-1"}, "call_lookup"),
        ),
        response(
            message_item("Delivered; refunding it."),
            function_call("refund", {"order_id": "A-1", "amount": 500}, "call_refund"),
        ),
        response(
            message_item("Closing the account now."),
            function_call("close_account", {"user": "u-7"}, "call_close"),
        ),
        response(message_item("Refunded 20 on A-1; the account stays open.")),
    )
    decided = asyncio.create_task(asyncio.to_thread(approve_then_deny, approver, recorder))
    async with AsyncOpenAI(base_url=api.base_url, api_key="test", max_retries=0) as client:
        items: list[Any] = [{"role": "user", "content": "Refund A-1 and close u-7."}]
        while True:
            result = await client.responses.create(
                model="gpt-standin", input=items, tools=RESPONSES_TOOLS
            )
            items += result.output
            outputs = await runner.arun_responses(result)
            if not outputs:
                break
            items += outputs
    approved_id, denied_id = await asyncio.wait_for(decided, 10)
    await agent.store.aio.aclose()

    bodies = api.bodies(RESPONSES_PATH)
    assert len(bodies) == 4
    assert bodies[1]["input"][-1] == {
        "type": "function_call_output",
        "call_id": "call_lookup",
        "output": '{"order_id":"A-1","status":"delivered"}',
    }
    assert bodies[2]["input"][-1]["output"] == "refunded 20.0 on A-1\n\n" + EDITED_NOTE
    assert bodies[3]["input"][-1] == {
        "type": "function_call_output",
        "call_id": "call_close",
        "output": DENIAL,
    }
    assert [(name, args) for name, args, _ in ran] == [
        ("lookup_order", {"order_id": "A-1"}),
        ("refund", {"order_id": "A-1", "amount": 20.0}),
    ]
    assert approver.get(approved_id).status is RequestStatus.EXECUTED
    assert approver.get(denied_id).status is RequestStatus.DENIED
    assert recorder.notified[0].call.reason == "Delivered; refunding it."
    assert all(body["tools"] == offered for body in bodies)
    assert offered == RESPONSES_TOOLS


async def test_a_sync_tool_runs_in_a_thread_under_arun() -> None:
    gate = make_gate(AutoDecider(approver="alice"))
    loop_thread = threading.get_ident()
    threads: list[int] = []

    def close_account(user: str) -> str:
        threads.append(threading.get_ident())
        return f"closed {user}"

    runner = ToolRunner(gate, {"close_account": close_account})
    message = chat_message(None, chat_tool_call("close_account", {"user": "u-7"}, "c1"))
    assert await runner.arun_chat(message) == [
        {"role": "tool", "tool_call_id": "c1", "content": "closed u-7"}
    ]
    assert threads and threads[0] != loop_thread


def test_bad_json_goes_back_to_the_model_and_nobody_is_asked(api: OpenAIStandIn) -> None:
    recorder = RecordingChannel()
    gate = make_gate(recorder, AutoDecider(approver="alice"))
    shop = Shop()
    runner = ToolRunner(gate, shop.tools(), parameters=CHAT_TOOLS)
    api.script_chat(
        chat_completion(None, [chat_tool_call("refund", '{"order_id": "A-1", "amount": ', "c1")]),
        chat_completion(None, [chat_tool_call("refund", {"order_id": "A-1", "amount": 5}, "c2")]),
        chat_completion("Done."),
    )
    with OpenAI(base_url=api.base_url, api_key="test", max_retries=0) as client:
        messages: list[Any] = [{"role": "user", "content": "Refund 5 on A-1."}]
        for _ in range(3):
            message = (
                client.chat.completions.create(model="m", messages=messages).choices[0].message
            )
            messages += [message, *runner.run_chat(message)]
    retry = api.bodies(CHAT_PATH)[1]["messages"][-1]
    assert retry["tool_call_id"] == "c1"
    assert retry["content"] == (
        "Tool call refund has invalid arguments: not valid JSON "
        "(Expecting value at line 1 column 31). The tool was not run."
    )
    # only the corrected call reached a person and ran
    assert len(recorder.notified) == 1
    assert recorder.notified[0].call.args == {"order_id": "A-1", "amount": 5.0}
    assert shop.ran == [("refund", {"order_id": "A-1", "amount": 5.0})]


# -- arguments -----------------------------------------------------------------------------------
SCHEMA_CASES = [
    ('{"order_id": "A-1", "amount": "lots"}', "amount: 'lots' is not of type 'number'"),
    ('{"order_id": "A-1"}', "arguments: 'amount' is a required property"),
    (
        '{"order_id": "A-1", "amount": 5, "note": "x"}',
        "arguments: Additional properties are not allowed ('note' was unexpected)",
    ),
    ("[1, 2]", "a JSON object is needed, not an array"),
    ('"refund A-1"', "a JSON object is needed, not a string"),
    ('{"order_id": "A-1", "amount": NaN}', "not valid JSON (NaN is not a JSON number)"),
]
SIGNATURE_CASES = [
    (
        '{"order_id": "A-1", "amount": "lots"}',
        "amount: Input should be a valid number, unable to parse string as a number",
    ),
    ('{"amount": 5}', "order_id: Field required"),
    ('{"order_id": "A-1", "amount": 5, "note": "x"}', "note: Extra inputs are not permitted"),
]


@pytest.mark.parametrize(
    ("arguments", "detail", "with_schema"),
    [(a, d, True) for a, d in SCHEMA_CASES] + [(a, d, False) for a, d in SIGNATURE_CASES],
)
def test_arguments_that_do_not_fit_are_answered_and_nothing_is_recorded(
    arguments: str, detail: str, with_schema: bool
) -> None:
    """Checked against the JSON schema given, else the function's signature, before the gate."""
    recorder = RecordingChannel()
    gate = make_gate(recorder)
    shop = Shop()
    runner = ToolRunner(gate, shop.tools(), parameters=SCHEMAS if with_schema else None)
    message = chat_message(None, chat_tool_call("refund", arguments, "c1"))
    (answer,) = runner.run_chat(message)
    assert answer["content"] == (
        f"Tool call refund has invalid arguments: {detail}. The tool was not run."
    )
    assert shop.ran == []
    assert recorder.notified == []
    assert audit_events(gate) == []


def test_the_policy_sees_arguments_as_the_function_will_get_them() -> None:
    """A number sent as a string can't slip past a numeric rule: it is checked as a number."""
    gate = make_gate()
    paid: list[float] = []

    def pay(amount: float) -> str:
        paid.append(amount)
        return "paid"

    runner = ToolRunner(gate, {"pay": pay})
    small, big = runner.run_chat(
        chat_message(
            None,
            chat_tool_call("pay", '{"amount": "5"}', "c1"),
            chat_tool_call("pay", '{"amount": "500"}', "c2"),
        )
    )
    assert small["content"] == "paid"
    assert paid == [5.0]
    assert big["content"] == "Tool call pay denied by policy: too much. The tool was not run."


class Address(pydantic.BaseModel):
    city: str


def test_arguments_are_converted_to_the_annotations() -> None:
    got: list[Any] = []

    def ship(to: Address, express: bool = False) -> str:
        got.append((to, express))
        return "shipped"

    runner = ToolRunner(make_gate(), {"ship": ship})
    (answer,) = runner.run_chat(
        chat_message(None, chat_tool_call("ship", {"to": {"city": "Oslo"}}))
    )
    assert answer["content"] == "shipped"
    assert got == [(Address(city="Oslo"), False)]


def test_empty_arguments_call_a_tool_without_parameters() -> None:
    runner = ToolRunner(make_gate(), {"now": lambda: "noon"})
    (answer,) = runner.run_chat(chat_message(None, chat_tool_call("now", "", "c1")))
    assert answer == {"role": "tool", "tool_call_id": "c1", "content": "noon"}


def test_approved_arguments_that_do_not_fit_are_not_run() -> None:
    """An approver's edit is checked like the model's arguments, before the function runs."""
    shop = Shop()
    gate = make_gate(AutoDecider(approver="alice", args={"order_id": "A-1", "amount": "lots"}))
    runner = ToolRunner(gate, shop.tools(), parameters=SCHEMAS)
    (answer,) = runner.run_chat(
        chat_message(None, chat_tool_call("refund", {"order_id": "A-1", "amount": 5}))
    )
    assert answer["content"] == (
        "Tool call refund has invalid arguments: the approved arguments do not fit: "
        "amount: 'lots' is not of type 'number'. The tool was not run."
    )
    assert shop.ran == []


# -- unknown tools, blocked calls, failures --------------------------------------------------------
def test_an_unknown_tool_is_refused_audited_and_answered() -> None:
    gate = make_gate()
    runner = ToolRunner(gate, Shop().tools())
    (answer,) = runner.run_chat(
        chat_message("Cleaning up.", chat_tool_call("drop_table", {"table": "orders"}, "c1"))
    )
    assert answer["tool_call_id"] == "c1"
    assert "drop_table" in answer["content"]
    assert answer["content"].endswith("The tool was not run.")
    (event,) = audit_events(gate)
    assert (event.kind, event.tool) == ("call.denied", "drop_table")
    assert event.data["args"] == {"table": "orders"}
    assert event.data["rules"] == ["unknown-tool"]


async def test_an_unknown_tool_with_bad_arguments_is_still_audited_under_arun() -> None:
    gate = make_gate()
    runner = ToolRunner(gate, Shop().tools())
    (answer,) = await runner.arun_responses([function_call("rm", "{oops", "c1")])
    assert answer["call_id"] == "c1"
    assert answer["output"].endswith("The tool was not run.")
    (event,) = audit_events(gate)
    assert event.data["args"] == {"arguments": "{oops"}


def test_on_blocked_raise_raises_instead_of_answering() -> None:
    shop = Shop()
    gate = make_gate(AutoDecider(approve=False, approver="bob", comment="use the sandbox account"))
    runner = ToolRunner(gate, {**shop.tools(), "pay": lambda amount: "paid"}, on_blocked="raise")
    with pytest.raises(ApprovalDenied) as denied:
        runner.run_chat(
            chat_message(None, chat_tool_call("refund", {"order_id": "A", "amount": 1}))
        )
    assert denied.value.model_message == DENIAL
    with pytest.raises(ToolCallDenied, match="too much"):
        runner.run_chat(chat_message(None, chat_tool_call("pay", {"amount": 500})))
    with pytest.raises(ToolCallDenied, match="rm"):
        runner.run_responses([function_call("rm", {})])
    assert shop.ran == []


async def test_on_blocked_raise_under_arun() -> None:
    gate = make_gate(AutoDecider(approve=False, approver="bob", comment="use the sandbox account"))

    async def refund(order_id: str) -> str:
        raise AssertionError("must not run")

    runner = ToolRunner(gate, {"refund": refund}, on_blocked="raise")
    with pytest.raises(ApprovalDenied):
        await runner.arun_responses([function_call("refund", {"order_id": "A"})])


def test_a_call_nobody_decides_in_time_is_answered_as_a_timeout() -> None:
    shop = Shop()
    gate = Gatekeeper(policy=Policy.from_yaml(POLICY), store=MemoryStore(), default_timeout=0.05)
    (answer,) = ToolRunner(gate, shop.tools()).run_chat(
        chat_message(None, chat_tool_call("refund", {"order_id": "A-1", "amount": 5}))
    )
    assert answer["content"].startswith("Tool call refund was not approved before ")
    assert answer["content"].endswith("The tool was not run.")
    assert shop.ran == []


async def test_cancelling_arun_cancels_the_held_request() -> None:
    """Waiting for a person happens on the event loop: a cancelled run leaves nothing to approve."""
    recorder = RecordingChannel()
    gate = make_gate(recorder)
    shop = Shop()
    runner = ToolRunner(gate, shop.tools())
    message = chat_message(None, chat_tool_call("refund", {"order_id": "A-1", "amount": 5}))
    task = asyncio.create_task(runner.arun_chat(message))
    held = await asyncio.to_thread(recorder.wait_for_request)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert gate.get(held.id).status is RequestStatus.CANCELLED
    assert gate.pending() == []
    assert shop.ran == []


def test_a_tool_that_raises_is_answered_or_raised() -> None:
    shop = Shop()
    gate = make_gate()
    message = chat_message(None, chat_tool_call("lookup_order", {"order_id": "A-9"}, "c1"))
    (answer,) = ToolRunner(gate, shop.tools()).run_chat(message)
    assert answer["content"] == "Tool call lookup_order failed: KeyError: 'A-9'"
    with pytest.raises(KeyError):
        ToolRunner(gate, shop.tools(), on_error="raise").run_chat(message)
    assert [e.kind for e in audit_events(gate)] == ["call.allowed", "call.failed"] * 2


def test_results_are_text_as_is_and_anything_else_as_json() -> None:
    class Receipt(pydantic.BaseModel):
        order_id: str
        amount: float

    tools = {
        "text": lambda: "plain text",
        "data": lambda: {"ok": True, "items": [1, "two"]},
        "nothing": lambda: None,
        "model": lambda: Receipt(order_id="A-1", amount=5),
    }
    runner = ToolRunner(make_gate(), tools)
    answers = runner.run_chat(chat_message(None, *(chat_tool_call(n, {}) for n in tools)))
    assert [a["content"] for a in answers] == [
        "plain text",
        '{"ok":true,"items":[1,"two"]}',
        "null",
        '{"order_id":"A-1","amount":5.0}',
    ]


def test_a_coroutine_tool_under_the_sync_runner_fails_before_anything_runs() -> None:
    shop = Shop()

    async def notify(text: str) -> None:
        raise AssertionError("must not run")

    runner = ToolRunner(make_gate(), {**shop.tools(), "notify": notify})
    message = chat_message(
        None,
        chat_tool_call("lookup_order", {"order_id": "A-1"}),
        chat_tool_call("notify", {"text": "hi"}),
    )
    with pytest.raises(TypeError, match="arun_chat"):
        runner.run_chat(message)
    assert shop.ran == []


# -- reasons -------------------------------------------------------------------------------------
def test_the_chat_message_text_is_the_reason() -> None:
    recorder = RecordingChannel()
    gate = make_gate(recorder, AutoDecider(approver="alice"))
    runner = ToolRunner(gate, Shop().tools())
    runner.run_chat(
        chat_message(
            "The customer was charged twice.",
            chat_tool_call("refund", {"order_id": "A-1", "amount": 5}),
            chat_tool_call("close_account", {"user": "u-7"}),
        )
    )
    runner.run_chat(
        {
            "role": "assistant",
            "tool_calls": [chat_tool_call("refund", {"order_id": "B", "amount": 1})],
        }
    )
    # what some OpenAI-compatible servers add: the model's reasoning
    compatible = {
        "role": "assistant",
        "reasoning_content": "B-2 was returned unopened.",
        "content": "Refunding B-2.",
        "tool_calls": [chat_tool_call("refund", {"order_id": "B-2", "amount": 1})],
    }
    runner.run_chat(ChatCompletionMessage.model_validate(compatible))
    # the dict form of an assistant message may hold its text as parts
    parts = [{"type": "text", "text": "Refunding"}, {"type": "text", "text": "B-3."}]
    runner.run_chat({**compatible, "reasoning_content": None, "content": parts})
    assert [r.call.reason for r in recorder.notified] == [
        "The customer was charged twice.",
        "The customer was charged twice.",
        None,
        "B-2 was returned unopened.\nRefunding B-2.",
        "Refunding\nB-3.",
    ]


def test_the_responses_text_before_a_call_is_its_reason() -> None:
    recorder = RecordingChannel()
    gate = make_gate(recorder, AutoDecider(approver="alice"))
    runner = ToolRunner(gate, Shop().tools())
    result = Response.model_validate(
        response(
            function_call("close_account", {"user": "u-0"}),
            reasoning_item("Charged twice, per the ledger."),
            message_item("Refunding the duplicate charge."),
            function_call("refund", {"order_id": "A-1", "amount": 5}),
            message_item("Then closing the account."),
            function_call("close_account", {"user": "u-7"}),
        )
    )
    runner.run_responses(result)
    # The calls are held at once, so they reach the channel in any order: by call.
    reasons = {json.dumps(r.call.args, sort_keys=True): r.call.reason for r in recorder.notified}
    assert reasons == {
        '{"user": "u-0"}': None,
        '{"amount": 5.0, "order_id": "A-1"}': (
            "Charged twice, per the ledger.\nRefunding the duplicate charge."
        ),
        '{"user": "u-7"}': "Charged twice, per the ledger.\nRefunding the duplicate charge.\n"
        "Then closing the account.",
    }


# -- the shapes the API uses ---------------------------------------------------------------------
def test_a_response_its_output_list_and_their_dict_forms_give_the_same_answers() -> None:
    runner = ToolRunner(make_gate(), Shop().tools())
    raw = response(
        message_item("Looking it up."), function_call("lookup_order", {"order_id": "A-1"}, "c1")
    )
    sdk = Response.model_validate(copy.deepcopy(raw))
    expected = [
        {
            "type": "function_call_output",
            "call_id": "c1",
            "output": '{"order_id":"A-1","status":"delivered","total":20.0}',
        }
    ]
    for given in (sdk, sdk.output, raw, raw["output"]):
        assert runner.run_responses(given) == expected
    with pytest.raises(TypeError, match="output list"):
        runner.run_responses(raw["output"][1])


def test_calls_already_answered_in_the_items_given_are_not_run_again() -> None:
    shop = Shop()
    runner = ToolRunner(make_gate(), shop.tools())
    conversation: list[Any] = [
        {"role": "user", "content": "Look up A-1 and A-2."},
        function_call("lookup_order", {"order_id": "A-1"}, "c1"),
        {"type": "function_call_output", "call_id": "c1", "output": "delivered"},
        function_call("lookup_order", {"order_id": "A-2"}, "c2"),
    ]
    assert [a["call_id"] for a in runner.run_responses(conversation)] == ["c2"]
    assert shop.ran == [("lookup_order", {"order_id": "A-2"})]


def test_a_whole_chat_completion_and_the_message_dict_are_accepted() -> None:
    runner = ToolRunner(make_gate(), Shop().tools())
    raw = chat_completion("Looking.", [chat_tool_call("lookup_order", {"order_id": "A-1"}, "c1")])
    expected = runner.run_chat(ChatCompletion.model_validate(raw))
    assert runner.run_chat(raw["choices"][0]["message"]) == expected
    assert expected[0]["tool_call_id"] == "c1"
    two = {**raw, "choices": raw["choices"] * 2}
    with pytest.raises(ValueError, match="2 choices"):
        runner.run_chat(two)


def test_custom_tool_calls_get_their_text_as_input() -> None:
    inputs: list[str] = []

    def run_sql(input: str) -> str:
        inputs.append(input)
        return "3 rows"

    runner = ToolRunner(make_gate(), {"run_sql": run_sql})
    message = ChatCompletionMessage.model_validate(
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c1", "type": "custom", "custom": {"name": "run_sql", "input": "SELECT 1"}}
            ],
        }
    )
    assert runner.run_chat(message) == [{"role": "tool", "tool_call_id": "c1", "content": "3 rows"}]
    item = {
        "type": "custom_tool_call",
        "call_id": "c2",
        "name": "run_sql",
        "input": "SELECT 2",
        "caller": {"type": "program", "caller_id": "prog_1"},
    }
    sdk_item = Response.model_validate(response(item)).output[0]
    assert runner.run_responses([sdk_item]) == [
        {
            "type": "custom_tool_call_output",
            "call_id": "c2",
            "caller": {"type": "program", "caller_id": "prog_1"},
            "output": "3 rows",
        }
    ]
    assert inputs == ["SELECT 1", "SELECT 2"]


def test_a_namespaced_function_is_found_by_its_qualified_name() -> None:
    definitions = [
        {
            "type": "namespace",
            "name": "crm",
            "description": "The CRM.",
            "tools": [
                {
                    "type": "function",
                    "name": "lookup",
                    "parameters": {
                        "type": "object",
                        "properties": {"id": {"type": "string"}},
                        "required": ["id"],
                    },
                }
            ],
        }
    ]
    runner = ToolRunner(
        make_gate(), {"crm.lookup": lambda **a: f"found {a['id']}"}, parameters=definitions
    )
    good = {**function_call("lookup", {"id": "c-1"}, "c1"), "namespace": "crm"}
    bad = {**function_call("lookup", {"id": 7}, "c2"), "namespace": "crm"}
    first, second = runner.run_responses([good, bad])
    assert first["output"] == "found c-1"
    assert second["output"] == (
        "Tool call crm.lookup has invalid arguments: id: 7 is not of type 'string'. "
        "The tool was not run."
    )


def test_the_deprecated_function_call_is_answered_as_a_function_message() -> None:
    runner = ToolRunner(make_gate(), Shop().tools())
    message = {
        "role": "assistant",
        "content": None,
        "function_call": {"name": "lookup_order", "arguments": json.dumps({"order_id": "A-1"})},
    }
    (answer,) = runner.run_chat(message)
    assert answer["role"] == "function"
    assert answer["name"] == "lookup_order"
    assert json.loads(answer["content"])["status"] == "delivered"


# -- set-up ---------------------------------------------------------------------------------------
def test_each_tool_is_gated_under_its_name_with_its_options() -> None:
    recorder = RecordingChannel()
    gate = make_gate(recorder, AutoDecider(approver="alice"))
    runner = ToolRunner(
        gate,
        Shop().tools(),
        tool_options={"refund": {"irreversible": True, "scopes": ["payments:write"]}},
    )
    assert runner.names == ["lookup_order", "refund", "close_account"]
    runner.run_chat(chat_message(None, chat_tool_call("refund", {"order_id": "A", "amount": 1})))
    (request,) = recorder.notified
    assert request.call.tool == "refund"
    assert request.call.irreversible
    assert request.call.required_scopes == ("payments:write",)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"parameters": {"nope": {}}}, ValueError, "not in tools: \\['nope'\\]"),
        ({"tool_options": {"nope": {}}}, ValueError, "not in tools"),
        ({"tool_options": {"refund": {"irreversable": True}}}, TypeError, "irreversable"),
        ({"parameters": {"refund": {"type": "objekt"}}}, ValueError, "not a valid JSON schema"),
        ({"on_blocked": "ignore"}, ValueError, "on_blocked must be"),
        ({"on_error": "ignore"}, ValueError, "on_error must be"),
    ],
)
def test_a_misconfigured_runner_fails_when_made(
    kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        ToolRunner(make_gate(), Shop().tools(), **kwargs)


def test_functions_that_cannot_take_a_tool_call_are_refused_when_made() -> None:
    gate = make_gate()

    @gate.guard
    def guarded(order_id: str) -> str:
        return order_id

    def positional(order_id: str, /) -> str:
        return order_id

    with pytest.raises(TypeError, match="already guarded"):
        ToolRunner(gate, {"guarded": guarded})
    with pytest.raises(TypeError, match="positional-only"):
        ToolRunner(gate, {"positional": positional})
    with pytest.raises(TypeError, match="not callable"):
        ToolRunner(gate, {"x": "not a function"})  # type: ignore[dict-item]


# -- defaults are filled in before the gate -----------------------------------------------------
def test_an_omitted_argument_with_a_high_default_is_denied_by_the_policy() -> None:
    paid: list[Any] = []

    def pay(to: str, amount: float = 5000.0) -> str:
        paid.append((to, amount))
        return "paid"

    gate = make_gate()
    runner = ToolRunner(gate, {"pay": pay})
    (answer,) = runner.run_chat(chat_message(None, chat_tool_call("pay", {"to": "x"})))
    assert answer["content"] == "Tool call pay denied by policy: too much. The tool was not run."
    assert paid == []
    (denied,) = [e for e in audit_events(gate) if e.kind == "call.denied"]
    assert denied.data["args"] == {"to": "x", "amount": 5000.0}


def test_a_json_schema_default_is_filled_in_and_judged_too() -> None:
    paid: list[Any] = []

    def pay(to: str, amount: float = 1.0) -> str:
        paid.append((to, amount))
        return "paid"

    schema = {
        "type": "object",
        "properties": {"to": {"type": "string"}, "amount": {"type": "number", "default": 5000}},
        "required": ["to"],
    }
    runner = ToolRunner(make_gate(), {"pay": pay}, parameters={"pay": schema})
    (answer,) = runner.run_chat(chat_message(None, chat_tool_call("pay", {"to": "x"})))
    assert answer["content"] == "Tool call pay denied by policy: too much. The tool was not run."
    assert paid == []


def test_the_approver_sees_the_defaults_and_the_function_runs_with_exactly_those() -> None:
    got: list[Any] = []
    sentinel = object()

    def refund(order_id: str, amount: float | None = None, note: Any = sentinel) -> str:
        got.append((order_id, amount, note))
        return "refunded"

    recorder = RecordingChannel()
    gate = make_gate(recorder, AutoDecider(approver="alice"))
    runner = ToolRunner(
        gate,
        {"refund": refund},
        parameters={"refund": SCHEMAS["refund"] | {"required": ["order_id"]}},
    )
    (answer,) = runner.run_chat(chat_message(None, chat_tool_call("refund", {"order_id": "A-1"})))
    assert answer["content"] == "refunded"
    (held,) = recorder.notified
    assert held.call.args == {"order_id": "A-1", "amount": None}  # an object can't be shown
    assert got == [("A-1", None, sentinel)]


def test_an_approvers_edit_is_compared_as_json_and_checked() -> None:
    """``1 == True`` in Python: an edit from true to 1 still gets the schema check."""
    got: list[Any] = []

    def close_account(user: Any, notify: Any = True) -> str:
        got.append((user, notify))
        return "closed"

    schema = {
        "type": "object",
        "properties": {"user": {"type": "string"}, "notify": {"type": "boolean"}},
        "required": ["user"],
    }
    gate = make_gate(AutoDecider(approver="alice", args={"user": "u-1", "notify": 1}))
    runner = ToolRunner(
        gate, {"close_account": close_account}, parameters={"close_account": schema}
    )
    (answer,) = runner.run_chat(
        chat_message(None, chat_tool_call("close_account", {"user": "u-1", "notify": True}))
    )
    assert answer["content"] == (
        "Tool call close_account has invalid arguments: the approved arguments do not fit: "
        "notify: 1 is not of type 'boolean'. The tool was not run."
    )
    assert got == []


def test_only_the_words_of_the_response_that_made_the_call_are_its_reason() -> None:
    recorder = RecordingChannel()
    gate = make_gate(recorder, AutoDecider(approver="alice"))
    runner = ToolRunner(gate, Shop().tools())
    conversation: list[Any] = [
        {"role": "user", "content": "Look up A-1."},
        message_item("Let me look up order A-1."),
        function_call("lookup_order", {"order_id": "A-1"}, "c1"),
        {"type": "function_call_output", "call_id": "c1", "output": "delivered"},
        message_item("I will NOT refund anything."),
        {"role": "user", "content": "Refund A-1 please."},
        function_call("refund", {"order_id": "A-1", "amount": 5}, "c2"),
        {"type": "function_call_output", "call_id": "c2", "output": "refunded"},
        message_item("Refunding A-2 as well."),
        function_call("refund", {"order_id": "A-2", "amount": 5}, "c3"),
    ]
    runner.run_responses(conversation)
    runner.run_responses(conversation[:7])
    assert [r.call.reason for r in recorder.notified] == ["Refunding A-2 as well.", None]


def test_a_written_response_is_the_tool_output_and_nothing_runs() -> None:
    shop = Shop()
    gate = make_gate(AutoDecider(approver="alice", respond="Refunded by hand, ticket 4411."))
    runner = ToolRunner(gate, shop.tools())
    message = chat_message(None, chat_tool_call("refund", {"order_id": "A-1", "amount": 5}, "c1"))
    assert runner.run_chat(message) == [
        {"role": "tool", "tool_call_id": "c1", "content": "Refunded by hand, ticket 4411."}
    ]
    assert shop.ran == []


async def test_the_ask_a_person_tool_answers_through_the_runner() -> None:
    inbox = RecordingChannel()
    gate = make_gate(inbox, AutoDecider(approver="alice", respond="EUR"))
    runner = ToolRunner(gate, {"ask_a_person": gate.ask_tool()})
    (answer,) = await runner.arun_responses(
        [function_call("ask_a_person", {"question": "Which currency?"}, "q1")]
    )
    assert answer == {"type": "function_call_output", "call_id": "q1", "output": "EUR"}
    assert [r.kind for r in inbox.notified] == ["question"]


# -- the model is told what a person did; one turn's calls are held together ---------------------
def test_an_approvers_comment_reaches_the_model_with_the_result() -> None:
    shop = Shop()
    gate = make_gate(AutoDecider(approver="alice", comment="ok, but only once this month"))
    (answer,) = ToolRunner(gate, shop.tools()).run_chat(
        chat_message(None, chat_tool_call("refund", {"order_id": "A-1", "amount": 5}, "c1"))
    )
    assert answer["content"] == (
        "refunded 5.0 on A-1\n\nNote from the approval (alice): "
        'alice said: "ok, but only once this month".'
    )


@pytest.mark.parametrize("face", ["sync", "async"])
def test_the_calls_of_one_turn_are_held_at_once(face: str) -> None:
    shop = Shop()
    recorder = RecordingChannel()
    gate = make_gate(recorder)
    runner = ToolRunner(gate, shop.tools())
    message = chat_message(
        None,
        chat_tool_call("refund", {"order_id": "A-1", "amount": 5}, "c1"),
        chat_tool_call("refund", {"order_id": "A-2", "amount": 6}, "c2"),
        chat_tool_call("close_account", {"user": "u-1"}, "c3"),
    )

    together: list[bool] = []

    def approver() -> None:
        try:  # all three wait for a person before anyone decides
            recorder.wait_for_request(3, timeout=5)
            together.append(True)
        except TimeoutError:
            together.append(False)
        done: set[str] = set()
        while len(done) < 3:  # then decide them, last first (one at a time, if need be)
            for req in reversed(list(recorder.notified)):
                if req.id not in done:
                    gate.approve(req.id, approver="alice")
                    done.add(req.id)
            time.sleep(0.01)

    thread = threading.Thread(target=approver)
    thread.start()
    run = runner.run_chat if face == "sync" else lambda m: asyncio.run(runner.arun_chat(m))
    answers = run(message)
    thread.join(10)
    assert together == [True]
    assert [a["tool_call_id"] for a in answers] == ["c1", "c2", "c3"]  # in the calls' order
    assert [a["content"] for a in answers] == [
        "refunded 5.0 on A-1",
        "refunded 6.0 on A-2",
        "closed u-1",
    ]
