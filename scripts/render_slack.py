#!/usr/bin/env python3
"""Pictures of gatekeeper's Slack message, drawn from the Block Kit JSON the code produces.

Slack itself can't be asked to draw it, so this script does what a Slack
client would: each sample request in ``tests/slack_samples.py`` goes through
``request_message``; the result is written as ``docs/images/slack-<name>.json``
and drawn as an HTML page that looks like a Slack message, which Chromium
(through Playwright) saves as ``docs/images/slack-<name>.png``.

    .venv/bin/python scripts/render_slack.py           # write the JSON and the pictures
    .venv/bin/python scripts/render_slack.py --check   # exit 1 if the JSON is stale

The drawing refuses what it doesn't know: a block, element, text object,
style or key it has no rule for raises :class:`BlockKitError`, so a picture
can never quietly leave out something the message shows. Every text is
HTML-escaped (in real use the JSON carries text an agent wrote), and the page
forbids scripts outright.
"""

from __future__ import annotations

import argparse
import datetime as dt
import html
import json
import re
import shutil
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # for tests.slack_samples when run as a script
    sys.path.insert(0, str(ROOT))

IMAGES = ROOT / "docs" / "images"
PREFIX = "slack-"
WIDTH = 620  # CSS pixels, like a message in a Slack channel on a laptop
CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

Node = Mapping[str, Any]


class BlockKitError(ValueError):
    """The message holds something this renderer has no rule for (or that is malformed)."""


# -- the JSON -------------------------------------------------------------------------


