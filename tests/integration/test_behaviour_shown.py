"""What a sequence or a limit does to a held call, as the approver and the audit log see it.

A real gate (MemoryStore, and RedisStore on the session's redis-server); the
agent is a thread making guarded calls. Shown here:

- a call held by a sequence carries the sequence and the earlier calls that
  matched its steps: lines in the Slack message, links in the console;
- a call held by a limit says so; approved, it runs and is counted past the
  limit (the audit log's ``call.held`` event records the limit it passed);
  denied, it is not counted; a refused call never counts;
- ``gatekeeper limits`` shows the usage per limit and per agent.
"""

from __future__ import annotations

import contextlib
import io
import threading
from collections.abc import Callable
from typing import Any

import pytest

from gatekeeper import ApprovalDenied, Gatekeeper, Policy, ToolCallDenied
from gatekeeper.audit import parse_event
from gatekeeper.channels.slack._blocks import request_message
from gatekeeper.cli import _commands as cmd
from gatekeeper.models import ApprovalRequest, Verdict
from gatekeeper.store import Store
from gatekeeper.testing import RecordingChannel
from gatekeeper.web import WebSettings, create_app
from gatekeeper.web._auth import new_session
from tests.webkit import APPROVERS, SECRET_KEY, TestClient

POLICY = """
version: 1
default: allow
rules:
  - {id: secrets-need-a-person, match: {tool: read_secret}, verdict: require_approval}
  - {id: no-huge-refunds, match: {tool: refund, args: {amount: {gt: 1000}}}, verdict: deny}
sequences:
  - id: secret-then-post
    steps: [{tool: read_secret}, {tool: post}]
    within: 10m
    verdict: require_approval
    reason: a secret read, then something posted outside
limits:
  - {id: refunds-per-day, match: {tool: refund}, rate: 2/day}
"""


class Rig:
    def __init__(self, store: Store) -> None:
        self.channel = RecordingChannel()
        self.gate = Gatekeeper(
            policy=Policy.from_yaml(POLICY),
            store=store,
            approvers=APPROVERS,
            channels=[self.channel],
            default_timeout=30,
        )
        self.ran: list[str] = []
        ran = self.ran

        @self.gate.guard
        def read_secret(name: str) -> str:
            ran.append(f"read_secret {name}")
            return "s3cr3t"

        @self.gate.guard
        def post(url: str) -> str:
            ran.append(f"post {url}")
            return "posted"

        @self.gate.guard
        def refund(order_id: str, amount: float) -> str:
            ran.append(f"refund {order_id}")
            return "refunded"

        self.tools: dict[str, Callable[..., Any]] = {
            "read_secret": read_secret,
            "post": post,
            "refund": refund,
        }

    def held(self, tool: str, **kwargs: Any) -> tuple[threading.Thread, list[Any], ApprovalRequest]:
        """Make a call that waits, in a thread; returns it, its outcome box and its request."""
        seen = len(self.channel.notified)
        box: list[Any] = []

        def run() -> None:
            try:
                box.append(self.tools[tool](**kwargs))
            except Exception as exc:
                box.append(exc)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread, box, self.channel.wait_for_request(seen + 1)


@pytest.fixture
def rig(store: Store) -> Rig:
    return Rig(store)  # the store fixture closes the store


def test_a_call_held_by_a_sequence_shows_the_earlier_calls_in_slack_and_the_console(
    rig: Rig,
) -> None:
    thread, box, first = rig.held("read_secret", name="prod-db")
    rig.gate.approve(first.id, approver="alice")
    thread.join(10)
    assert box == ["s3cr3t"]

    thread, box, second = rig.held("post", url="https://paste.example/new")
    assert second.call.tool == "post"
    (hit,) = second.classification.behaviour
    assert hit.id == "secret-then-post" and hit.verdict is Verdict.REQUIRE_APPROVAL
    assert [(c.tool, c.request_id) for c in hit.calls] == [("read_secret", first.id)]
    assert second.classification.reasons[0].startswith("sequence secret-then-post: read_secret")
    assert "a secret read, then something posted outside" in second.classification.reasons[0]

    message = str(request_message(second, now=rig.gate.clock.now()))
    assert "Sequence secret-then-post: the earlier calls, then this one" in message
    assert f"read_secret at {first.created_at:%H:%M}" in message
    assert f"(request {first.id})" in message

    app = create_app(rig.gate, WebSettings(secret_key=SECRET_KEY))
    settings = WebSettings(secret_key=SECRET_KEY)
    client = TestClient(app)
    value, _ = new_session(settings, "alice")
    client.cookies.set("gk_session", value)
    with client:
        page = client.get(f"/requests/{second.id}").text
    assert 'class="sequence-calls"' in page
    assert f'href="/requests/{first.id}"' in page

    rig.gate.deny(second.id, approver="alice", comment="no")
    thread.join(10)
    assert isinstance(box[0], ApprovalDenied)
    assert rig.ran == ["read_secret prod-db"]


