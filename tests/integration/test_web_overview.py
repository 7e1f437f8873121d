"""The overview page: pending oldest first, today's decisions and latency, halts, calls per agent.

A MemoryStore on a manual clock, filled through the store's own write API,
so ages and latencies are exact; then the page is read as HTML.
"""

from __future__ import annotations

import datetime as dt
import html
import re
from collections.abc import Iterator
from html.parser import HTMLParser

import pytest

from gatekeeper import Gatekeeper
from gatekeeper.audit import draft
from gatekeeper.models import ApprovalRequest
from gatekeeper.store import MemoryStore
from gatekeeper.testing import ManualClock
from gatekeeper.web import WebSettings, _overview, create_app
from gatekeeper.web._auth import new_session
from tests.storekit import held_event, make_request
from tests.webkit import APPROVERS, SECRET_KEY, TestClient

START = dt.datetime(2024, 5, 1, 9, 0, tzinfo=dt.timezone.utc)
RTL = "evil\u202egpj.exe"
HTML_NAME = "<img src=x onerror=alert(1)>"
LONG = "agent-" + "x" * 300


class Console:
    def __init__(self) -> None:
        self.clock = ManualClock(START)
        self.store = MemoryStore(clock=self.clock)
        self.gate = Gatekeeper(store=self.store, approvers=APPROVERS, clock=self.clock)
        self.settings = WebSettings(secret_key=SECRET_KEY)
        self.client = TestClient(create_app(self.gate, self.settings))
        value, _ = new_session(self.settings, "alice")
        self.client.cookies.set("gk_session", value)

    def held(self, agent: str = "billing-bot", tool: str = "refund") -> ApprovalRequest:
        req = make_request(self.clock, agent=agent, tool=tool, timeout=86_400)
        self.store.hold(req, held_event(req))
        return req

    def calls(self, agent: str, kind: str = "call.allowed", n: int = 1, tool: str = "read") -> None:
        at = int(self.clock.now().timestamp() * 1000)
        # n events, each a draft of its own (one draft recorded twice is one event)
        self.store.record(
            [
                draft(kind, at_ms=at, actor=f"agent:{agent}", tool=tool, agent=agent)
                for _ in range(n)
            ]
        )

    def page(self) -> str:
        response = self.client.get("/overview")
        assert response.status_code == 200, response.text
        return response.text


@pytest.fixture
def console() -> Iterator[Console]:
    made = Console()
    with made.client:
        yield made
    made.gate.close()


class Tags(HTMLParser):
    """Every tag and attribute name the browser would see."""

    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()
        self.attrs: set[str] = set()
        self.handlers: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.names.add(tag)
        self.attrs.update(name for name, _ in attrs)
        self.handlers.update(name for name, _ in attrs if name.startswith("on"))


def text_of(page: str, element_id: str) -> str:
    found = re.search(rf'id="{element_id}"[^>]*>(.*?)</(dd|span|p|strong|ol|ul)>', page, re.S)
    assert found, f"no #{element_id}"
    return html.unescape(re.sub(r"<[^>]+>|\s+", " ", found.group(1))).strip()


def test_pending_requests_are_listed_oldest_first_with_their_age(console: Console) -> None:
    first = console.held(tool="refund")
    console.clock.advance(600)
    second = console.held(tool="wire")
    console.clock.advance(65)
    page = console.page()
    assert text_of(page, "pending-total") == "2"
    ids = re.findall(r'class="pending-item" data-id="([^"]+)"', page)
    assert ids == [first.id, second.id]
    ages = re.findall(r'<span class="age"[^>]*>([^<]+)</span>', page)
    assert ages == ["11m05s", "1m05s"]


