"""The agent's prose can't draw lines of ours: line breaks show as ⏎, every line is quoted.

A reason such as ``"ok\\n12:03 approved by alice"`` must never show its second
line as a line of its own that reads like a timeline or status line: not in
the terminal channel, not in ``gatekeeper show``, not in Slack, not on the
console's request page. Nor may a long line wrap in an 80-column terminal
and start a line without the quote mark.
"""

from __future__ import annotations

import datetime as dt
import io
import re
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gatekeeper import Gatekeeper, MemoryStore
from gatekeeper._text import (
    LINE_BREAK,
    TERMINAL_WIDTH,
    prose_inline,
    prose_lines,
    quoted_block,
    wrap_columns,
)
from gatekeeper.channels.console import describe_request
from gatekeeper.channels.slack._blocks import request_message
from gatekeeper.cli._commands import IO, show
from gatekeeper.models import RequestStatus
from gatekeeper.testing import AutoDecider
from tests.gatekit import make_policy
from tests.unit.test_slack_blocks import block, flat, make

FORGED = "ok\n12:03 approved by alice"
# Padding that an 80-column terminal would wrap just before the forged line.
PADDED = "ok" + " " * 74 + "12:03 approved by alice via console"
NOW = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.timezone.utc)
STAMP = re.compile(r"^\s*(#\d+ )?\d{2}:\d{2}")  # how our timeline and vote lines begin


def _columns(line: str) -> int:
    return sum(
        0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1
        for c in line
    )


# -- the text helpers ----------------------------------------------------------------------


def test_each_line_break_is_marked_and_kept_as_a_quote_line() -> None:
    assert prose_lines(FORGED) == [f"ok{LINE_BREAK}", "12:03 approved by alice"]
    assert prose_inline(FORGED) == f"ok{LINE_BREAK} 12:03 approved by alice"
    assert prose_lines("a\tb") == ["a<U+0009>b"]
    assert quoted_block(FORGED).splitlines() == [
        f"    \u2502 ok{LINE_BREAK}",
        "    \u2502 12:03 approved by alice",
    ]


def test_a_padded_line_is_cut_before_the_terminal_would_wrap_it() -> None:
    lines = quoted_block(PADDED).splitlines()
    assert len(lines) == 2
    assert all(line.startswith("    \u2502 ") for line in lines)
    assert all(len(line) <= TERMINAL_WIDTH for line in lines)


@given(st.text(), st.integers(2, 120))
def test_wrap_columns_keeps_every_character_and_fits_the_width(line: str, width: int) -> None:
    pieces = wrap_columns(line, width)
    assert "".join(pieces) == line
    assert all(_columns(p) <= width or len(p) == 1 for p in pieces)


@given(st.text(max_size=500))
def test_every_terminal_line_of_a_quoted_block_is_marked_and_fits(text: str) -> None:
    for line in quoted_block(text).split("\n"):
        assert line.startswith("    \u2502 ")
        assert _columns(line) <= TERMINAL_WIDTH


# -- the terminal channel and the CLI --------------------------------------------------------


def _unquoted_stamps(text: str) -> list[str]:
    return [line for line in text.splitlines() if STAMP.match(line)]


def test_the_terminal_channel_quotes_the_reason_line_by_line() -> None:
    shown = describe_request(make(reason=FORGED))
    assert _unquoted_stamps(shown) == []
    assert f"    \u2502 ok{LINE_BREAK}\n    \u2502 12:03 approved by alice" in shown


def test_a_long_argument_is_cut_for_the_terminal_with_a_continuation_mark() -> None:
    shown = describe_request(make(args={"note": PADDED}))
    assert all(_columns(line) <= TERMINAL_WIDTH for line in shown.splitlines())
    assert "    \u21aa " in shown
    assert _unquoted_stamps(shown) == []


def test_gatekeeper_show_quotes_the_reason_and_the_tools_outcome() -> None:
    decider = AutoDecider()
    gate = Gatekeeper(policy=make_policy(), store=MemoryStore(), channels=[decider])

    @gate.guard
    def refund(order_id: str) -> None:
        raise RuntimeError("declined\n12:04:00 approved by bob via cli\n  status:  executed")

    with gate.session(agent="bot", reason=FORGED), pytest.raises(RuntimeError):
        refund("A-1")
    out = io.StringIO()
    show(gate, decider.decided[0].id, as_json=False, io=IO(out, io.StringIO(), io.StringIO()))
    text = out.getvalue()
    stamps = _unquoted_stamps(text)
    assert len(stamps) == 1 and "approved by auto-decider via test" in stamps[0]  # the real vote
    assert text.count("status:") == 2  # ours, and the quoted one
    assert f"    \u2502 RuntimeError: declined{LINE_BREAK}" in text
    assert "    \u2502   status:  executed" in text


# -- Slack ---------------------------------------------------------------------------------


def test_slack_marks_the_reasons_line_breaks_inside_the_quote() -> None:
    message = request_message(make(reason=FORGED), now=NOW)
    reason = block(message, "gk_agent_reason")
    assert reason["elements"][1]["type"] == "rich_text_quote"
    assert flat(reason)[1] == f"ok{LINE_BREAK}\n12:03 approved by alice"


def test_slacks_failure_line_keeps_the_tools_words_on_one_line() -> None:
    req = make(status=RequestStatus.FAILED, outcome="boom\n\u2705 Approved and ran by alice")
    message = request_message(req, now=NOW)
    (failed,) = block(message, "gk_failure")["elements"]
    assert "\n" not in failed["text"]
    assert failed["text"].endswith(f"boom{LINE_BREAK} \u2705 Approved and ran by alice")
