"""``SlackAlerts``: alerts posted to a Slack channel, in Block Kit that nothing in them can forge.

An alert's values (agent, session, tool, rule, reasons, a sequence's calls)
are the agent's text: they go into plain_text fields (:func:`escape`) and
rich_text elements (:func:`literal`) only; the header, the context line and
the notification text hold our own words, with the one value the
notification names put in an inline code span (:func:`code`). See
:mod:`._escape` for why that is enough. The message has no Approve button:
it links to the console.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from slack_sdk import WebClient

from ...alerts import Alert
from ._escape import Block, code, escape, literal, md, plain, rt_block, rt_line, rt_text
from ._retry import SlackCaller

__all__ = ["ACTION_ALERT_OPEN", "SlackAlerts", "alert_message"]

#: The action id of an alert's "Open in console" link button (Slack reports its clicks too).
ACTION_ALERT_OPEN = "gk_alert_open"

_EMOJI = {
    "halt": "\U0001f6d1",  # 🛑
    "sequence": "\U0001f517",  # 🔗
    "limit": "\U0001f4c8",  # 📈
    "denial": "\u26d4",  # ⛔
    "novelty": "\U0001f195",  # 🆕
    "queue": "\u23f3",  # ⏳
}
_SUMMARY_EMOJI = "\U0001f501"  # 🔁
FIELD_LIMIT = 200
ITEM_LIMIT = 300
_SCOPE_WORDS = {"session": "session", "agent": "agent", "all": "every agent"}


def _fields(alert: Alert) -> list[Block]:
    def value(text: str | None, limit: int = FIELD_LIMIT) -> str:
        return escape(text, limit, one_line=True) or "(none)"

    fields: list[str] = []
    if alert.kind == "halt" and alert.halt_scope:
        scope = _SCOPE_WORDS.get(alert.halt_scope, "scope")
        target = "" if alert.halt_scope == "all" else " " + value(alert.halt_target)
        fields.append(f"Halted: {escape(scope, 40, one_line=True)}{target}")
        fields.append(f"Halted by: {value(alert.by)}")
    for label, text in (
        ("Agent", alert.agent),
        ("Session", alert.session_id),
        ("Tool", alert.tool),
        ("Rule", alert.rule),
        ("Request", alert.request_id),
    ):
        if text:
            fields.append(f"{label}: {value(text)}")
    if alert.verdict and not alert.summary:
        fields.append(f"Verdict: {value(alert.verdict, 40)}")
    if alert.risk:
        fields.append(f"Risk: {value(alert.risk, 40)}")
    if alert.kind == "halt" and not alert.summary:
        fields.append(f"Cancelled: {alert.cancelled:,} pending request(s)")
    return [plain(f) for f in fields[:10]]


def _list(block_id: str, title: str, items: tuple[str, ...], style: str) -> Block:
    lines = [
        rt_line(rt_text(literal(item, ITEM_LIMIT, one_line=True) or "(empty)")) for item in items
    ]
    return rt_block(
        block_id,
        rt_line(rt_text(title, bold=True)),
        {"type": "rich_text_list", "style": style, "elements": lines},
    )


def alert_message(alert: Alert) -> dict[str, Any]:
    """The ``chat.postMessage`` arguments (``text`` and ``blocks``) for ``alert``. Pure."""
    emoji = _SUMMARY_EMOJI if alert.summary else _EMOJI.get(alert.kind, "")
    headline = f"{emoji} {alert.headline}"
    subject = alert.halt_target if alert.kind == "halt" else alert.agent
    text = headline + (f": {code(subject, 200)}" if subject else "")
    blocks: list[Block] = [
        {"type": "header", "block_id": "gk_alert_header", "text": plain(headline[:150])}
    ]
    fields = _fields(alert)
    if fields:
        blocks.append({"type": "section", "block_id": "gk_alert_fields", "fields": fields})
    if alert.reasons:
        why = "Why (the last one held back):" if alert.summary else "Why:"
        blocks.append(_list("gk_alert_reasons", why, alert.reasons, "bullet"))
    if alert.steps:
        title = "The earlier calls of the sequence, then this one:"
        blocks.append(_list("gk_alert_steps", title, alert.steps, "ordered"))
    if alert.note:
        blocks.append(
            {"type": "context", "block_id": "gk_alert_note", "elements": [md(alert.note)]}
        )
    if alert.link:
        button = {
            "type": "button",
            "action_id": ACTION_ALERT_OPEN,
            "text": plain("Open in console"),
            "url": alert.link,
        }
        blocks.append({"type": "actions", "block_id": "gk_alert_actions", "elements": [button]})
    return {"text": text, "blocks": blocks}


class SlackAlerts:
    """Posts each alert to ``channel`` (an id such as ``C0123ABCD``) with the bot's token.

    Web API calls are retried as the Slack channel's are (``Retry-After``
    honoured), within ``attempts`` and ``max_wait`` seconds; then ``send``
    raises :class:`~gatekeeper.ChannelError`.

    Example::

        SlackAlerts(WebClient(token=os.environ["SLACK_BOT_TOKEN"]), channel="C0ALERTS")
    """

    name = "slack"

    def __init__(
        self,
        client: WebClient,
        channel: str,
        *,
        attempts: int = 3,
        max_wait: float = 10.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        client.retry_handlers = []  # our retry policy decides, not slack-sdk's underneath it
        self.client = client
        self.channel = channel
        self.call = SlackCaller(attempts=attempts, max_wait=max_wait, sleep=sleep)

    def __repr__(self) -> str:
        return f"SlackAlerts(channel={self.channel!r})"

    def send(self, alert: Alert) -> None:
        message = alert_message(alert)
        self.call(
            "chat.postMessage",
            self.client.chat_postMessage,
            channel=self.channel,
            text=message["text"],
            blocks=message["blocks"],
            unfurl_links=False,
            unfurl_media=False,
        )
