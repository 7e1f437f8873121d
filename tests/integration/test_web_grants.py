"""Standing approvals from the console: the second approve form, and the Grants page.

The console app (its real routes, templates and CSRF checks, through
TestClient) on a real gate, on MemoryStore, RedisStore and RedisStore split
by role under the shipped ACL users; agents are threads making guarded calls.
What a grant did is read off what ran, the gate's grants and the audit log.
"""

from __future__ import annotations

import html
import re
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from gatekeeper import ApprovalDenied, Gatekeeper, Policy
from gatekeeper.models import RequestStatus
from gatekeeper.store import Store
from gatekeeper.testing import ManualClock, RecordingChannel
from gatekeeper.web import WebSettings, create_app
from gatekeeper.web._auth import new_session
from tests.gatekit import audit_events, audit_kinds
from tests.webkit import APPROVERS, SECRET_KEY, TOKENS, TestClient, bearer

IMG = "<img src=x onerror=window.__pwned=1>"
SCRIPT = "<script>alert(1)</script>"
BIDI = "invoice\u202egpj.exe"

POLICY = """
version: 1
default: allow
rules:
  - {id: refunds, match: {tool: refund}, verdict: require_approval, risk: high,
     approval: {group: finance}}
  - {id: pairs, match: {tool: wire}, verdict: require_approval,
     approval: {group: finance, quorum: 2}}
  - {id: odd, match: {tool: "odd_*"}, verdict: require_approval}
limits:
  - {id: notes-per-hour, match: {tool: note}, rate: 1/hour}
"""


class Site:
    """A gate with tools, the console app on it, and agents in threads."""

    def __init__(self, store: Store) -> None:
        self.channel = RecordingChannel()
        self.gate = Gatekeeper(
            policy=Policy.from_yaml(POLICY),
            store=store,
            approvers=APPROVERS,
            channels=[self.channel],
            default_timeout=30,
        )
        self.settings = WebSettings(secret_key=SECRET_KEY, api_tokens=tuple(TOKENS.values()))
        self.app = create_app(self.gate, self.settings)
        self.ran: list[tuple[str, dict[str, Any]]] = []
        self.threads: list[threading.Thread] = []
        ran = self.ran

        def refund(order_id: str, amount: float) -> str:
            ran.append(("refund", {"order_id": order_id, "amount": amount}))
            return "refunded"

        def wire(to: str, amount: float) -> str:
            ran.append(("wire", {"to": to, "amount": amount}))
            return "sent"

        def note(text: str) -> str:
            ran.append(("note", {"text": text}))
            return "noted"

        def odd_tool(cmd: str, file: str, count: int) -> str:
            ran.append(("odd", {"cmd": cmd}))
            return "ran"

        self.tools = {f.__name__: self.gate.guard(f) for f in (refund, wire, note, odd_tool)}

    def at_once(self, tool: str, agent: str = "billing-bot", **kw: Any) -> Any:
        """A call that must run without anyone asked (fails if it is held)."""
        seen = len(self.channel.notified)
        with self.gate.session(agent=agent, reason="customer asked"):
            out = self.tools[tool](**kw)
        assert len(self.channel.notified) == seen, f"{tool} was held"
        return out

    def held(self, tool: str, agent: str = "billing-bot", **kw: Any) -> tuple[list[Any], str]:
        """A call made in an agent thread; its outcome box and its pending request's id."""
        seen = len(self.channel.notified)
        box: list[Any] = []

        def run() -> None:
            try:
                with self.gate.session(agent=agent, reason="customer asked"):
                    box.append(self.tools[tool](**kw))
            except Exception as exc:
                box.append(exc)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        self.threads.append(thread)
        return box, self.channel.wait_for_request(seen + 1).id

    def finish(self) -> None:
        self.gate.halt(everything=True, by="test-teardown")
        for thread in self.threads:
            thread.join(5)


@pytest.fixture
def site(store: Store) -> Iterator[Site]:
    made = Site(store)
    yield made
    made.finish()


