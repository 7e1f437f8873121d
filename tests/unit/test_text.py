"""Agent text shown to people: hidden and reordering characters are made visible."""

from __future__ import annotations

import pytest

from gatekeeper._text import for_terminal, pretty_json, visible


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("\x1b[2J", "<U+001B>[2J"),
        ("ding\x07", "ding<U+0007>"),
        ("c1\x9b", "c1<U+009B>"),
        ("abc\u202edcba", "abc<U+202E>dcba"),
        ("zero\u200bwidth\u200d\ufeff", "zero<U+200B>width<U+200D><U+FEFF>"),
        ("line\u2028sep", "line<U+2028>sep"),
    ],
)
def test_hidden_characters_become_visible_codes(raw: str, shown: str) -> None:
    assert visible(raw) == shown


@pytest.mark.parametrize(
    "text", ["plain text", "héllo wörld", "日本語", "Ελληνικά", "tab\tand\nnl"]
)
def test_normal_text_is_left_alone(text: str) -> None:
    assert visible(text) == text


def test_for_terminal_bounds_and_cleans() -> None:
    assert for_terminal("\x1b" * 10, limit=3) == "<U+001B>" * 3 + "… [7 more characters]"


def test_pretty_json_shows_escapes_visibly() -> None:
    assert "<U+202E>" in pretty_json({"name": "invoice\u202efdp.exe"})


def test_inline_fields_cannot_start_a_line_of_their_own() -> None:
    from gatekeeper._text import inline, quoted_block

    forged = 'ok\n  args, sha256 000000000000:\n    {"amount": 1}'
    assert "\n" not in inline(forged)
    assert inline(forged).startswith("ok<U+000A>")
    assert inline("a\tb") == "a<U+0009>b"
    assert inline(None) == ""
    block = quoted_block("line one\nline two")
    assert block.splitlines() == ["    | line one", "    | line two"]
