"""The console's JSON API and sign-in, against a real gate on MemoryStore and RedisStore."""

from __future__ import annotations

import asyncio
import html
import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from gatekeeper import AgentHalted, ApprovalDenied, ApprovalTimeout
from gatekeeper.store import MemoryStore, RedisStore
from gatekeeper.web._auth import make_login_link, sign
from tests.gatekit import audit_events
from tests.webkit import ALICE_SECRET, Console, LiveServer, TestClient, bearer

ADMIN = bearer("tok-admin")
BOB = bearer("tok-bob")
READER = bearer("tok-reader")


@pytest.fixture(params=["memory", "redis"])
def console(request: pytest.FixtureRequest) -> Iterator[Console]:
    if request.param == "memory":
        store: Any = MemoryStore()
    else:
        server = request.getfixturevalue("redis_server")
        store = RedisStore(server.url, prefix=request.getfixturevalue("redis_prefix"))
    made = Console(store)
    yield made
    made.gate.close()


@pytest.fixture
def client(console: Console) -> Iterator[TestClient]:
    with TestClient(console.app) as c:
        yield c


def sign_in(client: TestClient, name: str = "alice", secret: str = ALICE_SECRET) -> Any:
    client.cookies.set("gk_csrf", "c" * 32)
    return client.post(
        "/login",
        data={"name": name, "secret": secret, "csrf": "c" * 32, "next": "/"},
        follow_redirects=False,
    )


def csrf_of(client: TestClient) -> str:
    from gatekeeper.web._auth import read_session
    from tests.webkit import SECRET_KEY

    session = read_session(_settings(SECRET_KEY), client.cookies.get("gk_session"))
    assert session is not None
    return session.csrf


def _settings(key: str) -> Any:
    from gatekeeper.web import WebSettings

    return WebSettings(secret_key=key)


def error_code(response: Any) -> str:
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message"}
    return str(body["error"]["code"])


# -- who may call ----------------------------------------------------------------------------
READS = [
    "/api/v1/me",
    "/api/v1/requests",
    "/api/v1/requests/some-id",
    "/api/v1/history",
    "/api/v1/audit",
    "/api/v1/audit/verify",
    "/api/v1/agents",
    "/api/v1/halts",
    "/api/v1/policy",
    "/api/v1/events",
]
WRITES = [
    ("POST", "/api/v1/requests/some-id/approve", {}),
    ("POST", "/api/v1/requests/some-id/deny", {"comment": "no"}),
    ("POST", "/api/v1/requests/some-id/respond", {"response": "done"}),
    ("POST", "/api/v1/halts", {"all": True}),
    ("DELETE", "/api/v1/halts", {"all": True}),
    ("POST", "/api/v1/policy/explain", {"tool": "refund"}),
]


@pytest.mark.parametrize("path", READS)
def test_every_read_without_a_session_is_401(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 401
    assert error_code(response) == "not_signed_in"


@pytest.mark.parametrize(("method", "path", "body"), WRITES)
def test_every_write_without_a_session_is_401(
    client: TestClient, method: str, path: str, body: dict[str, Any]
) -> None:
    response = client.request(method, path, json=body)
    assert response.status_code == 401
    assert error_code(response) == "not_signed_in"


@pytest.mark.parametrize(
    "header", ["Bearer nope", "Bearer ", "Basic YWxpY2U6eA==", "tok-admin", "Bearer tok-admin2"]
)
def test_unknown_or_malformed_tokens_are_401(client: TestClient, header: str) -> None:
    response = client.get("/api/v1/me", headers={"Authorization": header})
    assert response.status_code == 401


def test_me_names_the_token_and_its_scopes(client: TestClient) -> None:
    assert client.get("/api/v1/me", headers=BOB).json() == {
        "approver": "bob",
        "groups": ["finance"],
        "token": "bob-bot",
        "scopes": ["decide", "read"],
    }


def test_a_read_token_may_not_decide_and_nothing_changes(
    console: Console, client: TestClient
) -> None:
    agent = console.call("refund", order_id="A-1", amount=20.0)
    rid = agent.request.id
    response = client.post(f"/api/v1/requests/{rid}/approve", json={}, headers=READER)
    assert response.status_code == 403
    assert "'decide' scope" in response.json()["error"]["message"]
    assert console.gate.get(rid).status.value == "pending"
    client.post(f"/api/v1/requests/{rid}/deny", json={"comment": "cleanup"}, headers=ADMIN)
    with pytest.raises(ApprovalDenied):
        agent.outcome()


def test_an_approver_outside_the_rules_group_gets_403(console: Console, client: TestClient) -> None:
    agent = console.call("refund", order_id="A-1", amount=20.0)
    rid = agent.request.id
    response = client.post(f"/api/v1/requests/{rid}/approve", json={}, headers=bearer("tok-carol"))
    assert response.status_code == 403
    assert error_code(response) == "not_authorized"
    assert "group 'finance'" in response.json()["error"]["message"]
    assert console.gate.get(rid).decisions == ()
    client.post(f"/api/v1/requests/{rid}/deny", json={"comment": "cleanup"}, headers=BOB)
    with pytest.raises(ApprovalDenied):
        agent.outcome()


def test_a_token_whose_approver_is_not_configured_gets_403(
    console: Console, client: TestClient
) -> None:
    agent = console.call("note", text="hi")
    rid = agent.request.id
    response = client.post(f"/api/v1/requests/{rid}/approve", headers=bearer("tok-ghost"))
    assert response.status_code == 403
    assert "'nobody' is not a configured approver" in response.json()["error"]["message"]
    client.post(f"/api/v1/requests/{rid}/approve", headers=BOB)
    assert agent.outcome() == "noted"


def test_an_agents_own_token_cannot_decide_that_agents_requests(
    console: Console, client: TestClient
) -> None:
    """Nobody approves their own calls: a token that belongs to an agent can't decide them."""
    own = console.call("note", agent="billing-bot", text="mine")
    other = console.call("note", agent="support-bot", text="theirs")
    mine = bearer("tok-billing-bot")
    response = client.post(f"/api/v1/requests/{own.request.id}/approve", headers=mine)
    assert response.status_code == 403
    assert "belongs to agent 'billing-bot'" in response.json()["error"]["message"]
    denied = client.post(
        f"/api/v1/requests/{own.request.id}/deny", json={"comment": "x"}, headers=mine
    )
    assert denied.status_code == 403
    assert console.gate.get(own.request.id).decisions == ()
    assert (
        client.post(f"/api/v1/requests/{other.request.id}/approve", headers=mine).status_code == 200
    )
    assert other.outcome() == "noted"
    client.post(f"/api/v1/requests/{own.request.id}/approve", headers=BOB)
    assert own.outcome() == "noted"


def test_a_cookie_post_without_the_csrf_token_is_403_and_changes_nothing(
    console: Console, client: TestClient
) -> None:
    assert sign_in(client).status_code == 303
    agent = console.call("refund", order_id="A-1", amount=20.0)
    rid = agent.request.id
    for headers in ({}, {"X-CSRF-Token": "forged"}):
        response = client.post(f"/api/v1/requests/{rid}/approve", json={}, headers=headers)
        assert response.status_code == 403
        assert error_code(response) == "csrf"
        response = client.post("/api/v1/halts", json={"all": True}, headers=headers)
        assert response.status_code == 403
    assert console.gate.get(rid).status.value == "pending"
    assert console.gate.store.halts() == []
    response = client.post(
        f"/api/v1/requests/{rid}/approve",
        json={"comment": "ok"},
        headers={"X-CSRF-Token": csrf_of(client)},
    )
    assert response.status_code == 200
    assert response.json()["decided_by"] == "alice"
    assert agent.outcome() == "refunded 20.0 on A-1"


# -- deciding --------------------------------------------------------------------------------
def test_approve_releases_the_held_call_with_the_approved_args(
    console: Console, client: TestClient
) -> None:
    agent = console.call("refund", order_id="A-1", amount=20.0)
    rid = agent.request.id
    listed = client.get("/api/v1/requests", headers=READER).json()
    assert [r["id"] for r in listed["items"]] == [rid]
    assert listed["total"] == 1
    response = client.post(f"/api/v1/requests/{rid}/approve", json={"comment": "fine"}, headers=BOB)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] in ("approved", "executing", "executed")
    assert body["decisions"][0]["via"] == "api-token:bob-bot"
    assert agent.outcome() == "refunded 20.0 on A-1"
    assert console.ran == [("refund", {"order_id": "A-1", "amount": 20.0})]
    assert client.get("/api/v1/requests", headers=READER).json()["items"] == []


