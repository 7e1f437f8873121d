"""Pydantic AI: an allowed call through GatekeeperToolset vs the same toolset unwrapped.

    .venv/bin/python bench/adapter_pydantic_ai.py           # the full run
    .venv/bin/python bench/adapter_pydantic_ai.py --quick   # a smoke test

Rows (seconds per call, medians of repeated batches; MemoryStore, a policy
that allows the tool):

- ``toolset.call_tool``, async tool: ``await toolset.call_tool(name, args, ctx,
  tool)``, what Pydantic AI's tool manager does for each call, on a
  ``FunctionToolset`` and on ``GatekeeperToolset(gate, that toolset)``; the
  run context holds the model response that made the call, so finding the
  call's reason is timed too;
- the same with a sync tool (Pydantic AI runs it in a worker thread);
- ``Agent.run``, one tool call: a whole run with a ``FunctionModel`` that calls
  the tool once and then answers (two model steps), per run.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic_ai import Agent, RunContext
from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    TextPart,
    ToolCallPart,
    UserPromptPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.models.test import TestModel
from pydantic_ai.toolsets import AbstractToolset, FunctionToolset
from pydantic_ai.usage import RunUsage

from gatekeeper import Gatekeeper, MemoryStore, Policy
from gatekeeper_pydantic_ai import GatekeeperToolset

POLICY = "version: 1\ndefault: allow\n"
CALL_ID = "call-1"


def lookup(order_id: str) -> str:
    """Look an order up."""
    return order_id


async def alookup(order_id: str) -> str:
    """Look an order up."""
    return order_id


def _gate() -> Gatekeeper:
    return Gatekeeper(policy=Policy.from_yaml(POLICY), store=MemoryStore())


def _context(name: str) -> RunContext[None]:
    messages: list[ModelMessage] = [
        ModelRequest(parts=[UserPromptPart("Where is order A-1?")]),
        ModelResponse(
            parts=[TextPart("Let me look it up."), ToolCallPart(name, {"order_id": "A-1"}, CALL_ID)]
        ),
    ]
    return RunContext(
        deps=None,
        model=TestModel(),
        usage=RunUsage(),
        messages=messages,
        tool_call_id=CALL_ID,
        tool_name=name,
    )


async def _per_call(make: Callable[[], Awaitable[Any]], n: int, gate: Gatekeeper) -> float:
    gc.collect()
    start = time.perf_counter()
    for _ in range(n):
        await make()
    took = (time.perf_counter() - start) / n
    gate.store.flush()  # untimed: a MemoryStore seals its audit chain on flush only
    return took


async def _call_tool_pair(func: Callable[..., Any], n: int, repeats: int) -> tuple[float, float]:
    name = func.__name__
    gate = _gate()
    bare: FunctionToolset[None] = FunctionToolset([func])
    gated = GatekeeperToolset(gate, bare)
    ctx = _context(name)
    args = {"order_id": "A-1"}
    tools = {
        "bare": (bare, (await bare.get_tools(ctx))[name]),
        "gated": (gated, (await gated.get_tools(ctx))[name]),
    }
    times: dict[str, list[float]] = {"bare": [], "gated": []}

    def caller(which: str) -> Callable[[], Awaitable[Any]]:
        toolset, tool = tools[which]
        return lambda: toolset.call_tool(name, args, ctx, tool)

    for which in ("bare", "gated"):  # warm up both paths
        await _per_call(caller(which), max(n // 10, 5), gate)
    for _ in range(repeats):  # interleaved, so drift hits both columns alike
        for which in ("bare", "gated"):
            times[which].append(await _per_call(caller(which), n, gate))
    return statistics.median(times["bare"]), statistics.median(times["gated"])


def _respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    if len(messages) == 1:
        call = ToolCallPart("alookup", {"order_id": "A-1"}, CALL_ID)
        return ModelResponse(parts=[TextPart("Let me look it up."), call])
    return ModelResponse(parts=[TextPart("It is on its way.")])


async def _agent_run_pair(n: int, repeats: int) -> tuple[float, float]:
    gate = _gate()
    tools: FunctionToolset[None] = FunctionToolset([alookup])
    toolsets: dict[str, AbstractToolset[None]] = {
        "bare": tools,
        "gated": GatekeeperToolset(gate, tools),
    }
    agents = {k: Agent(FunctionModel(_respond), toolsets=[t]) for k, t in toolsets.items()}
    times: dict[str, list[float]] = {"bare": [], "gated": []}
    for which in ("bare", "gated"):
        agent = agents[which]
        await _per_call(lambda: agent.run("Where is order A-1?"), max(n // 10, 3), gate)
    for _ in range(repeats):
        for which in ("bare", "gated"):
            agent = agents[which]
            times[which].append(await _per_call(lambda: agent.run("Where is order A-1?"), n, gate))
    return statistics.median(times["bare"]), statistics.median(times["gated"])


def measure(quick: bool) -> list[tuple[str, float, float]]:
    """Rows of (label, unwrapped seconds per call, gated seconds per call)."""
    n, repeats = (100, 3) if quick else (2000, 7)
    runs, run_repeats = (10, 3) if quick else (50, 7)
    async_pair = asyncio.run(_call_tool_pair(alookup, n, repeats))
    sync_pair = asyncio.run(_call_tool_pair(lookup, n, repeats))
    agent_pair = asyncio.run(_agent_run_pair(runs, run_repeats))
    return [
        ("`toolset.call_tool`, async tool", *async_pair),
        ("`toolset.call_tool`, sync tool (worker thread)", *sync_pair),
        ("`Agent.run` with one tool call (FunctionModel)", *agent_pair),
    ]


if __name__ == "__main__":
    from _adapter_main import main

    main(measure, __doc__.splitlines()[0])
