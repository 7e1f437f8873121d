"""The gatekeeper CLI against a real Redis shared with an agent process (here: a thread)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from gatekeeper import AgentHalted, ApprovalDenied, Gatekeeper
from gatekeeper.cli import main
from gatekeeper.testing import RecordingChannel
from tests.conftest import RedisServer

CONFIG = """\
version: 1
store: {{url: "{url}", prefix: {prefix}}}
approvers:
  - {{name: alice, groups: [ops]}}
  - {{name: bob, groups: [support]}}
defaults: {{timeout: 30s, agent: billing-bot}}
policy:
  version: 1
  default: require_approval
  rules:
    - id: read-only
      match: {{tool: "search_*"}}
      verdict: allow
    - id: refunds
      match: {{tool: refund}}
      verdict: require_approval
      risk: high
      approval: {{group: ops}}
"""


def run(*argv: str, stdin: str = "") -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err, stdin=io.StringIO(stdin))
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def config(tmp_path: Path, redis_server: RedisServer, redis_prefix: str) -> Path:
    path = tmp_path / "gatekeeper.yaml"
    path.write_text(CONFIG.format(url=redis_server.url, prefix=redis_prefix))
    return path


class Agent:
    """An agent in a thread of its own, making one guarded call."""

    def __init__(self, config: Path) -> None:
        self.channel = RecordingChannel()
        self.gate = Gatekeeper.from_config(config, channels=[self.channel])
        self.ran: list[dict[str, Any]] = []
        self.outcome: Any = None

        @self.gate.guard(irreversible=True)
        def refund(order_id: str, amount: float) -> str:
            self.ran.append({"order_id": order_id, "amount": amount})
            return "refunded"

        self.refund = refund

    def call(self, fn: Callable[[], Any]) -> threading.Thread:
        def target() -> None:
            try:
                with self.gate.session(agent="billing-bot", reason="customer asked"):
                    self.outcome = fn()
            except Exception as exc:  # the test reads what the agent got
                self.outcome = exc

        thread = threading.Thread(target=target)
        thread.start()
        return thread


@pytest.fixture
def agent(config: Path) -> Iterator[Agent]:
    a = Agent(config)
    yield a
    a.gate.close()


def test_pending_show_approve_runs_the_agents_call(config: Path, agent: Agent) -> None:
    thread = agent.call(lambda: agent.refund("A-1", 20.0))
    req = agent.channel.wait_for_request()
    code, out, _ = run("--config", str(config), "pending")
    assert code == 0
    assert req.id in out and "refund" in out and "high" in out
    code, out, _ = run("--config", str(config), "pending", "--json")
    assert json.loads(out.splitlines()[0])["id"] == req.id
    code, out, _ = run("--config", str(config), "show", req.id[:20])
    assert code == 0
    assert '"order_id": "A-1"' in out and "customer asked" in out and "call.held" in out
    code, out, _ = run("--config", str(config), "approve", req.id, "--as", "alice", "-m", "ok")
    assert code == 0, out
    assert "approved" in out
    thread.join(10)
    assert agent.outcome == "refunded"
    assert agent.ran == [{"order_id": "A-1", "amount": 20.0}]
    code, _, err = run("--config", str(config), "approve", req.id, "--as", "alice")
    assert (code, err) == (1, f"refused: {req.id} is already executed by alice; nothing recorded\n")


def test_deny_gives_the_agent_the_comment(config: Path, agent: Agent) -> None:
    thread = agent.call(lambda: agent.refund("A-2", 900.0))
    req = agent.channel.wait_for_request()
    code, out, _ = run(
        "--config",
        str(config),
        "deny",
        req.id,
        "--as",
        "alice",
        "--comment",
        "use the sandbox account",
    )
    assert code == 0
    assert "denied by alice; the call will not run" in out
    thread.join(10)
    assert isinstance(agent.outcome, ApprovalDenied)
    assert agent.outcome.approver == "alice"
    assert agent.outcome.comment == "use the sandbox account"
    assert agent.ran == []


def test_unknown_approver_and_wrong_group_are_refused(config: Path, agent: Agent) -> None:
    thread = agent.call(lambda: agent.refund("A-3", 5.0))
    req = agent.channel.wait_for_request()
    code, _, err = run("--config", str(config), "approve", req.id, "--as", "mallory")
    assert (code, "not a configured approver" in err) == (1, True)
    code, _, err = run("--config", str(config), "approve", req.id, "--as", "bob")
    assert code == 1 and "group 'ops'" in err
    code, _, err = run("--config", str(config), "approve", req.id)
    assert code == 1 and "--as" in err
    assert run("--config", str(config), "show", req.id)[1].count("status:  pending") == 1
    run("--config", str(config), "deny", req.id, "--as", "alice", "-m", "test over")
    thread.join(10)
    assert agent.ran == []


def test_deny_without_a_reason_is_refused_and_records_nothing(config: Path, agent: Agent) -> None:
    """The agent reads why it was denied: `deny` without -m is refused, as in the console."""
    thread = agent.call(lambda: agent.refund("A-4", 900.0))
    req = agent.channel.wait_for_request()
    for blank in ([], ["-m", "  "]):
        code, out, err = run("--config", str(config), "deny", req.id, "--as", "alice", *blank)
        assert (code, out) == (1, "")
        assert err == (
            f"refused: a denial needs a reason, and the agent reads it: gatekeeper deny {req.id} "
            "-m 'why'; nothing recorded\n"
        )
    assert run("--config", str(config), "show", req.id)[1].count("status:  pending") == 1
    run("--config", str(config), "deny", req.id, "--as", "alice", "-m", "test over")
    thread.join(10)
    assert agent.ran == []


def test_edited_args_from_the_cli_run_as_edited(config: Path, agent: Agent) -> None:
    thread = agent.call(lambda: agent.refund("A-4", 500.0))
    req = agent.channel.wait_for_request()
    code, _, err = run(
        "--config", str(config), "approve", req.id, "--as", "alice", "--digest", "ffffffff"
    )
    assert code == 1 and "not the ones you reviewed" in err
    code, out, _ = run(
        "--config",
        str(config),
        "approve",
        req.id,
        "--as",
        "alice",
        "--args",
        '{"order_id": "A-4", "amount": 50}',
        "--digest",
        req.args_digest[:8],
    )
    assert code == 0 and "edited" in out
    thread.join(10)
    assert agent.ran == [{"order_id": "A-4", "amount": 50.0}]


def unwrapped(out: str) -> str:
    """What `show` printed, with its long lines joined again (each went on after `↪`)."""
    return out.replace("\n    \u21aa ", "")


def test_show_prints_long_arguments_whole(config: Path, agent: Agent) -> None:
    """No cut at 20,000 characters (or anywhere): what `show` printed is what would run."""
    order = "L" * 30_000 + "END"
    thread = agent.call(lambda: agent.refund(order, 5.0))
    req = agent.channel.wait_for_request()
    code, out, _ = run("--config", str(config), "show", req.id)
    assert code == 0
    assert f'"order_id": "{order}"' in unwrapped(out)  # every character, in 78-column lines
    assert "more characters" not in out
    code, out, _ = run("--config", str(config), "approve", req.id, "--as", "alice")
    assert code == 0, out
    thread.join(10)
    assert agent.ran == [{"order_id": order, "amount": 5.0}]


def test_approving_arguments_over_64_kib_needs_the_full_digest_show_prints(
    config: Path, agent: Agent
) -> None:
    order = "H" * 70_000 + "END"
    thread = agent.call(lambda: agent.refund(order, 5.0))
    req = agent.channel.wait_for_request()
    for extra in ([], ["--digest", req.args_digest[:12]], ["--args", '{"order_id": "x"}']):
        code, _, err = run("--config", str(config), "approve", req.id, "--as", "alice", *extra)
        assert code == 1, extra
        assert f"read them whole with `gatekeeper show {req.id}`" in err
    assert agent.gate.get(req.id).decisions == ()
    code, out, _ = run("--config", str(config), "show", req.id)
    assert f'"order_id": "{order}"' in unwrapped(out)
    assert f"args sha256 (all of it, for approve --digest): {req.args_digest}" in out
    code, out, _ = run(
        "--config", str(config), "approve", req.id, "--as", "alice", "--digest", req.args_digest
    )
    assert code == 0, out
    thread.join(10)
    assert agent.ran == [{"order_id": order, "amount": 5.0}]


def test_halt_cancels_waiting_calls_and_resume_needs_an_approver(
    config: Path, agent: Agent
) -> None:
    thread = agent.call(lambda: agent.refund("A-5", 1.0))
    agent.channel.wait_for_request()
    code, out, _ = run("--config", str(config), "halt", "--agent", "billing-bot", "-m", "runaway")
    assert code == 0 and "cancelled 1" in out
    thread.join(10)
    assert isinstance(agent.outcome, AgentHalted)
    code, out, _ = run("--config", str(config), "halts")
    assert "agent billing-bot halted" in out and "runaway" in out
    code, _, err = run("--config", str(config), "resume", "--agent", "billing-bot")
    assert code == 1 and "approver" in err
    code, out, _ = run("--config", str(config), "resume", "--agent", "billing-bot", "--as", "alice")
    assert (code, out.strip()) == (0, "resumed agent billing-bot")
    assert agent.ran == []


def test_audit_tail_export_and_verify_catch_tampering(
    config: Path, agent: Agent, redis_server: RedisServer, redis_prefix: str, tmp_path: Path
) -> None:
    thread = agent.call(lambda: agent.refund("A-6", 3.0))
    req = agent.channel.wait_for_request()
    run("--config", str(config), "approve", req.id, "--as", "alice")
    thread.join(10)
    agent.gate.store.flush()
    code, out, _ = run("--config", str(config), "audit", "verify")
    assert code == 0 and "chain intact" in out
    code, out, _ = run("--config", str(config), "audit", "tail", "-n", "2")
    assert "request.released" in out and "request.executed" in out
    export = tmp_path / "audit.jsonl"
    assert run("--config", str(config), "audit", "export", "-o", str(export))[0] == 0
    lines = export.read_text().splitlines()
    assert [json.loads(x)["kind"] for x in lines] == [
        "call.held",
        "request.approved",
        "request.released",
        "request.executed",
    ]
    # Someone with Redis access deletes the approval from the stream.
    r = redis.Redis.from_url(redis_server.url)
    stream = f"{{{redis_prefix}}}:audit"
    second = r.xrange(stream)[1][0]
    r.xdel(stream, second)
    r.close()
    code, out, _ = run("--config", str(config), "audit", "verify")
    assert code == 1
    assert "BROKEN" in out and "inserted or deleted" in out and "#3" in out


def test_cli_refuses_the_embedded_store(tmp_path: Path) -> None:
    path = tmp_path / "g.yaml"
    path.write_text("version: 1\nstore: {url: 'memory://'}\n")
    code, _, err = run("--config", str(path), "pending")
    assert code == 1 and "memory://" in err and "GATEKEEPER_REDIS_URL" in err


def test_gatekeeper_redis_url_overrides_the_file(
    tmp_path: Path, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "g.yaml"
    path.write_text("version: 1\nstore: {url: 'memory://'}\n")
    monkeypatch.setenv("GATEKEEPER_REDIS_URL", redis_server.url)
    monkeypatch.setenv("GATEKEEPER_CONFIG", str(path))
    code, out, _ = run("pending")
    assert (code, out.strip()) == (0, "no pending requests")


def test_console_script_is_installed() -> None:
    done = subprocess.run(
        [str(Path(sys.executable).with_name("gatekeeper")), "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.startswith("gatekeeper ")


def test_respond_gives_the_agent_the_text_and_the_tool_never_runs(
    config: Path, agent: Agent
) -> None:
    thread = agent.call(lambda: agent.refund("A-7", 40.0))
    req = agent.channel.wait_for_request()
    base = ("--config", str(config), "respond", req.id[:16])
    code, _, err = run(*base, "--as", "alice", "--text", "   ")
    assert (code, err) == (
        1,
        f"refused: a response needs words, and the agent reads them: gatekeeper respond "
        f"{req.id[:16]} --text 'the result'; nothing recorded\n",
    )
    code, _, err = run(*base, "--as", "bob", "--text", "done")  # bob is not in group ops
    assert code == 1 and "may not decide" in err
    code, _, err = run(*base, "--as", "alice", "--text", "x" * 8001)
    assert code == 1 and "over the limit of 8,000; nothing recorded" in err
    code, out, err = run(*base, "--as", "alice", "--text", "-", stdin="Refunded by hand.\n")
    assert code == 0, err
    assert out == (
        f"{req.id}: answered by alice; the tool will not run, and the agent gets your text "
        "as its result\n"
    )
    thread.join(10)
    assert agent.outcome == "Refunded by hand." and agent.ran == []
    code, out, _ = run("--config", str(config), "show", req.id)
    assert "status:  responded" in out and "answered by alice via cli" in out
    assert "Refunded by hand." in out and "request.responded" in out
    code, _, err = run(*base, "--as", "alice", "--text", "again")
    assert (code, err) == (
        1,
        f"refused: {req.id} is already responded by alice; nothing recorded\n",
    )


def test_a_question_is_listed_answered_and_never_approved(config: Path, agent: Agent) -> None:
    ask = agent.gate.ask_tool()
    thread = agent.call(lambda: ask("Refund to the card or as store credit?"))
    req = agent.channel.wait_for_request()
    code, out, _ = run("--config", str(config), "pending")
    assert "asks: Refund to the card or as store credit?" in out
    code, out, _ = run("--config", str(config), "show", req.id)
    assert out.startswith(f"Question {req.id}") and "question (the agent's words" in out
    code, _, err = run("--config", str(config), "approve", req.id, "--as", "alice")
    assert code == 1 and "it is a question from the agent; answer it (respond)" in err
    code, out, _ = run(
        "--config", str(config), "respond", req.id, "--as", "alice", "-t", "store credit"
    )
    assert code == 0 and "answered by alice; the agent gets your answer" in out
    thread.join(10)
    assert agent.outcome == "store credit"
