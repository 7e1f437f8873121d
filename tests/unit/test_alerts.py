"""Alerts without I/O: which events alert, how halts are gathered, the throttle, the Slack text.

Events are built as the gate and the stores write them (``audit.draft``) and
sealed (``audit.seal``), so :class:`Watch` reads exactly the bytes it reads
from a store.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from gatekeeper import ConfigError, Gatekeeper, MemoryStore
from gatekeeper._config import parse_config
from gatekeeper.alerts import KINDS, Alert
from gatekeeper.alerts._throttle import Throttle
from gatekeeper.alerts._watch import Watch, audit_link
from gatekeeper.audit import GENESIS, StoredEvent, draft, seal
from gatekeeper.channels.slack import SlackAlerts, alert_message
from gatekeeper.channels.slack._escape import check_limits
from gatekeeper.models import Risk

T0 = 1_767_225_600_000  # 2026-01-01 00:00:00 UTC, in ms
NOW = T0 / 1000
CONSOLE = "https://gatekeeper.example"
HIT_CALLS = [
    {"tool": "dns_lookup", "at": "2026-01-01T00:00:01Z", "call_id": "c1"},
    {"tool": "open_tunnel", "at": "2026-01-01T00:00:02Z", "call_id": "c2", "request_id": "r2"},
]


def entry(n: int, kind: str, *, actor: str = "agent:bot", **fields: Any) -> StoredEvent:
    """The sealed entry ``n`` of ``kind`` (``agent`` bot and ``session_id`` s1 by default)."""
    fields.setdefault("agent", "bot")
    fields.setdefault("session_id", "s1")
    d = draft(kind, at_ms=fields.pop("at_ms", T0), actor=actor, **fields)
    ((body, hash_),) = seal(GENESIS, n, [d])
    return StoredEvent(str(n), body, hash_)


def call(n: int, kind: str, verdict: str, risk: str = "low", **data: Any) -> StoredEvent:
    extra = {"request_id": data.pop("request_id")} if "request_id" in data else {}
    body = {"args": {"secret": "hunter2"}, "verdict": verdict, "risk": risk, **data}
    return entry(n, kind, tool="http_request", call_id=f"call{n}", data=body, **extra)


def hit(kind: str, rule: str, verdict: str, **more: Any) -> dict[str, Any]:
    return {"kind": kind, "id": rule, "verdict": verdict, "reason": f"{rule} fired", **more}


def watch(**options: Any) -> Watch:
    return Watch(**{"console_url": CONSOLE, **options})


# -- what alerts ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("event", "kind", "headline"),
    [
        (
            call(
                1,
                "call.held",
                "require_approval",
                "high",
                request_id="r1",
                behaviour=[hit("sequence", "tunnel", "require_approval", calls=HIT_CALLS)],
            ),
            "sequence",
            "Sequence completed: the call was held for a person",
        ),
        (
            call(1, "call.denied", "deny", "medium", behaviour=[hit("limit", "mail-rate", "deny")]),
            "limit",
            "Limit exceeded: the call was denied",
        ),
        (
            call(
                1,
                "call.held",
                "require_approval",
                request_id="r1",
                behaviour=[hit("novelty", "new-hosts", "require_approval")],
            ),
            "novelty",
            "New behaviour: the call was held for a person",
        ),
        (
            call(1, "call.denied", "deny", "critical", rules=["no-drop"], reasons=["forbidden"]),
            "denial",
            "Critical-risk call denied by policy",
        ),
    ],
    ids=["sequence", "limit", "novelty", "denial"],
)
def test_each_kind_of_call_event_alerts_once(event: StoredEvent, kind: str, headline: str) -> None:
    (alert,) = watch().read(event, NOW)
    assert (alert.kind, alert.headline) == (kind, headline)
    assert alert.agent == "bot" and alert.tool == "http_request"
    assert alert.link is not None and alert.link.startswith(CONSOLE)
    assert "hunter2" not in json.dumps(alert.document())  # never the arguments


def test_a_held_call_links_its_request_and_a_denied_one_its_audit_entry() -> None:
    held = call(
        7,
        "call.held",
        "require_approval",
        request_id="r/1",
        behaviour=[hit("novelty", "n", "require_approval")],
    )
    (alert,) = watch().read(held, NOW)
    assert alert.link == f"{CONSOLE}/requests/r%2F1"
    (denied,) = watch().read(call(7, "call.denied", "deny", "high"), NOW)
    assert denied.link == f"{CONSOLE}/audit?before=8"
    assert watch(console_url=None).read(call(7, "call.denied", "deny", "high"), NOW)[0].link is None


def test_audit_links_put_the_entry_at_the_top_of_the_page() -> None:
    assert audit_link(CONSOLE, "1767225600000-3") == f"{CONSOLE}/audit?before=1767225600000-4"
    assert audit_link(CONSOLE, "41") == f"{CONSOLE}/audit?before=42"
    assert audit_link(CONSOLE, "not-an-id") == f"{CONSOLE}/audit"


def test_a_sequence_alert_lists_the_earlier_calls() -> None:
    event = call(
        1,
        "call.held",
        "require_approval",
        request_id="r1",
        behaviour=[hit("sequence", "tunnel", "require_approval", calls=HIT_CALLS)],
    )
    (alert,) = watch().read(event, NOW)
    assert alert.steps == ("dns_lookup at 00:00:01 UTC", "open_tunnel at 00:00:02 UTC (request r2)")
    assert (alert.rule, alert.reasons) == ("tunnel", ("tunnel fired",))


@pytest.mark.parametrize(
    "event",
    [
        call(1, "call.allowed", "allow", "critical"),
        call(1, "call.denied", "deny", "medium"),  # below deny_risk
        call(1, "call.held", "require_approval", "critical", request_id="r1"),  # held, no hit
        call(1, "call.refused", "deny", "critical"),  # refused because halted: the halt alerted
        call(1, "call.shadow", "allow", behaviour=[hit("sequence", "s", "halt")]),
        call(1, "call.denied", "deny", "low", behaviour=[hit("limit", "l", "deny", shadow=True)]),
        entry(1, "request.denied", actor="alice"),
    ],
    ids=["allowed", "medium-denial", "plain-hold", "refused", "shadow", "shadow-hit", "person"],
)
def test_events_that_do_not_alert(event: StoredEvent) -> None:
    assert watch().read(event, NOW) == []
    assert watch().due(NOW + 60) == []


def test_deny_risk_and_kinds_choose_what_alerts() -> None:
    medium = call(1, "call.denied", "deny", "medium")
    assert [a.kind for a in watch(deny_risk=Risk.MEDIUM).read(medium, NOW)] == ["denial"]
    limit = call(1, "call.denied", "deny", "high", behaviour=[hit("limit", "l", "deny")])
    assert watch(kinds=["denial", "halt"]).read(limit, NOW) == []  # a limit, not a plain denial


@pytest.mark.parametrize(
    "data",
    [
        {"verdict": ["deny"], "risk": "high"},
        {"verdict": "deny", "risk": {"x": 1}},
        {"verdict": "deny", "risk": "high", "behaviour": "not a list"},
        {"verdict": "halt", "behaviour": [1, None, {"kind": "sequence", "calls": "no"}]},
        {"verdict": "deny", "risk": "high", "rules": [None], "reasons": [{"a": 1}, 3]},
    ],
)
def test_a_forged_event_of_any_shape_is_read_without_error(data: dict[str, Any]) -> None:
    w = watch()
    for kind in ("call.denied", "call.held", "halt.set", "request.cancelled"):
        w.read(entry(1, kind, data=data, agent=None, session_id=None), NOW)
    w.read(StoredEvent("2", b'{"event": "call.denied"}', ""), NOW)
    w.read(StoredEvent("3", b'not json "kind":"call.denied"', ""), NOW)
    w.due(NOW + 60)


def test_agent_text_in_an_alert_is_made_visible_and_bounded() -> None:
    agent = "bot\n12:03 approved by alice\u202e" + "x" * 10_000
    event = entry(
        1, "call.denied", agent=agent, tool="t\u200b", data={"verdict": "deny", "risk": "high"}
    )
    (alert,) = watch().read(event, NOW)
    assert alert.agent is not None and "\n" not in alert.agent and len(alert.agent) == 120
    assert "<U+000A>" in alert.agent and "\u202e" not in alert.agent
    assert alert.tool == "t<U+200B>"


# -- halts ----------------------------------------------------------------------------------------
def halting_call(n: int, session: str = "s1") -> StoredEvent:
    data = {
        "verdict": "halt",
        "risk": "high",
        "rules": ["tunnel"],
        "reasons": ["sequence tunnel: dns_lookup -> open_tunnel"],
        "behaviour": [hit("sequence", "tunnel", "halt", calls=HIT_CALLS)],
    }
    return entry(n, "call.denied", tool="http_request", session_id=session, call_id="c3", data=data)


def halt_set(n: int, by: str = "policy:tunnel", **data: Any) -> StoredEvent:
    body = {"scope": "session", "target": "s1", "reason": "sequence tunnel", **data}
    return entry(n, "halt.set", actor=by, agent=None, data=body)


def cancelled(n: int, by: str = "policy:tunnel", session: str = "s1") -> StoredEvent:
    data = {"reason": "halted: sequence tunnel"}
    return entry(
        n, "request.cancelled", actor=by, session_id=session, request_id=f"r{n}", data=data
    )


@pytest.mark.parametrize(
    "order", [["call", "set", "c", "c"], ["set", "call", "c", "c"], ["set", "c", "call", "c"]]
)
def test_a_halt_is_one_alert_whatever_the_order_its_events_are_sealed_in(order: list[str]) -> None:
    """On Redis the halt.set is often sealed before the call that made it, cancellations after."""
    w = watch(grace=2.0)
    make = {"call": halting_call, "set": halt_set, "c": cancelled}
    for n, what in enumerate(order, 1):
        assert w.read(make[what](n), NOW) == []
    assert w.due(NOW + 1.9) == []
    (alert,) = w.due(NOW + 2)
    assert alert.headline == "Session halted by policy"
    assert (alert.halt_scope, alert.halt_target, alert.by) == ("session", "s1", "policy:tunnel")
    assert (alert.tool, alert.rule, alert.cancelled) == ("http_request", "tunnel", 2)
    assert alert.steps[0].startswith("dns_lookup") and alert.link == f"{CONSOLE}/agents"
    assert alert.key == ("halt", "session", "s1")


def test_a_halt_that_lists_its_cancellations_is_not_counted_twice() -> None:
    w = watch()
    w.read(halting_call(1), NOW)
    w.read(halt_set(2, pending=["r3", "r4", "r5"]), NOW)
    w.read(cancelled(3), NOW)
    (alert,) = w.due(NOW + 5)
    assert alert.cancelled == 3


def test_a_persons_halt_alerts_alone_and_a_halting_call_without_its_halt_set_too() -> None:
    w = watch()
    w.read(halt_set(1, by="alice", scope="agent", target="bot", reason="looping"), NOW)
    w.read(halting_call(2, session="other"), NOW)  # its halt.set never comes
    person, call_only = w.due(NOW + 5)
    assert (person.headline, person.by, person.reasons) == (
        "Agent halted by a person",
        "alice",
        ("looping",),
    )
    assert person.tool is None
    assert (call_only.tool, call_only.session_id, call_only.halt_scope) == (
        "http_request",
        "other",
        None,
    )


def test_another_sessions_halt_is_not_merged_into_this_call() -> None:
    w = watch()
    w.read(halt_set(1, target="s2"), NOW)
    w.read(halting_call(2, session="s1"), NOW)
    assert len(w.due(NOW + 5)) == 2


# -- the throttle ---------------------------------------------------------------------------------
def denial(agent: str = "bot", rule: str = "no-drop", kind: str = "denial") -> Alert:
    at = dt.datetime.fromtimestamp(NOW, dt.timezone.utc)
    return Alert(kind=kind, at=at, key=(kind, agent, rule), agent=agent, rule=rule)  # type: ignore[arg-type]


def test_a_flood_of_ten_thousand_is_one_alert_and_one_summary() -> None:
    throttle = Throttle(window=600, most=30)
    sent = [a for i in range(10_000) if (a := throttle.offer(denial(), NOW + i * 0.01))]
    assert len(sent) == 1 and sent[0].suppressed == 0
    assert throttle.due(NOW + 599) == []
    end = (NOW // 600 + 1) * 600
    (summary,) = throttle.due(end + 5)
    assert summary.summary and summary.suppressed == 9_999
    assert summary.headline == "9,999 more denials of high-risk calls like this in 10 min"
    assert throttle.due(end + 3600) == []


def test_a_flood_that_goes_on_gets_one_message_per_window_each_saying_what_came_before() -> None:
    throttle = Throttle(window=60, most=30, grace=5)
    out: list[Alert] = []
    for i in range(3_000):  # 300 s of calls, ten a second: five windows
        at = NOW + i / 10
        out += throttle.due(at)
        if (a := throttle.offer(denial(), at)) is not None:
            out.append(a)
    out += throttle.due(NOW + 400)
    assert len(out) == 6  # one per window, and the last window's summary
    assert [a.suppressed for a in out] == [0, 599, 599, 599, 599, 599]
    assert [a.summary for a in out] == [False] * 5 + [True]
    assert out[1].note == "599 more like it in the 1 min before were not sent one by one"


def test_every_process_gives_the_same_alert_the_same_id() -> None:
    one, two = Throttle(600, 30), Throttle(600, 30)
    a, b = one.offer(denial(), NOW + 1), two.offer(denial(), NOW + 2)
    assert a is not None and b is not None and a.id == b.id
    assert one.offer(denial(agent="other"), NOW).id != a.id  # type: ignore[union-attr]


def test_at_most_most_alerts_a_window_whatever_the_keys() -> None:
    throttle = Throttle(window=600, most=5)
    sent = [
        a
        for i in range(1_000)
        if (a := throttle.offer(denial(agent=f"a{i}", kind="denial" if i % 2 else "limit"), NOW))
    ]
    assert len(sent) == 5
    summaries = throttle.due(NOW + 1_200)
    assert sorted((s.kind, s.suppressed, s.capped) for s in summaries) == [
        ("denial", 498, True),
        ("limit", 497, True),
    ]
    assert summaries[0].headline.endswith("were not sent: too many alerts in 10 min")


def test_the_throttle_forgets_keys_it_no_longer_needs() -> None:
    throttle = Throttle(window=60, most=1000)
    for i in range(500):
        throttle.offer(denial(agent=f"a{i}"), NOW)
    throttle.due(NOW + 600)
    assert throttle._keys == {} and throttle._sent == {}


# -- Slack and webhook text -----------------------------------------------------------------------
HOSTILE = "<!channel> *bold* _it_ ~s~ `x` <https://evil.example|click> @here\n> quote \u202e:smile:"


def hostile_alert(**more: Any) -> Alert:
    at = dt.datetime.fromtimestamp(NOW, dt.timezone.utc)
    w = watch()
    event = entry(
        1,
        "call.denied",
        agent=HOSTILE,
        session_id=HOSTILE,
        tool=HOSTILE,
        data={"verdict": "deny", "risk": "high", "rules": [HOSTILE], "reasons": [HOSTILE * 50]},
    )
    (alert,) = w.read(event, at.timestamp())
    return Alert(**{**alert.__dict__, **more})


def leaves(message: dict[str, Any]) -> list[tuple[str, str]]:
    """(type of the text object or element, its text) for every text in the message."""
    found: list[tuple[str, str]] = []

    def walk(node: Any, kind: str) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("text"), str):
                found.append((node.get("type", kind), node["text"]))
            for value in node.values():
                walk(value, node.get("type", kind))
        elif isinstance(node, list):
            for value in node:
                walk(value, kind)

    walk(message["blocks"], "")
    return found


@pytest.mark.parametrize("summary", [False, True])
def test_hostile_text_in_a_slack_alert_can_not_mention_link_or_format(summary: bool) -> None:
    alert = hostile_alert(summary=summary, suppressed=3 if summary else 0, window=600)
    message = alert_message(alert)
    check_limits(message)
    for kind, text in leaves(message):
        if kind == "mrkdwn":  # only our own words
            assert "channel" not in text and "evil" not in text
        if kind == "plain_text":
            assert "<!channel>" not in text and "<https" not in text and "\n" not in text
        if kind == "text":  # rich text elements are literal; still one line each
            assert "\n" not in text and "\u202e" not in text
    assert message["text"].startswith(
        ("\u26d4 High-risk call denied by policy: `", "\U0001f501 3 more")
    )
    assert "<!channel>" not in message["text"] and "\n" not in message["text"]
    header = next(b for b in message["blocks"] if b["type"] == "header")
    assert "channel" not in header["text"]["text"]  # the headline is our words only


def test_a_slack_alert_links_the_console_and_never_shows_arguments() -> None:
    alert = hostile_alert(link=f"{CONSOLE}/audit?before=2", suppressed=12, window=600)
    message = alert_message(alert)
    (actions,) = [b for b in message["blocks"] if b["type"] == "actions"]
    assert actions["elements"][0]["url"] == f"{CONSOLE}/audit?before=2"
    note = next(b for b in message["blocks"] if b["block_id"] == "gk_alert_note")
    assert (
        note["elements"][0]["text"]
        == "12 more like it in the 10 min before were not sent one by one"
    )
    assert "hunter2" not in json.dumps(message)


def test_the_webhook_document_is_json_with_every_field_and_no_arguments() -> None:
    doc = hostile_alert(id="denial-x-1").document()
    text = json.dumps(doc)
    assert doc["type"] == "alert" and doc["kind"] == "denial" and doc["id"] == "denial-x-1"
    assert "args" not in doc and "hunter2" not in text
    assert all(len(r) <= 300 for r in doc["reasons"])


# -- the config -----------------------------------------------------------------------------------
BASE = "version: 1\nstore: {url: 'memory://'}\n"


def test_an_alerts_section_parses_with_durations() -> None:
    config = parse_config(
        BASE
        + """alerts:
  slack: {channel: C0ALERTS}
  webhooks: [{url: "https://hooks.example/a", secret_env: ALERTS_SECRET}]
  queue_age: 15m
  window: 5m
  kinds: [halt, denial]
  deny_risk: critical
