"""Standing approvals from Slack: "Approve + matching, 1 h", end to end.

The agent process posts through the real slack-sdk client to the local
stand-in for Slack; the console process (``gatekeeper serve``'s app on a real
uvicorn) receives the click signed exactly as Slack signs it. Every test runs
on MemoryStore, RedisStore and RedisStore split by role under the shipped ACL
users (the message is painted by the agent's gate, which reads its grants as
the agent's Redis user).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from gatekeeper import ApprovalDenied
from gatekeeper.channels.slack._blocks import (
    ACTION_APPROVE,
    ACTION_APPROVE_GRANT,
    ACTION_DENY,
    ACTION_OPEN,
    ACTION_RESPOND,
    GRANT_SECONDS,
)
from gatekeeper.channels.slack._escape import check_limits
from gatekeeper.models import ApprovalRequest, RequestStatus
from gatekeeper.store import Store
from gatekeeper.testing import ManualClock
from tests.gatekit import audit_events
from tests.integration.test_slack import SIGNING_SECRET, Rig, action_ids, eventually
from tests.slackkit import FakeSlack, form_body, sign


@pytest.fixture
def fake() -> Iterator[FakeSlack]:
    with FakeSlack(usergroups={"S0SRE": ["U0SRE1", "U0SRE2"]}) as running:
        yield running


@pytest.fixture
def rig(store: Store, clock: ManualClock, fake: FakeSlack) -> Iterator[Rig]:
    made = Rig(store, clock, fake)
    yield made
    made.close()


HOSTILE = "<!channel> <@U123> *bold* <https://evil.example|click> invoice\u202egpj.exe"


def block(message: dict[str, Any], block_id: str) -> dict[str, Any] | None:
    return next((b for b in message["blocks"] if b.get("block_id") == block_id), None)


def button(message: dict[str, Any], action_id: str) -> dict[str, Any]:
    for b in message["blocks"]:
        for element in b.get("elements", []) if b.get("type") == "actions" else []:
            if element.get("action_id") == action_id:
                return dict(element)
    raise AssertionError(f"no {action_id} button")


def leaves(node: Any) -> list[dict[str, Any]]:
    """Every leaf element of a rich_text block (what Slack shows as text)."""
    if isinstance(node, dict) and "elements" in node:
        return [leaf for element in node["elements"] for leaf in leaves(element)]
    return [node]


def objects(node: Any) -> list[dict[str, Any]]:
    """Every object in a message, nested ones too."""
    if isinstance(node, list):
        return [o for item in node for o in objects(item)]
    if isinstance(node, dict):
        return [node, *(o for value in node.values() for o in objects(value))]
    return []


def runs_at_once(rig: Rig, tool: str, **kw: Any) -> Any:
    """``tool(**kw)`` as the agent, which must run without a message (not held)."""
    seen = len(rig.recorder.notified)
    with rig.gate.session(agent="billing-bot", reason="customer asked"):
        out = rig.tools[tool](**kw)
    assert len(rig.recorder.notified) == seen, f"{tool} was held"
    return out


def finish(rig: Rig, req: ApprovalRequest, agent: Any) -> None:
    rig.console_gate.deny(req.id, approver="bob", comment="test over")
    with pytest.raises(ApprovalDenied):
        agent.outcome()


def test_the_message_offers_approve_plus_matching_and_lists_what_it_covers(rig: Rig) -> None:
    agent = rig.call("refund", order_id="A-1", amount=80.0)
    posted = rig.shown(agent.request)
    assert action_ids(posted) == [
        ACTION_APPROVE,
        ACTION_APPROVE_GRANT,
        ACTION_DENY,
        ACTION_RESPOND,
        ACTION_OPEN,
    ]
    offer = button(posted, ACTION_APPROVE_GRANT)
    assert offer["text"]["text"] == "Approve + matching, 1 h"
    assert offer["value"] == button(posted, ACTION_APPROVE)["value"]  # request and digest
    assert "for 1 h let this agent's calls matching it" in offer["confirm"]["text"]["text"]
    terms = block(posted, "gk_grant")
    assert terms is not None
    lines = [leaf["text"] for leaf in leaves(terms)]
    assert "later calls of refund run without asking for 1 h" in lines[0]
    assert "when the same rules hold them and every argument is exactly:" in lines[0]
    assert lines[1:3] == ["amount = 80.0", 'order_id = "A-1"']
    check_limits(posted)

    wire = rig.call("wire", to="acct-9", amount=5.0)  # quorum 2: can't carry one
    shown = rig.shown(wire.request)
    assert ACTION_APPROVE_GRANT not in action_ids(shown) and block(shown, "gk_grant") is None
    for held in (agent, wire):
        finish(rig, held.request, held)


def test_the_click_approves_grants_and_the_next_matching_call_runs_without_asking(
    rig: Rig,
) -> None:
    agent = rig.call("refund", order_id="A-1", amount=80.0)
    response = rig.click("U0ALICE", ACTION_APPROVE_GRANT, agent.request)
    assert response.status_code == 200
    assert agent.outcome() == "refunded 80.0 on A-1"

    (grant,) = eventually(rig.console_gate.grants, what="the standing approval")
    assert (grant.by, grant.request_id, grant.tool) == ("alice", agent.request.id, "refund")
    assert grant.args == {"order_id": {"eq": "A-1"}, "amount": {"eq": 80.0}}
    assert grant.expires_at is not None
    assert (grant.expires_at - grant.created_at).total_seconds() == GRANT_SECONDS
    req = rig.gate.get(agent.request.id)
    assert req.decisions[0].via == "slack:U0ALICE"
    until = f"{grant.expires_at:%H:%M} UTC"
    final = rig.wait_shown(agent.request, "Approved", "@U0ALICE", f"matching calls until {until}")
    assert action_ids(final) == []
    made = block(final, "gk_grant_made")
    assert made is not None and grant.id in made["elements"][0]["text"]

    assert runs_at_once(rig, "refund", order_id="A-1", amount=80.0) == "refunded 80.0 on A-1"
    for other_args in ({"order_id": "B-2", "amount": 80.0}, {"order_id": "A-1", "amount": 30.0}):
        other = rig.call("refund", **other_args)  # another order, another amount: asks
        finish(rig, other.request, other)
    kinds = [e.kind for e in audit_events(rig.store) if e.kind.startswith("grant.")]
    assert kinds == ["grant.created", "grant.used"]

    rig.console_gate.revoke_grant(grant.id, by="bob")
    again = rig.call("refund", order_id="A-1", amount=80.0)  # revoked: asks again
    finish(rig, again.request, again)


def test_a_made_up_grant_click_where_none_is_offered_is_refused_and_records_nothing(
    rig: Rig,
) -> None:
    agent = rig.call("wire", to="acct-9", amount=5.0)
    assert rig.click("U0ALICE", ACTION_APPROVE_GRANT, agent.request).status_code == 200
    rig.fake.wait_for("chat.postEphemeral")
    told = rig.fake.ephemerals[-1]
    assert told.user == "U0ALICE"
    assert "Nothing changed" in (told.text or "") and "approve it alone" in (told.text or "")
    req = rig.gate.get(agent.request.id)
    assert (req.status, req.decisions) == (RequestStatus.PENDING, ())
    assert rig.console_gate.grants() == []
    finish(rig, agent.request, agent)


def test_a_grant_click_is_signed_checked_once_and_only_for_approvers(rig: Rig) -> None:
    agent = rig.call("refund", order_id="A-1", amount=80.0)
    body = form_body(rig.click_payload("U0ALICE", ACTION_APPROVE_GRANT, agent.request))
    forged = rig.post_raw(body, sign(body, "not-the-signing-secret"))
    assert (forged.status_code, forged.json()["error"]["code"]) == (401, "bad_signature")
    stale = rig.post_raw(body, sign(body, SIGNING_SECRET, int(time.time()) - 400))
    assert stale.status_code == 401
    outsider = rig.click("U0CAROL", ACTION_APPROVE_GRANT, agent.request)  # not of finance
    assert outsider.status_code == 200
    rig.fake.wait_for("chat.postEphemeral")
    assert "not an approver" in (rig.fake.ephemerals[-1].text or "")
    assert rig.gate.get(agent.request.id).decisions == () and rig.console_gate.grants() == []

    headers = sign(body, SIGNING_SECRET)
    assert rig.post_raw(body, headers).status_code == 200
    assert agent.outcome() == "refunded 80.0 on A-1"
    replay = rig.post_raw(body, headers)
    assert (replay.status_code, replay.json()["error"]["code"]) == (409, "replayed")
    assert len(eventually(rig.console_gate.grants, what="the grant")) == 1


def test_what_the_agent_wrote_shows_literally_in_the_grant_terms(rig: Rig) -> None:
    agent = rig.call("refund", order_id=HOSTILE, amount=1.0)
    posted = rig.shown(agent.request)
    terms = block(posted, "gk_grant")
    assert terms is not None
    parts = leaves(terms)
    assert all(leaf["type"] == "text" for leaf in parts)  # literal: no mrkdwn, no mentions
    shown = "\n".join(leaf["text"] for leaf in parts)
    assert 'order_id = "<!channel> <@U123> *bold* <https://evil.example|click> invoice' in shown
    assert "<U+202E>gpj.exe" in shown and "\u202e" not in json.dumps(terms, ensure_ascii=False)
    confirm = button(posted, ACTION_APPROVE_GRANT)["confirm"]
    assert confirm["text"]["type"] == "plain_text"
    mrkdwn = [obj["text"] for obj in objects(posted) if obj.get("type") == "mrkdwn"]
    assert mrkdwn and not any("<!channel>" in m or "*bold*" in m for m in mrkdwn)
    check_limits(posted)
    finish(rig, agent.request, agent)
