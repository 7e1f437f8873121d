"""The console's HTML pages: sign-in gate, hostile text, decisions by form, big arguments.

A real gate on MemoryStore; agents are threads making guarded calls that the
pages then show and decide. Every agent-controlled field carries XSS and
invisible-character payloads, and each page must show them as inert, visible
text.
"""

from __future__ import annotations

import html
import re
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from markupsafe import escape

from gatekeeper import AgentHalted, ApprovalCancelled, ApprovalDenied, Gatekeeper, Policy
from gatekeeper.audit import StoredEvent
from gatekeeper.channels.console import describe_request
from gatekeeper.channels.slack._blocks import request_message
from gatekeeper.models import RequestStatus
from gatekeeper.store import MemoryStore
from gatekeeper.testing import RecordingChannel
from gatekeeper.web import WebSettings, create_app
from gatekeeper.web._auth import new_session
from tests.gatekit import audit_kinds
from tests.webkit import ALICE_SECRET, APPROVERS, SECRET_KEY, TestClient

IMG = "<img src=x onerror=window.__pwned=1>"
SCRIPT = "<script>alert(1)</script>"
SVG = '"><svg onload=alert(1)>'
BIDI = "invoice\u202egpj.exe"
ZWSP = "pay\u200bpal"
RAW = (IMG, SCRIPT, "<svg", "\u202e", "\u200b")

POLICY = """
version: 1
default: require_approval
rules:
  - {id: reads, match: {tool: "read_*"}, verdict: allow}
  - {id: pairs, match: {tool: wire}, verdict: require_approval, risk: critical,
     approval: {group: finance, quorum: 2}}
  - {id: huge-refund, match: {tool: refund, args: {amount: {gt: 10000}}}, verdict: deny}
"""


class Held(threading.Thread):
    """One guarded call, made in a thread, held until someone decides it."""

    def __init__(self, gate: Gatekeeper, tool: Callable[..., Any], agent: str, **kw: Any) -> None:
        super().__init__(daemon=True)
        self.gate, self.tool, self.agent = gate, tool, agent
        self.session_id: str | None = kw.pop("session_id", None)
        self.reason: str | None = kw.pop("reason", "customer asked")
        self.kwargs = kw
        self.result: Any = None
        self.error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            with self.gate.session(
                agent=self.agent, reason=self.reason, session_id=self.session_id
            ):
                self.result = self.tool(**self.kwargs)
        except BaseException as exc:
            self.error = exc

    def outcome(self) -> Any:
        self.join(10)
        assert not self.is_alive(), "the agent is still waiting"
        if self.error is not None:
            raise self.error
        return self.result


class Site:
    """A gate with some tools, the console app on it, and a signed-in browser."""

    def __init__(self) -> None:
        self.channel = RecordingChannel()
        self.gate = Gatekeeper(
            policy=Policy.from_yaml(POLICY),
            store=MemoryStore(),
            approvers=APPROVERS,
            channels=[self.channel],
        )
        self.settings = WebSettings(secret_key=SECRET_KEY)
        self.app = create_app(self.gate, self.settings)
        self.ran: list[tuple[str, dict[str, Any]]] = []
        self.agents: list[Held] = []
        gate, ran = self.gate, self.ran

        @gate.guard
        def refund(order_id: str, amount: float) -> str:
            ran.append(("refund", {"order_id": order_id, "amount": amount}))
            return "refunded"

        @gate.guard
        def wire(to: str, amount: float) -> str:
            ran.append(("wire", {"to": to, "amount": amount}))
            return "sent"

        @gate.guard
        def note(text: str) -> str:
            ran.append(("note", {"text": text}))
            return "noted"

        @gate.guard(name=SVG)
        def hostile(cmd: str, file: str, img: str, z: str) -> str:
            ran.append(("hostile", {"cmd": cmd}))
            return "ran"

        self.tools: dict[str, Callable[..., Any]] = {
            "refund": refund,
            "wire": wire,
            "note": note,
            "hostile": hostile,
        }

    def call(self, tool: str, agent: str = "billing-bot", **kwargs: Any) -> tuple[Held, str]:
        """Make a call in an agent thread; returns it and its pending request's id."""
        seen = len(self.channel.notified)
        held = Held(self.gate, self.tools[tool], agent, **kwargs)
        self.agents.append(held)
        return held, self.channel.wait_for_request(seen + 1).id

    def hostile_call(self) -> tuple[Held, str]:
        return self.call(
            "hostile",
            agent=IMG,
            session_id=f"sess{ZWSP}",
            reason=SCRIPT + BIDI,
            cmd=SCRIPT,
            file=BIDI,
            img=IMG,
            z=ZWSP,
        )

    def release_everyone(self) -> None:
        self.gate.halt(everything=True, by="test-teardown")
        for held in self.agents:
            held.join(5)


