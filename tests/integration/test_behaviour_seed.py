"""The seed's scenario, end to end: an agent tunnels out one harmless-looking call at a time.

Two agent processes (real ``python -c`` processes with the agent's gate from
a gatekeeper.yaml on a real Redis) share one session. One looks up a host,
the other opens a tunnel, the first then sends a request to an outside host.
Each call alone is allowed; the sequence ``dns_lookup -> open_tunnel ->
http_request`` within 10 minutes is a halt. The third call must be halted
before it runs, the halt must cancel the session's pending requests, and the
approver must see why: the sequence and the earlier calls that made it. A
real ``gatekeeper serve`` on the same config sends the alert: one Slack
message (to the local stand-in) and one signed webhook delivery.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gatekeeper import Gatekeeper
from gatekeeper.audit import parse_event
from gatekeeper.models import RequestStatus
from tests.conftest import RedisServer, _free_port
from tests.hookkit import Receiver, verifies
from tests.slackkit import FakeSlack

ALERTS_SECRET = "seed-alerts-" + "k" * 24
CONSOLE = "https://gatekeeper.example"

CONFIG = """\
version: 1
store: {{url: "{url}", prefix: {prefix}}}
approvers:
  - {{name: alice}}
defaults: {{timeout: 60s, agent: trainer}}
policy:
  version: 1
  default: allow
  rules:
    - id: deploys-need-a-person
      match: {{tool: deploy}}
      verdict: require_approval
  sequences:
    - id: tunnel-exfiltration
      steps:
        - {{tool: dns_lookup}}
        - {{tool: open_tunnel}}
        - {{tool: http_request, args: {{url: {{host_not_in: [api.internal.example]}}}}}}
      within: 10m
      per: session
      verdict: halt
      reason: looks like data leaving through a tunnel
"""

# What `gatekeeper serve` adds to the same file: the console, and where alerts go.
SERVED = """\
web: {{secret_key: "{web_secret}", base_url: "{console}"}}
alerts:
  slack: {{channel: C0ALERTS, base_url: "{slack_url}"}}
  webhooks:
    - {{url: "{hook_url}", secret_env: SEED_ALERTS_SECRET, name: oncall}}
  every: 0.1
