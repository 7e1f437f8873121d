"""Respond and questions in Slack, end to end: the real slack-sdk clients against the stand-in.

A person may write a held call's result in Slack instead of running it
(Respond), and answers (Answer) or declines (Decline) a question the agent
asks. The agent's waiting call returns what was written; the tool never
runs. Clicks and modal submissions arrive signed over HTTP, or over Socket
Mode, and go through the same approver checks as Approve and Deny. Every
test runs on MemoryStore and on a real redis-server.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from gatekeeper import ApprovalDenied, Response
from gatekeeper.channels.slack._blocks import (
    ACTION_APPROVE,
    ACTION_APPROVE_GRANT,
    ACTION_DENY,
    ACTION_OPEN,
    ACTION_RESPOND,
)
from gatekeeper.channels.slack._modals import (
    COMMENT_BLOCK,
    COMMENT_INPUT,
    DENY_MODAL,
    RESPOND_MODAL,
    RESPONSE_BLOCK,
    RESPONSE_INPUT,
)
from gatekeeper.models import ApprovalRequest, RequestStatus
from gatekeeper.store import Store
from gatekeeper.testing import ManualClock
from tests.gatekit import audit_events
from tests.integration.test_slack import (
    POLICY,
    SIGNING_SECRET,
    Rig,
    action_ids,
    texts,
)
from tests.slackkit import FakeSlack, form_body, sign, view_submission
from tests.webkit import Agent

S = RequestStatus

RESPOND_POLICY = (
    POLICY
    + """\
  - {id: payouts, match: {tool: payout}, verdict: require_approval, risk: high,
     approval: {group: finance, respond: false}}
"""
)

# Agent text that tries to ping, link and format, and to flood the message.
ATTACKS = "<!channel> <@U123> *bold* <https://evil.example|click> "
HOSTILE_QUESTION = ATTACKS + "q" * 20_000
HOSTILE_RESPONSE = ATTACKS.replace("channel", "here") + "r" * 7_900
OUR_MENTIONS = ("<@U0ALICE>", "<@U0BOB>", "<@U0CAROL>")


@pytest.fixture
def fake() -> Iterator[FakeSlack]:
    with FakeSlack(usergroups={"S0SRE": ["U0SRE1", "U0SRE2"]}) as running:
        yield running


def _rig(store: Store, clock: ManualClock, fake: FakeSlack, **kw: Any) -> Rig:
    rig = Rig(store, clock, fake, policy=RESPOND_POLICY, **kw)

    @rig.gate.guard
    def payout(to: str, amount: float) -> str:
        rig.ran.append(("payout", {"to": to, "amount": amount}))
        return "paid"

    rig.tools["payout"] = payout
    rig.tools["ask"] = rig.gate.ask_tool()
    return rig


@pytest.fixture
def rig(store: Store, clock: ManualClock, fake: FakeSlack) -> Iterator[Rig]:
    made = _rig(store, clock, fake)
    yield made
    made.close()


@pytest.fixture
def socket_rig(store: Store, clock: ManualClock, fake: FakeSlack) -> Iterator[Rig]:
    made = _rig(store, clock, fake, http=False, socket=True)
    fake.wait_connected(1)
    yield made
    made.close()


# -- driving Slack ------------------------------------------------------------------------------


def send(rig: Rig, payload: dict[str, Any], *, socket: bool) -> dict[str, Any] | None:
    """Deliver ``payload`` as Slack does; the acknowledgement's body (None when empty)."""
    if socket:
        envelope = rig.fake.send_interactive(payload)
        rig.fake.wait_ack(envelope)
        return rig.fake.acks[envelope].payload
    answer = rig.post(payload)
    assert answer.status_code == 200, answer.text
    return answer.json() if answer.content else None


def open_modal(
    rig: Rig, user: str, action: str, req: ApprovalRequest, *, socket: bool = False
) -> dict[str, Any]:
    """Click ``action`` (Respond/Answer or Deny/Decline); the modal Slack opened for it."""
    opened = len(rig.fake.calls_to("views.open"))
    click = rig.click_payload(user, action, req, trigger_id=f"{opened}.1.{action}")
    send(rig, click, socket=socket)
    rig.fake.wait_for("views.open", opened + 1)
    return list(rig.fake.views.values())[-1]