@pytest.fixture
def site() -> Iterator[Site]:
    made = Site()
    yield made
    made.release_everyone()
    made.gate.close()


@pytest.fixture
def anon(site: Site) -> Iterator[TestClient]:
    with TestClient(site.app) as c:
        yield c


def signed_in(site: Site, name: str = "alice") -> tuple[TestClient, str]:
    """A client with a session cookie for ``name``, and that session's CSRF token."""
    client = TestClient(site.app)
    value, session = new_session(site.settings, name)
    client.cookies.set("gk_session", value)
    return client, session.csrf


@pytest.fixture
def alice(site: Site) -> Iterator[tuple[TestClient, str]]:
    client, csrf = signed_in(site)
    with client:
        yield client, csrf


def assert_inert(page: str) -> None:
    """No payload appears raw; the markup ones appear escaped."""
    for raw in RAW:
        assert raw not in page, f"{raw!r} appears unescaped"
    assert "onerror=window.__pwned=1&gt;" in page or "onerror=window.__pwned=1" not in page


def digest_on(page: str) -> str:
    found = re.search(r'name="digest" value="([0-9a-f]{64})"', page)
    assert found, "the page carries no digest"
    return found.group(1)


CSP_PARTS = ("default-src 'self'", "script-src 'self'", "style-src 'self'")


def assert_csp(response: Any) -> None:
    csp = response.headers.get("content-security-policy", "")
    assert all(part in csp for part in CSP_PARTS), csp
    assert "unsafe-inline" not in csp
    assert response.headers.get("x-content-type-options") == "nosniff"


# -- who may see ---------------------------------------------------------------------------------
PAGES = [
    "/",
    "/fragments/queue",
    "/requests/{id}",
    "/fragments/request/{id}",
    "/requests/{id}/args",
    "/history",
    "/audit",
    "/agents",
    "/agents/halt?agent=billing-bot",
    "/agents/resume?agent=billing-bot",
    "/policy",
]


