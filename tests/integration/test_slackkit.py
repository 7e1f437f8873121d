"""The Slack stand-in speaks what the real slack-sdk clients send and expect.

Every test here drives FakeSlack with slack-sdk itself (WebClient, the builtin
SocketModeClient, SignatureVerifier): no mocks, so the other Slack tests can trust the fake.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler
from slack_sdk.signature import SignatureVerifier
from slack_sdk.socket_mode.builtin import SocketModeClient
from slack_sdk.socket_mode.client import BaseSocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse

from tests.slackkit import (
    APP_ID,
    VERIFICATION_TOKEN,
    FakeSlack,
    block_actions,
    form_body,
    sign,
    view_submission,
)

BLOCKS: list[dict[str, Any]] = [
    {"type": "section", "text": {"type": "mrkdwn", "text": "*refund* $120 to cus_42?"}},
    {
        "type": "actions",
        "block_id": "decide",
        "elements": [
            {
                "type": "button",
                "action_id": "approve",
                "text": {"type": "plain_text", "text": "Approve"},
                "style": "primary",
                "value": "req-1",
            },
            {
                "type": "button",
                "action_id": "deny",
                "text": {"type": "plain_text", "text": "Deny"},
                "style": "danger",
                "value": "req-1",
            },
        ],
    },
]


@pytest.fixture
def fake() -> Iterator[FakeSlack]:
    with FakeSlack(usergroups={"S0FIN": ["U1", "U2"]}) as slack:
        yield slack


@pytest.fixture
def web(fake: FakeSlack) -> WebClient:
    """A WebClient without retry handlers, so every fault reaches the test."""
    return WebClient(token="xoxb-test", base_url=fake.base_url, retry_handlers=[])


# ---------------------------------------------------------------------- Web API, sync


def test_post_message_records_blocks_as_a_list(fake: FakeSlack, web: WebClient) -> None:
    resp = web.chat_postMessage(channel="C0001", text="refund?", blocks=BLOCKS)

    assert resp["ok"] is True
    assert resp["channel"] == "C0001"
    ts = resp["ts"]
    assert resp["message"]["ts"] == ts
    assert resp["message"]["text"] == "refund?"
    (call,) = fake.calls_to("chat.postMessage")
    assert call.args["blocks"] == BLOCKS
    assert call.headers["authorization"] == "Bearer xoxb-test"
    assert call.headers["content-type"].startswith("application/json")
    assert call.failed is False
    stored = fake.messages[("C0001", ts)]
    # Slack gives every block a block_id; ones the app set stay as they were.
    assert [b["block_id"] for b in stored["blocks"]][1] == "decide"
    assert all(b["block_id"] for b in stored["blocks"])
    assert stored["blocks"][0]["text"] == BLOCKS[0]["text"]


def test_post_message_to_a_user_lands_in_a_dm_and_keeps_thread_ts(
    fake: FakeSlack, web: WebClient
) -> None:
    first = web.chat_postMessage(channel="U1", text="hello")
    reply = web.chat_postMessage(channel="U1", text="in thread", thread_ts=first["ts"])

    assert first["channel"] == reply["channel"] == "D1"
    assert float(reply["ts"]) > float(first["ts"])
    assert len(first["ts"].split(".")[1]) == 6
    assert fake.messages[("D1", reply["ts"])]["thread_ts"] == first["ts"]
    assert fake.calls_to("chat.postMessage")[1].args["thread_ts"] == first["ts"]


def test_form_encoded_json_fields_are_decoded(fake: FakeSlack, web: WebClient) -> None:
    resp = web.api_call(
        "chat.postMessage", params={"channel": "C0001", "blocks": json.dumps(BLOCKS)}
    )

    assert resp["ok"] is True
    (call,) = fake.calls_to("chat.postMessage")
    assert call.headers["content-type"] == "application/x-www-form-urlencoded"
    assert call.args["blocks"] == BLOCKS


def test_update_replaces_the_message(fake: FakeSlack, web: WebClient) -> None:
    posted = web.chat_postMessage(channel="C0001", text="pending", blocks=BLOCKS)
    done = [{"type": "section", "text": {"type": "mrkdwn", "text": "Approved by <@U1>"}}]

    resp = web.chat_update(channel="C0001", ts=posted["ts"], text="approved", blocks=done)

    assert resp["ok"] is True
    assert (resp["channel"], resp["ts"], resp["text"]) == ("C0001", posted["ts"], "approved")
    stored = fake.messages[("C0001", posted["ts"])]
    assert stored["text"] == "approved"
    assert [b["text"] for b in stored["blocks"]] == [done[0]["text"]]


def test_update_of_an_unknown_message_fails(fake: FakeSlack, web: WebClient) -> None:
    with pytest.raises(SlackApiError, match="message_not_found") as info:
        web.chat_update(channel="C0001", ts="1700000099.000100", text="x")

    assert info.value.response["error"] == "message_not_found"
    assert fake.calls_to("chat.update")[0].failed is True


def test_post_ephemeral(fake: FakeSlack, web: WebClient) -> None:
    resp = web.chat_postEphemeral(channel="C0001", user="U2", text="only you", blocks=BLOCKS)

    assert resp["ok"] is True
    (eph,) = fake.ephemerals
    assert (eph.channel, eph.user, eph.text, eph.blocks) == ("C0001", "U2", "only you", BLOCKS)
    assert eph.message_ts == resp["message_ts"]


def test_views_open(fake: FakeSlack, web: WebClient) -> None:
    view = {
        "type": "modal",
        "callback_id": "deny_reason",
        "private_metadata": "req-1",
        "title": {"type": "plain_text", "text": "Deny"},
        "submit": {"type": "plain_text", "text": "Deny"},
        "blocks": [
            {
                "type": "input",
                "block_id": "reason",
                "label": {"type": "plain_text", "text": "Why?"},
                "element": {"type": "plain_text_input", "action_id": "text"},
            }
        ],
    }

    resp = web.views_open(trigger_id="123.456.abc", view=view)

    opened = resp["view"]
    assert opened["id"].startswith("V")
    assert opened["callback_id"] == "deny_reason"
    assert opened["private_metadata"] == "req-1"
    assert fake.views[opened["id"]] == opened
    assert fake.calls_to("views.open")[0].args["view"] == view


def test_views_open_needs_a_trigger_id(web: WebClient) -> None:
    with pytest.raises(SlackApiError, match="invalid_arguments"):
        web.api_call("views.open", json={"view": {"type": "modal"}})


def test_usergroups_users_list(web: WebClient) -> None:
    assert web.usergroups_users_list(usergroup="S0FIN")["users"] == ["U1", "U2"]
    with pytest.raises(SlackApiError, match="no_such_subteam"):
        web.usergroups_users_list(usergroup="S0NOPE")


def test_auth_test(fake: FakeSlack, web: WebClient) -> None:
    resp = web.auth_test()

    assert (resp["team_id"], resp["user_id"]) == (fake.team_id, "UBOT")
    assert resp["bot_id"]


@pytest.mark.parametrize("token", ["xoxb-wrong", "xapp-test", ""])
def test_web_methods_need_the_bot_token(fake: FakeSlack, token: str) -> None:
    client = WebClient(token=token or None, base_url=fake.base_url, retry_handlers=[])

    with pytest.raises(SlackApiError, match="invalid_auth") as info:
        client.chat_postMessage(channel="C0001", text="hi")

    assert info.value.response.status_code == 200
    assert fake.calls_to("chat.postMessage")[0].failed is True
    assert fake.messages == {}


def test_apps_connections_open_needs_the_app_token(fake: FakeSlack, web: WebClient) -> None:
    with pytest.raises(SlackApiError, match="invalid_auth"):
        web.apps_connections_open(app_token="xoxb-test")

    url = web.apps_connections_open(app_token="xapp-test")["url"]

    assert url.startswith("ws://127.0.0.1:")
    assert "/link/?ticket=" in url
    assert fake.calls_to("apps.connections.open")[1].headers["authorization"] == (
        "Bearer xapp-test"
    )


def test_unknown_method(web: WebClient) -> None:
    with pytest.raises(SlackApiError, match="unknown_method"):
        web.api_call("chat.nope", json={"channel": "C0001"})


def test_rate_limit_reaches_a_raw_client(fake: FakeSlack, web: WebClient) -> None:
    fake.fail("chat.postMessage", status=429, retry_after=1)

    with pytest.raises(SlackApiError) as info:
        web.chat_postMessage(channel="C0001", text="hi")

    assert info.value.response.status_code == 429
    assert info.value.response["error"] == "ratelimited"
    # urllib keeps the server's casing; slack-sdk adds the lower-case twin for 429s.
    assert info.value.response.headers["Retry-After"] == "1"
    assert info.value.response.headers["retry-after"] == "1"
    # One fault only: the next call goes through, and both are recorded.
    assert web.chat_postMessage(channel="C0001", text="hi")["ok"] is True
    assert [c.failed for c in fake.calls_to("chat.postMessage")] == [True, False]


def test_rate_limit_retry_handler_honours_the_fault(fake: FakeSlack) -> None:
    client = WebClient(
        token="xoxb-test",
        base_url=fake.base_url,
        retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=2)],
    )
    fake.fail("chat.postMessage", status=429, retry_after=0)

    assert client.chat_postMessage(channel="C0001", text="hi")["ok"] is True
    assert [c.failed for c in fake.calls_to("chat.postMessage")] == [True, False]


def test_server_error_and_error_faults(fake: FakeSlack, web: WebClient) -> None:
    fake.fail("chat.update", status=500, retry_after=None, error="fatal_error")
    fake.error("chat.postMessage", "channel_not_found", times=2)

    with pytest.raises(SlackApiError) as info:
        web.chat_update(channel="C0001", ts="1.2", text="x")
    assert info.value.response.status_code == 500
    assert "Retry-After" not in info.value.response.headers
    for _ in range(2):
        with pytest.raises(SlackApiError, match="channel_not_found") as info:
            web.chat_postMessage(channel="C0001", text="hi")
        assert info.value.response.status_code == 200
    assert web.chat_postMessage(channel="C0001", text="hi")["ok"] is True


def test_wait_for_blocks_until_the_call_arrives(fake: FakeSlack, web: WebClient) -> None:
    timer = threading.Timer(0.1, lambda: web.chat_postMessage(channel="C0001", text="later"))
    timer.start()
    try:
        (call,) = fake.wait_for("chat.postMessage", timeout=5)
    finally:
        timer.join()
    assert call.args["text"] == "later"

    with pytest.raises(AssertionError, match=r"expected 2 call\(s\) to chat.postMessage"):
        fake.wait_for("chat.postMessage", count=2, timeout=0.05)


# ---------------------------------------------------------------------- Socket Mode


class Inbox:
    """A Socket Mode listener that acks every request (with ``reply``) and keeps it."""

    def __init__(self) -> None:
        self.reply: dict[str, Any] | None = None
        self.requests: list[SocketModeRequest] = []
        self._cond = threading.Condition()

    def __call__(self, client: BaseSocketModeClient, req: SocketModeRequest) -> None:
        client.send_socket_mode_response(
            SocketModeResponse(envelope_id=req.envelope_id, payload=self.reply)
        )
        with self._cond:
            self.requests.append(req)
            self._cond.notify_all()

    def wait(self, count: int, timeout: float = 5.0) -> list[SocketModeRequest]:
        """The first ``count`` requests, once they have arrived."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.requests) >= count, timeout):
                raise AssertionError(f"expected {count} request(s), got {len(self.requests)}")
            return list(self.requests)


