"""The LangChain / LangGraph adapter: gated tools and create_agent middleware, on real agents.

The agents are real (``create_agent``, a LangGraph ``StateGraph`` with a
``ToolNode``); only the chat model is a scripted fake that records every
input it gets, so the tests can read what the model was told.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Annotated, Any

import pytest
from langchain.agents import create_agent
from langchain.tools import InjectedState, ToolRuntime
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, ToolCall, ToolMessage
from langchain_core.tools import (
    BaseTool,
    InjectedToolArg,
    InjectedToolCallId,
    StructuredTool,
    Tool,
    tool,
)
from langchain_core.utils.function_calling import convert_to_openai_tool
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition
from pydantic import BaseModel, Field, StrictInt

from gatekeeper import (
    AgentHalted,
    ApprovalDenied,
    ApprovalRequest,
    Gatekeeper,
    MemoryStore,
    Policy,
    RedisStore,
    ToolCallDenied,
)
from gatekeeper.testing import AutoDecider, RecordingChannel
from gatekeeper_langchain import GatedTool, GatekeeperMiddleware, gate_tool, gate_tools
from tests.conftest import RedisServer
from tests.gatekit import audit_events

POLICY = """
version: 1
default: allow
rules:
  - {id: refunds, match: {tool: refund}, verdict: require_approval}
  - {id: no-drop, match: {tool: drop_table}, verdict: deny, reason: "dropping tables is forbidden"}
  - {id: tripwire, match: {tool: open_tunnel}, verdict: halt}
  - {id: quick, match: {tool: quick_note}, verdict: require_approval, approval: {timeout: 0.1}}
"""

DENIAL = 'Tool call denied by bob: "use the sandbox account". The tool was not run.'


# -- a scripted model and a shop of tools ------------------------------------------------------
class ScriptedModel(GenericFakeChatModel):
    """Answers from a script; remembers every list of messages it was given and the tools bound."""

    inputs: list[list[BaseMessage]] = Field(default_factory=list)
    bound: list[list[dict[str, Any]]] = Field(default_factory=list)

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> ScriptedModel:
        self.bound.append([convert_to_openai_tool(t) for t in tools])
        return self

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> Any:
        self.inputs.append(list(messages))
        return super()._generate(messages, *args, **kwargs)


def script(*turns: AIMessage | str) -> ScriptedModel:
    return ScriptedModel(messages=iter(turns))


def say(text: str, *calls: tuple[str, dict[str, Any], str]) -> AIMessage:
    """A model turn: ``text``, then tool calls ``(name, args, id)``."""
    return AIMessage(
        text, tool_calls=[{"name": n, "args": a, "id": i, "type": "tool_call"} for n, a, i in calls]
    )


def call(name: str, args: dict[str, Any], call_id: str = "call-1") -> ToolCall:
    return {"name": name, "args": args, "id": call_id, "type": "tool_call"}


class Shop:
    """The tools an agent gets; ``ran`` lists every call that really ran, with its arguments."""

    def __init__(self) -> None:
        self.ran: list[tuple[str, dict[str, Any]]] = []

    def sync_tools(self) -> list[BaseTool]:
        ran = self.ran

        @tool
        def lookup_order(order_id: str) -> str:
            """Look up an order by its id."""
            ran.append(("lookup_order", {"order_id": order_id}))
            return f"order {order_id}: charged twice, 50 each"

        @tool
        def refund(order_id: str, amount: float) -> str:
            """Refund part of an order."""
            ran.append(("refund", {"order_id": order_id, "amount": amount}))
            return f"refunded {amount} on {order_id}"

        @tool
        def drop_table(table: str) -> str:
            """Drop a database table."""
            ran.append(("drop_table", {"table": table}))
            return "dropped"

        return [lookup_order, refund, drop_table]

    def async_tools(self) -> list[BaseTool]:
        ran = self.ran

        @tool
        async def lookup_order(order_id: str) -> str:
            """Look up an order by its id."""
            ran.append(("lookup_order", {"order_id": order_id}))
            return f"order {order_id}: charged twice, 50 each"

        @tool
        async def refund(order_id: str, amount: float) -> str:
            """Refund part of an order."""
            ran.append(("refund", {"order_id": order_id, "amount": amount}))
            return f"refunded {amount} on {order_id}"

        @tool
        async def drop_table(table: str) -> str:
            """Drop a database table."""
            ran.append(("drop_table", {"table": table}))
            return "dropped"

        return [lookup_order, refund, drop_table]


def memory_gate(*channels: Any) -> Gatekeeper:
    return Gatekeeper(policy=Policy.from_yaml(POLICY), store=MemoryStore(), channels=channels)


def agent_with(
    how: str, gate: Gatekeeper, model: ScriptedModel, tools: list[BaseTool], **options: Any
) -> Any:
    """A create_agent agent gated the way ``how`` says: its tools wrapped, or the middleware."""
    if how == "tools":
        return create_agent(model, gate_tools(gate, tools, **options))
    return create_agent(model, tools, middleware=[GatekeeperMiddleware(gate, **options)])


GATED_HOW = pytest.mark.parametrize("how", ["tools", "middleware"])


# -- another process's approver, on the same Redis -----------------------------------------------
Decide = Callable[[Gatekeeper, ApprovalRequest], Any]


class Approver(threading.Thread):
    """Decides the agent's requests in order, through a Gatekeeper of its own (the console)."""

    def __init__(self, console: Gatekeeper, channel: RecordingChannel, *decisions: Decide) -> None:
        super().__init__(daemon=True)
        self.console, self.channel, self.decisions = console, channel, decisions
        self.error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            for number, decide in enumerate(self.decisions, 1):
                request = self.channel.wait_for_request(number)
                assert request.id in [r.id for r in self.console.pending()]
                decide(self.console, request)
        except BaseException as exc:
            self.error = exc

    def finish(self) -> None:
        self.join(10)
        assert not self.is_alive(), "the approver is still waiting for a request"
        if self.error is not None:
            raise self.error


