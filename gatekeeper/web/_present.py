"""How the pages show things: pure functions from gate data to what a template prints.

Nothing here imports FastAPI, so each piece is tested without a server. Every
string an agent could have written goes through :func:`shown` (the templates'
``visible`` filter) before a person reads it: bounded in size, and every
invisible or reordering character spelled out as ``<U+XXXX>``. Autoescaping
does the HTML part; nothing here ever produces markup.
"""

from __future__ import annotations

import datetime as dt
import json
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .._canonical import truncate
from .._text import _hidden, prose_inline, prose_lines, visible
from ..audit import StoredEvent, parse_event, sealed_ms
from ..models import ApprovalRequest, AuditEvent

__all__ = [
    "ARGS_LIMIT",
    "ArgsError",
    "ArgsView",
    "Change",
    "args_view",
    "compact",
    "diff_args",
    "editable_json",
    "offset_of",
    "page_url",
    "parse_args_json",
    "parse_time",
    "prose",
    "prose_line",
    "request_events",
    "shown",
    "shown_in_full",
    "time_left",
]

ARGS_LIMIT = 64 * 1024  # characters of pretty JSON shown inline; the rest behind "see all"
VALUE_LIMIT = 4096  # one value in a diff cell, an audit row, a reason


def offset_of(value: str | None) -> int:
    """A page offset from the query string; anything odd means the first page."""
    try:
        return max(int(value or 0), 0)
    except ValueError:
        return 0


def page_url(path: str, params: Mapping[str, str], offset: int = 0) -> str:
    """``path`` with the non-empty ``params`` and ``offset`` as its query string."""
    query = {k: v for k, v in params.items() if v}
    if offset:
        query["offset"] = str(offset)
    return path + ("?" + urllib.parse.urlencode(query) if query else "")


def shown(value: object, limit: int | None = None) -> str:
    """``value`` as text a person can trust: bounded, invisible characters made visible."""
    text = "" if value is None else str(value)
    if limit is not None:
        text = truncate(text, limit)
    return visible(text)


def prose(value: object, limit: int = VALUE_LIMIT) -> str:
    """Agent prose for a quote block (``white-space: pre-wrap``): each line break shown as ``⏎``.

    The template puts it in an element whose every line is marked as the
    agent's (a bordered quote), so no line of it can pass for one of ours.
    """
    text = "" if value is None else str(value)
    return "\n".join(prose_lines(text, limit))


def prose_line(value: object, limit: int = 600) -> str:
    """Agent prose kept to one line, each line break shown as ``⏎`` (timeline entries)."""
    return prose_inline("" if value is None else str(value), limit)


def compact(value: Any, limit: int = 200) -> str:
    """One-line JSON of ``value``, bounded and made visible (queue previews, audit rows)."""
    text = json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(", ", ": "))
    return shown(text, limit)


@dataclass(frozen=True)
class ArgsView:
    """Pretty arguments for a ``<pre>``: the text shown and whether it was cut."""

    text: str
    truncated: bool
    total_chars: int


def args_view(args: Mapping[str, Any], limit: int = ARGS_LIMIT) -> ArgsView:
    """Arguments as indented JSON, made visible, cut at ``limit`` characters."""
    text = visible(json.dumps(args, indent=2, sort_keys=True, ensure_ascii=False))
    if len(text) <= limit:
        return ArgsView(text, False, len(text))
    return ArgsView(text[:limit], True, len(text))


def shown_in_full(args: Mapping[str, Any]) -> bool:
    """Whether a request's page shows ``args`` whole (else they can't be approved there).

    The one size rule of every surface: arguments over :data:`ARGS_LIMIT`
    characters of pretty JSON are approved only by naming their full sha256.
    """
    return not args_view(args).truncated


def editable_json(value: Any) -> str:
    """Indented JSON that parses back to exactly ``value``, with hidden characters escaped.

    Used where a person edits or copies the arguments: a bidi override or a
    zero-width space appears as ``\\u202e`` / ``\\u200b`` instead of hiding
    in the text, and ``json.loads`` still gives back the very same string.
    """
    text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)
    if text.isascii():
        return text
    return "".join(_escape(ch) if _hidden(ch) else ch for ch in text)


def _escape(ch: str) -> str:
    code = ord(ch)
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    code -= 0x10000  # JSON spells astral characters as a surrogate pair
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


class ArgsError(ValueError):
    """Edited arguments that can't be used; the message is safe to show."""