def test_deny_without_a_comment_is_refused(console: Console, client: TestClient) -> None:
    """As in the console, the CLI and Slack: the agent reads why, so a blank reason is a 422."""
    agent = console.call("refund", order_id="A-5", amount=900.0)
    for body in ({}, {"comment": ""}, {"comment": "  \t"}):
        response = client.post(f"/api/v1/requests/{agent.request.id}/deny", json=body, headers=BOB)
        assert response.status_code == 422, body
    assert console.gate.get(agent.request.id).decisions == ()
    console.gate.deny(agent.request.id, approver="bob", comment="test over")
    with pytest.raises(ApprovalDenied):
        agent.outcome()


def test_deny_with_a_comment_reaches_the_agent(console: Console, client: TestClient) -> None:
    agent = console.call("refund", order_id="A-2", amount=900.0)
    response = client.post(
        f"/api/v1/requests/{agent.request.id}/deny",
        json={"comment": "use the sandbox account"},
        headers=BOB,
    )
    assert response.status_code == 200
    assert response.json()["status"] == "denied"
    with pytest.raises(ApprovalDenied) as caught:
        agent.outcome()
    assert caught.value.comment == "use the sandbox account"
    assert caught.value.approver == "bob"
    assert console.ran == []


def test_edit_and_approve_runs_the_tool_with_the_edited_args(
    console: Console, client: TestClient
) -> None:
    agent = console.call("refund", order_id="A-3", amount=500.0)
    original = agent.request.args_digest
    response = client.post(
        f"/api/v1/requests/{agent.request.id}/approve",
        json={
            "args": {"order_id": "A-3", "amount": 50.0},
            "comment": "half",
            "expect_digest": original,
        },
        headers=BOB,
    )
    assert response.status_code == 200, response.text
    assert response.json()["args"] == {"order_id": "A-3", "amount": 50.0}
    assert agent.outcome() == "refunded 50.0 on A-3"
    assert console.ran == [("refund", {"order_id": "A-3", "amount": 50.0})]
    votes = [e for e in audit_events(console.gate) if e.kind == "request.approved"]
    assert votes, [e.kind for e in audit_events(console.gate)]


def test_arguments_over_the_console_limit_need_their_full_digest_to_be_approved(
    console: Console, client: TestClient
) -> None:
    """The API refuses to approve what the console can't show whole unless the caller fetched it."""
    agent = console.call("note", text="A" * 70_000 + "END")
    rid = agent.request.id
    fetched = client.get(f"/api/v1/requests/{rid}", headers=BOB).json()
    assert fetched["args"]["text"].endswith("END")  # the API itself always gives them whole
    for body in ({}, {"expect_digest": fetched["args_digest"][:16]}, {"args": {"text": "x"}}):
        refused = client.post(f"/api/v1/requests/{rid}/approve", json=body, headers=BOB)
        assert refused.status_code == 409, body
        assert error_code(refused) == "not_shown_in_full"
        assert "gatekeeper show" in refused.json()["error"]["message"]
    assert console.gate.get(rid).decisions == ()
    approved = client.post(
        f"/api/v1/requests/{rid}/approve",
        json={"expect_digest": fetched["args_digest"]},
        headers=BOB,
    )
    assert approved.status_code == 200
    assert agent.outcome() == "noted"


def test_a_stale_digest_is_409_and_nothing_is_decided(console: Console, client: TestClient) -> None:
    agent = console.call("note", text="x")
    rid = agent.request.id
    response = client.post(
        f"/api/v1/requests/{rid}/approve", json={"expect_digest": "0123456789abcdef"}, headers=BOB
    )
    assert response.status_code == 409
    assert console.gate.get(rid).decisions == ()
    client.post(f"/api/v1/requests/{rid}/approve", headers=BOB)
    agent.outcome()