def test_a_limit_holds_the_call_past_it_and_counts_it_only_when_it_runs(rig: Rig) -> None:
    refund = rig.tools["refund"]
    assert refund("A-1", 10) == "refunded"
    with pytest.raises(ToolCallDenied):  # refused by a rule: never counted
        refund("A-2", 5000)
    assert refund("A-3", 10) == "refunded"

    # The third refund of the day passes the limit: a person is asked.
    thread, box, third = rig.held("refund", order_id="A-4", amount=10)
    (hit,) = third.classification.behaviour
    assert (hit.kind, hit.id, hit.used, hit.max) == ("limit", "refunds-per-day", 2.0, 2.0)
    rig.gate.deny(third.id, approver="alice", comment="enough today")
    thread.join(10)
    assert isinstance(box[0], ApprovalDenied)

    # Denied, it was not counted; approved, the next one runs and is counted past the limit.
    thread, box, fourth = rig.held("refund", order_id="A-5", amount=10)
    assert fourth.classification.behaviour[0].used == 2.0
    rig.gate.approve(fourth.id, approver="alice")
    thread.join(10)
    assert box == ["refunded"]
    assert rig.ran == ["refund A-1", "refund A-3", "refund A-5"]

    out = io.StringIO()
    assert (
        cmd.limits(
            rig.gate, as_json=False, io=cmd.IO(out=out, err=io.StringIO(), inp=io.StringIO())
        )
        == 0
    )
    lines = out.getvalue().splitlines()
    assert lines[0].split() == ["LIMIT", "KIND", "AGENT", "PER", "USED", "WINDOW"]
    row = lines[1].split()
    assert row[:5] == ["refunds-per-day", "rate", rig.gate._default_session.agent, "agent", "3/2"]
    assert row[-1] == "FULL"

    rig.gate.store.flush()
    events = [parse_event(e.body, e.hash) for e in rig.gate.store.audit_entries()]
    held = [e for e in events if e.kind == "call.held" and e.request_id == fourth.id]
    assert held[0].data["behaviour"][0]["id"] == "refunds-per-day"
    released = [e for e in events if e.kind == "request.released" and e.request_id == fourth.id]
    assert len(released) == 1


def test_a_budget_of_cents_adds_up_exactly(store: Store) -> None:
    """0.1 + 0.2 is 0.3 in a budget (counted in whole micro-units), on every store."""
    gate = Gatekeeper(
        policy=Policy.from_yaml(
            "version: 1\ndefault: allow\nlimits:\n"
            "  - {id: tips, match: {tool: tip}, sum: amount, max: 0.3, window: 1d, "
            "on_exceed: deny}\n"
        ),
        store=store,
    )

    @gate.guard
    def tip(amount: float) -> str:
        return "tipped"

    assert tip(0.1) == "tipped"
    assert tip(0.2) == "tipped"  # 0.30000000000000004 in floats: not past 0.3 here
    with pytest.raises(ToolCallDenied, match=r"tips: 0\.3 of 0\.3 already used"):
        tip(0.01)


def test_a_call_key_used_again_is_another_call_and_counts_again(store: Store) -> None:
    """The docs' own idiom, ``call_key(f"refund:{order_id}")``, must not dodge a limit."""
    from gatekeeper import call_key

    gate = Gatekeeper(
        policy=Policy.from_yaml(
            "version: 1\ndefault: allow\nlimits:\n"
            "  - {id: refunds, match: {tool: refund}, sum: amount, max: 1000, window: 1d, "
            "on_exceed: deny}\n"
        ),
        store=store,
    )
    ran: list[float] = []

    @gate.guard
    def refund(order_id: str, amount: float) -> str:
        ran.append(amount)
        return "refunded"

    for _ in range(3):
        with call_key("refund:A-1"), contextlib.suppress(ToolCallDenied):
            refund("A-1", 400.0)
    assert ran == [400.0, 400.0]  # the third would pass the budget
