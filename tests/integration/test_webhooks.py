"""WebhookChannel over real HTTP, and signed decisions through the console's /webhooks/decision."""

from __future__ import annotations

import datetime as dt
import email.utils
import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gatekeeper import (
    ApprovalDenied,
    ApprovalRequest,
    ChannelError,
    ConfigError,
    Gatekeeper,
    MemoryStore,
    Policy,
    RequestStatus,
)
from gatekeeper import _pipeline as pipe
from gatekeeper._canonical import digest
from gatekeeper._config import load_config
from gatekeeper.channels import WebhookChannel
from gatekeeper.models import ToolCall
from gatekeeper.store import Store
from gatekeeper.testing import RecordingChannel
from gatekeeper.web import create_app
from gatekeeper.web._webhooks import REPLAY_TTL
from tests.gatekit import audit_events
from tests.hookkit import Receiver, verifies
from tests.webkit import POLICY, Agent, Console, TestClient

# Delivery secrets (the agents hold them) and decision secrets (the console and receiver only).
DELIVERY = "whdel-" + "d" * 26
OTHER_DELIVERY = "whdel-" + "e" * 26
SECRET = "whsec-" + "x" * 26
OTHER_SECRET = "whsec-" + "y" * 26


# -- a receiver on a real port (tests/hookkit.py) -------------------------------------------
@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.stop()


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"


def a_request() -> ApprovalRequest:
    now = dt.datetime.now(dt.timezone.utc)
    args: dict[str, Any] = {"order_id": "A-1", "amount": 20.0}
    call = ToolCall(
        id="call-1",
        tool="refund",
        args=args,
        args_digest=digest(args),
        agent="billing-bot",
        session_id="s-1",
        created_at=now,
    )
    return pipe.new_request("req-1", call, Policy.from_yaml(POLICY).classify(call), now, 900)


