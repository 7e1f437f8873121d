"""The report's three charts as inline SVG: calls over time, the verdict mix, approval latency.

Drawn here from the numbers, so the page needs no script and fetches nothing;
colours are presentation attributes (no ``style``), which the console's CSP
allows. Every mark has a ``<title>`` with its exact numbers (a tooltip, and
what a screen reader says), and meaning never rests on colour alone: the
legends name each colour, and the tables beside the charts hold every count.
Only numbers and the verdicts' own words are drawn: no name from the log.
"""

from __future__ import annotations

import datetime as dt
import math

from ._collect import LATENCY_EDGES
from ._format import duration
from ._model import VERDICTS, Latency, Timeline, Verdicts

__all__ = ["COLOURS", "calls_over_time", "latency_chart", "verdict_mix"]

COLOURS = {
    "allowed": "#0b6b2f",
    "held": "#b26b00",
    "denied": "#a4000f",
    "halted": "#5b1a6e",
    "refused": "#5f6b7a",
}
_FONT = 'font-family="system-ui, -apple-system, Segoe UI, Roboto, sans-serif" font-size="12"'


def _svg(chart_id: str, width: int, height: int, title: str, body: list[str]) -> str:
    return (
        f'<svg id="{chart_id}" class="report-chart" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-labelledby="{chart_id}-title" '
        f'preserveAspectRatio="xMinYMin meet" {_FONT}>'
        f'<title id="{chart_id}-title">{title}</title>' + "".join(body) + "</svg>"
    )


def _nice(top: int) -> int:
    """The smallest of 1, 2, 5, 10, 20, 50, ... at or above ``top`` (at least 1)."""
    if top <= 1:
        return 1
    power = 1
    while power * 10 <= top:
        power *= 10
    for step in (1, 2, 5, 10):
        if step * power >= top:
            return step * power
    return 10 * power  # pragma: no cover - the loop ends at 10 * power


def _grid(peak: int, left: int, top: int, plot_w: int, plot_h: int) -> list[str]:
    """Grid lines and the y axis's numbers, at whole counts from 0 to ``peak`` (a _nice one)."""
    lead = peak
    while lead >= 10:
        lead //= 10
    ticks = peak if peak <= 5 else {1: 5, 2: 4, 5: 5}[lead]
    out = []
    for i in range(ticks + 1):
        y = top + plot_h - plot_h * i / ticks
        out.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" '
            f'stroke="#c8c8c8" stroke-width="1"></line>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" fill="currentColor">'
            f"{peak * i // ticks:,}</text>"
        )
    return out


def _span(seconds: int) -> str:
    """A bar's width in time: ``1 hour``, ``3 hours``, ``1 day``, ``30 days``."""
    if seconds % 86400 == 0:
        days = seconds // 86400
        return "1 day" if days == 1 else f"{days} days"
    hours = seconds // 3600
    return "1 hour" if hours == 1 else f"{hours} hours"


def _said(v: Verdicts) -> str:
    parts = [f"{v.of(k):,} {k}" for k in VERDICTS if v.of(k)]
    return ", ".join(parts) if parts else "none"


def _legend(x: int, y: int, entries: list[tuple[str, str]], step: int = 18) -> list[str]:
    """A key down the chart's side: a swatch of each colour and its words."""
    out = []
    for i, (colour, words) in enumerate(entries):
        top = y + i * step
        out.append(
            f'<rect x="{x}" y="{top}" width="12" height="12" fill="{colour}"></rect>'
            f'<text x="{x + 18}" y="{top + 10}" fill="currentColor">{words}</text>'
        )
    return out


def _bucket_label(start: dt.datetime, size: int) -> str:
    if size < 86400:
        return start.strftime("%m-%d %H:%M")
    return start.strftime("%Y-%m-%d")


def calls_over_time(timeline: Timeline) -> str:
    """Stacked bars: calls in each bucket of the timeline, by verdict."""
    width, height = 720, 260
    left, right, top, bottom = 48, 110, 12, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    buckets = timeline.buckets
    peak = _nice(max((b.calls.total for b in buckets), default=0))
    out = _grid(peak, left, top, plot_w, plot_h)
    slot = plot_w / max(len(buckets), 1)
    bar = max(slot * 0.8, 1.0)
    every = max(math.ceil(len(buckets) / 6), 1)
    span = _span(timeline.bucket_s)
    for n, b in enumerate(buckets):
        x = left + n * slot + (slot - bar) / 2
        label = _bucket_label(b.start, timeline.bucket_s)
        out.append(
            f"<g><title>{label} UTC, {span}: {b.calls.total:,} calls: {_said(b.calls)}</title>"
        )
        y: float = top + plot_h
        for k in VERDICTS:
            count = b.calls.of(k)
            if not count:
                continue
            h = plot_h * count / peak
            y -= h
            out.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{max(h, 0.5):.1f}" '
                f'fill="{COLOURS[k]}"></rect>'
            )
        out.append("</g>")
        if n % every == 0:
            out.append(
                f'<text x="{x + bar / 2:.1f}" y="{top + plot_h + 16}" text-anchor="middle" '
                f'fill="currentColor">{label}</text>'
            )
    out.append(
        f'<line x1="{left}" x2="{left + plot_w}" y1="{top + plot_h}" y2="{top + plot_h}" '
        f'stroke="currentColor" stroke-width="1"></line>'
    )
    out.append(
        f'<text x="{left}" y="{height - 6}" fill="currentColor">each bar: {span} (UTC)</text>'
    )
    out += _legend(width - right + 14, top, [(COLOURS[k], k) for k in VERDICTS])
    total = sum(b.calls.total for b in buckets)
    title = f"Calls over time, by verdict: {total:,} calls in {len(buckets)} bars of {span}"
    return _svg("chart-calls", width, height, title, out)


