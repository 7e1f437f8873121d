"""A held call can be decided by the person at the agent's MCP client (``mcp.elicit``).

With ``elicit: alice`` the gateway, once it holds a call, asks the agent's
own MCP client (an elicitation form: approve or deny, as alice) over stdio,
when the client says it can answer one. Approving there runs the call and
the audit says alice approved via ``mcp-elicitation``; declining leaves the
request waiting for the other channels. Only the gateway's signing key
(``GATEKEEPER_SIGNING_KEY``, set for the test session by conftest) lets it
record the decision.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import types

from gatekeeper._signing import SIGNING_ENV
from gatekeeper.models import RequestStatus
from tests.conftest import RedisServer
from tests.mcpkit import Deployment, git, text_of

pytestmark = pytest.mark.redis

COMMIT = "git__git_commit"


@pytest.fixture
def dep(tmp_path: Path, redis_server: RedisServer, redis_prefix: str) -> Iterator[Deployment]:
    assert os.environ.get(SIGNING_ENV), "conftest gives the session a signing key"
    made = Deployment(tmp_path, redis_server.url, redis_prefix, extra="  elicit: alice\n")
    git(made.repo, "add", "notes.txt")
    yield made
    made.close()


class Person:
    """The person at the MCP client: answers each form with ``answer``, keeps what was asked."""

    def __init__(self, answer: types.ElicitResult) -> None:
        self.answer = answer
        self.asked: list[types.ElicitRequestFormParams] = []
        self.done = anyio.Event()

    async def __call__(self, context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        assert isinstance(params, types.ElicitRequestFormParams)
        self.asked.append(params)
        self.done.set()
        return self.answer


async def test_approved_at_the_mcp_client_it_runs(dep: Deployment) -> None:
    person = Person(
        types.ElicitResult(action="accept", content={"decision": "approve", "comment": "fine"})
    )
    args = {"repo_path": str(dep.repo), "message": "notes, asked in the client"}
    async with dep.stdio(elicitation_callback=person) as agent:
        with anyio.fail_after(30):
            result = await agent.call_tool(COMMIT, args)
    assert not result.is_error, text_of(result)
    assert git(dep.repo, "log", "-1", "--format=%s").strip() == "notes, asked in the client"
    # The person was shown exactly what would run, and why it was held.
    (form,) = person.asked
    assert "Tool: git__git_commit" in form.message
    assert "notes, asked in the client" in form.message
    assert "Why it is held: rule commits matched" in form.message
    assert "Approve as alice?" in form.message
    assert form.requested_schema["properties"]["decision"]["enum"] == ["approve", "deny"]
    # The audit: alice approved it through the MCP client, signed; then it ran.
    events = [(e.kind, e.actor, e.data.get("via")) for e in dep.audit() if e.tool == COMMIT]
    assert events == [
        ("call.held", "agent:desk-bot", None),
        ("request.approved", "approver:alice", "mcp-elicitation"),
        ("request.released", "agent:desk-bot", None),
        ("request.executed", "agent:desk-bot", None),
    ]
    approved = next(e for e in dep.audit() if e.kind == "request.approved")
    assert '"via":"mcp-elicitation"' in str(approved.data["signed"])
    req = dep.gate.store.get(str(approved.request_id))
    assert req.status is RequestStatus.EXECUTED
    (vote,) = req.approvals
    assert (vote.approver, vote.via, vote.comment) == ("alice", "mcp-elicitation", "fine")


async def test_declined_at_the_mcp_client_it_waits_for_someone_else(dep: Deployment) -> None:
    person = Person(types.ElicitResult(action="decline"))
    args = {"repo_path": str(dep.repo), "message": "the agent's commit"}
    results: list[types.CallToolResult] = []
    async with dep.stdio(elicitation_callback=person) as agent:

        async def make() -> None:
            results.append(await agent.call_tool(COMMIT, args))

        async with anyio.create_task_group() as tg:
            tg.start_soon(make)
            with anyio.fail_after(30):
                await person.done.wait()
            req = await dep.wait_pending(COMMIT)
            await anyio.sleep(1)  # the decline recorded nothing: still pending
            assert dep.gate.store.get(req.id).status is RequestStatus.PENDING
            assert not results
            await anyio.to_thread.run_sync(
                lambda: dep.cli("deny", req.id, "--as", "bob", "-m", "not today")
            )
    (result,) = results
    assert result.is_error and "not today" in text_of(result)
    assert git(dep.repo, "log", "-1", "--format=%s").strip() == "first"
    final = dep.gate.store.get(req.id)
    assert final.status is RequestStatus.DENIED
    assert [(d.approver, d.approve, d.via) for d in final.decisions] == [("bob", False, "cli")]


def test_without_a_signing_key_the_gateway_refuses_to_start(
    dep: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A person asked at the client whose approval could not be recorded would be misled:
    # `mcp serve` says so and does not start, rather than ask and drop the answer.
    monkeypatch.delenv(SIGNING_ENV)
    done = dep.cli("mcp", "serve", check=False)
    assert done.returncode == 1
    assert "mcp.elicit names alice, but this process holds no decision signing key" in done.stderr
    assert done.stdout == ""
