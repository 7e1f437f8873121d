"""The MCP gateway end to end: real upstream servers, a real gateway process, real clients.

``gatekeeper mcp serve`` (a process of its own, on the session's Redis) fronts
the real ``mcp-server-git`` (on a throw-away repository) and
``mcp-server-time``. Agents are the real ``mcp`` client SDK over stdio and
over streamable HTTP; people decide with the CLI in other processes. What
ran is read off the repository itself and the audit log.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import ClientSession, types

from gatekeeper.models import ApprovalRequest, RequestStatus
from tests.conftest import RedisServer
from tests.mcpkit import AGENT_TOKEN, Deployment, git, http_client, text_of

pytestmark = pytest.mark.redis


@pytest.fixture
def dep(tmp_path: Path, redis_server: RedisServer, redis_prefix: str) -> Iterator[Deployment]:
    made = Deployment(tmp_path, redis_server.url, redis_prefix)
    yield made
    made.close()


class Call:
    """A tool call an agent makes in a task of its own, with the progress notices it got."""

    def __init__(self) -> None:
        self.result: types.CallToolResult | None = None
        self.notices: list[str] = []
        self.done = anyio.Event()


async def held(
    dep: Deployment,
    agent: ClientSession,
    tool: str,
    args: dict[str, Any],
    decide: Callable[[ApprovalRequest], Awaitable[None]],
) -> tuple[ApprovalRequest, Call]:
    """Make a call that must be held; ``decide`` what happens to its request; return both."""
    call = Call()

    async def progress(done: float, total: float | None, message: str | None) -> None:
        call.notices.append(message or "")

    async def make() -> None:
        call.result = await agent.call_tool(tool, args, progress_callback=progress)
        call.done.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(make)
        req = await dep.wait_pending(tool)
        await decide(req)
        with anyio.fail_after(30):
            await call.done.wait()
    return req, call


def by_cli(dep: Deployment, *args: str) -> Callable[[ApprovalRequest], Awaitable[None]]:
    """Decide with the CLI in another process: ``approve ID --as alice`` and the like."""

    async def decide(req: ApprovalRequest) -> None:
        argv = [a.replace("{id}", req.id) for a in args]
        await anyio.to_thread.run_sync(lambda: dep.cli(*argv))

    return decide


async def test_tools_are_offered_under_their_prefix_and_allowed_calls_pass(
    dep: Deployment,
) -> None:
    async with dep.stdio() as agent:
        listed = {t.name: t for t in (await agent.list_tools()).tools}
        # Both upstreams, each under its prefix; the tool the policy denies is not shown.
        assert {"git__git_status", "git__git_commit", "time__get_current_time"} <= set(listed)
        assert "git__git_create_branch" not in listed
        assert all(n.startswith(("git__", "time__")) for n in listed)
        assert listed["git__git_reset"].annotations.destructive_hint is True  # passed on as is

        now = await agent.call_tool("time__get_current_time", {"timezone": "UTC"})
        assert not now.is_error
        assert now.structured_content["timezone"] == "UTC"
        status = await agent.call_tool("git__git_status", {"repo_path": str(dep.repo)})
        assert not status.is_error and "notes.txt" in text_of(status)
    events = dep.audit()
    assert ("call.allowed", "time__get_current_time") in [(e.kind, e.tool) for e in events]
    executed = [e for e in events if e.kind == "call.executed" and e.tool == "git__git_status"]
    # The audit keeps the result's size, digest and a bounded excerpt: not the result.
    outcome = str(executed[0].data["outcome"])
    assert "sha256" in outcome and "Repository status" in outcome


async def test_a_write_is_held_approved_from_the_cli_and_runs_exactly_as_approved(
    dep: Deployment,
) -> None:
    repo = str(dep.repo)
    async with dep.stdio() as agent:
        req, add = await held(
            dep,
            agent,
            "git__git_add",
            {"repo_path": repo, "files": ["notes.txt"]},
            by_cli(dep, "approve", "{id}", "--as", "alice"),
        )
        assert req.call.server == "git" and req.call.agent == "desk-bot"
        assert "irreversible" not in " ".join(req.classification.reasons)  # git_add says so
        assert add.result is not None and not add.result.is_error, text_of(add.result)
        # While it waited, the client was told so (and so did not time out).
        assert any(f"request {req.id}" in n for n in add.notices), add.notices
        assert git(dep.repo, "diff", "--cached", "--name-only").split() == ["notes.txt"]

        # The approver edits the message: what runs is what was approved.
        edited = json.dumps({"repo_path": repo, "message": "notes, reviewed by alice"})
        req, commit = await held(
            dep,
            agent,
            "git__git_commit",
            {"repo_path": repo, "message": "agent's own message"},
            by_cli(dep, "approve", "{id}", "--as", "alice", "--args", edited),
        )
        assert commit.result is not None and not commit.result.is_error
        assert git(dep.repo, "log", "-1", "--format=%s").strip() == "notes, reviewed by alice"
        assert "gatekeeper/approval" in (commit.result.meta or {})  # the model learns of the edit
    final = dep.gate.store.get(req.id)
    assert final.status is RequestStatus.EXECUTED
    assert final.approvals[0].approver == "alice"


async def test_a_denied_call_never_reaches_the_upstream(dep: Deployment) -> None:
    repo = str(dep.repo)
    git(dep.repo, "add", "notes.txt")
    async with dep.stdio() as agent:
        # git_reset says destructiveHint: irreversible, so held though the rules say nothing.
        req, reset = await held(
            dep,
            agent,
            "git__git_reset",
            {"repo_path": repo},
            by_cli(dep, "deny", "{id}", "--as", "bob", "-m", "keep the staged notes"),
        )
        assert "git__git_reset is irreversible" in " ".join(req.classification.reasons)
        assert reset.result is not None and reset.result.is_error
        assert "keep the staged notes" in text_of(reset.result)
        # A tool the policy denies outright: refused at once, hidden or not.
        branch = await agent.call_tool(
            "git__git_create_branch", {"repo_path": repo, "branch_name": "escape"}
        )
        assert branch.is_error and "agents do not create branches here" in text_of(branch)
    assert git(dep.repo, "diff", "--cached", "--name-only").split() == ["notes.txt"]
    assert git(dep.repo, "branch", "--list", "escape") == ""


async def test_a_halt_stops_the_agent_mid_session(dep: Deployment) -> None:
    repo = str(dep.repo)
    async with dep.stdio() as agent:
        assert not (await agent.call_tool("time__get_current_time", {"timezone": "UTC"})).is_error
        _, add = await held(
            dep,
            agent,
            "git__git_add",
            {"repo_path": repo, "files": ["notes.txt"]},
            by_cli(dep, "halt", "--agent", "desk-bot", "--as", "alice", "-m", "runaway"),
        )
        assert add.result is not None and add.result.is_error
        assert "halt" in text_of(add.result).lower()
        # Every later call of the agent is refused, even an allowed one, until resumed.
        later = await agent.call_tool("time__get_current_time", {"timezone": "UTC"})
        assert later.is_error and "halt" in text_of(later).lower()
    assert git(dep.repo, "diff", "--cached", "--name-only") == ""
    assert dep.pending() == []


async def test_a_cancelled_client_request_leaves_nothing_pending(dep: Deployment) -> None:
    repo = str(dep.repo)
    async with dep.stdio() as agent:
        with anyio.move_on_after(60) as scope:
            async with anyio.create_task_group() as tg:

                async def make() -> None:
                    await agent.call_tool(
                        "git__git_add", {"repo_path": repo, "files": ["notes.txt"]}
                    )

                tg.start_soon(make)
                req = await dep.wait_pending("git__git_add")
                tg.cancel_scope.cancel()  # the client gives up: notifications/cancelled
        assert not scope.cancelled_caught
        with anyio.fail_after(20):
            while dep.pending():  # noqa: ASYNC110 - another process changes it
                await anyio.sleep(0.1)
        # The session is still good for the next call.
        assert not (await agent.call_tool("time__get_current_time", {"timezone": "UTC"})).is_error
    assert dep.gate.store.get(req.id).status is RequestStatus.CANCELLED
    assert git(dep.repo, "diff", "--cached", "--name-only") == ""


async def test_over_http_each_agent_is_its_token(dep: Deployment) -> None:
    repo = str(dep.repo)
    with dep.http_gateway() as url:
        async with http_client(url) as agent:
            assert not (
                await agent.call_tool("time__get_current_time", {"timezone": "UTC"})
            ).is_error
            req, add = await held(
                dep,
                agent,
                "git__git_add",
                {"repo_path": repo, "files": ["notes.txt"]},
                by_cli(dep, "approve", "{id}", "--as", "alice"),
            )
            assert req.call.agent == "remote-bot"  # the token's agent, not the stdio one
            assert add.result is not None and not add.result.is_error
        hello = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "intruder", "version": "1"},
            },
        }
        accept = {"accept": "application/json, text/event-stream"}
        for headers in ({}, {"authorization": "Bearer not-a-token"}):
            answer = httpx2.post(url, json=hello, headers={**accept, **headers}, timeout=10)
            assert answer.status_code == 401, answer.text
    assert git(dep.repo, "diff", "--cached", "--name-only").split() == ["notes.txt"]
    agents = {e.agent for e in dep.audit() if e.tool}
    assert agents == {"remote-bot"}


def _modern_call(url: str, tool: str, session: str, rid: int) -> httpx2.Response:
    """A tools/call on the 2026 protocol (no sessions), carrying a session id of its choosing."""
    meta = {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
    }
    headers = {
        "authorization": f"Bearer {AGENT_TOKEN}",
        "accept": "application/json, text/event-stream",
        "mcp-protocol-version": "2026-07-28",
        "mcp-method": "tools/call",
        "mcp-name": tool,
        "mcp-session-id": session,
    }
    body = {
        "jsonrpc": "2.0",
        "id": rid,
        "method": "tools/call",
        "params": {"name": tool, "arguments": {"timezone": "UTC"}, "_meta": meta},
    }
    return httpx2.post(url, json=body, headers=headers, timeout=30)


def test_over_http_an_agent_cannot_choose_its_gatekeeper_session(dep: Deployment) -> None:
    # Per-session sequences, limits and halts hold only if the agent can't start afresh by
    # naming a new session: a session id the SDK did not open is not taken from the agent.
    with dep.http_gateway() as url:
        for rid, session in enumerate(["fresh-1", "fresh-2", "agent-b-\x1b[31m"]):
            answer = _modern_call(url, "time__get_current_time", session, rid)
            assert answer.status_code == 200, answer.text
            assert '"isError":true' not in answer.text.replace(" ", ""), answer.text
    sessions = {
        e.session_id for e in dep.audit() if e.kind == "call.executed" and e.agent == "remote-bot"
    }
    assert len(sessions) == 1, sessions
    assert next(iter(sessions)).startswith("mcp-remote-bot-")