def signed_in(site: Site, name: str = "alice") -> tuple[TestClient, str]:
    client = TestClient(site.app)
    value, session = new_session(site.settings, name)
    client.cookies.set("gk_session", value)
    return client, session.csrf


@pytest.fixture
def alice(site: Site) -> Iterator[tuple[TestClient, str]]:
    client, csrf = signed_in(site)
    with client:
        yield client, csrf


def digest_on(page: str) -> str:
    found = re.search(r'name="digest" value="([0-9a-f]{64})"', page)
    assert found, "the page carries no digest"
    return found.group(1)


def grant_form(page: str) -> str | None:
    """The HTML of the second approve form, if the page has one."""
    found = re.search(r'<form id="approve-grant".*?</form>', page, re.S)
    return found.group(0) if found else None


def flash_of(client: TestClient, response: Any) -> str:
    assert response.status_code == 303, response.text
    page = client.get(response.headers["location"]).text
    found = re.search(r'<p class="flash" id="flash" role="status">(.*?)</p>', page, re.S)
    assert found, "no message after the decision"
    return html.unescape(found.group(1))


# -- the offer -----------------------------------------------------------------------------------
def test_the_grant_form_shows_exactly_what_later_calls_it_would_cover(
    site: Site, alice: tuple[TestClient, str]
) -> None:
    client, _ = alice
    _, rid = site.held("refund", order_id="A-1", amount=80.0)
    form = grant_form(client.get(f"/requests/{rid}").text)
    assert form is not None
    assert f'action="/requests/{rid}/approve"' in form
    assert re.findall(r'<option value="(\d+)"', form) == ["900", "3600", "28800", "86400"]
    assert '<option value="3600" selected>1 h</option>' in form
    conditions = re.search(r'<ul id="grant-conditions".*?</ul>', form, re.S)
    assert conditions is not None
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", conditions.group(0))).strip()
    assert text == "amount = 80.0 or any from 0 up to (at most 80.0) order_id = &#34;A-1&#34;"
    # A number stays exact unless the approver gives a bound, from 0 up to the value approved.
    assert re.search(r'name="bound" type="number" step="any" min="0" max="80.0" value=""', form)


@pytest.mark.parametrize(
    ("tool", "kw", "why"),
    [
        ("wire", {"to": "acct-9", "amount": 5.0}, "a quorum of two"),
        ("note", {"text": "second"}, "held by a limit, not by a rule on its own"),
    ],
)
def test_the_grant_form_is_not_offered_where_a_request_can_not_carry_one(
    site: Site, alice: tuple[TestClient, str], tool: str, kw: dict[str, Any], why: str
) -> None:
    client, csrf = alice
    if tool == "note":
        assert site.at_once("note", text="first") == "noted"  # the hour's one allowed note
    _, rid = site.held(tool, **kw)
    page = client.get(f"/requests/{rid}").text
    assert 'id="approve"' in page, why  # approving alone is still offered
    assert grant_form(page) is None, why
    # A hand-made post is refused by the gate, and nothing is recorded.
    response = client.post(
        f"/requests/{rid}/approve",
        data={"csrf": csrf, "digest": digest_on(page), "grant_for": "3600"},
    )
    assert response.status_code == 409
    assert "approve it alone" in html.unescape(response.text)
    assert site.gate.get(rid).decisions == ()
    assert "grant.created" not in audit_kinds(site.gate)


def test_a_question_is_never_offered_a_grant(site: Site, alice: tuple[TestClient, str]) -> None:
    client, _ = alice
    seen = len(site.channel.notified)
    thread = threading.Thread(target=lambda: _ask(site.gate), daemon=True)
    thread.start()
    site.threads.append(thread)
    rid = site.channel.wait_for_request(seen + 1).id
    page = client.get(f"/requests/{rid}").text
    assert 'id="respond"' in page and grant_form(page) is None


def _ask(gate: Gatekeeper) -> None:
    try:
        with gate.session(agent="billing-bot"):
            gate.ask("may I?")
    except Exception:
        pass  # the teardown halt ends it


