"""Alerts end to end: real calls through a gate, a real store, the real Slack and HTTP clients.

An agent's gate makes the calls; an :class:`Alerter` on the same store (on
MemoryStore, and on a real redis-server) follows the sealed log and the
queue, and sends to the local Slack stand-in (slack-sdk's ``WebClient``
reaching it through ``base_url``) and to a webhook receiver on a real port.
A :class:`ManualClock` moves time for the queue's age and the throttle's
windows; nothing waits on real time but the deliveries themselves.
"""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from slack_sdk import WebClient

from gatekeeper import (
    AgentHalted,
    ApprovalPending,
    ConfigError,
    Gatekeeper,
    Policy,
    ToolCallDenied,
)
from gatekeeper._config import load_config
from gatekeeper.alerts import Alerter, WebhookAlerts
from gatekeeper.channels.slack import SlackAlerts
from gatekeeper.cli import main
from gatekeeper.store import MemoryStore, RedisStore, Store
from gatekeeper.testing import ManualClock, RecordingAlerts
from gatekeeper.web import WebSettings, create_app
from tests.conftest import RedisServer
from tests.docskit import ROOT, Matcher, shown_commands
from tests.hookkit import Receiver, verifies
from tests.slackkit import FakeSlack
from tests.storekit import MANUAL_LEASE
from tests.webkit import TestClient

CONSOLE = "https://gatekeeper.example"
CHANNEL = "C0ALERTS"
SECRET = "alerts-secret-" + "z" * 20

POLICY = """
version: 1
default: allow
rules:
  - {id: no-drop, match: {tool: drop_table}, verdict: deny, risk: high,
     reason: dropping tables is forbidden}
  - {id: careless-drop, match: {tool: drop_view}, verdict: deny, risk: medium}
  - {id: deploys, match: {tool: deploy}, verdict: require_approval}
sequences:
  - {id: recon-then-download, steps: [{tool: list_buckets}, {tool: download}], within: 10m,
     verdict: require_approval, reason: listing then downloading everything}
  - {id: tunnel, steps: [{tool: dns_lookup}, {tool: open_tunnel}], within: 10m, per: session,
     verdict: halt, reason: looks like a tunnel}
limits:
  - {id: mail-rate, match: {tool: send_email}, rate: 1/hour, on_exceed: deny}
novelty:
  - {id: new-hosts, match: {tool: http_get}, new: host(args.url)}
"""


@pytest.fixture(params=["memory", "redis"])
def clock_and_store(
    request: pytest.FixtureRequest, redis_prefix: str
) -> Iterator[tuple[ManualClock, Store]]:
    clock = ManualClock()
    store: Store
    if request.param == "memory":
        store = MemoryStore(clock=clock)
    else:
        server: RedisServer = request.getfixturevalue("redis_server")
        store = RedisStore(server.url, prefix=redis_prefix, clock=clock, lease=MANUAL_LEASE)
    yield clock, store
    store.close()


@pytest.fixture
def fake() -> Iterator[FakeSlack]:
    with FakeSlack() as running:
        yield running


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.stop()


class Agent:
    """An agent's gate on ``store`` with one tool per name; ``call`` says how each call ended."""

    def __init__(self, store: Store, clock: ManualClock) -> None:
        self.gate = Gatekeeper(policy=Policy.from_yaml(POLICY), store=store, clock=clock)
        self.keys = 0

    def call(self, tool: str, session: str = "s1", **args: Any) -> str:
        self.keys += 1
        guarded = self.gate.tool(tool, lambda **_: "ran")
        try:
            with self.gate.session(agent="trainer", session_id=session):
                guarded.run(args, key=f"k{self.keys}", wait=False)
        except (ToolCallDenied, AgentHalted, ApprovalPending) as exc:
            return type(exc).__name__
        return "ran"


