"""Every console page at a phone's width (375 px) and a laptop's (1280 px), in a real Chromium.

Approvers decide from their phones: no page may scroll sideways or hold an
element wider than the screen, with hostile names (long, right-to-left
overrides, HTML) in every table. Each page is also photographed at both
widths (into the ``shots`` folder; docs/images/ only with --update-docs-images).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from .test_console import IMG, SCRIPT, Agent, Deployment, sign_in

pytestmark = pytest.mark.redis

WIDTHS = (375, 1280)
LONG_AGENT = "agent-" + "verylongname" * 20
RTL_AGENT = "evil\u202egpj.exe-bot"
HTML_AGENT = IMG
LONG_TOOL = "export_" + "customer_records_" * 12
# A question and a person's answer: unbroken words, a line-break forgery, hostile markup.
LONG_TEXT = (
    "Which "
    + "verylongunbrokenword" * 30
    + f" {IMG} {RTL_AGENT}\n12:03 approved by alice "
    + "and more words " * 200
)
PAGES = {
    "overview": "/overview",
    "queue": "/",
    "request": "/requests/{rid}",
    "request-grant": "/requests/{grantable}",
    "question": "/requests/{qid}",
    "responded": "/requests/{answered}",
    "history": "/history",
    "audit": "/audit",
    "agents": "/agents",
    "policy": "/policy?tool=refund&agent=billing-bot",
    "report": "/report?since=all",
    "grants": "/grants",
    "limits": "/limits",
    "login": "/login",
}

# Elements wider than the viewport (a table scrolling inside its box counts: on a phone
# it must fit), and elements sticking out of it unless a box clips them (a <pre>
# scrolls inside itself); the skip link parked off-screen is left out.
OVERFLOW = """() => {
  const vw = document.documentElement.clientWidth;
  const clipped = (el) => {
    for (let p = el.parentElement; p && p !== document.body; p = p.parentElement) {
      const o = getComputedStyle(p).overflowX;
      if (o !== "visible") return true;
    }
    return false;
  };
  const out = [];
  for (const el of document.body.querySelectorAll("*")) {
    if (el.closest(".skip, .visually-hidden")) continue;
    const r = el.getBoundingClientRect();
    if (r.width === 0 && r.height === 0) continue;
    if (r.width > vw + 1 || ((r.right > vw + 1 || r.left < -1) && !clipped(el))) {
      const where = `${Math.round(r.left)}..${Math.round(r.right)}`;
      out.push(`${el.tagName.toLowerCase()}#${el.id}.${el.className} ${where}`);
    }
  }
  const scroll = document.documentElement.scrollWidth;
  return {scroll: scroll, inner: window.innerWidth, wide: out.slice(0, 8)};
}"""


@pytest.fixture(scope="module")
def busy(redis_server: Any) -> Iterator[tuple[Deployment, dict[str, str]]]:
    """A console with pending, decided and halted work, from well- and ill-named agents."""
    site = Deployment(redis_server.url, f"t{uuid.uuid4().hex[:12]}")
    gate = site.agent_gate

    @gate.guard(name=LONG_TOOL)
    def export(rows: int) -> str:
        return "exported"

    site.tools[LONG_TOOL] = export
    for agent in ("billing-bot", LONG_AGENT, RTL_AGENT, HTML_AGENT):
        Agent(gate, site.tools["read_invoice"], agent, "lookup", {"invoice_id": "INV-1"}).outcome()
        Agent(gate, export, agent, "nightly", {"rows": 10}).outcome()  # allowed: default allow
    _, wire = site.call(
        "wire_transfer",
        agent="treasury-bot",
        reason="Supplier invoice INV-2291 is due today.",
        iban="DE89 3704 0044 0532 0130 00",
        amount=48_250.0,
        memo="INV-2291 Acme Components GmbH " + "x" * 300,
    )
    site.agent_gate.approve(wire, approver="bob", comment="checked against the PO", via="cli")
    _, refund = site.call("refund", agent=LONG_AGENT, reason=SCRIPT, order_id="A-1", amount=5.0)
    site.agent_gate.approve(refund, approver="alice", via="cli", grant_for=3600)
    _, mail = site.call(
        "send_email", agent=RTL_AGENT, reason="ticket", to="x@example.com", subject="s", body="b"
    )
    site.agent_gate.deny(mail, approver="alice", comment="no " + RTL_AGENT, via="cli")
    _, answered = site.call("refund", agent=RTL_AGENT, reason="dup", order_id="A-2", amount=1.0)
    site.agent_gate.respond(answered, approver="alice", response=LONG_TEXT, via="cli")
    site.tools["ask"] = site.agent_gate.ask_tool()
    _, question = site.call("ask", agent=LONG_AGENT, reason=RTL_AGENT, question=LONG_TEXT)
    site.call("post_comment", agent=HTML_AGENT, title=SCRIPT, body=IMG, file="f" * 400)
    _, grantable = site.call("refund", agent="billing-bot", order_id="A-7781", amount=129.0)
    site.agent_gate.halt(agent="scraper-" + LONG_AGENT, by="alice", reason=RTL_AGENT)
    yield site, {"rid": wire, "qid": question, "answered": answered, "grantable": grantable}
    site.close()


@pytest.fixture(scope="module")
def session_state(browser: Any, busy: tuple[Deployment, dict[str, str]]) -> dict[str, Any]:
    """A signed-in browser's cookies, taken once (sign-ins are rate limited)."""
    context = browser.new_context()
    page = context.new_page()
    sign_in(page, busy[0])
    expect(page.locator("h1")).to_have_text("Pending requests")
    state: dict[str, Any] = context.storage_state()
    context.close()
    return state