class Sleeps(list[float]):
    """Records the waits asked for instead of waiting (sync and async faces)."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)

    async def asleep(self, seconds: float) -> None:
        self.append(seconds)


def channel(url: str, sleeps: Sleeps, **kw: Any) -> WebhookChannel:
    return WebhookChannel(url, secret=SECRET, sleep=sleeps, asleep=sleeps.asleep, **kw)


# -- delivery ---------------------------------------------------------------------------------
def test_a_held_call_is_posted_signed_and_its_outcome_too(receiver: Receiver) -> None:
    hook = WebhookChannel(
        receiver.url,
        secret=SECRET,
        name="ops",
        console_url="https://gk.test/",
        accept_decisions=True,
        approvers=("alice",),
    )
    recorder = RecordingChannel()
    gate = Gatekeeper(policy=Policy.from_yaml(POLICY), channels=[recorder, hook])

    @gate.guard
    def refund(order_id: str, amount: float) -> str:
        return "refunded"

    agent = Agent(gate, refund, "billing-bot", {"order_id": "A-1", "amount": 20.0})
    req = recorder.wait_for_request()
    headers, body = receiver.wait_for(1)[0]
    assert verifies(SECRET, headers, body)
    assert not verifies(OTHER_SECRET, headers, body)
    assert abs(int(headers["x-gatekeeper-timestamp"]) - time.time()) < 60
    assert headers["content-type"] == "application/json"
    assert headers["x-gatekeeper-event"] == "approval.requested"
    doc = json.loads(body)
    assert doc["type"] == "approval.requested"
    assert doc["channel"] == "ops"
    assert doc["request"]["id"] == req.id
    assert doc["request"]["args"] == {"order_id": "A-1", "amount": 20.0}
    assert doc["request"]["args_digest"] == req.args_digest
    assert doc["decide_url"] == "https://gk.test/webhooks/decision"
    assert doc["console_url"] == f"https://gk.test/requests/{req.id}"
    assert ApprovalRequest.model_validate(doc["request"]) == req

    gate.deny(req.id, approver="alice", comment="no")
    with pytest.raises(ApprovalDenied):
        agent.outcome()
    headers, body = receiver.wait_for(2)[1]
    assert verifies(SECRET, headers, body)
    doc = json.loads(body)
    assert doc["type"] == "approval.updated"
    assert doc["status"] == "denied"
    assert doc["request"]["decided_by"] == "alice"
    hook.close()


def test_without_a_console_url_there_are_no_links(receiver: Receiver) -> None:
    hook = channel(receiver.url, Sleeps())
    hook.notify(a_request())
    doc = receiver.docs()[0]
    assert doc["decide_url"] is None
    assert doc["console_url"] is None
    hook.close()


def test_by_default_a_webhook_only_notifies(receiver: Receiver) -> None:
    hook = WebhookChannel(receiver.url, secret=SECRET, console_url="https://gk.test")
    assert hook.accept_decisions is False
    assert hook.approvers == ()
    assert hook.decide_url is None
    hook.notify(a_request())
    doc = receiver.docs()[0]
    assert doc["decide_url"] is None
    assert doc["console_url"] == "https://gk.test/requests/req-1"
    hook.close()


def test_5xx_is_retried_until_delivered(receiver: Receiver) -> None:
    receiver.script = [(503, {}), (502, {})]
    sleeps = Sleeps()
    hook = channel(receiver.url, sleeps)
    hook.notify(a_request())
    received = receiver.wait_for(3)
    assert len(received) == 3
    assert len(sleeps) == 2
    assert all(0 < s <= 30 for s in sleeps)
    assert len({h["x-gatekeeper-delivery"] for h, _ in received}) == 1  # one delivery, retried
    assert all(verifies(SECRET, h, b) for h, b in received)
    hook.close()


def test_429_honours_retry_after_seconds(receiver: Receiver) -> None:
    receiver.script = [(429, {"Retry-After": "2"})]
    sleeps = Sleeps()
    channel(receiver.url, sleeps).notify(a_request())
    assert sleeps == [2.0]
    assert len(receiver.received) == 2


def test_429_honours_retry_after_as_an_http_date(receiver: Receiver) -> None:
    when = email.utils.formatdate(time.time() + 10, usegmt=True)
    receiver.script = [(429, {"Retry-After": when})]
    sleeps = Sleeps()
    channel(receiver.url, sleeps).notify(a_request())
    assert len(sleeps) == 1
    assert 7 <= sleeps[0] <= 10


def test_retry_after_is_capped_at_max_wait(receiver: Receiver) -> None:
    receiver.script = [(503, {"Retry-After": "3600"})]
    sleeps = Sleeps()
    channel(receiver.url, sleeps, max_wait=4).notify(a_request())
    assert sleeps == [4.0]


def test_it_stops_when_waiting_more_would_pass_max_wait(receiver: Receiver) -> None:
    receiver.script = [(503, {"Retry-After": "10"})] * 10
    sleeps = Sleeps()
    hook = channel(receiver.url, sleeps, attempts=10, max_wait=25)
    with pytest.raises(ChannelError, match=r"after 3 attempt\(s\): HTTP 503") as caught:
        hook.notify(a_request())
    assert sleeps == [10.0, 10.0]
    assert len(receiver.received) == 3
    assert caught.value.status == 503


def test_4xx_is_not_retried(receiver: Receiver) -> None:
    receiver.script = [(400, {})]
    sleeps = Sleeps()
    with pytest.raises(ChannelError, match="HTTP 400; not retried") as caught:
        channel(receiver.url, sleeps, name="ops").notify(a_request())
    assert caught.value.channel == "ops"
    assert caught.value.status == 400
    assert len(receiver.received) == 1
    assert sleeps == []


def test_a_receiver_that_is_down_is_given_up_on_after_attempts() -> None:
    sleeps = Sleeps()
    hook = channel(closed_port_url(), sleeps, attempts=3)
    with pytest.raises(ChannelError, match=r"after 3 attempt\(s\)") as caught:
        hook.notify(a_request())
    assert isinstance(caught.value.__cause__, httpx.ConnectError)
    assert len(sleeps) == 2
    hook.close()


def test_through_a_gate_a_failing_webhook_leaves_the_request_pending_and_audited() -> None:
    hook = channel(closed_port_url(), Sleeps(), attempts=2)
    recorder = RecordingChannel()
    gate = Gatekeeper(policy=Policy.from_yaml(POLICY), channels=[hook, recorder])

    @gate.guard
    def refund(order_id: str, amount: float) -> str:
        return "refunded"

    agent = Agent(gate, refund, "billing-bot", {"order_id": "A-1", "amount": 20.0})
    req = recorder.wait_for_request()  # told after the webhook failed: it was not fatal
    assert gate.get(req.id).status is RequestStatus.PENDING
    failed = [e for e in audit_events(gate) if e.kind == "channel.failed"]
    assert len(failed) == 1
    assert failed[0].request_id == req.id
    assert failed[0].data["channel"] == "WebhookChannel"
    assert "after 2 attempt(s)" in failed[0].data["error"]
    gate.deny(req.id, approver="alice", comment="tidy up")
    with pytest.raises(ApprovalDenied):
        agent.outcome()


def test_the_channel_refuses_bad_settings() -> None:
    with pytest.raises(ValueError, match="http"):
        WebhookChannel("ftp://example.com", secret=SECRET)
    with pytest.raises(ValueError, match="16 characters"):
        WebhookChannel("https://example.com", secret="short")
    with pytest.raises(ValueError, match="attempts"):
        WebhookChannel("https://example.com", secret=SECRET, attempts=0)
    assert SECRET not in repr(WebhookChannel("https://example.com", secret=SECRET))
    with pytest.raises(ValueError, match="approvers"):  # who would it decide for?
        WebhookChannel("https://example.com", secret=SECRET, accept_decisions=True)
    with pytest.raises(ValueError, match="approvers"):
        WebhookChannel(
            "https://example.com", secret=SECRET, accept_decisions=True, approvers="alice"
        )
    with pytest.raises(ValueError, match="approvers"):
        WebhookChannel("https://example.com", secret=SECRET, accept_decisions=True, approvers=("",))
    hook = WebhookChannel(
        "https://example.com", secret=SECRET, accept_decisions=True, approvers=["alice"]
    )
    assert hook.approvers == ("alice",)
    assert hook.speaks_for("alice")
    assert not hook.speaks_for("bob")
    assert hook.decision_secret is None  # an agent's copy: it advertises, never verifies


def test_the_decision_secret_is_its_own() -> None:
    """Whoever holds the decision secret can decide, so it is never the delivery secret."""
    url = "https://example.com"
    with pytest.raises(ValueError, match="differ"):
        WebhookChannel(url, secret=SECRET, decision_secret=SECRET, approvers=["alice"])
    with pytest.raises(ValueError, match="16 characters"):
        WebhookChannel(url, secret=SECRET, decision_secret="short", approvers=["alice"])
    hook = WebhookChannel(url, secret=DELIVERY, decision_secret=SECRET, name="ops")
    assert (hook.secret, hook.decision_secret) == (DELIVERY, SECRET)
    assert SECRET not in repr(hook)


def test_the_console_refuses_a_deciding_webhook_without_its_decision_secret(
    console: Console,
) -> None:
    """Rather than fall back to the delivery secret (the agents'), the console won't start."""
    agents_copy = WebhookChannel(
        "https://teams.example.com/hook",
        secret=DELIVERY,
        name="teams",
        accept_decisions=True,
        approvers=("alice",),
    )
    with pytest.raises(ValueError, match="'teams' accepts decisions but has no decision_secret"):
        create_app(console.gate, console.settings, webhooks=[agents_copy])
    gate = Gatekeeper(
        policy=Policy.from_yaml(POLICY), store=console.gate.store, channels=[agents_copy]
    )
    with pytest.raises(ValueError, match="decision_secret"):
        create_app(gate, console.settings)  # the gate's own channels: the same rule


async def test_the_async_face_delivers_with_the_same_policy(receiver: Receiver) -> None:
    receiver.script = [(503, {}), (429, {"Retry-After": "1"})]
    sleeps = Sleeps()
    hook = channel(receiver.url, sleeps)
    req = a_request()
    await hook.anotify(req)
    assert len(receiver.received) == 3
    assert len(sleeps) == 2
    assert sleeps[1] == 1.0
    await hook.aupdate(req.model_copy(update={"status": RequestStatus.CANCELLED}))
    docs = receiver.docs()
    assert [d["type"] for d in docs] == ["approval.requested"] * 3 + ["approval.updated"]
    assert docs[-1]["status"] == "cancelled"
    assert all(verifies(SECRET, h, b) for h, b in receiver.received)


async def test_the_async_face_uses_a_given_client_and_gives_up_too(receiver: Receiver) -> None:
    receiver.script = [(404, {})]
    sleeps = Sleeps()
    async with httpx.AsyncClient() as client:
        hook = channel(receiver.url, sleeps, async_client=client)
        with pytest.raises(ChannelError, match="HTTP 404"):
            await hook.anotify(a_request())
        down = channel(closed_port_url(), sleeps, attempts=2, async_client=client)
        with pytest.raises(ChannelError, match=r"after 2 attempt\(s\)"):
            await down.anotify(a_request())
    assert len(sleeps) == 1


async def test_an_async_guarded_call_notifies_through_the_async_face(receiver: Receiver) -> None:
    sleeps = Sleeps()
    hook = channel(receiver.url, sleeps)
    gate = Gatekeeper(policy=Policy.from_yaml(POLICY), channels=[hook])

    @gate.guard
    async def note(text: str) -> str:
        return "noted"

    import asyncio

    task = asyncio.create_task(note(text="hi"))
    for _ in range(200):
        if receiver.received:
            break
        await asyncio.sleep(0.01)
    doc = receiver.docs()[0]
    gate.approve(
        doc["request"]["id"], approver="carol", expect_digest=doc["request"]["args_digest"]
    )
    assert await task == "noted"


# -- signed decisions through the console ----------------------------------------------------------
class Decider:
    """Posts decisions to the console's /webhooks/decision, signed as the docs say."""

    def __init__(self, console: Console, client: TestClient) -> None:
        self.console, self.client = console, client

    def now(self) -> int:
        return int(self.console.gate.clock.now().timestamp())

    def post(
        self,
        doc: dict[str, Any] | None = None,
        *,
        raw: bytes | None = None,
        secret: str = SECRET,
        ts: int | None = None,
        headers: dict[str, Any] | None = None,
    ) -> httpx.Response:
        body = raw if raw is not None else json.dumps(doc).encode()
        stamp = str(self.now() if ts is None else ts)
        mac = hmac.new(secret.encode(), f"v1:{stamp}:".encode() + body, hashlib.sha256)
        sent = {
            "Content-Type": "application/json",
            "X-Gatekeeper-Timestamp": stamp,
            "X-Gatekeeper-Signature": "v1=" + mac.hexdigest(),
        }
        if headers is not None:
            sent = headers
        return self.client.post("/webhooks/decision", content=body, headers=sent)


@pytest.fixture
def console(store: Store) -> Console:
    return Console(store)


@pytest.fixture
def decider(console: Console) -> Iterator[Decider]:
    hooks = [
        WebhookChannel(
            "https://teams.example.com/hook",
            secret=DELIVERY,
            decision_secret=SECRET,
            name="ops",
            accept_decisions=True,
            approvers=("alice", "bob", "carol"),
        ),
        WebhookChannel(
            "https://pd.example.com/hook",
            secret=OTHER_DELIVERY,
            decision_secret=OTHER_SECRET,
            name="pager",
            accept_decisions=True,
            approvers=("bob",),
        ),
        WebhookChannel(
            "https://quiet.example.com/hook", secret="q" * 32, name="quiet", accept_decisions=False
        ),
    ]
    app = create_app(console.gate, console.settings, webhooks=hooks)
    with TestClient(app) as client:
        yield Decider(console, client)


def approve_doc(req: ApprovalRequest, approver: str = "alice", **kw: Any) -> dict[str, Any]:
    doc = {
        "request_id": req.id,
        "approver": approver,
        "decision": "approve",
        "args_digest": req.args_digest[:12],
        "comment": None,
    }
    return {**doc, **kw}


def refused(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == code, error
    assert error["message"]
    return error


def test_a_signed_approval_releases_the_waiting_call(console: Console, decider: Decider) -> None:
    agent = console.call("refund", order_id="A-1", amount=20.0)
    response = decider.post(approve_doc(agent.request, comment="fine"))
    assert response.status_code == 200, response.text
    assert response.json() == {
        "id": agent.request.id,
        "status": "approved",
        "decided_by": "alice",
        "approvals": 1,
    }
    assert agent.outcome() == "refunded 20.0 on A-1"
    assert console.ran == [("refund", {"order_id": "A-1", "amount": 20.0})]
    after = console.gate.get(agent.request.id)
    assert after.decided_by == "alice"
    assert after.decisions[-1].via == "webhook:ops"
    assert after.decisions[-1].comment == "fine"


def test_a_signed_denial_carries_its_comment_and_the_channel(
    console: Console, decider: Decider
) -> None:
    agent = console.call("refund", order_id="A-1", amount=20.0)
    doc = {
        "request_id": agent.request.id,
        "approver": "bob",
        "decision": "deny",
        "comment": "already refunded",
    }
    response = decider.post(doc, secret=OTHER_SECRET)  # the pager channel's secret
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "denied"
    with pytest.raises(ApprovalDenied) as caught:
        agent.outcome()
    assert caught.value.comment == "already refunded"
    assert caught.value.approver == "bob"
    assert console.gate.get(agent.request.id).decisions[-1].via == "webhook:pager"
    assert console.ran == []


def assert_pending(console: Console, agent: Agent) -> None:
    after = console.gate.get(agent.request.id)
    assert after.status is RequestStatus.PENDING
    assert after.decisions == ()
    assert console.ran == []


@pytest.mark.parametrize(
    ("how", "code"),
    [
        ("wrong secret", "bad_signature"),
        ("the delivery secret, which the agents hold", "bad_signature"),
        ("a channel that takes no decisions", "bad_signature"),
        ("no signature", "bad_signature"),
        ("no timestamp", "bad_signature"),
        ("not a v1 signature", "bad_signature"),
        ("body changed after signing", "bad_signature"),
        ("timestamp changed after signing", "bad_signature"),
        ("a timestamp that is not ascii digits", "bad_signature"),
        ("301 s old", "stale"),
        ("301 s ahead", "stale"),
    ],
)
def test_unsigned_forged_or_stale_decisions_are_refused(
    console: Console, decider: Decider, how: str, code: str
) -> None:
    agent = console.call("refund", order_id="A-1", amount=20.0)
    doc = approve_doc(agent.request)
    body = json.dumps(doc).encode()
    now = decider.now()
    good = hmac.new(SECRET.encode(), f"v1:{now}:".encode() + body, hashlib.sha256).hexdigest()
    headers = {"X-Gatekeeper-Timestamp": str(now), "X-Gatekeeper-Signature": "v1=" + good}
    if how == "wrong secret":
        response = decider.post(doc, secret="z" * 32)
    elif how == "the delivery secret, which the agents hold":
        response = decider.post(doc, secret=DELIVERY)
    elif how == "a channel that takes no decisions":
        response = decider.post(doc, secret="q" * 32)
    elif how == "no signature":
        response = decider.post(doc, headers={"X-Gatekeeper-Timestamp": str(now)})
    elif how == "no timestamp":
        response = decider.post(doc, headers={"X-Gatekeeper-Signature": "v1=" + good})
    elif how == "not a v1 signature":
        response = decider.post(doc, headers={**headers, "X-Gatekeeper-Signature": good})
    elif how == "body changed after signing":
        tampered = json.dumps({**doc, "approver": "bob"}).encode()
        response = decider.post(raw=tampered, headers=headers)
    elif how == "timestamp changed after signing":
        response = decider.post(doc, headers={**headers, "X-Gatekeeper-Timestamp": str(now + 1)})
    elif how == "a timestamp that is not ascii digits":
        superscript = "\u00b2".encode("latin-1")  # str.isdigit() says yes; int() says no
        response = decider.post(doc, headers={**headers, "X-Gatekeeper-Timestamp": superscript})
    elif how == "301 s old":
        response = decider.post(doc, ts=now - 301)
    else:
        response = decider.post(doc, ts=now + 301)
    refused(response, 401, code)
    assert_pending(console, agent)
    console.gate.deny(agent.request.id, approver="alice", comment="cleanup")
    with pytest.raises(ApprovalDenied):
        agent.outcome()


def test_a_timestamp_within_the_window_is_accepted(console: Console, decider: Decider) -> None:
    agent = console.call("refund", order_id="A-1", amount=20.0)
    response = decider.post(approve_doc(agent.request), ts=decider.now() - 299)
    assert response.status_code == 200, response.text
    agent.outcome()


def test_a_replayed_signature_is_refused(console: Console, decider: Decider) -> None:
    agent = console.call("wire", to="ACME", amount=5000.0)  # quorum 2: still pending after one
    doc = approve_doc(agent.request)
    body = json.dumps(doc).encode()
    stamp = str(decider.now())
    mac = hmac.new(SECRET.encode(), f"v1:{stamp}:".encode() + body, hashlib.sha256)
    headers = {"X-Gatekeeper-Timestamp": stamp, "X-Gatekeeper-Signature": "v1=" + mac.hexdigest()}
    first = decider.post(raw=body, headers=headers)
    assert first.status_code == 200, first.text
    assert first.json()["status"] == "pending"
    assert first.json()["approvals"] == 1
    refused(decider.post(raw=body, headers=headers), 409, "replayed")
    after = console.gate.get(agent.request.id)
    assert after.status is RequestStatus.PENDING
    assert len(after.decisions) == 1
    second = decider.post(approve_doc(agent.request, "bob"), secret=OTHER_SECRET)
    assert second.json()["status"] == "approved"
    assert agent.outcome() == "sent"


def test_the_replay_window_outlasts_the_signature_window_with_margin() -> None:
    from gatekeeper.channels.webhook import TOLERANCE

    assert REPLAY_TTL == 660
    assert REPLAY_TTL > 2 * TOLERANCE


@pytest.mark.parametrize("decision", ["approve", "deny"])
def test_a_webhook_may_not_decide_as_an_approver_it_does_not_speak_for(
    console: Console, decider: Decider, decision: str
) -> None:
    """The pager's secret speaks for bob only: naming alice (configured, of the group) fails."""
    agent = console.call("refund", order_id="A-1", amount=20.0)
    if decision == "approve":
        doc = approve_doc(agent.request, "alice")
    else:
        doc = {
            "request_id": agent.request.id,
            "approver": "alice",
            "decision": "deny",
            "comment": "no",
        }
    error = refused(decider.post(doc, secret=OTHER_SECRET), 403, "not_authorized")
    assert "pager" in error["message"]
    assert_pending(console, agent)
    assert not [
        e for e in audit_events(console.gate) if e.kind in ("request.vote", "request.approved")
    ]
    console.gate.deny(agent.request.id, approver="alice", comment="cleanup")
    with pytest.raises(ApprovalDenied):
        agent.outcome()


def test_one_webhook_casts_one_vote_so_it_cannot_meet_a_quorum_alone(
    console: Console, decider: Decider
) -> None:
    """The ops secret speaks for alice and bob, yet it can't approve a quorum-2 wire twice."""
    agent = console.call("wire", to="ACME", amount=5000.0)
    first = decider.post(approve_doc(agent.request, "alice"))
    assert first.status_code == 200, first.text
    assert first.json()["status"] == "pending"
    assert first.json()["approvals"] == 1
    error = refused(decider.post(approve_doc(agent.request, "bob")), 409, "already_voted")
    assert error["status"] == "pending"
    deny = {"request_id": agent.request.id, "approver": "bob", "decision": "deny", "comment": "no"}
    refused(decider.post(deny), 409, "already_voted")  # nor overturn it with a second voice
    after = console.gate.get(agent.request.id)
    assert after.status is RequestStatus.PENDING
    assert [(d.approver, d.via) for d in after.decisions] == [("alice", "webhook:ops")]
    assert console.ran == []
    # A second system (its own secret, its own person) makes up the quorum.
    second = decider.post(approve_doc(agent.request, "bob"), secret=OTHER_SECRET)
    assert second.status_code == 200, second.text
    assert second.json() == {
        "id": agent.request.id,
        "status": "approved",
        "decided_by": "bob",
        "approvals": 2,
    }
    assert agent.outcome() == "sent"


def test_a_concurrent_second_vote_from_one_webhook_is_refused_too(
    console: Console, decider: Decider
) -> None:
    """The vote is claimed in the store before deciding: a racing post finds it taken."""
    agent = console.call("wire", to="ACME", amount=5000.0)
    assert console.gate.store.use_once(f"webhook-vote:ops:{agent.request.id}", 60)  # the racer
    refused(decider.post(approve_doc(agent.request, "bob")), 409, "already_voted")
    assert_pending(console, agent)
    console.gate.deny(agent.request.id, approver="alice", comment="cleanup")
    with pytest.raises(ApprovalDenied):
        agent.outcome()


@pytest.mark.parametrize(
    ("approver", "code"), [("mallory", "not_authorized"), ("carol", "not_authorized")]
)
def test_unknown_approvers_and_approvers_outside_the_group_are_refused(
    console: Console, decider: Decider, approver: str, code: str
) -> None:
    agent = console.call("refund", order_id="A-1", amount=20.0)  # group finance; carol isn't
    refused(decider.post(approve_doc(agent.request, approver)), 403, code)
    deny = {
        "request_id": agent.request.id,
        "approver": approver,
        "decision": "deny",
        "comment": "no",
    }
    refused(decider.post(deny), 403, code)
    assert_pending(console, agent)
    console.gate.deny(agent.request.id, approver="alice", comment="cleanup")
    with pytest.raises(ApprovalDenied):
        agent.outcome()


def test_a_digest_that_is_not_the_requests_is_refused(console: Console, decider: Decider) -> None:
    agent = console.call("refund", order_id="A-1", amount=20.0)
    wrong = digest({"order_id": "A-1", "amount": 20000.0})
    error = refused(
        decider.post(approve_doc(agent.request, args_digest=wrong)), 409, "digest_mismatch"
    )
    assert error["status"] == "pending"
    assert_pending(console, agent)
    console.gate.deny(agent.request.id, approver="alice", comment="cleanup")
    with pytest.raises(ApprovalDenied):
        agent.outcome()


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"request_id": "x"}',
        b'{"request_id": "R", "approver": "alice", "decision": "approve"}',  # no digest
        b'{"request_id": "R", "approver": "alice", "decision": "maybe", "args_digest": "D"}',
        b'{"request_id": "R", "approver": "alice", "decision": "approve", "args_digest": "abc"}',
        b'{"request_id": "R", "approver": "alice", "decision": "deny", "extra": 1}',
        b'{"request_id": "R", "approver": "alice", "decision": "deny"}',  # no reason
        b'{"request_id": "R", "approver": "alice", "decision": "deny", "comment": " "}',
    ],
)
def test_malformed_decisions_are_refused(console: Console, decider: Decider, body: bytes) -> None:
    agent = console.call("refund", order_id="A-1", amount=20.0)
    raw = body.replace(b'"R"', json.dumps(agent.request.id).encode()).replace(
        b'"D"', json.dumps(agent.request.args_digest).encode()
    )
    refused(decider.post(raw=raw), 422, "invalid")
    assert_pending(console, agent)
    console.gate.deny(agent.request.id, approver="alice", comment="cleanup")
    with pytest.raises(ApprovalDenied):
        agent.outcome()


