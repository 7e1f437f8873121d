"""Block Kit for held calls: what an approver sees in Slack, and nothing the agent can forge.

Pure functions from an :class:`~gatekeeper.models.ApprovalRequest` to the JSON
that ``chat.postMessage`` / ``chat.update`` take; no I/O (the modals are in
:mod:`._modals`). A held call offers Approve, Deny and Respond (write the
tool's result instead of running it); a question the agent asks a person
(``kind == "question"``) shows the question and offers Answer and Decline.
How untrusted text is made harmless is described in :mod:`._escape`; in short:

* the arguments, the agent's reason, the policy's reasons, comments and names
  in outcome lines are ``rich_text`` text elements (literal: no mrkdwn, no
  ``<...>``), made visible and bounded;
* the summary **fields are plain_text** (``Tool: refund``), as are the header,
  buttons and the modal: plain_text does no formatting, so an escaped value
  can't bold, strike, quote or link anything;
* mrkdwn carries only our own words, times, counts and mentions built from
  validated ids (``verbatim: true``); the fallback ``text`` (shown in push
  notifications) names the tool as an inline code span.

An approver must approve only what they could see: when the arguments are
longer than :data:`ARGS_LIMIT` the message says so and offers no Approve
button (see :func:`fits_in_slack`), and every button value carries the
first 16 hex digits of the arguments' digest, so a click approves exactly
the arguments that were shown.

Where the request can carry a standing approval, a second button approves
it and lets the agent's matching calls run without asking for
:data:`GRANT_SECONDS`; the message lists what those calls must match (the
same tool, held by the same rules; each argument equal to the value shown),
and once approved says until when.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import sys
import types
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from ..._grants import Grant, conditions_for
from ..._text import call_lookalikes, lookalike_warnings, pretty_json
from ...models import ApprovalRequest, Classification, RequestStatus, Risk
from ._escape import (
    Block,
    code,
    escape,
    group_mention,
    literal,
    marker,
    md,
    people,
    people_context,
    plain,
    rt_block,
    rt_line,
    rt_quote,
    rt_text,
    user_mention,
)

__all__ = [
    "ACTION_APPROVE",
    "ACTION_APPROVE_GRANT",
    "ACTION_DENY",
    "ACTION_DENY_COMMENT",
    "ACTION_OPEN",
    "ACTION_RESPOND",
    "ARGS_LIMIT",
    "GRANT_SECONDS",
    "button_value",
    "fits_in_slack",
    "not_approver",
    "parse_button_value",
    "reminder",
    "request_message",
]

ACTION_APPROVE = "gk_approve"
# Approve, and let matching calls run without asking for GRANT_SECONDS (a standing approval).
ACTION_APPROVE_GRANT = "gk_approve_grant"
ACTION_DENY = "gk_deny"
# Messages posted before Deny asked for the reason itself still carry this button;
# a click on it opens the same modal as Deny.
ACTION_DENY_COMMENT = "gk_deny_comment"
ACTION_OPEN = "gk_open"
# Respond on a call, Answer on a question: both open the modal for the text the agent gets.
ACTION_RESPOND = "gk_respond"

ARGS_LIMIT = 2500  # characters of pretty, visible JSON an approver can read in Slack
REASON_LIMIT = 1000  # the agent's stated reason
COMMENT_LIMIT = 500  # a decision's comment, a failure's outcome
QUESTION_LIMIT = 2500  # the question an agent asks a person
RESPONSE_LIMIT = 2500  # what a person answered, quoted once the request is done
ITEM_LIMIT = 300  # one policy reason
MAX_REASONS = 10
HEADER_LIMIT = 150
GRANT_SECONDS = 3600.0  # how long Slack's "Approve + matching" lets matching calls run
MAX_CONDITIONS = 20  # conditions listed one by one under that button; the rest summed up

_P = RequestStatus
_APPROVED = (_P.APPROVED, _P.EXECUTING, _P.EXECUTED, _P.FAILED)
_RISK_EMOJI = {Risk.LOW: "🟢", Risk.MEDIUM: "🟡", Risk.HIGH: "🟠", Risk.CRITICAL: "🔴"}
_HEADLINE = {  # status: (emoji, words) for the header and the notification text
    _P.PENDING: ("", "Approval needed"),
    _P.APPROVED: ("✅", "Approved"),
    _P.EXECUTING: ("✅", "Approved, running"),
    _P.EXECUTED: ("✅", "Approved and ran"),
    _P.FAILED: ("⚠️", "Approved, the tool failed"),
    _P.DENIED: ("⛔", "Denied"),
    _P.EXPIRED: ("⌛", "Expired"),
    _P.CANCELLED: ("🛑", "Cancelled"),
    _P.RESPONDED: ("💬", "Responded"),
    _P.ABANDONED: ("🚫", "Abandoned"),
    _P.OUTCOME_UNKNOWN: ("❓", "Outcome unknown"),
}
_QUESTION_HEADLINE = {  # a question reads differently where it ends differently
    _P.PENDING: ("❓", "Question"),
    _P.RESPONDED: ("💬", "Answered"),
    _P.DENIED: ("⛔", "Declined"),
}
_SUFFIX = {_P.EXECUTING: " · running", _P.EXECUTED: " · ran", _P.FAILED: " · the tool failed"}
_NO_IDS: Mapping[str, str] = types.MappingProxyType({})
_VALUE = re.compile(r"([A-Za-z0-9][A-Za-z0-9._-]{0,127}):([0-9a-f]{16})")


# -- button values --------------------------------------------------------------


def button_value(request: ApprovalRequest) -> str:
    """``"<request id>:<first 16 hex digits of the args digest>"``: what a click decides."""
    value = f"{request.id}:{request.args_digest[:16]}"
    parse_button_value(value)  # an id the parser would refuse is a configuration error
    return value


def parse_button_value(value: str) -> tuple[str, str]:
    """``(request_id, digest_prefix)`` from a button value; ValueError if malformed."""
    found = _VALUE.fullmatch(value) if isinstance(value, str) and len(value) <= 160 else None
    if found is None:
        raise ValueError("not a gatekeeper button value")
    return found.group(1), found.group(2)


# -- small builders ---------------------------------------------------------------


def _clock(at: dt.datetime, now: dt.datetime) -> str:
    at, now = at.astimezone(dt.timezone.utc), now.astimezone(dt.timezone.utc)
    return f"{at:%H:%M} UTC" if at.date() == now.date() else f"{at:%Y-%m-%d %H:%M} UTC"


def _span(delta: dt.timedelta) -> str:
    seconds = max(int(delta.total_seconds()), 0)
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{hours // 24} days"


def _short(session_id: str) -> str:
    return session_id if len(session_id) <= 20 else session_id[:16] + "…"


# -- the message --------------------------------------------------------------------


def _args_text(request: ApprovalRequest) -> tuple[str, int, int]:
    """(text for the preformatted element, characters shown, characters in all)."""
    full = pretty_json(request.args, limit=sys.maxsize)  # visible, not cut
    if len(full) <= ARGS_LIMIT:
        return full, len(full), len(full)
    return f"{full[:ARGS_LIMIT]}\n{marker(len(full) - ARGS_LIMIT)}", ARGS_LIMIT, len(full)


def fits_in_slack(request: ApprovalRequest) -> bool:
    """True when all of the arguments show in the message, so it may be approved from Slack."""
    _, shown, total = _args_text(request)
    return shown == total


def _is_question(request: ApprovalRequest) -> bool:
    return request.is_question


def _headline(request: ApprovalRequest, status: RequestStatus) -> tuple[str, str]:
    if _is_question(request) and status in _QUESTION_HEADLINE:
        return _QUESTION_HEADLINE[status]
    return _HEADLINE[status]


def _fallback(request: ApprovalRequest, status: RequestStatus) -> str:
    headline = _headline(request, status)[1]
    if _is_question(request):
        asker = code(request.call.agent, 100)
        if status is _P.PENDING:
            return f"Question from {asker}: {code(request.question, 300)}"
        return f"{headline}: a question from {asker}"
    risk = request.classification.risk.value
    return f"{headline}: {code(request.call.tool, 200)} (risk {risk})"


def _header(request: ApprovalRequest, status: RequestStatus) -> Block:
    emoji, words = _headline(request, status)
    emoji = emoji or _RISK_EMOJI[request.classification.risk]
    if not _is_question(request):
        prefix, subject = f"{emoji} {words}: ", request.call.tool
    elif status is _P.PENDING:
        prefix, subject = f"{emoji} Question from ", request.call.agent
    else:
        prefix, subject = f"{emoji} {words}: a question from ", request.call.agent
    room = HEADER_LIMIT - len(prefix) - 4  # emoji may count double
    text = prefix + escape(subject, room, one_line=True)
    return {"type": "header", "block_id": "gk_header", "text": plain(text)}


def _question(request: ApprovalRequest) -> list[Block]:
    """The question, quoted: the main text of a question's message."""
    asker = literal(request.call.agent, 100, one_line=True) or "(empty)"
    asks = rt_line(rt_text(f"{asker} asks:", bold=True))
    question = request.question or ""
    blocks = [
        rt_block("gk_question", asks, rt_quote(literal(question, QUESTION_LIMIT, prose=True)))
    ]
    if len(question) > QUESTION_LIMIT:
        note = (
            f"The question is {len(question):,} characters long; this shows the first part. "
            "Open the console to read all of it."
        )
        blocks.append({"type": "context", "block_id": "gk_truncated", "elements": [md(note)]})
    return blocks