@pytest.fixture
def redis_gates(
    redis_server: RedisServer, redis_prefix: str
) -> Iterator[tuple[Gatekeeper, Gatekeeper, RecordingChannel]]:
    """The agent's gate and the approver's: separate RedisStores on one URL and prefix."""
    channel = RecordingChannel()
    agent = Gatekeeper(
        policy=Policy.from_yaml(POLICY),
        store=RedisStore(redis_server.url, prefix=redis_prefix),
        channels=[channel],
    )
    console = Gatekeeper(
        policy=Policy.from_yaml(POLICY), store=RedisStore(redis_server.url, prefix=redis_prefix)
    )
    yield agent, console, channel
    agent.close()
    console.close()


def approve_with_edit(console: Gatekeeper, request: ApprovalRequest) -> None:
    console.approve(request.id, approver="alice", args={**request.call.args, "amount": 20})


def deny_with_comment(console: Gatekeeper, request: ApprovalRequest) -> None:
    console.deny(request.id, approver="bob", comment="use the sandbox account")


THE_RUN = (
    say("Let me look the order up.", ("lookup_order", {"order_id": "A-1"}, "c1")),
    say(
        "The customer was charged twice; refunding the extra charge.",
        ("refund", {"order_id": "A-1", "amount": 50}, "c2"),
    ),
    say("Refunding the other order as well.", ("refund", {"order_id": "B-2", "amount": 500}, "c3")),
    "Refunded 20 on A-1; the refund on B-2 was denied.",
)


def check_the_run(
    model: ScriptedModel,
    shop: Shop,
    result: dict[str, Any],
    gate: Gatekeeper,
    console: Gatekeeper,
    channel: RecordingChannel,
) -> None:
    """What every gated multi-step run must show, whichever way it was gated."""
    # The allowed call ran at once; the held one ran with the approver's edit; the denied never.
    assert shop.ran == [
        ("lookup_order", {"order_id": "A-1"}),
        ("refund", {"order_id": "A-1", "amount": 20.0}),
    ]
    # The model read each result on its next turn: the denial as an error tool result.
    assert len(model.inputs) == 4
    after_lookup, after_refund, after_denial = (turn[-1] for turn in model.inputs[1:])
    assert isinstance(after_lookup, ToolMessage) and after_lookup.status == "success"
    assert after_lookup.content == "order A-1: charged twice, 50 each"
    assert isinstance(after_refund, ToolMessage)
    # ...and was told that a person changed the call, and to what.
    assert after_refund.content == (
        "refunded 20.0 on A-1\n\nNote from the approval (alice): alice changed the arguments; "
        'the tool ran with {"amount":20,"order_id":"A-1"}.'
    )
    assert isinstance(after_denial, ToolMessage)
    assert after_denial.status == "error"
    assert after_denial.tool_call_id == "c3" and after_denial.name == "refund"
    assert after_denial.content == DENIAL
    assert result["messages"][-1].content == "Refunded 20 on A-1; the refund on B-2 was denied."
    # The approver saw why: the model's own words before each call.
    approved, denied = channel.notified
    assert approved.call.reason == "The customer was charged twice; refunding the extra charge."
    assert denied.call.reason == "Refunding the other order as well."
    assert denied.call.args == {"order_id": "B-2", "amount": 500}
    gate.store.flush()  # outcomes of allowed calls are recorded in the background
    kinds = sorted((e.tool, e.kind) for e in audit_events(console))
    assert kinds == [
        ("lookup_order", "call.allowed"),
        ("lookup_order", "call.executed"),
        ("refund", "call.held"),
        ("refund", "call.held"),
        ("refund", "request.approved"),
        ("refund", "request.denied"),
        ("refund", "request.executed"),
        ("refund", "request.released"),
    ]
    assert console.verify_audit().ok


@pytest.mark.redis
@GATED_HOW
def test_an_agent_run_allowed_then_approved_elsewhere_then_denied(
    how: str, redis_gates: tuple[Gatekeeper, Gatekeeper, RecordingChannel]
) -> None:
    gate, console, channel = redis_gates
    shop = Shop()
    model = script(*THE_RUN)
    agent = agent_with(how, gate, model, shop.sync_tools())
    approver = Approver(console, channel, approve_with_edit, deny_with_comment)
    result = agent.invoke({"messages": [{"role": "user", "content": "I was charged twice"}]})
    approver.finish()
    check_the_run(model, shop, result, gate, console, channel)


