"""How the ``gatekeeper`` command logs: to stderr, as text or JSON lines, for its run only.

The library configures no logging; the command does, for the time
:func:`~gatekeeper.cli.main` runs: one handler on the root logger, writing to
the command's stderr with :class:`~gatekeeper.logs.TextFormatter` or
:class:`~gatekeeper.logs.JSONFormatter`. ``--log-format`` (else
``$GATEKEEPER_LOG_FORMAT``, else ``text``) picks the format; ``--log-level``
(else ``$GATEKEEPER_LOG_LEVEL``) the level of gatekeeper's loggers, by default
``info`` for the long-running services (``serve``, ``mcp serve``, ``alerts``
without ``--once``) and ``warning`` for every other command. Other libraries' records show from
``warning`` up (uvicorn's, under ``serve``, from ``info``).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
from collections.abc import Iterator
from typing import TextIO

from .._errors import GatekeeperError
from ..logs import ContextFilter, JSONFormatter, TextFormatter
from . import _progress

__all__ = ["FORMATS", "LEVELS", "configured", "default_level"]

FORMATS = ("text", "json")
LEVELS = ("debug", "info", "warning", "error", "critical")


def default_level(args: argparse.Namespace) -> str:
    """``info`` for a command that runs as a service until stopped, else ``warning``."""
    command = args.command
    service = (
        command == "serve"
        or (command == "mcp" and args.mcp_command == "serve")
        or (command == "alerts" and not args.once)
    )
    return "info" if service else "warning"


def _choice(given: str | None, variable: str, allowed: tuple[str, ...], default: str) -> str:
    value = given or os.environ.get(variable) or default
    value = value.strip().lower()
    if value not in allowed:
        raise GatekeeperError(f"${variable} is {value!r}: one of {', '.join(allowed)}")
    return value


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes records to the stream; first clears a progress bar drawn on it, so a record
    never lands on the bar's line (the bar redraws at its next tick)."""

    def emit(self, record: logging.LogRecord) -> None:
        with _progress.LOCK:
            _progress.clear_bars(self.stream)
            super().emit(record)


@contextlib.contextmanager
def configured(
    stream: TextIO, *, fmt: str | None, level: str | None, default: str = "warning"
) -> Iterator[None]:
    """While the block runs, records go to ``stream`` as ``fmt``; put back as it was after."""
    fmt = _choice(fmt, "GATEKEEPER_LOG_FORMAT", FORMATS, "text")
    level = _choice(level, "GATEKEEPER_LOG_LEVEL", LEVELS, default)
    handler = _Handler(stream)
    handler.setFormatter(JSONFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(ContextFilter())  # other libraries' records get the fields too (None)
    root, ours = logging.getLogger(), logging.getLogger("gatekeeper")
    was = root.level, ours.level
    number = logging.getLevelName(level.upper())
    root.addHandler(handler)
    root.setLevel(max(number, logging.WARNING))
    ours.setLevel(number)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(was[0])
        ours.setLevel(was[1])
