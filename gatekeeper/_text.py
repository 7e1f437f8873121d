"""Making agent-controlled text safe to show a person.

Tool arguments and reasons are written by a model that may be prompt-injected.
Before a person reads them they are bounded in size and every character that
could hide or rearrange what they see (terminal escape sequences, other
control characters, bidirectional overrides, zero-width characters, variation
selectors and other default-ignorable code points, blank-looking fillers and
non-ASCII spaces) is shown as a visible code such as ``<U+202E>``.

The agent's prose (its stated reason, a tool's outcome) never draws lines of
ours: every line break it wrote is shown as ``⏎`` (:data:`LINE_BREAK`), and
it is shown either on one line (:func:`prose_inline`) or as a block whose
every line carries a quote mark (:func:`prose_lines`, :func:`quoted_block`),
hard-wrapped for the terminal so that no soft wrap can start a line of its own.
"""

from __future__ import annotations

import functools
import json
import re
import unicodedata
from dataclasses import dataclass
from typing import Any

from ._canonical import truncate

__all__ = [
    "LINE_BREAK",
    "TERMINAL_WIDTH",
    "Lookalike",
    "call_lookalikes",
    "for_terminal",
    "inline",
    "lookalike_warnings",
    "lookalikes",
    "lookalikes_in",
    "pretty_json",
    "prose_inline",
    "prose_lines",
    "quoted_block",
    "visible",
    "wrap_columns",
]

LINE_BREAK = "\u23ce"  # ⏎: where the agent's text broke a line
TERMINAL_WIDTH = 78  # columns a quoted line may take in the terminal, quote mark included

_KEEP = frozenset("\n\t")

# What is hidden is decided in two parts.
#
# 1. By Unicode general category, everything in
_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp"})
#    except the ASCII space and the newline and tab in _KEEP:
#      Cc  control: ESC, BEL, DEL, the C1 controls (CSI...)
#      Cf  format: bidi overrides and isolates, zero-width space/joiners, BOM,
#          soft hyphen, tag characters U+E0001 and U+E0020-E007F...
#      Cs, Co, Cn  surrogates, private use, unassigned (a font may draw
#          anything or nothing for them)
#      Zs  spaces other than U+0020: NBSP, U+1680, U+2000-200A, U+202F,
#          U+205F, U+3000 (they look like a space but are not one, or are
#          wide enough to push text off screen)
#      Zl, Zp  line and paragraph separators that some viewers break on
#    ``str.isprintable()`` is False for exactly these categories (and True for
#    the ASCII space), so the code below asks it instead of looking up the
#    category: same answer, done in C.
#
# 2. By the table below, whatever its category: Unicode's
#    Default_Ignorable_Code_Point set (DerivedCoreProperties.txt: 4,174 code
#    points, the same from Unicode 14.0 to 16.0; characters a renderer is
#    expected to draw as nothing, reserved ones included), listed in full so
#    that it holds even where the category would let a character through
#    (variation selectors and the combining grapheme joiner are Mn, the Hangul
#    fillers Lo) or where a future Unicode assigns a reserved code point,
#    plus characters that are not default-ignorable but draw as blank.
_INVISIBLE: tuple[tuple[int, int, str], ...] = (
    # start, end (inclusive), what
    (0x00AD, 0x00AD, "soft hyphen (Cf)"),
    (0x034F, 0x034F, "combining grapheme joiner (Mn)"),
    (0x061C, 0x061C, "Arabic letter mark (Cf)"),
    (0x115F, 0x1160, "Hangul choseong and jungseong fillers (Lo)"),
    (0x17B4, 0x17B5, "Khmer inherent vowels aq, aa (Mn)"),
    (0x180B, 0x180D, "Mongolian free variation selectors 1-3 (Mn)"),
    (0x180E, 0x180E, "Mongolian vowel separator (Cf)"),
    (0x180F, 0x180F, "Mongolian free variation selector 4 (Mn)"),
    (0x200B, 0x200F, "zero-width space, non-joiner, joiner; LRM, RLM (Cf)"),
    (0x202A, 0x202E, "bidi embeddings and overrides (Cf)"),
    (
        0x2060,
        0x206F,
        "word joiner, invisible operators, bidi isolates, "
        "deprecated format characters (Cf; U+2065 reserved)",
    ),
    (0x2800, 0x2800, "braille pattern blank (So; not default-ignorable, draws blank)"),
    (0x3164, 0x3164, "Hangul filler (Lo)"),
    (0xFE00, 0xFE0F, "variation selectors 1-16, including the emoji selector U+FE0F (Mn)"),
    (0xFEFF, 0xFEFF, "zero-width no-break space / BOM (Cf)"),
    (0xFFA0, 0xFFA0, "halfwidth Hangul filler (Lo)"),
    (0xFFF0, 0xFFF8, "reserved (Cn)"),
    (0x1BCA0, 0x1BCA3, "shorthand format controls (Cf)"),
    (0x1D173, 0x1D17A, "musical symbol format controls (Cf)"),
    (0xE0000, 0xE00FF, "tag characters and reserved (Cf, Cn)"),
    (0xE0100, 0xE01EF, "variation selectors 17-256 (Mn)"),
    (0xE01F0, 0xE0FFF, "reserved (Cn)"),
)