@pytest.mark.redis
@GATED_HOW
async def test_the_same_run_async_with_coroutine_tools(
    how: str, redis_gates: tuple[Gatekeeper, Gatekeeper, RecordingChannel]
) -> None:
    gate, console, channel = redis_gates
    shop = Shop()
    model = script(*THE_RUN)
    agent = agent_with(how, gate, model, shop.async_tools())
    approver = Approver(console, channel, approve_with_edit, deny_with_comment)
    result = await agent.ainvoke({"messages": [{"role": "user", "content": "I was charged twice"}]})
    approver.finish()
    check_the_run(model, shop, result, gate, console, channel)


@GATED_HOW
def test_a_policy_denial_reaches_the_model_and_the_agent_carries_on(how: str) -> None:
    shop = Shop()
    model = script(say("Cleaning up.", ("drop_table", {"table": "users"}, "c1")), "I can't.")
    agent = agent_with(how, memory_gate(), model, shop.sync_tools())
    agent.invoke({"messages": [{"role": "user", "content": "drop users"}]})
    told = model.inputs[1][-1]
    assert isinstance(told, ToolMessage) and told.status == "error"
    assert told.content == (
        "Tool call drop_table denied by policy: dropping tables is forbidden. The tool was not run."
    )
    assert shop.ran == []


@GATED_HOW
def test_a_timeout_and_a_halt_are_tool_results_too(how: str) -> None:
    ran: list[str] = []

    @tool
    def quick_note(text: str) -> str:
        """Leave a note."""
        ran.append(text)
        return "noted"

    @tool
    def open_tunnel(host: str) -> str:
        """Open a tunnel to a host."""
        ran.append(host)
        return "open"

    model = script(
        say("", ("quick_note", {"text": "hi"}, "c1")),
        say("", ("open_tunnel", {"host": "evil.example"}, "c2")),
        "Stopped.",
    )
    agent = agent_with(how, memory_gate(), model, [quick_note, open_tunnel])
    agent.invoke({"messages": [{"role": "user", "content": "go"}]})
    timed_out, halted = model.inputs[1][-1], model.inputs[2][-1]
    assert isinstance(timed_out, ToolMessage) and timed_out.status == "error"
    assert "quick_note" in str(timed_out.content) and "not run" in str(timed_out.content)
    assert isinstance(halted, ToolMessage) and halted.status == "error"
    assert "halted" in str(halted.content) and "not run" in str(halted.content)
    assert ran == []


@GATED_HOW
def test_the_reason_is_the_reasoning_and_text_before_each_call(how: str) -> None:
    """Anthropic interleaves thinking, text and tool calls: each call gets what came before it."""
    channel = RecordingChannel()
    turn = AIMessage(
        content=[
            {"type": "thinking", "thinking": "The customer was charged twice.", "signature": "s"},
            {"type": "text", "text": "First I check the order."},
            {"type": "tool_use", "id": "c1", "name": "lookup_order", "input": {"order_id": "A-1"}},
            {"type": "text", "text": "Then I refund one charge."},
            {
                "type": "tool_use",
                "id": "c2",
                "name": "refund",
                "input": {"order_id": "A-1", "amount": 50},
            },
        ],
        response_metadata={"model_provider": "anthropic"},
        tool_calls=[
            {"name": "lookup_order", "args": {"order_id": "A-1"}, "id": "c1"},
            {"name": "refund", "args": {"order_id": "A-1", "amount": 50}, "id": "c2"},
        ],
    )
    gate = memory_gate(channel, AutoDecider(approver="alice"))
    agent = agent_with(how, gate, script(turn, "Done."), Shop().sync_tools())
    agent.invoke({"messages": [{"role": "user", "content": "charged twice"}]})
    reasons = {e.tool: e.data["reason"] for e in audit_events(gate) if "reason" in e.data}
    assert reasons == {
        "lookup_order": "The customer was charged twice.\n\nFirst I check the order.",
        "refund": (
            "The customer was charged twice.\n\nFirst I check the order.\n\n"
            "Then I refund one charge."
        ),
    }


# -- arguments the model got wrong, tools it doesn't have ---------------------------------------
@GATED_HOW
def test_bad_arguments_go_back_to_the_model_before_anyone_is_asked(how: str) -> None:
    shop, channel = Shop(), RecordingChannel()
    model = script(
        say("Refunding.", ("refund", {"order_id": "A-1", "amount": "lots"}, "c1")),
        say("Refunding.", ("refund", {"amount": 5}, "c2")),
        "I'll stop.",
    )
    gate = memory_gate(channel)
    agent_with(how, gate, model, shop.sync_tools()).invoke(
        {"messages": [{"role": "user", "content": "refund"}]}
    )
    wrong_type, missing = model.inputs[1][-1], model.inputs[2][-1]
    assert isinstance(wrong_type, ToolMessage) and wrong_type.status == "error"
    assert wrong_type.content == (
        "Invalid arguments for tool refund: amount: Input should be a valid number, unable to "
        "parse string as a number (got 'lots'). The tool was not run; call it again with "
        "arguments that match its schema."
    )
    assert isinstance(missing, ToolMessage) and missing.status == "error"
    assert "order_id: Field required" in str(missing.content)
    assert shop.ran == []
    assert channel.notified == []  # nobody was asked to approve garbage
    assert audit_events(gate) == []


