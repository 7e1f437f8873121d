"""Slack end to end: the real slack-sdk clients against a local stand-in for Slack.

An agent process (a gate whose SlackChannel posts) and a console process
(``gatekeeper serve``'s app with the SlackService, on a real uvicorn) share
one store; clicks arrive as Slack sends them, signed, over HTTP or Socket
Mode. Every test runs on MemoryStore and on a real redis-server.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from slack_sdk import WebClient

from gatekeeper import ApprovalDenied, Gatekeeper, Policy, ToolCallBlocked
from gatekeeper.channels.slack import SlackChannel, SlackService
from gatekeeper.channels.slack._blocks import (
    ACTION_APPROVE,
    ACTION_APPROVE_GRANT,
    ACTION_DENY,
    ACTION_DENY_COMMENT,
    ACTION_OPEN,
    ACTION_RESPOND,
    button_value,
)
from gatekeeper.channels.slack._modals import COMMENT_BLOCK, COMMENT_INPUT, DENY_MODAL
from gatekeeper.models import ApprovalRequest, Approver, RequestStatus
from gatekeeper.store import Store
from gatekeeper.testing import ManualClock, RecordingChannel
from gatekeeper.web import WebSettings, create_app
from gatekeeper.web._auth import new_session
from tests.gatekit import audit_events
from tests.slackkit import FakeSlack, block_actions, form_body, sign, view_submission
from tests.webkit import TOKENS, Agent, LiveServer, bearer

SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
CHANNEL = "C0APPROVE"
CONSOLE = "https://gatekeeper.example"

POLICY = """
version: 1
default: allow
rules:
  - {id: refunds, match: {tool: refund}, verdict: require_approval, risk: high,
     approval: {group: finance, escalate_after: 60}}
  - {id: pairs, match: {tool: wire}, verdict: require_approval, risk: critical,
     approval: {group: finance, quorum: 2}}
  - {id: huge-wire, match: {tool: wire, args: {amount: {gt: 1000000}}}, verdict: deny}
