"""A progress bar on stderr for long commands, drawn only when stderr is a terminal.

``audit verify``, ``audit export`` and ``policy replay`` pass a :class:`Bar` as
the ``progress`` callback of the work they run. It redraws one line in place
(a carriage return, no other control sequence) at most :data:`HZ` times a
second, shows the count, the total and the share done when the total is
known, and the rate; at the end it draws the final count once and clears
its line, so what stays on the terminal is the command's own output.

A record logged while a bar is drawn (the command's log handler,
:func:`~gatekeeper.cli._logging.configured`) first clears the bar's line, so
the record is a line of its own; the bar comes back at its next redraw.

There is no bar when stderr is not a terminal (a pipe, a file, a log
collector), with ``--no-progress``, when ``$NO_PROGRESS`` is set to anything
but the empty string, or when ``$TERM`` is ``dumb``.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import TextIO

__all__ = ["HZ", "Bar", "clear_bars", "progress_bar", "wanted"]

#: Most redraws a second.
HZ = 10
_WIDTH = 20  # columns of the bar itself

#: Held while a bar draws, and while the log handler clears bars and writes a record.
LOCK = threading.RLock()
_DRAWN: list[Bar] = []  # bars open now (a command draws one at a time)


def clear_bars(stream: object) -> None:
    """Clear the line of every bar drawn on ``stream`` (they redraw at their next tick)."""
    for bar in _DRAWN:
        if bar.stream is stream:
            bar.clear()


def wanted(stream: TextIO, *, no_progress: bool = False) -> bool:
    """Whether a bar goes on ``stream``: a terminal, not turned off, not a dumb one."""
    if no_progress or os.environ.get("NO_PROGRESS") or os.environ.get("TERM") == "dumb":
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # closed, or no real file
        return False


class Bar:
    """``(done, total)`` calls drawn as one line on ``stream``: ``label 1,234/5,000 events …``."""

    def __init__(
        self,
        stream: TextIO,
        label: str,
        unit: str = "events",
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream
        self.label = label
        self.unit = unit
        self.clock = clock
        self.started = clock()
        self._drawn_at: float | None = None
        self._shown = 0  # characters on the line now
        self._latest: tuple[int, int | None] | None = None  # not drawn yet

    def __call__(self, done: int, total: int | None) -> None:
        now = self.clock()
        if self._drawn_at is not None and now - self._drawn_at < 1 / HZ:
            self._latest = (done, total)
            return
        self._draw(done, total, now)

    def close(self) -> None:
        """Draw the last count, then clear the line."""
        with LOCK:
            if self._latest is not None:
                self._draw(*self._latest, self.clock())
            self.clear()

    def clear(self) -> None:
        """Blank the bar's line (cursor at its start); the next call draws it again."""
        with LOCK:
            if self._shown:
                self.stream.write("\r" + " " * self._shown + "\r")
                self.stream.flush()
                self._shown = 0
                self._drawn_at = None  # not shown now: the next count draws at once

    def line(self, done: int, total: int | None, now: float) -> str:
        elapsed = now - self.started
        rate = f"{done / elapsed:,.0f}/s" if elapsed > 0 else "-/s"
        if total is None:
            return f"{self.label} {done:,} {self.unit}  {rate}"
        total = max(total, done)  # events sealed while it runs: never past 100%
        share = done / total if total else 1.0
        filled = round(share * _WIDTH)
        bar = "#" * filled + "-" * (_WIDTH - filled)
        return f"{self.label} [{bar}] {done:,}/{total:,} {self.unit} {share:4.0%}  {rate}"

    def _draw(self, done: int, total: int | None, now: float) -> None:
        text = self.line(done, total, now)[: self._columns() - 1]
        pad = " " * max(self._shown - len(text), 0)  # what is left of a longer line before
        with LOCK:
            self.stream.write("\r" + text + pad)
            self.stream.flush()
            self._shown = len(text)
        self._drawn_at = now
        self._latest = None

    def _columns(self) -> int:
        try:
            return os.get_terminal_size(self.stream.fileno()).columns or 80
        except (AttributeError, ValueError, OSError):
            return 80


@contextlib.contextmanager
def progress_bar(
    stream: TextIO, label: str, *, no_progress: bool = False, unit: str = "events"
) -> Iterator[Bar | None]:
    """A :class:`Bar` on ``stream`` when one is :func:`wanted` (else None), cleared at the end."""
    if not wanted(stream, no_progress=no_progress):
        yield None
        return
    bar = Bar(stream, label, unit)
    _DRAWN.append(bar)
    try:
        yield bar
    finally:
        _DRAWN.remove(bar)
        bar.close()