def _question_summary(request: ApprovalRequest) -> Block:
    call = request.call
    fields = [
        f"Agent: {escape(call.agent, 200, one_line=True)}",
        f"Session: {escape(_short(call.session_id), 60, one_line=True)}",
        f"Request: {escape(request.id, 200, one_line=True)}",
    ]
    return {"type": "section", "block_id": "gk_summary", "fields": [plain(f) for f in fields]}


def _summary(request: ApprovalRequest) -> Block:
    call, cls = request.call, request.classification
    fields = [
        f"Risk: {cls.risk.value}",
        f"Tool: {escape(call.tool, 200, one_line=True)}",
        f"Agent: {escape(call.agent, 200, one_line=True)}",
        f"Session: {escape(_short(call.session_id), 60, one_line=True)}",
        f"Rules: {escape(', '.join(cls.rules), 300, one_line=True) or 'none (policy default)'}",
        f"Request: {escape(request.id, 200, one_line=True)}",
    ]
    if cls.granted_scopes or cls.required_scopes:  # as the policy counted them; None: not recorded
        fields.append(_scopes_field(cls))
    if call.irreversible:
        fields.append("Undo: not possible (irreversible)")
    return {"type": "section", "block_id": "gk_summary", "fields": [plain(f) for f in fields]}


