"""The transparency report: what the agents did and what people decided, from the audit log.

``gatekeeper report`` (md, html, json) and the console's ``/report`` page
draw the same :class:`Report`, built by reading the log once (see
:mod:`._collect`). The HTML is one self-contained page: its charts are SVG
drawn here, nothing is fetched.

Example::

    report = gate_report(gate, since=window_start("30d", now))
    print(render_markdown(report))
"""

from __future__ import annotations

import datetime as dt
import json
from typing import TYPE_CHECKING

from ..policy import parse_duration
from ._collect import Collector
from ._html import render_html, render_html_body
from ._markdown import render_markdown
from ._model import Report

if TYPE_CHECKING:
    from .._gate import Gatekeeper

__all__ = [
    "Report",
    "gate_report",
    "parse_time",
    "render_html",
    "render_html_body",
    "render_json",
    "render_markdown",
    "window_start",
]


def window_start(text: str, now: dt.datetime) -> dt.datetime | None:
    """When a window given as ``--since`` starts: a duration back from ``now`` (``30d``,
    ``12h``, ``1d12h``), a date or time (``2026-05-01``, ``2026-05-01T12:30``; UTC unless
    it says otherwise), or None for ``all`` (or nothing): the whole log. Raises ValueError
    naming what was wrong."""
    value = text.strip()
    if value.lower() in ("", "all"):
        return None
    try:
        return now - dt.timedelta(seconds=parse_duration(value))
    except ValueError:
        pass
    return parse_time(value)


def parse_time(text: str) -> dt.datetime:
    """A date or time (``2026-05-01``, ISO 8601); naive means UTC. ValueError otherwise."""
    value = text.strip()
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        shown = value if len(value) <= 60 else value[:57] + "..."
        raise ValueError(
            f"{shown!r} is neither a duration like 30d or 12h nor a date or time like "
            "2026-05-01 or 2026-05-01T12:30 (UTC)"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)


def gate_report(
    gate: Gatekeeper, *, since: dt.datetime | None, until: dt.datetime | None = None
) -> Report:
    """The report of ``gate``'s audit log over ``[since, until]`` (until: now), with its policy.

    Reads the whole log once, oldest first, keeping only counts.
    """
    now = gate.clock.now()
    collector = Collector(since=since, until=until or now)
    collector.feed_all(gate.store.audit_entries())
    return collector.report(generated_at=now, policy=gate.policy)


def render_json(report: Report) -> str:
    """The report as indented JSON; non-ASCII characters escaped, so none can reorder a terminal."""
    return json.dumps(report.model_dump(mode="json"), indent=2, ensure_ascii=True)