def submitted(user: str, view: dict[str, Any], text: str) -> dict[str, Any]:
    """The view_submission of ``view`` with ``text`` typed into its one input."""
    block, action = (
        (RESPONSE_BLOCK, RESPONSE_INPUT)
        if view["callback_id"] == RESPOND_MODAL
        else (COMMENT_BLOCK, COMMENT_INPUT)
    )
    return view_submission(
        user_id=user,
        callback_id=view["callback_id"],
        private_metadata=view["private_metadata"],
        values={block: {action: text}},
        view=view,
    )


def forged_response(rig: Rig, user: str, req: ApprovalRequest, text: str) -> dict[str, Any]:
    """A respond modal's submission made up without any modal having been opened."""
    channel, ts = rig.message(req)
    return view_submission(
        user_id=user,
        callback_id=RESPOND_MODAL,
        private_metadata=json.dumps({"r": req.id, "c": channel, "t": ts}),
        values={RESPONSE_BLOCK: {RESPONSE_INPUT: text}},
    )


def told(rig: Rig, user: str, seen: int) -> str:
    """The next ephemeral message ``user`` got after the first ``seen`` ephemerals."""
    rig.fake.wait_for("chat.postEphemeral", seen + 1)
    message = rig.fake.ephemerals[seen]
    assert message.user == user
    return message.text or ""


def buttons(message: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (element["action_id"], element["text"]["text"])
        for block in message["blocks"]
        if block.get("type") == "actions"
        for element in block["elements"]
    ]


def finish(rig: Rig, agent: Agent) -> None:
    rig.console_gate.deny(agent.request.id, approver="alice", comment="test over")
    with pytest.raises(ApprovalDenied):
        agent.outcome()


# -- respond to a held call --------------------------------------------------------------------


@pytest.mark.parametrize("socket", [False, True], ids=["http", "socket-mode"])
def test_respond_in_slack_returns_the_text_to_the_agent_and_the_tool_never_runs(
    store: Store, clock: ManualClock, fake: FakeSlack, socket: bool
) -> None:
    rig = _rig(store, clock, fake, http=not socket, socket=socket)
    try:
        if socket:
            fake.wait_connected(1)
        agent = rig.call("refund", order_id="P-1", amount=30.0)
        assert buttons(rig.shown(agent.request)) == [
            (ACTION_APPROVE, "Approve"),
            (ACTION_APPROVE_GRANT, "Approve + matching, 1 h"),
            (ACTION_DENY, "Deny"),
            (ACTION_RESPOND, "Respond"),
            (ACTION_OPEN, "Open in console"),
        ]
        view = open_modal(rig, "U0ALICE", ACTION_RESPOND, agent.request, socket=socket)
        assert view["callback_id"] == RESPOND_MODAL
        assert "The result the agent gets instead of running the tool" in json.dumps(view)
        assert rig.gate.get(agent.request.id).status is S.PENDING  # nothing until submitted

        blank = send(rig, submitted("U0ALICE", view, "  \n "), socket=socket)
        assert blank is not None and blank["response_action"] == "errors"
        assert set(blank["errors"]) == {RESPONSE_BLOCK}  # shown under the answer box
        assert rig.gate.get(agent.request.id).status is S.PENDING

        text = "Refunded by hand in the payment portal: ticket 4411"
        assert send(rig, submitted("U0ALICE", view, text), socket=socket) is None
        result = agent.outcome()
        assert result == text and isinstance(result, Response)
        assert (result.approver, result.tool) == ("alice", "refund")
        assert rig.ran == []  # the tool never ran

        req = rig.gate.get(agent.request.id)
        assert (req.status, req.response, req.decided_by) == (S.RESPONDED, text, "alice")
        assert req.decisions[0].via == "slack:U0ALICE"
        kinds = [e.kind for e in audit_events(rig.store) if e.request_id == req.id]
        assert kinds == ["call.held", "request.responded"]
        final = rig.wait_shown(agent.request, "Responded", "@U0ALICE", "did not run", text)
        assert action_ids(final) == []
    finally:
        rig.close()


def test_respond_is_hidden_and_refused_where_the_rule_says_respond_false(rig: Rig) -> None:
    agent = rig.call("payout", to="acct-1", amount=10.0)
    posted = rig.shown(agent.request)
    assert ACTION_RESPOND not in action_ids(posted)
    assert action_ids(posted) == [ACTION_APPROVE, ACTION_APPROVE_GRANT, ACTION_DENY, ACTION_OPEN]

    # A made-up Respond click: no modal opens, and the clicker is told why.
    rig.click("U0ALICE", ACTION_RESPOND, agent.request, trigger_id="5.5.5")
    assert "respond: false" in told(rig, "U0ALICE", 0)
    assert rig.fake.calls_to("views.open") == []

    # A made-up submission of the respond modal: refused by the gate, nothing recorded.
    assert rig.post(forged_response(rig, "U0ALICE", agent.request, "paid")).status_code == 200
    assert "does not allow a written answer" in told(rig, "U0ALICE", 1)
    req = rig.gate.get(agent.request.id)
    assert (req.status, req.decisions) == (S.PENDING, ())
    shown = action_ids(rig.shown(agent.request))
    assert shown == [ACTION_APPROVE, ACTION_APPROVE_GRANT, ACTION_DENY, ACTION_OPEN]
    finish(rig, agent)
    assert rig.ran == []