def _scopes_field(cls: Classification) -> str:
    def names(scopes: tuple[str, ...] | None) -> str:
        return escape(", ".join(scopes or ()), 300, one_line=True) or "none"

    text = f"Scopes: granted {names(cls.granted_scopes)}; needed {names(cls.required_scopes)}"
    return text + (f" (MISSING {names(cls.missing_scopes)})" if cls.missing_scopes else "")


def _reasons(request: ApprovalRequest) -> list[Block]:
    reasons = request.classification.reasons
    if not reasons:
        return []
    items = [rt_line(rt_text(literal(r, ITEM_LIMIT, one_line=True) or "(empty)")) for r in reasons]
    elements = [
        rt_line(rt_text("Held because:", bold=True)),
        {"type": "rich_text_list", "style": "bullet", "elements": items[:MAX_REASONS]},
    ]
    if len(reasons) > MAX_REASONS:
        elements.append(rt_line(rt_text(f"and {len(reasons) - MAX_REASONS} more", italic=True)))
    return [rt_block("gk_reasons", *elements)]


def _sequences(request: ApprovalRequest) -> list[Block]:
    """Each sequence the call completed, with the earlier calls that matched its steps."""
    blocks: list[Block] = []
    for hit in request.classification.behaviour:
        if hit.kind != "sequence" or not hit.calls:
            continue
        items = []
        for c in hit.calls[:MAX_REASONS]:
            line = f"{c.tool} at {c.at:%H:%M:%S} UTC" + (
                f" (request {c.request_id})" if c.request_id else ""
            )
            items.append(rt_line(rt_text(literal(line, ITEM_LIMIT, one_line=True))))
        title = f"Sequence {hit.id}: the earlier calls, then this one"
        elements = [
            rt_line(rt_text(literal(title, ITEM_LIMIT, one_line=True), bold=True)),
            {"type": "rich_text_list", "style": "ordered", "elements": items},
        ]
        blocks.append(rt_block(f"gk_seq_{len(blocks)}", *elements))
    return blocks[:MAX_REASONS]


