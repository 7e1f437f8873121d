"""``POST /api/v1/requests/{id}/respond``: a person's written result, on MemoryStore and Redis.

Authenticated, validated and refused as approve and deny are: the same
scopes, the same ``{"error": {"code", "message"}}`` bodies, and a refusal
records nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from gatekeeper import ApprovalDenied, Policy, Response
from gatekeeper._decisions import MAX_RESPONSE_CHARS
from gatekeeper.store import MemoryStore, RedisStore
from tests.gatekit import audit_kinds
from tests.integration.test_web_api import READER, csrf_of, error_code, sign_in
from tests.webkit import POLICY, Agent, Console, TestClient, bearer

BOB = bearer("tok-bob")


@pytest.fixture(params=["memory", "redis"])
def console(request: pytest.FixtureRequest) -> Iterator[Console]:
    if request.param == "memory":
        store: Any = MemoryStore()
    else:
        server = request.getfixturevalue("redis_server")
        store = RedisStore(server.url, prefix=request.getfixturevalue("redis_prefix"))
    made = Console(store)
    yield made
    made.gate.halt(everything=True, by="test-teardown")  # release an agent a test left waiting
    made.gate.close()


@pytest.fixture
def client(console: Console) -> Iterator[TestClient]:
    with TestClient(console.app) as c:
        yield c


def url(rid: str) -> str:
    return f"/api/v1/requests/{rid}/respond"


def ask(site: Console, question: str) -> Agent:
    site.tools.setdefault("ask", site.gate.ask_tool())
    return site.call("ask", agent="support-bot", question=question)


def test_respond_returns_the_request_and_the_agent_gets_the_text(
    console: Console, client: TestClient
) -> None:
    agent = console.call("refund", order_id="A-1", amount=20.0)
    rid = agent.request.id
    response = client.post(
        url(rid), json={"response": "refunded by hand", "comment": "ticket 4411"}, headers=BOB
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["status"], body["kind"], body["response"]) == (
        "responded",
        "call",
        "refunded by hand",
    )
    assert body["decided_by"] == "bob"
    vote = body["decisions"][0]
    assert (vote["response"], vote["comment"], vote["via"]) == (
        "refunded by hand",
        "ticket 4411",
        "api-token:bob-bot",
    )
    result = agent.outcome()
    assert isinstance(result, Response) and result == "refunded by hand"
    assert console.ran == []
    fetched = client.get(f"/api/v1/requests/{rid}", headers=READER).json()
    assert (fetched["kind"], fetched["response"]) == ("call", "refunded by hand")


def test_responded_requests_are_found_by_status(console: Console, client: TestClient) -> None:
    """The store's history filter (memory and Redis) knows the status, on the API and the page."""
    answered = console.call("refund", order_id="A-1", amount=20.0)
    other = console.call("note", text="hi")
    client.post(url(answered.request.id), json={"response": "done"}, headers=BOB)
    assert answered.outcome() == "done"
    for path in ("/api/v1/requests", "/api/v1/history"):
        found = client.get(path, params={"status": "responded"}, headers=READER).json()
        assert [r["id"] for r in found["items"]] == [answered.request.id], path
    assert sign_in(client).status_code == 303
    page = client.get("/history", params={"status": "responded"}).text
    assert f'data-id="{answered.request.id}"' in page
    assert f'data-id="{other.request.id}"' not in page
    assert '<option value="responded" selected>' in page
    assert 'class="status status-responded">RESPONDED<' in page
    client.post(
        f"/api/v1/requests/{other.request.id}/deny",
        json={"comment": "cleanup"},
        headers={"X-CSRF-Token": csrf_of(client)},
    )
    with pytest.raises(ApprovalDenied):
        other.outcome()


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"response": ""},
        {"response": " \n\t"},
        {"response": "x" * (MAX_RESPONSE_CHARS + 1)},
        {"response": 42},
        {"response": "ok", "comment": "c" * 4001},
        {"response": "ok", "approver": "alice"},  # who decides is the caller, never the body
    ],
    ids=["missing", "empty", "blank", "too-long", "not-text", "long-comment", "approver"],
)
def test_a_bad_body_is_422_and_nothing_is_recorded(
    console: Console, client: TestClient, body: dict[str, Any]
) -> None:
    agent = console.call("refund", order_id="A-1", amount=20.0)
    rid = agent.request.id
    kinds = audit_kinds(console.gate)
    response = client.post(url(rid), json=body, headers=BOB)
    assert response.status_code == 422, body
    assert error_code(response) == "invalid"
    assert console.gate.get(rid).decisions == ()
    assert audit_kinds(console.gate) == kinds
    client.post(url(rid), json={"response": "x" * MAX_RESPONSE_CHARS}, headers=BOB)
    assert agent.outcome() == "x" * MAX_RESPONSE_CHARS


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({}, 401, "not_signed_in"),
        (READER, 403, "forbidden"),  # no decide scope
        (bearer("tok-carol"), 403, "not_authorized"),  # outside the rule's group
        (bearer("tok-ghost"), 403, "not_authorized"),  # not a configured approver
        (bearer("tok-billing-bot"), 403, "forbidden"),  # the agent's own token
    ],
    ids=["nobody", "reader", "outside-group", "unknown-approver", "agents-own-token"],
)
def test_who_may_not_respond_gets_the_usual_refusal(
    console: Console, client: TestClient, headers: dict[str, str], status: int, code: str
) -> None:
    agent = console.call("refund", order_id="A-1", amount=20.0)
    rid = agent.request.id
    kinds = audit_kinds(console.gate)
    response = client.post(url(rid), json={"response": "done"}, headers=headers)
    assert response.status_code == status, response.text
    assert error_code(response) == code
    assert console.gate.get(rid).decisions == ()
    assert audit_kinds(console.gate) == kinds
    client.post(f"/api/v1/requests/{rid}/deny", json={"comment": "cleanup"}, headers=BOB)
    with pytest.raises(ApprovalDenied):
        agent.outcome()


