"""The ``views.open`` modals: the reason for a denial, and the answer written instead of a run.

Pure functions, like :mod:`._blocks`. Each modal's ``private_metadata`` names
the request and the message the click came from, as compact JSON that
:func:`parse_modal_metadata` reads back (and refuses when it is anything
else). The agent's words in a modal are ``plain_text``, escaped and bounded
by :func:`~._escape.escape`.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ..._decisions import MAX_RESPONSE_CHARS
from ...models import ApprovalRequest
from ._escape import Block, escape, plain

#: Slack's plain-text input takes at most 3,000 characters (its ``max_length``
#: may not be more); a longer answer is written in the console or the CLI.
SLACK_RESPONSE_CHARS = min(MAX_RESPONSE_CHARS, 3000)

__all__ = [
    "COMMENT_BLOCK",
    "COMMENT_INPUT",
    "COMMENT_LIMIT",
    "DENY_MODAL",
    "RESPOND_MODAL",
    "RESPONSE_BLOCK",
    "RESPONSE_INPUT",
    "deny_modal",
    "parse_modal_metadata",
    "respond_modal",
]

DENY_MODAL = "gk_deny_modal"
COMMENT_BLOCK = "comment"
COMMENT_INPUT = "text"
COMMENT_LIMIT = 1000  # a denial's reason, as typed
RESPOND_MODAL = "gk_respond_modal"
RESPONSE_BLOCK = "response"
RESPONSE_INPUT = "text"
QUESTION_LIMIT = 2000  # the question, shown above the answer box

_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_CHANNEL_ID = re.compile(r"[CDG][A-Z0-9]{2,30}")
_MESSAGE_TS = re.compile(r"[0-9]{1,12}\.[0-9]{1,9}")


def parse_modal_metadata(text: str) -> tuple[str, str, str]:
    """``(request_id, channel_id, message_ts)`` from a modal; ValueError if malformed."""
    if not isinstance(text, str) or len(text) > 3000:
        raise ValueError("not gatekeeper modal metadata")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        raise ValueError("not gatekeeper modal metadata") from None
    if not isinstance(data, dict) or set(data) != {"r", "c", "t"}:
        raise ValueError("not gatekeeper modal metadata")
    rid, channel, ts = data["r"], data["c"], data["t"]
    for pattern, item in ((_REQUEST_ID, rid), (_CHANNEL_ID, channel), (_MESSAGE_TS, ts)):
        if not isinstance(item, str) or pattern.fullmatch(item) is None:
            raise ValueError("not gatekeeper modal metadata")
    return rid, channel, ts


def _metadata(request: ApprovalRequest, channel_id: str, message_ts: str) -> str:
    meta = json.dumps({"r": request.id, "c": channel_id, "t": message_ts}, separators=(",", ":"))
    parse_modal_metadata(meta)  # refuse ids we could not read back
    return meta


def _modal(
    request: ApprovalRequest,
    meta: str,
    *,
    callback_id: str,
    title: str,
    submit: str,
    what: list[Block],
    field: Block,
) -> dict[str, Any]:
    request_line = plain(f"Request {escape(request.id, 200, one_line=True)}")
    prefix = callback_id.removesuffix("_modal")
    return {
        "type": "modal",
        "callback_id": callback_id,
        "title": plain(title),
        "submit": plain(submit),
        "close": plain("Cancel"),
        "private_metadata": meta,
        "blocks": [
            *what,
            {"type": "context", "block_id": f"{prefix}_request", "elements": [request_line]},
            field,
        ],
    }


def _input(block_id: str, action_id: str, label: str, max_length: int) -> Block:
    return {
        "type": "input",
        "block_id": block_id,
        "label": plain(label),
        "element": {
            "type": "plain_text_input",
            "action_id": action_id,
            "multiline": True,
            "max_length": max_length,
        },
    }


def _asks(request: ApprovalRequest, prefix: str) -> list[Block]:
    """The question, quoted, for a modal about one."""
    agent = escape(request.call.agent, 200, one_line=True)
    question = escape(request.question or "", QUESTION_LIMIT, prose=True) or "(empty)"
    return [
        {"type": "section", "block_id": f"{prefix}_asker", "text": plain(f"{agent} asks:")},
        {"type": "section", "block_id": f"{prefix}_question", "text": plain(question)},
    ]


def deny_modal(request: ApprovalRequest, *, channel_id: str, message_ts: str) -> dict[str, Any]:
    """The modal Deny (Decline, for a question) opens, asking why: required, the agent reads it."""
    meta = _metadata(request, channel_id, message_ts)
    call = request.call
    if request.is_question:
        what = _asks(request, "gk_deny")
        title, submit = "Decline question", "Decline"
    else:
        sentence = (
            f"Deny {escape(call.tool, 200, one_line=True)} "
            f"(risk {request.classification.risk.value})"
            f" for agent {escape(call.agent, 200, one_line=True)}?"
        )
        what = [{"type": "section", "block_id": "gk_deny_what", "text": plain(sentence)}]
        title, submit = "Deny request", "Deny"
    field = _input(COMMENT_BLOCK, COMMENT_INPUT, "Why? The agent reads this.", COMMENT_LIMIT)
    return _modal(
        request, meta, callback_id=DENY_MODAL, title=title, submit=submit, what=what, field=field
    )


def respond_modal(request: ApprovalRequest, *, channel_id: str, message_ts: str) -> dict[str, Any]:
    """The modal Respond (Answer, for a question) opens: the text the agent gets back.

    The tool never runs; what is written here is returned to the agent as
    the tool's result (see :meth:`Gatekeeper.respond <gatekeeper.Gatekeeper.respond>`).
    """
    meta = _metadata(request, channel_id, message_ts)
    call = request.call
    if request.is_question:
        what = _asks(request, "gk_respond")
        title, submit, label = "Answer question", "Answer", "Your answer. The agent reads this."
    else:
        sentence = (
            f"Answer for {escape(call.tool, 200, one_line=True)} "
            f"(risk {request.classification.risk.value})"
            f" instead of running it? Agent {escape(call.agent, 200, one_line=True)} "
            "gets what you write as the tool's result; the tool does not run."
        )
        what = [{"type": "section", "block_id": "gk_respond_what", "text": plain(sentence)}]
        title, submit = "Respond instead", "Respond"
        label = "The result the agent gets instead of running the tool"
    field = _input(RESPONSE_BLOCK, RESPONSE_INPUT, label, SLACK_RESPONSE_CHARS)
    return _modal(
        request, meta, callback_id=RESPOND_MODAL, title=title, submit=submit, what=what, field=field
    )