def _arc(cx: float, cy: float, r: float, start: float, end: float) -> str:
    """An SVG path of the circle's arc from ``start`` to ``end`` (fractions of a turn)."""
    a0, a1 = 2 * math.pi * start - math.pi / 2, 2 * math.pi * end - math.pi / 2
    x0, y0 = cx + r * math.cos(a0), cy + r * math.sin(a0)
    x1, y1 = cx + r * math.cos(a1), cy + r * math.sin(a1)
    large = 1 if end - start > 0.5 else 0
    return f"M {x0:.2f} {y0:.2f} A {r} {r} 0 {large} 1 {x1:.2f} {y1:.2f}"


def verdict_mix(calls: Verdicts) -> str:
    """A ring: each verdict's share of all calls, with the total in the middle."""
    width, height = 400, 200
    cx, cy, r, thick = 100.0, 100.0, 70.0, 34
    total = calls.total
    out: list[str] = []
    if total == 0:
        out.append(
            f'<circle cx="{cx}" cy="{cy}" r="{r}" fill="none" stroke="#c8c8c8" '
            f'stroke-width="{thick}"></circle>'
        )
    start = 0.0
    for k in VERDICTS:
        n = calls.of(k)
        if not n:
            continue
        part = n / total
        title = f"<title>{k}: {n:,} of {total:,} calls ({100 * part:.1f}%)</title>"
        if part >= 1:
            shape = (
                f'<circle cx="{cx}" cy="{cy}" r="{r}" fill="none" stroke="{COLOURS[k]}" '
                f'stroke-width="{thick}">{title}</circle>'
            )
        else:
            shape = (
                f'<path d="{_arc(cx, cy, r, start, start + part)}" fill="none" '
                f'stroke="{COLOURS[k]}" stroke-width="{thick}">{title}</path>'
            )
        out.append(shape)
        start += part
    out.append(
        f'<text x="{cx}" y="{cy - 2}" text-anchor="middle" font-size="22" font-weight="700" '
        f'fill="currentColor">{total:,}</text>'
        f'<text x="{cx}" y="{cy + 16}" text-anchor="middle" fill="currentColor">calls</text>'
    )
    entries = []
    for k in VERDICTS:
        n = calls.of(k)
        pct = f" ({100 * n / total:.0f}%)" if total else ""
        entries.append((COLOURS[k], f"{k} {n:,}{pct}"))
    out += _legend(206, 52, entries, step=20)
    title = f"Verdict mix: {total:,} calls: {_said(calls)}"
    return _svg("chart-mix", width, height, title, out)


def latency_chart(latency: Latency) -> str:
    """Bars: how many decisions came within each latency bucket; p50 and p95 marked."""
    width, height = 520, 250
    left, right, top, bottom = 36, 4, 28, 54
    plot_w, plot_h = width - left - right, height - top - bottom
    buckets = latency.buckets
    peak = _nice(max((b.count for b in buckets), default=0))
    marks: dict[int, list[str]] = {}
    for name, value in (("p50", latency.p50_s), ("p95", latency.p95_s)):
        if value is not None:
            index = sum(1 for edge in LATENCY_EDGES if value >= edge)
            marks.setdefault(index, []).append(f"{name} {duration(value)}")
    out = _grid(peak, left, top, plot_w, plot_h)
    slot = plot_w / max(len(buckets), 1)
    bar = slot * 0.75
    for n, b in enumerate(buckets):
        x = left + n * slot + (slot - bar) / 2
        h = max(plot_h * b.count / peak, 0.5) if b.count else 0.0  # one decision still shows
        y = top + plot_h - h
        out.append(
            f"<g><title>{b.label}: {b.count:,} decisions</title>"
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" '
            f'fill="#1a5fff"></rect></g>'
            f'<text x="{x + bar / 2:.1f}" y="{top + plot_h + 16 + 13 * (n % 2)}" '
            f'text-anchor="middle" font-size="11" fill="currentColor">{b.label}</text>'
        )
        if n in marks:
            out.append(
                f'<text x="{x + bar / 2:.1f}" y="{y - 6:.1f}" text-anchor="middle" '
                f'font-weight="700" fill="currentColor">{" · ".join(marks[n])}</text>'
            )
    out.append(
        f'<line x1="{left}" x2="{left + plot_w}" y1="{top + plot_h}" y2="{top + plot_h}" '
        f'stroke="currentColor" stroke-width="1"></line>'
        f'<text x="{left}" y="{height - 8}" fill="currentColor">'
        "time from held to a person's decision</text>"
    )
    title = (
        f"Approval latency: {latency.decisions:,} decisions, p50 {duration(latency.p50_s)}, "
        f"p95 {duration(latency.p95_s)}"
    )
    return _svg("chart-latency", width, height, title, out)
