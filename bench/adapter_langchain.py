"""What an allowed call costs through gatekeeper_langchain, against the same call unwrapped.

    .venv/bin/python bench/adapter_langchain.py [--quick]

Each row times the same invocation path twice, on the same tool: once on the
original tool, once through the adapter (MemoryStore, a policy that allows
the call, so nothing waits for a person):

- ``tool.invoke(args)`` on a sync ``@tool``, and ``tool.invoke(tool_call)``,
  which returns a ToolMessage as LangGraph's ToolNode asks for;
- ``await tool.ainvoke(args)`` on an async ``@tool``;
- one whole ``create_agent`` step (scripted model -> ToolNode -> model),
  the agent with no middleware against the agent with ``GatekeeperMiddleware``.

Medians of ``repeats`` batches of ``n`` calls; seconds per call.
"""

from __future__ import annotations

import asyncio
import itertools
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from langchain.agents import create_agent
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langchain_core.tools import tool

from gatekeeper import Gatekeeper, MemoryStore, Policy
from gatekeeper_langchain import GatekeeperMiddleware, gate_tool

POLICY = "version: 1\ndefault: allow\n"


class _ScriptedModel(GenericFakeChatModel):
    def bind_tools(self, tools: Any, **kwargs: Any) -> _ScriptedModel:
        return self


@tool
def lookup_order(order_id: str, verbose: bool = False) -> str:
    """Look up an order by its id."""
    return f"order {order_id}"


@tool
async def alookup_order(order_id: str, verbose: bool = False) -> str:
    """Look up an order by its id."""
    return f"order {order_id}"


def _pair(
    bare: Callable[[], object], gated: Callable[[], object], n: int, repeats: int
) -> tuple[float, float]:
    """Seconds per call of each, from batches interleaved so drift hits both alike."""
    bare()  # warm caches (schemas, imports) outside the timing
    gated()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for fn, out in ((bare, times[0]), (gated, times[1])):
            start = time.perf_counter()
            for _ in range(n):
                fn()
            out.append((time.perf_counter() - start) / n)
    return statistics.median(times[0]), statistics.median(times[1])


def _apair(
    bare: Callable[[], Awaitable[object]],
    gated: Callable[[], Awaitable[object]],
    n: int,
    repeats: int,
) -> tuple[float, float]:
    """:func:`_pair` for coroutines, all in one event loop."""

    async def batches() -> tuple[float, float]:
        await bare()
        await gated()
        times: tuple[list[float], list[float]] = ([], [])
        for _ in range(repeats):
            for fn, out in ((bare, times[0]), (gated, times[1])):
                start = time.perf_counter()
                for _ in range(n):
                    await fn()
                out.append((time.perf_counter() - start) / n)
        return statistics.median(times[0]), statistics.median(times[1])

    return asyncio.run(batches())


def _agent_step(middleware: list[Any]) -> Callable[[], object]:
    turns = itertools.cycle(
        [
            AIMessage(
                "Looking it up.",
                tool_calls=[{"name": "lookup_order", "args": {"order_id": "A-1"}, "id": "c1"}],
            ),
            AIMessage("Found it."),
        ]
    )
    agent = create_agent(_ScriptedModel(messages=turns), [lookup_order], middleware=middleware)
    question = {"messages": [{"role": "user", "content": "where is A-1?"}]}
    return lambda: agent.invoke(question)


def measure(quick: bool) -> list[tuple[str, float, float]]:
    """Rows of (path, unwrapped seconds per call, gated seconds per call)."""
    n, repeats = (50, 3) if quick else (1000, 7)
    agent_n = 5 if quick else 100
    gate = Gatekeeper(policy=Policy.from_yaml(POLICY), store=MemoryStore())
    gated = gate_tool(gate, lookup_order)
    agated = gate_tool(gate, alookup_order)
    args = {"order_id": "A-1"}
    call = {"name": "lookup_order", "args": args, "id": "c1", "type": "tool_call"}
    try:
        return [
            (
                "`tool.invoke(args)`, sync @tool",
                *_pair(lambda: lookup_order.invoke(args), lambda: gated.invoke(args), n, repeats),
            ),
            (
                "`tool.invoke(tool_call)` -> ToolMessage",
                *_pair(lambda: lookup_order.invoke(call), lambda: gated.invoke(call), n, repeats),
            ),
            (
                "`await tool.ainvoke(args)`, async @tool",
                *_apair(
                    lambda: alookup_order.ainvoke(args), lambda: agated.ainvoke(args), n, repeats
                ),
            ),
            (
                "`create_agent` step (model, tool, model), middleware",
                *_pair(
                    _agent_step([]), _agent_step([GatekeeperMiddleware(gate)]), agent_n, repeats
                ),
            ),
        ]
    finally:
        gate.close()


if __name__ == "__main__":
    from _adapter_main import main

    main(measure, __doc__.splitlines()[0])
