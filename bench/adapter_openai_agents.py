"""OpenAI Agents SDK: an allowed call through gate_tool() vs the same FunctionTool unwrapped.

    .venv/bin/python bench/adapter_openai_agents.py           # the full run
    .venv/bin/python bench/adapter_openai_agents.py --quick   # a smoke test

Rows (seconds per call, medians of repeated batches; MemoryStore, a policy
that allows the tool):

- ``invoke_function_tool``, async tool: ``await invoke_function_tool(
  function_tool=tool, context=ctx, arguments=json)``, what the SDK's runner
  does for each function call, on the ``@function_tool`` and on
  ``gate_tool(gate, that tool)`` (the gated one also checks the arguments
  against the JSON schema);
- the same with a sync tool (the SDK runs it in a worker thread);
- ``Runner.run``, one tool call: a whole run with a model of our own that calls
  the tool once and then answers (two model turns), per run; the gated agent
  also has ``CallReasons`` hooks, so picking up the model's words is timed too.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from agents import (
    Agent,
    FunctionTool,
    Model,
    ModelResponse,
    RunConfig,
    Runner,
    Usage,
    function_tool,
)
from agents.tool import invoke_function_tool
from agents.tool_context import ToolContext
from openai.types.responses import (
    ResponseFunctionToolCall,
    ResponseOutputMessage,
    ResponseOutputText,
)

from gatekeeper import Gatekeeper, MemoryStore, Policy
from gatekeeper_openai import CallReasons, gate_tool

POLICY = "version: 1\ndefault: allow\n"
CALL_ID = "call-1"
ARGS = json.dumps({"order_id": "A-1"})
NO_TRACING = RunConfig(tracing_disabled=True)


@function_tool
def lookup(order_id: str) -> str:
    """Look an order up."""
    return order_id


@function_tool
async def alookup(order_id: str) -> str:
    """Look an order up."""
    return order_id


def _gate() -> Gatekeeper:
    return Gatekeeper(policy=Policy.from_yaml(POLICY), store=MemoryStore())


async def _per_call(make: Callable[[], Awaitable[Any]], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        await make()
    return (time.perf_counter() - start) / n


async def _invoke_pair(tool: FunctionTool, n: int, repeats: int) -> tuple[float, float]:
    tools = {"bare": tool, "gated": gate_tool(_gate(), tool)}
    times: dict[str, list[float]] = {"bare": [], "gated": []}

    def caller(which: str) -> Callable[[], Awaitable[Any]]:
        chosen = tools[which]

        def invoke() -> Awaitable[Any]:
            ctx: ToolContext[None] = ToolContext(
                context=None, tool_name=chosen.name, tool_call_id=CALL_ID, tool_arguments=ARGS
            )
            return invoke_function_tool(function_tool=chosen, context=ctx, arguments=ARGS)

        return invoke

    for which in ("bare", "gated"):  # warm up both paths
        await _per_call(caller(which), max(n // 10, 5))
    for _ in range(repeats):  # interleaved, so drift hits both columns alike
        for which in ("bare", "gated"):
            times[which].append(await _per_call(caller(which), n))
    return statistics.median(times["bare"]), statistics.median(times["gated"])


class _OneCallModel(Model):
    """Calls ``alookup`` once, then answers."""

    async def get_response(
        self,
        system_instructions: str | None,
        input: str | list[Any],
        *args: Any,
        **kwargs: Any,
    ) -> ModelResponse:
        answered = isinstance(input, list) and any(
            isinstance(i, dict) and i.get("type") == "function_call_output" for i in input
        )
        output: list[Any]
        if answered:
            output = [_text("It is on its way.")]
        else:
            call = ResponseFunctionToolCall(
                type="function_call", name="alookup", arguments=ARGS, call_id=CALL_ID, id="fc-1"
            )
            output = [_text("Let me look it up."), call]
        return ModelResponse(output=output, usage=Usage(), response_id=None)

    def stream_response(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        raise NotImplementedError


def _text(text: str) -> ResponseOutputMessage:
    return ResponseOutputMessage(
        id="msg-1",
        type="message",
        role="assistant",
        status="completed",
        content=[ResponseOutputText(type="output_text", text=text, annotations=[])],
    )


async def _runner_pair(n: int, repeats: int) -> tuple[float, float]:
    reasons = CallReasons()
    agents = {
        "bare": Agent(name="a", model=_OneCallModel(), tools=[alookup]),
        "gated": Agent(
            name="a",
            model=_OneCallModel(),
            tools=[gate_tool(_gate(), alookup, reasons=reasons)],
            hooks=reasons,
        ),
    }
    times: dict[str, list[float]] = {"bare": [], "gated": []}

    def runner(which: str) -> Callable[[], Awaitable[Any]]:
        agent = agents[which]
        return lambda: Runner.run(agent, "Where is order A-1?", run_config=NO_TRACING)

    for which in ("bare", "gated"):
        await _per_call(runner(which), max(n // 10, 3))
    for _ in range(repeats):
        for which in ("bare", "gated"):
            times[which].append(await _per_call(runner(which), n))
    return statistics.median(times["bare"]), statistics.median(times["gated"])


def measure(quick: bool) -> list[tuple[str, float, float]]:
    """Rows of (label, unwrapped seconds per call, gated seconds per call)."""
    n, repeats = (100, 3) if quick else (2000, 7)
    runs, run_repeats = (20, 3) if quick else (300, 5)
    async_pair = asyncio.run(_invoke_pair(alookup, n, repeats))
    sync_pair = asyncio.run(_invoke_pair(lookup, n, repeats))
    runner_pair = asyncio.run(_runner_pair(runs, run_repeats))
    return [
        ("`invoke_function_tool`, async tool", *async_pair),
        ("`invoke_function_tool`, sync tool (worker thread)", *sync_pair),
        ("`Runner.run` with one tool call (scripted model)", *runner_pair),
    ]


if __name__ == "__main__":
    from _adapter_main import main

    main(measure, __doc__.splitlines()[0])
