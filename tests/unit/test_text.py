"""Agent text shown to people: hidden and reordering characters are made visible."""

from __future__ import annotations

import itertools

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
    assert block.splitlines() == ["    \u2502 line one\u23ce", "    \u2502 line two"]


# -- characters that draw as nothing or as a plain space -------------------------


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        # a payload hidden in variation selectors after an emoji
        ("ok\U0001f44d\ufe0f\ufe01\ufe02", "ok\U0001f44d<U+FE0F><U+FE01><U+FE02>"),
        ("\u2764\ufe0f", "\u2764<U+FE0F>"),
        ("a\U000e0100\U000e01efb", "a<U+E0100><U+E01EF>b"),
        ("com\u034fbining", "com<U+034F>bining"),
        ("\u115f\u1160\u3164\uffa0", "<U+115F><U+1160><U+3164><U+FFA0>"),
        ("blank\u2800braille", "blank<U+2800>braille"),
        ("mongolian\u180b\u180c\u180d\u180f", "mongolian<U+180B><U+180C><U+180D><U+180F>"),
        ("khmer\u17b4\u17b5", "khmer<U+17B4><U+17B5>"),
        ("reserved\u2065\ufff0\ufff8", "reserved<U+2065><U+FFF0><U+FFF8>"),
        ("tag\U000e0001\U000e0041\U000e007f", "tag<U+E0001><U+E0041><U+E007F>"),
        ("soft\u00adhyphen", "soft<U+00AD>hyphen"),
    ],
)
def test_invisible_characters_become_visible_codes(raw: str, shown: str) -> None:
    assert visible(raw) == shown


@pytest.mark.parametrize(
    "space", ["\u00a0", "\u1680", *map(chr, range(0x2000, 0x200B)), "\u202f", "\u205f", "\u3000"]
)
def test_non_ascii_spaces_become_visible_codes(space: str) -> None:
    assert visible(f"pay{space}alice") == f"pay<U+{ord(space):04X}>alice"
    assert visible(space) == f"<U+{ord(space):04X}>"


@pytest.mark.parametrize(
    "text",
    [
        "caf\u00e9 na\u00efve \u00c5ngstr\u00f6m",  # precomposed accents
        "cafe\u0301",  # a combining accent is a mark that draws
        "\u4e2d\u6587\u3001\u65e5\u672c\u8a9e\u3002\ud55c\uad6d\uc5b4",  # CJK, Hangul
        "\u0645\u0631\u062d\u0628\u0627 \u05e9\u05dc\u05d5\u05dd",  # Arabic, Hebrew letters
        "\U0001f44d \U0001f600 \u2705 \U0001f44d\U0001f3fd",  # emoji, skin tone, no selector
        "\u2026 \u2014 \u2192 \u00b7 \u2500\u2502",  # punctuation, arrows, box drawing
        "line one\nline two\n\tindented",
        "multi\nline \u00fcnicode\twith tab",
        "",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert visible(text) == text


def test_the_table_holds_unicode_default_ignorable_code_points() -> None:
    from gatekeeper._text import _INVISIBLE

    spans = [(a, b) for a, b, _ in _INVISIBLE]
    assert spans == sorted(spans)
    assert all(a <= b < c for (a, b), (c, _) in itertools.pairwise(spans))
    ignorable = {c for a, b in spans for c in range(a, b + 1)} - {0x2800}
    assert len(ignorable) == 4174  # DerivedCoreProperties.txt, Unicode 14.0-16.0


def test_hidden_is_the_categories_plus_the_table_for_every_code_point() -> None:
    import unicodedata

    from gatekeeper._text import _CATEGORIES, _INVISIBLE_CHARS, _hidden

    category = unicodedata.category
    wrong = [
        f"U+{code:04X}"
        for code in range(0x110000)
        if _hidden(ch := chr(code))
        is not (ch not in " \n\t" and (category(ch) in _CATEGORIES or ch in _INVISIBLE_CHARS))
    ]
    assert wrong == []
    for code in range(0, 0x110000, 89):  # visible() agrees, on a sample (the whole is slow)
        ch = chr(code)
        assert visible(ch) == (f"<U+{code:04X}>" if _hidden(ch) else ch)


def test_visible_agrees_with_hidden_on_mixed_text() -> None:
    from gatekeeper._text import _hidden

    text = "a\u00a0b\nc\tb\ufe0f\u00e9\u200b\U0001f44d\x1b\u2800 z"
    expected = "".join(f"<U+{ord(c):04X}>" if _hidden(c) else c for c in text)
    assert visible(text) == expected
    assert expected == "a<U+00A0>b\nc\tb<U+FE0F>\u00e9<U+200B>\U0001f44d<U+001B><U+2800> z"