@pytest.fixture
def inbox() -> Inbox:
    return Inbox()


@pytest.fixture
def socket_client(fake: FakeSlack, inbox: Inbox) -> Iterator[SocketModeClient]:
    """A builtin SocketModeClient on the fake, connected; closed before the fake stops."""
    client = SocketModeClient(
        app_token="xapp-test",
        web_client=WebClient(token="xoxb-test", base_url=fake.base_url),
        ping_interval=0.5,  # its monitor notices a dead socket within this
    )
    client.socket_mode_request_listeners.append(inbox)
    try:
        client.connect()
        fake.wait_connected()
        yield client
    finally:
        client.close()


def _click(action_id: str = "approve") -> dict[str, Any]:
    return block_actions(
        user_id="U1", action_id=action_id, value="req-1", message_ts="1700000000.000100"
    )


def test_socket_mode_delivers_and_acks_then_survives_disconnect(
    fake: FakeSlack, socket_client: SocketModeClient, inbox: Inbox
) -> None:
    payload = _click()
    first = fake.send_interactive(payload)

    assert fake.wait_ack(first) < 3.0
    (req,) = inbox.wait(1)
    assert req.type == "interactive"
    assert req.envelope_id == first
    assert req.payload == payload
    assert req.accepts_response_payload is True
    assert fake.acks[first].payload is None
    assert fake.socket_connections == 1

    fake.disconnect()

    fake.wait_connected(2)
    second = fake.send_interactive(_click("deny"))
    fake.wait_ack(second)
    assert inbox.wait(2)[1].payload["actions"][0]["action_id"] == "deny"
    assert len(fake.calls_to("apps.connections.open")) == 2
    time.sleep(0.3)  # no stray third connection from the client's own close handling
    assert fake.socket_connections == 2


