"""Slack Block Kit rendering: hostile text shows as written and can't ping, link or format."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from gatekeeper._canonical import digest
from gatekeeper.channels.slack._blocks import (
    ACTION_APPROVE,
    ACTION_DENY,
    ACTION_OPEN,
    ACTION_RESPOND,
    ARGS_LIMIT,
    button_value,
    fits_in_slack,
    not_approver,
    parse_button_value,
    reminder,
    request_message,
)
from gatekeeper.channels.slack._escape import check_limits, code, escape, literal, plain
from gatekeeper.channels.slack._modals import (
    COMMENT_BLOCK,
    COMMENT_INPUT,
    DENY_MODAL,
    RESPOND_MODAL,
    RESPONSE_BLOCK,
    RESPONSE_INPUT,
    deny_modal,
    parse_modal_metadata,
    respond_modal,
)
from gatekeeper.models import (
    ApprovalRequest,
    Classification,
    Decision,
    RequestStatus,
    Risk,
    ToolCall,
    Verdict,
)

UTC = dt.timezone.utc
T0 = dt.datetime(2026, 1, 1, 12, 3, tzinfo=UTC)
NOW = T0 + dt.timedelta(minutes=1)
CONSOLE = "https://gk.example/"
IDS = {"alice": "U0ALICE", "bob": "U0BOB"}
OURS = ("<@U0ALICE>", "<@U0BOB>", "<!subteam^S0FINANCE>")  # the only mentions we make
RICH_SPECIAL = {"user", "usergroup", "broadcast", "link", "channel", "emoji", "team", "date"}
P = RequestStatus


def make(
    *,
    tool: str = "refund",
    agent: str = "billing-bot",
    session_id: str = "s1",
    args: dict[str, Any] | None = None,
    reason: str | None = "the customer asked twice",
    reasons: tuple[str, ...] = ("refunds need a human",),
    rules: tuple[str, ...] = ("refunds",),
    risk: Risk = Risk.HIGH,
    irreversible: bool = False,
    quorum: int = 1,
    group: str | None = None,
    **update: Any,
) -> ApprovalRequest:
    args = {"order_id": "A-1", "amount": 20.0} if args is None else args
    call = ToolCall(
        id="c1",
        tool=tool,
        args=args,
        args_digest=digest(args),
        agent=agent,
        session_id=session_id,
        irreversible=irreversible,
        reason=reason,
        created_at=T0,
    )
    cls = Classification(verdict=Verdict.REQUIRE_APPROVAL, risk=risk, rules=rules, reasons=reasons)
    req = ApprovalRequest(
        id="r1",
        call=call,
        classification=cls,
        created_at=T0,
        expires_at=T0 + dt.timedelta(minutes=15),
        quorum=quorum,
        group=group,
        args=args,
        args_digest=call.args_digest,
    )
    return req.model_copy(update=update) if update else req


def vote(
    req: ApprovalRequest, who: str, approve: bool = True, comment: str | None = None
) -> Decision:
    return Decision(
        approver=who, approve=approve, comment=comment, at=NOW, args_digest=req.args_digest
    )


def decide(
    req: ApprovalRequest,
    status: RequestStatus,
    by: str = "alice",
    comment: str | None = None,
    **update: Any,
) -> ApprovalRequest:
    votes = (vote(req, by, status is not P.DENIED, comment),)
    if status in (P.EXPIRED, P.CANCELLED):
        votes = ()
    fields = {"status": status, "decided_by": by, "decided_at": NOW, "comment": comment}
    return req.model_copy(update={"decisions": votes, **fields, **update})


# -- walking the JSON ------------------------------------------------------------------


def texts(message: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """Every ``(kind, text)`` a person could see or click: kind is mrkdwn, plain_text,
    rich_text, url or fallback (a message's top-level, mrkdwn-parsed ``text``)."""
    for key, value in message.items():
        if key == "text" and isinstance(value, str):
            yield "fallback", value
        else:
            yield from _walk(value)


def _walk(node: Any) -> Iterator[tuple[str, str]]:
    if isinstance(node, list):
        for item in node:
            yield from _walk(item)
    elif isinstance(node, dict):
        kind = node.get("type")
        if kind in ("mrkdwn", "plain_text"):
            yield kind, node["text"]
        elif kind == "text":
            yield "rich_text", node["text"]
        else:
            for key, value in node.items():
                if key == "url":
                    yield "url", value
                else:
                    yield from _walk(value)


def special(node: Any) -> list[dict[str, Any]]:
    """Every rich text element that is not literal text (mentions, links, broadcasts...)."""
    if isinstance(node, list):
        return [e for item in node for e in special(item)]
    if isinstance(node, dict):
        if node.get("type") in RICH_SPECIAL:
            return [node]
        return [e for value in node.values() for e in special(value)]
    return []


def block(message: dict[str, Any], block_id: str) -> dict[str, Any]:
    (found,) = [b for b in message["blocks"] if b.get("block_id") == block_id]
    return found


def flat(rich: dict[str, Any]) -> list[str]:
    """A rich_text block as one string per paragraph, mentions spelled ``<@U…>``."""
    out = []
    for part in rich["elements"]:
        if part["type"] == "rich_text_list":
            out.extend(f"• {item}" for item in flat(part))
            continue
        words = []
        for e in part["elements"]:
            words.append(f"<@{e['user_id']}>" if e["type"] == "user" else e["text"])
        out.append("".join(words))
    return out


def preformatted(message: dict[str, Any]) -> str:
    args = block(message, "gk_args")
    (pre,) = [e for e in args["elements"] if e["type"] == "rich_text_preformatted"]
    (element,) = pre["elements"]
    assert element["type"] == "text"
    return str(element["text"])


def surfaces(req: ApprovalRequest) -> list[dict[str, Any]]:
    """``req`` on every surface: pending, decided in each way, reminder, modal, ephemeral."""
    out = [request_message(req, now=NOW, console_url=CONSOLE, slack_ids=IDS)]
    for status, by in [
        (P.APPROVED, "alice"),
        (P.FAILED, "alice"),
        (P.DENIED, req.call.agent),
        (P.CANCELLED, req.call.agent),
    ]:
        done = decide(req, status, by=by, comment=req.call.reason, outcome=req.call.reason)
        out.append(request_message(done, now=NOW, console_url=CONSOLE, slack_ids=IDS))
    out.append(reminder(req, now=NOW, mention="S0FINANCE"))
    out.append(deny_modal(req, channel_id="C0APPROVALS", message_ts="1767268980.000100"))
    out.append({"text": not_approver(req)})
    return out


def everywhere(text: str, **extra: Any) -> ApprovalRequest:
    """A request with ``text`` in every field an agent or a person can write."""
    return make(
        tool=text,
        agent=text,
        session_id=text,
        args={"note": text, text: [text]},
        reason=text,
        reasons=(text, f"rule matched {text}"),
        rules=(text,),
        group=text,
        quorum=2,
        **extra,
    )


MENTIONS = ["<!channel>", "<!here>", "<!everyone>", "<@U123ABC>", "<!subteam^S123>", "<#C123>"]


# -- hostile content ---------------------------------------------------------------------


@pytest.mark.parametrize("payload", [*MENTIONS, "<https://evil.example|approve>"])
def test_control_sequences_never_reach_slack_raw(payload: str) -> None:
    req = everywhere(payload)
    # an approver named like the payload voted too
    req = req.model_copy(update={"decisions": (vote(req, payload), vote(req, "alice"))})
    for message in surfaces(req):
        check_limits(message)
        for kind, text in texts(message):
            if kind in ("mrkdwn", "plain_text", "fallback"):
                rest = text
                for ours in OURS:
                    rest = rest.replace(ours, "")
                assert "<" not in rest and ">" not in rest, (kind, text)
        assert all(
            e.get("user_id") in IDS.values() or e.get("usergroup_id") == "S0FINANCE"
            for e in special(message)
        ), special(message)
    pending = request_message(req, now=NOW, slack_ids=IDS)
    escaped = "&lt;" + payload[1:-1] + "&gt;"
    assert f"Tool: {escaped}" in [t for k, t in texts(pending) if k == "plain_text"]
    assert payload in preformatted(pending)  # shown as written, in a literal element


@pytest.mark.parametrize("payload", MENTIONS)
def test_mentions_in_rich_text_stay_text(payload: str) -> None:
    req = everywhere(payload)
    message = request_message(req, now=NOW)
    rich = [t for k, t in texts(message) if k == "rich_text"]
    assert any(payload in t for t in rich)
    assert special(message) == []


def test_disguised_link_is_not_a_link() -> None:
    evil = "<https://evil.example|approve>"
    req = everywhere(evil)
    for message in surfaces(req):
        urls = [t for k, t in texts(message) if k == "url"]
        assert urls in ([], ["https://gk.example/requests/r1"])
        for kind, text in texts(message):
            if kind != "rich_text":
                assert "<http" not in text
    pending = request_message(req, now=NOW, console_url=CONSOLE)
    assert [t for k, t in texts(pending) if k == "url"] == ["https://gk.example/requests/r1"]


def test_backticks_cannot_break_out_of_the_block() -> None:
    evil = "```\n*bold* <!channel>\n```"
    benign = request_message(make(), now=NOW, console_url=CONSOLE)
    hostile_req = make(args={"order_id": evil, "amount": 20.0}, reason=evil)
    hostile = request_message(hostile_req, now=NOW, console_url=CONSOLE)
    shape = [(b["type"], b.get("block_id")) for b in benign["blocks"]]
    assert [(b["type"], b.get("block_id")) for b in hostile["blocks"]] == shape
    assert json.dumps(evil)[1:-1] in preformatted(hostile)  # verbatim, as JSON
    assert flat(block(hostile, "gk_agent_reason"))[1] == evil.replace("\n", "\u23ce\n")
    assert special(hostile) == []


def test_bidi_and_invisible_characters_are_shown_everywhere() -> None:
    sneaky = "invoice\u202efdp.exe \u200bpay\u2066pal\u2069"
    req = everywhere(sneaky)
    req = req.model_copy(update={"decisions": (vote(req, sneaky),)})
    for message in surfaces(req):
        raw = json.dumps(message, ensure_ascii=False)
        for ch in "\u202e\u200b\u2066\u2069":
            assert ch not in raw
    pending = request_message(req, now=NOW)
    assert "invoice<U+202E>fdp.exe" in preformatted(pending)
    assert "Tool: invoice&lt;U+202E&gt;fdp.exe &lt;U+200B&gt;pay" in json.dumps(pending)


def test_newlines_cannot_forge_a_field() -> None:
    forged = "refund\nRisk: low"
    message = request_message(make(tool=forged, agent=forged), now=NOW)
    fields = [f["text"] for f in block(message, "gk_summary")["fields"]]
    assert "Tool: refund&lt;U+000A&gt;Risk: low" in fields
    assert all("\n" not in f for f in fields)
    assert "\n" not in message["text"]


def test_emoji_codes_and_formatting_do_nothing() -> None:
    message = request_message(make(tool=":white_check_mark: *approved*"), now=NOW)
    for kind, text in texts(message):
        assert kind != "mrkdwn" or ":white_check_mark:" not in text
    objects = [o for o in _objects(message) if o["type"] == "plain_text"]
    assert objects
    assert all(o["emoji"] is False for o in objects)
    assert all(o["verbatim"] is True for o in _objects(message) if o["type"] == "mrkdwn")
    assert message["text"] == "Approval needed: `:white_check_mark: *approved*` (risk high)"


def _objects(node: Any) -> list[dict[str, Any]]:
    if isinstance(node, list):
        return [o for item in node for o in _objects(item)]
    if isinstance(node, dict):
        if node.get("type") in ("plain_text", "mrkdwn"):
            return [node]
        return [o for value in node.values() for o in _objects(value)]
    return []


# -- size ---------------------------------------------------------------------------------


def test_huge_arguments_are_cut_and_cannot_be_approved_from_slack() -> None:
    req = make(args={"blob": "x" * 100_000})
    assert not fits_in_slack(req)
    message = request_message(req, now=NOW, console_url=CONSOLE)
    check_limits(message)
    assert len(json.dumps(message)) < 8000
    actions = block(message, "gk_actions")["elements"]
    assert [a["action_id"] for a in actions] == [ACTION_DENY, ACTION_RESPOND, ACTION_OPEN]
    total = len(json.dumps(req.args, indent=2))
    note = block(message, "gk_truncated")["elements"][0]["text"]
    assert note.startswith(
        f"Arguments truncated: showing 2,500 of {total:,} characters. "
        "Open the console to see everything."
    )
    shown = preformatted(message)
    assert shown.startswith('{\n  "blob": "xxx')
    assert shown.endswith(f"… ({total - ARGS_LIMIT:,} more characters)")

    without_console = request_message(req, now=NOW)
    actions = block(without_console, "gk_actions")["elements"]
    assert [a["action_id"] for a in actions] == [ACTION_DENY, ACTION_RESPOND]


def test_arguments_at_the_limit_still_fit() -> None:
    padding = ARGS_LIMIT - len(json.dumps({"a": ""}, indent=2))
    req = make(args={"a": "y" * padding})
    assert fits_in_slack(req)
    assert not fits_in_slack(make(args={"a": "y" * (padding + 1)}))
    message = request_message(req, now=NOW)
    assert block(message, "gk_actions")["elements"][0]["action_id"] == ACTION_APPROVE
    assert not [b for b in message["blocks"] if b.get("block_id") == "gk_truncated"]


def test_every_piece_is_bounded() -> None:
    big = "w" * 20_000
    req = make(
        tool=big,
        agent=big,
        session_id=big,
        args={big: big},
        reason=big,
        reasons=tuple(big for _ in range(40)),
        rules=(big,) * 5,
        group=big,
        quorum=30,
        irreversible=True,
    )
    voters = tuple(vote(req, f"{i}{big}") for i in range(25))
    req = req.model_copy(update={"decisions": voters})
    for message in surfaces(req):
        check_limits(message)
        assert len(json.dumps(message)) < 20_000
    rich = flat(block(request_message(req, now=NOW), "gk_reasons"))
    assert rich[-1] == "and 30 more"


def test_the_rules_that_did_not_match_follow_the_reasons_literal_and_bounded() -> None:
    """What Policy.misses says is shown as literal text: no mrkdwn, no mention, one line each."""
    misses = ("rule big-refund: args.amount 50 is not > 100", "rule x: args.n *<!here>*\nfake")
    message = request_message(make(), now=NOW, misses=misses + ("more",) * 12)
    check_limits(message)
    kinds = [b["block_id"] for b in message["blocks"]]
    assert kinds.index("gk_misses") == kinds.index("gk_reasons") + 1
    rich = flat(block(message, "gk_misses"))
    assert rich[:3] == [
        "Rules for this tool that did not match:",
        "• rule big-refund: args.amount 50 is not > 100",
        "• rule x: args.n *<!here>*<U+000A>fake",
    ]
    assert rich[-1] == "and 4 more"
    assert "gk_misses" not in json.dumps(request_message(make(), now=NOW))


# -- states -------------------------------------------------------------------------------


def test_pending_message_structure() -> None:
    req = make()
    message = request_message(req, now=NOW, console_url=CONSOLE, slack_ids=IDS)
    check_limits(message)
    assert message["text"] == "Approval needed: `refund` (risk high)"
    kinds = [(b["type"], b["block_id"]) for b in message["blocks"]]
    assert kinds == [
        ("header", "gk_header"),
        ("section", "gk_summary"),
        ("rich_text", "gk_reasons"),
        ("rich_text", "gk_agent_reason"),
        ("rich_text", "gk_args"),
        ("context", "gk_status"),
        ("actions", "gk_actions"),
    ]
    assert block(message, "gk_header")["text"]["text"] == "🟠 Approval needed: refund"
    fields = [f["text"] for f in block(message, "gk_summary")["fields"]]
    assert fields == [
        "Risk: high",
        "Tool: refund",
        "Agent: billing-bot",
        "Session: s1",
        "Rules: refunds",
        "Request: r1",
    ]
    assert flat(block(message, "gk_reasons"))[0] == "Held because:"
    assert flat(block(message, "gk_agent_reason")) == [
        "The agent says:",
        "the customer asked twice",
    ]
    assert preformatted(message) == json.dumps(req.args, indent=2, sort_keys=True)
    status = block(message, "gk_status")["elements"]
    assert [e["text"] for e in status] == ["Expires in 14 min (at 12:18 UTC)"]
    actions = block(message, "gk_actions")["elements"]
    ids = [ACTION_APPROVE, ACTION_DENY, ACTION_RESPOND, ACTION_OPEN]
    assert [a["action_id"] for a in actions] == ids
    assert [a["text"]["text"] for a in actions] == ["Approve", "Deny", "Respond", "Open in console"]
    assert [a.get("style") for a in actions] == ["primary", "danger", None, None]
    assert {a.get("value") for a in actions[:3]} == {button_value(req)}
    assert actions[3]["url"] == "https://gk.example/requests/r1"
    assert "confirm" not in actions[0]


def test_edited_arguments_say_so() -> None:
    req = make()
    edited = req.model_copy(
        update={"args": {"amount": 5.0}, "args_digest": digest({"amount": 5.0})}
    )
    label = flat(block(request_message(edited, now=NOW), "gk_args"))[0]
    assert "edited by an approver" in label
    assert digest({"amount": 5.0})[:12] in label
    assert "edited" not in flat(block(request_message(req, now=NOW), "gk_args"))[0]


@pytest.mark.parametrize(
    ("status", "by", "comment", "header", "line"),
    [
        (
            P.APPROVED,
            "alice",
            None,
            "✅ Approved: refund",
            "✅ Approved by <@U0ALICE> at 12:04 UTC",
        ),
        (P.EXECUTING, "alice", None, "✅ Approved, running: refund", "at 12:04 UTC · running"),
        (P.EXECUTED, "alice", None, "✅ Approved and ran: refund", "at 12:04 UTC · ran"),
        (P.FAILED, "alice", None, "⚠️ Approved, the tool failed: refund", "· the tool failed"),
        (
            P.DENIED,
            "bob",
            "use the sandbox",
            "⛔ Denied: refund",
            "⛔ Denied by <@U0BOB> at 12:04 UTC:",
        ),
        (P.DENIED, "carol", None, "⛔ Denied: refund", "⛔ Denied by carol at 12:04 UTC"),
        (
            P.EXPIRED,
            None,
            None,
            "⌛ Expired: refund",
            "⌛ Expired — denied (nobody decided in time)",
        ),
        (
            P.CANCELLED,
            "alice",
            "halted: runaway spend",
            "🛑 Cancelled: refund",
            "🛑 Cancelled — agent halted by <@U0ALICE> at 12:04 UTC:",
        ),
        (
            P.CANCELLED,
            "agent:billing-bot",
            "the caller stopped waiting",
            "🛑 Cancelled: refund",
            "🛑 Cancelled by agent:billing-bot at 12:04 UTC:",
        ),
    ],
)
def test_outcomes(
    status: RequestStatus, by: str | None, comment: str | None, header: str, line: str
) -> None:
    req = decide(make(), status, by=by or "", comment=comment, outcome="boom <!here>")
    if by is None:
        req = req.model_copy(update={"decided_by": None, "decided_at": None})
    message = request_message(req, now=NOW, console_url=CONSOLE, slack_ids=IDS)
    check_limits(message)
    assert not [b for b in message["blocks"] if b["type"] == "actions"]
    assert block(message, "gk_header")["text"]["text"] == header
    outcome = flat(block(message, "gk_outcome"))
    assert line in outcome[0]
    if status is P.DENIED and comment:
        assert outcome[1:] == [comment]
    if status is P.CANCELLED:
        assert outcome[1:] == [comment.removeprefix("halted: ")]  # type: ignore[union-attr]
    failure = [b for b in message["blocks"] if b.get("block_id") == "gk_failure"]
    if status is P.FAILED:
        assert failure[0]["elements"][0]["text"] == "The tool failed: boom &lt;!here&gt;"
    else:
        assert failure == []
    assert message["text"].endswith("`refund` (risk high)")


def test_denial_without_comment_has_no_quote() -> None:
    message = request_message(decide(make(), P.DENIED, by="bob"), now=NOW, slack_ids=IDS)
    assert flat(block(message, "gk_outcome")) == ["⛔ Denied by <@U0BOB> at 12:04 UTC"]


def test_pending_past_expiry_reads_expired() -> None:
    message = request_message(make(), now=T0 + dt.timedelta(minutes=16), console_url=CONSOLE)
    assert not [b for b in message["blocks"] if b["type"] == "actions"]
    assert flat(block(message, "gk_outcome"))[0].startswith("⌛ Expired")


def test_quorum_progress() -> None:
    req = make(quorum=2, group="finance")
    req = req.model_copy(update={"decisions": (vote(req, "alice"),)})
    message = request_message(req, now=NOW, slack_ids=IDS)
    status = [e["text"] for e in block(message, "gk_status")["elements"]]
    assert status == [
        "Expires in 14 min (at 12:18 UTC)",
        "Approvals 1 of 2: <@U0ALICE>",
        "Approvers: group finance",
    ]
    unknown = req.model_copy(update={"decisions": (vote(req, "carol"),)})
    status = block(request_message(unknown, now=NOW, slack_ids=IDS), "gk_status")["elements"]
    assert [(e["type"], e["text"]) for e in status[1:3]] == [
        ("mrkdwn", "Approvals 1 of 2:"),
        ("plain_text", "carol"),
    ]
    none = block(request_message(make(quorum=3), now=NOW), "gk_status")["elements"]
    assert none[1]["text"] == "Approvals 0 of 3"
    # a vote for arguments since edited does not count
    stale = req.model_copy(update={"args_digest": "f" * 64})
    status = block(request_message(stale, now=NOW, slack_ids=IDS), "gk_status")["elements"]
    assert status[1]["text"] == "Approvals 0 of 2"


def test_quorum_approval_names_everyone() -> None:
    req = make(quorum=2)
    done = decide(req, P.APPROVED).model_copy(
        update={"decisions": (vote(req, "alice"), vote(req, "bob"))}
    )
    line = flat(block(request_message(done, now=NOW, slack_ids=IDS), "gk_outcome"))[0]
    assert line == "✅ Approved by <@U0ALICE> and <@U0BOB> at 12:04 UTC"


def test_irreversible_or_critical_calls_ask_again() -> None:
    approve = block(request_message(make(irreversible=True), now=NOW), "gk_actions")["elements"][0]
    confirm = approve["confirm"]
    assert confirm["text"]["text"] == "This cannot be undone. Run refund with the arguments shown?"
    assert confirm["confirm"]["text"] == "Approve"
    critical = make(risk=Risk.CRITICAL, tool="<!here>")
    approve = block(request_message(critical, now=NOW), "gk_actions")["elements"][0]
    assert "&lt;!here&gt;" in approve["confirm"]["text"]["text"]
    message = request_message(make(irreversible=True), now=NOW)
    assert "Undo: not possible (irreversible)" in json.dumps(message)


def test_times_on_another_day_carry_the_date() -> None:
    req = make().model_copy(update={"expires_at": T0 + dt.timedelta(days=1, hours=2)})
    status = block(request_message(req, now=NOW), "gk_status")["elements"][0]["text"]
    assert status == "Expires in 25 h 59 min (at 2026-01-02 14:03 UTC)"


# -- buttons, modal, reminder, ephemeral -----------------------------------------------


def test_button_value_round_trips() -> None:
    req = make()
    assert parse_button_value(button_value(req)) == ("r1", req.args_digest[:16])
    ulid = req.model_copy(update={"id": "01hx5z8r4k3m2n1p0q9r8s7t6v"})
    assert parse_button_value(button_value(ulid))[0] == ulid.id


@pytest.mark.parametrize(
    "value",
    [
        "",
        "r1",
        "r1:",
        ":" + "a" * 16,
        "r1:" + "a" * 15,
        "r1:" + "a" * 17,
        "r1:" + "A" * 16,
        "r1:" + "g" * 16,
        "r 1:" + "a" * 16,
        "r1:" + "a" * 16 + "\n",
        "x:r1:" + "a" * 16,
        "x" * 200 + ":" + "a" * 16,
        "<@U1>:" + "a" * 16,
        123,
        None,
    ],
)
def test_malformed_button_values_are_refused(value: Any) -> None:
    with pytest.raises(ValueError, match="not a gatekeeper button value"):
        parse_button_value(value)


def test_a_request_id_we_could_not_read_back_is_refused() -> None:
    with pytest.raises(ValueError, match="not a gatekeeper button value"):
        button_value(make().model_copy(update={"id": "r:1"}))


def test_deny_modal() -> None:
    req = make(tool="<!channel>")
    modal = deny_modal(req, channel_id="C0APPROVALS", message_ts="1767268980.000100")
    check_limits(modal)
    assert modal["type"] == "modal"
    assert modal["callback_id"] == DENY_MODAL
    assert [modal[k]["text"] for k in ("title", "submit", "close")] == [
        "Deny request",
        "Deny",
        "Cancel",
    ]
    meta = modal["private_metadata"]
    assert meta == '{"r":"r1","c":"C0APPROVALS","t":"1767268980.000100"}'
    assert parse_modal_metadata(meta) == ("r1", "C0APPROVALS", "1767268980.000100")
    (field,) = [b for b in modal["blocks"] if b.get("block_id") == COMMENT_BLOCK]
    assert field["type"] == "input"
    assert field["label"]["text"] == "Why? The agent reads this."
    assert field["element"] == {
        "type": "plain_text_input",
        "action_id": COMMENT_INPUT,
        "multiline": True,
        "max_length": 1000,
    }
    what = modal["blocks"][0]["text"]
    assert what == plain("Deny &lt;!channel&gt; (risk high) for agent billing-bot?")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "{}",
        "[1]",
        "not json",
        '{"r":"r1","c":"C0A","t":"1.2","x":1}',
        '{"r":"r 1","c":"C0A","t":"1.2"}',
        '{"r":"r1","c":"general","t":"1.2"}',
        '{"r":"r1","c":"C0A","t":"now"}',
        '{"r":"r1","c":"C0A","t":1.2}',
        "[" * 2999,
        " " * 3001,
    ],
)
def test_malformed_modal_metadata_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not gatekeeper modal metadata"):
        parse_modal_metadata(text)