def test_deciding_twice_is_409(console: Console, client: TestClient) -> None:
    agent = console.call("refund", order_id="A-4", amount=1.0)
    rid = agent.request.id
    assert client.post(f"/api/v1/requests/{rid}/approve", headers=BOB).status_code == 200
    agent.outcome()
    for path, body in (
        (f"/api/v1/requests/{rid}/approve", {}),
        (f"/api/v1/requests/{rid}/deny", {"comment": "late"}),
    ):
        response = client.post(path, json=body, headers=ADMIN)
        assert response.status_code == 409
        assert error_code(response) == "conflict"


def test_the_same_approver_counts_once_toward_a_quorum(
    console: Console, client: TestClient
) -> None:
    agent = console.call("wire", to="acme", amount=10.0)
    rid = agent.request.id
    first = client.post(f"/api/v1/requests/{rid}/approve", headers=BOB)
    assert first.status_code == 200
    assert first.json()["status"] == "pending"
    again = client.post(f"/api/v1/requests/{rid}/approve", headers=BOB)
    assert again.status_code in (200, 409)
    assert console.gate.get(rid).status.value == "pending"
    assert client.post(f"/api/v1/requests/{rid}/approve", headers=ADMIN).status_code == 200
    assert agent.outcome() == "sent"


def test_an_expired_request_is_409(console: Console, client: TestClient) -> None:
    agent = console.call("quick_note", text="too late")
    with pytest.raises(ApprovalTimeout):
        agent.outcome()
    response = client.post(f"/api/v1/requests/{agent.request.id}/approve", headers=BOB)
    assert response.status_code == 409
    assert console.ran == []


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [("GET", "", None), ("POST", "/approve", {}), ("POST", "/deny", {"comment": "x"})],
)
def test_an_unknown_id_is_404(
    client: TestClient, method: str, suffix: str, body: dict[str, Any] | None
) -> None:
    response = client.request(
        method, f"/api/v1/requests/no-such-id{suffix}", json=body, headers=ADMIN
    )
    assert response.status_code == 404
    assert error_code(response) == "not_found"


@pytest.mark.parametrize(
    ("path", "content"),
    [
        ("/api/v1/requests/x/approve", b"{not json"),
        ("/api/v1/requests/x/approve", b'{"args": [1, 2]}'),
        ("/api/v1/requests/x/approve", b'{"expect_digest": "XYZ"}'),
        ("/api/v1/requests/x/approve", b'{"surprise": 1}'),
        ("/api/v1/requests/x/deny", b"{}"),
        ("/api/v1/requests/x/deny", b'{"comment": ""}'),
        ("/api/v1/requests/x/deny", b"[]"),
        ("/api/v1/halts", b'{"agent": "a", "all": true}'),
        ("/api/v1/halts", b"{}"),
        ("/api/v1/policy/explain", b'{"args": {}}'),
        ("/api/v1/policy/explain", b'{"tool": "t", "args": "x"}'),
    ],
)
def test_bad_json_bodies_are_422(client: TestClient, path: str, content: bytes) -> None:
    response = client.post(
        path, content=content, headers={**ADMIN, "Content-Type": "application/json"}
    )
    assert response.status_code == 422, response.text
    assert error_code(response) == "invalid"


@pytest.mark.parametrize(
    "query", ["limit=0", "limit=100000", "offset=-1", "risk=extreme", "status=maybe"]
)
def test_bad_queries_are_422(client: TestClient, query: str) -> None:
    assert client.get(f"/api/v1/requests?{query}", headers=READER).status_code == 422


# -- reading ----------------------------------------------------------------------------------
def test_the_queue_is_most_urgent_first_and_filters(console: Console, client: TestClient) -> None:
    low = console.call("note", text="a")
    high = console.call("refund", order_id="A", amount=1.0)
    critical = console.call("wire", agent="ops-bot", to="x", amount=1.0)
    items = client.get("/api/v1/requests", headers=READER).json()["items"]
    assert [r["id"] for r in items] == [critical.request.id, high.request.id, low.request.id]
    only = client.get("/api/v1/requests?risk=high", headers=READER).json()
    assert [r["id"] for r in only["items"]] == [high.request.id]
    by_agent = client.get("/api/v1/requests?agent=ops-bot", headers=READER).json()
    assert [r["id"] for r in by_agent["items"]] == [critical.request.id]
    page = client.get("/api/v1/requests?limit=1&offset=1", headers=READER).json()
    assert [r["id"] for r in page["items"]] == [high.request.id]
    assert page["total"] == 3
    for agent in (low, high, critical):
        client.post(
            f"/api/v1/requests/{agent.request.id}/deny", json={"comment": "no"}, headers=ADMIN
        )
    denied = client.get("/api/v1/requests?status=denied", headers=READER).json()
    assert {r["id"] for r in denied["items"]} == {a.request.id for a in (low, high, critical)}
    history = client.get("/api/v1/history?approver=alice&tool=note", headers=READER).json()
    assert [r["id"] for r in history["items"]] == [low.request.id]
    one = client.get(f"/api/v1/requests/{low.request.id}", headers=READER).json()
    assert one["comment"] == "no"
    for agent in (low, high, critical):
        with pytest.raises(ApprovalDenied):
            agent.outcome()


def test_the_audit_log_pages_newest_first_and_verifies(
    console: Console, client: TestClient
) -> None:
    for i in range(3):
        agent = console.call("note", text=str(i))
        client.post(f"/api/v1/requests/{agent.request.id}/approve", headers=BOB)
        agent.outcome()
    console.gate.store.flush()
    first = client.get("/api/v1/audit?limit=2", headers=READER).json()
    assert len(first["items"]) == 2
    seqs = [item["event"]["seq"] for item in first["items"]]
    assert seqs == sorted(seqs, reverse=True)
    older = client.get(
        f"/api/v1/audit?limit=2&before={first['next_before']}", headers=READER
    ).json()
    assert older["items"][0]["event"]["seq"] == seqs[-1] - 1
    verify = client.get("/api/v1/audit/verify", headers=READER).json()
    assert verify["ok"] is True
    assert verify["count"] >= 9
    assert client.get("/api/v1/audit?before=999999999-0", headers=READER).status_code in (200, 422)
    assert client.get("/api/v1/audit?before=abc", headers=READER).status_code == 422