# -- granting, using, refusing -------------------------------------------------------------------
def test_approving_with_a_grant_lets_the_next_matching_call_run_without_asking(
    site: Site, alice: tuple[TestClient, str]
) -> None:
    client, csrf = alice
    box, rid = site.held("refund", order_id="A-1", amount=80.0)
    page = client.get(f"/requests/{rid}").text
    response = client.post(
        f"/requests/{rid}/approve",
        data={
            "csrf": csrf,
            "digest": digest_on(page),
            "grant_for": "900",
            "bound": "50",
            "comment": "A-1 is a known case",
        },
        follow_redirects=False,
    )
    told = flash_of(client, response)
    assert "Approved" in told and "Matching calls run without asking until" in told
    (grant,) = site.gate.grants()
    assert (grant.by, grant.request_id, grant.tool) == ("alice", rid, "refund")
    assert grant.args == {"order_id": {"eq": "A-1"}, "amount": {"gte": 0, "lte": 50}}
    assert grant.expires_at is not None
    assert (grant.expires_at - grant.created_at).total_seconds() == 900
    assert grant.id in told
    decision = site.gate.get(rid).decisions[0]
    assert (decision.via, decision.comment) == ("web", "A-1 is a known case")

    site.threads[-1].join(10)
    assert box == ["refunded"]
    assert site.at_once("refund", order_id="A-1", amount=40.0) == "refunded"
    # Past the bound, or another order: held for a person again.
    for other in ({"order_id": "A-1", "amount": 60.0}, {"order_id": "B-2", "amount": 1.0}):
        box, rid2 = site.held("refund", **other)
        site.gate.deny(rid2, approver="bob", comment="not covered")
        site.threads[-1].join(10)
        assert isinstance(box[0], ApprovalDenied)
    assert [args for _, args in site.ran] == [
        {"order_id": "A-1", "amount": 80.0},
        {"order_id": "A-1", "amount": 40.0},
    ]
    events = [e for e in audit_events(site.gate) if e.kind.startswith("grant.")]
    assert [e.kind for e in events] == ["grant.created", "grant.used"]
    assert events[0].actor == "alice" and events[0].data["from_request"] == rid


def test_a_number_left_without_a_bound_stays_exact(
    site: Site, alice: tuple[TestClient, str]
) -> None:
    """A number may be an id: only a bound the approver typed makes it a range."""
    client, csrf = alice
    _, rid = site.held("refund", order_id="A-1", amount=80.0)
    digest = digest_on(client.get(f"/requests/{rid}").text)
    response = client.post(
        f"/requests/{rid}/approve",
        data={"csrf": csrf, "digest": digest, "grant_for": "3600", "bound": ""},
        follow_redirects=False,
    )
    assert "Matching calls run without asking" in flash_of(client, response)
    (grant,) = site.gate.grants()
    assert grant.args == {"order_id": {"eq": "A-1"}, "amount": {"eq": 80.0}}
    site.threads[-1].join(10)
    assert site.at_once("refund", order_id="A-1", amount=80.0) == "refunded"
    box, rid2 = site.held("refund", order_id="A-1", amount=40.0)  # not the value: asks
    site.gate.deny(rid2, approver="bob", comment="not covered")
    site.threads[-1].join(10)
    assert isinstance(box[0], ApprovalDenied)


def test_a_raised_bound_is_refused_by_name_and_nothing_is_recorded(
    site: Site, alice: tuple[TestClient, str]
) -> None:
    client, csrf = alice
    _, rid = site.held("refund", order_id="A-1", amount=80.0)
    digest = digest_on(client.get(f"/requests/{rid}").text)
    response = client.post(
        f"/requests/{rid}/approve",
        data={"csrf": csrf, "digest": digest, "grant_for": "3600", "bound": "500"},
    )
    assert response.status_code == 422
    said = html.unescape(re.sub(r"<[^>]+>", "", response.text))
    assert "Not recorded. amount may be lowered, not raised" in said
    assert "the approved call had 80.0, you gave 500" in said
    form = grant_form(response.text)
    assert form is not None and 'value="500"' in form  # what was typed, to correct
    req = site.gate.get(rid)
    assert (req.status, req.decisions) == (RequestStatus.PENDING, ())
    assert site.gate.grants() == []
    assert not {"grant.created", "request.approved"} & set(audit_kinds(site.gate))


