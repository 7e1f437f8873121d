"""A user's mistake or a closed pipe gets one line, never a traceback; ids resolve by prefix."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gatekeeper.cli import main
from tests.conftest import RedisServer
from tests.integration.test_cli import CONFIG, Agent


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err, stdin=io.StringIO(""))
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def config(tmp_path: Path, redis_server: RedisServer, redis_prefix: str) -> Path:
    path = tmp_path / "gatekeeper.yaml"
    path.write_text(
        CONFIG.format(url=redis_server.url, prefix=redis_prefix).replace(
            "approval: {group: ops}", "approval: {group: ops, quorum: 2}"
        )
        + "\n"
    )
    path.write_text(
        path.read_text().replace("{name: bob, groups: [support]}", "{name: bob, groups: [ops]}")
    )
    return path


@pytest.fixture
def agent(config: Path) -> Iterator[Agent]:
    a = Agent(config)
    yield a
    a.gate.halt(agent="billing-bot", by="test")  # releases every thread still waiting
    a.gate.close()


def gatekeeper_piped_into_head(config: Path, *argv: str) -> tuple[int, str, str]:
    """``python -m gatekeeper.cli --config FILE ARGV | head -1``, with real pipes."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    with subprocess.Popen(
        [sys.executable, "-m", "gatekeeper.cli", "--config", str(config), *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    ) as cli:
        assert cli.stdout is not None and cli.stderr is not None
        head = subprocess.run(
            ["head", "-1"], stdin=cli.stdout, capture_output=True, check=True, timeout=30
        )
        cli.stdout.close()  # only head reads it
        err = cli.stderr.read().decode()
        code = cli.wait(30)
    return code, head.stdout.decode(), err


@pytest.mark.parametrize(
    "argv",
    [
        ("pending", "--json"),
        ("audit", "export"),
        ("audit", "tail", "-n", "100", "--json"),
        ("show", "FIRST"),
    ],
)
def test_a_reader_that_stops_early_ends_the_command_quietly(
    config: Path, agent: Agent, argv: tuple[str, ...]
) -> None:
    """`gatekeeper pending --json | head -1`: no BrokenPipeError traceback, just an exit."""
    ids = []
    # ~6 x 40 KB in all, and 200 KB in the first (what `show` prints): each more than a
    # pipe (64 KB) holds once head has gone, so the write always finds the pipe closed.
    for n in range(6):
        size = 200_000 if n == 0 else 40_000
        agent.call(lambda n=n, size=size: agent.refund(f"{n}-" + "x" * size, 1.0))
        ids.append(agent.channel.wait_for_request(n + 1).id)
    argv = tuple(ids[0] if a == "FIRST" else a for a in argv)
    code, first, err = gatekeeper_piped_into_head(config, *argv)
    assert first.strip()  # head got its line
    assert err == ""  # nothing at all on stderr: no "Traceback", no "Exception ignored"
    assert code == 1  # the output was cut short, as with Python's own recipe


def test_a_short_digest_is_an_error_line_not_a_traceback(config: Path, agent: Agent) -> None:
    """The docs' own `--digest 0000` was a ValueError from deep inside the gate."""
    agent.call(lambda: agent.refund("A-1", 250.0))
    req = agent.channel.wait_for_request()
    for digest in ("0000", "not-hex!", ""):
        code, out, err = run(
            "--config", str(config), "approve", req.id, "--as", "alice", "--digest", digest
        )
        assert code == 1 and out == ""
        assert err.startswith("error: --digest") and "at least 8 hex digits" in err
    code, _, err = run(
        "--config", str(config), "approve", req.id, "--as", "alice", "--digest", "00000000"
    )
    assert (code, "not the ones you reviewed" in err, err.startswith("refused: ")) == (
        1,
        True,
        True,
    )
    assert agent.gate.get(req.id).decisions == ()