def test_agents_halts_and_resume(console: Console, client: TestClient) -> None:
    agent = console.call("refund", agent="billing-bot", order_id="A", amount=1.0)
    agents = client.get("/api/v1/agents", headers=READER).json()
    assert agents[0]["agent"] == "billing-bot"
    assert agents[0]["counts"]["held"] == 1
    assert agents[0]["halted"] is False
    halt = client.post(
        "/api/v1/halts",
        json={"agent": "billing-bot", "reason": "odd"},
        headers=bearer("tok-halter"),
    )
    assert halt.status_code == 200
    assert halt.json() == {"cancelled": [agent.request.id]}
    halts = client.get("/api/v1/halts", headers=READER).json()
    assert [(h["scope"], h["target"], h["by"]) for h in halts] == [
        ("agent", "billing-bot", "token:halter")
    ]
    assert client.get("/api/v1/agents", headers=READER).json()[0]["halted"] is True
    # resuming needs an approver identity; the halter token has none; bob lacks admin
    refused = client.request(
        "DELETE", "/api/v1/halts", json={"agent": "billing-bot"}, headers=bearer("tok-halter")
    )
    assert refused.status_code == 403
    assert (
        client.request(
            "DELETE", "/api/v1/halts", json={"agent": "billing-bot"}, headers=BOB
        ).status_code
        == 403
    )
    resumed = client.request(
        "DELETE", "/api/v1/halts", json={"agent": "billing-bot"}, headers=ADMIN
    )
    assert resumed.json() == {"resumed": True}
    again = client.request("DELETE", "/api/v1/halts", json={"agent": "billing-bot"}, headers=ADMIN)
    assert again.json() == {"resumed": False}
    with pytest.raises(AgentHalted):
        agent.outcome()


def test_policy_and_explain(client: TestClient) -> None:
    policy = client.get("/api/v1/policy", headers=READER).json()
    assert [r["id"] for r in policy["document"]["rules"]][:2] == ["refunds", "pairs"]
    assert re.fullmatch(r"[0-9a-f]{64}", policy["digest"])
    explained = client.post(
        "/api/v1/policy/explain", json={"tool": "refund", "args": {"amount": 5}}, headers=READER
    ).json()
    assert explained["verdict"] == "require_approval"
    assert explained["rules"] == ["refunds"]
    assert explained["approval"]["group"] == "finance"
    denied = client.post("/api/v1/policy/explain", json={"tool": "drop_table"}, headers=READER)
    assert denied.json()["verdict"] == "deny"


def test_responses_carry_the_security_headers(client: TestClient) -> None:
    response = client.get("/api/v1/me", headers=READER)
    assert "script-src 'self';" in response.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["x-frame-options"] == "DENY"


_CSP_SOURCES = {"'self'", "'none'", "data:"}


def _get_paths(routes: Any) -> Iterator[str]:
    """Paths of the GET routes, through routers included in routers."""
    from starlette.routing import Route

    for route in routes:
        if isinstance(route, Route):
            if "GET" in (route.methods or ()):
                yield route.path
        else:  # FastAPI wraps an included router; a Mount has no GET route of its own
            inner = getattr(route, "original_router", None)
            yield from _get_paths(inner.routes if inner is not None else ())


def test_no_response_relaxes_the_csp_or_loads_from_another_host(
    console: Console, client: TestClient
) -> None:
    """Every GET route, signed in or not: the strict CSP, and no page names an external asset."""
    agent = console.call("note", text="hello")
    paths = ["/api/docs", "/docs", "/redoc", "/static/app.js", "/static/style.css"]
    paths += [re.sub(r"\{[^}]+\}", agent.request.id, p) for p in _get_paths(console.app.routes)]
    assert {"/", "/login", "/agents/halt", "/api/v1/me", "/openapi.json"} <= set(paths)
    paths.remove("/api/v1/events")  # never ends; its headers come from the same middleware
    checked = 0
    for path in paths:
        for headers in ({}, ADMIN):
            response = client.get(path, headers=headers, follow_redirects=False)
            csp = response.headers["content-security-policy"]
            for directive in csp.split(";"):
                name, *sources = directive.split()
                assert set(sources) <= _CSP_SOURCES, (path, name, sources)
            assert re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", response.text) is None
            checked += 1
    assert checked > 30
    assert client.get("/api/docs", headers=ADMIN).status_code == 404
    assert client.get("/openapi.json").json()["paths"]  # the OpenAPI document stays
    console.gate.halt(everything=True, by="test-teardown")
    with pytest.raises(AgentHalted):
        agent.outcome()


