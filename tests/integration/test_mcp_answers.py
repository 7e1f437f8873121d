"""The MCP gateway when a person answers a held call instead of deciding it.

``gatekeeper respond ID --text ...`` (the CLI, in another process) ends a held
call without running it: the agent's ``tools/call`` returns what the person
wrote, as a normal (non-error) result, and the upstream never ran, which
the real ``mcp-server-git``'s repository shows.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gatekeeper.models import RequestStatus
from tests.conftest import RedisServer
from tests.integration.test_mcp_gateway import by_cli, held
from tests.mcpkit import Deployment, git, text_of

pytestmark = pytest.mark.redis


@pytest.fixture
def dep(tmp_path: Path, redis_server: RedisServer, redis_prefix: str) -> Iterator[Deployment]:
    made = Deployment(tmp_path, redis_server.url, redis_prefix)
    yield made
    made.close()


async def test_a_written_response_is_the_result_and_nothing_runs(dep: Deployment) -> None:
    repo = str(dep.repo)
    git(dep.repo, "add", "notes.txt")  # a commit would have something to commit
    before = git(dep.repo, "log", "--format=%H %s")
    answer = "Don't commit the notes yet: they are drafts (ticket 4411).\nAsk bob first."
    async with dep.stdio() as agent:
        req, commit = await held(
            dep,
            agent,
            "git__git_commit",
            {"repo_path": repo, "message": "commit the notes"},
            by_cli(dep, "respond", "{id}", "--as", "alice", "--text", answer),
        )
        assert commit.result is not None
        assert not commit.result.is_error, text_of(commit.result)
        assert [b.type for b in commit.result.content] == ["text"]
        assert text_of(commit.result) == answer  # exactly what the person wrote
        assert commit.result.structured_content is None
    assert git(dep.repo, "log", "--format=%H %s") == before  # the upstream never ran
    assert git(dep.repo, "diff", "--cached", "--name-only").split() == ["notes.txt"]
    final = dep.gate.store.get(req.id)
    assert final.status is RequestStatus.RESPONDED
    kinds = [(e.kind, e.tool) for e in dep.audit()]
    assert ("call.executed", "git__git_commit") not in kinds
    assert any(k == "request.responded" for k, _ in kinds), kinds
