"""Numbers, times and hostile text as the Markdown and HTML reports write them."""

from __future__ import annotations

import datetime as dt
import html
import re

from .._text import inline
from ._model import Report

__all__ = ["duration", "esc", "md", "share", "when", "window"]

_MD_SPECIAL = re.compile(
    r"[\\`*\[\]<>|~&]"  # emphasis, code, links, raw HTML, table cells, entities (&#x202E;)
    r"|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])"  # an underscore that could open or close emphasis
    r"|(?<=:)(?=//)|(?<=www)(?=\.)|@"  # what autolinks would make a link of
)


def md(text: str | None, limit: int = 200) -> str:
    """Agent or approver text for one Markdown line: made visible, bounded, and escaped so
    it can't emphasise, link, open HTML, split a table cell or name an entity:
    ``<b>*hi*</b> at https://x.example`` is written
    ``\\<b\\>\\*hi\\*\\</b\\> at https:\\//x.example``.
    """
    shown = inline(text, limit)
    return _MD_SPECIAL.sub(lambda m: "\\" + m.group(), shown)


def esc(text: str | None, limit: int = 200) -> str:
    """Agent or approver text for HTML: made visible, bounded and escaped (quotes too)."""
    return html.escape(inline(text, limit), quote=True)


def duration(seconds: float | None) -> str:
    """``4.2s``, ``42s``, ``4m05s``, ``2h10m`` or ``3d04h``; ``—`` for None."""
    if seconds is None:
        return "—"
    if seconds < 10:
        return f"{seconds:.1f}s"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def when(at: dt.datetime | None) -> str:
    """``2026-05-01 12:30`` (UTC), or ``—``."""
    if at is None:
        return "—"
    return at.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M")


def share(n: int, total: int) -> str:
    """``n`` as a percentage of ``total``: ``12%``, ``0.4%``, ``—`` when there is no total."""
    if total <= 0:
        return "—"
    pct = 100 * n / total
    return f"{pct:.1f}%" if 0 < pct < 10 else f"{pct:.0f}%"


def window(report: Report) -> str:
    """The window in words: ``2026-05-01 00:00 to 2026-05-31 00:00 UTC (30 days)``."""
    end = when(report.until)
    if report.since is None:
        return f"the whole audit log, to {end} UTC"
    days = (report.until - report.since).total_seconds() / 86400
    span = f"{days:.0f} days" if days >= 2 else duration(days * 86400)
    return f"{when(report.since)} to {end} UTC ({span})"