def _misses(misses: Sequence[str]) -> list[Block]:
    if not misses:
        return []
    items = [rt_line(rt_text(literal(m, ITEM_LIMIT, one_line=True))) for m in misses]
    elements = [
        rt_line(rt_text("Rules for this tool that did not match:", bold=True)),
        {"type": "rich_text_list", "style": "bullet", "elements": items[:MAX_REASONS]},
    ]
    if len(misses) > MAX_REASONS:
        elements.append(rt_line(rt_text(f"and {len(misses) - MAX_REASONS} more", italic=True)))
    return [rt_block("gk_misses", *elements)]


def _lookalikes(request: ApprovalRequest) -> list[Block]:
    call = request.call
    found = [w for ws in call_lookalikes(call.tool, call.agent, request.args).values() for w in ws]
    if not found:
        return []
    shown = lookalike_warnings(found, MAX_REASONS)
    items = [rt_line(rt_text(literal(w, ITEM_LIMIT, one_line=True))) for w in shown]
    title = rt_text("\u26a0\ufe0f Lookalike characters: check before approving", bold=True)
    bullets = {"type": "rich_text_list", "style": "bullet", "elements": items}
    return [rt_block("gk_lookalikes", rt_line(title), bullets)]


def _agent_reason(request: ApprovalRequest) -> list[Block]:
    if not request.call.reason:
        return []
    says = rt_line(rt_text("The agent says:", bold=True))
    words = literal(request.call.reason, REASON_LIMIT, prose=True)
    return [rt_block("gk_agent_reason", says, rt_quote(words))]


def _args(request: ApprovalRequest, text: str) -> Block:
    label = [rt_text("Arguments", bold=True)]
    if request.edited:
        label.append(rt_text(" (edited by an approver: this is what will run)", italic=True))
    label.append(rt_text(f" · sha256 {request.args_digest[:12]}"))
    pre = {"type": "rich_text_preformatted", "elements": [rt_text(text)]}
    return rt_block("gk_args", rt_line(*label), pre)


def _truncated(shown: int, total: int, pending: bool) -> Block:
    note = (
        f"Arguments truncated: showing {shown:,} of {total:,} characters. "
        "Open the console to see everything."
    )
    if pending:
        note += " It can't be approved from Slack."
    return {"type": "context", "block_id": "gk_truncated", "elements": [md(note)]}


def _status(request: ApprovalRequest, now: dt.datetime, slack_ids: Mapping[str, str]) -> Block:
    left = _span(request.expires_at - now)
    elements = [md(f"Expires in {left} (at {_clock(request.expires_at, now)})")]
    if request.quorum > 1:
        names = [d.approver for d in request.approvals]
        mentions, others = people_context(names, slack_ids)
        progress = f"Approvals {len(names)} of {request.quorum}"
        elements.append(md(f"{progress}: {mentions}".rstrip() if names else progress))
        elements.extend(others)
    if request.group:
        elements.append(plain(f"Approvers: group {escape(request.group, 100, one_line=True)}"))
    return {"type": "context", "block_id": "gk_status", "elements": elements}