"""

APPROVERS = (
    Approver(name="alice", groups=("finance",), slack_user_id="U0ALICE"),
    Approver(name="bob", groups=("finance",), slack_user_id="U0BOB"),
    Approver(name="carol", slack_user_id="U0CAROL"),  # an approver, but not of finance
    Approver(name="sre-oncall", groups=("finance",), slack_usergroup="S0SRE"),
)


def eventually(check: Callable[[], Any], timeout: float = 5.0, what: str = "condition") -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def texts(message: dict[str, Any]) -> str:
    """Every piece of text and every mentioned id in a message, as one string."""
    found: list[str] = [str(message.get("text", ""))]

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("text"), str):
                found.append(node["text"])
            if node.get("type") == "user":
                found.append(f"@{node.get('user_id')}")
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(message.get("blocks", []))
    return "\n".join(found)


def action_ids(message: dict[str, Any]) -> list[str]:
    return [
        element.get("action_id", "")
        for block in message.get("blocks", [])
        if block.get("type") == "actions"
        for element in block.get("elements", [])
    ]


class Rig:
    """An agent process and a console process on one store, both talking to the fake Slack."""

    def __init__(
        self,
        store: Store,
        clock: ManualClock,
        fake: FakeSlack,
        *,
        http: bool = True,
        socket: bool = False,
        sweep_interval: float = 3600.0,
        real_sleep: bool = False,
        serve: bool = True,
        policy: str = POLICY,
    ) -> None:
        self.store, self.clock, self.fake = store, clock, fake
        self.sleeps: list[float] = []
        self.real_sleep = real_sleep
        self.recorder = RecordingChannel()
        self.slack = self._channel()
        self.gate = Gatekeeper(
            policy=Policy.from_yaml(policy),
            store=store,
            approvers=APPROVERS,
            channels=[self.recorder, self.slack],
        )
        self.console_gate = Gatekeeper(
            policy=Policy.from_yaml(policy), store=store, approvers=APPROVERS
        )
        self.service = SlackService(
            self.console_gate,
            self._channel(),
            signing_secret=SIGNING_SECRET if http else None,
            app_token=fake.app_token if socket else None,
            team_id="T0001",
            sweep_interval=sweep_interval,
        )
        self.settings = WebSettings(secret_key="k" * 40, api_tokens=tuple(TOKENS.values()))
        self.app = create_app(self.console_gate, self.settings, slack=self.service)
        self.server: Any = LiveServer(self.app) if serve else None
        self.ran: list[tuple[str, dict[str, Any]]] = []

        @self.gate.guard
        def refund(order_id: str, amount: float) -> str:
            self.ran.append(("refund", {"order_id": order_id, "amount": amount}))
            return f"refunded {amount} on {order_id}"

        @self.gate.guard
        def wire(to: str, amount: float) -> str:
            self.ran.append(("wire", {"to": to, "amount": amount}))
            return "sent"

        self.tools = {"refund": refund, "wire": wire}

    def _channel(self) -> SlackChannel:
        client = WebClient(token=self.fake.bot_token, base_url=self.fake.base_url)

        def sleep(seconds: float) -> None:
            self.sleeps.append(seconds)
            if self.real_sleep:
                time.sleep(seconds)

        return SlackChannel(client, channel=CHANNEL, console_url=CONSOLE, sleep=sleep, max_wait=30)

    def serve(self) -> None:
        """Start the console (``gatekeeper serve``) now."""
        self.server = LiveServer(self.app)

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()

    def console_page(self, request_id: str) -> str:
        """The request's page in the console, as a signed-in approver sees it."""
        value, _ = new_session(self.settings, "alice")
        response = httpx.get(
            f"{self.server.url}/requests/{request_id}", cookies={"gk_session": value}
        )
        assert response.status_code == 200, response.text
        return response.text

    # -- the agent ---------------------------------------------------------------------------
    def call(self, tool: str, **kwargs: Any) -> Agent:
        """``tool(**kwargs)`` in an agent thread; returns once the request is pending."""
        seen = len(self.recorder.notified)
        agent = Agent(self.gate, self.tools[tool], "billing-bot", kwargs)
        agent.request = self.recorder.wait_for_request(seen + 1)
        return agent

    def message(self, req: ApprovalRequest) -> tuple[str, str]:
        """(channel, ts) of the message that shows ``req``, once it is posted."""

        def posted() -> tuple[str, str] | None:
            for (channel, ts), msg in self.fake.messages.items():
                if req.id in json.dumps(msg.get("blocks", [])):
                    return channel, ts
            return None

        found: tuple[str, str] = eventually(posted, what=f"a message for {req.id}")
        return found

    def shown(self, req: ApprovalRequest) -> dict[str, Any]:
        return self.fake.messages[self.message(req)]

    def wait_shown(self, req: ApprovalRequest, *needles: str) -> dict[str, Any]:
        """Wait until the request's message contains every one of ``needles``."""

        def check() -> dict[str, Any] | None:
            msg = self.shown(req)
            return msg if all(n in texts(msg) for n in needles) else None

        found: dict[str, Any] = eventually(check, what=f"the message to show {needles}")
        return found

    # -- Slack, clicking -----------------------------------------------------------------------
    def click_payload(
        self, user: str, action: str, req: ApprovalRequest, **kw: Any
    ) -> dict[str, Any]:
        channel, ts = self.message(req)
        return block_actions(
            user_id=user,
            action_id=action,
            value=button_value(req),
            channel_id=channel,
            message_ts=ts,
            message=self.fake.messages[(channel, ts)],
            **kw,
        )

    def post(
        self, payload: dict[str, Any], *, secret: str = SIGNING_SECRET, at: int | None = None
    ) -> httpx.Response:
        body = form_body(payload)
        return self.post_raw(body, sign(body, secret, at))

    def post_raw(self, body: bytes, headers: dict[str, str]) -> httpx.Response:
        return httpx.post(
            f"{self.server.url}/slack/interactions", content=body, headers=headers, timeout=10
        )

    def click(self, user: str, action: str, req: ApprovalRequest, **kw: Any) -> httpx.Response:
        return self.post(self.click_payload(user, action, req, **kw))

    def deny_by_click(
        self, user: str, req: ApprovalRequest, reason: str, *, socket: bool = False
    ) -> None:
        """Deny as an approver does in Slack: Deny opens the reason modal, then submit it."""
        opened = len(self.fake.calls_to("views.open"))
        click = self.click_payload(user, ACTION_DENY, req, trigger_id=f"{opened}.1.deny")
        if socket:
            self.fake.wait_ack(self.fake.send_interactive(click))
        else:
            assert self.click(user, ACTION_DENY, req, trigger_id=f"{opened}.1.deny").is_success
        self.fake.wait_for("views.open", opened + 1)
        view = list(self.fake.views.values())[-1]
        submitted = view_submission(
            user_id=user,
            callback_id=DENY_MODAL,
            private_metadata=view["private_metadata"],
            values={COMMENT_BLOCK: {COMMENT_INPUT: reason}},
            view=view,
        )
        if socket:
            self.fake.wait_ack(self.fake.send_interactive(submitted))
        else:
            assert self.post(submitted).is_success


@pytest.fixture
def fake() -> Iterator[FakeSlack]:
    with FakeSlack(usergroups={"S0SRE": ["U0SRE1", "U0SRE2"]}) as running:
        yield running


@pytest.fixture
def rig(store: Store, clock: ManualClock, fake: FakeSlack) -> Iterator[Rig]:
    made = Rig(store, clock, fake)
    yield made
    made.close()


# -- deciding by click ------------------------------------------------------------------------


