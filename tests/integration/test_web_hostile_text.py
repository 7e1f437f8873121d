"""The console's request page: the agent's words can't draw lines of the page.

The stated reason, a tool's outcome, a question and a person's written
answer are shown inside a bordered quote (``.agent-words``), each line break
shown as ``⏎``; in the timeline, the queue and history they stay on one
line, quoted apart from what they belong to, and bounded.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator

import pytest

from tests.integration.test_web_pages import BIDI, IMG, SCRIPT, ZWSP, Site, assert_inert, signed_in
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


# -- a question and a person's answer ------------------------------------------------------------
HOSTILE = f"{SCRIPT} {IMG} {BIDI} {ZWSP}\n12:03 approved by alice"
ESCAPED = (
    "&lt;script&gt;alert(1)&lt;/script&gt; &lt;img src=x onerror=window.__pwned=1&gt; "
    "invoice&lt;U+202E&gt;gpj.exe pay&lt;U+200B&gt;pal\u23ce"
)


def _quoted(page: str, element: str, element_id: str) -> str:
    found = re.search(rf'<{element} id="{element_id}"[^>]*>(.*?)</{element}>', page, re.S)
    assert found, f"no {element}#{element_id}"
    return found.group(1)


def test_a_hostile_question_is_escaped_quoted_and_bounded_on_every_page(
    site: Site, client: TestClient
) -> None:
    """The question leads its page as the agent's quoted words, cut with a link to all of it."""
    site.tools["ask"] = site.gate.ask_tool()
    question = HOSTILE + " " + "Q" * 100_000 + "END"
    _, rid = site.call("ask", agent=IMG, question=question)
    page = client.get(f"/requests/{rid}").text
    assert_inert(page)
    assert len(page) < 200_000
    shown = _quoted(page, "blockquote", "question")
    assert shown.startswith(ESCAPED + "\n12:03 approved by alice Q")
    assert "END" not in shown and "more characters]" in shown
    assert f'id="question-full" href="/requests/{rid}/args"' in page
    assert 'class="prose agent-words question-text"' in page
    for path in ("/", "/fragments/queue", f"/fragments/request/{rid}", "/audit", "/overview"):
        other = client.get(path).text
        if path == "/overview":  # its chart is an <svg> of ours
            other = re.sub(r'<svg id="calls-chart"[^>]*>', "", other)
        assert_inert(other)
        assert len(other) < 200_000, path
    queue = client.get("/").text
    preview = re.search(r'<q class="agent-words">(.*?)</q>', queue, re.S)
    assert preview, "no question in the queue"
    assert preview.group(1).startswith(ESCAPED + " 12:03 approved by alice")  # one line
    assert "\n" not in preview.group(1)
    assert len(html.unescape(preview.group(1))) < 400


def test_a_hostile_response_is_escaped_quoted_and_bounded_on_every_page(
    site: Site, client: TestClient
) -> None:
    """What a person wrote may be pasted agent text: shown like the agent's words, never raw."""
    held, rid = site.call("refund", order_id="A-1", amount=5.0)
    page = client.get(f"/requests/{rid}").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page)
    assert csrf
    text = (HOSTILE + " " + "R" * 8000)[:8000]
    done = client.post(
        f"/requests/{rid}/respond",
        data={"csrf": csrf.group(1), "response": text},
        follow_redirects=False,
    )
    assert done.status_code == 303
    assert held.outcome() == text
    for path in (f"/requests/{rid}", f"/fragments/request/{rid}", "/history", "/audit"):
        other = client.get(path).text
        assert_inert(other)
        assert len(other) < 200_000, path
    fragment = client.get(f"/fragments/request/{rid}").text
    shown = _quoted(fragment, "dd", "response")
    assert ESCAPED + "\n12:03 approved by alice R" in shown
    assert 'class="prose agent-words"' in shown
    timeline = fragment[fragment.index('id="timeline"') :]
    entry = re.search(r'<li class="event event-request-responded">(.*?)</li>', timeline, re.S)
    assert entry, "no request.responded in the timeline"
    said = re.search(r'response: <q class="agent-words">(.*?)</q>', entry.group(1), re.S)
    assert said and said.group(1).startswith(ESCAPED + " 12:03 approved by alice")
    assert "\n" not in said.group(1) and len(html.unescape(said.group(1))) < 700
    history = client.get("/history").text
    answer = re.search(r'<span class="answer">responded: <q class="agent-words">(.*?)</q>', history)
    assert answer and answer.group(1).startswith(ESCAPED)
    assert len(html.unescape(answer.group(1))) < 400
