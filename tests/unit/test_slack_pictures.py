"""The Slack pictures in the docs: their JSON is what the code makes now, and the drawing
knows every block the code emits (and refuses what it doesn't know)."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

import pytest

from gatekeeper.channels.slack._blocks import reminder
from gatekeeper.channels.slack._modals import deny_modal, respond_modal
from gatekeeper.models import Decision, RequestStatus
from tests.slack_samples import (
    NOW,
    SLACK_IDS,
    held,
    message,
    refund,
    render_script,
    sample_messages,
    sample_requests,
)

IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"
REGENERATE = "run .venv/bin/python scripts/render_slack.py and commit docs/images/slack-*"
NAMES = {uid: name for name, uid in SLACK_IDS.items()}
P = RequestStatus


@pytest.mark.parametrize("name", sorted(sample_messages()))
def test_committed_json_is_what_the_code_makes(name: str) -> None:
    path = IMAGES / f"slack-{name}.json"
    assert path.exists(), f"{path} is missing: {REGENERATE}"
    committed = json.loads(path.read_text(encoding="utf-8"))
    assert committed == sample_messages()[name], (
        f"{path} no longer matches request_message (so neither does its picture): {REGENERATE}"
    )


def test_no_stale_or_missing_picture_files() -> None:
    problems = render_script().stale(IMAGES)
    assert problems == [], f"{'; '.join(problems)}: {REGENERATE}"


def test_check_flag_fails_on_drift(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    render = render_script()
    assert render.main(["--check", "--out", str(IMAGES)]) == 0
    for name, text in render.expected_json().items():
        (tmp_path / name).write_text(text, encoding="utf-8")
        (tmp_path / name).with_suffix(".png").write_bytes(b"")
    assert render.main(["--check", "--out", str(tmp_path)]) == 0
    edited = tmp_path / "slack-pending.json"
    edited.write_text(edited.read_text(encoding="utf-8").replace("refund", "refunt"), "utf-8")
    assert render.main(["--check", "--out", str(tmp_path)]) == 1
    assert "slack-pending.json: differs" in capsys.readouterr().err


def test_samples_are_what_the_docs_describe() -> None:
    samples = sample_requests()
    assert [s.effective_status(NOW) for s in samples.values()] == [P.PENDING, P.PENDING, P.DENIED]
    pending, partial, denied = samples.values()
    assert (pending.call.tool, pending.call.agent, pending.group) == (
        "refund",
        "billing-bot",
        "finance",
    )
    assert pending.expires_at - NOW == dt.timedelta(minutes=14)
    assert partial.call.irreversible and partial.quorum == 2
    assert [d.approver for d in partial.approvals] == ["alice"]
    assert (denied.decided_by, denied.comment) == ("bob", "Use the sandbox account for tests")
    assert sample_messages() == sample_messages(NOW)  # deterministic


# -- the drawing ------------------------------------------------------------------------


def _every_message() -> dict[str, dict[str, Any]]:
    """A message for each way request_message can end, plus the reminder variants."""
    pending = refund(NOW)
    at = NOW - dt.timedelta(seconds=30)

    def vote(who: str, approve: bool = True) -> Decision:
        return Decision(approver=who, approve=approve, at=at, args_digest=pending.args_digest)

    def ended(status: RequestStatus, **update: Any) -> dict[str, Any]:
        fields = {"status": status, "decided_at": at, "decided_by": "alice"}
        return message(pending.model_copy(update={**fields, **update}))

    approved = {"decisions": (vote("alice"), vote("carol"))}
    quorum = pending.model_copy(
        update={"quorum": 3, "decisions": (vote("alice"), vote("dave <d@x>"))}
    )
    long_args = {"body": "x" * 5000, "to": "a@example.com"}
    asked = pending.model_copy(
        update={"kind": "question", "args": {"question": "Which account gets the refund?"}}
    )
    answer = vote("alice", approve=False).model_copy(update={"response": "The EUR one"})
    answered = {"decisions": (answer,), "response": "The EUR one"}
    out = dict(sample_messages())
    out |= {
        "approved": ended(P.APPROVED, **approved),
        "executing": ended(P.EXECUTING, **approved),
        "executed": ended(P.EXECUTED, **approved),
        "failed": ended(P.FAILED, outcome="ConnectionError: <timeout> & retry", **approved),
        "cancelled": ended(P.CANCELLED, comment="agent withdrew"),
        "halted": ended(P.CANCELLED, comment="halted: prompt injection"),
        "expired": message(pending, NOW + dt.timedelta(hours=1)),
        "quorum": message(quorum),
        "truncated": message(refund(NOW, long_args)),
        "edited": message(pending.model_copy(update={"args": {"x": 1}, "args_digest": "0" * 64})),
        "responded": ended(P.RESPONDED, **answered),
        "question": message(asked),
        "question-long": message(asked.model_copy(update={"args": {"question": "q" * 5000}})),
        "answered": message(asked.model_copy(update={"status": P.RESPONDED, **answered})),
        "declined": message(
            asked.model_copy(update={"status": P.DENIED, "decided_by": "bob", "comment": "no"})
        ),
        "reminder-group": reminder(pending, now=NOW, mention="S0FINANCE"),
        "reminder-user": reminder(pending, now=NOW, mention="U0ALICE"),
        "reminder-name": reminder(pending, now=NOW, mention="finance team"),
        "reminder-none": reminder(pending, now=NOW, mention=None),
    }
    return out


@pytest.mark.parametrize(("name", "msg"), sorted(_every_message().items()))
def test_every_message_the_code_makes_can_be_drawn(name: str, msg: dict[str, Any]) -> None:
    page = render_script().message_html(msg, names={**NAMES, "S0FINANCE": "finance"})
    assert page.count('id="message"') == 1
    assert "<script" not in page.lower()


def test_every_block_kind_is_drawn() -> None:
    render = render_script()
    pages = "".join(render.message_html(m, names=NAMES) for m in _every_message().values())
    for css in ("header", "fields", "rt-list", "rt-quote", "rt-pre", "context", "actions"):
        assert f'class="{css}' in pages or f"block {css}" in pages, css
    assert "@alice" in pages and "@bob" in pages and "@S0FINANCE" in pages
    assert 'class="button primary"' in pages and 'class="button danger"' in pages


def test_the_deny_modal_can_be_drawn() -> None:
    view = deny_modal(refund(NOW), channel_id="C0APPROVALS", message_ts="1732795380.000100")
    page = render_script().modal_html(view)
    assert "Why? The agent reads this." in page
    assert 'class="textbox multiline"' in page


def test_the_respond_modal_can_be_drawn() -> None:
    view = respond_modal(refund(NOW), channel_id="C0APPROVALS", message_ts="1732795380.000100")
    page = render_script().modal_html(view)
    assert "The result the agent gets instead of running the tool" in page
    assert 'class="textbox multiline"' in page


def test_untrusted_text_is_escaped_once() -> None:
    hostile = held(
        request_id="r1",
        call_id="c1",
        tool="refund",
        agent="<b>bot</b> & co",
        session_id="s1",
        args={"note": "<script>alert(1)</script>", "ping": "<!channel>"},
        reason='"><img src=x onerror=alert(2)>',
        rule="refunds",
        rule_reason="refunds & <returns>",
        risk=refund(NOW).classification.risk,
        created_at=NOW,
        expires_at=NOW + dt.timedelta(minutes=5),
    )
    page = render_script().message_html(message(hostile))
    assert "<script" not in page and "<img" not in page and "<b>bot" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;!channel&gt;" in page
    assert "Agent: &lt;b&gt;bot&lt;/b&gt; &amp; co" in page  # plain_text: Slack's entities undone
    assert "&amp;lt;" not in page  # ... and not shown as "&lt;"


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (lambda m: m["blocks"].append({"type": "image", "image_url": "x"}), "block type 'image'"),
        (lambda m: m["blocks"][1].update(accessory={"type": "button"}), "unknown ['accessory']"),
        (lambda m: m["blocks"][2]["elements"][0]["elements"].append({"type": "link"}), "'link'"),
        (lambda m: m["blocks"][4]["elements"][1].update(border=1, x=1), "unknown ['x']"),
        (lambda m: m["blocks"][5]["elements"].append({"type": "image"}), "'image'"),
        (lambda m: m["blocks"][5]["elements"][0].update(text="see <https://x|y>"), "<https"),
        (lambda m: m["blocks"][6]["elements"][0].update(style="link"), "style 'link'"),
        (lambda m: m["blocks"][6]["elements"].append({"type": "overflow"}), "'overflow'"),
        (lambda m: m["blocks"][0]["text"].update(type="mrkdwn"), "expected a plain_text"),
        (lambda m: m["blocks"][3]["elements"][1].update(type="rich_text_table"), "table"),
        (lambda m: m["blocks"][2]["elements"][0]["elements"][0].update(style={"u": 1}), "style"),
        (lambda m: m.update(attachments=[]), "unknown ['attachments']"),
    ],
)
def test_what_the_drawing_does_not_know_is_refused(change: Any, error: str) -> None:
    render = render_script()
    msg = json.loads(json.dumps(sample_messages()["pending"]))
    render.message_html(msg)  # fine as made
    change(msg)
    with pytest.raises(render.BlockKitError, match=re.escape(error)):
        render.message_html(msg)
