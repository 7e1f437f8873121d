"""The transparency report's parts: escaping, the window, percentiles, buckets, caps, charts.

The report's numbers against a real gate are pinned in
tests/integration/test_report.py; these are the pure pieces, no I/O.
"""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest

from gatekeeper._report import _collect as collect
from gatekeeper._report import render_html, render_markdown, window_start
from gatekeeper._report._charts import _nice, calls_over_time, latency_chart, verdict_mix
from gatekeeper._report._collect import Collector, bucket_size, percentile
from gatekeeper._report._format import duration, esc, md, share
from gatekeeper._report._model import Timeline, Verdicts
from gatekeeper.audit import StoredEvent, draft, encode_draft

NOW = dt.datetime(2026, 5, 31, 12, 0, tzinfo=dt.timezone.utc)
NOW_MS = int(NOW.timestamp() * 1000)
SIZES = [
    (3600, 3600),
    (86400, 3600),
    (7 * 86400, 3 * 3600),
    (30 * 86400, 12 * 3600),
    (90 * 86400, 7 * 86400),
    (365 * 86400, 7 * 86400),
    (10 * 365 * 86400, 61 * 86400),
]


@pytest.mark.parametrize(
    ("text", "written"),
    [
        ("dns_lookup", "dns_lookup"),  # an underscore inside a word emphasises nothing
        ("_private_", "\\_private\\_"),
        ("a*b*c", "a\\*b\\*c"),
        ("<script>", "\\<script\\>"),
        ("a|b", "a\\|b"),
        ("a\\|b", "a\\\\\\|b"),  # a backslash can't unescape the pipe after it
        ("[x](https://evil.example)", "\\[x\\](https:\\//evil.example)"),
        ("www.evil.example", "www\\.evil.example"),
        ("me@evil.example", "me\\@evil.example"),
        ("&#x202E;", "\\&#x202E;"),
        ("`code`", "\\`code\\`"),
        ("~~gone~~", "\\~\\~gone\\~\\~"),
        ("line\nbreak", "line\\<U+000A\\>break"),
        ("evil\u202egpj.exe", "evil\\<U+202E\\>gpj.exe"),
        ("orders:read", "orders:read"),
    ],
)
def test_markdown_text_is_escaped_where_it_could_act(text: str, written: str) -> None:
    assert md(text) == written


def test_markdown_and_html_text_is_bounded() -> None:
    assert len(md("x" * 10_000)) < 300
    assert len(esc("x" * 10_000)) < 300
    assert esc('<a href="x">') == "&lt;a href=&quot;x&quot;&gt;"


@pytest.mark.parametrize(
    ("text", "start"),
    [
        ("30d", NOW - dt.timedelta(days=30)),
        ("12h", NOW - dt.timedelta(hours=12)),
        ("1d12h", NOW - dt.timedelta(hours=36)),
        ("2026-05-01", dt.datetime(2026, 5, 1, tzinfo=dt.timezone.utc)),
        ("2026-05-01T12:30", dt.datetime(2026, 5, 1, 12, 30, tzinfo=dt.timezone.utc)),
        ("2026-05-01T12:30+02:00", dt.datetime(2026, 5, 1, 10, 30, tzinfo=dt.timezone.utc)),
        ("all", None),
        ("", None),
    ],
)
def test_a_window_starts_a_duration_ago_at_a_time_or_never(
    text: str, start: dt.datetime | None
) -> None:
    assert window_start(text, NOW) == start


def test_a_window_start_that_is_neither_says_what_it_takes() -> None:
    with pytest.raises(ValueError, match=r"'yesterday' is neither a duration like 30d or 12h"):
        window_start("yesterday", NOW)


def test_percentiles_are_nearest_rank() -> None:
    assert percentile([10.0, 30.0, 90.0, 600.0], 50) == 30.0
    assert percentile([10.0, 30.0, 90.0, 600.0], 95) == 600.0
    assert percentile([7.0], 50) == percentile([7.0], 95) == 7.0
    values = [float(n) for n in range(1, 101)]
    assert (percentile(values, 50), percentile(values, 95)) == (50.0, 95.0)