def test_a_tool_the_agent_does_not_have_is_refused_and_audited() -> None:
    shop = Shop()
    gate = memory_gate()
    model = script(say("Wiping the disk.", ("rm_rf", {"path": "/"}, "c1")), "Sorry.")
    agent_with("middleware", gate, model, shop.sync_tools()).invoke(
        {"messages": [{"role": "user", "content": "clean up"}]}
    )
    told = model.inputs[1][-1]
    assert isinstance(told, ToolMessage) and told.status == "error"
    assert told.content == (
        "Tool call rm_rf denied by policy: no tool named 'rm_rf' is offered to this agent. "
        "The tool was not run. The tools you have are: drop_table, lookup_order, refund."
    )
    (event,) = audit_events(gate)
    assert (event.kind, event.tool, event.data["args"]) == ("call.denied", "rm_rf", {"path": "/"})
    assert event.data["rules"] == ["unknown-tool"]
    assert event.data["reason"] == "Wiping the disk."


def test_an_approver_edit_that_does_not_fit_the_schema_runs_nothing() -> None:
    shop = Shop()
    gate = memory_gate(AutoDecider(approver="alice", args={"order_id": "A-1", "amount": "lots"}))
    refund = gate_tool(gate, shop.sync_tools()[1])
    told = refund.invoke(call("refund", {"order_id": "A-1", "amount": 5}))
    assert isinstance(told, ToolMessage) and told.status == "error"
    assert "approved arguments for refund don't fit its schema" in str(told.content)
    assert "not run" in str(told.content)
    assert shop.ran == []


# -- tool identity ---------------------------------------------------------------------------------
class Search(BaseModel):
    """Search the catalogue."""

    query: str = Field(description="what to look for")
    limit: int = Field(default=10, ge=1, le=100)


def identity_cases() -> list[BaseTool]:
    @tool
    def refund(order_id: str, amount: float) -> str:
        """Refund part of an order."""
        return "ok"

    @tool(parse_docstring=True)
    async def lookup(order_id: str, verbose: bool = False) -> str:
        """Look up an order.

        Args:
            order_id: The order's id, like A-1.
            verbose: Whether to include every line.
        """
        return "ok"

    @tool
    def with_injected(
        text: str, runtime: ToolRuntime, messages: Annotated[list[Any], InjectedState("messages")]
    ) -> str:
        """Note something, seeing the state."""
        return "ok"

    @tool(return_direct=True, extras={"cache_control": {"type": "ephemeral"}})
    def final(answer: str) -> str:
        """Give the final answer."""
        return answer

    return [
        refund,
        lookup,
        with_injected,
        final,
        StructuredTool.from_function(
            lambda query, limit=10: "ok", name="search", args_schema=Search
        ),
        StructuredTool.from_function(
            lambda **kw: "ok",
            name="json_schema_tool",
            description="Takes a JSON schema.",
            args_schema={
                "type": "object",
                "properties": {"x": {"type": "integer"}},
                "required": ["x"],
            },
        ),
        Tool(name="legacy", func=lambda q: q, description="A single-string tool."),
    ]


@pytest.mark.parametrize("original", identity_cases(), ids=lambda t: t.name)
def test_the_model_sees_the_same_tool(original: BaseTool) -> None:
    gated = gate_tool(memory_gate(), original)
    assert isinstance(gated, GatedTool)
    assert isinstance(gated, Tool) == isinstance(original, Tool)  # LangChain treats a Tool apart
    assert convert_to_openai_tool(gated) == convert_to_openai_tool(original)
    assert convert_to_openai_tool(gated, strict=True) == convert_to_openai_tool(
        original, strict=True
    )
    assert (gated.name, gated.description, gated.args) == (
        original.name,
        original.description,
        original.args,
    )
    assert (gated.return_direct, gated.extras) == (original.return_direct, original.extras)
    assert gated.tool is original


@GATED_HOW
def test_the_agent_binds_the_same_tools_to_the_model(how: str) -> None:
    shop = Shop()
    plain = script("hello")
    create_agent(plain, shop.sync_tools()).invoke({"messages": [{"role": "user", "content": "hi"}]})
    gated = script("hello")
    agent_with(how, memory_gate(), gated, shop.sync_tools()).invoke(
        {"messages": [{"role": "user", "content": "hi"}]}
    )
    assert gated.bound == plain.bound and len(plain.bound[0]) == 3


# -- LangGraph ToolNode ----------------------------------------------------------------------------
def tool_node_graph(model: ScriptedModel, tools: list[BaseTool]) -> Any:
    """The classic LangGraph agent: a model node, a ToolNode, tools_condition between them."""
    graph = StateGraph(MessagesState)
    graph.add_node("model", lambda state: {"messages": [model.invoke(state["messages"])]})
    graph.add_node("tools", ToolNode(tools))
    graph.add_edge(START, "model")
    graph.add_conditional_edges("model", tools_condition, {"tools": "tools", END: END})
    graph.add_edge("tools", "model")
    return graph.compile()