# The table as a regex character class (one C-speed search per string) and as
# a set of characters (one lookup per character).
_INVISIBLE_RE = re.compile(
    "[" + "".join(f"{re.escape(chr(a))}-{re.escape(chr(b))}" for a, b, _ in _INVISIBLE) + "]"
)
_INVISIBLE_CHARS = frozenset(chr(c) for a, b, _ in _INVISIBLE for c in range(a, b + 1))


def _hidden(ch: str) -> bool:
    """Whether ``ch`` is shown as a ``<U+XXXX>`` code rather than as itself."""
    if ch.isprintable():
        return ch in _INVISIBLE_CHARS
    return ch not in _KEEP


def _code(ch: str) -> str:
    return f"<U+{ord(ch):04X}>"


def visible(text: str) -> str:
    """``text`` with every invisible or reordering character shown as ``<U+XXXX>``."""
    if text.isascii() and text.isprintable():
        return text  # the common case; no ASCII character is in _INVISIBLE
    if (
        text.replace("\n", "").replace("\t", "").isprintable()
        and _INVISIBLE_RE.search(text) is None
    ):
        return text  # multi-line or non-ASCII text with nothing to show
    return "".join(  # _hidden(ch), inlined: this loop is the slow path
        ch if (ch.isprintable() and ch not in _INVISIBLE_CHARS) or ch in _KEEP else _code(ch)
        for ch in text
    )


def for_terminal(text: str, limit: int = 4000) -> str:
    """Agent text made safe and short enough to print in a terminal."""
    return visible(truncate(text, limit))


def pretty_json(value: Any, limit: int = 20_000) -> str:
    """Arguments as indented JSON, exactly as they will run, made visible and bounded."""
    text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)
    return for_terminal(text, limit)


def inline(text: str | None, limit: int = 200) -> str:
    """Agent text for a one-line field: newlines and tabs shown as codes too.

    A name or a reason must not be able to start a line of its own and so
    forge a field of what the approver reads.
    """
    if text is None:
        return ""
    shown = visible(truncate(text, limit))
    return shown.replace("\n", "<U+000A>").replace("\t", "<U+0009>")


def prose_inline(text: str | None, limit: int = 2000) -> str:
    """Agent prose for one line: made visible and bounded, each line break shown as ``⏎``.

    The text stays one line: a reason like ``"ok\\n12:03 approved by alice"``
    reads ``ok⏎ 12:03 approved by alice`` and can't pass for a line of ours.
    """
    if not text:
        return ""
    return "\n".join(prose_lines(text, limit)).replace("\n", " ")


def prose_lines(text: str, limit: int = 4000, width: int | None = None) -> list[str]:
    """Agent prose as display lines: visible, bounded, each of its line breaks shown as ``⏎``.

    Every line but the last ends with ``⏎``; tabs are shown as ``<U+0009>``.
    With ``width``, lines are also cut to at most that many terminal columns
    (at a space where there is one), so the caller can mark every line the
    person will see. The caller must show each line as part of a quote.
    """
    shown = visible(truncate(text, limit)).replace("\t", "<U+0009>")
    lines = shown.split("\n")
    marked = [line + LINE_BREAK for line in lines[:-1]] + lines[-1:]
    if width is None:
        return marked
    return [piece for line in marked for piece in wrap_columns(line, width)]


def _columns(ch: str) -> int:
    if unicodedata.combining(ch):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def wrap_columns(line: str, width: int) -> list[str]:
    """``line`` cut into pieces of at most ``width`` terminal columns, at spaces where possible.

    Wide (East Asian) characters count two columns, combining marks none. No
    character is dropped or added: joined, the pieces are ``line``.
    """
    if len(line) <= width and line.isascii():
        return [line]
    pieces: list[str] = []
    start, used, space = 0, 0, -1
    for i, ch in enumerate(line):
        cols = _columns(ch)
        if used + cols > width and i > start:
            cut = space + 1 if space >= start else i
            pieces.append(line[start:cut])
            start, space = cut, -1
            used = sum(_columns(c) for c in line[start:i])
        used += cols
        if ch == " ":
            space = i
    pieces.append(line[start:])
    return pieces