def alerter_for(
    store: Store, clock: ManualClock, fake: FakeSlack, receiver: Receiver, **options: Any
) -> Alerter:
    no_sleep: Callable[[float], None] = lambda _: None  # noqa: E731
    slack = SlackAlerts(
        WebClient(token=fake.bot_token, base_url=fake.base_url), CHANNEL, sleep=no_sleep
    )
    hook = WebhookAlerts(receiver.url, secret=SECRET, name="oncall", sleep=no_sleep)
    options = {"console_url": CONSOLE, "queue_age": 60.0, "clock": clock, **options}
    return Alerter(store, [slack, hook], **options)


def posted(fake: FakeSlack) -> list[dict[str, Any]]:
    return [c.args for c in fake.calls_to("chat.postMessage") if not c.failed]


def kinds_posted(receiver: Receiver) -> list[str]:
    return sorted(d["kind"] for d in receiver.docs())


def test_each_kind_of_alert_goes_out_once_to_slack_and_the_webhook(
    clock_and_store: tuple[ManualClock, Store], fake: FakeSlack, receiver: Receiver
) -> None:
    clock, store = clock_and_store
    agent = Agent(store, clock)
    alerter = alerter_for(store, clock, fake, receiver)
    assert agent.call("deploy", target="prod") == "ApprovalPending"  # waits: the queue
    clock.advance(1)  # the oldest pending request: the clock stands still otherwise
    assert agent.call("drop_table", name="users") == "ToolCallDenied"  # a high-risk denial
    assert agent.call("drop_view", name="v") == "ToolCallDenied"  # medium: no alert
    assert agent.call("list_buckets") == "ran"
    assert agent.call("download", bucket="b") == "ApprovalPending"  # a sequence hit
    assert agent.call("send_email", to="a@example.com") == "ran"
    assert agent.call("send_email", to="b@example.com") == "ToolCallDenied"  # the limit
    assert agent.call("http_get", url="https://new.example/x") == "ApprovalPending"  # novelty
    assert agent.call("dns_lookup", session="s-halt", host="h") == "ran"
    assert agent.call("open_tunnel", session="s-halt", to="h:1") == "AgentHalted"  # the halt
    try:
        clock.advance(61)  # the deploy has now waited longer than queue_age
        first = alerter.check()
        clock.advance(3)  # a halt's events are gathered for 2 s before it is sent
        second = alerter.check()
        assert alerter.flush(30)
        assert sorted(a.kind for a in first) == ["denial", "limit", "novelty", "queue", "sequence"]
        assert [a.kind for a in second] == ["halt"]
        assert alerter.check() == []  # nothing twice

        messages = posted(fake)
        assert len(messages) == 6 and all(m["channel"] == CHANNEL for m in messages)
        assert kinds_posted(receiver) == ["denial", "halt", "limit", "novelty", "queue", "sequence"]
        for headers, body in receiver.received:
            assert headers["x-gatekeeper-event"] == "alert" and verifies(SECRET, headers, body)
        for message in messages:  # each links to the console
            (button,) = next(b for b in message["blocks"] if b["type"] == "actions")["elements"]
            assert button["url"].startswith(CONSOLE + "/")
        by_kind = {d["kind"]: d for d in receiver.docs()}
        assert by_kind["denial"]["rule"] == "no-drop" and by_kind["denial"]["risk"] == "high"
        assert by_kind["sequence"]["rule"] == "recon-then-download"
        assert by_kind["sequence"]["steps"][0].startswith("list_buckets at ")
        assert by_kind["limit"]["rule"] == "mail-rate" and by_kind["limit"]["verdict"] == "deny"
        assert by_kind["novelty"]["rule"] == "new-hosts"
        assert by_kind["novelty"]["console_url"].startswith(f"{CONSOLE}/requests/")
        assert by_kind["queue"]["tool"] == "deploy" and by_kind["queue"]["waited_seconds"] >= 60
        assert by_kind["halt"]["halt"] == {
            "scope": "session",
            "target": "s-halt",
            "by": "policy:tunnel",
        }
        assert by_kind["halt"]["console_url"] == f"{CONSOLE}/agents"
        assert "users" not in json.dumps(receiver.docs())  # no arguments, ever
    finally:
        alerter.close()