def test_socket_mode_reconnects_after_a_drop(
    fake: FakeSlack, socket_client: SocketModeClient, inbox: Inbox
) -> None:
    fake.drop()

    fake.wait_connected(2, timeout=5)
    envelope = fake.send_interactive(_click())
    fake.wait_ack(envelope)
    assert inbox.wait(1)[0].envelope_id == envelope
    assert len(fake.calls_to("apps.connections.open")) == 2


def test_socket_mode_ack_carries_a_response_payload(
    fake: FakeSlack, socket_client: SocketModeClient, inbox: Inbox
) -> None:
    inbox.reply = {"response_action": "clear"}
    submission = view_submission(
        user_id="U2",
        callback_id="deny_reason",
        private_metadata="req-1",
        values={"reason": {"text": "too big"}},
    )

    envelope = fake.send_interactive(submission)

    fake.wait_ack(envelope)
    assert fake.acks[envelope].payload == {"response_action": "clear"}
    assert inbox.wait(1)[0].payload == submission


def test_socket_mode_tickets_are_single_use(fake: FakeSlack, web: WebClient) -> None:
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    url = web.apps_connections_open(app_token="xapp-test")["url"]
    with connect(url) as ws:
        assert json.loads(ws.recv(timeout=5))["type"] == "hello"
    with pytest.raises(InvalidStatus), connect(url):
        pass
    with pytest.raises(InvalidStatus), connect(url.split("?")[0] + "?ticket=made-up"):
        pass


