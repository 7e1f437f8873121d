"""Every surface tells the approver when a decision is not yet durable (``store.durability``).

One redis-server with no replica and ``replicas: 1``: every decision is
recorded on the primary and never reaches a replica, so the CLI, the web
console (form and JSON API), Slack and the terminal console must each say
so — and the approved call must not run.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest

from gatekeeper import Gatekeeper, Policy, RequestStatus
from gatekeeper._clock import SystemClock
from gatekeeper._errors import GatekeeperError
from gatekeeper.channels.console import ConsoleChannel
from gatekeeper.cli import main
from gatekeeper.store import Durability, RedisStore
from gatekeeper.testing import ManualClock
from gatekeeper.web._auth import new_session
from tests.conftest import RedisServer
from tests.integration.test_cli import CONFIG, Agent
from tests.integration.test_slack import ACTION_APPROVE, POLICY, Rig, eventually
from tests.integration.test_web_pages import digest_on
from tests.slackkit import FakeSlack
from tests.storekit import held_event, make_request
from tests.webkit import Console, TestClient, bearer

pytestmark = pytest.mark.redis

NOT_DURABLE = "Not yet durable"


@pytest.fixture
def store(redis_server: RedisServer, redis_prefix: str) -> Iterator[RedisStore]:
    made = RedisStore(
        redis_server.url, prefix=redis_prefix, durability=Durability(replicas=1, timeout=0.2)
    )
    yield made
    made.close()


def test_the_cli_warns_that_an_approval_and_a_denial_are_not_yet_durable(
    tmp_path: Path, redis_server: RedisServer, redis_prefix: str
) -> None:
    config = tmp_path / "gatekeeper.yaml"
    text = CONFIG.format(url=redis_server.url, prefix=redis_prefix)
    text = text.replace(
        f"prefix: {redis_prefix}}}",
        f"prefix: {redis_prefix}, durability: {{replicas: 1, timeout: 200ms}}}}",
    )
    config.write_text(text.replace("timeout: 30s", "timeout: 3s"))
    agent = Agent(config)
    try:
        thread = agent.call(lambda: agent.refund("A-1", 20.0))
        req = agent.channel.wait_for_request()
        out, err = io.StringIO(), io.StringIO()
        argv = ["--config", str(config), "approve", req.id, "--as", "alice", "-m", "ok"]
        assert main(argv, stdout=out, stderr=err, stdin=io.StringIO()) == 0, err.getvalue()
        said = out.getvalue()
        assert "runs once a Redis replica has the approval" in said
        assert f"warning: {NOT_DURABLE}: the approval of {req.id}" in said
        assert "not yet on 1 replica(s), so a failover now could lose it" in said
        thread.join(15)
        assert agent.ran == []  # never on a replica: never run
        assert agent.gate.get(req.id).status is not RequestStatus.EXECUTED

        thread = agent.call(lambda: agent.refund("A-2", 20.0))
        second = agent.channel.wait_for_request(2)
        out = io.StringIO()
        argv = ["--config", str(config), "deny", second.id, "--as", "alice", "-m", "no"]
        assert main(argv, stdout=out, stderr=err, stdin=io.StringIO()) == 0, err.getvalue()
        assert "denied by alice" in out.getvalue()
        assert f"warning: {NOT_DURABLE}: the decision on {second.id}" in out.getvalue()
        thread.join(15)
    finally:
        agent.gate.close()


def _held(store: RedisStore, agent: str = "billing-bot") -> str:
    """A pending request of ``agent``, held straight through the store (no agent waits)."""
    req = make_request(SystemClock(), agent=agent, tool="note", args={"text": "hi"})
    store.hold(req, held_event(req))
    return req.id


def test_the_web_console_says_so_on_the_page_and_in_the_api(store: RedisStore) -> None:
    console = Console(store)
    try:
        with TestClient(console.app) as client:
            value, session = new_session(console.settings, "alice")
            client.cookies.set("gk_session", value)
            rid = _held(store)
            page = client.get(f"/requests/{rid}").text
            after = client.post(  # redirected to the request's page, with the flash on it
                f"/requests/{rid}/approve",
                data={"csrf": session.csrf, "digest": digest_on(page)},
            ).text
            assert "runs once a Redis replica has the approval" in after
            assert NOT_DURABLE in after and "a failover now could lose it" in after

            rid = _held(store)
            response = client.post(
                f"/api/v1/requests/{rid}/approve", json={}, headers=bearer("tok-carol")
            )
            assert response.status_code == 200, response.text
            body = response.json()
            assert (body["status"], body["durable"], body["awaiting_replicas"]) == (
                "approved",
                False,
                1,
            )
    finally:
        console.gate.close()


def test_slack_tells_the_approver_privately(store: RedisStore) -> None:
    short = POLICY.replace("escalate_after: 60}", "escalate_after: 60, timeout: 3}")
    with FakeSlack() as fake:
        rig = Rig(store, ManualClock(), fake, policy=short)
        try:
            agent = rig.call("refund", order_id="A-1", amount=5.0)
            assert rig.click("U0ALICE", ACTION_APPROVE, agent.request).status_code == 200
            told = eventually(
                lambda: [e for e in fake.ephemerals if NOT_DURABLE in (e.text or "")],
                what="the approver to be told",
            )
            assert told[0].user == "U0ALICE"
            assert "a failover now could lose it" in (told[0].text or "")
            agent.join(15)
            assert rig.ran == []
        finally:
            rig.close()
            rig.gate.close()


def test_the_terminal_console_says_so(store: RedisStore) -> None:
    out = io.StringIO()
    channel = ConsoleChannel("alice", stdin=io.StringIO("y\n\n"), stdout=out)
    gate = Gatekeeper(policy=Policy.empty(), store=store, channels=[channel], default_timeout=2)
    ran: list[str] = []

    @gate.guard
    def deploy(version: str) -> str:
        ran.append(version)
        return "deployed"

    try:
        with pytest.raises(GatekeeperError), gate.session(agent="billing-bot"):
            deploy("v2")  # approved at the terminal, never on a replica: not run
        assert f"Warning: {NOT_DURABLE}: the approval of" in out.getvalue()
        assert ran == []
    finally:
        gate.close()
