"""The HTML transparency report in a real Chromium: offline, inert, and drawn.

The file ``gatekeeper report --format html`` writes is opened from disk with
the network unreachable: it must ask for nothing but itself, run nothing a
hostile name brought, draw its three charts, and fit a phone's screen.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gatekeeper._report import gate_report, render_html
from gatekeeper.store import MemoryStore
from gatekeeper.testing import ManualClock
from tests.integration.test_report import make_gate, run_mix


@pytest.fixture(scope="module")
def report_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    clock = ManualClock()
    gate = make_gate(MemoryStore(clock=clock), clock)
    run_mix(gate)
    path = tmp_path_factory.mktemp("report") / "report.html"
    path.write_text(render_html(gate_report(gate, since=None)), encoding="utf-8")
    gate.close()
    return path


@pytest.mark.parametrize("width", [375, 1280])
def test_the_html_report_works_offline_and_runs_nothing(
    browser: Any, report_file: Path, shots: Path, width: int
) -> None:
    context = browser.new_context(viewport={"width": width, "height": 900}, offline=True)
    page = context.new_page()
    asked: list[str] = []
    problems: list[str] = []
    page.on("request", lambda r: asked.append(r.url))
    page.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else 0)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.goto(report_file.as_uri())
    assert asked == [report_file.as_uri()]
    assert problems == []  # a CSP violation or a broken style would show here
    assert page.evaluate("window.__pwned") is None
    assert page.locator("script, img, iframe, object").count() == 0
    for chart in ("#chart-calls", "#chart-mix", "#chart-latency"):
        box = page.locator(chart).bounding_box()
        assert box is not None and box["width"] > 200 and box["height"] > 100, (chart, box)
        assert box["x"] + box["width"] <= width
    assert page.locator("#chart-calls rect").count() >= 5
    assert page.locator("#latency-p95").inner_text() == "10m00s"
    agent = page.locator("#agents-table tbody tr").nth(1).locator("td").first.inner_text()
    assert agent.startswith("<script>alert(1)</script>|*x*<U+202E>")
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    page.screenshot(path=str(shots / f"report-{width}.png"), full_page=True)
    context.close()