def test_wait_ack_times_out_with_a_message(fake: FakeSlack) -> None:
    with pytest.raises(AssertionError, match="no ack for envelope nope"):
        fake.wait_ack("nope", timeout=0.05)
    with pytest.raises(AssertionError, match="no open Socket Mode connection"):
        fake.send_interactive({})


# ---------------------------------------------------------------------- signing and payloads


def test_sign_matches_slack_sdk_verifier() -> None:
    body = form_body(_click())
    headers = sign(body, "s3cret")

    assert SignatureVerifier("s3cret").is_valid_request(body, headers)
    assert not SignatureVerifier("other").is_valid_request(body, headers)
    assert not SignatureVerifier("s3cret").is_valid_request(body + b"x", headers)
    stale = sign(body, "s3cret", timestamp=int(time.time()) - 600)
    assert not SignatureVerifier("s3cret").is_valid_request(body, stale)
    assert headers["Content-Type"] == "application/x-www-form-urlencoded"


def test_form_body_round_trips() -> None:
    payload = view_submission(
        user_id="U1", callback_id="cb", private_metadata="m&=?", values={"b": {"a": "x y"}}
    )

    fields = parse_qs(form_body(payload).decode())

    assert list(fields) == ["payload"]
    assert json.loads(fields["payload"][0]) == payload


