"""Lone surrogates: refused in what the agent sends, escaped in what a tool returns.

A lone surrogate such as ``"\\ud800"`` fits in a Python str but UTF-8 can't
encode it. Arguments and reasons holding one are refused before anything is
held; a tool's result or error holding one is recorded with it written as
``<U+D800>``; an audit event holding one never stops the others being sealed.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gatekeeper import Gatekeeper, InvalidToolCall, MemoryStore, RequestStatus, ToolCallDenied
from gatekeeper._canonical import first_surrogate, without_surrogates
from gatekeeper._pipeline import outcome_text
from gatekeeper._session import Session
from gatekeeper.audit import StoredEvent, draft, encode_draft, seal, verify_chain
from gatekeeper.testing import AutoDecider, RecordingChannel
from tests.gatekit import audit_events, make_policy

LONE = "\ud800"

# Any text, lone surrogates included (st.text() leaves them out).
any_text = st.lists(st.one_of(st.characters(), st.integers(0xD800, 0xDFFF).map(chr))).map("".join)


@pytest.fixture
def gate() -> Gatekeeper:
    # Without the checks these calls would be held: the short timeout only
    # keeps such a regression from hanging the run.
    return Gatekeeper(policy=make_policy(), store=MemoryStore(), default_timeout=5.0)


def _nothing_held(gate: Gatekeeper) -> None:
    assert gate.pending() == []
    assert audit_events(gate) == []


@pytest.mark.parametrize(
    ("args", "kwargs", "where"),
    [
        ((f"A-{LONE}",), {}, "order_id"),
        (("A-1",), {"note": {"x": ["ok", "bad\udfff"]}}, "note.x[1]"),
        (("A-1",), {"note": {f"k{LONE}": 1}}, "the key"),
    ],
)
def test_a_surrogate_in_the_arguments_is_refused_before_anything_is_held(
    gate: Gatekeeper, args: tuple[Any, ...], kwargs: dict[str, Any], where: str
) -> None:
    """The call raises InvalidToolCall naming where the surrogate is; nothing runs or is held."""
    gate.add_channel(AutoDecider())
    runs: list[object] = []

    @gate.guard
    def refund(order_id: str, note: Any = None) -> None:
        runs.append(order_id)

    with pytest.raises(InvalidToolCall, match="lone surrogate") as caught:
        refund(*args, **kwargs)
    assert where in str(caught.value)
    str(caught.value).encode("utf-8")  # the message itself is printable
    assert runs == []
    _nothing_held(gate)


def test_a_surrogate_in_a_framework_tools_arguments_is_refused(gate: Gatekeeper) -> None:
    tool = gate.tool("send_mail", lambda **a: a)
    with pytest.raises(InvalidToolCall, match=r"send_mail args\.to: contains a lone surrogate"):
        tool({"to": f"bob{LONE}@example.com"})
    _nothing_held(gate)


def test_a_surrogate_in_the_reason_of_one_call_is_refused(gate: Gatekeeper) -> None:
    gate.add_channel(AutoDecider(approve=False))
    tool = gate.tool("send_mail", lambda **a: a)
    with pytest.raises(InvalidToolCall, match="send_mail: the reason contains a lone surrogate"):
        tool({"to": "bob@example.com"}, reason=f"the user asked {LONE}")
    _nothing_held(gate)


def test_a_surrogate_in_a_sessions_reason_is_refused(gate: Gatekeeper) -> None:
    with pytest.raises(InvalidToolCall, match="session's reason contains a lone surrogate"):
        gate.session(agent="bot", reason=f"why{LONE}")


def test_a_session_built_directly_with_a_surrogate_reason_still_cannot_call(
    gate: Gatekeeper,
) -> None:
    """The check at binding time holds even for a Session made without ``create``."""
    gate.add_channel(AutoDecider(approve=False))

    @gate.guard
    def refund(order_id: str) -> None: ...

    refused = pytest.raises(InvalidToolCall, match="refund: the reason contains a lone surrogate")
    with Session(agent="bot", reason=f"because {LONE}"), refused:
        refund("A-1")
    _nothing_held(gate)


def test_an_unknown_tool_with_a_surrogate_name_is_still_refused_and_audited(
    gate: Gatekeeper,
) -> None:
    error = gate.refuse_unknown_tool(f"drop{LONE}", {"x": LONE}, reason=f"r{LONE}")
    assert isinstance(error, ToolCallDenied)
    (event,) = audit_events(gate)
    assert event.kind == "call.denied"
    assert event.tool == "drop<U+D800>"
    assert event.data["reason"] == "r<U+D800>"
    assert event.data["args"] == {}  # the arguments could not be recorded as sent


def test_an_approvers_edit_with_a_surrogate_is_refused(gate: Gatekeeper) -> None:
    seen = RecordingChannel()
    gate.add_channel(seen)

    @gate.guard
    def refund(order_id: str) -> None: ...

    worker = threading.Thread(target=lambda: _swallow(refund, "A-1"), daemon=True)
    worker.start()
    req = seen.wait_for_request()
    with pytest.raises(InvalidToolCall, match=r"edited args\.order_id: contains a lone surrogate"):
        gate.approve(req.id, approver="alice", args={"order_id": f"A-{LONE}"})
    assert gate.get(req.id).status is RequestStatus.PENDING
    gate.deny(req.id, approver="alice", comment="test over")
    worker.join(10)


def _swallow(fn: Any, *args: Any) -> None:
    with contextlib.suppress(Exception):  # the call is denied to end the test
        fn(*args)


# -- what a tool returns or raises ---------------------------------------------------------


def test_outcome_text_writes_surrogates_as_codes() -> None:
    assert outcome_text(exc=ValueError(f"bad {LONE}")) == "ValueError: bad <U+D800>"

    class Odd:
        def __repr__(self) -> str:
            return f"Odd({LONE})"

    assert outcome_text(Odd()) == "Odd(<U+D800>)"
    assert outcome_text(LONE) == "'\\ud800'"  # repr already escapes a str's surrogates


def test_an_allowed_tool_failing_with_a_surrogate_is_recorded(gate: Gatekeeper) -> None:
    @gate.guard
    def read_file(path: str) -> str:
        raise OSError(f"no such file: {path}{LONE}")

    with pytest.raises(OSError, match="no such file"):
        read_file("/tmp/x")
    kinds = [(e.kind, e.data.get("outcome")) for e in audit_events(gate)]
    assert kinds == [
        ("call.allowed", None),
        ("call.failed", "OSError: no such file: /tmp/x<U+D800>"),
    ]
    assert gate.verify_audit().ok


def test_a_held_tool_failing_with_a_surrogate_is_recorded_as_failed(gate: Gatekeeper) -> None:
    decider = AutoDecider()
    gate.add_channel(decider)

    @gate.guard
    def refund(order_id: str) -> None:
        raise RuntimeError(f"declined {LONE}")

    with pytest.raises(RuntimeError):
        refund("A-1")
    req = gate.get(decider.decided[0].id)
    assert req.status is RequestStatus.FAILED
    assert req.outcome == "RuntimeError: declined <U+D800>"
    assert audit_events(gate)[-1].data["outcome"] == "RuntimeError: declined <U+D800>"


# -- the audit encoder ---------------------------------------------------------------------


def test_a_draft_with_surrogates_encodes_and_its_chain_verifies() -> None:
    drafts = [
        draft("a", at_ms=1, actor="x"),
        draft("b", at_ms=2, actor=f"x{LONE}", data={f"k{LONE}": ["v\udfff", 1]}),
        draft("c", at_ms=3, actor="x"),
    ]
    sealed = seal("0" * 64, 1, drafts)
    assert len(sealed) == 3
    assert b'"actor":"x<U+D800>"' in sealed[1][0]
    assert b'{"k<U+D800>":["v<U+DFFF>",1]}' in sealed[1][0]
    entries = [StoredEvent(str(i), body, h) for i, (body, h) in enumerate(sealed, 1)]
    assert verify_chain(entries).ok


@given(any_text)
def test_encode_draft_never_raises_on_any_text(text: str) -> None:
    body = encode_draft(draft(text, at_ms=0, actor=text, data={text: [text]}))
    assert body.decode("utf-8")  # valid UTF-8 whatever the text held


@given(any_text)
def test_without_surrogates_leaves_encodable_text_and_only_it(text: str) -> None:
    cleaned = without_surrogates(text)
    cleaned.encode("utf-8")
    assert first_surrogate(cleaned) is None
    assert (cleaned == text) == (first_surrogate(text) is None)