def test_gated_tools_in_a_langgraph_tool_node_keep_injection_and_get_reasons() -> None:
    seen: dict[str, Any] = {}

    @tool
    def note(
        text: str,
        runtime: ToolRuntime,
        messages: Annotated[list[Any], InjectedState("messages")],
        call_id: Annotated[str, InjectedToolCallId],
    ) -> str:
        """Leave a note."""
        seen.update(runtime=runtime.tool_call_id, messages=len(messages), call_id=call_id)
        return f"noted {text}"

    @tool(response_format="content_and_artifact")
    def refund(order_id: str, amount: float) -> tuple[str, dict[str, Any]]:
        """Refund part of an order."""
        return f"refunded {amount}", {"order_id": order_id, "amount": amount}

    channel = RecordingChannel()
    gate = memory_gate(channel, AutoDecider(approver="alice"))
    model = script(
        say(
            "Writing it down, then refunding.",
            ("note", {"text": "double charge"}, "c1"),
            ("refund", {"order_id": "A-1", "amount": 5}, "c2"),
        ),
        "Done.",
    )
    result = tool_node_graph(model, gate_tools(gate, [note, refund])).invoke(
        {"messages": [{"role": "user", "content": "fix it"}]}
    )
    noted, refunded = result["messages"][2:4]
    assert noted.content == "noted double charge"
    assert seen == {"runtime": "c1", "messages": 2, "call_id": "c1"}  # all it asked for
    assert refunded.content == "refunded 5.0"
    assert refunded.artifact == {"order_id": "A-1", "amount": 5.0}
    (held,) = channel.notified
    assert held.call.reason == "Writing it down, then refunding."
    allowed = [e for e in audit_events(gate) if e.kind == "call.allowed"]
    assert [(e.tool, e.data["args"]) for e in allowed] == [("note", {"text": "double charge"})]


# -- invoking a gated tool directly ----------------------------------------------------------------
def test_a_blocked_call_is_a_tool_message_with_a_tool_call_and_text_without() -> None:
    shop = Shop()
    gate = memory_gate(
        AutoDecider(approve=False, approver="bob", comment="use the sandbox account")
    )
    refund = gate_tool(gate, shop.sync_tools()[1])
    as_call = refund.invoke(call("refund", {"order_id": "A-1", "amount": 5}, "c9"))
    assert isinstance(as_call, ToolMessage)
    assert (as_call.content, as_call.status, as_call.tool_call_id, as_call.name) == (
        DENIAL,
        "error",
        "c9",
        "refund",
    )
    assert refund.invoke({"order_id": "A-1", "amount": 5}) == DENIAL
    assert shop.ran == []


def test_on_blocked_raise_raises_what_blocked_the_call() -> None:
    shop = Shop()
    gate = memory_gate(
        AutoDecider(approve=False, approver="bob", comment="use the sandbox account")
    )
    refund, drop = gate_tools(gate, shop.sync_tools()[1:], on_blocked="raise")
    with pytest.raises(ApprovalDenied) as denied:
        refund.invoke(call("refund", {"order_id": "A-1", "amount": 5}))
    assert denied.value.model_message == DENIAL
    with pytest.raises(ToolCallDenied, match="dropping tables is forbidden"):
        drop.invoke({"table": "users"})
    assert shop.ran == []


def test_on_blocked_raise_in_the_middleware_stops_the_agent() -> None:
    shop = Shop()
    model = script(say("", ("drop_table", {"table": "users"}, "c1")), "unreachable")
    agent = agent_with("middleware", memory_gate(), model, shop.sync_tools(), on_blocked="raise")
    with pytest.raises(ToolCallDenied, match="dropping tables is forbidden"):
        agent.invoke({"messages": [{"role": "user", "content": "drop"}]})
    model = script(say("", ("rm_rf", {"path": "/"}, "c1")), "unreachable")
    agent = agent_with("middleware", memory_gate(), model, shop.sync_tools(), on_blocked="raise")
    with pytest.raises(ToolCallDenied, match="no tool named 'rm_rf'"):
        agent.invoke({"messages": [{"role": "user", "content": "wipe"}]})
    assert shop.ran == []


async def test_an_async_tool_is_awaited_and_a_sync_one_runs_through_ainvoke() -> None:
    shop = Shop()
    gate = memory_gate(AutoDecider(approver="alice"))
    async_refund = gate_tool(gate, shop.async_tools()[1])
    sync_refund = gate_tool(gate, shop.sync_tools()[1])
    first = await async_refund.ainvoke(call("refund", {"order_id": "A-1", "amount": 5}))
    second = await sync_refund.ainvoke({"order_id": "B-2", "amount": 7})
    assert isinstance(first, ToolMessage) and first.content == "refunded 5.0 on A-1"
    assert second == "refunded 7.0 on B-2"
    with pytest.raises(NotImplementedError, match="does not support sync invocation"):
        async_refund.invoke({"order_id": "C-3", "amount": 1})
    assert shop.ran == [
        ("refund", {"order_id": "A-1", "amount": 5.0}),
        ("refund", {"order_id": "B-2", "amount": 7.0}),
    ]
    assert len([e for e in audit_events(gate) if e.kind == "call.held"]) == 2


def test_a_single_string_tool_takes_its_string() -> None:
    ran: list[str] = []

    def search(query: str) -> str:
        ran.append(query)
        return f"found {query}"

    legacy = Tool(name="search", func=search, description="Search")
    channel = RecordingChannel()
    gated = gate_tool(memory_gate(channel), legacy)
    assert gated.invoke("cats") == "found cats"
    assert gated.invoke(call("search", {"__arg1": "dogs"})).content == "found dogs"
    assert ran == ["cats", "dogs"]


