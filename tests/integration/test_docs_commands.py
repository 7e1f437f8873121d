"""Every command line the docs show runs, against a real store, and prints what the docs say.

Each test replays one file's ``$ gatekeeper ...`` lines in order, in a
temporary directory holding the config the page describes, while an agent (a
thread of this process) makes the calls the page talks about. Output is
compared modulo request ids, times and hashes (see ``tests/docskit.py``). A
command a page shows that is not run says why in ``NOT_RUN``.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from gatekeeper import AgentHalted, ApprovalDenied, Gatekeeper, Response
from gatekeeper._canonical import digest
from gatekeeper._config import starter_config
from gatekeeper.cli import _commands, main
from gatekeeper.testing import RecordingChannel
from tests.conftest import RedisServer, _free_port
from tests.docskit import ROOT, Matcher, Shown, shown_commands
from tests.integration.test_telemetry_metrics import listening

NOT_RUN = {
    "gatekeeper demo": "serves a console until interrupted; test_config_and_cli runs its "
    "terminal mode and test_demo_web its console",
}
SECRET = "s" * 40


def yaml_blocks(page: str) -> list[str]:
    text = (ROOT / "docs" / page).read_text(encoding="utf-8")
    return re.findall(r"^```yaml\n(.*?)^```", text, re.MULTILINE | re.DOTALL)


class Agent:
    """An agent process's calls, each in a thread of its own, on the page's config."""

    def __init__(self, config: Path) -> None:
        self.channel = RecordingChannel()
        self.gate = Gatekeeper.from_config(config, channels=[self.channel])
        self.ran: list[dict[str, Any]] = []
        self.outcomes: dict[str, Any] = {}
        self.threads: dict[str, threading.Thread] = {}

        @self.gate.guard(irreversible=True, scopes={"payments:write"})
        def refund(order_id: str, amount: float) -> str:
            self.ran.append({"order_id": order_id, "amount": amount})
            return f"refunded {amount} on {order_id}"

        self.refund = refund

    def hold(self, order_id: str, amount: float) -> str:
        """Make the call in a thread; returns the id of the request it waits on."""

        def target() -> None:
            reason = f"customer asked for a refund of order {order_id}"
            try:
                with self.gate.session(agent="billing-bot", reason=reason):
                    self.outcomes[order_id] = self.refund(order_id, amount)
            except Exception as exc:  # the test reads what the agent got
                self.outcomes[order_id] = exc

        thread = threading.Thread(target=target)
        self.threads[order_id] = thread
        thread.start()
        return self.channel.wait_for_request(len(self.channel.notified) + 1).id

    def outcome(self, order_id: str) -> Any:
        self.threads[order_id].join(10)
        assert not self.threads[order_id].is_alive()
        return self.outcomes[order_id]


Hook = Callable[[], None]


def replay(
    page: Path,
    matcher: Matcher,
    before: dict[tuple[str, int], Hook] | None = None,
    after: dict[tuple[str, int], Hook] | None = None,
    run: Callable[[Shown, list[str]], str] | None = None,
) -> list[Shown]:
    """Run each command ``page`` shows, in order; hooks are keyed by (command, occurrence)."""
    before, after = before or {}, after or {}
    seen: dict[str, int] = {}
    done = []
    for shown in shown_commands(page):
        key = (shown.command, seen.get(shown.command, 0))
        seen[shown.command] = key[1] + 1
        if shown.command in NOT_RUN:
            continue
        if key in before:
            before.pop(key)()
        argv = matcher.argv(shown.argv)
        if run is not None:
            printed = run(shown, argv)
        else:
            out, err = io.StringIO(), io.StringIO()
            main(argv, stdout=out, stderr=err, stdin=io.StringIO(shown.stdin or ""))
            printed = out.getvalue() + err.getvalue()
        matcher.check(shown, printed)
        if key in after:
            after.pop(key)()
        done.append(shown)
    assert not before and not after, f"hooks for commands the page no longer shows: {before}"
    return done


@pytest.fixture
def page_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, redis_server: RedisServer) -> Path:
    """A working directory and environment like the docs': the store is the test's Redis."""
    for var in ("GATEKEEPER_CONFIG", "GATEKEEPER_APPROVER", "GATEKEEPER_WEB_SECRET"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("GATEKEEPER_REDIS_URL", redis_server.url)
    for var in ("LOGNAME", "USER"):  # `halt` records cli: and the login name
        monkeypatch.setenv(var, "root")
    monkeypatch.chdir(tmp_path)
    return tmp_path


RESPOND_A5 = (
    "gatekeeper respond 01m8gj6hb4q9y2w7k3n5t8x1zc --as alice --text "
    '"Order A-5 was refunded last week (ticket 4411); nothing to do."'
)


def test_cli_reference_commands(
    page_env: Path,
    redis_server: RedisServer,
    redis_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """docs/cli.md, top to bottom: the story of two refunds, an edit, a halt and the audit log."""
    config_text = yaml_blocks("cli.md")[0].replace("prefix: gatekeeper", f"prefix: {redis_prefix}")
    config = page_env / "gatekeeper.yaml"
    config.write_text(config_text)
    policy = yaml.safe_load(starter_config())["policy"]
    (page_env / "policy.yaml").write_text(yaml.safe_dump(policy, sort_keys=False))
    agent = Agent(config)
    m = Matcher()

    def memory_store() -> None:
        monkeypatch.delenv("GATEKEEPER_REDIS_URL")
        config.write_text("version: 1\nstore: {url: 'memory://'}\n")

    def redis_store() -> None:
        monkeypatch.setenv("GATEKEEPER_REDIS_URL", redis_server.url)
        config.write_text(config_text)

    def two_refunds() -> None:
        m.ids["01m8gj619nh6vjq25p5fzd9dvr"] = agent.hold("A-1", 250.0)
        m.ids["01m8gj619pgxqjtqkvh3aa08f0"] = agent.hold("A-2", 40.0)

    def a1_ran() -> None:
        assert agent.outcome("A-1") == "refunded 250.0 on A-1"

    def a3_held() -> None:
        m.ids["01m8gj6egsz0wjrz9md49pbhzd"] = agent.hold("A-3", 500.0)

    def a3_ran_as_edited() -> None:
        assert agent.outcome("A-3") == "refunded 50.0 on A-3"

    def a2_denied() -> None:
        denied = agent.outcome("A-2")
        assert isinstance(denied, ApprovalDenied)
        assert denied.model_message == (
            'Tool call denied by alice: "order A-2 was already refunded". The tool was not run.'
        )

    def a5_held() -> None:
        m.ids["01m8gj6hb4q9y2w7k3n5t8x1zc"] = agent.hold("A-5", 75.0)

    def a5_answered() -> None:
        answered = agent.outcome("A-5")
        assert isinstance(answered, Response)
        assert answered == "Order A-5 was refunded last week (ticket 4411); nothing to do."

    def a4_held() -> None:
        m.ids["01m8gj6j36ehnjpwtrkkp6z5pj"] = agent.hold("A-4", 30.0)

    def a4_cancelled() -> None:
        halted = agent.outcome("A-4")
        assert isinstance(halted, AgentHalted)
        assert halted.model_message == (
            "Tool call refund cancelled: halted: refund loop. The tool was not run."
        )

    def delete_one_event() -> None:
        """The broken log is a copy, with its third event deleted: the story goes on intact."""
        r = redis.Redis.from_url(redis_server.url)
        copy = f"{redis_prefix}x"
        for key in r.scan_iter(match=f"{{{redis_prefix}*"):
            r.copy(key, key.decode().replace(redis_prefix, copy, 1))
        stream = f"{{{copy}}}:audit"
        r.xdel(stream, r.xrange(stream)[2][0])
        r.close()
        config.write_text(config_text.replace(f"prefix: {redis_prefix}", f"prefix: {copy}"))

    def fresh_directory() -> None:
        (page_env / "new").mkdir()
        os.chdir(page_env / "new")
        monkeypatch.setattr(_commands, "LOCAL_REDIS", ("localhost", redis_server.port))

    replay(
        ROOT / "docs" / "cli.md",
        m,
        before={
            ("gatekeeper pending", 0): memory_store,
            ("gatekeeper pending", 1): two_refunds,
            (
                "gatekeeper approve 01m8gj6egsz0wjrz9md49pbhzd --as alice "
                '--args \'{"order_id": "A-3", "amount": 50.0}\' -m "refund only the shipping"',
                0,
            ): a3_held,
            ('gatekeeper halt --agent billing-bot -m "refund loop"', 0): a4_held,
            (RESPOND_A5, 0): a5_held,
            ("gatekeeper audit verify", 1): delete_one_event,
            ("gatekeeper init", 0): fresh_directory,
        },
        after={
            ("gatekeeper pending", 0): redis_store,
            ("gatekeeper approve 01m8gj619nh6vjq25p5fzd9dvr --as alice --digest 2ec50beb9334", 0): (
                a1_ran
            ),
            ("gatekeeper approve 01m8gj6egsz0wjrz9md49pbhzd --as bob --digest fe8a0e99a0bf", 0): (
                a3_ran_as_edited
            ),
            (
                'gatekeeper deny 01m8gj619pgxqjtqkvh3aa08f0 --as alice -m "order A-2 was '
                'already refunded"',
                0,
            ): a2_denied,
            ('gatekeeper halt --agent billing-bot -m "refund loop"', 0): a4_cancelled,
            (RESPOND_A5, 0): a5_answered,
            ("gatekeeper audit verify", 1): redis_store,
        },
    )
    assert agent.ran == [
        {"order_id": "A-1", "amount": 250.0},
        {"order_id": "A-3", "amount": 50.0},
    ]
    agent.gate.close()


def test_quickstart_commands(page_env: Path, redis_prefix: str) -> None:
    """docs/quickstart.md: a second terminal lists the held refund and approves it by prefix."""
    text = (ROOT / "docs" / "quickstart.md").read_text(encoding="utf-8")
    config_text = re.search(r"^```yaml\n(.*?)^```", text, re.MULTILINE | re.DOTALL)
    assert config_text is not None
    config = page_env / "gatekeeper.yaml"
    config.write_text(
        config_text.group(1).replace("store:\n", f"store:\n  prefix: {redis_prefix}\n", 1)
    )
    agent = Agent(config)
    m = Matcher()

    def held() -> None:
        m.ids["01m8gj619nh6vjq25p5fzd9dvr"] = agent.hold("A-1", 250.0)

    def ran() -> None:
        assert agent.outcome("A-1") == "refunded 250.0 on A-1"

    replay(
        ROOT / "docs" / "quickstart.md",
        m,
        before={("gatekeeper pending", 0): held},
        after={('gatekeeper approve 01m8gj619nh6 --as alice -m "matches the ticket"', 0): ran},
    )
    agent.gate.close()


def test_console_page_commands(
    page_env: Path, redis_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/console.md: hash a secret, then `serve --config FILE` really starts the console.

    The console listens on a free port instead of 8000, and is stopped once it
    has said where it listens.
    """
    (config_text,) = [b for b in yaml_blocks("console.md") if "web:" in b][:1]
    (page_env / "gatekeeper.yaml").write_text(
        config_text.replace("prefix: acme-billing", f"prefix: {redis_prefix}")
    )
    monkeypatch.setenv("GATEKEEPER_WEB_SECRET", SECRET)
    port = _free_port()

    def run(shown: Shown, argv: list[str]) -> str:
        if argv[0] != "serve":
            out, err = io.StringIO(), io.StringIO()
            main(argv, stdout=out, stderr=err, stdin=io.StringIO(shown.stdin or ""))
            return out.getvalue() + err.getvalue()
        argv = [str(port) if a == "8000" else a for a in argv]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        with subprocess.Popen(
            [sys.executable, "-m", "gatekeeper.cli", *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
        ) as proc:
            try:
                assert proc.stdout is not None
                first = proc.stdout.readline()
            finally:
                proc.terminate()
        return first.replace(f":{port}", ":8000")

    done = replay(ROOT / "docs" / "console.md", Matcher(), run=run)
    assert any(s.argv[0] == "serve" for s in done)


def test_observability_page_serves_metrics_to_a_read_token(
    page_env: Path, redis_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/observability.md: its config starts `gatekeeper serve`, whose /metrics answers
    the `test` token the config's `api_tokens` entry hashes, and only it."""
    import urllib.error
    import urllib.request

    (config_text,) = [b for b in yaml_blocks("observability.md") if "web:" in b]
    (page_env / "gatekeeper.yaml").write_text(
        config_text.replace("prefix: acme-billing", f"prefix: {redis_prefix}")
    )
    monkeypatch.setenv("GATEKEEPER_WEB_SECRET", SECRET)
    port = _free_port()
    (shown,) = [
        s for s in shown_commands(ROOT / "docs" / "observability.md") if s.argv[0] == "serve"
    ]
    argv = [str(port) if a == "8000" else a for a in shown.argv]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}

    def get(token: str | None) -> tuple[int, str]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        req = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, ""

    with subprocess.Popen(
        [sys.executable, "-m", "gatekeeper.cli", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    ) as proc:
        try:
            assert proc.stdout is not None
            assert "gatekeeper console on" in proc.stdout.readline()
            listening(port)  # the line comes as uvicorn starts, before it listens
            status, text = get("test")
            assert status == 200
            assert "gatekeeper_store_up 1.0" in text
            assert "gatekeeper_pending_requests 0.0" in text
            assert get(None)[0] == 401
            assert get("not-the-token")[0] == 401
        finally:
            proc.terminate()


def test_mcp_page_commands(
    page_env: Path, redis_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/mcp.md: the tools offered, a changed tool accepted, a token, the HTTP gateway.

    The page's first config runs as written, on the test's prefix, with a
    throw-away repository standing for /srv/agent-repo: the upstreams are the
    real mcp-server-git and mcp-server-time, found on PATH beside this Python.
    A new release of mcp-server-git that changed git_status's description is
    played by pinning an older description, so the next listing finds the tool
    changed. `mcp serve --http` listens on a free port instead of 8765 and is
    stopped once it has said where it listens.
    """
    pytest.importorskip("gatekeeper_mcp", reason="the MCP gateway needs the 'mcp' extra")
    from tests.mcpkit import have_git, make_repo

    if not have_git():
        pytest.skip("mcp-server-git needs git")
    repo = make_repo(page_env / "repo")
    (config_text,) = [b for b in yaml_blocks("mcp.md") if "\nmcp:\n" in b][:1]
    (page_env / "gatekeeper.yaml").write_text(
        config_text.replace("prefix: gatekeeper", f"prefix: {redis_prefix}").replace(
            "/srv/agent-repo", str(repo)
        )
    )
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    port = _free_port()

    def upstream_changed_git_status() -> None:
        pins = page_env / "mcp-pins.json"
        data = json.loads(pins.read_text())
        pin = data["tools"]["git/git_status"]
        pin["definition"]["description"] = "Shows the status of the working tree"
        pin["fingerprint"] = digest(pin["definition"])
        pins.write_text(json.dumps(data))

    def run(shown: Shown, argv: list[str]) -> str:
        if argv[:2] != ["mcp", "serve"]:
            out, err = io.StringIO(), io.StringIO()
            main(argv, stdout=out, stderr=err, stdin=io.StringIO(shown.stdin or ""))
            return out.getvalue() + err.getvalue()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        with subprocess.Popen(
            [sys.executable, "-m", "gatekeeper.cli", *argv, "--port", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        ) as proc:
            try:
                assert proc.stderr is not None
                first = proc.stderr.readline()
            finally:
                proc.terminate()
        return first.replace(f":{port}/", ":8765/")

    done = replay(
        ROOT / "docs" / "mcp.md",
        Matcher(),
        before={("gatekeeper mcp tools", 1): upstream_changed_git_status},
        run=run,
    )
    assert [s.argv[:2] for s in done] == [
        ("mcp", "tools"),
        ("mcp", "serve"),
        ("mcp", "tools"),
        ("mcp", "accept"),
        ("mcp", "token"),
    ]