def quoted_block(
    text: str, limit: int = 4000, prefix: str = "    \u2502 ", width: int = TERMINAL_WIDTH
) -> str:
    """Agent prose for the terminal, every line it can take marked as quoted.

    Each line starts with ``prefix`` (``│``); the agent's own line breaks show
    as ``⏎``, and lines are cut to fit ``width`` columns, prefix included, so
    a long line can't wrap in the terminal and start a line without the mark.
    """
    room = max(width - len(prefix), 10)
    return "\n".join(prefix + line for line in prose_lines(text, limit, room))


# -- lookalikes ------------------------------------------------------------------------------
#
# A prompt-injected agent can send money to "pаypal.com" with a Cyrillic "а", or
# name itself "billing-bоt": text that reads as one thing and is another. An
# approver can't see that; these functions find it so every surface can say so
# next to the value. A token (a run of characters between spaces and URL or JSON
# punctuation, so a host name, an e-mail address or an account name) is flagged
# when
#   * its letters (and non-ASCII digits) come from more than one script, except
#     the mixes Unicode's "highly restrictive" profile allows (Latin with Han
#     and Hiragana/Katakana, with Han and Hangul, or with Han and Bopomofo);
#   * it has letters or digits that are compatibility forms of others
#     (fullwidth "ｐ", mathematical "𝐩", the ligature "ﬁ": NFKC changes them);
#   * it holds a punycode label ("xn--..."), whose decoded form is shown.
# A name written wholly in one other script ("асе" all Cyrillic) is not
# flagged on its own; "асе.com" is, as its letters mix Cyrillic and Latin.

_TOKEN = re.compile(r"[^\s/\\:?#=&,;\"'`()\[\]{}<>|!*^$]+")
_CACHED_TOKEN = 253  # the longest DNS name; longer tokens are checked but not cached
# Characters that pass for the punctuation of a host, URL or address but are not
# it ("paypal.com⁄login@evil.example" is one host, not a path on paypal.com).
_FAKE_PUNCTUATION = dict.fromkeys("\u2044\u2215\u29f8\uff0f\u2571", "/") | {
    **dict.fromkeys("\u2024\u3002\uff0e\uff61\u0701\u0702\ua4f8", "."),
    **dict.fromkeys("\uff20\ufe6b", "@"),
    **dict.fromkeys("\u2236\ua789\uff1a\u0589\u05c3", ":"),
    **dict.fromkeys("\u2010\u2011\u2012\u2212\u2043\ufe63\uff0d", "-"),
}
_SCAN_LIMIT = 200_000  # characters of one string checked (a fraction of a second)
_ALLOWED_MIXES = (
    frozenset({"Latin", "Han", "Hiragana", "Katakana"}),
    frozenset({"Latin", "Han", "Hangul"}),
    frozenset({"Latin", "Han", "Bopomofo"}),
)
_NOT_SCRIPTS = frozenset(
    {"MODIFIER", "SCRIPT", "DOUBLE-STRUCK", "BLACK-LETTER", "TURNED", "SMALL", "CAPITAL"}
)
_SCRIPT_NAMES = {"CJK": "Han"}


@dataclass(frozen=True)
class Lookalike:
    """A token that may pass for another: where it was found, the token, and why."""

    where: str
    token: str
    why: str

    def __str__(self) -> str:
        place = f"{self.where}: " if self.where else ""
        return f'{place}"{inline(self.token, 300)}" {self.why}'


def _script(ch: str) -> str | None:
    """The script of a letter or digit (None for ASCII digits and the unscripted)."""
    if ch.isascii():
        return "Latin" if ch.isalpha() else None
    first = unicodedata.name(ch, "").split(" ", 1)[0].split("-", 1)[0]
    if not first or first in _NOT_SCRIPTS:
        return None
    return _SCRIPT_NAMES.get(first, first.capitalize())


def _described(ch: str) -> str:
    return f'"{visible(ch)}" is U+{ord(ch):04X} {unicodedata.name(ch, "(unnamed)")}'


_cached_problems_of = functools.lru_cache(maxsize=4096)


def _token_problems(token: str) -> tuple[str, ...]:
    """Why ``token`` may pass for other text (short tokens cached: prose repeats its words)."""
    if len(token) > _CACHED_TOKEN:
        return _problems_of(token)
    return _cached_problems(token)


