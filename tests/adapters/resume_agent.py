"""An agent process for the resume tests: runs until its held calls wait and exits, or resumes.

    python -m tests.adapters.resume_agent FRAMEWORK PHASE CONFIG DIR

FRAMEWORK is ``langgraph``, ``openai-agents`` or ``pydantic-ai``; PHASE is
``start`` (run the agent until its calls wait for people, save the run to
DIR, exit) or ``resume`` (load the run from DIR and go on). The model is
scripted: it asks for two refunds at once (``call-a``, ``call-b``), then ends.
Each refund that really runs appends a line to DIR/ran.txt. The process prints
one JSON object: ``{"waiting": [request ids seen in the framework's stream or
events]}`` when the run stopped on held calls, ``{"read": {call id: what the
model read}, "final": text}`` when it finished.

The run is saved the framework's own way: LangGraph's checkpoints (a
checkpointer that keeps them in a file), the Agents SDK's
``RunState.to_string()``, Pydantic AI's message history and
``DeferredToolRequests``.
"""

from __future__ import annotations

import asyncio
import json
import pickle
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gatekeeper import Gatekeeper

CALLS = [
    ("call-a", {"order_id": "A-1", "amount": 20.0}),
    ("call-b", {"order_id": "B-2", "amount": 500.0}),
]
AGENT = "billing-bot"


def ledger(folder: Path, order_id: str, amount: float) -> str:
    """The refund tool's body: what really ran, one line per run."""
    with (folder / "ran.txt").open("a") as ran:
        ran.write(f"refund {order_id} {amount}\n")
    return f"refunded {amount} on {order_id}"


# -- LangGraph: create_agent + GatekeeperMiddleware(resumable=True) + a checkpointer ------------
def langgraph(gate: Gatekeeper, phase: str, folder: Path) -> dict[str, Any]:
    from langchain.agents import create_agent
    from langchain_core.messages import ToolMessage
    from langchain_core.tools import tool
    from langgraph.checkpoint.memory import InMemorySaver

    from gatekeeper_langchain import GatekeeperMiddleware, resume_command
    from tests.adapters.test_langchain import say, script

    class FileSaver(InMemorySaver):
        """InMemorySaver whose checkpoints outlive the process: kept in a file."""

        def __init__(self, path: Path) -> None:
            super().__init__()
            self.path = path
            if path.exists():
                storage, writes, blobs = pickle.loads(path.read_bytes())
                for thread, spaces in storage.items():
                    for space, saved in spaces.items():
                        self.storage[thread][space].update(saved)
                self.writes.update(writes)
                self.blobs.update(blobs)

        def save(self) -> None:
            storage = {t: {s: dict(c) for s, c in sp.items()} for t, sp in self.storage.items()}
            self.path.write_bytes(pickle.dumps((storage, dict(self.writes), dict(self.blobs))))

        def put(self, *args: Any, **kwargs: Any) -> Any:
            done = super().put(*args, **kwargs)
            self.save()
            return done

        def put_writes(self, *args: Any, **kwargs: Any) -> None:
            super().put_writes(*args, **kwargs)
            self.save()

    @tool
    def refund(order_id: str, amount: float) -> str:
        """Refund part of an order."""
        return ledger(folder, order_id, amount)

    if phase == "start":
        model = script(say("Refunding both.", *(("refund", a, i) for i, a in CALLS)), "done")
    else:
        model = script("done")
    agent = create_agent(
        model,
        [refund],
        middleware=[GatekeeperMiddleware(gate, resumable=True)],
        checkpointer=FileSaver(folder / "checkpoints.pickle"),
    )
    config: Any = {"configurable": {"thread_id": "refunds"}}
    if phase == "start":
        start: Any = {"messages": [{"role": "user", "content": "refund A-1 and B-2"}]}
    else:
        start = resume_command(agent.get_state(config).interrupts)
    waiting: list[str] = []
    for update in agent.stream(start, config, stream_mode="updates"):
        for paused in update.get("__interrupt__", ()):  # the stream shows what the run waits for
            if paused.value.get("type") == "gatekeeper_approval":
                waiting.append(paused.value["gatekeeper_request_id"])
    if waiting:
        return {"waiting": waiting}
    messages = agent.get_state(config).values["messages"]
    read = {m.tool_call_id: str(m.content) for m in messages if isinstance(m, ToolMessage)}
    return {"read": read, "final": str(messages[-1].content)}


