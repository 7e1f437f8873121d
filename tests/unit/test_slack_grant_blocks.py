"""The Slack message's "Approve + matching" offer and its outcome line, as pure Block Kit."""

from __future__ import annotations

import datetime as dt
from typing import Any

from gatekeeper._grants import new_grant
from gatekeeper.channels.slack._blocks import (
    ACTION_APPROVE,
    ACTION_APPROVE_GRANT,
    MAX_CONDITIONS,
    request_message,
)
from gatekeeper.channels.slack._escape import check_limits
from gatekeeper.models import Decision, RequestStatus
from tests.slack_samples import NOW, refund


def actions(message: dict[str, Any]) -> list[str]:
    return [
        e["action_id"]
        for b in message["blocks"]
        if b["type"] == "actions"
        for e in b["elements"]
        if "action_id" in e
    ]


def block_ids(message: dict[str, Any]) -> list[str]:
    return [b.get("block_id", "") for b in message["blocks"]]


def test_the_offer_is_made_only_when_asked_for_and_approve_is_offered() -> None:
    req = refund(NOW)
    assert ACTION_APPROVE_GRANT not in actions(request_message(req, now=NOW))
    offered = request_message(req, now=NOW, grantable=True)
    assert actions(offered)[:2] == [ACTION_APPROVE, ACTION_APPROVE_GRANT]
    assert block_ids(offered).index("gk_grant") == block_ids(offered).index("gk_actions") - 1
    check_limits(offered)
    # Arguments too long to show: no Approve, so no "Approve + matching" either.
    big = refund(NOW, {"order_id": "A-1", "note": "x" * 5000})
    cut = request_message(big, now=NOW, grantable=True)
    assert ACTION_APPROVE not in actions(cut) and ACTION_APPROVE_GRANT not in actions(cut)
    assert "gk_grant" not in block_ids(cut)


def test_many_arguments_are_listed_up_to_a_bound_and_the_rest_summed_up() -> None:
    args = {f"a{i:02}": i for i in range(MAX_CONDITIONS + 5)}
    message = request_message(refund(NOW, args), now=NOW, grantable=True)
    terms = next(b for b in message["blocks"] if b.get("block_id") == "gk_grant")
    listed = terms["elements"][1]["elements"]
    assert len(listed) == MAX_CONDITIONS
    assert listed[0]["elements"][0]["text"] == "a00 = 0"
    assert terms["elements"][2]["elements"][0]["text"].startswith("and 5 more")
    check_limits(message)


def test_the_outcome_says_until_when_matching_calls_run() -> None:
    req = refund(NOW)
    vote = Decision(
        approver="alice", approve=True, at=NOW, args_digest=req.args_digest, via="slack:U0ALICE"
    )
    approved = req.model_copy(
        update={
            "status": RequestStatus.EXECUTED,
            "decisions": (vote,),
            "decided_by": "alice",
            "decided_at": NOW,
        }
    )
    grant = new_grant(
        agent="billing-bot",
        tool="refund",
        args={"order_id": {"eq": "A-1042"}, "amount": {"gte": 0, "lte": 249.0}},
        by="alice",
        now=NOW,
        seconds=3600,
        request_id=req.id,
    )
    message = request_message(approved, now=NOW, slack_ids={"alice": "U0ALICE"}, grant=grant)
    outcome = next(b for b in message["blocks"] if b.get("block_id") == "gk_outcome")
    words = "".join(e.get("text", "") for e in outcome["elements"][0]["elements"])
    assert words.endswith(" · ran, and matching calls until 13:03 UTC")
    made = next(b for b in message["blocks"] if b.get("block_id") == "gk_grant_made")
    assert made["elements"][0]["text"].startswith(f"Standing approval {grant.id}: refund(")
    check_limits(message)
    later = NOW + dt.timedelta(days=1)  # another day: the date is shown too
    again = request_message(approved, now=later, grant=grant)
    assert "until 2026-11-28 13:03 UTC" in str(again["blocks"])