def test_the_reason_without_an_agent_is_the_sessions() -> None:
    channel = RecordingChannel()
    gate = memory_gate(channel, AutoDecider(approver="alice"))
    refund = gate_tool(gate, Shop().sync_tools()[1], irreversible=True, scopes=["payments:write"])
    with gate.session(agent="billing-bot", reason="the customer asked twice"):
        refund.invoke({"order_id": "A-1", "amount": 5})
    (request,) = channel.notified
    assert request.call.reason == "the customer asked twice"
    assert request.call.agent == "billing-bot"
    assert request.call.irreversible and request.call.required_scopes == ("payments:write",)


@GATED_HOW
def test_the_agent_runs_in_the_callers_session(how: str) -> None:
    channel = RecordingChannel()
    gate = memory_gate(channel, AutoDecider(approver="alice"))
    model = script(say("Refunding.", ("refund", {"order_id": "A-1", "amount": 5}, "c1")), "ok")
    agent = agent_with(how, gate, model, Shop().sync_tools())
    with gate.session(agent="billing-bot"):
        agent.invoke({"messages": [{"role": "user", "content": "refund"}]})
    (request,) = channel.notified
    assert (request.call.agent, request.call.reason) == ("billing-bot", "Refunding.")


@GATED_HOW
async def test_the_async_agent_runs_in_the_callers_session(how: str) -> None:
    channel = RecordingChannel()
    gate = memory_gate(channel, AutoDecider(approver="alice"))
    model = script(say("Refunding.", ("refund", {"order_id": "A-1", "amount": 5}, "c1")), "ok")
    agent = agent_with(how, gate, model, Shop().async_tools())
    async with gate.session(agent="billing-bot"):
        await agent.ainvoke({"messages": [{"role": "user", "content": "refund"}]})
    (request,) = channel.notified
    assert (request.call.agent, request.call.reason) == ("billing-bot", "Refunding.")


def test_the_middleware_declares_per_tool_options_and_does_not_gate_a_gated_tool_twice() -> None:
    channel = RecordingChannel()
    gate = memory_gate(channel, AutoDecider(approver="alice"))
    shop = Shop()
    lookup, refund, _ = shop.sync_tools()
    middleware = GatekeeperMiddleware(
        gate, tools={"refund": {"irreversible": True, "scopes": ["payments:write"], "risk": "high"}}
    )
    model = script(
        say(
            "",
            ("refund", {"order_id": "A-1", "amount": 5}, "c1"),
            ("lookup_order", {"order_id": "A-1"}, "c2"),
        ),
        "ok",
    )
    create_agent(model, [gate_tool(gate, lookup), refund], middleware=[middleware]).invoke(
        {"messages": [{"role": "user", "content": "go"}]}
    )
    (request,) = channel.notified
    assert request.call.irreversible and request.call.required_scopes == ("payments:write",)
    assert str(request.call.declared_risk) == "high"
    assert [e.kind for e in audit_events(gate) if e.tool == "lookup_order"] == [
        "call.allowed",
        "call.executed",
    ]
    assert sorted(name for name, _ in shop.ran) == ["lookup_order", "refund"]


def test_bad_options_are_refused_up_front() -> None:
    gate = memory_gate()
    with pytest.raises(ValueError, match="unknown option"):
        GatekeeperMiddleware(gate, tools={"refund": {"irreversable": True}})  # type: ignore[typeddict-unknown-key]
    with pytest.raises(ValueError, match="on_blocked"):
        GatekeeperMiddleware(gate, on_blocked="ignore")  # type: ignore[arg-type]
    refund = Shop().sync_tools()[1]
    with pytest.raises(ValueError, match="already gated"):
        gate_tool(gate, gate_tool(gate, refund))
    with pytest.raises(TypeError, match="@tool"):
        gate_tool(gate, print)  # type: ignore[arg-type]


def test_halted_agents_get_the_halt_as_their_result() -> None:
    gate = memory_gate()
    gate.halt(agent="billing-bot", by="alice", reason="incident")
    lookup = gate_tool(gate, Shop().sync_tools()[0])
    with gate.session(agent="billing-bot"):
        told = lookup.invoke(call("lookup_order", {"order_id": "A-1"}))
    assert isinstance(told, ToolMessage) and told.status == "error"
    assert "not run" in str(told.content)
    with gate.session(agent="billing-bot"), pytest.raises(AgentHalted):
        gate_tool(gate, Shop().sync_tools()[0], on_blocked="raise").invoke({"order_id": "A-1"})


# -- defaults are filled in before the gate -------------------------------------------------------
PAY_POLICY = """
version: 1
default: allow
rules:
  - {id: big, match: {tool: pay, args: {amount: {gt: 100}}}, verdict: deny, reason: too much}
  - {id: hold, match: {tool: pay}, verdict: require_approval}
"""


def pay_tools(ran: list[tuple[str, float]]) -> tuple[BaseTool, BaseTool]:
    """``pay`` with a high default amount, sync and async."""

    @tool
    def pay(to: str, amount: float = 5000.0) -> str:
        """Pay someone."""
        ran.append((to, amount))
        return "paid"

    @tool("pay")
    async def apay(to: str, amount: float = 5000.0) -> str:
        """Pay someone."""
        ran.append((to, amount))
        return "paid"

    return pay, apay


