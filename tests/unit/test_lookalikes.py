"""Mixed-script lookalikes are found, and flagged next to the value wherever an approver looks.

``pаypal.com`` with a Cyrillic ``а`` reads as ``paypal.com``; so does its
punycode ``xn--pypal-4ve.com`` once a browser decodes it. The detector finds
them in argument values and keys, tool names and agent names; the terminal
channel, ``gatekeeper show`` and Slack say so beside the value.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import string
import threading
import unicodedata
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gatekeeper import Gatekeeper, MemoryStore
from gatekeeper._text import call_lookalikes, lookalikes, lookalikes_in
from gatekeeper.channels.console import describe_request
from gatekeeper.channels.slack._blocks import request_message
from gatekeeper.channels.slack._escape import check_limits
from gatekeeper.cli._commands import IO, show
from gatekeeper.models import ApprovalRequest
from gatekeeper.testing import RecordingChannel
from tests.gatekit import make_policy
from tests.unit.test_slack_blocks import block, flat, make

NOW = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.timezone.utc)
SPOOF = "p\u0430ypal.com"  # Cyrillic а
# Lookalikes of Latin letters in other scripts: Cyrillic, Greek, Armenian, Cherokee.
HOMOGLYPHS = {
    "a": "\u0430",
    "e": "\u0435",
    "o": "\u043e",
    "p": "\u0440",
    "c": "\u0441",
    "x": "\u0445",
    "y": "\u0443",
    "i": "\u0456",
    "v": "\u03bd",
    "n": "\u0578",
    "h": "\u04bb",
}


@pytest.mark.parametrize(
    ("text", "token", "why"),
    [
        (SPOOF, SPOOF, "mixes Latin and Cyrillic letters"),
        (f"https://{SPOOF}/login?next=/", SPOOF, "U+0430 CYRILLIC SMALL LETTER A"),
        ("mail \u0430lice@example.com now", "\u0430lice@example.com", "Latin and Cyrillic"),
        ("\u0430\u0441\u0435.com", "\u0430\u0441\u0435.com", "U+0441 CYRILLIC SMALL LETTER ES"),
        ("g\u03bfogle.com", "g\u03bfogle.com", "mixes Latin and Greek letters"),
        ("xn--pypal-4ve.com", "xn--pypal-4ve.com", 'punycode (xn--) for "pаypal.com"; that mixes'),
        ("XN--80AK6AA92E.COM", "XN--80AK6AA92E.COM", "punycode"),
        ("xn--zz.example", "xn--zz.example", "does not decode"),
        ("\uff50aypal.com", "\uff50aypal.com", "U+FF50 FULLWIDTH LATIN SMALL LETTER P, like 'p'"),
        ("\U0001d429aypal", "\U0001d429aypal", "MATHEMATICAL BOLD SMALL P"),
    ],
)
def test_lookalike_tokens_are_found_and_explained(text: str, token: str, why: str) -> None:
    (found,) = lookalikes(text, "args.url")
    assert found.token == token
    assert why in found.why
    assert str(found).startswith("args.url: ")


@pytest.mark.parametrize(
    "text",
    [
        "paypal.com",
        "https://example.com/a?b=c",
        "Москва",  # one script, not Latin
        "naïve café Straße",
        "Tokyo東京ひらがなカタカナ",  # Latin with Han and kana: allowed
        "서울Seoul",  # Latin with Hangul: allowed
        "Москва and Paris",  # two scripts, two tokens
        "",
    ],
)
def test_ordinary_text_is_not_flagged(text: str) -> None:
    assert lookalikes(text) == []


def test_values_and_keys_are_found_at_their_paths() -> None:
    args = {"to": [{"host": SPOOF}], "n\u0430me": "x", "ok": "fine"}
    found = {str(w).split(":")[0] for w in lookalikes_in(args, "args")}
    assert found == {"args.to[0].host", "args.n\u0430me (its name)"}


def test_tool_and_agent_names_are_checked() -> None:
    odd = call_lookalikes("s\u0435nd_money", "billing-b\u043et", {"x": 1})
    assert [w.token for w in odd["tool"]] == ["s\u0435nd_money"]
    assert [w.token for w in odd["agent"]] == ["billing-b\u043et"]
    assert odd["args"] == []


latin_words = st.text(string.ascii_letters, min_size=1, max_size=30)


@given(latin_words, st.data())
def test_one_homoglyph_in_a_latin_word_is_always_flagged(word: str, data: st.DataObject) -> None:
    letter = data.draw(st.sampled_from(sorted(HOMOGLYPHS)))
    at = data.draw(st.integers(0, len(word)))
    spoof = word[:at] + HOMOGLYPHS[letter] + word[at:]
    (found,) = lookalikes(f"pay {spoof}.com today")
    assert found.token == f"{spoof}.com"
    assert f"U+{ord(HOMOGLYPHS[letter]):04X}" in found.why


@given(latin_words)
def test_the_punycode_of_a_spoofed_word_is_flagged_with_what_it_decodes_to(word: str) -> None:
    spoof = word + "\u0430"
    encoded = "xn--" + spoof.encode("punycode").decode("ascii")
    (found,) = lookalikes(f"https://{encoded}.com/")
    assert f'for "{spoof}.com"' in found.why and "Cyrillic" in found.why


@given(
    st.text(st.characters(categories=["Ll", "Lu"], max_codepoint=0x2FF)).filter(
        lambda t: unicodedata.normalize("NFKC", t) == t
    )
)
def test_latin_text_alone_is_never_flagged(text: str) -> None:
    """Latin letters in their ordinary form (NFKC leaves them be), accents included."""
    assert lookalikes(text) == []


@given(st.text(st.characters(min_codepoint=0x430, max_codepoint=0x44F)))
def test_cyrillic_text_alone_is_never_flagged(text: str) -> None:
    assert lookalikes(text) == []


@given(st.recursive(st.text(), lambda kids: st.lists(kids) | st.dictionaries(st.text(), kids)))
def test_the_detector_never_raises(value: object) -> None:
    for found in lookalikes_in(value, "args"):
        str(found).encode("utf-8")


def test_a_huge_value_is_checked_up_to_a_bound_and_says_so() -> None:
    text = ("слово " * 50_000) + SPOOF
    (found,) = lookalikes(text, "args.note")
    assert "not checked past the first 200,000" in found.why


# -- the surfaces ----------------------------------------------------------------------------


def _hostile() -> ApprovalRequest:
    return make(tool="s\u0435nd_money", agent="billing-b\u043et", args={"to": f"https://{SPOOF}"})


def test_the_terminal_channel_warns_beside_each_value() -> None:
    lines = describe_request(_hostile()).splitlines()
    tool = next(i for i, line in enumerate(lines) if line.startswith("  tool:"))
    agent = next(i for i, line in enumerate(lines) if line.startswith("  agent:"))
    args = next(i for i, line in enumerate(lines) if line.startswith("  args"))
    assert lines[tool + 1].startswith('  \u26a0 LOOKALIKE tool: "s\u0435nd_money" mixes Latin')
    assert lines[agent + 1].startswith('  \u26a0 LOOKALIKE agent: "billing-b\u043et" mixes')
    assert lines[args + 1].startswith(f'  \u26a0 LOOKALIKE args.to: "{SPOOF}" mixes')


def test_gatekeeper_show_warns_about_a_lookalike_host() -> None:
    seen = RecordingChannel()
    gate = Gatekeeper(policy=make_policy(), store=MemoryStore(), channels=[seen])

    @gate.guard
    def wire(to: str) -> None: ...

    worker = threading.Thread(target=lambda: _ignore(wire, f"https://{SPOOF}/pay"), daemon=True)
    worker.start()
    req = seen.wait_for_request()
    out = io.StringIO()
    show(gate, req.id, as_json=False, io=IO(out, io.StringIO(), io.StringIO()))
    assert f'\u26a0 LOOKALIKE args.to: "{SPOOF}" mixes Latin and Cyrillic' in out.getvalue()
    gate.deny(req.id, approver="alice", comment="test over")
    worker.join(10)


def _ignore(fn: Any, *args: Any) -> None:
    with contextlib.suppress(Exception):  # the call is denied to end the test
        fn(*args)


def test_slack_lists_the_lookalikes_under_the_summary() -> None:
    message = request_message(_hostile(), now=NOW)
    check_limits(message)
    ids = [b.get("block_id") for b in message["blocks"]]
    assert ids.index("gk_lookalikes") == ids.index("gk_summary") + 1
    texts = flat(block(message, "gk_lookalikes"))
    assert texts[0].startswith("\u26a0\ufe0f Lookalike characters")
    assert f'\u2022 args.to: "{SPOOF}" mixes Latin and Cyrillic' in "\n".join(texts)
    assert '\u2022 tool: "s\u0435nd_money" mixes Latin and Cyrillic' in "\n".join(texts)


def test_slack_adds_nothing_when_there_is_no_lookalike() -> None:
    message = request_message(make(), now=NOW)
    assert "gk_lookalikes" not in [b.get("block_id") for b in message["blocks"]]


# -- what an agent would try next --------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("https://paypal.com\u2044login@evil.example/", "U+2044 FRACTION SLASH, not '/'"),
        ("paypal\u3002com", "U+3002 IDEOGRAPHIC FULL STOP, not '.'"),
        ("paypal\uff0ecom", "FULLWIDTH FULL STOP"),
        ("x" * 300 + SPOOF, "U+0430 CYRILLIC SMALL LETTER A"),  # past the length of a host
        (SPOOF + "." * 300, "U+0430 CYRILLIC SMALL LETTER A"),
    ],
)
def test_lookalike_punctuation_and_long_tokens_are_flagged_too(text: str, why: str) -> None:
    (found,) = lookalikes(text, "args.url")
    assert why in found.why


def test_typographic_punctuation_in_prose_is_not_flagged() -> None:
    assert lookalikes("wait\u2026 it\u2019s fine \u2013 \u201creally\u201d") == []


def test_a_flood_of_lookalikes_is_cut_so_the_request_stays_readable() -> None:
    args = {"first": SPOOF, "noise": [f"n{i}\u0430" for i in range(500)]}
    lines = describe_request(make(args=args)).splitlines()
    warnings = [line for line in lines if "LOOKALIKE" in line]
    assert len(warnings) == 11
    assert warnings[0].endswith("CYRILLIC SMALL LETTER A") and "args.first" in warnings[0]
    assert warnings[-1] == "  \u26a0 LOOKALIKE and 491 more lookalikes"
    message = request_message(make(args=args), now=NOW)
    check_limits(message)