@pytest.mark.parametrize(
    ("fields", "why"),
    [
        ({"grant_for": "3600", "bound": "fifty"}, "must be a number"),
        ({"grant_for": "3600", "bound": "nan"}, "must be a number"),
        ({"grant_for": "604801", "bound": "50"}, "choose how long"),
        ({"grant_for": "3600"}, "not the call's number arguments"),
        ({"grant_for": "3600", "bound": ["50", "40"]}, "not the call's number arguments"),
    ],
)
def test_grant_fields_that_can_not_be_read_are_refused_and_nothing_is_recorded(
    site: Site, alice: tuple[TestClient, str], fields: dict[str, Any], why: str
) -> None:
    client, csrf = alice
    _, rid = site.held("refund", order_id="A-1", amount=80.0)
    digest = digest_on(client.get(f"/requests/{rid}").text)
    response = client.post(
        f"/requests/{rid}/approve", data={"csrf": csrf, "digest": digest, **fields}
    )
    assert response.status_code == 422
    assert why in html.unescape(response.text)
    assert site.gate.get(rid).decisions == () and site.gate.grants() == []


def test_the_grant_form_needs_the_csrf_token_the_digest_and_an_approver_of_the_group(
    site: Site, alice: tuple[TestClient, str]
) -> None:
    client, csrf = alice
    _, rid = site.held("refund", order_id="A-1", amount=80.0)
    digest = digest_on(client.get(f"/requests/{rid}").text)
    grant = {"grant_for": "3600", "bound": "50"}
    for forged in ({}, {"csrf": "not-the-token"}):
        response = client.post(
            f"/requests/{rid}/approve", data={**forged, "digest": digest, **grant}
        )
        assert response.status_code == 403
        assert "CSRF" in response.text
    stale = client.post(
        f"/requests/{rid}/approve", data={"csrf": csrf, "digest": "0" * 64, **grant}
    )
    assert stale.status_code == 409 and "not the ones you reviewed" in stale.text
    carol, carol_csrf = signed_in(site, "carol")  # an approver, not of group finance
    with carol:
        refused = carol.post(
            f"/requests/{rid}/approve", data={"csrf": carol_csrf, "digest": digest, **grant}
        )
    assert refused.status_code == 403 and "group" in refused.text
    agents_own = client.post(
        f"/requests/{rid}/approve",
        data={"digest": digest, **grant},
        headers=bearer("tok-billing-bot"),  # a token of the agent that asked
    )
    assert agents_own.status_code == 403
    assert site.gate.get(rid).decisions == () and site.gate.grants() == []


def test_hostile_text_in_the_grant_form_is_escaped_and_made_visible(
    site: Site, alice: tuple[TestClient, str]
) -> None:
    client, _ = alice
    _, rid = site.held("odd_tool", agent=IMG, cmd=SCRIPT, file=BIDI, count=3)
    page = client.get(f"/requests/{rid}").text
    form = grant_form(page)
    assert form is not None
    for raw in (IMG, SCRIPT, "\u202e"):
        assert raw not in page
    assert "&lt;img src=x onerror=window.__pwned=1&gt;" in form  # the agent
    assert "&#34;&lt;script&gt;alert(1)&lt;/script&gt;&#34;" in form  # cmd's value
    assert "invoice&lt;U+202E&gt;gpj.exe" in form
    assert 'max="3"' in form  # count: a number, at most 3