def pay_gate(*channels: Any) -> Gatekeeper:
    return Gatekeeper(policy=Policy.from_yaml(PAY_POLICY), store=MemoryStore(), channels=channels)


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_a_gated_tool_shows_the_gate_its_defaults(mode: str) -> None:
    ran: list[tuple[str, float]] = []
    channel = RecordingChannel()
    gate = pay_gate(channel, AutoDecider(approver="alice"))
    pay = gate_tool(gate, pay_tools(ran)[mode == "async"])
    # The omitted amount is 5000: the policy denies it, nothing runs.
    told = (
        pay.invoke(call("pay", {"to": "x"}))
        if mode == "sync"
        else await pay.ainvoke(call("pay", {"to": "x"}))
    )
    assert isinstance(told, ToolMessage) and told.status == "error"
    assert "denied by policy: too much" in str(told.content)
    assert ran == []
    (event,) = audit_events(gate)
    assert event.data["args"] == {"to": "x", "amount": 5000.0}
    # With a policy that holds it, the approver sees the default and it runs with exactly that.
    gate = Gatekeeper(
        policy=Policy.from_yaml(POLICY.replace("tool: refund", "tool: pay")),
        store=MemoryStore(),
        channels=[channel, AutoDecider(approver="alice")],
    )
    pay = gate_tool(gate, pay_tools(ran)[mode == "async"])
    if mode == "sync":
        pay.invoke(call("pay", {"to": "x"}))
    else:
        await pay.ainvoke(call("pay", {"to": "x"}))
    assert channel.notified[-1].call.args == {"to": "x", "amount": 5000.0}
    assert ran == [("x", 5000.0)]


def test_a_json_schema_tool_shows_the_gate_its_declared_defaults() -> None:
    ran: list[dict[str, Any]] = []

    def pay(**kwargs: Any) -> str:
        ran.append(kwargs)
        return "paid"

    schema = {
        "type": "object",
        "properties": {"to": {"type": "string"}, "amount": {"type": "number", "default": 5000}},
        "required": ["to"],
    }
    tool_ = StructuredTool(name="pay", description="Pay.", args_schema=schema, func=pay)
    gate = pay_gate(AutoDecider(approver="alice"))
    told = gate_tool(gate, tool_).invoke(call("pay", {"to": "x"}))
    assert isinstance(told, ToolMessage) and "too much" in str(told.content)
    assert ran == []
    (event,) = audit_events(gate)
    assert event.data["args"] == {"to": "x", "amount": 5000}


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_the_middleware_shows_the_gate_the_defaults(mode: str) -> None:
    ran: list[tuple[str, float]] = []
    channel = RecordingChannel()
    for policy, expected in ((PAY_POLICY, []), (POLICY.replace("tool: refund", "tool: pay"), None)):
        gate = Gatekeeper(
            policy=Policy.from_yaml(policy),
            store=MemoryStore(),
            channels=[channel, AutoDecider(approver="alice")],
        )
        model = script(say("Paying.", ("pay", {"to": "x"}, "c1")), "done")
        agent = create_agent(
            model, [pay_tools(ran)[mode == "async"]], middleware=[GatekeeperMiddleware(gate)]
        )
        question = {"messages": [{"role": "user", "content": "pay"}]}
        if mode == "sync":
            agent.invoke(question)
        else:
            await agent.ainvoke(question)
        if expected is not None:  # the 5000 default is denied by the policy
            told = model.inputs[1][-1]
            assert isinstance(told, ToolMessage) and "too much" in str(told.content)
            assert ran == expected
    # held: the approver saw the default, and the tool ran with exactly that
    assert channel.notified[-1].call.args == {"to": "x", "amount": 5000.0}
    assert ran == [("x", 5000.0)]


# -- hidden arguments, double gates, edits ---------------------------------------------------------
def test_hidden_arguments_in_a_tool_call_outside_a_tool_node_are_refused() -> None:
    ran: list[tuple[str, str]] = []

    @tool
    def refund(order_id: str, account: Annotated[str, InjectedToolArg] = "customer") -> str:
        """Refund an order."""
        ran.append((order_id, account))
        return "ok"

    channel = RecordingChannel()
    gated = gate_tool(memory_gate(channel, AutoDecider(approver="alice")), refund)
    told = gated.invoke(call("refund", {"order_id": "A-1", "account": "attacker"}))
    assert isinstance(told, ToolMessage) and told.status == "error"
    assert "account are injected by the application" in str(told.content)
    assert ran == [] and channel.notified == []
    # the application's own plain-argument call still passes its hidden value on
    gated.invoke({"order_id": "A-1", "account": "house"})
    assert ran == [("A-1", "house")]
    # in a ToolNode the model's value is stripped and the tool's default applies
    model = script(say("", ("refund", {"order_id": "B-2", "account": "x"}, "c2")), "done")
    create_agent(model, [gated]).invoke({"messages": [{"role": "user", "content": "go"}]})
    assert ran[-1] == ("B-2", "customer")


def test_a_tool_over_a_guarded_function_is_gated_once() -> None:
    channel = RecordingChannel()
    gate = memory_gate(channel, AutoDecider(approver="alice"))
    ran: list[str] = []

    @tool
    @gate.guard
    def refund(order_id: str, amount: float) -> str:
        """Refund part of an order."""
        ran.append(order_id)
        return "ok"

    with pytest.raises(ValueError, match=r"gate\.guard"):
        gate_tool(gate, refund)
    model = script(say("", ("refund", {"order_id": "A-1", "amount": 5}, "c1")), "ok")
    create_agent(model, [refund], middleware=[GatekeeperMiddleware(gate)]).invoke(
        {"messages": [{"role": "user", "content": "go"}]}
    )
    assert len(channel.notified) == 1 and ran == ["A-1"]