def dump(message: Mapping[str, Any]) -> str:
    """The committed form of a message: indented, keys sorted, trailing newline."""
    return json.dumps(message, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def expected_json() -> dict[str, str]:
    """``{file name: JSON text}`` for every sample, as the code produces it now."""
    from tests.slack_samples import sample_messages

    return {f"{PREFIX}{name}.json": dump(msg) for name, msg in sample_messages().items()}


def stale(images: Path = IMAGES) -> list[str]:
    """What differs between ``images`` and what the code produces now (empty: up to date)."""
    want = expected_json()
    problems = []
    for name, text in want.items():
        path = images / name
        if not path.exists():
            problems.append(f"{path}: missing")
        elif path.read_text(encoding="utf-8") != text:
            problems.append(f"{path}: differs from what request_message produces now")
        if not path.with_suffix(".png").exists():
            problems.append(f"{path.with_suffix('.png')}: missing")
    problems += [
        f"{path}: no sample produces it (delete it)"
        for path in sorted(images.glob(f"{PREFIX}*.json"))
        if path.name not in want
    ]
    return problems


# -- checking the shape of what is drawn ------------------------------------------------


def _fields(node: Any, where: str, required: Iterable[str], optional: Iterable[str] = ()) -> Node:
    """``node`` as a mapping with exactly the ``required`` keys and some ``optional`` ones."""
    if not isinstance(node, Mapping):
        raise BlockKitError(f"{where}: expected an object, got {type(node).__name__}")
    required, optional = set(required), set(optional)
    missing, extra = required - node.keys(), node.keys() - required - optional
    if missing or extra:
        parts = [f"missing {sorted(missing)}"] if missing else []
        parts += [f"unknown {sorted(extra)}"] if extra else []
        raise BlockKitError(f"{where} ({node.get('type')!r}): {', '.join(parts)}")
    return node


def _list(node: Node, key: str, where: str) -> list[Any]:
    items = node[key]
    if not isinstance(items, list):
        raise BlockKitError(f"{where}.{key}: expected a list")
    return items


def _str(node: Node, key: str, where: str) -> str:
    value = node[key]
    if not isinstance(value, str):
        raise BlockKitError(f"{where}.{key}: expected a string")
    return value


# -- text -------------------------------------------------------------------------------

_ENTITY = re.compile(r"&(amp|lt|gt);")
_ENTITIES = {"amp": "&", "lt": "<", "gt": ">"}
_ANGLE = re.compile(r"<([^<>]*)>")
_USER = re.compile(r"@([UW][A-Z0-9]{2,30})(?:\|[^<>|]*)?")
_GROUP = re.compile(r"!subteam\^(S[A-Z0-9]{2,30})(?:\|[^<>|]*)?")
_BROADCAST = re.compile(r"!(here|channel|everyone)(?:\|[^<>|]*)?")
_FORMAT = re.compile(
    r"`(?P<code>[^`\n]+)`"
    r"|(?<![\w*])\*(?P<bold>\S(?:[^*\n]*\S)?)\*(?![\w*])"
    r"|(?<![\w_])_(?P<italic>\S(?:[^_\n]*\S)?)_(?![\w_])"
    r"|(?<![\w~])~(?P<strike>\S(?:[^~\n]*\S)?)~(?![\w~])"
)
_TAGS = {"bold": "b", "italic": "i", "strike": "s"}


def _esc(text: str) -> str:
    """Text for HTML, line breaks kept."""
    return html.escape(text, quote=True).replace("\n", "<br>")


def _decoded(text: str) -> str:
    """What Slack shows for text with its three entities (``&amp; &lt; &gt;``)."""
    return _ENTITY.sub(lambda m: _ENTITIES[m.group(1)], text)


class Renderer:
    """Block Kit JSON to HTML, the way a Slack client draws it.

    ``names`` maps Slack user and user group ids to the names shown in
    mentions (``U0ALICE`` -> ``alice`` draws ``@alice``); an id without a name
    shows as itself.
    """

    def __init__(self, names: Mapping[str, str] | None = None) -> None:
        self.names = dict(names or {})

    # text objects

    def text_object(self, node: Any, where: str, kinds: Iterable[str] = ("plain_text",)) -> str:
        kinds = tuple(kinds)
        if not isinstance(node, Mapping) or node.get("type") not in kinds:
            got = node.get("type") if isinstance(node, Mapping) else type(node).__name__
            raise BlockKitError(f"{where}: expected a {' or '.join(kinds)} object, got {got!r}")
        if node["type"] == "plain_text":
            _fields(node, where, ("type", "text"), ("emoji",))
            return _esc(_decoded(_str(node, "text", where)))
        _fields(node, where, ("type", "text"), ("verbatim",))
        return self.mrkdwn(_str(node, "text", where), where)

    def mrkdwn(self, text: str, where: str) -> str:
        out, pos = [], 0
        for found in _ANGLE.finditer(text):
            out.append(self._formatted(text[pos : found.start()], where))
            out.append(self._angle(found.group(1), where))
            pos = found.end()
        out.append(self._formatted(text[pos:], where))
        return "".join(out)

    def _angle(self, inner: str, where: str) -> str:
        if user := _USER.fullmatch(inner):
            return self.mention(user.group(1))
        if group := _GROUP.fullmatch(inner):
            return self.mention(group.group(1))
        if broadcast := _BROADCAST.fullmatch(inner):
            return f'<span class="mention broadcast">@{broadcast.group(1)}</span>'
        raise BlockKitError(f"{where}: mrkdwn sequence <{inner}> has no drawing rule")

    def _formatted(self, text: str, where: str) -> str:
        if "<" in text or ">" in text:
            raise BlockKitError(f"{where}: raw < or > in mrkdwn (Slack would parse it)")
        out, pos = [], 0
        for found in _FORMAT.finditer(text):
            out.append(_esc(_decoded(text[pos : found.start()])))
            kind = found.lastgroup or ""
            inner = _esc(_decoded(found.group(kind)))
            out.append(
                f'<code class="code">{inner}</code>'
                if kind == "code"
                else f"<{_TAGS[kind]}>{inner}</{_TAGS[kind]}>"
            )
            pos = found.end()
        out.append(_esc(_decoded(text[pos:])))
        return "".join(out)

    def mention(self, slack_id: str) -> str:
        return f'<span class="mention">@{_esc(self.names.get(slack_id, slack_id))}</span>'

    # rich text

    def rich_text(self, block: Node, where: str) -> str:
        _fields(block, where, ("type", "elements"), ("block_id",))
        parts = [
            self._rich_part(part, f"{where}.elements[{i}]")
            for i, part in enumerate(_list(block, "elements", where))
        ]
        return f'<div class="block rich-text">{"".join(parts)}</div>'

    def _rich_part(self, part: Any, where: str) -> str:
        kind = part.get("type") if isinstance(part, Mapping) else None
        if kind == "rich_text_section":
            _fields(part, where, ("type", "elements"))
            return f'<div class="rt-section">{self._leaves(part, where)}</div>'
        if kind == "rich_text_quote":
            _fields(part, where, ("type", "elements"), ("border",))
            return f'<blockquote class="rt-quote">{self._leaves(part, where)}</blockquote>'
        if kind == "rich_text_preformatted":
            _fields(part, where, ("type", "elements"), ("border",))
            leaves = self._leaves(part, where, pre=True)
            return f'<pre class="rt-pre">{leaves}</pre>'
        if kind == "rich_text_list":
            _fields(part, where, ("type", "style", "elements"), ("indent", "offset", "border"))
            style = part["style"]
            if style not in ("bullet", "ordered"):
                raise BlockKitError(f"{where}: list style {style!r} has no drawing rule")
            tag = "ul" if style == "bullet" else "ol"
            indent = part.get("indent", 0)
            if not isinstance(indent, int) or not 0 <= indent <= 8:
                raise BlockKitError(f"{where}: list indent {indent!r}")
            items = []
            for i, item in enumerate(_list(part, "elements", where)):
                here = f"{where}.elements[{i}]"
                if not isinstance(item, Mapping) or item.get("type") != "rich_text_section":
                    raise BlockKitError(f"{here}: a list item must be a rich_text_section")
                _fields(item, here, ("type", "elements"))
                items.append(f"<li>{self._leaves(item, here)}</li>")
            start = f' start="{int(part.get("offset", 0)) + 1}"' if tag == "ol" else ""
            return (
                f'<{tag} class="rt-list" style="margin-left:{indent * 22}px"{start}>'
                f"{''.join(items)}</{tag}>"
            )
        raise BlockKitError(f"{where}: rich text element {kind!r} has no drawing rule")

    def _leaves(self, part: Node, where: str, *, pre: bool = False) -> str:
        out = []
        for i, leaf in enumerate(_list(part, "elements", where)):
            here = f"{where}.elements[{i}]"
            kind = leaf.get("type") if isinstance(leaf, Mapping) else None
            if kind == "text":
                _fields(leaf, here, ("type", "text"), ("style",))
                text = _str(leaf, "text", here)
                shown = html.escape(text, quote=True) if pre else _esc(text)
                out.append(self._styled(shown, leaf.get("style"), here))
            elif kind == "user":
                _fields(leaf, here, ("type", "user_id"), ("style",))
                shown = self.mention(_str(leaf, "user_id", here))
                out.append(self._styled(shown, leaf.get("style"), here))
            elif kind == "usergroup":
                _fields(leaf, here, ("type", "usergroup_id"), ("style",))
                shown = self.mention(_str(leaf, "usergroup_id", here))
                out.append(self._styled(shown, leaf.get("style"), here))
            else:
                raise BlockKitError(f"{here}: rich text leaf {kind!r} has no drawing rule")
        return "".join(out)

    def _styled(self, shown: str, style: Any, where: str) -> str:
        if style is None:
            return shown
        if not isinstance(style, Mapping) or not set(style) <= {*_TAGS, "code"}:
            raise BlockKitError(f"{where}: text style {style!r} has no drawing rule")
        if style.get("code"):
            shown = f'<code class="code">{shown}</code>'
        for key, tag in _TAGS.items():
            if style.get(key):
                shown = f"<{tag}>{shown}</{tag}>"
        return shown

    # blocks

    def blocks(self, blocks: Any, where: str = "blocks") -> str:
        if not isinstance(blocks, list):
            raise BlockKitError(f"{where}: expected a list of blocks")
        return "".join(self.block(b, f"{where}[{i}]") for i, b in enumerate(blocks))

    def block(self, block: Any, where: str) -> str:
        kind = block.get("type") if isinstance(block, Mapping) else None
        draw: Callable[[Node, str], str] | None = {
            "header": self._header,
            "section": self._section,
            "context": self._context,
            "actions": self._actions,
            "rich_text": self.rich_text,
            "divider": self._divider,
            "input": self._input,
        }.get(str(kind))
        if draw is None:
            raise BlockKitError(f"{where}: block type {kind!r} has no drawing rule")
        return draw(block, where)

    def _header(self, block: Node, where: str) -> str:
        _fields(block, where, ("type", "text"), ("block_id",))
        return f'<div class="block header">{self.text_object(block["text"], where)}</div>'

    def _section(self, block: Node, where: str) -> str:
        _fields(block, where, ("type",), ("block_id", "text", "fields"))
        if "text" not in block and "fields" not in block:
            raise BlockKitError(f"{where}: a section needs text or fields")
        out = []
        if "text" in block:
            text = self.text_object(block["text"], f"{where}.text", ("plain_text", "mrkdwn"))
            out.append(f'<div class="section-text">{text}</div>')
        if "fields" in block:
            cells = [
                self.text_object(f, f"{where}.fields[{i}]", ("plain_text", "mrkdwn"))
                for i, f in enumerate(_list(block, "fields", where))
            ]
            out.append(f'<div class="fields">{"".join(f"<div>{c}</div>" for c in cells)}</div>')
        return f'<div class="block section">{"".join(out)}</div>'

    def _context(self, block: Node, where: str) -> str:
        _fields(block, where, ("type", "elements"), ("block_id",))
        items = [
            self.text_object(e, f"{where}.elements[{i}]", ("plain_text", "mrkdwn"))
            for i, e in enumerate(_list(block, "elements", where))
        ]
        return f'<div class="block context">{"".join(f"<span>{t}</span>" for t in items)}</div>'

    def _actions(self, block: Node, where: str) -> str:
        _fields(block, where, ("type", "elements"), ("block_id",))
        buttons = [
            self._button(b, f"{where}.elements[{i}]")
            for i, b in enumerate(_list(block, "elements", where))
        ]
        return f'<div class="block actions">{"".join(buttons)}</div>'

    def _button(self, button: Any, where: str) -> str:
        kind = button.get("type") if isinstance(button, Mapping) else None
        if kind != "button":
            raise BlockKitError(f"{where}: action element {kind!r} has no drawing rule")
        optional = ("style", "value", "url", "confirm", "accessibility_label")
        _fields(button, where, ("type", "action_id", "text"), optional)
        style = button.get("style")
        if style not in (None, "primary", "danger"):
            raise BlockKitError(f"{where}: button style {style!r} has no drawing rule")
        if "confirm" in button:  # a dialog shown on click, not part of the message
            confirm = _fields(
                button["confirm"],
                f"{where}.confirm",
                ("title", "text", "confirm", "deny"),
                ("style",),
            )
            for key in ("title", "text", "confirm", "deny"):
                self.text_object(confirm[key], f"{where}.confirm.{key}", ("plain_text", "mrkdwn"))
        label = self.text_object(button["text"], f"{where}.text")
        return f'<span class="button {style or "default"}">{label}</span>'

    def _divider(self, block: Node, where: str) -> str:
        _fields(block, where, ("type",), ("block_id",))
        return '<hr class="block divider">'

    def _input(self, block: Node, where: str) -> str:
        _fields(block, where, ("type", "label", "element"), ("block_id", "optional", "hint"))
        element = block["element"]
        here = f"{where}.element"
        kind = element.get("type") if isinstance(element, Mapping) else None
        if kind != "plain_text_input":
            raise BlockKitError(f"{here}: input element {kind!r} has no drawing rule")
        optional = ("multiline", "max_length", "min_length", "placeholder", "initial_value")
        _fields(element, here, ("type", "action_id"), optional)
        shown = ""
        if "initial_value" in element:
            shown = _esc(_str(element, "initial_value", here))
        elif "placeholder" in element:
            placeholder = self.text_object(element["placeholder"], f"{here}.placeholder")
            shown = f'<span class="placeholder">{placeholder}</span>'
        tall = " multiline" if element.get("multiline") else ""
        label = self.text_object(block["label"], f"{where}.label")
        hint = ""
        if "hint" in block:
            hint = f'<div class="hint">{self.text_object(block["hint"], f"{where}.hint")}</div>'
        return (
            f'<div class="block input"><div class="label">{label}</div>'
            f'<div class="textbox{tall}">{shown}</div>{hint}</div>'
        )

    # whole surfaces

    def message(self, message: Any) -> str:
        """The blocks of a ``chat.postMessage`` body (its ``text`` is the notification)."""
        _fields(message, "message", ("blocks",), ("text",))
        return self.blocks(message["blocks"])

    def modal(self, view: Any) -> str:
        """A ``views.open`` modal: title, blocks, and its Cancel / submit buttons."""
        keys = ("type", "title", "blocks")
        optional = ("callback_id", "submit", "close", "private_metadata")
        _fields(view, "view", keys, optional)
        if view["type"] != "modal":
            raise BlockKitError(f"view: type {view['type']!r} has no drawing rule")
        title = self.text_object(view["title"], "view.title")
        buttons = [
            f'<span class="button {style}">{self.text_object(view[key], f"view.{key}")}</span>'
            for key, style in (("close", "default"), ("submit", "primary"))
            if key in view
        ]
        return (
            f'<div class="modal-title">{title}</div>'
            f'<div class="modal-body">{self.blocks(view["blocks"])}</div>'
            f'<div class="modal-foot">{"".join(buttons)}</div>'
        )


STYLE = """
* { box-sizing: border-box; }
html, body { margin: 0; background: #fff; }
body {
  font-family: "Lato", "Slack-Lato", system-ui, -apple-system, "Segoe UI", "Helvetica Neue",
    Arial, "Liberation Sans", sans-serif, "Apple Color Emoji", "Segoe UI Emoji", "Noto Color Emoji";
  font-size: 15px; line-height: 1.46668; color: #1d1c1d;
  -webkit-font-smoothing: antialiased; font-variant-ligatures: common-ligatures;
}
#message { width: WIDTHpx; padding: 16px 20px 18px; background: #fff;
  border: 1px solid #e4e4e4; border-radius: 8px; }
.msg { display: flex; gap: 8px; }
.avatar { flex: none; width: 36px; height: 36px; margin-top: 4px; border-radius: 6px;
  background: #1b5e4f; color: #fff; font-weight: 900; font-size: 14px; letter-spacing: .5px;
  display: flex; align-items: center; justify-content: center; }
.content { flex: 1; min-width: 0; }
.meta { display: flex; align-items: baseline; gap: 4px; line-height: 1.3; margin-bottom: 2px; }
.name { font-weight: 900; font-size: 15px; }
.badge { font-size: 10px; font-weight: 700; padding: 1px 3px; border-radius: 2px;
  background: rgba(29,28,29,.13); color: rgba(29,28,29,.7); position: relative; top: -1px; }
.time { font-size: 12px; color: #616061; margin-left: 2px; }
.block { margin: 8px 0 0; overflow-wrap: anywhere; }
.block:first-child { margin-top: 2px; }
.header { font-size: 18px; font-weight: 900; line-height: 1.33; margin-bottom: 4px; }
.fields { display: grid; grid-template-columns: 1fr 1fr; column-gap: 16px; row-gap: 2px; }
.rt-section { min-height: 1em; }
.rt-list { margin: 2px 0 4px; padding-left: 26px; }
.rt-list li { padding-left: 2px; }
.rt-quote { margin: 4px 0; padding: 0 0 0 12px; border-left: 4px solid #dddddd; }
.rt-pre { margin: 4px 0; padding: 8px; white-space: pre-wrap; overflow-wrap: anywhere;
  font-family: Monaco, Menlo, Consolas, "DejaVu Sans Mono", "Courier New", monospace;
  font-size: 12px; line-height: 1.50001; background: #f8f8f8;
  border: 1px solid rgba(29,28,29,.13); border-radius: 4px; color: #1d1c1d; }
.code { font-family: Monaco, Menlo, Consolas, "DejaVu Sans Mono", "Courier New", monospace;
  font-size: 12px; color: #e01e5a; background: rgba(29,28,29,.04);
  border: 1px solid rgba(29,28,29,.13); border-radius: 3px; padding: 2px 3px 1px; }
.mention { color: #1264a3; background: rgba(29,155,209,.1); border-radius: 3px;
  padding: 0 2px 1px; }
.mention.broadcast { color: #1d1c1d; background: rgba(232,171,0,.3); }
.context { display: flex; flex-wrap: wrap; column-gap: 8px; row-gap: 2px; font-size: 13px;
  line-height: 1.38463; color: #616061; }
.context .mention { font-size: 13px; }
.actions { display: flex; flex-wrap: wrap; gap: 8px; margin-top: 12px; }
.button { display: inline-flex; align-items: center; height: 28px; padding: 0 12px;
  font-size: 13px; font-weight: 700; white-space: nowrap; border-radius: 4px;
  border: 1px solid rgba(29,28,29,.3); background: #fff; color: #1d1c1d;
  box-shadow: 0 1px 3px rgba(0,0,0,.08); }
.button.primary { background: #007a5a; border-color: #007a5a; color: #fff; box-shadow: none; }
.button.danger { color: #e01e5a; border-color: rgba(224,30,90,.55); }
.divider { border: 0; border-top: 1px solid #dddddd; }
.input .label { font-weight: 700; margin-bottom: 6px; }
.textbox { min-height: 36px; padding: 8px 12px; border: 1px solid rgba(29,28,29,.3);
  border-radius: 4px; white-space: pre-wrap; }
.textbox.multiline { min-height: 84px; }
.placeholder, .hint { color: #616061; }
.modal-title { font-size: 22px; font-weight: 900; padding-bottom: 12px;
  border-bottom: 1px solid #dddddd; }
.modal-foot { display: flex; justify-content: flex-end; gap: 8px; margin-top: 20px;
  padding-top: 16px; border-top: 1px solid #dddddd; }
""".replace("WIDTH", str(WIDTH))

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src 'none'; script-src 'none'"


def _page(inner: str, title: str) -> str:
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
        f"<title>{_esc(title)}</title>\n<style>{STYLE}</style></head>\n"
        f'<body><div id="message">{inner}</div></body></html>\n'
    )