@pytest.mark.parametrize(("span", "size"), SIZES)
def test_the_timeline_draws_at_most_60_bars(span: int, size: int) -> None:
    assert bucket_size(span) == size
    assert span / size <= 60


def test_numbers_read_short() -> None:
    assert [duration(s) for s in (None, 0.04, 4.25, 42, 245, 7800, 273600)] == [
        "—",
        "0.0s",
        "4.2s",
        "42s",
        "4m05s",
        "2h10m",
        "3d04h",
    ]
    assert [share(n, 17) for n in (9, 1, 0)] == ["53%", "5.9%", "0%"]
    assert share(1, 0) == "—"


def _entry(n: int, kind: str, **fields: object) -> StoredEvent:
    event = draft(kind, at_ms=NOW_MS - 1_000_000 + n, actor="agent:x", **fields)  # type: ignore[arg-type]
    return StoredEvent(str(n), b'{"event":' + encode_draft(event) + b',"seq":1}', "h")


def test_agents_and_tools_past_the_caps_are_summed_not_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A log of endless agent or tool names can't make the report grow without bound."""
    monkeypatch.setattr(collect, "MAX_AGENTS", 3)
    monkeypatch.setattr(collect, "MAX_TOOLS", 2)
    collector = Collector(since=None, until=NOW)
    n = 0
    for agent in range(5):
        for tool in range(4):
            n += 1
            collector.feed(_entry(n, "call.allowed", agent=f"a{agent}", tool=f"t{tool}"))
    report = collector.report(generated_at=NOW)
    assert [a.agent for a in report.agents] == ["a0", "a1", "a2"]
    assert [t.tool for t in report.agents[0].tools] == ["t0", "t1"]
    other_tools = report.agents[0].other_tools
    assert other_tools is not None
    assert (other_tools.rows, other_tools.calls.allowed) == (2, 2)
    assert report.other_agents is not None
    assert (report.other_agents.rows, report.other_agents.calls.allowed) == (2, 8)
    assert report.calls.allowed == 20
    assert "and 2 more agents" in render_markdown(report).lower()


def test_a_long_name_is_cut_and_an_unreadable_entry_counted() -> None:
    collector = Collector(since=None, until=NOW)
    collector.feed(_entry(1, "call.allowed", agent="a" * 5000, tool="t"))
    collector.feed(StoredEvent("2", b'{"event": {"kind": 5}}', "h"))
    collector.feed(StoredEvent("3", b"\xff\xfe", "h"))
    report = collector.report(generated_at=NOW)
    assert len(report.agents[0].agent) < 300
    assert report.unreadable == 2
    assert "2 audit entries could not be read" in render_html(report)


def test_an_empty_log_makes_a_report_of_zeros() -> None:
    report = Collector(since=NOW - dt.timedelta(days=30), until=NOW).report(generated_at=NOW)
    assert report.calls.total == 0
    assert report.latency.p50_s is None
    assert json.loads(report.model_dump_json())["timeline"]["buckets"] == []
    page = render_html(report)
    assert page.count("<svg") == 1  # the verdict mix, an empty ring: nothing else to draw
    text = render_markdown(report)
    assert "- Approval latency: no decisions in the window." in text
    assert "None in this window." in text


def test_chart_axes_count_in_whole_calls() -> None:
    assert [_nice(n) for n in (0, 1, 2, 3, 7, 11, 20, 21, 99, 101, 4999)] == [
        1,
        1,
        2,
        5,
        10,
        20,
        20,
        50,
        100,
        200,
        5000,
    ]
    empty = Timeline(bucket_s=3600, buckets=[])
    for svg in (calls_over_time(empty), verdict_mix(Verdicts())):
        labels = re.findall(r'text-anchor="end" fill="currentColor">([^<]*)<', svg)
        assert all(label.replace(",", "").isdigit() for label in labels), labels
    collector = Collector(since=None, until=NOW)
    svg = latency_chart(collector.report(generated_at=NOW).latency)
    assert svg.startswith('<svg id="chart-latency"') and "<script" not in svg