@pytest.mark.parametrize(
    ("user", "why"),
    [("U0EVE", "not an approver at all"), ("U0CAROL", "an approver outside the finance group")],
)
def test_a_response_from_someone_who_may_not_decide_is_refused(
    rig: Rig, user: str, why: str
) -> None:
    agent = rig.call("refund", order_id="P-2", amount=1.0)
    view = open_modal(rig, "U0ALICE", ACTION_RESPOND, agent.request)
    assert rig.post(submitted(user, view, "done already")).status_code == 200
    assert "not an approver" in told(rig, user, 0), why
    time.sleep(0.2)
    req = rig.gate.get(agent.request.id)
    assert (req.status, req.decisions) == (S.PENDING, ())
    finish(rig, agent)


def test_a_response_to_a_request_already_decided_changes_nothing(rig: Rig) -> None:
    agent = rig.call("refund", order_id="P-3", amount=1.0)
    view = open_modal(rig, "U0ALICE", ACTION_RESPOND, agent.request)
    rig.console_gate.deny(agent.request.id, approver="bob", comment="no refunds today")
    with pytest.raises(ApprovalDenied):
        agent.outcome()
    assert rig.post(submitted("U0ALICE", view, "too late")).status_code == 200
    assert "Nothing changed" in told(rig, "U0ALICE", 0)
    req = rig.gate.get(agent.request.id)
    assert (req.status, req.response) == (S.DENIED, None)
    rig.wait_shown(agent.request, "Denied", "@U0BOB")


def test_badly_signed_stale_and_replayed_submissions_are_refused(rig: Rig) -> None:
    agent = rig.call("refund", order_id="P-4", amount=1.0)
    view = open_modal(rig, "U0ALICE", ACTION_RESPOND, agent.request)
    body = form_body(submitted("U0ALICE", view, "refunded by hand"))

    forged = rig.post_raw(body, sign(body, "not-the-signing-secret"))
    assert (forged.status_code, forged.json()["error"]["code"]) == (401, "bad_signature")
    stale = rig.post_raw(body, sign(body, SIGNING_SECRET, int(time.time()) - 400))
    assert (stale.status_code, stale.json()["error"]["code"]) == (401, "stale")
    tampered = rig.post_raw(body.replace(b"refunded", b"REFUNDED"), sign(body, SIGNING_SECRET))
    assert tampered.status_code == 401
    time.sleep(0.2)
    assert rig.gate.get(agent.request.id).decisions == ()

    headers = sign(body, SIGNING_SECRET)
    assert rig.post_raw(body, headers).status_code == 200
    assert agent.outcome() == "refunded by hand"
    replay = rig.post_raw(body, headers)
    assert (replay.status_code, replay.json()["error"]["code"]) == (409, "replayed")
    time.sleep(0.2)
    req = rig.gate.get(agent.request.id)
    assert (req.status, len(req.decisions)) == (S.RESPONDED, 1)
    assert rig.fake.ephemerals == []  # the replay was never acted on
    assert rig.ran == []


# -- questions ----------------------------------------------------------------------------------