async def test_the_async_middleware_refuses_an_unknown_tool_on_the_async_store() -> None:
    gate = memory_gate()
    used: list[str] = []
    sync_refuse, async_refuse = gate.refuse_unknown_tool, gate.arefuse_unknown_tool

    def refuse(*args: Any, **kwargs: Any) -> Any:
        used.append("sync")
        return sync_refuse(*args, **kwargs)

    async def arefuse(*args: Any, **kwargs: Any) -> Any:
        used.append("async")
        return await async_refuse(*args, **kwargs)

    gate.refuse_unknown_tool = refuse  # type: ignore[method-assign]
    gate.arefuse_unknown_tool = arefuse  # type: ignore[method-assign]
    model = script(say("", ("rm_rf", {"path": "/"}, "c1")), "Sorry.")
    await agent_with("middleware", gate, model, Shop().async_tools()).ainvoke(
        {"messages": [{"role": "user", "content": "clean up"}]}
    )
    assert used == ["async"]
    assert [e.kind for e in audit_events(gate)] == ["call.denied"]


def test_an_edit_of_one_to_true_is_an_edit_and_is_checked() -> None:
    ran: list[int] = []

    @tool
    def quick_note(n: StrictInt) -> str:
        """Count."""
        ran.append(n)
        return "ok"

    gate = memory_gate(AutoDecider(approver="alice", args={"n": True}))
    told = gate_tool(gate, quick_note).invoke(call("quick_note", {"n": 1}))
    assert isinstance(told, ToolMessage) and told.status == "error"
    assert "approved arguments for quick_note don't fit its schema" in str(told.content)
    assert ran == []


# -- a person writes the result instead, or answers the agent's question -----------------------
@GATED_HOW
def test_a_written_response_is_the_tool_result_the_model_reads(how: str) -> None:
    shop = Shop()
    model = script(say("", ("refund", {"order_id": "A-1", "amount": 50.0}, "c1")), "Done.")
    bob = AutoDecider(approver="bob", respond="Already refunded on 1 Dec; nothing to do.")
    agent = agent_with(how, memory_gate(bob), model, shop.sync_tools())
    agent.invoke({"messages": [{"role": "user", "content": "refund A-1"}]})
    told = model.inputs[1][-1]
    assert isinstance(told, ToolMessage) and told.status == "success"
    assert told.content == "Already refunded on 1 Dec; nothing to do."
    assert told.tool_call_id == "c1" and told.name == "refund"
    assert shop.ran == []


@GATED_HOW
async def test_a_written_response_reaches_the_async_agent(how: str) -> None:
    shop = Shop()
    model = script(say("", ("refund", {"order_id": "A-1", "amount": 50.0}, "c1")), "Done.")
    bob = AutoDecider(approver="bob", respond="handled by hand")
    agent = agent_with(how, memory_gate(bob), model, shop.async_tools())
    await agent.ainvoke({"messages": [{"role": "user", "content": "refund A-1"}]})
    told = model.inputs[1][-1]
    assert isinstance(told, ToolMessage) and told.content == "handled by hand"
    assert shop.ran == []


@GATED_HOW
def test_the_ask_a_person_tool_brings_the_answer_back_to_the_model(how: str) -> None:
    shop = Shop()
    inbox = RecordingChannel()
    alice = AutoDecider(approver="alice", respond=lambda req: f"EUR (you asked: {req.question})")
    gate = memory_gate(inbox, alice)
    ask = tool(gate.ask_tool())
    model = script(
        say("", ("ask_a_person", {"question": "Which currency?"}, "q1")),
        "Thanks.",
    )
    if how == "tools":  # the question tool is gated already: it goes in as it is
        agent = create_agent(model, [*gate_tools(gate, shop.sync_tools()), ask])
    else:
        agent = agent_with(how, gate, model, [*shop.sync_tools(), ask])
    agent.invoke({"messages": [{"role": "user", "content": "refund in the right currency"}]})
    told = model.inputs[1][-1]
    assert isinstance(told, ToolMessage) and told.tool_call_id == "q1"
    assert told.content == "EUR (you asked: Which currency?)"
    assert [r.kind for r in inbox.notified] == ["question"]  # asked once, as a question
    assert "question" in str(model.bound[0])  # the model was shown the tool and its parameter


@GATED_HOW
def test_an_approvers_comment_and_edit_reach_the_model_with_the_result(how: str) -> None:
    shop = Shop()
    model = script(say("", ("refund", {"order_id": "A-1", "amount": 50.0}, "c1")), "Done.")
    alice = AutoDecider(
        approver="alice",
        comment="half now, half next week",
        args={"order_id": "A-1", "amount": 25.0},
    )
    agent = agent_with(how, memory_gate(alice), model, shop.sync_tools())
    agent.invoke({"messages": [{"role": "user", "content": "refund A-1"}]})
    told = model.inputs[1][-1]
    assert isinstance(told, ToolMessage) and told.status == "success"
    assert told.content == (
        "refunded 25.0 on A-1\n\nNote from the approval (alice): alice changed the arguments; "
        'the tool ran with {"amount":25.0,"order_id":"A-1"}. alice said: "half now, half next '
        'week".'
    )
