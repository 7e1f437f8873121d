"""How the ``gatekeeper`` command logs: text or JSON lines on its stderr, for its run only.

An agent (a thread with its own gate) holds a refund on a real Redis; the
CLI approves it with ``--log-format json --log-level info``: its stderr is
JSON lines naming the request, the agent and the session, and the logging
set up for the run is gone when ``main`` returns.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import _free_port
from tests.integration.test_cli import Agent, agent, config, run  # noqa: F401 (fixtures)


def test_approve_logs_json_lines_naming_the_request(config: Path, agent: Agent) -> None:  # noqa: F811
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    thread = agent.call(lambda: agent.refund("A-1", 20.0))
    req = agent.channel.wait_for_request()
    code, out, err = run(
        "--log-format", "json", "--config", str(config), "approve", req.id, "--as", "alice",
        "--log-level", "info",
    )  # fmt: skip
    thread.join(10)
    assert code == 0, err
    assert agent.outcome == "refunded"
    assert "approved" in out  # what the command says stays on stdout, as ever
    lines = [json.loads(line) for line in err.splitlines()]
    decided = [e for e in lines if e["logger"] == "gatekeeper.decisions"]
    assert [e["message"] for e in decided] == [
        f"request {req.id}: approval by alice via cli; now approved"
    ]
    assert (decided[0]["request_id"], decided[0]["agent"], decided[0]["session"]) == (
        req.id,
        "billing-bot",
        req.call.session_id,
    )
    assert decided[0]["level"] == "INFO"
    assert (root.handlers, root.level) == (handlers, level)  # put back as it was


def test_one_shot_commands_log_warnings_only_by_default(
    config: Path,  # noqa: F811
    agent: Agent,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("GATEKEEPER_LOG_LEVEL", raising=False)
    thread = agent.call(lambda: agent.refund("A-2", 20.0))
    req = agent.channel.wait_for_request()
    code, _, err = run("--config", str(config), "approve", req.id, "--as", "alice")
    thread.join(10)
    assert (code, err) == (0, "")


def test_the_environment_picks_the_format_and_a_bad_one_is_named(
    config: Path,  # noqa: F811
    agent: Agent,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GATEKEEPER_LOG_FORMAT", "xml")
    code, _, err = run("--config", str(config), "pending")
    assert (code, err) == (1, "error: $GATEKEEPER_LOG_FORMAT is 'xml': one of text, json\n")
    monkeypatch.setenv("GATEKEEPER_LOG_FORMAT", "text")
    monkeypatch.setenv("GATEKEEPER_LOG_LEVEL", "info")
    thread = agent.call(lambda: agent.refund("A-3", 20.0))
    req = agent.channel.wait_for_request()
    code, _, err = run("--config", str(config), "deny", req.id, "--as", "alice", "-m", "no")
    thread.join(10)
    assert code == 0
    # (The agent is a thread of this process: its own records show here too.)
    (line,) = [x for x in err.splitlines() if " gatekeeper.decisions: " in x]
    assert line.endswith(
        f"INFO gatekeeper.decisions: request {req.id}: denial by alice via cli; now denied "
        f"[request_id={req.id} agent=billing-bot session={req.call.session_id}]"
    )


def test_serve_logs_uvicorns_records_as_json_too(tmp_path: Path) -> None:
    """``serve --log-format json``: uvicorn's startup lines are JSON lines on stderr."""
    path = tmp_path / "gatekeeper.yaml"
    path.write_text(
        "version: 1\nstore: {url: 'memory://'}\napprovers: [{name: alice}]\n"
        "web: {secret_key: '" + "s" * 40 + "', base_url: 'http://127.0.0.1'}\n",
        encoding="utf-8",
    )
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    env.pop("GATEKEEPER_REDIS_URL", None)
    argv = ["--log-format", "json", "serve", "--config", str(path), "--demo"]
    with subprocess.Popen(
        [sys.executable, "-m", "gatekeeper.cli", *argv, "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    ) as proc:
        try:
            assert proc.stderr is not None
            seen = []
            for line in proc.stderr:  # until uvicorn says it listens
                seen.append(json.loads(line))
                if "Uvicorn running on" in seen[-1]["message"]:
                    break
        finally:
            proc.terminate()
    assert seen[-1]["logger"] == "uvicorn.error"
    assert seen[-1]["level"] == "INFO"
    assert {"time", "request_id", "agent", "session"} <= set(seen[-1])