def test_openapi_describes_every_endpoint(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path in READS:
        assert path.replace("some-id", "{request_id}") in paths
    approve = paths["/api/v1/requests/{request_id}/approve"]["post"]
    assert {"200", "401", "403", "404", "409", "422"} <= set(approve["responses"])


# -- the same checks on both surfaces ------------------------------------------------------------
# Every route that decides, halts or resumes, on the JSON API and on the pages' forms,
# with a body that would succeed for whoever may use it. {id} is a pending request of
# billing-bot; {digest} its arguments' sha256.
DECIDING: list[tuple[str, str, str, dict[str, str]]] = [
    ("json", "POST", "/api/v1/requests/{id}/approve", {}),
    ("json", "POST", "/api/v1/requests/{id}/deny", {"comment": "no"}),
    ("json", "POST", "/api/v1/requests/{id}/respond", {"response": "done by hand"}),
    ("form", "POST", "/requests/{id}/approve", {"digest": "{digest}"}),
    ("form", "POST", "/requests/{id}/deny", {"digest": "{digest}", "comment": "no"}),
    ("form", "POST", "/requests/{id}/respond", {"digest": "{digest}", "response": "done by hand"}),
    ("form", "POST", "/requests/{id}/edit", {"digest": "{digest}", "args": '{"text": "x"}'}),
    (
        "form",
        "POST",
        "/requests/{id}/edit/confirm",
        {"digest": "{digest}", "args": '{"text": "x"}'},
    ),
    ("json", "POST", "/api/v1/halts", {"agent": "support-bot"}),
    ("json", "DELETE", "/api/v1/halts", {"agent": "support-bot"}),
    ("form", "POST", "/agents/halt", {"agent": "support-bot"}),
    ("form", "POST", "/agents/resume", {"agent": "support-bot"}),
]
DECIDING_IDS = [f"{method} {path}" for _, method, path, _ in DECIDING]


def _send(
    client: TestClient,
    route: tuple[str, str, str, dict[str, str]],
    rid: str,
    digest: str,
    token: str,
) -> Any:
    kind, method, path, body = route
    url = path.format(id=rid)
    filled = {k: v.format(digest=digest) if v == "{digest}" else v for k, v in body.items()}
    if kind == "json":
        return client.request(method, url, json=filled, headers=bearer(token))
    return client.request(method, url, data=filled, headers=bearer(token), follow_redirects=False)


@pytest.mark.parametrize("route", DECIDING, ids=DECIDING_IDS)
@pytest.mark.parametrize("token", ["tok-reader", "tok-billing-bot", "tok-billing-admin"])
def test_read_and_agent_tokens_are_refused_on_every_deciding_route_of_both_surfaces(
    console: Console, client: TestClient, route: tuple[str, str, str, dict[str, str]], token: str
) -> None:
    """A read-only token and billing-bot's own tokens change nothing, through the API or a form."""
    agent = console.call("note", agent="billing-bot", text="mine")
    rid = agent.request.id
    console.gate.halt(agent="support-bot", by="ops")  # something a resume could lift
    response = _send(client, route, rid, agent.request.args_digest, token)
    assert response.status_code == 403, response.text
    after = console.gate.get(rid)
    assert (after.status.value, after.decisions) == ("pending", ())
    assert [h.key for h in console.gate.store.halts()] == ["agent:support-bot"]
    console.gate.halt(everything=True, by="test-teardown")
    with pytest.raises(AgentHalted):
        agent.outcome()


@pytest.mark.parametrize("route", DECIDING, ids=DECIDING_IDS)
def test_a_decider_token_still_works_on_every_deciding_route_of_both_surfaces(
    console: Console, client: TestClient, route: tuple[str, str, str, dict[str, str]]
) -> None:
    """tok-admin (alice: read, decide, admin) gets the route's usual answer and its effect."""
    agent = console.call("note", agent="billing-bot", text="mine")
    rid = agent.request.id
    _, method, path, _ = route
    if (path.endswith("/halts") and method == "DELETE") or path.endswith("/resume"):
        console.gate.halt(agent="support-bot", by="ops")
    response = _send(client, route, rid, agent.request.args_digest, "tok-admin")
    assert response.status_code in (200, 303), response.text
    if path.endswith("/approve") or path.endswith("/confirm"):
        assert agent.outcome() == "noted"
        assert console.ran[-1] == ("note", {"text": "x" if "confirm" in path else "mine"})
        return
    if path.endswith("/deny"):
        with pytest.raises(ApprovalDenied):
            agent.outcome()
        return
    if path.endswith("/respond"):
        assert agent.outcome() == "done by hand"
        assert console.ran == []
        return
    halted = [h.key for h in console.gate.store.halts()]
    if path.endswith("/edit"):
        assert "Review" in response.text or "confirm" in response.text
        assert console.gate.get(rid).status.value == "pending"
    elif method == "DELETE" or path.endswith("/resume"):
        assert halted == []
    else:
        assert halted == ["agent:support-bot"]
    console.gate.halt(everything=True, by="test-teardown")
    with pytest.raises(AgentHalted):
        agent.outcome()


def test_an_agents_admin_token_may_halt_its_agent_but_never_resume(
    console: Console, client: TestClient
) -> None:
    """Stopping yourself is always allowed; lifting a halt is not, for an agent's own token."""
    operator = bearer("tok-billing-admin")
    response = client.post("/api/v1/halts", json={"agent": "billing-bot"}, headers=operator)
    assert response.status_code == 200
    for attempt in (
        lambda: client.request(
            "DELETE", "/api/v1/halts", json={"agent": "billing-bot"}, headers=operator
        ),
        lambda: client.post(
            "/agents/resume",
            data={"agent": "billing-bot"},
            headers=operator,
            follow_redirects=False,
        ),
    ):
        refused = attempt()
        assert refused.status_code == 403
        assert "can't resume anything" in html.unescape(refused.text)
    assert [h.key for h in console.gate.store.halts()] == ["agent:billing-bot"]
    everything = client.post("/agents/halt", data={"all": "1"}, headers=operator)
    assert everything.status_code == 403
    assert [h.key for h in console.gate.store.halts()] == ["agent:billing-bot"]


def test_a_page_names_why_an_agents_token_cannot_decide(
    console: Console, client: TestClient
) -> None:
    """The request page disables the forms for billing-bot's token and says why."""
    agent = console.call("note", agent="billing-bot", text="mine")
    page = client.get(f"/requests/{agent.request.id}", headers=bearer("tok-billing-bot"))
    assert page.status_code == 200
    assert 'id="cannot-decide"' in page.text
    assert "belongs to agent" in page.text
    reader = client.get(f"/requests/{agent.request.id}", headers=READER)
    assert "lacks the 'decide' scope" in html.unescape(reader.text)
    console.gate.halt(everything=True, by="test-teardown")
    with pytest.raises(AgentHalted):
        agent.outcome()


# -- signing in ----------------------------------------------------------------------------------
def test_sign_in_with_the_right_secret_sets_a_strict_httponly_session(client: TestClient) -> None:
    response = sign_in(client)
    assert response.status_code == 303
    assert response.headers["location"] == "/"
    cookie = next(h for h in response.headers.get_list("set-cookie") if h.startswith("gk_session="))
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie or "samesite=strict" in cookie.lower()
    assert "Path=/" in cookie
    assert client.get("/api/v1/me").json()["approver"] == "alice"


@pytest.mark.parametrize(("name", "secret"), [("alice", "wrong"), ("bob", ""), ("mallory", "x")])
def test_sign_in_with_a_wrong_secret_is_refused(client: TestClient, name: str, secret: str) -> None:
    response = sign_in(client, name, secret)
    assert response.status_code == 401
    assert "gk_session" not in client.cookies
    assert client.get("/api/v1/me").status_code == 401


def test_sign_in_without_the_forms_csrf_token_is_refused(client: TestClient) -> None:
    response = client.post(
        "/login", data={"name": "alice", "secret": ALICE_SECRET, "csrf": "x" * 32}
    )
    assert response.status_code == 403
    assert "gk_session" not in client.cookies


def test_sign_in_is_rate_limited_after_n_attempts(console: Console, client: TestClient) -> None:
    limit = console.settings.login_attempts
    for _ in range(limit):
        assert sign_in(client, "alice", "wrong").status_code == 401
    blocked = sign_in(client)  # even the right secret: the limit comes first
    assert blocked.status_code == 429
    assert int(blocked.headers["retry-after"]) > 0
    assert "gk_session" not in client.cookies
    assert sign_in(client, "bob", "wrong").status_code == 401  # counted per approver


def _from(console: Console, address: str) -> TestClient:
    """A browser connecting from ``address``."""
    return TestClient(console.app, client=(address, 50000))


def test_the_per_address_limit_trips_across_different_names() -> None:
    """Trying a secret on many names from one address is limited too, not only one name."""
    console = Console(MemoryStore(), login_attempts_per_address=4)
    with _from(console, "203.0.113.5") as sprayer, _from(console, "198.51.100.7") as other:
        for name in ("alice", "bob", "carol", "mallory"):
            assert sign_in(sprayer, name, "wrong").status_code == 401
        blocked = sign_in(sprayer)  # a fifth name, even with the right secret
        assert blocked.status_code == 429
        assert "gk_session" not in sprayer.cookies
        assert sign_in(other).status_code == 303  # another address has its own count


def test_x_forwarded_for_is_ignored_unless_the_proxy_is_trusted() -> None:
    """A client can't dodge the limit by writing X-Forwarded-For itself."""
    console = Console(MemoryStore(), login_attempts_per_address=3)
    with _from(console, "203.0.113.5") as client:
        codes = [
            sign_in_via(client, name, f"192.0.2.{i}") for i, name in enumerate("abcd", start=1)
        ]
    assert codes == [401, 401, 401, 429]


def test_a_trusted_proxys_x_forwarded_for_names_the_client_but_not_what_the_client_wrote() -> None:
    console = Console(MemoryStore(), login_attempts_per_address=3, trusted_proxies=("10.0.0.0/8",))
    with _from(console, "10.0.0.2") as proxy:
        # Each client behind the proxy has its own count...
        for i in range(1, 6):
            assert sign_in_via(proxy, "alice", f"192.0.2.{i}", "wrong") == 401
        # ...and what a client wrote before the proxy appended its address changes nothing.
        spoofed = [
            sign_in_via(proxy, name, f"198.51.100.{i}, 203.0.113.5, 10.0.0.3")
            for i, name in enumerate("abcd", start=1)
        ]
    assert spoofed == [401, 401, 401, 429]


def test_gatekeeper_serve_takes_no_x_forwarded_for_from_local_connections(
    tmp_path: Any, redis_server: Any, redis_prefix: str
) -> None:
    """uvicorn would believe X-Forwarded-For from 127.0.0.1; the console serve runs must not."""
    import subprocess
    import sys
    import time

    from tests.e2e.conftest import free_port

    port = free_port()
    config = tmp_path / "gatekeeper.yaml"
    config.write_text(
        f"version: 1\nstore: {{url: '{redis_server.url}', prefix: {redis_prefix}}}\n"
        "approvers:\n  - {name: alice}\n"
        f"web:\n  secret_key: '{'s' * 40}'\n  login_attempts_per_address: 2\n"
    )
    cli = "from gatekeeper.cli import main; raise SystemExit(main())"
    server = subprocess.Popen(
        [sys.executable, "-c", cli, "--config", str(config), "serve", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as http:
            deadline = time.monotonic() + 30
            while True:  # uvicorn in another process says nothing we could wait on
                try:
                    http.get("/login")
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline, "gatekeeper serve did not start"
                    time.sleep(0.05)
            codes = []
            for i in range(1, 4):
                http.cookies.set("gk_csrf", "c" * 32)
                codes.append(
                    http.post(
                        "/login",
                        data={"name": f"n{i}", "secret": "x", "csrf": "c" * 32},
                        headers={"X-Forwarded-For": f"192.0.2.{i}"},
                    ).status_code
                )
    finally:
        server.terminate()
        server.wait(20)
    assert codes == [401, 401, 429]


def sign_in_via(client: TestClient, name: str, forwarded: str, secret: str = "x") -> int:
    client.cookies.set("gk_csrf", "c" * 32)
    response = client.post(
        "/login",
        data={"name": name, "secret": secret, "csrf": "c" * 32, "next": "/"},
        headers={"X-Forwarded-For": forwarded},
        follow_redirects=False,
    )
    return int(response.status_code)


def test_client_addresses_count_ipv6_per_64_and_mapped_ipv4_as_ipv4() -> None:
    from gatekeeper.web import WebSettings
    from gatekeeper.web._throttle import client_address

    plain = WebSettings(secret_key="k" * 40)
    assert client_address(plain, "2001:db8:1:2:3:4:5:6") == "2001:db8:1:2::/64"
    assert client_address(plain, "::ffff:192.0.2.1") == "192.0.2.1"
    assert client_address(plain, "192.0.2.1", "198.51.100.1") == "192.0.2.1"
    proxied = WebSettings(secret_key="k" * 40, trusted_proxies=("127.0.0.1",))
    assert client_address(proxied, "127.0.0.1", "garbage, 198.51.100.1") == "198.51.100.1"
    assert client_address(proxied, "127.0.0.1", "198.51.100.1, garbage") == "127.0.0.1"
    assert client_address(proxied, "127.0.0.1", "") == "127.0.0.1"
    with pytest.raises(ValueError, match="not an IP address or network"):
        WebSettings(secret_key="k" * 40, trusted_proxies=("proxy.internal",))


def test_unknown_names_and_wrong_secrets_do_the_same_hashing(
    console: Console, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Known name, wrong secret; known name without a secret; unknown name: one scrypt run each,
    with the same cost parameters, so timing can't tell which names exist. Over the limit: none."""
    from gatekeeper.web import _auth

    calls: list[tuple[int, int, int, int]] = []
    real = _auth._kdf

    def counted(secret: str, salt: bytes, n: int, r: int, p: int, dklen: int) -> bytes:
        calls.append((n, r, p, dklen))
        return real(secret, salt, n, r, p, dklen)

    monkeypatch.setattr(_auth, "_kdf", counted)
    runs = []
    for name in ("alice", "bob", "mallory"):
        calls.clear()
        assert sign_in(client, name, "wrong").status_code == 401
        runs.append(list(calls))
    assert runs[0] == runs[1] == runs[2] == [(2**14, 8, 1, 32)]
    for _ in range(console.settings.login_attempts):
        sign_in(client, "mallory", "wrong")
    calls.clear()
    assert sign_in(client, "mallory", "wrong").status_code == 429
    assert calls == []


def test_a_one_time_link_signs_in_once(console: Console, client: TestClient) -> None:
    link = make_login_link(console.settings, "bob")
    path = link.removeprefix(console.settings.base_url)
    first = client.get(path, follow_redirects=False)
    assert first.status_code == 303
    assert client.get("/api/v1/me").json()["approver"] == "bob"
    client.cookies.clear()
    second = client.get(path, follow_redirects=False)
    assert second.status_code == 403
    assert "gk_session" not in client.cookies


def test_expired_and_forged_links_are_refused(console: Console, client: TestClient) -> None:
    key = console.settings.secret_key
    expired = sign({"p": "link", "a": "bob", "n": "n1"}, key, -10)
    forged = sign({"p": "link", "a": "bob", "n": "n2"}, "z" * 40, 600)
    session_as_link = sign({"p": "session", "a": "bob", "c": "x"}, key, 600)
    for token in (expired, forged, session_as_link, "garbage"):
        assert client.get(f"/login/link?t={token}", follow_redirects=False).status_code == 403
    assert "gk_session" not in client.cookies


def test_a_tampered_session_cookie_is_rejected(console: Console, client: TestClient) -> None:
    assert sign_in(client).status_code == 303
    value = client.cookies["gk_session"]
    body, mac = value.split(".")
    forged_body = sign({"p": "session", "a": "bob", "c": "x"}, "z" * 40, 600).split(".")[0]
    for tampered in (f"{forged_body}.{mac}", f"{body}.{mac[:-2]}AA", body, "x.y"):
        client.cookies.clear()
        client.cookies.set("gk_session", tampered)
        assert client.get("/api/v1/me").status_code == 401
    link_token = sign({"p": "link", "a": "alice", "n": "n"}, console.settings.secret_key, 600)
    client.cookies.clear()
    client.cookies.set("gk_session", link_token)
    assert client.get("/api/v1/me").status_code == 401


def test_sign_out_needs_the_csrf_token(client: TestClient) -> None:
    sign_in(client)
    assert client.post("/logout", data={}, follow_redirects=False).status_code == 403
    out = client.post("/logout", data={"csrf": csrf_of(client)}, follow_redirects=False)
    assert out.status_code == 303
    assert client.get("/api/v1/me").status_code == 401


def test_a_cookie_copied_before_sign_out_no_longer_works_after_it(
    console: Console, client: TestClient
) -> None:
    """Sign-out ends the session in the store, not just in the browser that signed out."""
    assert sign_in(client).status_code == 303
    copied, csrf = client.cookies["gk_session"], csrf_of(client)
    agent = console.call("note", text="hi")
    assert client.post("/logout", data={"csrf": csrf}, follow_redirects=False).status_code == 303
    with TestClient(console.app) as thief:
        thief.cookies.set("gk_session", copied)
        assert thief.get("/api/v1/me").status_code == 401
        page = thief.get("/", follow_redirects=False)
        assert page.status_code == 303
        assert page.headers["location"].startswith("/login")
        forged = thief.post(
            f"/api/v1/requests/{agent.request.id}/approve",
            json={},
            headers={"X-CSRF-Token": csrf},
        )
        assert forged.status_code == 401
    assert console.gate.get(agent.request.id).decisions == ()
    assert sign_in(client).status_code == 303  # signing in again makes a new, working session
    assert client.get("/api/v1/me").json()["approver"] == "alice"
    console.gate.halt(everything=True, by="test-teardown")
    with pytest.raises(AgentHalted):
        agent.outcome()


def test_sign_out_reaches_every_console_process_on_the_store(
    redis_server: Any, redis_prefix: str
) -> None:
    """Two consoles on one Redis: signing out through one ends the session in the other."""
    first, second = (Console(RedisStore(redis_server.url, prefix=redis_prefix)) for _ in "12")
    try:
        with TestClient(first.app) as one, TestClient(second.app) as two:
            assert sign_in(one).status_code == 303
            copied = one.cookies["gk_session"]
            two.cookies.set("gk_session", copied)
            assert two.get("/api/v1/me").json()["approver"] == "alice"
            one.post("/logout", data={"csrf": csrf_of(one)})
            assert two.get("/api/v1/me").status_code == 401
    finally:
        first.gate.close()
        second.gate.close()


def test_a_session_cookie_without_a_session_id_is_refused(
    console: Console, client: TestClient
) -> None:
    """Cookies signed before sessions had ids can't be signed out of, so they don't count."""
    old = sign({"p": "session", "a": "alice", "c": "x" * 32}, console.settings.secret_key, 600)
    client.cookies.set("gk_session", old)
    assert client.get("/api/v1/me").status_code == 401


def test_pages_redirect_to_login_when_signed_out(client: TestClient) -> None:
    response = client.get("/", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login?next=")


def test_login_next_is_same_site_only() -> None:
    from gatekeeper.web._session_routes import _safe_next

    assert _safe_next("/requests/1") == "/requests/1"
    for bad in ("//evil.example", "https://evil.example/", "/\\evil.example", "", None, "x"):
        assert _safe_next(bad) == "/"


# -- live updates ---------------------------------------------------------------------------------
async def _next_event(
    lines: Any, want: Any, timeout: float = 10.0, *, stop_at_ping: bool = False
) -> dict[str, Any]:
    """The next ``event: request`` whose data satisfies ``want``; comments are collected."""

    async def read() -> dict[str, Any]:
        event: dict[str, Any] = {}
        async for line in lines:
            if line.startswith(":"):
                _COMMENTS.append(line)
                if stop_at_ping and line == ": ping":
                    return {}
            elif line.startswith("event: "):
                event["event"] = line.removeprefix("event: ")
            elif line.startswith("data: "):
                event["data"] = json.loads(line.removeprefix("data: "))
            elif line == "" and event:
                if event.get("event") == "request" and want(event["data"]):
                    return event["data"]  # type: ignore[no-any-return]
                event = {}
        raise AssertionError("the stream ended")

    return await asyncio.wait_for(read(), timeout)


_COMMENTS: list[str] = []


async def _until(condition: Any, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():  # the hub's client count has no event to wait on
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


@pytest.mark.redis
async def test_sse_clients_hear_of_new_and_decided_requests(
    redis_server: Any, redis_prefix: str
) -> None:
    """Two browsers share one store subscription; both see the arrival and the decision."""
    console = Console(RedisStore(redis_server.url, prefix=redis_prefix))
    other_process = Console(RedisStore(redis_server.url, prefix=redis_prefix))
    hub = console.app.state.events
    hub.ping_interval = 0.2
    server = LiveServer(console.app)
    _COMMENTS.clear()
    try:
        async with (
            httpx.AsyncClient(base_url=server.url, headers=READER, timeout=10) as http,
            http.stream("GET", "/api/v1/events") as first,
            http.stream("GET", "/api/v1/events") as second,
        ):
            assert first.status_code == 200
            assert first.headers["content-type"].startswith("text/event-stream")
            lines1, lines2 = first.aiter_lines(), second.aiter_lines()
            for lines in (lines1, lines2):  # the feed is live once "resync" arrives
                await _next_event(lines, lambda d: d["status"] == "resync")
            assert hub.clients == 2
            assert hub.subscriptions == 1

            # a request made through another gate on the same Redis (another process)
            agent = await asyncio.to_thread(other_process.call, "note", text="hello")
            rid = agent.request.id
            for lines in (lines1, lines2):
                seen = await _next_event(lines, lambda d: d["id"] == rid)
                assert seen == {"id": rid, "status": "pending"}

            decided = await http.post(f"/api/v1/requests/{rid}/approve", headers=BOB)
            assert decided.status_code == 200
            for lines in (lines1, lines2):
                seen = await _next_event(
                    lines, lambda d: d["id"] == rid and d["status"] != "pending"
                )
                assert seen["status"] in ("approved", "executing", "executed")
            assert await asyncio.to_thread(agent.outcome) == "noted"
            _COMMENTS.clear()
            await _next_event(lines1, lambda d: False, timeout=10.0, stop_at_ping=True)
            assert ": ping" in _COMMENTS
        await _until(lambda: hub.clients == 0)
    finally:
        server.stop()
        console.gate.close()
        other_process.gate.close()


@pytest.mark.redis
async def test_a_client_joining_a_live_feed_gets_its_own_resync(
    redis_server: Any, redis_prefix: str
) -> None:
    """Whatever changed before a browser connected, it is told to read once."""
    console = Console(RedisStore(redis_server.url, prefix=redis_prefix))
    server = LiveServer(console.app)
    try:
        async with (
            httpx.AsyncClient(base_url=server.url, headers=READER, timeout=10) as http,
            http.stream("GET", "/api/v1/events") as first,
        ):
            await _next_event(first.aiter_lines(), lambda d: d["status"] == "resync")
            async with http.stream("GET", "/api/v1/events") as late:
                seen = await _next_event(late.aiter_lines(), lambda d: True)
                assert seen == {"id": "", "status": "resync"}
            assert console.app.state.events.subscriptions == 1
    finally:
        server.stop()
        console.gate.close()


async def test_sse_needs_a_viewer_and_a_slow_client_is_dropped() -> None:
    console = Console(MemoryStore())
    hub = console.app.state.events
    transport = httpx.ASGITransport(app=console.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        assert (await http.get("/api/v1/events")).status_code == 401
        assert (await http.get("/api/v1/events", headers=bearer("nope"))).status_code == 401
    hub.queue_size = 2
    slow, fast = hub.connect(), hub.connect()
    for i in range(3):
        hub.publish(f"m{i}")
        fast.get_nowait()
    assert hub.clients == 1  # the slow one is gone; the fast one still hears everything
    assert [slow.get_nowait()] == [None]
    await hub.stop()


# -- config and CLI -------------------------------------------------------------------------------
def test_the_config_web_section_is_validated_and_interpolated(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from gatekeeper import ConfigError
    from gatekeeper._config import parse_config

    monkeypatch.setenv("GK_TEST_WEB_SECRET", "s" * 40)
    config = parse_config(
        "version: 1\nweb:\n  secret_key: ${GK_TEST_WEB_SECRET}\n  session_ttl: 1h\n"
        "  base_url: https://gk.example/\n"
    )
    assert config.web is not None
    assert config.web.secret_key == "s" * 40
    assert config.web.session_ttl == 3600
    assert config.web.cookies_secure is True
    assert config.web.base_url == "https://gk.example"
    with pytest.raises(ConfigError, match=r"web\.secret_key"):
        parse_config("version: 1\nweb:\n  secret_key: short\n")
    with pytest.raises(ConfigError, match="decide"):
        parse_config(
            "version: 1\nweb:\n  secret_key: " + "s" * 40 + "\n  api_tokens:\n"
            "    - {name: bot, token_sha256: '" + "a" * 64 + "', scopes: [decide]}\n"
        )


def test_cli_hash_secret_and_login_link(tmp_path: Any, console: Console) -> None:
    import io

    from gatekeeper.cli import main
    from gatekeeper.web._auth import verify_secret

    out, err = io.StringIO(), io.StringIO()
    assert main(["web", "hash-secret"], stdin=io.StringIO("s3cret-value\n"), stdout=out) == 0
    assert verify_secret("s3cret-value", out.getvalue().strip())
    assert not verify_secret("other", out.getvalue().strip())
    cfg = tmp_path / "gatekeeper.yaml"
    cfg.write_text(
        "version: 1\napprovers:\n  - {name: bob}\nweb:\n  secret_key: "
        + console.settings.secret_key
        + "\n"
    )
    out = io.StringIO()
    code = main(["-c", str(cfg), "web", "login-link", "--as", "bob", "--ttl", "5m"], stdout=out)
    assert code == 0
    link = out.getvalue().strip()
    assert link.startswith("http://127.0.0.1:8000/login/link?t=")
    with TestClient(console.app) as client:
        path = link.removeprefix("http://127.0.0.1:8000")
        assert client.get(path, follow_redirects=False).status_code == 303
        assert client.get("/api/v1/me").json()["approver"] == "bob"
    refused = main(["-c", str(cfg), "web", "login-link", "--as", "mallory"], stdout=out, stderr=err)
    assert refused == 1
    assert "not a configured approver" in err.getvalue()
