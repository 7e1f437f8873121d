"""The Slack message as scripts/render_slack.py draws it, in a real Chromium.

The picture must show what the approver would read (tool, arguments, buttons),
and text an agent wrote must show as written and never become markup or run.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest

from gatekeeper.models import Risk
from tests.slack_samples import NOW, SLACK_IDS, held, message, render_script, sample_requests

NAMES = {uid: name for name, uid in SLACK_IDS.items()}
SCRIPT = "<script>alert(1)</script>"
CHANNEL = "<!channel>"
IMG = "<img src=x onerror=window.__pwned=1>"
BOLD = "<b onmouseover=alert(3)>bot</b>"
ALLOWED_TAGS = {"DIV", "SPAN", "B", "I", "S", "CODE", "PRE", "BLOCKQUOTE", "UL", "OL", "LI", "BR"}


@pytest.fixture
def slack_page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 700, "height": 900}, device_scale_factor=2)
    page = context.new_page()
    dialogs: list[str] = []

    def on_dialog(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.dialogs = dialogs
    yield page
    context.close()


def _show(page: Any, msg: dict[str, Any], *, csp: bool = True) -> str:
    render = render_script()
    html = render.message_html(msg, names=NAMES)
    if not csp:  # take the page's script ban away: the escaping alone must hold
        html = html.replace(
            f'<meta http-equiv="Content-Security-Policy" content="{render.CSP}">', ""
        )
        assert "Content-Security-Policy" not in html
    page.set_content(html, wait_until="load")
    return str(page.locator("#message").inner_text())


def _markup(page: Any) -> tuple[set[str], list[str]]:
    """Every tag inside #message, and every on* attribute anywhere on the page."""
    tags = page.eval_on_selector_all("#message *", "els => els.map(e => e.tagName)")
    handlers = page.evaluate(
        """() => [...document.querySelectorAll('*')].flatMap(e =>
            [...e.attributes].filter(a => a.name.startsWith('on')).map(a => a.name))"""
    )
    return set(tags), handlers


def test_the_pending_picture_shows_what_the_approver_decides_on(slack_page: Any) -> None:
    text = _show(slack_page, message(sample_requests()["pending"]))
    for shown in ("refund", "billing-bot", "A-1042", "249.0", "EUR", "order never arrived"):
        assert shown in text
    for label in ("Approve", "Deny", "Respond", "Open in console"):
        assert label in text
    buttons = slack_page.locator("#message .button").all_inner_texts()
    # Deny asks why in a modal; Respond asks for the result the agent gets instead
    assert buttons == ["Approve", "Deny", "Respond", "Open in console"]
    assert "Expires in 14 min" in text and "gatekeeper" in text
    box = slack_page.locator("#message").bounding_box()
    assert box is not None and box["width"] == render_script().WIDTH


def test_the_partial_picture_mentions_the_first_approver(slack_page: Any) -> None:
    text = _show(slack_page, message(sample_requests()["partial"]))
    assert "Approvals 1 of 2: @alice" in text
    assert slack_page.locator("#message .mention").all_inner_texts() == ["@alice"]
    assert "Undo: not possible (irreversible)" in text


@pytest.mark.parametrize("csp", [True, False], ids=["page-as-drawn", "without-csp"])
def test_hostile_text_shows_as_written_and_runs_nothing(slack_page: Any, csp: bool) -> None:
    hostile = held(
        request_id="r-hostile",
        call_id="c-hostile",
        tool="refund",
        agent=BOLD,
        session_id="s1",
        args={"note": SCRIPT, "notify": CHANNEL, "html": IMG},
        reason=f"{IMG} {CHANNEL} &amp; *bold*",
        rule="refunds",
        rule_reason="refunds move money back to a customer",
        risk=Risk.HIGH,
        created_at=NOW,
        expires_at=NOW + dt.timedelta(minutes=5),
    )
    text = _show(slack_page, message(hostile), csp=csp)
    for literal in (SCRIPT, CHANNEL, IMG, BOLD, "&amp; *bold*"):
        assert literal in text
    slack_page.locator("#message").hover()
    slack_page.mouse.move(200, 60)  # over the agent's name: no onmouseover either
    assert slack_page.evaluate("() => window.__pwned") is None
    assert slack_page.dialogs == []
    tags, handlers = _markup(slack_page)
    assert tags <= ALLOWED_TAGS, tags - ALLOWED_TAGS
    assert handlers == []