def test_a_looping_agent_making_ten_thousand_denied_calls_gets_two_messages(
    clock_and_store: tuple[ManualClock, Store], fake: FakeSlack, receiver: Receiver
) -> None:
    """Two alerters (two console processes) on one store: one message, then one summary."""
    clock, store = clock_and_store
    agent = Agent(store, clock)
    drop = agent.gate.tool("drop_table", lambda **_: "ran")
    if isinstance(store, MemoryStore):
        stores = [store, store]
    else:  # another process: its own connections, the same Redis and prefix
        assert isinstance(store, RedisStore)
        stores = [store, RedisStore(store.url, prefix=store.keys.prefix, clock=clock)]
    alerters = [alerter_for(s, clock, fake, receiver) for s in stores]
    try:
        with agent.gate.session(agent="looper", session_id="loop"):
            for i in range(10_000):
                with pytest.raises(ToolCallDenied):
                    drop({"name": f"t{i}"})
                if i % 2_500 == 0:  # the consoles read along as the loop runs
                    for alerter in alerters:
                        alerter.check()
        for alerter in alerters:
            alerter.check()
        clock.advance(600 + 10)  # the window ends
        for alerter in alerters:
            alerter.check()
        for alerter in alerters:
            assert alerter.flush(30)
        messages = posted(fake)
        assert len(messages) == 2 and len(receiver.received) == 2
        first, summary = receiver.docs()
        assert (first["kind"], first["summary"], first["agent"]) == ("denial", False, "looper")
        assert (summary["summary"], summary["suppressed"]) == (True, 9_999)
        assert messages[1]["text"].startswith(
            "\U0001f501 9,999 more denials of high-risk calls like this in 10 min"
        )
    finally:
        for alerter in alerters:
            alerter.close()
        if stores[1] is not store:
            stores[1].close()


def test_a_restarted_alerter_sends_the_last_windows_alerts_once_and_nothing_older(
    clock_and_store: tuple[ManualClock, Store], fake: FakeSlack, receiver: Receiver
) -> None:
    clock, store = clock_and_store
    agent = Agent(store, clock)
    with agent.gate.session(agent="old"):
        assert agent.call("drop_table", name="a") == "ToolCallDenied"
    clock.advance(3600)  # an hour later, no alerter was running
    assert agent.call("drop_table", name="b") == "ToolCallDenied"
    clock.advance(30)
    for _ in range(2):  # started, then restarted
        alerter = alerter_for(store, clock, fake, receiver)
        alerter.check()
        assert alerter.flush(30)
        alerter.close()
    assert [(d["kind"], d["agent"]) for d in receiver.docs()] == [("denial", "trainer")]


def test_hostile_names_reach_slack_escaped(fake: FakeSlack, receiver: Receiver) -> None:
    clock = ManualClock()
    store = MemoryStore(clock=clock)
    gate = Gatekeeper(policy=Policy.from_yaml(POLICY), store=store, clock=clock)
    drop = gate.tool("drop_table", lambda **_: "ran")
    hostile = "<!channel> *urgent* <https://evil.example|approve>\n:white_check_mark: ok"
    with gate.session(agent=hostile, session_id=hostile), pytest.raises(ToolCallDenied):
        drop({"name": "users"})
    alerter = alerter_for(store, clock, fake, receiver)
    try:
        alerter.check()
        assert alerter.flush(30)
    finally:
        alerter.close()
    (message,) = posted(fake)
    everything = json.dumps(message)
    assert "<!channel>" not in everything and "<https://evil" not in everything
    assert message["text"] == (
        "\u26d4 High-risk call denied by policy: "
        "`&lt;!channel&gt; *urgent* &lt;https://evil.example|approve&gt;"
        "&lt;U+000A&gt;:white_check_mark: ok`"
    )
    fields = next(b for b in message["blocks"] if b["type"] == "section")["fields"]
    assert fields[0]["text"].startswith("Agent: &lt;!channel&gt; *urgent*")
    assert all(f["type"] == "plain_text" and f["emoji"] is False for f in fields)
    (doc,) = receiver.docs()
    assert doc["agent"] == hostile.replace("\n", "<U+000A>")  # JSON, visible, one line