def test_an_approve_click_runs_the_tool_and_the_message_says_who(rig: Rig) -> None:
    agent = rig.call("refund", order_id="A-1", amount=5.0)
    posted = rig.shown(agent.request)
    assert action_ids(posted) == [
        ACTION_APPROVE,
        ACTION_APPROVE_GRANT,  # the request can carry a standing approval
        ACTION_DENY,
        ACTION_RESPOND,
        ACTION_OPEN,
    ]

    started = time.monotonic()
    response = rig.click("U0ALICE", ACTION_APPROVE, agent.request)
    assert response.status_code == 200
    assert time.monotonic() - started < 1.0  # acknowledged at once

    assert agent.outcome() == "refunded 5.0 on A-1"
    assert rig.ran == [("refund", {"order_id": "A-1", "amount": 5.0})]
    req = rig.gate.get(agent.request.id)
    assert req.decided_by == "alice"
    assert req.decisions[0].via == "slack:U0ALICE"
    final = rig.wait_shown(agent.request, "Approved", "@U0ALICE")
    assert action_ids(final) == []  # the buttons are gone


def test_a_deny_never_runs_the_tool(rig: Rig) -> None:
    agent = rig.call("refund", order_id="A-2", amount=7.0)
    rig.deny_by_click("U0BOB", agent.request, "not this one")
    with pytest.raises(ApprovalDenied):
        agent.outcome()
    assert rig.ran == []
    final = rig.wait_shown(agent.request, "Denied", "@U0BOB")
    assert action_ids(final) == []


def test_deny_asks_for_the_reason_in_a_modal_and_the_agent_reads_it(rig: Rig) -> None:
    """A denial always carries a reason: Deny records nothing until the modal gives one."""
    agent = rig.call("refund", order_id="A-3", amount=9.0)
    trigger = "123.456.abcdef"
    assert rig.click("U0BOB", ACTION_DENY, agent.request, trigger_id=trigger).is_success
    opened = rig.fake.wait_for("views.open")[0]
    assert opened.args["trigger_id"] == trigger
    view = next(iter(rig.fake.views.values()))
    assert view["callback_id"] == DENY_MODAL
    assert rig.gate.get(agent.request.id).status is RequestStatus.PENDING  # not yet

    def submit(comment: str) -> httpx.Response:
        return rig.post(
            view_submission(
                user_id="U0BOB",
                callback_id=DENY_MODAL,
                private_metadata=view["private_metadata"],
                values={COMMENT_BLOCK: {COMMENT_INPUT: comment}},
                view=view,
            )
        )

    empty = submit("   ")
    assert empty.json()["response_action"] == "errors"  # the modal says what is missing
    assert rig.gate.get(agent.request.id).status is RequestStatus.PENDING

    assert submit("use the sandbox account").status_code == 200
    with pytest.raises(ApprovalDenied) as denied:
        agent.outcome()
    assert "use the sandbox account" in str(denied.value)
    assert rig.ran == []
    rig.wait_shown(agent.request, "Denied", "@U0BOB", "use the sandbox account")


def test_the_deny_with_comment_button_of_an_older_message_opens_the_same_modal(rig: Rig) -> None:
    agent = rig.call("refund", order_id="A-6", amount=9.0)
    channel, ts = rig.message(agent.request)
    old_button = block_actions(
        user_id="U0BOB",
        action_id=ACTION_DENY_COMMENT,
        value=button_value(agent.request),
        channel_id=channel,
        message_ts=ts,
        trigger_id="9.9.9",
    )
    assert rig.post(old_button).is_success
    rig.fake.wait_for("views.open")
    view = next(iter(rig.fake.views.values()))
    assert view["callback_id"] == DENY_MODAL
    assert rig.gate.get(agent.request.id).status is RequestStatus.PENDING
    rig.console_gate.deny(agent.request.id, approver="alice", comment="test over")
    with pytest.raises(ApprovalDenied):
        agent.outcome()


def test_the_message_says_which_condition_of_a_rule_naming_the_tool_failed(rig: Rig) -> None:
    """Rule huge-wire names wire too: the message says which of its conditions the call failed."""
    agent = rig.call("wire", to="acct-7", amount=100.0)
    shown = texts(rig.shown(agent.request))
    assert "Rules for this tool that did not match:" in shown
    assert "rule huge-wire: args.amount 100.0 is not > 1000000" in shown
    refund = rig.call("refund", order_id="A-7", amount=1.0)
    assert "did not match" not in texts(rig.shown(refund.request))
    for held in (agent, refund):
        rig.console_gate.deny(held.request.id, approver="alice", comment="test over")
        with pytest.raises(ApprovalDenied):
            held.outcome()


@pytest.mark.parametrize(
    ("user", "why"),
    [("U0EVE", "not an approver at all"), ("U0CAROL", "an approver outside the finance group")],
)
def test_someone_who_may_not_decide_is_told_so_privately_and_nothing_changes(
    rig: Rig, user: str, why: str
) -> None:
    agent = rig.call("refund", order_id="A-4", amount=1.0)
    before = dict(rig.shown(agent.request))
    assert rig.click(user, ACTION_APPROVE, agent.request).status_code == 200
    rig.fake.wait_for("chat.postEphemeral")
    told = rig.fake.ephemerals[-1]
    assert told.user == user, why
    assert "not an approver" in (told.text or "")
    time.sleep(0.2)
    assert rig.gate.get(agent.request.id).status is RequestStatus.PENDING
    assert rig.gate.get(agent.request.id).decisions == ()
    assert rig.shown(agent.request)["blocks"] == before["blocks"]
    rig.console_gate.deny(agent.request.id, approver="alice", comment="test over")
    with pytest.raises(ApprovalDenied):
        agent.outcome()