def test_a_decided_request_is_refused_with_its_status(console: Console, decider: Decider) -> None:
    agent = console.call("refund", order_id="A-1", amount=20.0)
    console.gate.deny(agent.request.id, approver="bob", comment="no")
    with pytest.raises(ApprovalDenied):
        agent.outcome()
    error = refused(decider.post(approve_doc(agent.request)), 409, "already_decided")
    assert error["status"] == "denied"
    assert console.gate.get(agent.request.id).decided_by == "bob"


def test_unknown_requests_and_oversized_bodies(decider: Decider) -> None:
    doc = {"request_id": "nope", "approver": "alice", "decision": "deny", "comment": "no"}
    refused(decider.post(doc), 404, "not_found")
    refused(decider.post(raw=b"{" + b" " * 70_000 + b"}"), 413, "too_large")


def test_a_console_without_webhook_channels_takes_no_decisions(console: Console) -> None:
    with TestClient(console.app) as client:
        response = client.post("/webhooks/decision", content=b"{}")
    refused(response, 404, "not_found")


def test_round_trip_from_delivery_to_decision(store: Store, receiver: Receiver) -> None:
    """The console finds the gate's webhook channels; the receiver decides with what it got."""
    hook = WebhookChannel(
        receiver.url,
        secret=DELIVERY,
        decision_secret=SECRET,
        name="teams",
        console_url="http://testserver",
        accept_decisions=True,
        approvers=("carol",),
    )
    gate = Gatekeeper(policy=Policy.from_yaml(POLICY), store=store, channels=[hook])
    console = Console(store)
    app = create_app(gate, console.settings)  # webhooks: the gate's own

    @gate.guard
    def note(text: str) -> str:
        return f"noted {text}"

    agent = Agent(gate, note, "billing-bot", {"text": "hello"})
    headers, body = receiver.wait_for(1)[0]
    assert verifies(DELIVERY, headers, body)
    assert not verifies(SECRET, headers, body)  # the decision secret never leaves the console
    doc = json.loads(body)
    decision = json.dumps(
        {
            "request_id": doc["request"]["id"],
            "approver": "carol",
            "decision": "approve",
            "args_digest": doc["request"]["args_digest"],
        }
    ).encode()
    stamp = str(int(gate.clock.now().timestamp()))
    mac = hmac.new(SECRET.encode(), f"v1:{stamp}:".encode() + decision, hashlib.sha256)
    with TestClient(app) as client:
        assert doc["decide_url"].startswith(str(client.base_url))
        response = client.post(
            doc["decide_url"],
            content=decision,
            headers={
                "X-Gatekeeper-Timestamp": stamp,
                "X-Gatekeeper-Signature": "v1=" + mac.hexdigest(),
            },
        )
    assert response.status_code == 200, response.text
    assert agent.outcome() == "noted hello"
    assert gate.get(doc["request"]["id"]).decisions[-1].via == "webhook:teams"
    receiver.wait_for(2)
    assert receiver.docs()[1]["type"] == "approval.updated"
    hook.close()