@pytest.mark.parametrize("socket", [False, True], ids=["http", "socket-mode"])
def test_a_question_is_answered_in_slack_and_never_approved(
    store: Store, clock: ManualClock, fake: FakeSlack, socket: bool
) -> None:
    rig = _rig(store, clock, fake, http=not socket, socket=socket)
    try:
        if socket:
            fake.wait_connected(1)
        agent = rig.call("ask", question="Which account gets the refund?")
        assert agent.request.kind == "question"
        posted = rig.shown(agent.request)
        assert buttons(posted) == [
            (ACTION_RESPOND, "Answer"),
            (ACTION_DENY, "Decline"),
            (ACTION_OPEN, "Open in console"),
        ]
        assert "billing-bot asks:" in texts(posted)
        assert "Which account gets the refund?" in texts(posted)

        # An Approve button made up for the question: refused, and the clicker is told why.
        send(rig, rig.click_payload("U0ALICE", ACTION_APPROVE, agent.request), socket=socket)
        assert "it is a question" in told(rig, "U0ALICE", 0)
        assert rig.gate.get(agent.request.id).decisions == ()

        view = open_modal(rig, "U0BOB", ACTION_RESPOND, agent.request, socket=socket)
        assert (view["callback_id"], view["title"]["text"]) == (RESPOND_MODAL, "Answer question")
        assert "Which account gets the refund?" in json.dumps(view)
        send(rig, submitted("U0BOB", view, "The EUR account, ending 4410"), socket=socket)
        result = agent.outcome()
        assert result == "The EUR account, ending 4410" and isinstance(result, Response)
        req = rig.gate.get(agent.request.id)
        assert (req.status, req.decided_by) == (S.RESPONDED, "bob")
        assert req.decisions[0].via == "slack:U0BOB"
        final = rig.wait_shown(agent.request, "Answered", "@U0BOB", "The EUR account")
        assert action_ids(final) == []
    finally:
        rig.close()


def test_a_question_declined_in_slack_raises_the_reason_in_the_agent(rig: Rig) -> None:
    agent = rig.call("ask", question="May I email the customer's manager?")
    view = open_modal(rig, "U0ALICE", ACTION_DENY, agent.request)
    assert (view["callback_id"], view["title"]["text"]) == (DENY_MODAL, "Decline question")
    assert rig.post(submitted("U0ALICE", view, "no: talk to the customer")).status_code == 200
    with pytest.raises(ApprovalDenied, match="no: talk to the customer"):
        agent.outcome()
    final = rig.wait_shown(agent.request, "Declined", "@U0ALICE", "no: talk to the customer")
    assert action_ids(final) == []


# -- hostile text -------------------------------------------------------------------------------


def _harmless(message: dict[str, Any], where: str) -> None:
    """No text object of ``message`` can ping, link or format; it stays within its bounds."""
    assert len(json.dumps(message)) < 20_000, where

    def walk(node: Any) -> None:
        if isinstance(node, list):
            for item in node:
                walk(item)
        elif isinstance(node, dict):
            kind = node.get("type")
            if kind in ("mrkdwn", "plain_text"):
                rest = node["text"]
                for ours in OUR_MENTIONS:
                    rest = rest.replace(ours, "")
                assert "<" not in rest and ">" not in rest, (where, node)
                assert kind != "mrkdwn" or "*bold*" not in rest, (where, node)
            elif kind in ("user", "usergroup", "broadcast", "link", "channel"):
                assert (kind, node.get("user_id")) in {
                    ("user", "U0ALICE"),
                    ("user", "U0BOB"),
                }, (where, node)
            for key, value in node.items():
                if key == "url":
                    assert value.startswith("https://gatekeeper.example/requests/"), where
                walk(value)

    fallback = message.get("text", "")
    for ours in OUR_MENTIONS:
        fallback = fallback.replace(ours, "")
    assert "<" not in fallback and ">" not in fallback, (where, fallback)
    walk(message.get("blocks", []))


def test_hostile_questions_and_answers_are_escaped_and_bounded_in_every_message(
    rig: Rig,
) -> None:
    agent = rig.call("ask", question=HOSTILE_QUESTION)
    view = open_modal(rig, "U0ALICE", ACTION_RESPOND, agent.request)
    assert rig.post(submitted("U0ALICE", view, HOSTILE_RESPONSE)).status_code == 200
    assert agent.outcome() == HOSTILE_RESPONSE  # the agent gets every character
    rig.wait_shown(agent.request, "Answered")

    call = rig.call("refund", order_id=ATTACKS, amount=1.0)
    view = open_modal(rig, "U0BOB", ACTION_RESPOND, call.request)
    assert rig.post(submitted("U0BOB", view, HOSTILE_RESPONSE)).status_code == 200
    assert call.outcome() == HOSTILE_RESPONSE
    final = rig.wait_shown(call.request, "Responded")

    painted = [c.args for m in ("chat.postMessage", "chat.update") for c in rig.fake.calls_to(m)]
    assert len(painted) >= 4
    for i, message in enumerate(painted):
        _harmless(message, f"message {i}")
    for i, modal in enumerate(c.args["view"] for c in rig.fake.calls_to("views.open")):
        _harmless(modal, f"modal {i}")
    shown = texts(final)
    assert "<!here> <@U123> *bold* <https://evil.example|click>" in shown  # literal text
    assert "more characters)" in shown  # the answer is cut in the message, not for the agent