# -- the grants page -----------------------------------------------------------------------------
def test_the_grants_page_lists_grants_per_agent_and_revoking_holds_the_next_call(
    site: Site, alice: tuple[TestClient, str]
) -> None:
    client, csrf = alice
    assert 'id="grants-empty"' in client.get("/grants").text
    assert '<a href="/grants"' in client.get("/").text  # in the nav
    _, rid = site.held("refund", order_id="A-1", amount=80.0)
    site.gate.approve(rid, approver="alice", grant_for=3600)
    site.threads[-1].join(10)
    (grant,) = site.gate.grants()

    page = client.get("/grants")
    assert page.status_code == 200
    row = re.search(r'<tr class="grant-row".*?</tr>', page.text, re.S)
    assert row is not None
    cells = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", row.group(0)))
    assert "STANDING" in cells and "calls of refund where" in cells
    assert "amount = 80.0" in cells and "order_id = &#34;A-1&#34;" in cells
    assert " alice " in cells and f"request {rid}" in cells and "(in 1 h 0 min)" in cells
    assert f'action="/grants/{grant.id}/revoke"' in row.group(0)
    assert "Agent <code>billing-bot</code>" in page.text

    assert site.at_once("refund", order_id="A-1", amount=80.0) == "refunded"
    forged = client.post(f"/grants/{grant.id}/revoke", data={"reason": "x"})
    assert forged.status_code == 403 and site.gate.grants() == [grant]  # CSRF required
    reader = client.post(f"/grants/{grant.id}/revoke", headers=bearer("tok-reader"))
    assert reader.status_code == 403 and site.gate.grants() == [grant]  # approvers only

    response = client.post(
        f"/grants/{grant.id}/revoke",
        data={"csrf": csrf, "reason": "done with A-1"},
        follow_redirects=False,
    )
    assert response.headers["location"] == "/grants"
    assert "Revoked the standing approval" in flash_of(client, response)
    assert site.gate.grants() == []
    box, rid2 = site.held("refund", order_id="A-1", amount=80.0)  # asks again
    site.gate.deny(rid2, approver="alice", comment="revoked")
    site.threads[-1].join(10)
    assert isinstance(box[0], ApprovalDenied)
    (revoked,) = [e for e in audit_events(site.gate) if e.kind == "grant.revoked"]
    assert (revoked.actor, revoked.data["why"]) == ("alice", "done with A-1")

    again = client.post(f"/grants/{grant.id}/revoke", data={"csrf": csrf}, follow_redirects=False)
    assert "revoked or expired already" in flash_of(client, again)


def test_the_grants_page_is_for_approvers_and_escapes_what_the_agent_wrote(
    site: Site, alice: tuple[TestClient, str]
) -> None:
    client, _ = alice
    _, rid = site.held("odd_tool", agent=IMG, cmd=SCRIPT, file=BIDI, count=3)
    site.gate.approve(rid, approver="alice", grant_for=900)
    site.threads[-1].join(10)
    page = client.get("/grants").text
    for raw in (IMG, SCRIPT, "\u202e"):
        assert raw not in page
    assert "&lt;img src=x onerror=window.__pwned=1&gt;" in page
    assert "invoice&lt;U+202E&gt;gpj.exe" in page
    assert " style=" not in page and "<script>" not in page
    with TestClient(site.app) as anon:
        signed_out = anon.get("/grants", follow_redirects=False)
        assert signed_out.status_code == 303
        assert signed_out.headers["location"].startswith("/login")
        assert anon.get("/grants", headers=bearer("tok-reader")).status_code == 403
        assert anon.get("/grants", headers=bearer("tok-bob")).status_code == 200


def test_an_expired_grant_leaves_the_page_and_matching_calls_ask_again(
    site: Site, alice: tuple[TestClient, str]
) -> None:
    client, csrf = alice
    clock = site.gate.clock
    assert isinstance(clock, ManualClock)  # every store of the contract fixture runs on one
    box, rid = site.held("refund", order_id="A-1", amount=5.0)
    page = client.get(f"/requests/{rid}").text
    client.post(
        f"/requests/{rid}/approve",
        data={"csrf": csrf, "digest": digest_on(page), "grant_for": "900", "bound": "5.0"},
    )
    site.threads[-1].join(10)
    assert len(site.gate.grants()) == 1
    clock.advance(901)
    assert 'id="grants-empty"' in client.get("/grants").text
    box, rid2 = site.held("refund", order_id="A-1", amount=5.0)
    site.gate.deny(rid2, approver="alice", comment="expired")
    site.threads[-1].join(10)
    assert isinstance(box[0], ApprovalDenied)