def test_a_payload_from_another_workspace_changes_nothing(rig: Rig) -> None:
    agent = rig.call("refund", order_id="A-5", amount=1.0)
    payload = rig.click_payload("U0ALICE", ACTION_APPROVE, agent.request, team_id="T0OTHER")
    assert rig.post(payload).status_code == 200
    time.sleep(0.2)
    assert rig.gate.get(agent.request.id).status is RequestStatus.PENDING
    rig.console_gate.deny(agent.request.id, approver="alice", comment="test over")
    with pytest.raises(ApprovalDenied):
        agent.outcome()


# -- the request URL refuses forgeries ----------------------------------------------------------


def test_forged_stale_and_replayed_requests_are_refused_and_change_nothing(rig: Rig) -> None:
    agent = rig.call("wire", to="acct-9", amount=100.0)  # quorum 2: a replay would count twice
    payload = rig.click_payload("U0ALICE", ACTION_APPROVE, agent.request)
    body = form_body(payload)

    forged = rig.post_raw(body, sign(body, "not-the-signing-secret"))
    assert (forged.status_code, forged.json()["error"]["code"]) == (401, "bad_signature")
    stale = rig.post_raw(body, sign(body, SIGNING_SECRET, int(time.time()) - 400))
    assert (stale.status_code, stale.json()["error"]["code"]) == (401, "stale")
    future = rig.post_raw(body, sign(body, SIGNING_SECRET, int(time.time()) + 400))
    assert future.status_code == 401
    unsigned = rig.post_raw(body, {"Content-Type": "application/x-www-form-urlencoded"})
    assert unsigned.status_code == 401
    tampered_headers = sign(body, SIGNING_SECRET)
    tampered = rig.post_raw(body.replace(b"U0ALICE", b"U0BOB"), tampered_headers)
    assert tampered.status_code == 401
    time.sleep(0.2)
    assert rig.gate.get(agent.request.id).decisions == ()

    headers = sign(body, SIGNING_SECRET)
    assert rig.post_raw(body, headers).status_code == 200
    eventually(lambda: len(rig.gate.get(agent.request.id).decisions) == 1, what="the vote")
    replay = rig.post_raw(body, headers)
    assert (replay.status_code, replay.json()["error"]["code"]) == (409, "replayed")
    time.sleep(0.2)
    req = rig.gate.get(agent.request.id)
    assert len(req.decisions) == 1 and req.status is RequestStatus.PENDING
    rig.wait_shown(agent.request, "1 of 2")  # quorum progress while partial
    rig.console_gate.deny(agent.request.id, approver="bob", comment="test over")
    with pytest.raises(ApprovalDenied):
        agent.outcome()


def test_a_body_that_is_not_a_slack_payload_is_refused(rig: Rig) -> None:
    body = b"payload=%7Bnot-json"
    response = rig.post_raw(body, sign(body, SIGNING_SECRET))
    assert response.status_code == 400


def test_a_body_over_the_bound_is_refused_before_it_is_read(rig: Rig) -> None:
    body = b"payload=" + b"x" * (300 * 1024)
    response = rig.post_raw(body, sign(body, SIGNING_SECRET))
    assert (response.status_code, response.json()["error"]["code"]) == (413, "too_large")


# -- one truth on every surface -----------------------------------------------------------------


def test_a_decision_in_the_web_console_rewrites_the_slack_message(rig: Rig) -> None:
    agent = rig.call("refund", order_id="A-6", amount=3.0)
    rig.shown(agent.request)
    response = httpx.post(
        f"{rig.server.url}/api/v1/requests/{agent.request.id}/deny",
        json={"comment": "not this week"},
        headers=bearer("tok-bob"),
    )
    assert response.status_code == 200, response.text
    with pytest.raises(ApprovalDenied):
        agent.outcome()
    final = rig.wait_shown(agent.request, "Denied", "@U0BOB", "not this week")
    assert action_ids(final) == []


def test_quorum_progress_then_the_outcome(rig: Rig) -> None:
    agent = rig.call("wire", to="acct-1", amount=50.0)
    rig.click("U0ALICE", ACTION_APPROVE, agent.request)
    partial = rig.wait_shown(agent.request, "1 of 2")
    assert ACTION_APPROVE in action_ids(partial)  # still open for the second approver
    rig.console_gate.approve(agent.request.id, approver="bob", via="cli")
    assert agent.outcome() == "sent"
    rig.wait_shown(agent.request, "Approved", "@U0ALICE", "@U0BOB")


