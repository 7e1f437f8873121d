"""Standing approvals in a real Chromium: approve with a lowered bound, then revoke.

The console on a real uvicorn, an agent thread on the same MemoryStore; the
browser signs in with a session cookie, uses the request page's second approve
form and the Grants page's Revoke button, under the console's CSP. It takes
the pictures of both in docs/console.md (into docs/images/ with
``--update-docs-images``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from gatekeeper import Gatekeeper, Policy
from gatekeeper.store import MemoryStore
from gatekeeper.testing import RecordingChannel
from gatekeeper.web import WebSettings, create_app
from gatekeeper.web._auth import new_session
from tests.webkit import APPROVERS, SECRET_KEY

from .conftest import LiveServer

POLICY = """
version: 1
default: allow
rules:
  - {id: refunds, match: {tool: refund}, verdict: require_approval, approval: {group: finance}}
"""
TIMEOUT = 10_000  # ms, for expect()


class Site:
    def __init__(self) -> None:
        self.channel = RecordingChannel()
        self.gate = Gatekeeper(
            policy=Policy.from_yaml(POLICY),
            store=MemoryStore(),
            approvers=APPROVERS,
            channels=[self.channel],
        )
        self.settings = WebSettings(secret_key=SECRET_KEY)
        self.server = LiveServer(create_app(self.gate, self.settings))
        self.ran: list[float] = []
        self.threads: list[threading.Thread] = []
        ran = self.ran

        @self.gate.guard
        def refund(order_id: str, amount: float) -> str:
            ran.append(amount)
            return "refunded"

        self.refund = refund

    def call(self, **kw: Any) -> str:
        """A refund in an agent thread; the id of its request once it is held."""
        seen = len(self.channel.notified)

        def run() -> None:
            try:
                with self.gate.session(agent="billing-bot"):
                    self.refund(**kw)
            except Exception:
                pass  # denied or halted: the test reads the store

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        self.threads.append(thread)
        return self.channel.wait_for_request(seen + 1).id

    def close(self) -> None:
        self.gate.halt(everything=True, by="test-teardown")
        for thread in self.threads:
            thread.join(5)
        self.server.stop()


@pytest.fixture
def site() -> Iterator[Site]:
    made = Site()
    yield made
    made.close()


def test_approve_with_a_lowered_bound_then_revoke_in_a_browser(
    browser: Any, site: Site, shots: Path
) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    value, _ = new_session(site.settings, "alice")
    context.add_cookies([{"name": "gk_session", "value": value, "url": site.server.url}])
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else 0)
    page.on("pageerror", lambda e: problems.append(str(e)))

    rid = site.call(order_id="A-1", amount=80.0)
    page.goto(f"{site.server.url}/requests/{rid}")
    form = page.locator("#approve-grant")
    expect(form).to_be_visible(timeout=TIMEOUT)
    expect(page.locator("#grant-conditions")).to_contain_text('order_id = "A-1"')
    # The browser won't post a bound above the approved value (the server refuses it too).
    page.fill("#bound-0", "500")
    form.locator("button[type=submit]").click()
    assert page.locator("#bound-0").evaluate("e => e.validity.rangeOverflow")
    assert site.gate.get(rid).decisions == ()

    page.fill("#bound-0", "50")
    page.select_option("#grant-for", "900")
    form.screenshot(path=str(shots / "console-grant-offer.png"))  # docs/console.md
    form.locator("button[type=submit]").click()
    expect(page.locator("#flash")).to_contain_text("Matching calls run without asking until")
    (grant,) = site.gate.grants()
    assert grant.args["amount"] == {"gte": 0, "lte": 50}
    site.threads[-1].join(10)
    with site.gate.session(agent="billing-bot"):
        assert site.refund(order_id="A-1", amount=45.0) == "refunded"  # ran without asking
    assert site.ran == [80.0, 45.0]

    page.click("nav >> text=Grants")
    row = page.locator("tr.grant-row")
    expect(row).to_contain_text("0 ≤ amount ≤ 50")
    page.locator("main").screenshot(path=str(shots / "console-grants.png"))  # docs/console.md
    row.locator("input[name=reason]").fill("done with A-1")
    row.locator("button[type=submit]").click()
    expect(page.locator("#flash")).to_contain_text("Revoked the standing approval")
    expect(page.locator("#grants-empty")).to_be_visible()
    assert site.gate.grants() == []
    assert problems == []  # a CSP violation (inline style or script) would show here
    context.close()