def test_the_docs_digest_example_in_a_real_process_prints_no_traceback(
    config: Path, agent: Agent
) -> None:
    agent.call(lambda: agent.refund("A-1", 250.0))
    req = agent.channel.wait_for_request()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    argv = ["--config", str(config), "approve", req.id, "--as", "alice", "--digest", "0000"]
    done = subprocess.run(
        [sys.executable, "-m", "gatekeeper.cli", *argv],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr and done.stderr.startswith("error: --digest 0000")


def test_file_mistakes_are_error_lines(config: Path, tmp_path: Path) -> None:
    code, _, err = run("--config", str(config), "audit", "export", "-o", str(tmp_path / "no" / "x"))
    assert code == 1 and err.startswith("error: ") and "No such file" in err
    code, _, err = run("init", str(tmp_path / "no" / "g.yaml"))
    assert code == 1 and err.startswith("error: ")
    code, _, err = run("--config", str(config), "audit", "verify", "--anchor", str(tmp_path))
    assert code == 1 and err.startswith("error: ")


def test_a_prefix_finds_decided_requests_too(config: Path, agent: Agent) -> None:
    """The full id said "already executed"; its prefix said "no approval request"."""
    thread = agent.call(lambda: agent.refund("A-1", 250.0))
    req = agent.channel.wait_for_request()
    for who in ("alice", "bob"):
        assert run("--config", str(config), "approve", req.id, "--as", who)[0] == 0
    thread.join(10)
    code, out, _ = run("--config", str(config), "show", req.id[:14])
    assert code == 0 and f"Request {req.id}" in out and "status:  executed" in out
    for verb in ("approve", "deny"):
        why = ["-m", "no"] if verb == "deny" else []
        code, out, err = run("--config", str(config), verb, req.id[:14], "--as", "alice", *why)
        assert (code, out) == (1, "")
        assert err == f"refused: {req.id} is already executed by bob; nothing recorded\n"


def test_an_ambiguous_prefix_is_refused_with_the_candidates(config: Path, agent: Agent) -> None:
    ids = []
    for n in range(2):
        agent.call(lambda n=n: agent.refund(f"A-{n}", 1.0))
        ids.append(agent.channel.wait_for_request(n + 1).id)
    agent.gate.deny(
        ids[0], approver="alice", comment="no"
    )  # one decided, one pending: both are candidates
    common = next(ids[0][:n] for n in range(26, 0, -1) if ids[1].startswith(ids[0][:n]))
    code, out, err = run("--config", str(config), "approve", common, "--as", "alice")
    assert (code, out) == (1, "")
    assert err.startswith(f"error: {common!r} is the start of 2 requests' ids: ")
    assert f"{ids[0]} (denied, refund)" in err and f"{ids[1]} (pending, refund)" in err
    code, _, err = run("--config", str(config), "show", "zzzzzzzz")
    assert code == 1 and err.startswith("error: no request has the id 'zzzzzzzz'")


def test_approving_twice_says_the_vote_was_already_cast(config: Path, agent: Agent) -> None:
    agent.call(lambda: agent.refund("A-1", 250.0))
    req = agent.channel.wait_for_request()
    code, out, _ = run("--config", str(config), "approve", req.id, "--as", "alice")
    assert (code, out) == (
        0,
        f"{req.id}: your approval is recorded; 1 of 2 approvals, waiting for more\n",
    )
    code, out, err = run("--config", str(config), "approve", req.id, "--as", "alice")
    assert (code, out) == (1, "")
    assert err == (
        f"refused: {req.id}: alice already approved these arguments; a vote counts once, "
        "so it still has 1 of 2 approvals; nothing recorded\n"
    )
    assert len(agent.gate.get(req.id).decisions) == 1


def test_halts_names_every_agent_in_words(config: Path) -> None:
    assert run("--config", str(config), "halt", "--all", "--as", "alice", "-m", "drill")[0] == 0
    code, out, _ = run("--config", str(config), "halts")
    assert code == 0 and out.startswith("every agent halted by alice at ") and "*" not in out
    assert out.rstrip().endswith(": drill")
    run("--config", str(config), "resume", "--all", "--as", "alice")
    code, out, err = run("--config", str(config), "resume", "--all", "--as", "alice")
    assert (code, out, err) == (1, "", "refused: every agent was not halted; nothing resumed\n")