def _is_halt(request: ApprovalRequest) -> bool:
    # Stores cancel a halted scope's requests with comment "halted: <reason>";
    # the gate reads a cancellation the same way (see _pipeline.blocked_error).
    return (request.comment or "").startswith("halted")


def _outcome(
    request: ApprovalRequest,
    status: RequestStatus,
    now: dt.datetime,
    ids: Mapping[str, str],
    grant: Grant | None = None,
) -> list[Block]:
    emoji, words = _headline(request, status)
    title, tail = (
        f"{emoji} {words}",
        f" at {_clock(request.decided_at, now)}" if request.decided_at else "",
    )
    names = [request.decided_by] if request.decided_by else []
    comment, limit = request.comment, COMMENT_LIMIT
    if status is _P.RESPONDED:  # what the agent got is quoted, not the (optional) comment
        comment, limit = request.response or "(empty)", RESPONSE_LIMIT
        if not _is_question(request):
            tail += " · the tool did not run; the agent got"
    elif status in _APPROVED:
        title, tail, comment = "✅ Approved", tail + _SUFFIX.get(status, ""), None
        names = [d.approver for d in request.approvals] or names
        if grant is not None and grant.expires_at is not None:
            tail += f", and matching calls until {_clock(grant.expires_at, now)}"
    elif status is _P.EXPIRED:
        names, tail, comment = [], " — denied (nobody decided in time)", None
    elif status is _P.ABANDONED:
        names, tail, comment = [], " — the agent stopped waiting; it never ran", None
    elif status is _P.OUTCOME_UNKNOWN:
        names, comment = [], None
        tail = " — the agent was gone while the tool ran; check whether it ran (gatekeeper resolve)"
    elif status is _P.CANCELLED and _is_halt(request):
        title += " — agent halted"
        comment = (comment or "").removeprefix("halted").lstrip(": ") or None
    tail += ":" if comment else ""
    line = [rt_text(title, bold=True), *_by(names, ids)] + ([rt_text(tail)] if tail else [])
    elements = [rt_line(*line)]
    if comment:
        elements.append(rt_quote(literal(comment, limit)))
    blocks = [rt_block("gk_outcome", *elements)]
    if status is _P.FAILED and request.outcome:
        said = escape(request.outcome, COMMENT_LIMIT, one_line=True, prose=True)
        failed = plain(f"The tool failed: {said}")
        blocks.append({"type": "context", "block_id": "gk_failure", "elements": [failed]})
    if status in _APPROVED and grant is not None:
        covers = escape(grant.describe(), 1000, one_line=True)
        made = plain(f"Standing approval {escape(grant.id, 60, one_line=True)}: {covers}")
        blocks.append({"type": "context", "block_id": "gk_grant_made", "elements": [made]})
    return blocks


def _by(names: list[str], ids: Mapping[str, str]) -> list[Block]:
    return [rt_text(" by "), *people(names, ids)] if names else []


def _button(action_id: str, label: str, **extra: Any) -> Block:
    return {"type": "button", "action_id": action_id, "text": plain(label), **extra}