def test_block_actions_takes_the_button_from_the_message(fake: FakeSlack, web: WebClient) -> None:
    posted = web.chat_postMessage(channel="C0001", text="refund?", blocks=BLOCKS)
    message = fake.messages[("C0001", posted["ts"])]

    payload = block_actions(
        user_id="U1",
        action_id="deny",
        value="req-1",
        message_ts=posted["ts"],
        message=message,
        trigger_id="1.2.3",
    )

    assert payload["type"] == "block_actions"
    assert payload["user"] == {"id": "U1", "username": "u1", "name": "u1", "team_id": "T0001"}
    assert payload["api_app_id"] == APP_ID
    assert payload["token"] == VERIFICATION_TOKEN
    assert payload["container"] == {
        "type": "message",
        "message_ts": posted["ts"],
        "channel_id": "C0001",
        "is_ephemeral": False,
    }
    assert payload["trigger_id"] == "1.2.3"
    assert payload["team"]["id"] == "T0001"
    assert payload["enterprise"] is None
    assert payload["is_enterprise_install"] is False
    assert payload["channel"]["id"] == "C0001"
    assert payload["message"] == message
    assert payload["state"] == {"values": {}}
    assert payload["response_url"].startswith("https://")
    (action,) = payload["actions"]
    assert action["action_id"] == "deny"
    assert action["block_id"] == "decide"
    assert action["text"] == {"type": "plain_text", "text": "Deny"}
    assert action["style"] == "danger"
    assert action["value"] == "req-1"
    assert action["type"] == "button"
    assert float(action["action_ts"]) > 0


def test_block_actions_without_a_message() -> None:
    payload = block_actions(user_id="U1", action_id="approve", value="v", message_ts="1.000100")

    assert payload["message"]["ts"] == "1.000100"
    assert payload["trigger_id"].count(".") == 2
    assert payload["actions"][0]["block_id"]
    assert "style" not in payload["actions"][0]


def test_view_submission_shape(fake: FakeSlack, web: WebClient) -> None:
    opened = web.views_open(
        trigger_id="1.2.3",
        view={"type": "modal", "callback_id": "cb", "title": {"type": "plain_text", "text": "T"}},
    )["view"]

    payload = view_submission(
        user_id="U2",
        callback_id="cb",
        private_metadata="req-1",
        values={"reason": {"text": "no"}, "note": {"text": None}},
        view=fake.views[opened["id"]],
    )

    assert payload["type"] == "view_submission"
    assert payload["team"]["id"] == "T0001"
    assert payload["user"]["id"] == "U2"
    assert payload["api_app_id"] == APP_ID
    assert payload["token"] == VERIFICATION_TOKEN
    assert payload["trigger_id"]
    assert payload["response_urls"] == []
    assert payload["is_enterprise_install"] is False
    assert payload["enterprise"] is None
    view = payload["view"]
    assert view["id"] == opened["id"]
    assert view["title"] == {"type": "plain_text", "text": "T"}
    assert (view["type"], view["callback_id"], view["private_metadata"]) == (
        "modal",
        "cb",
        "req-1",
    )
    assert view["state"]["values"] == {
        "reason": {"text": {"type": "plain_text_input", "value": "no"}},
        "note": {"text": {"type": "plain_text_input", "value": None}},
    }
    assert view["hash"]
    bare = view_submission(
        user_id="U2", callback_id="cb", private_metadata="", values={}, view_id="V9"
    )
    assert bare["view"]["id"] == "V9"