@pytest.fixture(params=WIDTHS, ids=[f"{w}px" for w in WIDTHS])
def sized(
    browser: Any, session_state: dict[str, Any], request: pytest.FixtureRequest
) -> Iterator[Page]:
    context = browser.new_context(
        viewport={"width": request.param, "height": 900}, storage_state=session_state
    )
    page = context.new_page()
    yield page
    context.close()


@pytest.mark.parametrize("name", list(PAGES))
def test_every_page_fits_the_screen(
    busy: tuple[Deployment, dict[str, str]], sized: Page, shots: Path, name: str
) -> None:
    site, ids = busy
    width = sized.viewport_size["width"] if sized.viewport_size else 0
    sized.goto(site.url + PAGES[name].format(**ids))
    expect(sized.locator("h1")).to_be_visible()
    found = sized.evaluate(OVERFLOW)
    sized.screenshot(path=str(shots / f"layout-{name}-{width}.png"), full_page=True)
    sized.screenshot(path=str(shots / f"layout-{name}-{width}-first-screen.png"))
    assert found["scroll"] <= found["inner"], f"{name} scrolls sideways at {width}px: {found}"
    assert found["wide"] == [], f"wider than the screen on {name} at {width}px: {found['wide']}"
    assert sized.evaluate("window.__pwned") is None


def test_the_overview_shows_the_work_and_draws_the_chart(
    busy: tuple[Deployment, dict[str, str]],
    browser: Any,
    session_state: dict[str, Any],
    shots: Path,
) -> None:
    site, _ = busy
    context = browser.new_context(
        viewport={"width": 1280, "height": 900}, storage_state=session_state
    )
    page = context.new_page()
    page.goto(site.url + "/overview")
    # the wire waits for a second vote; the question for its answer
    expect(page.locator("#pending-total")).to_have_text("4")
    expect(page.locator("#today-decided")).to_have_text("3")
    expect(page.locator("#today-answered")).to_have_text("1")
    expect(page.locator("#halts-total")).to_have_text("1")
    bars = page.locator("#calls-chart g.chart-row")
    assert bars.count() >= 4
    assert page.locator("#calls-chart rect.chart-allowed").first.bounding_box()
    labels = page.locator("#calls-chart text.chart-label").all_text_contents()
    assert any("evil<U+202E>gpj.exe" in label for label in labels)
    assert page.locator("main img, main script").count() == 0
    page.screenshot(path=str(shots / "layout-overview-hostile.png"), full_page=True)
    context.close()
