"""gatekeeper's logs: one logger hierarchy, the request on every record, text or JSON lines.

Every logger of gatekeeper is a child of ``gatekeeper`` (see docs/logging.md for
the names). Each record they make carries three attributes, ``None`` where
they do not apply:

- ``request_id``: the approval request the record is about;
- ``agent``: the agent whose call it is;
- ``session``: that call's session id.

They come from ``extra=`` where a line names its request, else from the
context the call flow (and the deciding side) sets around its work
(:func:`log_context`), so a line logged by the store or a channel while a call
waits carries the call's request too.

The library configures no handler and never touches the root logger; the
``gatekeeper`` command does, for its own process (``--log-format``). An
application attaches a formatter of its choice::

    import logging

    from gatekeeper.logs import JSONFormatter

    handler = logging.StreamHandler()
    handler.setFormatter(JSONFormatter())
    logging.getLogger("gatekeeper").addHandler(handler)

Tool arguments are never logged at INFO or above (they can be secrets).
Text that an agent controls (tool and agent names, session ids, reasons,
error messages quoting them) can't forge a line or grow it without bound:
both formatters cut each field to :data:`FIELD_LIMIT` characters and the
message to :data:`MESSAGE_LIMIT` (:func:`bounded`); :class:`TextFormatter`
escapes line breaks, control and format (Cf) characters and lone
surrogates, and :class:`JSONFormatter` writes one JSON object per line,
ASCII only, that strict parsers take. Names inside messages are
:func:`quoted`.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
import re
from types import TracebackType
from typing import Any

__all__ = [
    "CLEAR",
    "CONTEXT_FIELDS",
    "FIELD_LIMIT",
    "MESSAGE_LIMIT",
    "ContextFilter",
    "JSONFormatter",
    "TextFormatter",
    "bounded",
    "current_context",
    "escape",
    "get_logger",
    "log_context",
    "quoted",
    "request_fields",
]

#: The attributes every record of a gatekeeper logger carries (``None`` when unknown).
CONTEXT_FIELDS = ("request_id", "agent", "session")

# (request_id, agent, session): a tuple, so that entering a block costs little on
# the allowed path (every guarded call enters one).
_Fields = tuple[str | None, str | None, str | None]
_NONE: _Fields = (None, None, None)
#: Given to :class:`log_context` for a field: no value in the block (not the enclosing one's).
CLEAR: Any = object()
_CONTEXT: contextvars.ContextVar[_Fields] = contextvars.ContextVar(
    "gatekeeper_log_context", default=_NONE
)


def current_context() -> dict[str, str]:
    """The request, agent and session set around the code running now (only those set)."""
    return {k: v for k, v in zip(CONTEXT_FIELDS, _CONTEXT.get(), strict=True) if v is not None}


class log_context:
    """Within the block, records of gatekeeper's loggers carry these fields.

    Fields given as ``None`` keep the value of an enclosing block, fields
    given as :data:`CLEAR` have none in the block; the
    previous values come back at the end of the block. Safe to use in a
    generator or a coroutine: leaving the block from another context (a
    generator closed by the garbage collector) leaves that context alone.

    >>> with log_context(request_id="r-1", agent="billing-bot"):
    ...     current_context()["agent"]
    'billing-bot'
    """

    __slots__ = ("_agent", "_request_id", "_session", "_token")

    def __init__(
        self,
        *,
        request_id: str | None = None,
        agent: str | None = None,
        session: str | None = None,
    ) -> None:
        self._request_id = request_id
        self._agent = agent
        self._session = session
        self._token: contextvars.Token[_Fields] | None = None

    def __enter__(self) -> log_context:
        r, a, s = _CONTEXT.get()
        self._token = _CONTEXT.set(
            (
                r if self._request_id is None else _given(self._request_id),
                a if self._agent is None else _given(self._agent),
                s if self._session is None else _given(self._session),
            )
        )
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._token is not None:
            try:  # noqa: SIM105 - contextlib.suppress costs more than the rest of the block
                _CONTEXT.reset(self._token)
            except ValueError:  # left from another context: nothing of this one to undo
                pass
            self._token = None


def _given(value: Any) -> str | None:
    return None if value is CLEAR else value


class ContextFilter(logging.Filter):
    """Puts ``request_id``, ``agent`` and ``session`` on every record it sees.

    A value given with ``extra=`` is kept; else the one :func:`log_context`
    set; else ``None``. gatekeeper's loggers carry this filter already
    (:func:`get_logger`); add it to a handler to give other libraries'
    records the same attributes (a format string that names them then works
    for every record).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        context = _CONTEXT.get()
        for field, value in zip(CONTEXT_FIELDS, context, strict=True):
            if getattr(record, field, None) is None:
                setattr(record, field, value)
        return True


_FILTER = ContextFilter()


def request_fields(request: Any) -> dict[str, str]:
    """``extra=`` for a record about an :class:`~gatekeeper.ApprovalRequest`: its id,
    its call's agent and session."""
    call = request.call
    return {"request_id": request.id, "agent": call.agent, "session": call.session_id}