def test_deny_modal_refuses_ids_it_could_not_read_back() -> None:
    with pytest.raises(ValueError, match="not gatekeeper modal metadata"):
        deny_modal(make(), channel_id="<!channel>", message_ts="1.2")


def test_reminder_mentions_exactly_the_group() -> None:
    req = make(tool="<!here> refund")
    later = T0 + dt.timedelta(minutes=12)
    nudge = reminder(req, now=later, mention="S0FINANCE")
    check_limits(nudge)
    assert nudge["text"] == (
        "<!subteam^S0FINANCE> still waiting: `&lt;!here&gt; refund` (risk high) "
        "has waited 12 min; expires in 3 min."
    )
    assert re.findall(r"<[^>]*>", nudge["text"]) == ["<!subteam^S0FINANCE>"]
    assert special(nudge) == [{"type": "usergroup", "usergroup_id": "S0FINANCE"}]
    (line,) = nudge["blocks"][0]["elements"]
    tool = [e for e in line["elements"] if e.get("style") == {"code": True}]
    assert tool == [{"type": "text", "text": "<!here> refund", "style": {"code": True}}]


def test_reminder_falls_back_to_a_name() -> None:
    req = make()
    by_name = reminder(req, now=NOW, mention="<!channel> finance")
    assert special(by_name) == []
    assert by_name["text"].startswith("`&lt;!channel&gt; finance` still waiting: `refund`")
    nobody = reminder(req, now=T0 + dt.timedelta(minutes=20), mention=None)
    assert (
        nobody["text"] == "Still waiting: `refund` (risk high) has waited 20 min; it has expired."
    )
    person = reminder(req, now=NOW, mention="U0ALICE")
    assert special(person) == [{"type": "user", "user_id": "U0ALICE"}]
    assert person["text"].startswith("<@U0ALICE> still waiting")


