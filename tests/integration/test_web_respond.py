"""The console's Respond, Answer and Decline: a person writes the tool's result on the page.

A real gate on MemoryStore; agents are threads making guarded calls (or asking
questions through ``gate.ask_tool()``) that the pages then show and answer.
Every refusal leaves the request pending with nothing in the audit log.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from typing import Any

import pytest

from gatekeeper import ApprovalDenied, Policy, Response
from gatekeeper._decisions import MAX_RESPONSE_CHARS
from gatekeeper.models import RequestStatus
from tests.gatekit import audit_kinds
from tests.integration.test_web_pages import POLICY, Held, Site, digest_on, signed_in
from tests.webkit import TestClient

NO_RESPOND = POLICY + (
    "  - {id: payouts, match: {tool: payout}, verdict: require_approval,"
    " approval: {respond: false}}\n"
)


@pytest.fixture
def site() -> Iterator[Site]:
    made = Site()
    made.gate.policy = Policy.from_yaml(NO_RESPOND)
    ran = made.ran

    @made.gate.guard
    def payout(to: str) -> str:
        ran.append(("payout", {"to": to}))
        return "paid"

    made.tools["payout"] = payout
    made.tools["ask"] = made.gate.ask_tool()
    yield made
    made.release_everyone()
    made.gate.close()


@pytest.fixture
def alice(site: Site) -> Iterator[tuple[TestClient, str]]:
    client, csrf = signed_in(site)
    with client:
        yield client, csrf


@pytest.fixture
def anon(site: Site) -> Iterator[TestClient]:
    with TestClient(site.app) as c:
        yield c


def form(page: str, form_id: str) -> str:
    """The HTML of ``<form id=form_id>``; fails when the page has no such form."""
    found = re.search(rf'<form id="{form_id}".*?</form>', page, re.S)
    assert found, f"no form#{form_id}"
    return found.group(0)


def ask(site: Site, question: str, agent: str = "support-bot") -> tuple[Held, str]:
    return site.call("ask", agent=agent, question=question)


def respond(client: TestClient, csrf: str, rid: str, text: str) -> Any:
    return client.post(
        f"/requests/{rid}/respond",
        data={"csrf": csrf, "response": text},
        follow_redirects=False,
    )


# -- a held call answered instead of run ---------------------------------------------------------
def test_the_request_page_offers_respond_beside_approve_edit_and_deny(
    site: Site, alice: tuple[TestClient, str]
) -> None:
    client, csrf = alice
    _, rid = site.call("refund", order_id="A-1", amount=20.0)
    page = client.get(f"/requests/{rid}").text
    for shown in ('id="approve"', 'id="deny"', 'id="edit-box"'):
        assert shown in page
    respond_form = form(page, "respond")
    assert f'action="/requests/{rid}/respond"' in respond_form
    assert f'name="csrf" value="{csrf}"' in respond_form
    textarea = re.search(r"<textarea[^>]*>", respond_form)
    assert textarea
    assert 'name="response"' in textarea.group(0)
    assert f'maxlength="{MAX_RESPONSE_CHARS}"' in textarea.group(0)
    assert " required" in textarea.group(0)
    assert "Write the result the agent gets instead of running the tool" in respond_form


def test_responding_by_form_returns_the_text_to_the_agent_and_never_runs_the_tool(
    site: Site, alice: tuple[TestClient, str]
) -> None:
    client, csrf = alice
    held, rid = site.call("refund", order_id="A-1", amount=20.0)
    response = respond(client, csrf, rid, "Refunded by hand last week: ticket 4411")
    assert response.status_code == 303
    assert response.headers["location"] == f"/requests/{rid}"
    result = held.outcome()
    assert isinstance(result, Response)
    assert result == "Refunded by hand last week: ticket 4411"
    assert (result.approver, result.request_id, result.tool) == ("alice", rid, "refund")
    assert site.ran == []
    after = site.gate.get(rid)
    assert after.status is RequestStatus.RESPONDED
    assert (after.decided_by, after.decisions[0].via) == ("alice", "web")
    assert "request.responded" in audit_kinds(site.gate)

    page = client.get(f"/requests/{rid}").text
    assert "Answered refund instead of running it. The agent gets your text." in page
    assert 'class="status status-responded">RESPONDED<' in page
    assert re.search(r'id="status">.*?by <strong>alice</strong>', page, re.S)
    shown = re.search(r'<dd id="response"><blockquote[^>]*>(.*?)</blockquote>', page, re.S)
    assert shown and shown.group(1) == "Refunded by hand last week: ticket 4411"
    vote = re.search(r'<li class="vote vote-respond"><strong>(\w+)</strong> by (\w+)', page)
    assert vote and vote.groups() == ("ANSWERED", "alice")
    assert "DENIED" not in page
    assert 'id="closed"' in page
    timeline = page[page.index('id="timeline"') :]
    entry = re.search(r'<li class="event event-request-responded">(.*?)</li>', timeline, re.S)
    assert entry, "no request.responded in the timeline"
    assert "response: <q" in entry.group(1)
    assert "Refunded by hand last week: ticket 4411" in entry.group(1)


@pytest.mark.parametrize(
    ("text", "status", "problem"),
    [
        ("", 422, "A response is required"),
        ("  \n\t ", 422, "A response is required"),
        ("x" * (MAX_RESPONSE_CHARS + 1), 422, "over the limit of 8,000"),
        ("y" * 20_001, 422, "response"),  # past what the form takes at all
    ],
    ids=["empty", "blank", "over-the-limit", "over-the-form-limit"],
)
def test_a_blank_or_too_long_response_is_refused_and_nothing_is_recorded(
    site: Site, alice: tuple[TestClient, str], text: str, status: int, problem: str
) -> None:
    client, csrf = alice
    held, rid = site.call("refund", order_id="A-1", amount=20.0)
    kinds = audit_kinds(site.gate)
    refused = respond(client, csrf, rid, text)
    assert refused.status_code == status
    assert problem in html.unescape(refused.text)
    assert site.gate.get(rid).status is RequestStatus.PENDING
    assert site.gate.get(rid).decisions == ()
    assert audit_kinds(site.gate) == kinds
    if len(text) == MAX_RESPONSE_CHARS + 1:  # kept in the box, for cutting down
        assert text in form(refused.text, "respond")
    exactly = "z" * MAX_RESPONSE_CHARS
    assert respond(client, csrf, rid, exactly).status_code == 303
    assert held.outcome() == exactly


def test_a_rule_with_respond_false_hides_the_form_and_refuses_a_forged_post(
    site: Site, alice: tuple[TestClient, str]
) -> None:
    client, csrf = alice
    held, rid = site.call("payout", to="acme")
    page = client.get(f"/requests/{rid}").text
    assert 'id="respond"' not in page
    assert 'id="approve"' in page and 'id="deny"' in page
    kinds = audit_kinds(site.gate)
    refused = respond(client, csrf, rid, "paid by hand")
    assert refused.status_code == 409
    assert "respond: false" in html.unescape(refused.text)
    assert 'id="respond"' not in refused.text
    assert site.gate.get(rid).decisions == ()
    assert audit_kinds(site.gate) == kinds
    client.post(f"/requests/{rid}/approve", data={"csrf": csrf, "digest": digest_on(page)})
    assert held.outcome() == "paid"


def test_responding_needs_a_session_and_the_csrf_token(site: Site, anon: TestClient) -> None:
    _, rid = site.call("refund", order_id="A-1", amount=20.0)
    kinds = audit_kinds(site.gate)
    signed_out = anon.post(
        f"/requests/{rid}/respond", data={"response": "done"}, follow_redirects=False
    )
    assert signed_out.status_code == 303
    assert signed_out.headers["location"].startswith("/login?next=")
    client, _ = signed_in(site)
    with client:
        for forged in ({}, {"csrf": "not-the-token"}):
            response = client.post(f"/requests/{rid}/respond", data={"response": "x", **forged})
            assert response.status_code == 403
    assert site.gate.get(rid).status is RequestStatus.PENDING
    assert audit_kinds(site.gate) == kinds


def test_an_approver_outside_the_rules_group_cannot_respond(site: Site) -> None:
    _, rid = site.call("wire", to="acme", amount=5.0)
    client, csrf = signed_in(site, "carol")
    with client:
        page = client.get(f"/requests/{rid}").text
        assert 'fieldset id="decide-fields" disabled' in page
        assert 'id="respond"' in page  # shown, but disabled with the reason
        refused = respond(client, csrf, rid, "sent it myself")
    assert refused.status_code == 403
    assert "finance" in refused.text
    assert site.gate.get(rid).decisions == ()


def test_responding_to_a_decided_request_is_refused(
    site: Site, alice: tuple[TestClient, str]
) -> None:
    client, csrf = alice
    held, rid = site.call("refund", order_id="A-1", amount=20.0)
    client.post(f"/requests/{rid}/deny", data={"csrf": csrf, "comment": "no"})
    refused = respond(client, csrf, rid, "late answer")
    assert refused.status_code == 409
    assert "already denied" in refused.text
    with pytest.raises(ApprovalDenied):
        held.outcome()


# -- questions -----------------------------------------------------------------------------------
def test_a_question_shows_the_question_with_answer_and_decline_and_no_approve(
    site: Site, alice: tuple[TestClient, str]
) -> None:
    client, _ = alice
    _, rid = ask(site, "Which currency should the refund use?")
    page = client.get(f"/requests/{rid}").text
    asked = re.search(r'<blockquote id="question"[^>]*>(.*?)</blockquote>', page, re.S)
    assert asked and asked.group(1) == "Which currency should the refund use?"
    assert page.index('id="question"') < page.index('id="request-live"')  # first thing shown
    assert 'id="question-tag"' in page
    assert '<h2 id="decide-h">Answer</h2>' in page
    assert re.search(r'<button type="submit"[^>]*>Answer</button>', form(page, "respond"))
    assert re.search(r'<button type="submit"[^>]*>Decline</button>', form(page, "deny"))
    assert "Why decline?" in form(page, "deny")
    for absent in ('id="approve"', 'id="edit-box"', 'id="edit"', "Approve "):
        assert absent not in page
    assert 'id="needs">an answer' in page


@pytest.mark.parametrize("path", ["approve", "edit", "edit/confirm"])
def test_a_forged_approval_of_a_question_is_refused(
    site: Site, alice: tuple[TestClient, str], path: str
) -> None:
    client, csrf = alice
    _, rid = ask(site, "deploy now?")
    digest = site.gate.get(rid).args_digest
    kinds = audit_kinds(site.gate)
    refused = client.post(
        f"/requests/{rid}/{path}",
        data={"csrf": csrf, "digest": digest, "args": '{"question": "deploy now?!"}'},
    )
    assert refused.status_code == 409
    assert "question" in refused.text
    assert site.gate.get(rid).decisions == ()
    assert audit_kinds(site.gate) == kinds


def test_answering_a_question_gives_the_agent_the_answer(
    site: Site, alice: tuple[TestClient, str]
) -> None:
    client, csrf = alice
    held, rid = ask(site, "Which currency should the refund use?")
    queue = client.get("/").text
    row = re.search(rf'<tr class="request[^"]*" data-id="{rid}">(.*?)</tr>', queue, re.S)
    assert row, "the question is not in the queue"
    assert '<span class="tag tag-question">QUESTION</span>' in row.group(1)
    assert (
        '<td data-label="Question" class="preview question-preview">'
        '<q class="agent-words">Which currency should the refund use?</q>' in row.group(1)
    )
    assert "QUESTION" in client.get("/overview").text
    answered = respond(client, csrf, rid, "EUR, as on the invoice")
    assert answered.status_code == 303
    assert held.outcome() == "EUR, as on the invoice"
    page = client.get(f"/requests/{rid}").text
    assert "Answered the question. The agent gets your text." in page
    assert re.search(r"<dt>Answer</dt><dd id=\"response\">", page)
    assert "ANSWERED</strong> by alice" in page
    history = client.get("/history", params={"status": "responded"}).text
    assert f'data-id="{rid}"' in history
    assert "answered: <q" in history and "EUR, as on the invoice" in history


def test_declining_a_question_needs_a_reason_and_the_agent_reads_it(
    site: Site, alice: tuple[TestClient, str]
) -> None:
    client, csrf = alice
    held, rid = ask(site, "May I email the customer's manager?")
    blank = client.post(f"/requests/{rid}/deny", data={"csrf": csrf, "comment": " "})
    assert blank.status_code == 422
    declined = client.post(
        f"/requests/{rid}/deny",
        data={"csrf": csrf, "comment": "never contact managers"},
        follow_redirects=False,
    )
    assert declined.status_code == 303
    with pytest.raises(ApprovalDenied, match="never contact managers"):
        held.outcome()
    page = client.get(f"/requests/{rid}").text
    assert "Declined the question. The agent reads your reason." in page
    assert "DECLINED</strong> by alice" in page


# -- the overview ------------------------------------------------------------------------------
def test_the_overview_counts_answers_as_decisions(
    site: Site, alice: tuple[TestClient, str]
) -> None:
    client, csrf = alice
    held, rid = site.call("refund", order_id="A-1", amount=20.0)
    respond(client, csrf, rid, "done by hand")
    asker, question = ask(site, "ok?")
    respond(client, csrf, question, "yes")
    assert held.outcome() == "done by hand" and asker.outcome() == "yes"
    page = client.get("/overview").text
    assert re.search(r'id="today-answered">2<', page)
    assert re.search(r'id="today-decided">2<', page)
    assert re.search(r'id="today-denied">0<', page)


def test_a_response_the_store_holds_for_an_unanswered_request_is_not_shown_as_an_answer(
    site: Site, alice: tuple[TestClient, str]
) -> None:
    client, _ = alice
    _, rid = site.call("refund", order_id="A-1", amount=20.0)
    store = site.gate.store
    # What an agent's credentials can write: the stored request, never the signed votes.
    held = store.get(rid)
    store._requests[rid] = held.model_copy(  # type: ignore[attr-defined]
        update={"response": "alice: approved, pay EVIL-9", "decided_by": "alice"}
    )
    page = client.get(f"/requests/{rid}").text
    assert "pay EVIL-9" not in page
    assert "nobody signed an answer" in html.unescape(page)  # the Tampering alert says why
    history = client.get("/history").text
    assert "pay EVIL-9" not in history