@pytest.mark.parametrize("path", PAGES)
def test_every_page_sends_a_signed_out_browser_to_sign_in(
    site: Site, anon: TestClient, path: str
) -> None:
    _, rid = site.call("note", text="hello")
    response = anon.get(path.format(id=rid), follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login?next=")
    assert_csp(response)


@pytest.mark.parametrize("path", PAGES)
def test_every_page_renders_for_a_signed_in_approver(
    site: Site, alice: tuple[TestClient, str], path: str
) -> None:
    client, _ = alice
    _, rid = site.call("note", text="hello")
    response = client.get(path.format(id=rid), follow_redirects=False)
    assert response.status_code == 200, response.text
    assert_csp(response)
    if not path.endswith("/args"):
        assert response.headers["content-type"].startswith("text/html")
        assert "<script>" not in response.text  # only <script src=...> is allowed
        assert " style=" not in response.text
        assert re.search(r"\son[a-z]+=", response.text) is None


def test_signing_in_through_the_form_reaches_the_queue(site: Site, anon: TestClient) -> None:
    form = anon.get("/login")
    assert form.status_code == 200
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert csrf
    response = anon.post(
        "/login",
        data={"name": "alice", "secret": ALICE_SECRET, "csrf": csrf.group(1), "next": "/"},
        follow_redirects=False,
    )
    assert response.status_code == 303
    queue = anon.get("/")
    assert queue.status_code == 200
    assert 'id="queue-empty"' in queue.text


def test_static_files_are_served_with_the_csp(anon: TestClient) -> None:
    for path, kind in (("/static/app.js", "javascript"), ("/static/style.css", "text/css")):
        response = anon.get(path)
        assert response.status_code == 200
        assert kind in response.headers["content-type"]
        assert_csp(response)


# -- hostile text --------------------------------------------------------------------------------
def test_the_queue_shows_hostile_text_escaped_and_visible(
    site: Site, alice: tuple[TestClient, str]
) -> None:
    client, _ = alice
    _, rid = site.hostile_call()
    for path in ("/", "/fragments/queue"):
        page = client.get(path).text
        assert_inert(page)
        assert f'data-id="{rid}"' in page
        assert html.escape(IMG, quote=False) in page  # the agent
        assert "&lt;svg onload=alert(1)&gt;" in page  # the tool
        assert "invoice&lt;U+202E&gt;gpj.exe" in page  # an argument
        assert "pay&lt;U+200B&gt;pal" in page


def test_the_detail_page_shows_hostile_text_escaped_and_visible(
    site: Site, alice: tuple[TestClient, str]
) -> None:
    client, _ = alice
    _, rid = site.hostile_call()
    page = client.get(f"/requests/{rid}").text
    assert_inert(page)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;invoice&lt;U+202E&gt;gpj.exe" in page  # reason
    assert "sesspay&lt;U+200B&gt;pal" in page  # the session
    assert "&#34;&gt;&lt;svg onload=alert(1)&gt;" in page  # the tool, in #tool
    # the edit box holds real JSON: hidden characters as \\u escapes, not raw
    assert "invoice\\u202egpj.exe" in page
    fragment = client.get(f"/fragments/request/{rid}").text
    assert_inert(fragment)
    assert 'id="timeline"' in fragment


SCOPED_POLICY = """
version: 1
default: allow
agents:
  billing-bot: {scopes: ["orders:read"]}
tools:
  charge: {scopes: ["payments:write"]}
"""


def test_the_scopes_shown_are_the_ones_that_held_the_call(site: Site) -> None:
    """Page, `gatekeeper show` and Slack show the policy's count: its agents: and tools: too."""
    channel = RecordingChannel()
    gate = Gatekeeper(
        policy=Policy.from_yaml(SCOPED_POLICY),
        store=MemoryStore(),
        approvers=APPROVERS,
        channels=[channel],
    )

    @gate.guard
    def charge(amount: float) -> str:
        return "charged"

    held = Held(gate, charge, "billing-bot", amount=5.0)
    req = channel.wait_for_request(1)
    try:
        assert req.call.granted_scopes == () and req.call.required_scopes == ()
        assert any("payments:write" in r for r in req.classification.reasons)
        with TestClient(create_app(gate, site.settings)) as client:
            value, _ = new_session(site.settings, "alice")
            client.cookies.set("gk_session", value)
            page = client.get(f"/requests/{req.id}").text
        scopes = re.search(r'<dd id="scopes">(.*?)</dd>', page, re.S)
        assert scopes, "no scopes line"
        text = re.sub(r"<[^>]+>", "", scopes.group(1))
        assert "granted: orders:read" in text
        assert "needed: payments:write" in text
        assert "MISSING payments:write" in text

        shown = describe_request(gate.get(req.id))
        assert "scopes:  granted orders:read; needed payments:write (MISSING payments:write)" in (
            shown
        )
        message = request_message(gate.get(req.id), now=gate.clock.now())
        fields = [f["text"] for f in message["blocks"][1]["fields"]]
        assert (
            "Scopes: granted orders:read; needed payments:write (MISSING payments:write)" in fields
        )
    finally:
        gate.halt(everything=True, by="test-teardown")
        held.join(5)
        gate.close()


def test_the_edit_confirmation_shows_hostile_text_escaped_and_visible(
    site: Site, alice: tuple[TestClient, str]
) -> None:
    client, csrf = alice
    _, rid = site.hostile_call()
    digest = digest_on(client.get(f"/requests/{rid}").text)
    edited = '{"cmd": "ls", "file": "invoice\\u202egpj.exe", "img": "x", "z": "<b>\\u200b</b>"}'
    page = client.post(
        f"/requests/{rid}/edit", data={"csrf": csrf, "digest": digest, "args": edited}
    )
    assert page.status_code == 200, page.text
    assert_inert(page.text)
    assert 'id="diff"' in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text  # the old cmd
    assert "&lt;b&gt;&lt;U+200B&gt;&lt;/b&gt;" in page.text  # the new z


def test_history_audit_and_agents_show_hostile_text_escaped_and_visible(
    site: Site, alice: tuple[TestClient, str]
) -> None:
    client, csrf = alice
    held, rid = site.hostile_call()
    client.post(f"/requests/{rid}/deny", data={"csrf": csrf, "comment": SVG + ZWSP})
    with pytest.raises(ApprovalDenied):
        held.outcome()
    for path in ("/history", "/audit", "/agents", f"/history?agent={IMG}"):
        page = client.get(path).text
        assert_inert(page)
        assert html.escape(IMG, quote=False) in page, path
    history = client.get("/history").text
    assert "&#34;&gt;&lt;svg onload=alert(1)&gt;pay&lt;U+200B&gt;pal" in history  # the comment
    audit = client.get("/audit").text
    assert "invoice&lt;U+202E&gt;gpj.exe" in audit
    agents = client.get("/agents").text
    assert "sesspay&lt;U+200B&gt;pal" in agents


# -- deciding ------------------------------------------------------------------------------------
def test_approving_by_form_releases_the_call_and_says_so(
    site: Site, alice: tuple[TestClient, str]
) -> None:
    client, csrf = alice
    held, rid = site.call("refund", order_id="A-1", amount=20.0)
    page = client.get(f"/requests/{rid}").text
    assert 'id="quorum">0 of 1 approval<' in page
    response = client.post(
        f"/requests/{rid}/approve",
        data={"csrf": csrf, "digest": digest_on(page), "comment": "ok"},
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert response.headers["location"] == f"/requests/{rid}"
    assert held.outcome() == "refunded"
    assert site.ran == [("refund", {"order_id": "A-1", "amount": 20.0})]
    after = client.get(f"/requests/{rid}").text
    assert 'id="flash"' in after
    assert "Approved" in after
    decision = site.gate.get(rid).decisions[0]
    assert (decision.approver, decision.via, decision.comment) == ("alice", "web", "ok")


def test_a_quorum_shows_one_of_two_until_the_second_approver(
    site: Site, alice: tuple[TestClient, str]
) -> None:
    client, csrf = alice
    held, rid = site.call("wire", to="acme", amount=5.0)
    digest = digest_on(client.get(f"/requests/{rid}").text)
    client.post(f"/requests/{rid}/approve", data={"csrf": csrf, "digest": digest})
    assert 'class="votes">1 of 2<' in client.get("/").text
    assert 'id="quorum">1 of 2 approvals<' in client.get(f"/requests/{rid}").text
    bob, bob_csrf = signed_in(site, "bob")
    with bob:
        bob.post(f"/requests/{rid}/approve", data={"csrf": bob_csrf, "digest": digest})
    assert held.outcome() == "sent"


@pytest.mark.parametrize("action", ["approve", "deny", "edit", "edit/confirm"])
def test_a_form_without_the_csrf_token_is_refused_and_changes_nothing(
    site: Site, alice: tuple[TestClient, str], action: str
) -> None:
    client, _ = alice
    _, rid = site.call("refund", order_id="A-1", amount=20.0)
    digest = digest_on(client.get(f"/requests/{rid}").text)
    kinds = audit_kinds(site.gate)
    data = {"digest": digest, "comment": "x", "args": '{"order_id": "A-2", "amount": 1}'}
    for forged in ({}, {"csrf": "not-the-token"}):
        response = client.post(f"/requests/{rid}/{action}", data={**data, **forged})
        assert response.status_code == 403
        assert_csp(response)
    assert site.gate.get(rid).status is RequestStatus.PENDING
    assert audit_kinds(site.gate) == kinds


@pytest.mark.parametrize("path", ["/agents/halt", "/agents/resume"])
def test_halting_without_the_csrf_token_is_refused(
    site: Site, alice: tuple[TestClient, str], path: str
) -> None:
    client, _ = alice
    response = client.post(path, data={"agent": "billing-bot"})
    assert response.status_code == 403
    assert site.gate.store.halts() == []


def test_deny_needs_a_comment_and_the_agent_reads_it(
    site: Site, alice: tuple[TestClient, str]
) -> None:
    client, csrf = alice
    held, rid = site.call("refund", order_id="A-1", amount=20.0)
    for empty in ("", "   "):
        response = client.post(f"/requests/{rid}/deny", data={"csrf": csrf, "comment": empty})
        assert response.status_code == 422
        assert "A comment is required" in response.text
    assert site.gate.get(rid).status is RequestStatus.PENDING
    response = client.post(
        f"/requests/{rid}/deny",
        data={"csrf": csrf, "comment": "use the sandbox account"},
        follow_redirects=False,
    )
    assert response.status_code == 303
    with pytest.raises(ApprovalDenied, match="use the sandbox account"):
        held.outcome()
    assert site.ran == []


def test_edit_and_approve_shows_the_diff_then_runs_the_edited_args(
    site: Site, alice: tuple[TestClient, str]
) -> None:
    client, csrf = alice
    held, rid = site.call("refund", order_id="A-1", amount=200.0)
    digest = digest_on(client.get(f"/requests/{rid}").text)
    confirm = client.post(
        f"/requests/{rid}/edit",
        data={"csrf": csrf, "digest": digest, "args": '{"order_id": "A-1", "amount": 20.0}'},
    )
    assert confirm.status_code == 200
    rows = re.findall(r'<tr class="change change-(\w+)">', confirm.text)
    assert rows == ["changed"]
    assert "200.0" in confirm.text
    assert 'id="reshaped"' not in confirm.text
    assert site.gate.get(rid).status is RequestStatus.PENDING  # nothing recorded yet
    hidden = re.search(r'name="args" value="([^"]*)"', confirm.text)
    assert hidden
    response = client.post(
        f"/requests/{rid}/edit/confirm",
        data={"csrf": csrf, "digest": digest_on(confirm.text), "args": html.unescape(hidden[1])},
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert held.outcome() == "refunded"
    assert site.ran == [("refund", {"order_id": "A-1", "amount": 20.0})]
    events = [e for e in audit_kinds(site.gate) if e.startswith("request.")]
    assert "request.approved" in events
    assert "with edited arguments" in client.get(f"/requests/{rid}").text


def test_a_reshaping_edit_is_flagged_on_the_confirmation(
    site: Site, alice: tuple[TestClient, str]
) -> None:
    client, csrf = alice
    _, rid = site.call("refund", order_id="A-1", amount=200.0)
    digest = digest_on(client.get(f"/requests/{rid}").text)
    confirm = client.post(
        f"/requests/{rid}/edit",
        data={"csrf": csrf, "digest": digest, "args": '{"order_id": "A-1", "extra": {"a": 1}}'},
    )
    assert 'id="reshaped"' in confirm.text
    kinds = re.findall(r'<tr class="change change-(\w+)">', confirm.text)
    assert sorted(kinds) == ["added", "removed"]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('{"amount": NaN}', "NaN"),
        ('{"order_id": "A-1", "amount": 200.0}', "the same as the original"),
    ],
)
def test_bad_edits_are_shown_on_the_page_and_nothing_is_recorded(
    site: Site, alice: tuple[TestClient, str], text: str, problem: str
) -> None:
    client, csrf = alice
    _, rid = site.call("refund", order_id="A-1", amount=200.0)
    digest = digest_on(client.get(f"/requests/{rid}").text)
    kinds = audit_kinds(site.gate)
    for path in (f"/requests/{rid}/edit", f"/requests/{rid}/edit/confirm"):
        if path.endswith("confirm") and "same as the original" in problem:
            continue  # confirming unchanged arguments is a plain approval
        response = client.post(path, data={"csrf": csrf, "digest": digest, "args": text})
        assert response.status_code == 422, path
        assert problem in response.text
        assert str(escape(text)) in response.text  # kept for fixing
    assert audit_kinds(site.gate) == kinds


def test_a_decision_bound_to_other_args_is_refused(
    site: Site, alice: tuple[TestClient, str]
) -> None:
    client, csrf = alice
    _, rid = site.call("refund", order_id="A-1", amount=20.0)
    for digest in ("", "0" * 64, "abc"):
        response = client.post(f"/requests/{rid}/approve", data={"csrf": csrf, "digest": digest})
        assert response.status_code in (400, 409), digest
    assert site.gate.get(rid).status is RequestStatus.PENDING
    assert site.gate.get(rid).decisions == ()


def test_an_approver_outside_the_group_sees_why_and_is_refused(site: Site) -> None:
    _, rid = site.call("wire", to="acme", amount=5.0)
    client, csrf = signed_in(site, "carol")
    with client:
        page = client.get(f"/requests/{rid}").text
        assert 'id="cannot-decide"' in page
        assert 'fieldset id="decide-fields" disabled' in page
        response = client.post(
            f"/requests/{rid}/approve", data={"csrf": csrf, "digest": digest_on(page)}
        )
    assert response.status_code == 403
    assert "finance" in response.text
    assert site.gate.get(rid).decisions == ()


def test_deciding_twice_is_refused_on_the_page(site: Site, alice: tuple[TestClient, str]) -> None:
    client, csrf = alice
    held, rid = site.call("refund", order_id="A-1", amount=20.0)
    digest = digest_on(client.get(f"/requests/{rid}").text)
    client.post(f"/requests/{rid}/deny", data={"csrf": csrf, "comment": "no"})
    response = client.post(f"/requests/{rid}/approve", data={"csrf": csrf, "digest": digest})
    assert response.status_code == 409
    assert "already denied" in response.text
    assert 'id="closed"' in response.text
    with pytest.raises(ApprovalDenied):
        held.outcome()


def test_an_unknown_request_is_a_404_page(alice: tuple[TestClient, str]) -> None:
    client, _ = alice
    response = client.get("/requests/nope")
    assert response.status_code == 404
    assert_csp(response)
    assert 'id="error"' in response.text


# -- big arguments -----------------------------------------------------------------------------
def test_a_megabyte_argument_is_cut_with_a_link_to_all_of_it(
    site: Site, alice: tuple[TestClient, str]
) -> None:
    client, _ = alice
    big = "A" * 1_000_000 + SCRIPT
    _, rid = site.call("note", text=big)
    page = client.get(f"/requests/{rid}")
    assert page.status_code == 200
    assert len(page.text) < 200_000
    assert f'id="args-full" href="/requests/{rid}/args"' in page.text
    assert SCRIPT not in page.text
    full = client.get(f"/requests/{rid}/args")
    assert full.headers["content-type"] == "text/plain; charset=utf-8"
    assert full.headers["x-content-type-options"] == "nosniff"
    assert big in full.text
    assert len(client.get("/").text) < 50_000
    assert len(client.get("/audit").text) < 200_000


def test_arguments_the_page_cannot_show_whole_can_be_denied_but_not_approved_there(
    site: Site, alice: tuple[TestClient, str]
) -> None:
    """No Approve or Edit form, a note saying why and how, and forged posts are refused."""
    client, csrf = alice
    held, rid = site.call("note", text="A" * 70_000 + "END")
    page = client.get(f"/requests/{rid}").text
    assert 'id="too-large-to-approve"' in page
    assert f"gatekeeper show {rid}" in page
    assert 'id="approve"' not in page
    assert 'id="edit-box"' not in page
    assert 'id="deny"' in page
    digest = site.gate.get(rid).args_digest  # even the right one: the page never showed it all
    for path, extra in (
        ("approve", {}),
        ("edit", {"args": '{"text": "short"}'}),
        ("edit/confirm", {"args": '{"text": "short"}'}),
    ):
        form = {"csrf": csrf, "digest": digest, **extra}
        refused = client.post(f"/requests/{rid}/{path}", data=form, follow_redirects=False)
        assert refused.status_code == 409, path
        assert "nobody approves what they were not shown" in html.unescape(refused.text)
    assert site.gate.get(rid).decisions == ()
    denied = client.post(
        f"/requests/{rid}/deny",
        data={"csrf": csrf, "digest": digest, "comment": "too big to check"},
        follow_redirects=False,
    )
    assert denied.status_code == 303
    with pytest.raises(ApprovalDenied):
        held.outcome()
    assert site.ran == []


def test_arguments_up_to_the_limit_are_shown_whole_and_can_be_approved(
    site: Site, alice: tuple[TestClient, str]
) -> None:
    client, csrf = alice
    held, rid = site.call("note", text="B" * 60_000 + "END")
    page = client.get(f"/requests/{rid}").text
    assert "B" * 60_000 + "END" in page
    assert 'id="too-large-to-approve"' not in page
    response = client.post(
        f"/requests/{rid}/approve", data={"csrf": csrf, "digest": digest_on(page)}
    )
    assert response.status_code == 200
    assert held.outcome() == "noted"


def test_the_full_args_spell_hidden_characters_as_json_escapes(
    site: Site, alice: tuple[TestClient, str]
) -> None:
    client, _ = alice
    _, rid = site.hostile_call()
    full = client.get(f"/requests/{rid}/args").text
    assert "\u202e" not in full
    assert "\\u202e" in full
    import json

    assert json.loads(full)["file"] == BIDI


# -- audit, agents, policy -----------------------------------------------------------------------
def test_the_audit_page_says_the_chain_is_intact_then_where_it_breaks(
    site: Site, alice: tuple[TestClient, str]
) -> None:
    client, csrf = alice
    held, rid = site.call("refund", order_id="A-1", amount=20.0)
    client.post(f"/requests/{rid}/deny", data={"csrf": csrf, "comment": "no"})
    with pytest.raises(ApprovalDenied):
        held.outcome()
    page = client.get("/audit").text
    assert re.search(r'id="chain"[^>]*><strong>✓ Chain intact:</strong> \d+ events', page)
    store = site.gate.store
    assert isinstance(store, MemoryStore)
    entries = store._entries  # tamper with the log behind the store's back
    victim = entries[0]
    entries[0] = StoredEvent(victim.entry_id, victim.body.replace(b"A-1", b"A-9"), victim.hash)
    page = client.get("/audit").text
    assert f"Chain BROKEN at entry {victim.entry_id}" in page
    assert "edited" in page
    assert "CHAIN BREAKS HERE" in page


def test_audit_details_are_labelled_fields_with_the_json_one_click_away(
    site: Site, alice: tuple[TestClient, str]
) -> None:
    client, _ = alice
    _, rid = site.call("refund", reason="customer asked", order_id="A-9", amount=3.5)
    page = client.get("/audit").text
    row = re.search(r'<tr class="audit-row"[^>]*>.*?call\.held.*?</tr>', page, re.S)
    assert row, "no call.held row"
    fields = dict(re.findall(r"<div><dt>([^<]+)</dt><dd>([^<]*)</dd></div>", row.group(0)))
    assert fields["reason"] == "customer asked"
    assert fields["verdict"] == "require_approval"
    assert html.unescape(fields["args"]) == '{"amount": 3.5, "order_id": "A-9"}'
    raw = re.search(
        r'<details class="raw"><summary>JSON</summary><pre[^>]*>(.*?)</pre>', row.group(0), re.S
    )
    assert raw and '"order_id": "A-9"' in html.unescape(raw.group(1))
    assert f"/requests/{rid}" in row.group(0)


def test_the_audit_page_pages_back_with_before(site: Site, alice: tuple[TestClient, str]) -> None:
    client, _ = alice
    for i in range(60):
        site.gate.store.record([{"at": i, "kind": "call.allowed", "actor": "agent:x"}])
    first = client.get("/audit").text
    assert first.count('class="audit-row') == 50
    older = re.search(r'href="(/audit\?before=[^"]+)" rel="next"', first)
    assert older
    second = client.get(html.unescape(older[1])).text
    assert second.count('class="audit-row') == 10
    assert client.get("/audit?before=drop%20table").status_code == 400


def test_halt_and_resume_go_through_a_confirmation(
    site: Site, alice: tuple[TestClient, str]
) -> None:
    client, csrf = alice
    held, _ = site.call("refund", order_id="A-1", amount=20.0)
    agents = client.get("/agents").text
    assert 'href="/agents/halt?agent=billing-bot"' in agents
    confirm = client.get("/agents/halt?agent=billing-bot").text
    assert 'id="confirm-halt"' in confirm
    assert "1 pending request will be cancelled" in confirm
    assert site.gate.store.halts() == []  # the GET changed nothing
    response = client.post(
        "/agents/halt",
        data={"csrf": csrf, "agent": "billing-bot", "reason": "runaway"},
        follow_redirects=False,
    )
    assert response.status_code == 303
    with pytest.raises((ApprovalCancelled, AgentHalted)):
        held.outcome()
    agents = client.get("/agents").text
    assert "HALTED" in agents
    assert "Halted agent billing-bot; 1 pending request cancelled." in agents
    assert 'id="confirm-resume"' in client.get("/agents/resume?agent=billing-bot").text
    client.post("/agents/resume", data={"csrf": csrf, "agent": "billing-bot"})
    assert site.gate.store.halts() == []


def test_halting_everything_and_bad_targets(site: Site, alice: tuple[TestClient, str]) -> None:
    client, csrf = alice
    assert client.get("/agents/halt").status_code == 400
    assert client.get("/agents/halt?agent=a&session=b").status_code == 400
    client.post("/agents/halt", data={"csrf": csrf, "all": "1"})
    page = client.get("/agents").text
    assert 'id="halted-all"' in page
    client.post("/agents/resume", data={"csrf": csrf, "all": "1"})
    assert 'id="halt-all"' in client.get("/agents").text


def _state_of(page: str, row_class: str, name: str) -> str:
    """The State cell of the agents page's row for ``name``, tags stripped."""
    rows = page.split(f'<tr class="{row_class}')[1:]
    row = next(r for r in rows if f"<code>{name}</code>" in r.split("</th>", 1)[0])
    cell = row.split('data-label="State">', 1)[1].split("</td>", 1)[0]
    return " ".join(re.sub(r"<[^>]+>", "", cell).split())


def test_a_session_of_a_halted_agent_shows_as_halted_by_the_agents_halt(
    site: Site, alice: tuple[TestClient, str]
) -> None:
    """Not RUNNING under an agent marked HALTED: a session stops with its agent, and with all."""
    client, csrf = alice
    held, _ = site.call("refund", session_id="sess-1", order_id="A-1", amount=20.0)
    other, _ = site.call("note", agent="notes-bot", session_id="sess-2", text="hi")
    page = client.get("/agents").text
    assert _state_of(page, "session-row", "sess-1") == "RUNNING"
    client.post("/agents/halt", data={"csrf": csrf, "agent": "billing-bot", "reason": "loop"})
    page = client.get("/agents").text
    assert _state_of(page, "agent-row", "billing-bot") == "HALTED by alice: loop"
    assert _state_of(page, "session-row", "sess-1") == (
        "HALTED with agent billing-bot, by alice: loop"
    )
    assert 'href="/agents/resume?agent=billing-bot">Resume the agent' in page
    assert _state_of(page, "session-row", "sess-2") == "RUNNING"
    api = {a["agent"]: a for a in client.get("/api/v1/agents").json()}
    assert api["billing-bot"]["sessions"][0]["halted"] is True
    assert api["notes-bot"]["sessions"][0]["halted"] is False
    client.post("/agents/halt", data={"csrf": csrf, "all": "1", "reason": "stop"})
    page = client.get("/agents").text
    assert _state_of(page, "agent-row", "notes-bot") == "HALTED with everything, by alice: stop"
    assert _state_of(page, "session-row", "sess-2") == "HALTED with everything, by alice: stop"
    assert _state_of(page, "agent-row", "billing-bot") == "HALTED by alice: loop"  # its own
    for agent in (held, other):
        with pytest.raises((ApprovalCancelled, AgentHalted)):
            agent.outcome()


def test_the_policy_page_lists_rules_and_explains_a_call(alice: tuple[TestClient, str]) -> None:
    client, _ = alice
    page = client.get("/policy").text
    assert 'id="policy-rules"' in page
    assert "pairs" in page
    explained = client.get(
        "/policy", params={"tool": "wire", "args": '{"to": "x"}', "agent": "bot"}
    ).text
    block = explained.split('id="explanation"', 1)[1]
    assert "REQUIRE APPROVAL" in block
    assert "CRITICAL" in block
    assert "finance" in block
    bad = client.get("/policy", params={"tool": "wire", "args": "[1]"}).text
    assert 'id="explain-error"' in bad


def test_a_held_call_and_the_explain_form_say_which_condition_a_rule_failed(
    site: Site, alice: tuple[TestClient, str]
) -> None:
    """Not only "no rule matched tool 'refund'": rule huge-refund names it, and says why not."""
    client, _ = alice
    _, rid = site.call("refund", order_id="A-1", amount=20.0)
    page = client.get(f"/requests/{rid}").text
    assert "no rule matched tool &#39;refund&#39;" in page
    misses = page.split('id="misses">', 1)[1].split("</ul>", 1)[0]
    assert misses == "<li>rule huge-refund: args.amount 20.0 is not &gt; 10000</li>"
    explained = client.get(
        "/policy", params={"tool": "refund", "args": '{"amount": 3}', "agent": "bot"}
    ).text
    misses = explained.split('id="x-misses">', 1)[1].split("</ul>", 1)[0]
    assert misses == "<li>rule huge-refund: args.amount 3 is not &gt; 10000</li>"
    wire = client.get("/policy", params={"tool": "wire", "args": "{}", "agent": "bot"}).text
    assert 'id="x-misses"' not in wire


def test_history_searches_by_status_and_approver(site: Site, alice: tuple[TestClient, str]) -> None:
    client, csrf = alice
    held, rid = site.call("refund", order_id="A-1", amount=20.0)
    client.post(f"/requests/{rid}/deny", data={"csrf": csrf, "comment": "no"})
    with pytest.raises(ApprovalDenied):
        held.outcome()
    _, other = site.call("note", text="hi")
    page = client.get("/history", params={"status": "denied", "approver": "alice"}).text
    assert f'data-id="{rid}"' in page
    assert f'data-id="{other}"' not in page
    assert f'data-id="{other}"' in client.get("/history", params={"status": "pending"}).text
    bad = client.get("/history", params={"since": "yesterday-ish"})
    assert bad.status_code == 422
    assert 'id="error"' in bad.text
    assert client.get("/history", params={"status": "bogus"}).status_code == 422


def test_the_queue_filters_and_the_fragment_keeps_them(
    site: Site, alice: tuple[TestClient, str]
) -> None:
    client, _ = alice
    _, low = site.call("note", agent="a-bot", text="hi")
    _, crit = site.call("wire", agent="b-bot", to="x", amount=1.0)
    page = client.get("/").text
    assert page.index(f'data-id="{crit}"') < page.index(f'data-id="{low}"')  # most urgent first
    filtered = client.get("/", params={"agent": "a-bot"}).text
    assert f'data-id="{low}"' in filtered
    assert f'data-id="{crit}"' not in filtered
    assert 'data-fragment="/fragments/queue?agent=a-bot"' in filtered
    fragment = client.get("/fragments/queue?agent=a-bot").text
    assert f'data-id="{crit}"' not in fragment
    assert 'id="queue-body"' in fragment
    assert client.get("/", params={"risk": "apocalyptic"}).status_code == 200