def get_logger(name: str) -> logging.Logger:
    """The logger ``name`` (under ``gatekeeper``), with the :class:`ContextFilter` on it."""
    if name != "gatekeeper" and not name.startswith("gatekeeper."):
        raise ValueError(f"gatekeeper's loggers are named gatekeeper.*, not {name!r}")
    logger = logging.getLogger(name)
    if not any(isinstance(f, ContextFilter) for f in logger.filters):
        logger.addFilter(_FILTER)
    return logger


# Line breaks (every kind), other control characters, lone surrogates, and every
# format character (Unicode category Cf: bidirectional controls, zero-width
# characters, soft hyphens, tags...), which can make text read as other text.
_UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff"
    # Cf, as of Unicode 14 (unicodedata.category(ch) == "Cf"; a test checks it still is)
    "\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890-\u0891\u08e2\u180e\u200b-\u200f"
    "\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb\U000110bd\U000110cd"
    "\U00013430-\U00013438\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0001"
    "\U000e0020-\U000e007f]"
)

#: Most characters one field (request id, agent, session) shows; the rest is counted.
FIELD_LIMIT = 200
#: Most characters of a record's message (before escaping); the rest is counted.
MESSAGE_LIMIT = 8192


def bounded(text: str, limit: int = FIELD_LIMIT) -> str:
    """``text`` cut to ``limit`` characters, saying how many were left out: ``…(+N chars)``."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}…(+{len(text) - limit} chars)"


def quoted(value: object) -> str:
    """An agent-written name in a message: :func:`bounded`, in double quotes (JSON), so
    it reads as one value and can't pass for the ``[request_id=… agent=…]`` block."""
    return json.dumps(bounded(str(value)), ensure_ascii=False)


_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escaped(match: re.Match[str]) -> str:
    ch = match.group()
    named = _NAMED.get(ch)
    if named is not None:
        return named
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def escape(text: str) -> str:
    """``text`` on one line: line breaks and control characters as ``\\n``, ``\\x1b``..."""
    return _UNSAFE.sub(_escaped, text)


def _utc(created: float) -> str:
    at = dt.datetime.fromtimestamp(created, tz=dt.timezone.utc)
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class TextFormatter(logging.Formatter):
    """One line per record: ``TIME LEVEL LOGGER: MESSAGE [request_id=… agent=… session=…]``.

    The message and the fields are escaped (:func:`escape`), so text an agent
    wrote can't start a line of its own. A traceback follows on lines that
    each begin with two spaces (a record's own line begins with its time).
    """

    def format(self, record: logging.LogRecord) -> str:
        line = (
            f"{_utc(record.created)} {record.levelname} {record.name}: {escape(_message(record))}"
        )
        fields = [
            f"{field}={_field_text(value)}"
            for field in CONTEXT_FIELDS
            if (value := getattr(record, field, None)) is not None
        ]
        if fields:
            line += f" [{' '.join(fields)}]"
        extra = _traceback(self, record)
        if extra:
            line += "".join(f"\n  {escape(part)}" for part in extra.splitlines())
        return line


def _field_text(value: object) -> str:
    text = escape(bounded(str(value)))
    if not text or any(ch in text for ch in " =[]\"'"):
        return json.dumps(text, ensure_ascii=False)  # escaped already
    return text


def _message(record: logging.LogRecord) -> str:
    return bounded(record.getMessage(), MESSAGE_LIMIT)


_SURROGATE = re.compile("[\ud800-\udfff]")


def _json_safe(text: str) -> str:
    """``text`` that every strict JSON parser takes: a lone surrogate as the text ``\\udXXX``
    (``json.dumps`` would write it as an escape that decodes to no character)."""
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _traceback(formatter: logging.Formatter, record: logging.LogRecord) -> str:
    parts = []
    if record.exc_info and not record.exc_text:
        record.exc_text = formatter.formatException(record.exc_info)
    if record.exc_text:
        parts.append(record.exc_text)
    if record.stack_info:
        parts.append(formatter.formatStack(record.stack_info))
    return "\n".join(parts)


class JSONFormatter(logging.Formatter):
    """One JSON object per line, for log shippers (ASCII only: any text is safe in it).

    Keys: ``time`` (UTC, ISO 8601, milliseconds), ``level``, ``logger``,
    ``message``, ``request_id``, ``agent``, ``session`` (``null`` when
    unknown), and ``exc_info`` (the formatted traceback) and ``stack_info``
    when the record has them.
    """

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _utc(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": _json_safe(_message(record)),
        }
        for field in CONTEXT_FIELDS:
            value = getattr(record, field, None)
            entry[field] = None if value is None else _json_safe(bounded(str(value)))
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc_info"] = _json_safe(record.exc_text)
        if record.stack_info:
            entry["stack_info"] = _json_safe(self.formatStack(record.stack_info))
        return json.dumps(entry, ensure_ascii=True, default=str)