def test_a_halt_cancels_and_the_message_says_the_agent_was_halted(rig: Rig) -> None:
    agent = rig.call("refund", order_id="A-7", amount=2.0)
    rig.shown(agent.request)
    rig.console_gate.halt(agent="billing-bot", by="alice", reason="runaway")
    with pytest.raises(ToolCallBlocked):
        agent.outcome()
    final = rig.wait_shown(agent.request, "Cancelled", "halted")
    assert action_ids(final) == []


@pytest.fixture
def sweeping(store: Store, clock: ManualClock, fake: FakeSlack) -> Iterator[Rig]:
    """A rig whose console sweeps every 0.1 s (expiry and reminders)."""
    made = Rig(store, clock, fake, sweep_interval=0.1)
    yield made
    made.close()


def test_the_console_expires_an_overdue_request_and_the_message_says_so(sweeping: Rig) -> None:
    rig = sweeping
    agent = rig.call("refund", order_id="A-8", amount=2.0)
    rig.shown(agent.request)
    rig.clock.advance(3600)  # past the 900 s default timeout; the agent still waits
    with pytest.raises(ToolCallBlocked):
        agent.outcome()
    assert rig.gate.get(agent.request.id).status is RequestStatus.EXPIRED
    final = rig.wait_shown(agent.request, "Expired")
    assert action_ids(final) == []
    assert rig.ran == []


def test_a_request_pending_past_escalate_after_gets_one_reminder_in_its_thread(
    sweeping: Rig,
) -> None:
    rig = sweeping
    agent = rig.call("refund", order_id="E-1", amount=2.0)
    channel, ts = rig.message(agent.request)
    time.sleep(0.3)
    assert len(rig.fake.calls_to("chat.postMessage")) == 1  # not yet: 60 s have not passed
    rig.clock.advance(61)
    posts = rig.fake.wait_for("chat.postMessage", 2)
    reminder = posts[1].args
    assert (reminder["channel"], reminder["thread_ts"]) == (channel, ts)
    assert "<!subteam^S0SRE>" in reminder["text"]
    time.sleep(0.5)  # several more sweeps
    assert len(rig.fake.calls_to("chat.postMessage")) == 2  # once only
    rig.click("U0ALICE", ACTION_APPROVE, agent.request)
    assert agent.outcome() == "refunded 2.0 on E-1"


def _race(rig: Rig, order: str) -> None:
    agent = rig.call("refund", order_id=order, amount=1.0)
    payload = rig.click_payload("U0ALICE", ACTION_APPROVE, agent.request)
    start = threading.Barrier(2)
    results: dict[str, int] = {}

    def slack() -> None:
        start.wait()
        results["slack"] = rig.post(payload).status_code

    def web() -> None:
        start.wait()
        results["web"] = httpx.post(
            f"{rig.server.url}/api/v1/requests/{agent.request.id}/deny",
            json={"comment": "race"},
            headers=bearer("tok-bob"),
        ).status_code

    threads = [threading.Thread(target=slack), threading.Thread(target=web)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)

    def decided() -> ApprovalRequest | None:
        req = rig.gate.get(agent.request.id)
        return req if req.status.decided else None

    req: ApprovalRequest = eventually(decided, what="a decision")
    assert len(req.decisions) == 1  # exactly one of the two counted
    if req.decisions[0].approve:
        assert agent.outcome() == f"refunded 1.0 on {order}"
        assert results["web"] == 409
        rig.wait_shown(agent.request, "Approved", "@U0ALICE")
    else:
        with pytest.raises(ApprovalDenied):
            agent.outcome()
        rig.wait_shown(agent.request, "Denied", "@U0BOB")
        # Slack's click lost: its user is told nothing changed.
        eventually(
            lambda: any("Nothing changed" in (e.text or "") for e in rig.fake.ephemerals),
            what="the loser to be told",
        )
    api = httpx.get(
        f"{rig.server.url}/api/v1/requests/{agent.request.id}", headers=bearer("tok-bob")
    ).json()
    assert api["decided_by"] == req.decided_by


def test_slack_approve_racing_a_web_deny_has_one_winner_on_both_surfaces(rig: Rig) -> None:
    for round_ in range(3):
        _race(rig, f"R-{round_}")


# -- who clicked: user groups --------------------------------------------------------------------


def test_a_user_group_member_decides_as_the_group_approver_and_the_group_is_cached(
    rig: Rig,
) -> None:
    first = rig.call("refund", order_id="G-1", amount=1.0)
    rig.click("U0SRE1", ACTION_APPROVE, first.request)
    assert first.outcome() == "refunded 1.0 on G-1"
    assert rig.gate.get(first.request.id).decided_by == "sre-oncall"
    second = rig.call("refund", order_id="G-2", amount=1.0)
    rig.deny_by_click("U0SRE2", second.request, "not today")
    with pytest.raises(ApprovalDenied):
        second.outcome()
    lookups = rig.fake.calls_to("usergroups.users.list")
    assert len(lookups) == 1  # the second click was answered from the cache
    assert lookups[0].args["usergroup"] == "S0SRE"