def _problems_of(token: str) -> tuple[str, ...]:
    problems: list[str] = []
    lowered = token.lower()
    if "xn--" in lowered:
        problems.append(_punycode(token))
    if token.isascii():
        return tuple(problems)
    scripts: dict[str, list[str]] = {}
    compat: list[str] = []
    fake: list[str] = []
    for ch in token:
        category = unicodedata.category(ch)
        if category[0] not in "LN":
            if ch in _FAKE_PUNCTUATION:
                fake.append(ch)
            continue
        normal = unicodedata.normalize("NFKC", ch)
        if normal != ch:
            compat.append(ch)
        script = _script(normal[0]) if normal else None
        if script is not None and (category[0] == "L" or category == "Nd"):
            scripts.setdefault(script, []).append(ch)
    if len(scripts) > 1 and not any(set(scripts) <= allowed for allowed in _ALLOWED_MIXES):
        # The odd letters: those not in Latin when Latin is there, else the fewer.
        ranked = sorted(scripts, key=lambda s: (s != "Latin", -len(scripts[s]), s))
        odd = list(dict.fromkeys(ch for s in ranked[1:] for ch in scripts[s]))
        names = " and ".join(ranked) if len(ranked) == 2 else ", ".join(ranked)
        shown = "; ".join(_described(ch) for ch in odd[:3])
        more = f" and {len(odd) - 3} more" if len(odd) > 3 else ""
        problems.append(f"mixes {names} letters: {shown}{more}")
    if compat:
        odd = list(dict.fromkeys(compat))
        shown = "; ".join(
            f"{_described(ch)}, like {unicodedata.normalize('NFKC', ch)!r}" for ch in odd[:3]
        )
        more = f" and {len(odd) - 3} more" if len(odd) > 3 else ""
        problems.append(f"has lookalike forms of other characters: {shown}{more}")
    if fake and any(ch.isascii() and ch.isalnum() for ch in token):
        odd = list(dict.fromkeys(fake))
        shown = "; ".join(f"{_described(ch)}, not {_FAKE_PUNCTUATION[ch]!r}" for ch in odd[:3])
        problems.append(f"has punctuation that passes for ASCII: {shown}")
    return tuple(problems)


_cached_problems = _cached_problems_of(_problems_of)


def _punycode(token: str) -> str:
    labels = []
    for label in token.split("."):
        if label.lower().startswith("xn--"):
            try:
                labels.append(label[4:].encode("ascii").decode("punycode"))
            except (UnicodeError, ValueError):
                return "holds a punycode (xn--) label that does not decode"
        else:
            labels.append(label)
    decoded = ".".join(labels)
    inner = [why for why in _token_problems(decoded) if "punycode" not in why]
    said = f'is punycode (xn--) for "{inline(decoded, 300)}"'
    return "; ".join([said, *(f"that {why}" for why in inner)])


def lookalikes(text: str, where: str = "") -> list[Lookalike]:
    """The tokens of ``text`` that may pass for other text (see the comment above)."""
    if text.isascii() and "xn--" not in text.lower():
        return []
    found: list[Lookalike] = []
    for match in _TOKEN.finditer(text, 0, _SCAN_LIMIT):
        token = match.group()
        if token.isascii() and "xn--" not in token.lower():
            continue
        found.extend(Lookalike(where, token, why) for why in _token_problems(token))
    if len(text) > _SCAN_LIMIT:
        rest = f"… [{len(text) - _SCAN_LIMIT:,} more characters]"
        found.append(Lookalike(where, rest, f"not checked past the first {_SCAN_LIMIT:,}"))
    return found


def lookalikes_in(value: Any, where: str) -> list[Lookalike]:
    """Lookalikes in every string of a JSON value, keys included, each with its path."""
    if isinstance(value, str):
        return lookalikes(value, where)
    found: list[Lookalike] = []
    if isinstance(value, dict):
        for key, item in value.items():
            path = f"{where}.{inline(str(key), 100)}"
            found.extend(lookalikes(str(key), f"{path} (its name)"))
            found.extend(lookalikes_in(item, path))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found.extend(lookalikes_in(item, f"{where}[{i}]"))
    return found


def call_lookalikes(tool: str, agent: str, args: Any) -> dict[str, list[Lookalike]]:
    """Lookalikes of a call, by what they are next to: ``tool``, ``agent`` and ``args``."""
    return {
        "tool": lookalikes(tool, "tool"),
        "agent": lookalikes(agent, "agent"),
        "args": lookalikes_in(args, "args"),
    }


def lookalike_warnings(found: list[Lookalike], most: int = 10) -> list[str]:
    """What to print for ``found``: each warning once, at most ``most``, then how many more.

    Bounded, so a flood of lookalikes can't bury the one that matters (the
    first ones, in argument order, are shown) or the rest of the request.
    """
    unique = list(dict.fromkeys(str(w) for w in found))
    if len(unique) <= most:
        return unique
    return [*unique[:most], f"and {len(unique) - most} more lookalikes"]
