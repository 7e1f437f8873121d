"""Novelty: the first time an agent does something new, a person looks.

A real gate on MemoryStore, RedisStore, and RedisStore split by role under
the shipped ACL users (the agent's scripts write what it has done as its own
Redis user). The agent is a thread; a person approves or denies from the gate.
Shown: a new host is held; approved, it runs and is known from then on (the
same host passes at once, for that agent only); denied, it stays new; a URL
whose host can't be told is never known; `gatekeeper known` lists what is
known and `gatekeeper forget` makes it new again, audited.
"""

from __future__ import annotations

import io
import threading
from typing import Any

import pytest

from gatekeeper import ApprovalDenied, Gatekeeper, Policy
from gatekeeper.audit import parse_event
from gatekeeper.cli import _commands as cmd
from gatekeeper.models import ApprovalRequest
from gatekeeper.store import Store
from gatekeeper.testing import RecordingChannel
from tests.webkit import APPROVERS

POLICY = """
version: 1
default: allow
novelty:
  - id: new-hosts
    match: {tool: http_get}
    new: host(args.url)
    reason: a host this agent never reached
  - id: new-deploy-tools
    match: {tool: "deploy_*"}
    new: tool
"""


class Agent:
    def __init__(self, store: Store) -> None:
        self.channel = RecordingChannel()
        self.gate = Gatekeeper(
            policy=Policy.from_yaml(POLICY),
            store=store,
            approvers=APPROVERS,
            channels=[self.channel],
            default_timeout=30,
        )
        self.ran: list[str] = []
        ran = self.ran

        @self.gate.guard
        def http_get(url: str) -> str:
            ran.append(url)
            return "200"

        @self.gate.guard
        def deploy_app(env: str) -> str:
            ran.append(f"deploy {env}")
            return "deployed"

        self.http_get, self.deploy_app = http_get, deploy_app

    def at_once(self, url: str, agent: str = "crawler") -> Any:
        with self.gate.session(agent=agent):
            return self.http_get(url)

    def held(
        self, url: str, agent: str = "crawler"
    ) -> tuple[threading.Thread, list[Any], ApprovalRequest]:
        seen = len(self.channel.notified)
        box: list[Any] = []

        def run() -> None:
            try:
                with self.gate.session(agent=agent):
                    box.append(self.http_get(url))
            except Exception as exc:
                box.append(exc)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread, box, self.channel.wait_for_request(seen + 1)


@pytest.fixture
def agent(store: Store) -> Agent:
    return Agent(store)  # the store fixture closes the store


def cli_out(fn: Any, *args: Any, **kwargs: Any) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = fn(*args, io=cmd.IO(out=out, err=err, inp=io.StringIO()), **kwargs)
    return code, out.getvalue(), err.getvalue()


def test_a_new_host_waits_once_then_is_known_for_that_agent(agent: Agent) -> None:
    thread, box, req = agent.held("https://api.partner.example/v1/orders")
    (hit,) = req.classification.behaviour
    assert (hit.kind, hit.id) == ("novelty", "new-hosts")
    assert 'host "api.partner.example"' in req.classification.reasons[0]
    assert "a host this agent never reached" in req.classification.reasons[0]
    assert agent.ran == []
    agent.gate.approve(req.id, approver="alice")
    thread.join(10)
    assert box == ["200"]

    # Known now: the same host, another path, passes at once; the host is the key.
    assert agent.at_once("https://API.partner.example./v1/refunds") == "200"
    # ... for this agent only.
    thread, box, other = agent.held("https://api.partner.example/", agent="other-bot")
    agent.gate.deny(other.id, approver="alice", comment="not you")
    thread.join(10)
    assert isinstance(box[0], ApprovalDenied)

    code, out, _ = cli_out(cmd.known, agent.gate, agent=None, as_json=False)
    assert code == 0
    rows = out.splitlines()[1:]
    assert len(rows) == 1 and rows[0].split()[:2] == ["crawler", "new-hosts"]
    assert rows[0].endswith('host "api.partner.example"')


def test_a_denied_host_stays_new_and_an_unparsable_one_is_never_known(agent: Agent) -> None:
    for _ in range(2):
        thread, box, req = agent.held("https://evil.example/exfil")
        agent.gate.deny(req.id, approver="alice", comment="no")
        thread.join(10)
        assert isinstance(box[0], ApprovalDenied)
    sneaky = "https://exa%6dple.com/x"  # a percent-escape in the host: parsers disagree
    for _ in range(2):
        thread, box, req = agent.held(sneaky)
        assert "no host that can be told for sure" in req.classification.reasons[0]
        agent.gate.approve(req.id, approver="alice")
        thread.join(10)
        assert box == ["200"]
    assert agent.ran == [sneaky, sneaky]
    assert cli_out(cmd.known, agent.gate, agent="crawler", as_json=False)[1].startswith(
        "nothing is known yet"
    )


