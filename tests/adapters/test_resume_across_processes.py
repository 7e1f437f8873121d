"""A run that waits for people, exits, is decided from the CLI, and resumes in a new process.

For each framework (LangGraph, the OpenAI Agents SDK, Pydantic AI), with a
real Redis and real processes: the agent process (tests/adapters/resume_agent.py)
runs until its two held refunds wait, shows their request ids in the
framework's stream or events, saves the run the framework's way and exits.
A person approves one refund and denies the other with ``gatekeeper approve``
and ``gatekeeper deny`` (each its own process). A new agent process resumes:
the approved refund runs exactly once, the model reads the denial. Resuming
the same saved run again runs nothing a second time.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RedisServer

CONFIG = """\
version: 1
store: {{url: "{url}", prefix: {prefix}}}
approvers:
  - {{name: alice, groups: [ops]}}
defaults: {{timeout: 10m, agent: billing-bot}}
policy:
  version: 1
  default: allow
  rules:
    - {{id: refunds, match: {{tool: refund}}, verdict: require_approval, risk: high}}
"""

ROOT = Path(__file__).resolve().parents[2]
DENIAL = 'Tool call denied by alice: "use the sandbox account". The tool was not run.'


def python(*argv: str) -> str:
    """Run ``python argv`` in a process of its own (the repo on its path); what it printed."""
    paths = [str(ROOT), str(ROOT / "adapters"), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
    done = subprocess.run(
        [sys.executable, *argv],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"{argv} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def agent(framework: str, phase: str, config: Path, folder: Path) -> dict[str, Any]:
    """One agent process: its printed outcome."""
    out = python("-m", "tests.adapters.resume_agent", framework, phase, str(config), str(folder))
    outcome: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return outcome


def gatekeeper(config: Path, *argv: str) -> str:
    """The gatekeeper CLI, as a person at another terminal runs it."""
    return python("-m", "gatekeeper.cli", "--config", str(config), *argv)


@pytest.mark.parametrize("framework", ["langgraph", "openai-agents", "pydantic-ai"])
def test_a_run_ends_while_calls_wait_and_a_new_process_resumes_it_after_the_cli_decides(
    framework: str, tmp_path: Path, redis_server: RedisServer, redis_prefix: str
) -> None:
    config = tmp_path / "gatekeeper.yaml"
    config.write_text(CONFIG.format(url=redis_server.url, prefix=redis_prefix))
    run = tmp_path / "run"
    run.mkdir()

    started = agent(framework, "start", config, run)
    # The process has exited; its two calls wait, and it showed their requests while they do.
    pending = [json.loads(line) for line in gatekeeper(config, "pending", "--json").splitlines()]
    by_order = {r["call"]["args"]["order_id"]: r["id"] for r in pending}
    assert sorted(started["waiting"]) == sorted(by_order.values())
    assert not (run / "ran.txt").exists()
    saved = tmp_path / "saved"
    shutil.copytree(run, saved)  # the run as it was saved, to resume a second time below

    gatekeeper(config, "approve", by_order["A-1"], "--as", "alice")
    gatekeeper(config, "deny", by_order["B-2"], "--as", "alice", "-m", "use the sandbox account")

    resumed = agent(framework, "resume", config, run)
    assert (run / "ran.txt").read_text() == "refund A-1 20.0\n"  # once, as approved
    assert resumed["read"]["call-a"].startswith("refunded 20.0 on A-1")
    assert resumed["read"]["call-b"].endswith(DENIAL)
    assert resumed["final"] == "done"

    # The same saved run resumed again: the approved call re-attaches to its request, which
    # already ran, so nothing runs; the model is told so, and gets the same denial.
    (saved / "ran.txt").write_text("")
    again = agent(framework, "resume", config, saved)
    assert (saved / "ran.txt").read_text() == ""
    assert "It was not run again." in again["read"]["call-a"]
    assert again["read"]["call-b"].endswith(DENIAL)
    assert gatekeeper(config, "pending", "--json").strip() == ""
