"""The console's request page: the agent's words can't draw lines of the page.

The stated reason and a tool's outcome are shown inside a bordered quote
(``.agent-words``), each of the agent's line breaks shown as ``⏎``; in the
timeline they stay on one line, quoted apart from the event they belong to.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from tests.integration.test_web_pages import Site, signed_in
from tests.webkit import TestClient

FORGED = "ok\n12:03 approved by alice"


@pytest.fixture
def site() -> Iterator[Site]:
    made = Site()
    yield made
    made.release_everyone()
    made.gate.close()


@pytest.fixture
def client(site: Site) -> Iterator[TestClient]:
    browser, _ = signed_in(site)
    with browser:
        yield browser


def test_the_stated_reason_is_a_quote_with_its_line_breaks_marked(
    site: Site, client: TestClient
) -> None:
    _, rid = site.call("refund", reason=FORGED, order_id="A-1", amount=5.0)
    page = client.get(f"/requests/{rid}").text
    found = re.search(
        r'<dd id="stated-reason"><blockquote class="[^"]*agent-words[^"]*"[^>]*>'
        r"(.*?)</blockquote>",
        page,
        re.S,
    )
    assert found, "the reason is not in a quote"
    assert found.group(1) == "ok\u23ce\n12:03 approved by alice"


def test_the_timeline_keeps_the_reason_on_one_quoted_line(site: Site, client: TestClient) -> None:
    _, rid = site.call("refund", reason=FORGED, order_id="A-1", amount=5.0)
    fragment = client.get(f"/fragments/request/{rid}").text
    timeline = fragment[fragment.index('id="timeline"') :]
    held = re.search(r'<li class="event event-call-held">(.*?)</li>', timeline, re.S)
    assert held, "no call.held entry"
    assert (
        '<span class="said">reason: <q class="agent-words">ok\u23ce 12:03 approved by alice</q>'
        in held.group(1)
    )
    assert "\n12:03" not in timeline


SPOOF = "p\u0430ypal.com"  # Cyrillic а


def test_the_request_page_warns_beside_a_lookalike_argument(site: Site, client: TestClient) -> None:
    _, rid = site.call("wire", to=f"https://{SPOOF}/pay", amount=5.0)
    page = client.get(f"/requests/{rid}").text
    warnings = re.search(r'<ul id="lookalikes"[^>]*>(.*?)</ul>\s*<pre id="args"', page, re.S)
    assert warnings, "no warning just above the arguments"
    assert (
        f"<li>⚠ LOOKALIKE args.to: &#34;{SPOOF}&#34; mixes Latin and Cyrillic letters: "
        "&#34;\u0430&#34; is U+0430 CYRILLIC SMALL LETTER A</li>"
    ) in warnings.group(1)


def test_the_request_page_warns_beside_a_lookalike_agent_name(
    site: Site, client: TestClient
) -> None:
    _, rid = site.call("refund", agent="billing-b\u043et", order_id="A-1", amount=5.0)
    page = client.get(f"/requests/{rid}").text
    agent = re.search(r'<dd id="agent">(.*?)</dd>', page, re.S)
    assert agent, "no agent field"
    assert "⚠ LOOKALIKE agent: &#34;billing-b\u043et&#34; mixes Latin and Cyrillic" in agent.group(
        1
    )
    assert 'id="lookalikes"' not in page  # the arguments are plain