def test_forget_makes_it_new_again_and_is_audited(agent: Agent) -> None:
    thread, _, req = agent.held("https://a.example/")
    agent.gate.approve(req.id, approver="alice")
    thread.join(10)
    assert agent.at_once("https://a.example/again") == "200"

    code, _, err = cli_out(
        cmd.forget, agent.gate, "new-hosts", "zzzz", agent="crawler", approver="alice"
    )
    assert code == 1 and "nothing known" in err
    code, out, _ = cli_out(
        cmd.forget, agent.gate, "new-hosts", '"a.example"', agent="crawler", approver="alice"
    )
    assert code == 1  # the value as shown is `host "a.example"`, not the bare JSON
    (line,) = cli_out(cmd.known, agent.gate, agent="crawler", as_json=False)[1].splitlines()[1:]
    ident = line.split()[2]
    code, out, _ = cli_out(
        cmd.forget, agent.gate, "new-hosts", ident, agent="crawler", approver="alice"
    )
    assert code == 0 and "its next such call asks a person" in out

    thread, _, again = agent.held("https://a.example/third")
    assert again.classification.behaviour[0].id == "new-hosts"
    agent.gate.deny(again.id, approver="alice", comment="no")
    thread.join(10)

    agent.gate.store.flush()
    kinds = [parse_event(e.body, e.hash) for e in agent.gate.store.audit_entries()]
    (forgot,) = [e for e in kinds if e.kind == "novelty.forgotten"]
    assert forgot.actor == "alice" and forgot.data["agent"] == "crawler"


def test_a_new_tool_waits_for_its_first_call(agent: Agent) -> None:
    seen = len(agent.channel.notified)
    box: list[Any] = []
    thread = threading.Thread(target=lambda: box.append(agent.deploy_app("staging")), daemon=True)
    thread.start()
    req = agent.channel.wait_for_request(seen + 1)
    assert req.classification.behaviour[0].id == "new-deploy-tools"
    assert 'tool "deploy_app"' in req.classification.reasons[0]
    agent.gate.approve(req.id, approver="alice")
    thread.join(10)
    assert box == ["deployed"]
    assert agent.deploy_app("prod") == "deployed"  # known: no person asked
    assert agent.ran == ["deploy staging", "deploy prod"]


def test_what_runs_is_what_becomes_known_when_the_approver_edits(store: Store) -> None:
    gate = Gatekeeper(
        policy=Policy.from_yaml(
            "version: 1\ndefault: allow\nnovelty:\n"
            "  - {id: new-recipients, match: {tool: send_email}, new: args.to}\n"
        ),
        store=store,
        approvers=APPROVERS,
        channels=[channel := RecordingChannel()],
        default_timeout=30,
    )
    sent: list[str] = []

    @gate.guard
    def send_email(to: str) -> str:
        sent.append(to)
        return "sent"

    box: list[Any] = []
    thread = threading.Thread(target=_into, args=(box, send_email, "attacker@evil.example"))
    thread.start()
    req = channel.wait_for_request(1)
    gate.approve(req.id, approver="alice", args={"to": "boss@corp.example"})
    thread.join(10)
    assert sent == ["boss@corp.example"]
    values = [entry["s"] for _, _, _, entry in gate.store.known_values()]
    assert values == ['args.to "boss@corp.example"']  # not the agent's own choice
    assert send_email("boss@corp.example") == "sent"  # known now: no person asked
    thread = threading.Thread(target=_into, args=(box, send_email, "attacker@evil.example"))
    thread.start()
    again = channel.wait_for_request(2)  # still new: asked again
    gate.deny(again.id, approver="alice", comment="no")
    thread.join(10)


def test_a_value_behind_an_unreadable_path_is_never_known(store: Store) -> None:
    gate = Gatekeeper(
        policy=Policy.from_yaml(
            "version: 1\ndefault: allow\nnovelty:\n"
            "  - {id: new-hosts, match: {tool: fetch}, new: host(args.request.url)}\n"
        ),
        store=store,
        approvers=APPROVERS,
        channels=[channel := RecordingChannel()],
        default_timeout=30,
    )

    @gate.guard
    def fetch(request: Any) -> str:
        return "page"

    for n, shape in enumerate(("https://evil.example/x", ["https://evil.example/x"]), start=1):
        box: list[Any] = []
        thread = threading.Thread(target=_into, args=(box, fetch, shape))
        thread.start()
        req = channel.wait_for_request(n)
        assert "can't be read" in req.classification.reasons[0]
        gate.deny(req.id, approver="alice", comment="no")
        thread.join(10)


def _into(box: list[Any], fn: Any, arg: Any) -> None:
    """Call ``fn(arg)`` in a thread; its result or error goes into ``box``."""
    try:
        box.append(fn(arg))
    except Exception as exc:
        box.append(exc)