"""
    )
    alerts = config.alerts
    assert alerts is not None and alerts.window == 300 and alerts.queue_age == 900
    assert alerts.kinds == ("halt", "denial") and alerts.deny_risk is Risk.CRITICAL
    assert (
        parse_config(BASE + "alerts: {webhooks: [{url: 'http://h', secret_env: S}]}").alerts.kinds
        == KINDS
    )  # type: ignore[union-attr]


SLACK = "slack: {channel: C1}"
HOOK = "{url: 'https://x', secret_env: S}"


@pytest.mark.parametrize(
    ("section", "field", "says"),
    [
        ("{}", "alerts", "say where alerts go"),
        ("{slack: {channel: alerts}}", "alerts.slack.channel", "channel id"),
        ("{slack: {channel: C1, base_url: 'slack.com'}}", "alerts.slack.base_url", "http"),
        ("{slack: {channel: C1, bot_token_env: 'a b'}}", "alerts.slack.bot_token_env", "match"),
        ("{webhooks: [{url: 'ftp://x', secret_env: S}]}", "alerts.webhooks[0].url", "http"),
        ("{webhooks: [{url: 'https://x'}]}", "alerts.webhooks[0].secret_env", "required"),
        (
            "{webhooks: [{url: 'https://x', secret_env: S, secret: abc}]}",
            "alerts.webhooks[0].secret",
            "unknown key",
        ),
        (f"{{webhooks: [{HOOK}, {HOOK}]}}", "alerts", "used twice"),
        (f"{{{SLACK}, kinds: [halt, panic]}}", "alerts.kinds[1]", "halt"),
        (f"{{{SLACK}, kinds: [halt, halt]}}", "alerts.kinds", "twice"),
        (f"{{{SLACK}, kinds: []}}", "alerts.kinds", "at least 1"),
        (f"{{{SLACK}, deny_risk: severe}}", "alerts.deny_risk", "critical"),
        (f"{{{SLACK}, window: 10 minutes}}", "alerts.window", "duration"),
        (f"{{{SLACK}, window: 0}}", "alerts.window", "greater than or equal to 1"),
        (f"{{{SLACK}, queue_age: 0}}", "alerts.queue_age", "greater than 0"),
        (f"{{{SLACK}, most: 0}}", "alerts.most", "greater than or equal to 1"),
        (f"{{{SLACK}, every: -1}}", "alerts.every", "greater than 0"),
        (f"{{{SLACK}, console_url: gatekeeper}}", "alerts.console_url", "http"),
        (f"{{{SLACK}, channel: C2}}", "alerts.channel", "unknown key"),
        ("[slack]", "alerts", "valid dictionary"),
    ],
)
def test_every_malformed_alerts_value_is_a_config_error_naming_it(
    section: str, field: str, says: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(f"{BASE}alerts: {section}\n", source="gatekeeper.yaml")
    assert caught.value.field == field, str(caught.value)
    assert str(caught.value).startswith("gatekeeper.yaml:")
    assert says in str(caught.value)


def test_slack_alerts_use_the_slack_channels_token_and_api_unless_told(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    channel = (
        "{type: slack, channel: C0APPROVE, bot_token_env: MY_TOKEN, base_url: 'http://s/api/'}"
    )
    web = "{secret_key: '" + "k" * 40 + "', base_url: 'https://console.example'}"
    text = f"{BASE}channels: [{channel}]\nweb: {web}\nalerts: {{slack: {{channel: C0ALERTS}}}}\n"
    monkeypatch.setenv("MY_TOKEN", "xoxb-mine")
    alerter = parse_config(text).alerter(Gatekeeper(store=MemoryStore()))
    assert alerter is not None
    (slack,) = alerter.targets
    assert isinstance(slack, SlackAlerts) and slack.channel == "C0ALERTS"
    assert (slack.client.token, slack.client.base_url) == ("xoxb-mine", "http://s/api/")
    assert alerter._watch.console_url == "https://console.example"  # web.base_url
    assert parse_config(BASE).alerter(Gatekeeper(store=MemoryStore())) is None