# -- configuration ------------------------------------------------------------------------------
CONFIG = """\
version: 1
approvers:
  - {name: alice}
channels:
  - {type: console, approver: alice}
  - type: webhook
    name: ops
    url: https://hooks.example.com/gatekeeper
    secret: ${GK_TEST_WEBHOOK_SECRET}
    console_url: https://gatekeeper.example.com
    attempts: 3
    max_wait: 10s
    accept_decisions: true
    decision_secret_env: GK_TEST_WEBHOOK_DECISION_SECRET
    approvers: [alice]
  - {type: webhook, name: quiet, url: "http://10.0.0.1/x", secret: "%s"}
""" % ("q" * 20)


def test_a_config_file_builds_webhook_channels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GK_TEST_WEBHOOK_SECRET", DELIVERY)
    monkeypatch.delenv("GK_TEST_WEBHOOK_DECISION_SECRET", raising=False)
    path = tmp_path / "gatekeeper.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    config = load_config(path)  # an agent's environment: no decision secret, and none needed
    channels = config.build_channels()
    hooks = [c for c in channels if isinstance(c, WebhookChannel)]
    assert [h.name for h in hooks] == ["ops", "quiet"]
    ops = hooks[0]
    assert ops.url == "https://hooks.example.com/gatekeeper"
    assert ops.secret == DELIVERY
    assert ops.decision_secret is None
    assert ops.attempts == 3
    assert ops.max_wait == 10.0
    assert ops.decide_url == "https://gatekeeper.example.com/webhooks/decision"
    assert ops.accept_decisions is True
    assert ops.approvers == ("alice",)
    assert hooks[1].accept_decisions is False  # the default: notifications only
    assert hooks[1].approvers == ()
    assert hooks[1].decide_url is None
    with pytest.raises(ConfigError, match="GK_TEST_WEBHOOK_DECISION_SECRET is not set") as e:
        config.webhook_channels()  # the console's way: it must have the decision secret
    assert e.value.field == "channels[1].decision_secret_env"
    monkeypatch.setenv("GK_TEST_WEBHOOK_DECISION_SECRET", SECRET)
    assert config.build_channels()[1].decision_secret is None  # agents never read it
    deciding = config.webhook_channels()
    assert [h.name for h in deciding] == ["ops", "quiet"]
    assert (deciding[0].secret, deciding[0].decision_secret) == (DELIVERY, SECRET)
    assert deciding[1].decision_secret is None
    gate = config.build_gate(store=MemoryStore())
    assert any(isinstance(c, WebhookChannel) for c in gate.channels)
    assert DELIVERY not in repr(config)
    assert SECRET not in repr(config.webhook_channels())


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("", "is not set"),
        ("too-short", "at least 16 characters"),
        (DELIVERY, "is the delivery secret"),
    ],
)
def test_the_console_refuses_a_missing_short_or_reused_decision_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str, problem: str
) -> None:
    monkeypatch.setenv("GK_TEST_WEBHOOK_SECRET", DELIVERY)
    monkeypatch.setenv("GK_TEST_WEBHOOK_DECISION_SECRET", value)
    path = tmp_path / "gatekeeper.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    config = load_config(path)
    with pytest.raises(ConfigError, match=problem) as caught:
        config.webhook_channels()
    assert caught.value.field == "channels[1].decision_secret_env"


