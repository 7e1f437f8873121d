"""What the MCP gateway tests share: a deployment (config, Redis, a git repository) and clients.

The upstreams are the real ``mcp-server-git`` and ``mcp-server-time`` from the
package index, started by the gateway over stdio. The gateway is a real
``gatekeeper mcp serve`` process; agents talk to it with the real ``mcp``
client SDK; people decide with the real CLI in other processes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
from mcp import ClientSession, StdioServerParameters, stdio_client, types
from mcp.client.streamable_http import streamable_http_client

from gatekeeper import Gatekeeper
from gatekeeper.audit import parse_event
from gatekeeper.models import ApprovalRequest, AuditEvent

BIN = Path(sys.executable).parent
GIT_SERVER = str(BIN / "mcp-server-git")
TIME_SERVER = str(BIN / "mcp-server-time")
AGENT_TOKEN = "gk_mcp_remote-bot-token-for-tests"

POLICY = """\
  version: 1
  default: require_approval
  rules:
    - id: reads
      match: {tool: ["git__git_status", "git__git_log", "git__git_diff*", "git__git_show"]}
      verdict: allow
    - id: time-is-harmless
      match: {server: time}
      verdict: allow
    - id: no-branches
      match: {tool: git__git_create_branch}
      verdict: deny
      reason: agents do not create branches here
    - id: commits
      match: {tool: git__git_commit, server: git}
      verdict: require_approval
      risk: medium
"""


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    )
    return done.stdout


def make_repo(path: Path) -> Path:
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.email", "agent@example.com")
    git(path, "config", "user.name", "Agent")
    (path / "README").write_text("hello\n")
    git(path, "add", "README")
    git(path, "commit", "-q", "-m", "first")
    (path / "notes.txt").write_text("notes\n")
    return path


class Deployment:
    """A gatekeeper.yaml with an mcp: section on the session's Redis, and a git repository."""

    def __init__(
        self,
        tmp: Path,
        redis_url: str,
        prefix: str,
        *,
        upstreams: str | None = None,
        extra: str = "",
        time_zone: str = "UTC",
    ) -> None:
        self.dir = tmp
        self.repo = make_repo(tmp / "repo")
        self.config = tmp / "gatekeeper.yaml"
        token_sha = __import__("hashlib").sha256(AGENT_TOKEN.encode()).hexdigest()
        ups = upstreams or (
            f"    - {{name: git, command: [{GIT_SERVER}, --repository, {self.repo}]}}\n"
            f"    - {{name: time, command: [{TIME_SERVER}, --local-timezone, {time_zone}]}}\n"
        )
        self.config.write_text(
            "version: 1\n"
            f'store: {{url: "{redis_url}", prefix: {prefix}}}\n'
            "approvers:\n  - {name: alice}\n  - {name: bob}\n"
            "defaults: {timeout: 60s}\n"
            "policy:\n" + POLICY + "mcp:\n"
            "  agent: desk-bot\n"
            "  progress_every: 0.5\n"
            "  http:\n"
            f"    tokens:\n      - {{agent: remote-bot, token_sha256: {token_sha}}}\n"
            f"{extra}"
            "  upstreams:\n" + ups
        )
        self.stderr = tmp / "gateway.stderr"
        self._gate: Gatekeeper | None = None

    def set_upstreams(self, upstreams: str) -> None:
        text = self.config.read_text()
        self.config.write_text(text[: text.index("  upstreams:\n")] + "  upstreams:\n" + upstreams)

    @property
    def gate(self) -> Gatekeeper:
        """A gate on the deployment's store, to read what happened (never to decide)."""
        if self._gate is None:
            self._gate = Gatekeeper.from_config(self.config, channels=[])
        return self._gate

    def close(self) -> None:
        if self._gate is not None:
            self._gate.close()

    # -- people, in other processes ----------------------------------------------------------
    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(  # noqa: PLW1510 - the exit status is checked below, or returned
            [sys.executable, "-m", "gatekeeper.cli", *args, "--config", str(self.config)],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        )
        if check:
            assert done.returncode == 0, done.stderr
        return done

    def pending(self, agent: str | None = None) -> list[ApprovalRequest]:
        items, _ = self.gate.store.queue(agent=agent, limit=100)
        return items

    async def wait_pending(self, tool: str) -> ApprovalRequest:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            found = [r for r in await anyio.to_thread.run_sync(self.pending) if r.call.tool == tool]
            if found:
                return found[0]
            await anyio.sleep(0.1)
        raise AssertionError(f"no pending request for {tool}; gateway said:\n{self.log()}")

    def log(self) -> str:
        return self.stderr.read_text() if self.stderr.exists() else ""

    def audit(self) -> list[AuditEvent]:
        """The audit log as the deployment's store holds it now."""
        return [parse_event(e.body, e.hash) for e in self.gate.store.audit_entries()]

    # -- agents ---------------------------------------------------------------------------------
    def stdio_params(self, *extra: str) -> StdioServerParameters:
        return StdioServerParameters(
            command=sys.executable,
            args=["-m", "gatekeeper.cli", "mcp", "serve", "--config", str(self.config), *extra],
            env={
                "PYTHONPATH": os.pathsep.join(sys.path),
                **{k: v for k, v in os.environ.items() if k.startswith("GATEKEEPER_")},
            },
        )

    @contextlib.asynccontextmanager
    async def stdio(self, **session: Any) -> AsyncIterator[ClientSession]:
        """An agent's MCP session with a `gatekeeper mcp serve` it started over stdio."""
        with self.stderr.open("a") as errlog:
            async with (
                stdio_client(self.stdio_params(), errlog=errlog) as (read, write),
                ClientSession(read, write, **session) as client,
            ):
                await client.initialize()
                yield client

    @contextlib.contextmanager
    def http_gateway(self) -> Iterator[str]:
        """A `gatekeeper mcp serve --http` process; yields its URL."""
        from tests.conftest import _free_port

        port = _free_port()
        with self.stderr.open("a") as errlog:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "gatekeeper.cli",
                    "mcp",
                    "serve",
                    "--http",
                    "--port",
                    str(port),
                    "--config",
                    str(self.config),
                ],
                stdout=errlog,
                stderr=errlog,
                env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
            )
        url = f"http://127.0.0.1:{port}/mcp"
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    httpx2.get(f"http://127.0.0.1:{port}/", timeout=1)
                    break
                except httpx2.TransportError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise AssertionError(f"the gateway did not start:\n{self.log()}") from None
                    time.sleep(0.1)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextlib.asynccontextmanager
async def http_client(url: str, token: str | None = AGENT_TOKEN) -> AsyncIterator[ClientSession]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=30) as http,
        streamable_http_client(url, http_client=http) as (read, write),
        ClientSession(read, write) as client,
    ):
        await client.initialize()
        yield client


def text_of(result: types.CallToolResult) -> str:
    return " ".join(getattr(b, "text", "") for b in result.content)


def have_git() -> bool:
    return shutil.which("git") is not None