def _actions(
    request: ApprovalRequest,
    console_url: str | None,
    approvable: bool,
    respond: bool,
    grantable: bool = False,
) -> Block:
    value = button_value(request)
    elements: list[Block] = []
    if _is_question(request):  # answered or declined, never approved
        elements.append(_button(ACTION_RESPOND, "Answer", style="primary", value=value))
        elements.append(_button(ACTION_DENY, "Decline", style="danger", value=value))
    else:
        if approvable:
            confirm = _confirm(request)
            extra = {"confirm": confirm} if confirm else {}
            elements.append(
                _button(ACTION_APPROVE, "Approve", style="primary", value=value, **extra)
            )
            if grantable:
                elements.append(
                    _button(
                        ACTION_APPROVE_GRANT,
                        f"Approve + matching, {_GRANT_SPAN}",
                        value=value,
                        confirm=_grant_confirm(request),
                    )
                )
        # Deny opens a modal asking why: a denial always carries a reason (the model reads it).
        elements.append(_button(ACTION_DENY, "Deny", style="danger", value=value))
        if respond:  # a modal for the result the agent gets instead of a run
            elements.append(_button(ACTION_RESPOND, "Respond", value=value))
    if console_url:
        url = f"{console_url.rstrip('/')}/requests/{quote(request.id, safe='')}"
        elements.append(_button(ACTION_OPEN, "Open in console", url=url))
    return {"type": "actions", "block_id": "gk_actions", "elements": elements}


_GRANT_SPAN = _span(dt.timedelta(seconds=GRANT_SECONDS))


def _grant_terms(request: ApprovalRequest) -> Block:
    """What "Approve + matching" lets run later: the tool, and each argument's value."""
    lead = (
        f"Approve + matching, {_GRANT_SPAN} also lets this agent's later calls of "
        f"{literal(request.call.tool, 200, one_line=True) or '(empty)'} run without asking "
        f"for {_GRANT_SPAN} (until someone revokes it), when the same rules hold them "
        "and every argument is exactly:"
    )
    items = []
    conditions = sorted(conditions_for(request.args).items())
    for name, cond in conditions[:MAX_CONDITIONS]:
        shown = literal(name, 200, one_line=True) or "(empty)"
        value = json.dumps(cond.get("eq"), ensure_ascii=False, sort_keys=True)
        items.append(rt_line(rt_text(f"{shown} = {literal(value, 600, one_line=True)}")))
    if not items:
        items.append(rt_line(rt_text("(none: only calls without arguments)", italic=True)))
    elements = [
        rt_line(rt_text(lead, bold=True)),
        {"type": "rich_text_list", "style": "bullet", "elements": items},
    ]
    if len(conditions) > MAX_CONDITIONS:
        more = len(conditions) - MAX_CONDITIONS
        elements.append(
            rt_line(rt_text(f"and {more} more, each equal to its value above", italic=True))
        )
    tail = "A call with an argument this one does not have is not covered. To let a number "
    tail += "range from 0 up to a bound, or for another duration, approve in the console."
    elements.append(rt_line(rt_text(tail, italic=True)))
    return rt_block("gk_grant", *elements)


def _grant_confirm(request: ApprovalRequest) -> Block:
    tool = escape(request.call.tool, 80, one_line=True)
    text = (
        f"Run {tool} with the arguments shown, and for {_GRANT_SPAN} let this agent's "
        "calls matching it (as listed above the buttons) run without asking?"
    )
    return {
        "title": plain("Approve matching calls too?"),
        "text": plain(text),
        "confirm": plain(f"Approve + {_GRANT_SPAN}"),
        "deny": plain("Cancel"),
        "style": "primary",
    }


def _confirm(request: ApprovalRequest) -> Block | None:
    tool = escape(request.call.tool, 150, one_line=True)
    if request.call.irreversible:
        text = f"This cannot be undone. Run {tool} with the arguments shown?"
    elif request.classification.risk is Risk.CRITICAL:
        text = f"This call is critical risk. Run {tool} with the arguments shown?"
    else:
        return None
    return {
        "title": plain("Approve this call?"),
        "text": plain(text),
        "confirm": plain("Approve"),
        "deny": plain("Cancel"),
        "style": "primary",
    }