def parse_args_json(text: str, max_chars: int) -> dict[str, Any]:
    """The JSON object in ``text``, or :class:`ArgsError` saying what is wrong and where."""
    if len(text) > max_chars:
        raise ArgsError(f"the arguments are over the size limit ({max_chars} characters)")
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except ArgsError:
        raise
    except RecursionError:
        raise ArgsError("the arguments are nested too deeply") from None
    except ValueError as exc:
        raise ArgsError(f"not valid JSON: {_json_problem(exc)}") from None
    if not isinstance(value, dict):
        raise ArgsError(f"the arguments must be a JSON object ({{...}}), not {_kind(value)}")
    return value


def _no_constant(name: str) -> Any:
    raise ArgsError(f"not valid JSON: {name} is not a number JSON allows")


def _json_problem(exc: ValueError) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} (line {exc.lineno}, column {exc.colno})"
    return "the text could not be read"


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return "a number"


@dataclass(frozen=True)
class Change:
    """One argument the edit touched: ``kind`` is added, removed or changed."""

    path: str
    kind: str
    before: str | None
    after: str | None


_MISSING = object()


def diff_args(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[Change]:
    """Per-key differences, descending into objects (``payload.user.id``); values shown bounded."""
    changes: list[Change] = []
    _diff(before, after, "", changes)
    return changes


def _diff(
    before: Mapping[str, Any], after: Mapping[str, Any], prefix: str, out: list[Change]
) -> None:
    for key in sorted(set(before) | set(after)):
        path = f"{prefix}{key}"
        old = before.get(key, _MISSING)
        new = after.get(key, _MISSING)
        if old is _MISSING:
            out.append(Change(shown(path, 500), "added", None, _value(new)))
        elif new is _MISSING:
            out.append(Change(shown(path, 500), "removed", _value(old), None))
        elif isinstance(old, dict) and isinstance(new, dict):
            _diff(old, new, f"{path}.", out)
        elif _canon(old) != _canon(new):
            out.append(Change(shown(path, 500), "changed", _value(old), _value(new)))


def _canon(value: Any) -> str:
    # 1 and 1.0 differ in the digest the approval binds to, so they differ here too.
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def _value(value: Any) -> str:
    return shown(json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False), VALUE_LIMIT)


def time_left(expires_at: dt.datetime, now: dt.datetime) -> str:
    """``4m05s``, ``42s`` or ``expired``."""
    seconds = int((expires_at - now).total_seconds())
    if seconds <= 0:
        return "expired"
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def parse_time(text: str) -> dt.datetime:
    """A time from a form (``2024-05-01``, ``2024-05-01T12:30``, ISO 8601); naive means UTC."""
    value = text.strip()
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{shown(value, 100)!r} is not a date or time like 2024-05-01T12:30"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)


def request_events(entries: Iterable[StoredEvent], request: ApprovalRequest) -> list[AuditEvent]:
    """The audit events of ``request`` among ``entries`` (newest first), oldest first.

    Stops at the first entry sealed before the request was made: nothing
    sealed earlier can belong to it, so the timeline of a fresh request is
    cheap. The seal time is the Redis stream entry's id, which no agent
    chooses (an event's own ``at`` is the writer's word); the embedded store's
    entries fall back to ``at``. Only events naming the request's own agent
    count: another agent can't write into this timeline.
    """
    needle = request.id.encode()
    call_needle = request.call.id.encode()
    oldest_ms = int(request.created_at.timestamp() * 1000) - 5000
    found: list[AuditEvent] = []
    for entry in entries:
        recorded = sealed_ms(entry.entry_id)
        at = recorded if recorded is not None else _at_ms(entry.body)
        if at is not None and at < oldest_ms:
            break
        if needle not in entry.body and call_needle not in entry.body:
            continue
        try:
            event = parse_event(entry.body, entry.hash)
        except (ValueError, KeyError, TypeError):  # the audit page shows unreadable entries
            continue
        mine = event.request_id == request.id or event.call_id == request.call.id
        if mine and event.agent == request.call.agent:
            found.append(event)
    found.reverse()
    return found


def _at_ms(body: bytes) -> int | None:
    # In canonical JSON a quote inside a string is escaped, so the first `"at":`
    # is the event's own key (only "actor" and "agent" sort before it).
    start = body.find(b'"at":')
    if start < 0:
        return None
    start += 5
    end = start
    while end < len(body) and 48 <= body[end] <= 57:
        end += 1
    return int(body[start:end]) if end > start else None
