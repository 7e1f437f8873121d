"""An OpenAI Agents SDK agent whose MCP server is the gateway, end to end.

A real ``Agent`` and ``Runner`` with the scripted model of the adapter tests
(``ScriptModel``: it answers each turn from a script and keeps what the SDK
sent it), and the SDK's own ``MCPServerStdio`` starting ``gatekeeper mcp
serve``, which fronts the real ``mcp-server-git`` and ``mcp-server-time``.
The agent's code knows nothing of gatekeeper: the allowed call's result
reaches the model at once, the held commit runs once a person approves it
from the CLI in another process, and a denied call never reaches git while
the model reads why.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from agents import Agent
from agents.mcp import MCPServerStdio

from gatekeeper.models import ApprovalRequest, RequestStatus
from tests.adapters.test_openai_agents import ScriptModel, call, run, say
from tests.conftest import RedisServer
from tests.mcpkit import Deployment, git

pytestmark = pytest.mark.redis


@pytest.fixture
def dep(tmp_path: Path, redis_server: RedisServer, redis_prefix: str) -> Iterator[Deployment]:
    made = Deployment(tmp_path, redis_server.url, redis_prefix)
    git(made.repo, "add", "notes.txt")
    (made.repo / "secrets.txt").write_text("not for the repository\n")
    yield made
    made.close()


def text(output: Any) -> str:
    """The text of a tool output as the SDK hands it to the model (a list of input_text parts)."""
    parts = output if isinstance(output, list) else [output]
    return "".join(p["text"] if isinstance(p, dict) else str(p) for p in parts)


def gateway(dep: Deployment) -> MCPServerStdio:
    """The SDK's stdio MCP server, started as any MCP client would start the gateway."""
    params = dep.stdio_params()
    return MCPServerStdio(
        params={"command": params.command, "args": list(params.args), "env": dict(params.env)},
        name="gatekeeper",
        client_session_timeout_seconds=60,  # a held call waits for a person
        cache_tools_list=False,
    )


async def test_an_agents_sdk_agent_through_the_gateway(dep: Deployment) -> None:
    repo = str(dep.repo)
    model = ScriptModel(
        [
            [say("What time is it?"), call("time__get_current_time", {"timezone": "UTC"}, "c1")],
            [
                say("Commit the notes."),
                call(
                    "git__git_commit", {"repo_path": repo, "message": "notes, by the agent"}, "c2"
                ),
            ],
            [
                say("And the secrets file."),
                call("git__git_add", {"repo_path": repo, "files": ["secrets.txt"]}, "c3"),
            ],
            [say("Done.")],
        ]
    )
    decided: list[ApprovalRequest] = []

    async def person() -> None:
        """Alice approves the commit, Bob denies the add: the CLI, in other processes."""
        for tool, argv in (
            ("git__git_commit", ("approve", "{id}", "--as", "alice")),
            ("git__git_add", ("deny", "{id}", "--as", "bob", "-m", "secrets stay out of git")),
        ):
            req = await dep.wait_pending(tool)
            decided.append(req)
            await anyio.to_thread.run_sync(
                lambda req=req, argv=argv: dep.cli(*[a.replace("{id}", req.id) for a in argv])
            )

    async with gateway(dep) as server, anyio.create_task_group() as tg:
        tg.start_soon(person)
        agent: Agent[Any] = Agent(name="desk-bot", model=model, mcp_servers=[server])
        with anyio.fail_after(60):
            result = await run(agent, "commit my notes")

    assert result.final_output == "Done."
    # The model was offered the gateway's tools, under their prefixes, less the denied one.
    offered = {t.name for t in model.tools[0]}
    assert {"time__get_current_time", "git__git_commit", "git__git_add"} <= offered
    assert "git__git_create_branch" not in offered
    # Turn by turn, what the model read back.
    now = json.loads(text(model.outputs(1)["c1"]))
    assert now["timezone"] == "UTC" and "datetime" in now
    assert text(model.outputs(2)["c2"]).startswith("Changes committed successfully with hash")
    assert text(model.outputs(3)["c3"]) == (
        'Tool call denied by bob: "secrets stay out of git". The tool was not run.'
    )
    # What happened to the repository: the approved commit, and nothing of the denied add.
    assert git(dep.repo, "log", "-1", "--format=%s").strip() == "notes, by the agent"
    assert git(dep.repo, "diff", "--cached", "--name-only") == ""
    assert "secrets.txt" not in git(dep.repo, "ls-files")
    commit, add = decided
    assert commit.call.agent == "desk-bot" and commit.call.server == "git"
    assert dep.gate.store.get(commit.id).status is RequestStatus.EXECUTED
    assert dep.gate.store.get(add.id).status is RequestStatus.DENIED
    kinds = [(e.kind, e.tool) for e in dep.audit()]
    assert ("call.allowed", "time__get_current_time") in kinds
    assert ("request.executed", "git__git_commit") in kinds
    assert ("request.executed", "git__git_add") not in kinds
