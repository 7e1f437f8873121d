"""Every model round-trips through JSON; the console shows hostile text harmlessly."""

from __future__ import annotations

import io

import pytest
from pydantic import BaseModel

from gatekeeper import Gatekeeper, Policy
from gatekeeper.audit import parse_event, seal
from gatekeeper.channels.console import ConsoleChannel, describe_request
from gatekeeper.models import Approver, Halt, HaltScope
from gatekeeper.testing import ManualClock
from tests.storekit import make_request, vote


def _models() -> list[BaseModel]:
    clock = ManualClock()
    req = make_request(clock, args={"url": "https://x", "n": [1, 2.5, None, {"k": True}]})
    decided = req.model_copy(update={"decisions": (vote(clock, req, "alice", comment="ok"),)})
    ((body, hash_),) = seal(
        "0" * 64, 1, [{"kind": "call.allowed", "at": 1, "actor": "a", "data": {"args": {"x": 1}}}]
    )
    return [
        req.call,
        req.classification,
        decided,
        decided.decisions[0],
        Approver(name="alice", groups=("ops",), slack_user_id="U1"),
        Halt(scope=HaltScope.AGENT, target="bot", by="alice", reason="r", at=clock.now()),
        parse_event(body, hash_),
    ]


@pytest.mark.parametrize("model", _models(), ids=lambda m: type(m).__name__)
def test_json_round_trip(model: BaseModel) -> None:
    assert type(model).model_validate_json(model.model_dump_json()) == model


HOSTILE = {
    "note": "\x1b[2J\x1b[31mAPPROVED by security\x1b[0m",
    "file": "invoice\u202efdp.exe",
    "zw": "pay\u200bpal",
    "bell": "\x07",
}


def test_console_shows_hostile_text_visibly() -> None:
    clock = ManualClock()
    req = make_request(clock, args=HOSTILE)
    text = describe_request(req)
    assert "\x1b" not in text and "\u202e" not in text and "\u200b" not in text
    assert "\x07" not in text
    assert "<U+202E>" in text and "<U+200B>" in text
    # json escapes C0 controls itself; either way nothing reaches the terminal raw
    assert "\\u001b[2J" in text or "<U+001B>" in text


def test_console_channel_decides_through_the_gate() -> None:
    out = io.StringIO()
    channel = ConsoleChannel("alice", stdin=io.StringIO("n\nnot now\n"), stdout=out)
    gate = Gatekeeper(
        policy=Policy.from_yaml("version: 1\ndefault: require_approval\n"),
        approvers=[Approver(name="alice")],
        channels=[channel],
    )

    @gate.guard
    def wipe(target: str) -> str:
        raise AssertionError("must not run")

    from gatekeeper import ApprovalDenied

    with pytest.raises(ApprovalDenied) as info:
        wipe(HOSTILE["file"])
    assert info.value.comment == "not now"
    assert "<U+202E>" in out.getvalue()
    assert "denied by alice" in out.getvalue()


def test_console_channel_never_offers_approve_for_arguments_it_cut() -> None:
    """Nobody approves what they were not shown: past the terminal's limit only Deny is asked."""
    out = io.StringIO()
    ran: list[str] = []
    channel = ConsoleChannel("alice", stdin=io.StringIO("y\nlooks fine\n"), stdout=out)
    gate = Gatekeeper(
        policy=Policy.from_yaml("version: 1\ndefault: require_approval\n"),
        approvers=[Approver(name="alice")],
        channels=[channel],
        default_timeout=0.5,
    )

    @gate.guard
    def upload(blob: str) -> str:
        ran.append(blob)
        return "ok"

    from gatekeeper import ApprovalTimeout

    with pytest.raises(ApprovalTimeout):
        upload("x" * 30_000)  # "y" is not an answer here: the request stays pending
    assert ran == []
    text = out.getvalue()
    assert "too long to show here in full" in text
    assert "Deny as alice? [n/r]" in text and "[y/n" not in text
    # Arguments that fit are offered as before.
    short = ConsoleChannel("alice", stdin=io.StringIO("y\n\n"), stdout=io.StringIO())
    gate.default_timeout = 10
    gate.channels = [short]
    short.bind(gate)
    assert upload("x" * 100) == "ok"