def test_slack_down_and_a_webhook_answering_500_lose_nothing_and_break_nothing(
    fake: FakeSlack, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    clock = ManualClock()
    store = MemoryStore(clock=clock)
    agent = Agent(store, clock)
    alerter = alerter_for(store, clock, fake, receiver)
    fake.fail("chat.postMessage", status=503, retry_after=None, times=3)
    receiver.script = [(500, {})] * 3
    try:
        with caplog.at_level(logging.INFO, logger="gatekeeper.alerts"):
            assert agent.call("drop_table", name="users") == "ToolCallDenied"
            assert [a.kind for a in alerter.check()] == ["denial"]
            assert alerter.flush(30)
        # Each target tried a bounded number of times (3), then said so in the log.
        assert len(fake.calls_to("chat.postMessage")) == 3 and len(receiver.received) == 3
        failed = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert any("could not be sent to slack" in m for m in failed), failed
        assert any("could not be sent to webhook:oncall" in m for m in failed), failed
        assert [(o.sent, o.failed) for o in alerter.outboxes] == [(0, 1), (0, 1)]
        # The log is whole, and the next alert goes out once both are back.
        assert agent.gate.verify_audit().ok
        assert agent.call("send_email", to="a@example.com") == "ran"
        assert agent.call("send_email", to="b@example.com") == "ToolCallDenied"
        assert [a.kind for a in alerter.check()] == ["limit"]
        assert alerter.flush(30)
        assert [m["text"] for m in posted(fake)] == [
            "\U0001f4c8 Limit exceeded: the call was denied: `trainer`"
        ]
        assert kinds_posted(receiver) == ["denial", "denial", "denial", "limit"]
    finally:
        alerter.close()


def test_a_store_that_fails_mid_check_does_not_stop_the_loop(
    fake: FakeSlack, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    """The loop logs a failed check and goes on from the last event it read."""
    clock = ManualClock()
    store = MemoryStore(clock=clock)
    agent = Agent(store, clock)
    alerter = alerter_for(store, clock, fake, receiver, every=0.01)
    real, failures = store.audit_entries, [ConnectionError("the store went away")]

    def flaky(*, after: str | None = None) -> Any:
        if failures:
            raise failures.pop()
        return real(after=after)

    store.audit_entries = flaky  # type: ignore[method-assign]
    assert agent.call("drop_table", name="users") == "ToolCallDenied"
    stop = threading.Event()
    loop = threading.Thread(target=alerter.follow, args=(stop,))
    with caplog.at_level(logging.ERROR, logger="gatekeeper.alerts"):
        loop.start()
        try:
            receiver.wait_for(1, timeout=10)
        finally:
            stop.set()
            loop.join(10)
    assert "checking failed" in caplog.text and "the store went away" in caplog.text
    assert [d["kind"] for d in receiver.docs()] == ["denial"]
    alerter.close()


def test_gatekeeper_serve_runs_the_alerter_while_it_serves() -> None:
    """The console app's lifespan runs the loop beside the sweep, and closes it after."""
    store = MemoryStore()
    gate = Gatekeeper(policy=Policy.from_yaml(POLICY), store=store)
    seen = RecordingAlerts()
    alerter = Alerter(store, [seen], console_url=CONSOLE, every=0.02)
    app = create_app(gate, WebSettings(secret_key="k" * 40, base_url=CONSOLE), alerts=alerter)
    drop = gate.tool("drop_table", lambda **_: "ran")
    with TestClient(app):
        with pytest.raises(ToolCallDenied):
            drop({"name": "users"})
        (alert,) = seen.wait_for(1)
    assert (alert.kind, alert.link) == ("denial", f"{CONSOLE}/audit?before=2")
    assert all(o._closed for o in alerter.outboxes)


# -- the config and `gatekeeper alerts` -----------------------------------------------------------
def write_config(tmp_path: Path, server: RedisServer, prefix: str, alerts: str) -> Path:
    config = tmp_path / "gatekeeper.yaml"
    policy = "\n".join("  " + line for line in POLICY.strip().splitlines())
    config.write_text(
        f"version: 1\nstore: {{url: '{server.url}', prefix: {prefix}}}\n"
        f"web: {{secret_key: '{'k' * 40}', base_url: '{CONSOLE}'}}\n"
        f"{alerts}\npolicy:\n{policy}\n"
    )
    return config


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_gatekeeper_alerts_once_as_the_docs_show_it(
    tmp_path: Path,
    redis_server: RedisServer,
    redis_prefix: str,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """docs/alerts.md's `gatekeeper alerts --once`, twice: what is new is sent, once."""
    alerts = f"alerts:\n  webhooks: [{{url: '{receiver.url}', secret_env: ALERTS_SECRET}}]"
    write_config(tmp_path, redis_server, redis_prefix, alerts)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GATEKEEPER_CONFIG", raising=False)
    monkeypatch.delenv("GATEKEEPER_REDIS_URL", raising=False)
    monkeypatch.delenv("ALERTS_SECRET", raising=False)
    gate = Gatekeeper.from_config()  # an agent: it needs no alert secret, only the file
    drop = gate.tool("drop_table", lambda **_: "ran")
    with gate.session(agent="billing-bot"), pytest.raises(ToolCallDenied):
        drop({"name": "users"})
    gate.close()

    monkeypatch.setenv("ALERTS_SECRET", SECRET)  # the process that sends alerts has it
    shown = shown_commands(ROOT / "docs" / "alerts.md")
    assert [s.argv for s in shown] == [("alerts", "--once")] * 2
    matcher = Matcher()
    for command in shown:
        code, out, err = run_cli(*command.argv)
        assert (code, err) == (0, "")
        matcher.check(command, out)
    (doc,) = receiver.docs()
    assert doc["console_url"].startswith(f"{CONSOLE}/audit?before=")


def test_gatekeeper_alerts_refuses_without_a_section_or_a_secret(
    tmp_path: Path, redis_server: RedisServer, redis_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write_config(tmp_path, redis_server, redis_prefix, "")
    code, _, err = run_cli("alerts", "--once", "--config", str(config))
    assert code == 1 and "no 'alerts:' section" in err

    hooks = "alerts:\n  webhooks: [{url: 'https://h.example/a', secret_env: ALERTS_SECRET}]"
    config = write_config(tmp_path, redis_server, redis_prefix, hooks)
    monkeypatch.delenv("ALERTS_SECRET", raising=False)
    with pytest.raises(ConfigError, match=r"alerts.webhooks\[0\].secret_env: environment "):
        load_config(config).alerter(Gatekeeper(store=MemoryStore()))
    monkeypatch.setenv("ALERTS_SECRET", "short")
    with pytest.raises(ConfigError, match="at least 16 characters"):
        load_config(config).alerter(Gatekeeper(store=MemoryStore()))

    slack = "alerts:\n  slack: {channel: C0ALERTS, bot_token_env: NO_SUCH_TOKEN}"
    config = write_config(tmp_path, redis_server, redis_prefix, slack)
    monkeypatch.delenv("NO_SUCH_TOKEN", raising=False)
    with pytest.raises(ConfigError, match=r"alerts.slack.bot_token_env: environment variable"):
        load_config(config).alerter(Gatekeeper(store=MemoryStore()))