def test_decisions_today_count_and_time_the_decisions(console: Console) -> None:
    latencies = [60, 120, 180, 240, 300, 360, 420, 480, 540, 3600]  # seconds, asked -> decided
    for i, wait in enumerate(latencies):
        req = console.held()
        console.clock.advance(wait)
        if i % 3 == 2:
            console.gate.deny(req.id, approver="alice", comment="no", via="test")
        else:
            console.gate.approve(req.id, approver="alice", via="test")
    console.store.cancel(console.held().id, by="alice", reason="duplicate")
    page = console.page()
    assert text_of(page, "today-decided") == "10"
    assert text_of(page, "today-approved") == "7"
    assert text_of(page, "today-denied") == "3"
    assert text_of(page, "today-cancelled") == "1"
    assert text_of(page, "latency-median") == "5m30s"  # between the 5th and 6th: 300 s and 360 s
    assert text_of(page, "latency-p90") == "9m00s"  # nearest rank: the 9th of 10


def test_decisions_before_midnight_utc_are_not_today(console: Console) -> None:
    req = console.held()
    console.gate.approve(req.id, approver="alice", via="test")
    console.clock.advance(86_400)  # the next day
    page = console.page()
    assert text_of(page, "today-decided") == "0"
    assert text_of(page, "latency-median") == "—"


def test_halts_in_force_are_listed(console: Console) -> None:
    console.gate.halt(agent="scraper-bot", by="alice", reason="prompt injection")
    page = console.page()
    assert text_of(page, "halts-total") == "1"
    assert "scraper-bot" in page and "prompt injection" in page


def test_calls_per_agent_over_the_last_day_are_drawn_as_svg(console: Console) -> None:
    console.calls("old-bot", n=5)
    console.clock.advance(86_401)  # old-bot's calls are now more than a day old
    console.calls("billing-bot", n=6)
    console.calls("billing-bot", "call.denied", n=2)
    console.calls("support-bot", n=1)
    page = console.page()
    assert text_of(page, "calls-total") == "9"
    svg = re.search(r'<svg id="calls-chart".*?</svg>', page, re.S)
    assert svg, "no chart"
    chart = svg.group(0)
    assert " style=" not in chart and "<script" not in chart
    rows = re.findall(r'<g class="chart-row" data-agent="([^"]+)"', chart)
    assert rows == ["billing-bot", "support-bot"]  # busiest first; old-bot is outside the day
    widths = [float(w) for w in re.findall(r'class="chart-allowed"[^>]*width="([\d.]+)"', chart)]
    assert widths[0] == pytest.approx(6 * widths[1])  # bars to scale
    assert 'class="chart-denied"' in chart


def test_the_page_says_when_it_stopped_reading(
    console: Console, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_overview, "CALLS_SCAN", 5)
    monkeypatch.setattr(_overview, "DECIDED_SCAN", 2)
    for _ in range(3):
        console.gate.approve(console.held().id, approver="alice", via="test")
    console.calls("billing-bot", n=8)
    page = console.page()
    assert text_of(page, "calls-total") == "5"
    assert "the page reads at most 5" in text_of(page, "calls-capped")
    assert "only the newest 2 were read" in text_of(page, "today-capped")


def test_hostile_agent_and_tool_names_are_inert_and_visible(console: Console) -> None:
    for name in (RTL, HTML_NAME, LONG):
        console.held(agent=name, tool=name)
        console.calls(name, n=2, tool=name)
    console.gate.halt(agent=HTML_NAME, by="alice", reason=RTL)
    console.held(agent="\u05e9\u05dc\u05d5\u05dd-bot")  # a right-to-left script
    page = console.page()
    assert "\u202e" not in page
    assert "<img" not in page
    assert "evil&lt;U+202E&gt;gpj.exe" in page
    assert html.escape(HTML_NAME, quote=False) in page
    shown = re.sub(r"<[^>]+>", " ", page)  # links carry the whole name; the text is cut
    assert LONG not in shown and LONG[:100] in shown
    assert "<bdi" in page  # names are isolated from the text around them
    tags = Tags()
    tags.feed(page)
    assert not tags.handlers and "img" not in tags.names and "style" not in tags.attrs


def test_the_overview_is_first_in_the_navigation(console: Console) -> None:
    page = console.client.get("/").text
    nav = re.search(r'<nav aria-label="Main">(.*?)</nav>', page, re.S)
    assert nav
    assert re.findall(r'href="([^"]+)"', nav.group(1))[0] == "/overview"
