"""Progress of long work (checking, exporting, replaying the audit log), told to a callback.

The library prints nothing: a function that walks a large log takes a
``progress`` callable and calls it with ``(done, total)`` as it goes — every
:data:`EVERY` items, and once at the end. ``total`` is ``None`` when it is
not known beforehand. The CLI draws a bar from it on a terminal
(``gatekeeper/cli/_progress.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

__all__ = ["EVERY", "Progress", "Tally"]

#: ``(done, total)``: items done so far, and how many there are (None: not known).
Progress = Callable[[int, "int | None"], None]

#: Items between two reports: a call per item would cost more than a bar is worth.
EVERY = 100

T = TypeVar("T")


class Tally:
    """Counts the items that pass through :meth:`over` and reports them to ``progress``."""

    __slots__ = ("done", "every", "progress", "total")

    def __init__(self, progress: Progress, total: int | None = None, every: int = EVERY) -> None:
        self.progress = progress
        self.total = total
        self.every = every
        self.done = 0

    def over(self, items: Iterable[T]) -> Iterator[T]:
        for item in items:
            self.done += 1
            if self.done % self.every == 0:
                self.progress(self.done, self.total)
            yield item

    def end(self) -> None:
        """The work is over: report the final count."""
        self.progress(self.done, self.total)
