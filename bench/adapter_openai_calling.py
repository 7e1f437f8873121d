"""OpenAI function calling: an allowed call through ToolRunner vs the usual hand-written dispatch.

    .venv/bin/python bench/adapter_openai_calling.py           # the full run
    .venv/bin/python bench/adapter_openai_calling.py --quick   # a smoke test

With plain function calling the "framework" is the loop you write: the
unwrapped column is the dispatch the OpenAI guide shows (parse the arguments
with ``json.loads``, call the function by name, build the reply, JSON-encoding
a non-text result); the gated column is ``ToolRunner`` doing the same for the
same SDK object, through a gate (MemoryStore, a policy that allows the tool).
Rows (seconds per model turn with one tool call, medians of repeated batches):

- ``run_chat``: a ``ChatCompletionMessage`` with one function tool call, a sync
  tool, no schema given (the runner checks the arguments against the
  function's signature);
- the same with ``parameters=`` (JSON-schema checks too, by ``jsonschema``);
- ``run_responses``: a ``Response`` whose output is a message and one
  ``function_call`` item, a sync tool;
- ``arun_responses`` with a coroutine tool, against an async dispatch.
"""

from __future__ import annotations

import asyncio
import gc
import json
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from openai.types.chat import ChatCompletionMessage
from openai.types.responses import Response

from gatekeeper import Gatekeeper, MemoryStore, Policy
from gatekeeper_openai import ToolRunner

POLICY = "version: 1\ndefault: allow\n"
ARGUMENTS = json.dumps({"order_id": "A-1"})
SCHEMA = {
    "type": "object",
    "properties": {"order_id": {"type": "string"}},
    "required": ["order_id"],
    "additionalProperties": False,
}


def lookup(order_id: str) -> str:
    return order_id


async def alookup(order_id: str) -> str:
    return order_id


def _gate() -> Gatekeeper:
    return Gatekeeper(policy=Policy.from_yaml(POLICY), store=MemoryStore())


def _message() -> ChatCompletionMessage:
    return ChatCompletionMessage.model_validate(
        {
            "role": "assistant",
            "content": "Let me look it up.",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "lookup", "arguments": ARGUMENTS},
                }
            ],
        }
    )


def _response(name: str) -> Response:
    return Response.model_validate(
        {
            "id": "resp_1",
            "object": "response",
            "created_at": 0,
            "model": "gpt-5",
            "parallel_tool_calls": True,
            "tool_choice": "auto",
            "tools": [],
            "output": [
                {
                    "type": "message",
                    "id": "msg_1",
                    "role": "assistant",
                    "status": "completed",
                    "content": [
                        {"type": "output_text", "text": "Let me look it up.", "annotations": []}
                    ],
                },
                {
                    "type": "function_call",
                    "call_id": "call_1",
                    "name": name,
                    "arguments": ARGUMENTS,
                },
            ],
        }
    )


def _content(result: Any) -> str:
    return result if isinstance(result, str) else json.dumps(result)


# The hand-written dispatch, as in OpenAI's function-calling guide.
def plain_chat(tools: dict[str, Callable[..., Any]], message: Any) -> list[dict[str, Any]]:
    replies = []
    for call in message.tool_calls:
        result = tools[call.function.name](**json.loads(call.function.arguments))
        replies.append({"role": "tool", "tool_call_id": call.id, "content": _content(result)})
    return replies


def plain_responses(tools: dict[str, Callable[..., Any]], response: Any) -> list[dict[str, Any]]:
    replies = []
    for item in response.output:
        if item.type == "function_call":
            result = tools[item.name](**json.loads(item.arguments))
            replies.append(
                {
                    "type": "function_call_output",
                    "call_id": item.call_id,
                    "output": _content(result),
                }
            )
    return replies


async def aplain_responses(tools: dict[str, Any], response: Any) -> list[dict[str, Any]]:
    replies = []
    for item in response.output:
        if item.type == "function_call":
            result = await tools[item.name](**json.loads(item.arguments))
            replies.append(
                {
                    "type": "function_call_output",
                    "call_id": item.call_id,
                    "output": _content(result),
                }
            )
    return replies


def _per_call(call: Callable[[], Any], n: int, gate: Gatekeeper) -> float:
    gc.collect()
    start = time.perf_counter()
    for _ in range(n):
        call()
    took = (time.perf_counter() - start) / n
    gate.store.flush()  # untimed: a MemoryStore seals its audit chain on flush only
    return took


async def _aper_call(call: Callable[[], Awaitable[Any]], n: int, gate: Gatekeeper) -> float:
    gc.collect()
    start = time.perf_counter()
    for _ in range(n):
        await call()
    took = (time.perf_counter() - start) / n
    gate.store.flush()
    return took


def _pair(
    bare: Callable[[], Any], gated: Callable[[], Any], gate: Gatekeeper, n: int, repeats: int
) -> tuple[float, float]:
    assert bare() == gated(), "both paths must give the model the same reply"
    calls = {"bare": bare, "gated": gated}
    times: dict[str, list[float]] = {"bare": [], "gated": []}
    for call in calls.values():  # warm up both paths
        _per_call(call, max(n // 10, 5), gate)
    for _ in range(repeats):  # interleaved, so drift hits both columns alike
        for which, call in calls.items():
            times[which].append(_per_call(call, n, gate))
    return statistics.median(times["bare"]), statistics.median(times["gated"])


async def _apair(n: int, repeats: int) -> tuple[float, float]:
    gate = _gate()
    tools = {"alookup": alookup}
    runner = ToolRunner(gate, tools)
    response = _response("alookup")
    calls = {
        "bare": lambda: aplain_responses(tools, response),
        "gated": lambda: runner.arun_responses(response),
    }
    assert await calls["bare"]() == await calls["gated"]()
    times: dict[str, list[float]] = {"bare": [], "gated": []}
    for acall in calls.values():
        await _aper_call(acall, max(n // 10, 5), gate)
    for _ in range(repeats):
        for which, acall in calls.items():
            times[which].append(await _aper_call(acall, n, gate))
    return statistics.median(times["bare"]), statistics.median(times["gated"])


def measure(quick: bool) -> list[tuple[str, float, float]]:
    """Rows of (label, unwrapped seconds per call, gated seconds per call)."""
    n, repeats = (100, 3) if quick else (2000, 7)
    tools = {"lookup": lookup}
    message, response = _message(), _response("lookup")

    gate = _gate()
    runner = ToolRunner(gate, tools)
    chat = _pair(
        lambda: plain_chat(tools, message), lambda: runner.run_chat(message), gate, n, repeats
    )

    gate = _gate()
    runner = ToolRunner(gate, tools, parameters={"lookup": SCHEMA})
    schema = _pair(
        lambda: plain_chat(tools, message), lambda: runner.run_chat(message), gate, n, repeats
    )

    gate = _gate()
    runner = ToolRunner(gate, tools)
    responses = _pair(
        lambda: plain_responses(tools, response),
        lambda: runner.run_responses(response),
        gate,
        n,
        repeats,
    )
    async_responses = asyncio.run(_apair(n, repeats))
    return [
        ("`run_chat`, sync tool", *chat),
        ("`run_chat`, sync tool, `parameters=` (JSON schema)", *schema),
        ("`run_responses`, sync tool", *responses),
        ("`arun_responses`, async tool", *async_responses),
    ]


if __name__ == "__main__":
    from _adapter_main import main

    main(measure, __doc__.splitlines()[0])