def request_message(
    request: ApprovalRequest,
    *,
    now: dt.datetime,
    console_url: str | None = None,
    slack_ids: Mapping[str, str] = _NO_IDS,
    misses: Sequence[str] = (),
    respond: bool | None = None,
    grantable: bool = False,
    grant: Grant | None = None,
) -> dict[str, Any]:
    """``{"text": ..., "blocks": [...]}`` for ``chat.postMessage`` / ``chat.update``.

    ``slack_ids`` maps approver names to Slack user ids (for mentions);
    ``console_url`` is the web console's base URL (for the Open button);
    ``misses`` are the lines of :meth:`Policy.misses <gatekeeper.policy.Policy.misses>`
    (the rules naming the tool that did not match, and why); ``respond``
    whether to offer Respond (the gate's ``_may_respond``; None: as the
    request's rule recorded it); ``grantable`` whether to offer "Approve +
    matching" (the gate's ``check_grantable`` passes; only where Approve is
    offered too); ``grant`` the standing approval the request was approved
    with, named in the outcome. A pending request past its expiry already
    reads as expired.
    """
    status = request.effective_status(now)
    if _is_question(request):
        return _question_message(request, status, now, console_url, slack_ids)
    if respond is None:
        respond = request.classification.approval.respond
    text, shown, total = _args_text(request)
    approvable = shown == total
    blocks = [_header(request, status), _summary(request), *_lookalikes(request)]
    blocks += _reasons(request) + _sequences(request) + _misses(misses) + _agent_reason(request)
    blocks.append(_args(request, text))
    if not approvable:
        blocks.append(_truncated(shown, total, pending=status is _P.PENDING))
    if status is _P.PENDING:
        grantable = grantable and approvable
        blocks.append(_status(request, now, slack_ids))
        if grantable:
            blocks.append(_grant_terms(request))
        blocks.append(_actions(request, console_url, approvable, respond, grantable))
    else:
        blocks += _outcome(request, status, now, slack_ids, grant)
    return {"text": _fallback(request, status), "blocks": blocks}


def _question_message(
    request: ApprovalRequest,
    status: RequestStatus,
    now: dt.datetime,
    console_url: str | None,
    slack_ids: Mapping[str, str],
) -> dict[str, Any]:
    """A question from the agent: the question first, then who asks; Answer and Decline."""
    blocks = [_header(request, status), *_question(request), _question_summary(request)]
    blocks += _lookalikes(request) + _agent_reason(request)
    if status is _P.PENDING:
        blocks.append(_status(request, now, slack_ids))
        blocks.append(_actions(request, console_url, approvable=False, respond=True))
    else:
        blocks += _outcome(request, status, now, slack_ids)
    return {"text": _fallback(request, status), "blocks": blocks}


# -- other surfaces -------------------------------------------------------------------


def reminder(request: ApprovalRequest, *, now: dt.datetime, mention: str | None) -> dict[str, Any]:
    """A thread reply nudging ``mention`` (a user group ``S…`` or user ``U…`` id, or a name)."""
    left = request.expires_at - now
    risk = request.classification.risk.value
    waited = _span(now - request.created_at)
    tail = f"expires in {_span(left)}" if left.total_seconds() > 0 else "it has expired"
    rest = f" (risk {risk}) has waited {waited}; {tail}."
    who_md = group_mention(mention) or user_mention(mention)
    if who_md:
        kind, key = ("usergroup", "usergroup_id") if who_md[1] == "!" else ("user", "user_id")
        who: list[Block] = [{"type": kind, key: mention}, rt_text(" still waiting: ")]
        lead = f"{who_md} still waiting: "
    elif mention:
        who = [rt_text(literal(mention, 100, one_line=True) + " still waiting: ")]
        lead = f"{code(mention, 100)} still waiting: "
    else:
        who, lead = [rt_text("Still waiting: ")], "Still waiting: "
    tool = request.call.tool
    line = rt_line(*who, rt_text(literal(tool, 200, one_line=True), code=True), rt_text(rest))
    return {"text": lead + code(tool, 200) + rest, "blocks": [rt_block("gk_reminder", line)]}


def not_approver(request: ApprovalRequest | None) -> str:
    """The ephemeral reply to someone who clicked but may not decide this request."""
    text = "You are not an approver for this request."
    if request is not None and request.group:
        text += f" It needs an approver from group {code(request.group, 100)}."
    return text
