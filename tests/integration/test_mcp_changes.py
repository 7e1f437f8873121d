"""A tool whose definition changed is held for a person until an operator accepts it.

The real ``mcp-server-time`` writes its local time zone (``--local-timezone``)
into the input schema of ``get_current_time``: restarted with another zone, it
advertises a different definition, as a poisoned upstream would. The
gateway pinned the first one it saw; after the restart it goes on offering
the pinned definition, holds every call of the changed tool (rule
``mcp-tool-changed``, even though the policy allows the time server), and
lets them run at once again only after ``gatekeeper mcp accept``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import ClientSession, types

from gatekeeper.models import RequestStatus, Verdict
from tests.conftest import RedisServer
from tests.mcpkit import TIME_SERVER, Deployment, text_of

pytestmark = pytest.mark.redis

TOOL = "time__get_current_time"


@pytest.fixture
def dep(tmp_path: Path, redis_server: RedisServer, redis_prefix: str) -> Iterator[Deployment]:
    made = Deployment(tmp_path, redis_server.url, redis_prefix)
    # Only the time server: the change is its own, and no git server needs starting.
    made.set_upstreams(f"    - {{name: time, command: [{TIME_SERVER}, --local-timezone, UTC]}}\n")
    yield made
    made.close()


def zone_hint(agent_tools: list[types.Tool]) -> str:
    """What the offered get_current_time tells the model about its ``timezone`` argument."""
    found = next(t for t in agent_tools if t.name == TOOL)
    return str(found.input_schema["properties"]["timezone"]["description"])


async def call_held(dep: Deployment, agent: ClientSession, *decide: str) -> Any:
    """Call the tool; it must be held: decide it with the CLI; return the request and result."""
    results: list[types.CallToolResult] = []

    async def make() -> None:
        results.append(await agent.call_tool(TOOL, {"timezone": "Asia/Tokyo"}))

    async with anyio.create_task_group() as tg:
        tg.start_soon(make)
        req = await dep.wait_pending(TOOL)
        await anyio.to_thread.run_sync(
            lambda: dep.cli(*[a.replace("{id}", req.id) for a in decide])
        )
    return req, results[0]


def to_paris(dep: Deployment) -> None:
    """The next gateway starts the time server with another zone: its tools change."""
    text = dep.config.read_text()
    dep.config.write_text(text.replace("--local-timezone, UTC", "--local-timezone, Europe/Paris"))


def listed(dep: Deployment) -> dict[str, dict[str, Any]]:
    done = dep.cli("mcp", "tools", "--json")
    return {row["name"]: row for row in map(json.loads, done.stdout.splitlines())}


async def test_a_changed_definition_is_held_until_accepted(dep: Deployment) -> None:
    pins = dep.dir / "mcp-pins.json"
    async with dep.stdio() as agent:
        first = (await agent.list_tools()).tools
        assert "Use 'UTC' as local timezone" in zone_hint(first)
        now = await agent.call_tool(TOOL, {"timezone": "UTC"})
        assert not now.is_error, text_of(now)
    assert "time/get_current_time" in json.loads(pins.read_text())["tools"]

    to_paris(dep)
    async with dep.stdio() as agent:
        # The agent is still offered the definition that was pinned, not the new one.
        assert "Use 'UTC' as local timezone" in zone_hint((await agent.list_tools()).tools)
        # An allowed tool, but changed: held for a person; bob denies it and nothing runs.
        req, denied = await call_held(
            dep, agent, "deny", "{id}", "--as", "bob", "-m", "who changed the time server?"
        )
        assert req.classification.verdict is Verdict.REQUIRE_APPROVAL
        assert req.classification.rules[0] == "mcp-tool-changed"
        (why,) = req.classification.reasons  # the allow rule's reason no longer explains it
        assert "upstream time changed the input_schema of tool get_current_time" in why
        assert "gatekeeper mcp accept time__get_current_time" in why
        assert denied.is_error and "who changed the time server?" in text_of(denied)

    # The operator accepts the new definition of this tool (only this one).
    done = dep.cli("mcp", "accept", TOOL)
    assert "accepted the new definition of time__get_current_time" in done.stdout
    rows = listed(dep)  # `mcp tools` says which tools still wait to be accepted
    assert not rows[TOOL]["changed"] and rows["time__convert_time"]["changed"]

    async with dep.stdio() as agent:
        tools = (await agent.list_tools()).tools
        assert "Use 'Europe/Paris' as local timezone" in zone_hint(tools)
        with anyio.fail_after(10):  # runs at once: nothing held
            now = await agent.call_tool(TOOL, {"timezone": "UTC"})
        assert not now.is_error, text_of(now)
        # The tool not accepted is still held; the agent gives up on it.
        async with anyio.create_task_group() as tg:
            args = {"source_timezone": "UTC", "time": "12:00", "target_timezone": "Asia/Tokyo"}
            tg.start_soon(agent.call_tool, "time__convert_time", args)
            other = await dep.wait_pending("time__convert_time")
            assert other.classification.rules[0] == "mcp-tool-changed"
            tg.cancel_scope.cancel()
    assert dep.gate.store.get(req.id).status is RequestStatus.DENIED
    kinds = [(e.kind, e.tool) for e in dep.audit()]
    assert kinds.count(("call.executed", TOOL)) == 2  # before the change, after the accept
    assert ("call.executed", "time__convert_time") not in kinds


async def test_an_accept_reaches_a_gateway_that_is_running(dep: Deployment) -> None:
    assert not listed(dep)[TOOL]["changed"]  # `mcp tools` pins what it sees first
    to_paris(dep)
    async with dep.stdio() as agent:
        await agent.list_tools()
        done = await anyio.to_thread.run_sync(lambda: dep.cli("mcp", "accept", TOOL))
        assert "a running gateway sees this within a second" in done.stdout
        # The operator is shown what they accepted: the old line and the new one.
        shown = done.stdout.splitlines()
        assert any(ln.startswith("-") and "Use 'UTC' as local timezone" in ln for ln in shown)
        assert any(ln.startswith("+") and "Europe/Paris" in ln for ln in shown)
        await anyio.sleep(1.1)
        now = None
        with anyio.move_on_after(3):  # the agent gives up on a call that is held
            now = await agent.call_tool(TOOL, {"timezone": "UTC"})
    assert now is not None, "time__get_current_time was still held 3 s after the accept"
    assert not now.is_error, text_of(now)