# -- robust delivery -------------------------------------------------------------------------


def test_a_rate_limited_post_waits_what_retry_after_says(rig: Rig) -> None:
    rig.fake.fail("chat.postMessage", status=429, retry_after=3, times=2)
    agent = rig.call("refund", order_id="L-1", amount=1.0)
    rig.shown(agent.request)
    posts = rig.fake.calls_to("chat.postMessage")
    assert [c.failed for c in posts] == [True, True, False]
    assert rig.sleeps[:2] == [3.0, 3.0]
    rig.click("U0ALICE", ACTION_APPROVE, agent.request)
    assert agent.outcome() == "refunded 1.0 on L-1"


def test_a_post_that_finally_fails_is_audited_shown_in_the_console_and_stays_pending(
    rig: Rig,
) -> None:
    rig.fake.fail("chat.postMessage", status=503, retry_after=None, times=50)
    agent = rig.call("refund", order_id="L-2", amount=1.0)
    failed = eventually(
        lambda: [e for e in audit_events(rig.store) if e.kind == "channel.failed"],
        what="a channel.failed event",
    )
    assert failed[0].request_id == agent.request.id
    assert failed[0].data["channel"] == "SlackChannel"
    assert "503" in str(failed[0].data["error"])
    assert len(rig.fake.calls_to("chat.postMessage")) == 5  # the bound: 5 attempts
    assert rig.gate.get(agent.request.id).status is RequestStatus.PENDING

    page = rig.console_page(agent.request.id)
    assert 'id="undelivered"' in page and "SlackChannel" in page
    rig.console_gate.approve(agent.request.id, approver="alice", via="web")
    assert agent.outcome() == "refunded 1.0 on L-2"


def test_the_click_is_acknowledged_before_slow_work(
    store: Store, clock: ManualClock, fake: FakeSlack
) -> None:
    rig = Rig(store, clock, fake, real_sleep=True)
    try:
        agent = rig.call("refund", order_id="S-1", amount=1.0)
        rig.shown(agent.request)
        # Slack is slow to say who is in the user group: the decision waits 2 s for it.
        fake.fail("usergroups.users.list", status=429, retry_after=2, times=1)
        started = time.monotonic()
        assert rig.click("U0SRE1", ACTION_APPROVE, agent.request).status_code == 200
        acked = time.monotonic() - started
        assert agent.outcome() == "refunded 1.0 on S-1"
        decided = time.monotonic() - started
        assert acked < 1.0  # Slack got its answer at once ...
        assert decided >= 2.0  # ... long before the work was done
        assert rig.gate.get(agent.request.id).decided_by == "sre-oncall"
    finally:
        rig.close()


# -- Socket Mode ---------------------------------------------------------------------------------


@pytest.fixture
def socket_rig(store: Store, clock: ManualClock, fake: FakeSlack) -> Iterator[Rig]:
    made = Rig(store, clock, fake, http=False, socket=True)
    fake.wait_connected(1)
    yield made
    made.close()


def test_socket_mode_clicks_are_acked_at_once_and_decide(socket_rig: Rig) -> None:
    rig = socket_rig
    agent = rig.call("refund", order_id="W-1", amount=4.0)
    envelope = rig.fake.send_interactive(
        rig.click_payload("U0ALICE", ACTION_APPROVE, agent.request)
    )
    assert rig.fake.wait_ack(envelope) < 1.0
    assert agent.outcome() == "refunded 4.0 on W-1"
    rig.wait_shown(agent.request, "Approved", "@U0ALICE")
    # No HTTP request URL without a signing secret.
    assert httpx.post(f"{rig.server.url}/slack/interactions").status_code == 404


def test_socket_mode_modal_errors_go_back_in_the_ack(socket_rig: Rig) -> None:
    rig = socket_rig
    agent = rig.call("refund", order_id="W-2", amount=4.0)
    rig.fake.send_interactive(
        rig.click_payload("U0BOB", ACTION_DENY, agent.request, trigger_id="1.2.3")
    )
    rig.fake.wait_for("views.open")
    view = next(iter(rig.fake.views.values()))
    empty = view_submission(
        user_id="U0BOB",
        callback_id=DENY_MODAL,
        private_metadata=view["private_metadata"],
        values={COMMENT_BLOCK: {COMMENT_INPUT: ""}},
        view=view,
    )
    envelope = rig.fake.send_interactive(empty)
    rig.fake.wait_ack(envelope)
    ack = rig.fake.acks[envelope].payload
    assert ack is not None and ack["response_action"] == "errors"
    filled = view_submission(
        user_id="U0BOB",
        callback_id=DENY_MODAL,
        private_metadata=view["private_metadata"],
        values={COMMENT_BLOCK: {COMMENT_INPUT: "wrong account"}},
        view=view,
    )
    rig.fake.send_interactive(filled)
    with pytest.raises(ApprovalDenied) as denied:
        agent.outcome()
    assert "wrong account" in str(denied.value)