"""

AGENT = textwrap.dedent(
    """
    import json, sys
    from gatekeeper import Gatekeeper
    config, ledger, session, tool, arg = sys.argv[1:6]
    gate = Gatekeeper.from_config(config)

    def ran(line):
        with open(ledger, "a") as f:
            f.write(line + "\\n")
        return "done"

    @gate.guard
    def dns_lookup(host: str) -> str:
        return ran("dns_lookup " + host)

    @gate.guard
    def open_tunnel(endpoint: str) -> str:
        return ran("open_tunnel " + endpoint)

    @gate.guard
    def http_request(url: str) -> str:
        return ran("http_request " + url)

    @gate.guard
    def deploy(target: str) -> str:
        return ran("deploy " + target)

    fn = globals()[tool]
    try:
        with gate.session(session_id=session):
            print(json.dumps({"result": fn(arg)}), flush=True)
    except Exception as exc:
        print(json.dumps({"error": type(exc).__name__, "message": str(exc)}), flush=True)
    """
)


@pytest.fixture
def setup(tmp_path: Path, redis_server: RedisServer, redis_prefix: str) -> tuple[Path, Path]:
    config = tmp_path / "gatekeeper.yaml"
    config.write_text(CONFIG.format(url=redis_server.url, prefix=redis_prefix))
    return config, tmp_path / "ledger"


@pytest.fixture
def served(setup: tuple[Path, Path]) -> Iterator[tuple[FakeSlack, Receiver]]:
    """A real `gatekeeper serve` on the agents' config, alerting Slack and a webhook."""
    config, _ = setup
    fake, receiver = FakeSlack().start(), Receiver()
    config.write_text(
        config.read_text()
        + SERVED.format(
            web_secret="w" * 40, console=CONSOLE, slack_url=fake.base_url, hook_url=receiver.url
        )
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(sys.path),
        "SLACK_BOT_TOKEN": fake.bot_token,
        "SEED_ALERTS_SECRET": ALERTS_SECRET,
    }
    argv = ["serve", "--config", str(config), "--port", str(_free_port())]
    with subprocess.Popen(
        [sys.executable, "-m", "gatekeeper.cli", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    ) as serve:
        try:
            assert serve.stdout is not None
            assert serve.stdout.readline().startswith("gatekeeper console on")
            yield fake, receiver
        finally:
            serve.terminate()
            serve.wait(15)
            receiver.stop()
            fake.stop()


def agent(config: Path, ledger: Path, session: str, tool: str, arg: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", AGENT, str(config), str(ledger), session, tool, arg],
        stdout=subprocess.PIPE,
        text=True,
    )


def answer(proc: subprocess.Popen[str]) -> dict[str, str]:
    out, _ = proc.communicate(timeout=60)
    answer: dict[str, str] = json.loads(out.strip().splitlines()[-1])
    return answer


def test_two_processes_of_one_session_are_halted_before_the_third_step_runs(
    setup: tuple[Path, Path], served: tuple[FakeSlack, Receiver]
) -> None:
    config, ledger = setup
    fake, receiver = served
    gate = Gatekeeper.from_config(config)  # the approver's side
    session = "run-42"
    # A deploy waits for a person in the same session: the halt must cancel it.
    waiting = agent(config, ledger, session, "deploy", "prod")
    deadline = time.monotonic() + 30
    while not gate.pending():
        assert time.monotonic() < deadline, "the deploy was never held"
        time.sleep(0.05)
    (deploy,) = gate.pending()

    assert answer(agent(config, ledger, session, "dns_lookup", "c2.example.net")) == {
        "result": "done"
    }
    assert answer(agent(config, ledger, session, "open_tunnel", "c2.example.net:443")) == {
        "result": "done"
    }
    third = answer(agent(config, ledger, session, "http_request", "https://c2.example.net/up"))

    assert third["error"] == "AgentHalted"
    assert "tunnel-exfiltration" in third["message"]
    assert "dns_lookup → open_tunnel" in third["message"]
    ran = ledger.read_text().splitlines()
    assert ran == ["dns_lookup c2.example.net", "open_tunnel c2.example.net:443"]

    # The session is halted: its waiting deploy was cancelled and never ran.
    assert answer(waiting)["error"] == "AgentHalted"
    assert gate.get(deploy.id).status is RequestStatus.CANCELLED
    assert [h.target for h in gate.store.halts()] == [session]
    # ... and the next call in that session is refused at once.
    again = answer(agent(config, ledger, session, "dns_lookup", "example.org"))
    assert again["error"] == "AgentHalted"
    assert ledger.read_text().splitlines() == ran

    # The audit log says why, with the earlier calls that matched the steps.
    gate.store.flush()
    events = [parse_event(e.body, e.hash) for e in gate.store.audit_entries()]
    (denied,) = [e for e in events if e.kind == "call.denied" and e.tool == "http_request"]
    (hit,) = denied.data["behaviour"]
    assert hit["id"] == "tunnel-exfiltration"
    assert [c["tool"] for c in hit["calls"]] == ["dns_lookup", "open_tunnel"]

    # The console's alert loop told the people on call, once, in Slack and by webhook.
    (posted,) = fake.wait_for("chat.postMessage", 1, timeout=20)
    assert posted.args["channel"] == "C0ALERTS"
    assert posted.args["text"] == "\U0001f6d1 Session halted by policy: `run-42`"
    blocks = {b["block_id"]: b for b in posted.args["blocks"]}
    fields = [f["text"] for f in blocks["gk_alert_fields"]["fields"]]
    assert "Halted: session run-42" in fields
    assert "Rule: tunnel-exfiltration" in fields
    assert "Cancelled: 1 pending request(s)" in fields
    steps = json.dumps(blocks["gk_alert_steps"])
    assert steps.index("dns_lookup at") < steps.index("open_tunnel at")
    (button,) = blocks["gk_alert_actions"]["elements"]
    assert button["url"] == f"{CONSOLE}/agents"
    ((headers, body),) = receiver.wait_for(1, timeout=20)
    assert headers["x-gatekeeper-event"] == "alert"
    assert verifies(ALERTS_SECRET, headers, body)
    alert = json.loads(body)
    assert (alert["kind"], alert["rule"], alert["cancelled"]) == ("halt", "tunnel-exfiltration", 1)
    assert alert["halt"] == {
        "scope": "session",
        "target": "run-42",
        "by": "policy:tunnel-exfiltration",
    }
    assert alert["tool"] == "http_request"
    assert alert["console_url"] == f"{CONSOLE}/agents"
    assert "c2.example.net" not in body.decode()  # never the call's arguments
    assert len(fake.calls_to("chat.postMessage")) == len(receiver.received) == 1


def test_another_session_of_the_same_agent_is_not_caught(setup: tuple[Path, Path]) -> None:
    config, ledger = setup
    assert answer(agent(config, ledger, "a", "dns_lookup", "h"))["result"] == "done"
    assert answer(agent(config, ledger, "b", "open_tunnel", "h:1"))["result"] == "done"
    assert answer(agent(config, ledger, "a", "http_request", "https://h/x"))["result"] == "done"


def test_an_allowlisted_host_is_not_the_third_step(setup: tuple[Path, Path]) -> None:
    config, ledger = setup
    for tool, arg in (
        ("dns_lookup", "h"),
        ("open_tunnel", "h:1"),
        ("http_request", "https://api.internal.example/x"),
    ):
        assert answer(agent(config, ledger, "s", tool, arg))["result"] == "done"