# -- OpenAI Agents SDK: needs_approval + hold_interruptions + RunState.to_string() ----------------
async def openai_agents(gate: Gatekeeper, phase: str, folder: Path) -> dict[str, Any]:
    from agents import Agent, RunConfig, Runner, RunState, function_tool

    from gatekeeper_openai import hold_interruptions
    from tests.adapters.test_openai_agents import ScriptModel, call, say

    @function_tool(needs_approval=True)
    def refund(order_id: str, amount: float) -> str:
        """Refund part of an order."""
        return ledger(folder, order_id, amount)

    turns: list[Sequence[Any]] = [[say("done")]]
    if phase == "start":
        turns.insert(0, [say("Refunding both."), *(call("refund", a, i) for i, a in CALLS)])
    model = ScriptModel(turns)
    agent = Agent(name=AGENT, model=model, tools=[refund])
    config = RunConfig(tracing_disabled=True)
    saved = folder / "run-state.json"
    if phase == "start":
        result = await Runner.run(agent, "refund A-1 and B-2", run_config=config)
        held = await hold_interruptions(gate, result)
    else:
        held = await hold_interruptions(gate, await RunState.from_string(agent, saved.read_text()))
    if not held.done:
        saved.write_text(held.state.to_string())  # with the decisions made so far
        return {"waiting": [pending.request_id for pending in held.waiting.values()]}
    finished = await Runner.run(agent, held.state, run_config=config)
    return {"read": model.outputs(0), "final": str(finished.final_output)}


# -- Pydantic AI: GatekeeperToolset(resumable=True) + DeferredToolRequests ------------------------
async def pydantic_ai(gate: Gatekeeper, phase: str, folder: Path) -> dict[str, Any]:
    from pydantic import TypeAdapter
    from pydantic_ai import Agent
    from pydantic_ai.messages import (
        DeferredToolRequestsEvent,
        ModelMessage,
        ModelMessagesTypeAdapter,
        ModelRequest,
        ModelResponse,
        TextPart,
        ToolCallPart,
        ToolReturnPart,
    )
    from pydantic_ai.models.function import AgentInfo, FunctionModel
    from pydantic_ai.tools import DeferredToolRequests
    from pydantic_ai.toolsets import FunctionToolset

    from gatekeeper_pydantic_ai import GatekeeperToolset, deferred_results

    def refund(order_id: str, amount: float) -> str:
        """Refund part of an order."""
        return ledger(folder, order_id, amount)

    read: dict[str, str] = {}

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        last = messages[-1]
        if isinstance(last, ModelRequest) and any(
            isinstance(p, ToolReturnPart) for p in last.parts
        ):
            read.update(
                {
                    p.tool_call_id: str(p.content)
                    for p in last.parts
                    if isinstance(p, ToolReturnPart)
                }
            )
            return ModelResponse(parts=[TextPart("done")])
        return ModelResponse(
            parts=[TextPart("Refunding both."), *(ToolCallPart("refund", a, i) for i, a in CALLS)]
        )

    tools = GatekeeperToolset(gate, FunctionToolset([refund]), resumable=True)
    agent = Agent(FunctionModel(respond), toolsets=[tools], output_type=[str, DeferredToolRequests])
    requests_type = TypeAdapter(DeferredToolRequests)
    history, saved = folder / "messages.json", folder / "deferred.json"
    options: dict[str, Any] = {}
    if phase == "resume":
        requests = requests_type.validate_json(saved.read_bytes())
        results = await deferred_results(gate, requests)
        if results is None:
            return {"waiting": [m["gatekeeper_request_id"] for m in requests.metadata.values()]}
        options = {
            "message_history": ModelMessagesTypeAdapter.validate_json(history.read_bytes()),
            "deferred_tool_results": results,
        }
    waiting: list[str] = []
    async with agent.iter(None if options else "refund A-1 and B-2", **options) as run:
        async for node in run:
            if Agent.is_call_tools_node(node):
                async with node.stream(run.ctx) as events:
                    async for event in events:  # the events show what the run waits for
                        if isinstance(event, DeferredToolRequestsEvent):
                            waiting += [
                                m["gatekeeper_request_id"] for m in event.requests.metadata.values()
                            ]
    assert run.result is not None
    output = run.result.output
    if isinstance(output, DeferredToolRequests):
        history.write_bytes(run.result.all_messages_json())
        saved.write_bytes(requests_type.dump_json(output))
        return {"waiting": waiting}
    return {"read": read, "final": output}


def main(argv: list[str]) -> None:
    framework, phase, config, folder = argv
    gate = Gatekeeper.from_config(config)
    try:
        with gate.session(agent=AGENT, reason="the customer was charged twice"):
            if framework == "langgraph":
                outcome = langgraph(gate, phase, Path(folder))
            elif framework == "openai-agents":
                outcome = asyncio.run(openai_agents(gate, phase, Path(folder)))
            else:
                outcome = asyncio.run(pydantic_ai(gate, phase, Path(folder)))
    finally:
        gate.close()
    print(json.dumps(outcome))


if __name__ == "__main__":
    main(sys.argv[1:])