def clock(at: dt.datetime) -> str:
    """``12:03 PM``, the way Slack times a message."""
    hour = at.hour % 12 or 12
    return f"{hour}:{at.minute:02d} {'AM' if at.hour < 12 else 'PM'}"


def message_html(
    message: Any,
    *,
    names: Mapping[str, str] | None = None,
    posted_at: str = "12:03 PM",
    app: str = "gatekeeper",
    avatar: str = "GK",
) -> str:
    """A whole HTML page drawing ``message`` as posted by the app (the element is #message)."""
    blocks = Renderer(names).message(message)
    inner = (
        '<div class="msg">'
        f'<div class="avatar" aria-hidden="true">{_esc(avatar)}</div>'
        '<div class="content"><div class="meta">'
        f'<span class="name">{_esc(app)}</span><span class="badge">APP</span>'
        f'<span class="time">{_esc(posted_at)}</span></div>'
        f"{blocks}</div></div>"
    )
    return _page(inner, f"{app} in Slack")


def modal_html(view: Any, *, names: Mapping[str, str] | None = None) -> str:
    """A whole HTML page drawing a modal ``view`` (the element is #message)."""
    return _page(Renderer(names).modal(view), "modal")


def sample_pages() -> dict[str, str]:
    """``{sample name: HTML page}`` for every sample."""
    from tests.slack_samples import NOW, SLACK_IDS, sample_messages

    names = {uid: name for name, uid in SLACK_IDS.items()}
    return {
        name: message_html(msg, names=names, posted_at=clock(NOW))
        for name, msg in sample_messages().items()
    }