def test_not_approver() -> None:
    assert not_approver(None) == "You are not an approver for this request."
    assert not_approver(make()) == "You are not an approver for this request."
    assert not_approver(make(group="<!channel>")) == (
        "You are not an approver for this request. "
        "It needs an approver from group `&lt;!channel&gt;`."
    )


# -- the escaping helpers -----------------------------------------------------------------


def test_escape_makes_entities_and_bounds_the_result() -> None:
    assert escape("a<b>&c", 100) == "a&lt;b&gt;&amp;c"
    assert escape("&lt;", 100) == "&amp;lt;"
    assert escape(None, 10) == ""
    cut = escape("<" * 100, 40)
    assert len(cut) <= 40
    assert cut.endswith(" more characters)")
    assert cut.split("…")[0] == "&lt;" * (len(cut.split("…")[0]) // 4)  # no half entity
    assert escape("a\nb", 10) == "a\nb"
    assert escape("a\nb", 20, one_line=True) == "a&lt;U+000A&gt;b"
    assert escape("x" * 10_000, 60) == "x" * 34 + "… (9,966 more characters)"


def test_literal_only_makes_visible_and_bounds() -> None:
    assert literal("<!channel> & co", 100) == "<!channel> & co"
    assert literal("a\u202eb", 100) == "a<U+202E>b"
    assert len(literal("\u200b" * 1000, 50)) <= 50


def test_code_spans_cannot_be_closed_or_broken() -> None:
    assert code("refund", 50) == "`refund`"
    assert code("a`b", 50) == "`a&lt;U+0060&gt;b`"
    assert code(" *x* ", 50) == "`&lt;U+0020&gt;*x*&lt;U+0020&gt;`"
    assert code("", 50) == "`(empty)`"
    assert code("a\nb", 50) == "`a&lt;U+000A&gt;b`"
    bounded = code("z" * 500, 60)
    assert len(bounded) <= 60 and bounded.startswith("`z") and bounded.endswith(")`")


def test_check_limits_finds_problems() -> None:
    check_limits(request_message(make(), now=NOW))
    with pytest.raises(ValueError, match="150"):
        check_limits({"text": "x", "blocks": [{"type": "header", "text": plain("h" * 151)}]})
    with pytest.raises(ValueError, match="blocks"):
        check_limits({"text": "x", "blocks": [{"type": "divider"}] * 51})
    button = {"type": "button", "action_id": "a", "text": plain("")}
    with pytest.raises(ValueError, match=r"0 characters, not 1\.\.75"):
        check_limits({"text": "x", "blocks": [{"type": "actions", "elements": [button]}]})


# -- respond, and questions from the agent ------------------------------------------------

HOSTILE = ["<!channel>", "<@U123>", "*bold*", "<https://evil.example|click>", "_x_ ~y~ `z`"]


def question(
    text: str = "Which account should the refund go to?", **update: Any
) -> ApprovalRequest:
    """A question the agent asks a person, as ``gate.ask_tool()`` holds it."""
    return make(
        tool="ask_a_person",
        args={"question": text},
        reason=None,
        reasons=("the agent asks a person a question",),
        rules=("question",),
        kind="question",
        **update,
    )


def responded(req: ApprovalRequest, text: str, by: str = "alice") -> ApprovalRequest:
    answer = vote(req, by, approve=False).model_copy(update={"response": text})
    fields = {"decisions": (answer,), "decided_by": by, "decided_at": NOW, "response": text}
    return req.model_copy(update={"status": P.RESPONDED, **fields})


def action_ids(message: dict[str, Any]) -> list[str]:
    return [
        a["action_id"] for b in message["blocks"] if b["type"] == "actions" for a in b["elements"]
    ]


def test_respond_is_offered_only_where_the_rule_allows_it() -> None:
    req = make()
    assert ACTION_RESPOND in action_ids(request_message(req, now=NOW))
    assert ACTION_RESPOND not in action_ids(request_message(req, now=NOW, respond=False))
    recorded = req.model_copy(
        update={
            "classification": req.classification.model_copy(
                update={
                    "approval": req.classification.approval.model_copy(update={"respond": False})
                }
            )
        }
    )
    # Without the gate's word, the rule as the request recorded it decides.
    assert action_ids(request_message(recorded, now=NOW)) == [ACTION_APPROVE, ACTION_DENY]
    assert ACTION_RESPOND in action_ids(request_message(recorded, now=NOW, respond=True))


def test_a_question_shows_the_question_and_offers_answer_and_decline_never_approve() -> None:
    req = question(group="finance")
    message = request_message(req, now=NOW, console_url=CONSOLE, slack_ids=IDS, respond=False)
    check_limits(message)
    assert message["text"] == (
        "Question from `billing-bot`: `Which account should the refund go to?`"
    )
    assert [b["block_id"] for b in message["blocks"]] == [
        "gk_header",
        "gk_question",
        "gk_summary",
        "gk_status",
        "gk_actions",
    ]
    assert block(message, "gk_header")["text"]["text"] == "❓ Question from billing-bot"
    assert flat(block(message, "gk_question")) == [
        "billing-bot asks:",
        "Which account should the refund go to?",
    ]
    fields = [f["text"] for f in block(message, "gk_summary")["fields"]]
    assert fields == ["Agent: billing-bot", "Session: s1", "Request: r1"]
    actions = block(message, "gk_actions")["elements"]
    assert [(a["action_id"], a["text"]["text"], a.get("style")) for a in actions] == [
        (ACTION_RESPOND, "Answer", "primary"),
        (ACTION_DENY, "Decline", "danger"),
        (ACTION_OPEN, "Open in console", None),
    ]
    assert {a.get("value") for a in actions[:2]} == {button_value(req)}


def test_a_responded_call_says_who_answered_and_quotes_what_the_agent_got() -> None:
    done = responded(make(), "Refunded by hand: ticket 4411\nsecond line")
    message = request_message(done, now=NOW, console_url=CONSOLE, slack_ids=IDS)
    check_limits(message)
    assert action_ids(message) == []
    assert block(message, "gk_header")["text"]["text"] == "💬 Responded: refund"
    assert message["text"] == "Responded: `refund` (risk high)"
    assert flat(block(message, "gk_outcome")) == [
        "💬 Responded by <@U0ALICE> at 12:04 UTC · the tool did not run; the agent got:",
        "Refunded by hand: ticket 4411\nsecond line",
    ]


def test_an_answered_or_declined_question_says_so() -> None:
    answered = request_message(responded(question(), "The EUR account"), now=NOW, slack_ids=IDS)
    check_limits(answered)
    assert action_ids(answered) == []
    assert (
        block(answered, "gk_header")["text"]["text"] == "💬 Answered: a question from billing-bot"
    )
    assert answered["text"] == "Answered: a question from `billing-bot`"
    assert flat(block(answered, "gk_outcome")) == [
        "💬 Answered by <@U0ALICE> at 12:04 UTC:",
        "The EUR account",
    ]
    assert flat(block(answered, "gk_question"))[1] == "Which account should the refund go to?"
    declined = decide(question(), P.DENIED, by="bob", comment="ask the customer instead")
    message = request_message(declined, now=NOW, slack_ids=IDS)
    assert block(message, "gk_header")["text"]["text"] == "⛔ Declined: a question from billing-bot"
    assert flat(block(message, "gk_outcome")) == [
        "⛔ Declined by <@U0BOB> at 12:04 UTC:",
        "ask the customer instead",
    ]
    expired = request_message(question(), now=T0 + dt.timedelta(hours=1))
    assert block(expired, "gk_header")["text"]["text"] == "⌛ Expired: a question from billing-bot"


def _question_surfaces(text: str) -> list[dict[str, Any]]:
    """``text`` as a question and as a person's answer, on every surface that shows them."""
    asked = question(text, agent=text, group="finance")
    call = make(args={"note": text})
    where = {"channel_id": "C0APPROVALS", "message_ts": "1767268980.000100"}
    return [
        request_message(asked, now=NOW, console_url=CONSOLE, slack_ids=IDS),
        request_message(responded(asked, text, by=text), now=NOW, slack_ids=IDS),
        request_message(decide(asked, P.DENIED, by=text, comment=text), now=NOW, slack_ids=IDS),
        request_message(responded(call, text), now=NOW, console_url=CONSOLE, slack_ids=IDS),
        respond_modal(asked, **where),
        respond_modal(call, **where),
        deny_modal(asked, **where),
    ]


@pytest.mark.parametrize("payload", HOSTILE)
def test_hostile_questions_and_answers_show_as_written_and_do_nothing(payload: str) -> None:
    for message in _question_surfaces(f"{payload} pay now"):
        check_limits(message)
        assert special(message) == [] or all(
            e.get("user_id") in IDS.values() for e in special(message)
        ), special(message)
        for kind, text in texts(message):
            if kind in ("mrkdwn", "plain_text", "fallback"):
                rest = text.replace("<@U0ALICE>", "").replace("<@U0BOB>", "")
                assert "<" not in rest and ">" not in rest, (kind, text)
            if kind == "mrkdwn":
                assert payload not in text, text  # our words only: the agent's text is never mrkdwn
            if kind == "url":
                assert text == "https://gk.example/requests/r1"
    asked = request_message(question(f"{payload} pay now"), now=NOW)
    assert flat(block(asked, "gk_question"))[1] == f"{payload} pay now"  # as written, literal
    assert asked["text"].endswith(f"{code(payload + ' pay now', 300)}")


def test_a_huge_question_and_answer_are_bounded_everywhere() -> None:
    huge = "<!channel> " + "q" * 20_000
    for message in _question_surfaces(huge):
        check_limits(message)
        assert len(json.dumps(message)) < 20_000
    asked = request_message(question(huge), now=NOW)
    shown = flat(block(asked, "gk_question"))[1]
    assert len(shown) <= 2500 and shown.endswith(" more characters)")
    note = block(asked, "gk_truncated")["elements"][0]["text"]
    assert note.startswith("The question is 20,011 characters long")
    answered = request_message(responded(make(), huge), now=NOW)
    quoted = flat(block(answered, "gk_outcome"))[1]
    assert len(quoted) <= 2500 and quoted.endswith(" more characters)")


def test_respond_modal() -> None:
    req = make(tool="<!channel>")
    modal = respond_modal(req, channel_id="C0APPROVALS", message_ts="1767268980.000100")
    check_limits(modal)
    assert modal["callback_id"] == RESPOND_MODAL
    assert [modal[k]["text"] for k in ("title", "submit", "close")] == [
        "Respond instead",
        "Respond",
        "Cancel",
    ]
    assert parse_modal_metadata(modal["private_metadata"]) == (
        "r1",
        "C0APPROVALS",
        "1767268980.000100",
    )
    (field,) = [b for b in modal["blocks"] if b.get("block_id") == RESPONSE_BLOCK]
    assert field["label"]["text"] == "The result the agent gets instead of running the tool"
    assert field["element"] == {
        "type": "plain_text_input",
        "action_id": RESPONSE_INPUT,
        "multiline": True,
        "max_length": 3000,  # the most Slack takes (plain-text input)
    }
    what = modal["blocks"][0]["text"]["text"]
    assert what.startswith("Answer for &lt;!channel&gt; (risk high) instead of running it?")


def test_a_questions_modals_quote_it_and_are_worded_for_it() -> None:
    asked = question("Refund <@U123> *now*?\nYes or no")
    where = {"channel_id": "C0APPROVALS", "message_ts": "1767268980.000100"}
    answer = respond_modal(asked, **where)
    check_limits(answer)
    assert [answer[k]["text"] for k in ("title", "submit")] == ["Answer question", "Answer"]
    shown = [b["text"]["text"] for b in answer["blocks"] if b["type"] == "section"]
    assert shown == ["billing-bot asks:", "Refund &lt;@U123&gt; *now*?\u23ce\nYes or no"]
    (field,) = [b for b in answer["blocks"] if b["type"] == "input"]
    assert field["label"]["text"] == "Your answer. The agent reads this."
    decline = deny_modal(asked, **where)
    check_limits(decline)
    assert decline["callback_id"] == DENY_MODAL
    assert [decline[k]["text"] for k in ("title", "submit")] == ["Decline question", "Decline"]
    (field,) = [b for b in decline["blocks"] if b["type"] == "input"]
    assert field["block_id"] == COMMENT_BLOCK
