"""Putting untrusted text into a Slack message so that it shows as written and does nothing.

Everything an agent wrote (tool, agent, session, arguments, reason) and every
name or comment a person typed is untrusted. Slack gives text three ways to
act: ``<...>`` sequences (mentions, ``<!channel>``, disguised links), mrkdwn
formatting (``*bold*``, ``_it_``, ``~strike~``, backticks, ``>`` quotes at the
start of a line, ``:emoji:`` codes), and automatic parsing of bare URLs,
``@here`` and ``#channel``. The approach, cleanest first:

1. **rich_text text elements** for anything long or free-form (arguments,
   the agent's reason, policy reasons, comments, names in outcome lines).
   They are literal: no mrkdwn, no ``<...>`` parsing. Only :func:`literal`
   applies: hidden characters made visible, size bounded. No entities, which
   would show as ``&lt;``.
2. **plain_text text objects** (``"emoji": false``) for short values in
   fields, headers, buttons and modals: :func:`escape` makes hidden
   characters visible, turns ``& < >`` into ``&amp; &lt; &gt;`` and bounds
   the size. plain_text does no formatting, so nothing else is needed.
3. **mrkdwn** holds only our own words, numbers, times and the mentions we
   build from ids that pass :data:`USER_ID` / :data:`GROUP_ID`, with
   ``"verbatim": true`` so Slack adds no links or mentions of its own. Where
   a string *must* be mrkdwn and carry an untrusted value (the notification
   fallback ``text``, a reminder's ``text``, an ephemeral reply), the value is
   wrapped as inline code by :func:`code`: one line, entities escaped, and
   every backtick, and any space at either end (which could stop Slack from
   seeing a code span), shown as ``<U+0060>`` / ``<U+0020>``. Nothing inside
   a code span formats, and the value can never start a line (so no ``>``
   quote). No zero-width characters are ever inserted: those are exactly
   what :func:`gatekeeper._text.visible` exists to expose. (:func:`escape`
   alone stops mentions and links but not formatting: in a mrkdwn string,
   put untrusted values through :func:`code`.)

Bounds count the characters of the *result*, marker included, so a bounded
value always fits the Slack limit it was bounded for. The marker reads
``… (N more characters)``, N counting characters of the original text.

The module also holds the only constructors of the text objects and rich
text elements the messages use (:func:`plain`, :func:`md`, :func:`rt_text`
...), the people lines built from validated ids (:func:`people`), and
:func:`check_limits`, which walks a finished message for Block Kit's limits.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from ..._text import LINE_BREAK, visible

__all__ = [
    "GROUP_ID",
    "USER_ID",
    "Block",
    "check_limits",
    "code",
    "escape",
    "group_mention",
    "literal",
    "marker",
    "md",
    "people",
    "people_context",
    "plain",
    "rt_block",
    "rt_line",
    "rt_quote",
    "rt_text",
    "user_mention",
]

USER_ID = re.compile(r"[UW][A-Z0-9]{2,30}")
"""A Slack user id (``U…`` or, on Enterprise Grid, ``W…``); matched whole."""

GROUP_ID = re.compile(r"S[A-Z0-9]{2,30}")
"""A Slack user group id (``S…``); matched whole."""

_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_BREAKS = frozenset("\n\t")

_Render = Callable[[int, str], str]


def marker(cut: int) -> str:
    """What replaces the end of a bounded text: ``… (1,234 more characters)``."""
    return f"… ({cut:,} more characters)"


def _code_point(ch: str, entities: bool) -> str:
    shown = f"<U+{ord(ch):04X}>"
    return f"&lt;{shown[1:-1]}&gt;" if entities else shown


def _entity(text: str) -> str:
    return "".join(_ENTITIES.get(c, c) for c in text)


def _take(text: str, budget: int, render: _Render) -> tuple[str, int]:
    """Rendered pieces of ``text`` that fit ``budget`` characters, and how many were used."""
    pieces: list[str] = []
    used = 0
    for i, ch in enumerate(text):
        piece = render(i, ch)
        used += len(piece)
        if used > budget:
            return "".join(pieces), i
        pieces.append(piece)
    return "".join(pieces), len(text)


def _fit(text: str, limit: int, render: _Render) -> str:
    shown, taken = _take(text, limit, render)
    if taken == len(text):
        return shown
    room = max(limit - len(marker(len(text))), 0)
    shown, taken = _take(text, room, render)
    return shown + marker(len(text) - taken)


def _renderer(*, entities: bool, one_line: bool, prose: bool = False) -> _Render:
    def render(_: int, ch: str) -> str:
        if prose and ch == "\n":  # the agent's line break, shown as ⏎
            return f"{LINE_BREAK} " if one_line else f"{LINE_BREAK}\n"
        if (one_line or prose) and ch in _BREAKS:
            return _code_point(ch, entities)
        shown = visible(ch)
        return _entity(shown) if entities else shown

    return render


def escape(text: str | None, limit: int, *, one_line: bool = False, prose: bool = False) -> str:
    """Untrusted text for a ``plain_text`` (or mrkdwn) text object.

    Hidden characters become ``<U+XXXX>`` (written ``&lt;U+XXXX&gt;``), ``&``,
    ``<`` and ``>`` become entities, and the result is at most ``limit``
    characters. ``one_line`` also shows newlines and tabs as codes, so a value
    can't start a line of its own and pass for one of our labels; with
    ``prose`` (someone's sentences) a newline shows as ``⏎`` instead.
    """
    if not text:
        return ""
    return _fit(text, limit, _renderer(entities=True, one_line=one_line, prose=prose))


def literal(text: str | None, limit: int, *, one_line: bool = False, prose: bool = False) -> str:
    """Untrusted text for a ``rich_text`` text element: made visible and bounded, nothing else.

    ``prose`` marks each line break as ``⏎`` (kept as a break unless
    ``one_line``), for the agent's reason inside a quote.
    """
    if not text:
        return ""
    if len(text) <= limit and text.isascii() and text.isprintable():
        return text
    return _fit(text, limit, _renderer(entities=False, one_line=one_line, prose=prose))


def code(text: str | None, limit: int) -> str:
    """Untrusted text as an inline code span for a string that must be mrkdwn.

    The result, backticks included, is at most ``limit`` characters.
    """
    if not text:
        return "`(empty)`"
    lead = len(text) - len(text.lstrip())
    tail = len(text.rstrip())
    base = _renderer(entities=True, one_line=True)

    def render(i: int, ch: str) -> str:
        if ch == "`" or i < lead or i >= tail:
            return _code_point(ch, True)
        return base(i, ch)

    return f"`{_fit(text, limit - 2, render)}`"


def user_mention(user_id: str | None) -> str | None:
    """``<@U…>`` for a well-formed Slack user id, else None."""
    if user_id is not None and USER_ID.fullmatch(user_id):
        return f"<@{user_id}>"
    return None


def group_mention(group_id: str | None) -> str | None:
    """``<!subteam^S…>`` for a well-formed Slack user group id, else None."""
    if group_id is not None and GROUP_ID.fullmatch(group_id):
        return f"<!subteam^{group_id}>"
    return None


# -- the text objects untrusted text goes into -------------------------------------

Block = dict[str, Any]


def plain(text: str) -> Block:
    """A plain_text object; ``emoji: false`` so ``:codes:`` show as typed."""
    return {"type": "plain_text", "text": text, "emoji": False}


def md(text: str) -> Block:
    """A mrkdwn object for our own words and validated mentions; ``verbatim`` adds no links."""
    return {"type": "mrkdwn", "text": text, "verbatim": True}


def rt_text(text: str, **style: bool) -> Block:
    """A rich_text text element (literal), optionally bold/italic/code."""
    element: Block = {"type": "text", "text": text}
    if style:
        element["style"] = style
    return element


def rt_line(*elements: Block) -> Block:
    """A ``rich_text_section``: one paragraph of rich text elements."""
    return {"type": "rich_text_section", "elements": list(elements)}


def rt_quote(text: str) -> Block:
    """A ``rich_text_quote`` holding one literal text element."""
    return {"type": "rich_text_quote", "elements": [rt_text(text)]}


def rt_block(block_id: str, *elements: Block) -> Block:
    """A ``rich_text`` block."""
    return {"type": "rich_text", "block_id": block_id, "elements": list(elements)}


MAX_NAMES = 10  # people named in one line; the rest are counted


def people(names: Iterable[str], slack_ids: Mapping[str, str]) -> list[Block]:
    """Rich text for a list of people: a mention when the id is valid, else the literal name."""
    names = list(names)
    out: list[Block] = []
    for i, name in enumerate(names[:MAX_NAMES]):
        if i:
            out.append(rt_text(" and " if i == len(names) - 1 else ", "))
        uid = slack_ids.get(name)
        if uid is not None and user_mention(uid):
            out.append({"type": "user", "user_id": uid})
        else:
            out.append(rt_text(literal(name, 100, one_line=True) or "(empty)"))
    if len(names) > MAX_NAMES:
        out.append(rt_text(f" and {len(names) - MAX_NAMES} more"))
    return out


def people_context(names: list[str], slack_ids: Mapping[str, str]) -> tuple[str, list[Block]]:
    """Mentions as mrkdwn, plus a plain_text element for names without a valid id."""
    shown = names[:MAX_NAMES]
    mentions = [m for m in (user_mention(slack_ids.get(n)) for n in shown) if m]
    others = [n for n in shown if not user_mention(slack_ids.get(n))]
    if len(names) > MAX_NAMES:
        others.append(f"and {len(names) - MAX_NAMES} more")
    shown_others = ", ".join(escape(n, 100, one_line=True) or "(empty)" for n in others)
    extra = [plain(shown_others)] if others else []
    return ", ".join(mentions), extra


# -- Slack's limits -------------------------------------------------------------------

_BUTTON_LIMITS = (("action_id", 255), ("value", 2000), ("url", 3000))
_CONFIRM_LIMITS = (("title", 100), ("text", 300), ("confirm", 30), ("deny", 30))


class _Limits:
    """Collects every Block Kit limit one message or modal breaks."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def text(self, obj: Any, where: str, most: int) -> None:
        if not isinstance(obj, dict) or obj.get("type") not in ("plain_text", "mrkdwn"):
            self.problems.append(f"{where}: not a text object")
        elif not 1 <= len(obj.get("text", "")) <= most:
            self.problems.append(f"{where}: {len(obj.get('text', ''))} characters, not 1..{most}")

    def size(self, value: Any, where: str, most: int) -> None:
        if value is not None and len(value) > most:
            self.problems.append(f"{where}: {len(value)} > {most}")

    def block(self, block: Mapping[str, Any], where: str) -> None:
        kind = block.get("type")
        self.size(block.get("block_id"), f"{where}.block_id", 255)
        if kind == "header":
            self.text(block.get("text"), where, 150)
        elif kind == "section":
            if "text" in block:
                self.text(block["text"], where, 3000)
            fields = block.get("fields", [])
            self.size(fields, f"{where}.fields", 10)
            for j, field in enumerate(fields):
                self.text(field, f"{where}.fields[{j}]", 2000)
        elif kind == "context":
            self.size(block["elements"], f"{where}.elements", 10)
            for j, element in enumerate(block["elements"]):
                self.text(element, f"{where}.elements[{j}]", 3000)
        elif kind == "actions":
            self.size(block["elements"], f"{where}.elements", 25)
            for j, button in enumerate(block["elements"]):
                self.button(button, f"{where}.elements[{j}]")
        elif kind == "rich_text":
            for leaf in _leaves(block):
                if leaf.get("type") == "text":
                    self.size(leaf["text"], f"{where} text element", 4000)
        elif kind == "input":
            self.text(block.get("label"), f"{where}.label", 2000)
            self.size(block.get("element", {}).get("action_id"), f"{where}.action_id", 255)
        else:
            self.problems.append(f"{where}: unexpected block type {kind!r}")

    def button(self, button: Mapping[str, Any], where: str) -> None:
        self.text(button.get("text"), where, 75)
        for key, most in _BUTTON_LIMITS:
            self.size(button.get(key), f"{where}.{key}", most)
        confirm = button.get("confirm")
        if confirm is not None:
            for key, most in _CONFIRM_LIMITS:
                self.text(confirm.get(key), f"{where}.confirm.{key}", most)


def _leaves(node: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    for element in node.get("elements", []):
        if "elements" in element:
            yield from _leaves(element)
        else:
            yield element


def check_limits(message: Mapping[str, Any]) -> None:
    """Raise ValueError naming every Block Kit limit ``message`` (or a modal) breaks.

    Lengths are counted in code points. Used by the tests; the builders bound
    every piece so that a message they make always passes.
    """
    limits = _Limits()
    modal = message.get("type") == "modal"
    if modal:
        for key in ("title", "submit", "close"):
            limits.text(message.get(key), key, 24)
        limits.size(message.get("private_metadata"), "private_metadata", 3000)
    else:
        limits.size(message.get("text"), "text", 4000)
    blocks = message.get("blocks", [])
    limits.size(blocks, "blocks", 100 if modal else 50)
    ids = [b["block_id"] for b in blocks if "block_id" in b]
    if len(ids) != len(set(ids)):
        limits.problems.append("block ids repeat")
    for i, block in enumerate(blocks):
        limits.block(block, f"blocks[{i}]")
    if limits.problems:
        raise ValueError("; ".join(limits.problems))