# -- the pictures -------------------------------------------------------------------------


def default_chromium() -> str | None:
    if Path("/usr/bin/chromium").exists():
        return "/usr/bin/chromium"
    return shutil.which("chromium") or shutil.which("chromium-browser")


def screenshot(pages: Mapping[Path, str], chromium: str) -> None:
    """Save each HTML page's ``#message`` element as a PNG at twice the CSS pixel size."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_FLAGS)
        try:
            context = browser.new_context(
                viewport={"width": WIDTH + 80, "height": 600}, device_scale_factor=2
            )
            page = context.new_page()
            for path, text in pages.items():
                page.set_content(text, wait_until="load")
                page.locator("#message").screenshot(path=str(path), animations="disabled")
            context.close()
        finally:
            browser.close()


def _emoji_font() -> bool:
    fc_list = shutil.which("fc-list")
    if fc_list is None:
        return True  # can't tell; not a Linux box with fontconfig
    import subprocess

    # fc-list from PATH with fixed arguments: nothing here comes from outside
    fonts = subprocess.run(  # noqa: S603
        [fc_list, ":", "family"], capture_output=True, text=True, check=False
    )
    return "emoji" in fonts.stdout.lower()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 if docs/images/slack-*.json differ from what the code makes",
    )
    parser.add_argument("--out", type=Path, default=IMAGES, help="where to write (docs/images)")
    parser.add_argument("--chromium", default=default_chromium(), help="the Chromium to drive")
    args = parser.parse_args(argv)
    out: Path = args.out

    if args.check:
        problems = stale(out)
        for problem in problems:
            print(problem, file=sys.stderr)
        if problems:
            print("run: .venv/bin/python scripts/render_slack.py", file=sys.stderr)
            return 1
        print(f"{out}: the Slack pictures' JSON matches the code")
        return 0

    if not args.chromium:
        print("no Chromium found (apt-get install chromium), or pass --chromium", file=sys.stderr)
        return 2
    if not _emoji_font():
        print(
            "warning: no emoji font; the header's emoji will show as boxes "
            "(apt-get install fonts-noto-color-emoji)",
            file=sys.stderr,
        )
    out.mkdir(parents=True, exist_ok=True)
    pages = sample_pages()  # every sample drawn before anything is written
    for name, text in expected_json().items():
        (out / name).write_text(text, encoding="utf-8")
        print(out / name)
    shots = {out / f"{PREFIX}{name}.png": page for name, page in pages.items()}
    screenshot(shots, args.chromium)
    for path in shots:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