def test_a_redelivered_envelope_is_acked_but_not_done_twice(socket_rig: Rig) -> None:
    rig = socket_rig
    agent = rig.call("wire", to="acct-2", amount=10.0)
    payload = rig.click_payload("U0ALICE", ACTION_APPROVE, agent.request)
    envelope = rig.fake.send_interactive(payload)
    rig.fake.wait_ack(envelope)
    eventually(lambda: len(rig.gate.get(agent.request.id).decisions) == 1, what="the vote")
    rig.fake.acks.pop(envelope)
    rig.fake.send_raw(
        {
            "envelope_id": envelope,
            "payload": payload,
            "type": "interactive",
            "accepts_response_payload": True,
            "retry_attempt": 1,
            "retry_reason": "timeout",
        }
    )
    rig.fake.wait_ack(envelope)
    time.sleep(0.2)
    assert rig.fake.ephemerals == []  # not even a "you already voted"
    assert len(rig.gate.get(agent.request.id).decisions) == 1
    rig.console_gate.deny(agent.request.id, approver="bob", comment="test over")
    with pytest.raises(ApprovalDenied):
        agent.outcome()


def test_socket_mode_reconnects_when_slack_asks_and_keeps_working(socket_rig: Rig) -> None:
    rig = socket_rig
    rig.fake.disconnect("refresh_requested")
    rig.fake.wait_connected(2)
    assert len(rig.fake.calls_to("apps.connections.open")) == 2
    agent = rig.call("refund", order_id="W-3", amount=4.0)
    rig.deny_by_click("U0BOB", agent.request, "not this one", socket=True)
    with pytest.raises(ApprovalDenied):
        agent.outcome()
    assert rig.ran == []


# -- direct messages, and the retry bound ----------------------------------------------------------


def test_dm_mode_messages_each_approver_who_may_decide(store: Store, fake: FakeSlack) -> None:
    client = WebClient(token=fake.bot_token, base_url=fake.base_url)
    channel = SlackChannel(client, dm=True, sleep=lambda _s: None)
    recorder = RecordingChannel()
    gate = Gatekeeper(
        policy=Policy.from_yaml(POLICY),
        store=store,
        approvers=APPROVERS,
        channels=[recorder, channel],
    )
    refund = gate.guard(lambda order_id: f"refunded {order_id}", name="refund")
    agent = Agent(gate, refund, "billing-bot", {"order_id": "D-1"})
    request = recorder.wait_for_request(1)
    posts = fake.wait_for("chat.postMessage", 4)
    # alice and bob by id, the two members of S0SRE; never carol (not in finance)
    assert sorted(c.args["channel"] for c in posts) == ["U0ALICE", "U0BOB", "U0SRE1", "U0SRE2"]
    eventually(lambda: len(channel.refs(request.id)) == 4, what="four message references")
    gate.deny(request.id, approver="bob", comment="no")
    with pytest.raises(ApprovalDenied):
        agent.outcome()
    updates = fake.wait_for("chat.update", 4)
    assert {c.args["channel"] for c in updates} == {ch for ch, _ in channel.refs(request.id)}


def test_a_retry_after_longer_than_the_bound_gives_up_at_once(fake: FakeSlack) -> None:
    from gatekeeper import ChannelError
    from gatekeeper.channels.slack._retry import SlackCaller

    client = WebClient(token=fake.bot_token, base_url=fake.base_url, retry_handlers=[])
    slept: list[float] = []
    call = SlackCaller(attempts=5, max_wait=10, sleep=slept.append)
    fake.fail("chat.postMessage", status=429, retry_after=60, times=1)
    with pytest.raises(ChannelError, match="10s bound"):
        call("chat.postMessage", client.chat_postMessage, channel=CHANNEL, text="hi")
    assert slept == [] and len(fake.calls_to("chat.postMessage")) == 1
    fake.error("chat.postMessage", error="channel_not_found")
    with pytest.raises(ChannelError, match="channel_not_found"):
        call("chat.postMessage", client.chat_postMessage, channel=CHANNEL, text="hi")
    assert len(fake.calls_to("chat.postMessage")) == 2  # not retried


def test_user_group_members_are_read_again_after_the_ttl(fake: FakeSlack) -> None:
    from gatekeeper.channels.slack._approvers import SlackApprovers
    from gatekeeper.channels.slack._retry import SlackCaller

    now = [0.0]
    client = WebClient(token=fake.bot_token, base_url=fake.base_url, retry_handlers=[])
    approvers = SlackApprovers(
        APPROVERS, client, call=SlackCaller(sleep=lambda _s: None), ttl=300, clock=lambda: now[0]
    )
    assert approvers.resolve("U0SRE1", None) is APPROVERS[3]
    now[0] = 299
    assert approvers.resolve("U0SRE2", None) is APPROVERS[3]
    assert approvers.lookups == 1
    fake.usergroups["S0SRE"] = ["U0SRE2"]  # U0SRE1 left the group
    now[0] = 301
    assert approvers.resolve("U0SRE1", None) is None
    assert approvers.lookups == 2
    fake.error("usergroups.users.list", error="missing_scope", times=5)
    now[0] = 700
    assert approvers.resolve("U0SRE2", None) is None  # a group we can't read grants nothing