def test_an_agent_built_from_the_config_cannot_approve_its_own_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, console: Console
) -> None:
    """The review's attack: an agent holds everything it builds its channels with, the
    delivery secret included, and posts an approval "by alice" to the console. Refused:
    decisions verify only with the decision secret, which the agent never had."""
    path = tmp_path / "gatekeeper.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    monkeypatch.setenv("GK_TEST_WEBHOOK_SECRET", DELIVERY)
    monkeypatch.delenv("GK_TEST_WEBHOOK_DECISION_SECRET", raising=False)
    agents_gate = load_config(path).build_gate(store=console.gate.store)  # the agent's env
    agents_hook = next(c for c in agents_gate.channels if isinstance(c, WebhookChannel))
    assert agents_hook.decision_secret is None
    monkeypatch.setenv("GK_TEST_WEBHOOK_DECISION_SECRET", SECRET)  # the console's env
    app = create_app(console.gate, console.settings, webhooks=load_config(path).webhook_channels())
    agent = console.call("refund", order_id="A-1", amount=20.0)
    with TestClient(app) as client:
        decider = Decider(console, client)
        forged = decider.post(approve_doc(agent.request), secret=agents_hook.secret)
        refused(forged, 401, "bad_signature")
        assert_pending(console, agent)
        assert decider.post(approve_doc(agent.request), secret=SECRET).status_code == 200
    assert agent.outcome() == "refunded 20.0 on A-1"


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ("url: https://hooks", "url: hooks", "channels[1].url"),
        ("url: https://hooks", "url: ftp://hooks", "channels[1].url"),
        ("secret: ${GK_TEST_WEBHOOK_SECRET}", "secret: too-short", "channels[1].secret"),
        ("attempts: 3", "attempts: 0", "channels[1].attempts"),
        ("max_wait: 10s", "max_wait: soon", "channels[1].max_wait"),
        ("name: ops", "name: quiet", "channels[2].name"),  # the name is listed twice
        (
            "    decision_secret_env: GK_TEST_WEBHOOK_DECISION_SECRET\n",
            "",
            "channels[1].decision_secret_env",
        ),  # accept_decisions without a decision secret
        (
            "decision_secret_env: GK_TEST_WEBHOOK_DECISION_SECRET",
            "decision_secret_env: ${GK_TEST_WEBHOOK_SECRET}",
            "channels[1].decision_secret_env",
        ),  # the variable's name, never the secret itself
        (
            'secret: "%s"}' % ("q" * 20),
            'secret: "%s", decision_secret_env: GK_X}' % ("q" * 20),
            "channels[2].decision_secret_env",
        ),  # a channel that takes no decisions
        ("approvers: [alice]", "approvers: []", "channels[1].approvers"),
        ("    approvers: [alice]\n", "", "channels[1].approvers"),  # accept_decisions alone
        ("approvers: [alice]", "approvers: [alice, alice]", "channels[1].approvers"),
        ("approvers: [alice]", "approvers: [alice, mallory]", "channels[1].approvers[1]"),
        (
            'secret: "%s"}' % ("q" * 20),
            'secret: "%s", approvers: [bob]}' % ("q" * 20),
            "channels[2].approvers[0]",
        ),  # not a configured approver, even when not deciding
        (
            'secret: "%s"}' % ("q" * 20),
            'secret: "%s", accept_decisions: true}' % ("q" * 20),
            "channels[2].approvers",
        ),
    ],
)
def test_a_bad_webhook_entry_is_a_config_error_naming_the_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, old: str, new: str, field: str
) -> None:
    monkeypatch.setenv("GK_TEST_WEBHOOK_SECRET", DELIVERY)
    path = tmp_path / "gatekeeper.yaml"
    assert old in CONFIG
    path.write_text(CONFIG.replace(old, new), encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.field == field
    assert field in str(caught.value)


def test_a_signed_response_is_what_the_agent_gets_and_nothing_runs(
    console: Console, decider: Decider
) -> None:
    agent = console.call("refund", order_id="A-1", amount=20.0)
    doc = {
        "request_id": agent.request.id,
        "approver": "alice",
        "decision": "respond",
        "response": "Refunded by hand in the billing tool.",
    }
    response = decider.post(doc)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "responded"
    assert agent.outcome() == "Refunded by hand in the billing tool."
    assert console.ran == []
    assert console.gate.get(agent.request.id).decisions[-1].via == "webhook:ops"


@pytest.mark.parametrize(
    "doc",
    [
        {"decision": "respond"},
        {"decision": "respond", "response": "   "},
        {"decision": "respond", "response": "x" * 8001},
        {"decision": "deny", "comment": "no", "response": "sneaked in"},
    ],
)
def test_a_response_needs_words_within_the_limit_and_only_with_respond(
    console: Console, decider: Decider, doc: dict[str, Any]
) -> None:
    agent = console.call("refund", order_id="A-1", amount=20.0)
    refused(
        decider.post({"request_id": agent.request.id, "approver": "alice", **doc}), 422, "invalid"
    )
    assert_pending(console, agent)
    # nothing was spent: the channel's one vote is still there
    ok = decider.post(approve_doc(agent.request))
    assert ok.status_code == 200, ok.text
    agent.outcome()


def test_a_question_is_answered_never_approved_and_a_refusal_costs_no_vote(
    console: Console, decider: Decider
) -> None:
    ask = console.gate.ask_tool()
    box: dict[str, Any] = {}
    seen = len(console.channel.notified)
    thread = threading.Thread(target=lambda: box.update(answer=ask("Which currency?")))
    thread.start()
    req = console.channel.wait_for_request(seen + 1)
    error = refused(decider.post(approve_doc(req)), 409, "conflict")
    assert "is a question" in error["message"]
    doc = {"request_id": req.id, "approver": "alice", "decision": "respond", "response": "EUR"}
    assert decider.post(doc).status_code == 200
    thread.join(10)
    assert box["answer"] == "EUR"