def test_a_cookie_post_needs_the_csrf_token(console: Console, client: TestClient) -> None:
    assert sign_in(client).status_code == 303
    agent = console.call("refund", order_id="A-1", amount=20.0)
    rid = agent.request.id
    for headers in ({}, {"X-CSRF-Token": "forged"}):
        response = client.post(url(rid), json={"response": "done"}, headers=headers)
        assert response.status_code == 403
        assert error_code(response) == "csrf"
    assert console.gate.get(rid).decisions == ()
    response = client.post(
        url(rid), json={"response": "done"}, headers={"X-CSRF-Token": csrf_of(client)}
    )
    assert response.status_code == 200
    assert response.json()["decided_by"] == "alice"
    assert agent.outcome() == "done"


def test_a_rule_with_respond_false_is_409(console: Console, client: TestClient) -> None:
    console.gate.policy = Policy.from_yaml(
        POLICY
        + "  - {id: payouts, match: {tool: payout}, verdict: require_approval,"
        + " approval: {respond: false}}\n"
    )

    @console.gate.guard
    def payout(to: str) -> str:
        return "paid"

    console.tools["payout"] = payout
    agent = console.call("payout", to="acme")
    rid = agent.request.id
    response = client.post(url(rid), json={"response": "paid by hand"}, headers=BOB)
    assert response.status_code == 409
    assert error_code(response) == "conflict"
    assert "respond: false" in response.json()["error"]["message"]
    assert console.gate.get(rid).decisions == ()
    client.post(f"/api/v1/requests/{rid}/approve", headers=BOB)
    assert agent.outcome() == "paid"


def test_responding_twice_or_after_a_denial_is_409(console: Console, client: TestClient) -> None:
    agent = console.call("refund", order_id="A-1", amount=20.0)
    rid = agent.request.id
    client.post(f"/api/v1/requests/{rid}/deny", json={"comment": "no"}, headers=BOB)
    response = client.post(url(rid), json={"response": "late"}, headers=BOB)
    assert response.status_code == 409
    assert "already denied" in response.json()["error"]["message"]
    with pytest.raises(ApprovalDenied):
        agent.outcome()
    assert client.post(url("no-such-id"), json={"response": "x"}, headers=BOB).status_code == 404


def test_a_question_is_answered_through_the_api_and_never_approved(
    console: Console, client: TestClient
) -> None:
    agent = ask(console, "Which currency should the refund use?")
    rid = agent.request.id
    fetched = client.get(f"/api/v1/requests/{rid}", headers=READER).json()
    assert fetched["kind"] == "question"
    assert fetched["args"] == {"question": "Which currency should the refund use?"}
    refused = client.post(f"/api/v1/requests/{rid}/approve", json={}, headers=BOB)
    assert refused.status_code == 409
    assert "it is a question" in refused.json()["error"]["message"]
    answered = client.post(url(rid), json={"response": "EUR"}, headers=BOB)
    assert answered.status_code == 200
    assert (answered.json()["kind"], answered.json()["response"]) == ("question", "EUR")
    assert agent.outcome() == "EUR"


def test_the_openapi_document_describes_respond(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    post = doc["paths"]["/api/v1/requests/{request_id}/respond"]["post"]
    assert {"200", "401", "403", "404", "409", "422"} <= set(post["responses"])
    assert "respond: false" in post["responses"]["409"]["description"]
    schema = doc["components"]["schemas"]["RespondIn"]
    assert schema["required"] == ["response"]
    assert schema["properties"]["response"]["maxLength"] == MAX_RESPONSE_CHARS
    assert schema["additionalProperties"] is False
    request = doc["components"]["schemas"]["ApprovalRequest"]["properties"]
    assert {"kind", "response"} <= set(request)