# -- gatekeeper serve ------------------------------------------------------------------------


SERVE_CONFIG = """
version: 1
store: {{url: "{url}", prefix: "{prefix}"}}
approvers:
  - {{name: alice, groups: [finance], slack_user_id: U0ALICE}}
channels:
  - {{type: slack, channel: C0APPROVE, base_url: "{base_url}", team_id: T0001}}
policy:
  version: 1
  default: require_approval
web:
  secret_key: "{secret}"
  base_url: http://127.0.0.1:{port}
"""


def test_gatekeeper_serve_runs_slack_from_the_config(
    tmp_path: Any, fake: FakeSlack, redis_server: Any, redis_prefix: str
) -> None:
    """`gatekeeper serve` opens Socket Mode and answers the request URL, tokens from the env."""
    import os
    import subprocess
    import sys

    from tests.e2e.conftest import free_port

    port = free_port()
    config = tmp_path / "gatekeeper.yaml"
    config.write_text(
        SERVE_CONFIG.format(
            url=redis_server.url,
            prefix=redis_prefix,
            base_url=fake.base_url,
            secret="s" * 40,
            port=port,
        )
    )
    env = {
        **os.environ,
        "SLACK_BOT_TOKEN": fake.bot_token,
        "SLACK_APP_TOKEN": fake.app_token,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
    }
    cli = "from gatekeeper.cli import main; raise SystemExit(main())"
    server = subprocess.Popen(
        [sys.executable, "-c", cli, "--config", str(config), "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        fake.wait_connected(1, timeout=30)  # Socket Mode is up
        body = form_body({"type": "block_actions", "team": {"id": "T0001"}, "actions": []})
        answer = eventually(
            lambda: _post_quietly(f"http://127.0.0.1:{port}/slack/interactions", body),
            timeout=20,
            what="the console to answer",
        )
        assert answer.status_code == 401  # unsigned: the request URL is served and checks
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=20)
    assert "Slack interactivity over Socket Mode and HTTP" in output


def _post_quietly(url: str, body: bytes) -> httpx.Response | None:
    try:
        return httpx.post(url, content=body, headers={"Content-Type": "x"}, timeout=5)
    except httpx.TransportError:
        return None


# -- keeping messages true when things go wrong ------------------------------------------------


def test_a_change_made_while_serve_was_down_is_shown_when_it_starts(
    store: Store, clock: ManualClock, fake: FakeSlack
) -> None:
    rig = Rig(store, clock, fake, serve=False)
    try:
        agent = rig.call("wire", to="acct-3", amount=10.0)
        rig.shown(agent.request)
        rig.console_gate.approve(agent.request.id, approver="alice", via="cli")  # 1 of 2
        time.sleep(0.2)
        assert "1 of 2" not in texts(rig.shown(agent.request))  # nobody was following
        rig.serve()  # its first look at the store repaints what changed unseen
        rig.wait_shown(agent.request, "1 of 2", "@U0ALICE")
        rig.console_gate.deny(agent.request.id, approver="bob", comment="test over")
        with pytest.raises(ApprovalDenied):
            agent.outcome()
    finally:
        rig.close()


def test_a_late_update_never_leaves_an_older_state_showing(rig: Rig) -> None:
    agent = rig.call("refund", order_id="O-1", amount=1.0)
    pending = agent.request
    rig.shown(pending)
    rig.console_gate.deny(pending.id, approver="bob", comment="no")
    with pytest.raises(ApprovalDenied):
        agent.outcome()
    rig.wait_shown(pending, "Denied")
    # A slow process now tries to show the request as it saw it minutes ago.
    rig.slack.show(pending, force=True)
    final = rig.shown(pending)
    assert "Denied" in texts(final) and action_ids(final) == []


def test_socket_mode_that_cannot_connect_at_start_keeps_trying_and_the_rest_runs(
    store: Store, clock: ManualClock, fake: FakeSlack
) -> None:
    fake.error("apps.connections.open", error="internal_error", times=1)
    rig = Rig(store, clock, fake, http=False, socket=True)
    try:
        agent = rig.call("refund", order_id="C-1", amount=1.0)
        rig.shown(agent.request)
        rig.console_gate.approve(agent.request.id, approver="alice", via="cli")
        assert agent.outcome() == "refunded 1.0 on C-1"
        rig.wait_shown(agent.request, "Approved")  # upkeep ran while Socket Mode was down
        fake.wait_connected(1, timeout=10)  # and Socket Mode came up on the retry
        assert len(fake.calls_to("apps.connections.open")) == 2
    finally:
        rig.close()
