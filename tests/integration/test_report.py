"""The transparency report (``gatekeeper report``, the console's /report): the log's numbers.

A real gate makes a scripted mix of calls: allowed, held then approved (by two
people), denied by a person, expired, denied by the policy, held by a rate
limit, halted by a sequence, and refused under that halt. A channel decides
each held call after a known number of seconds on a ManualClock, so every
latency is known. The JSON report must count exactly that mix; Markdown and
HTML must say the same numbers; hostile names stay inert in all three; the
window (``--since``, ``--until``) counts what the log recorded inside it.
MemoryStore here, and the same mix on a real Redis through the CLI.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gatekeeper import AgentHalted, ApprovalDenied, ApprovalTimeout, Gatekeeper, Policy
from gatekeeper._report import gate_report, render_html, render_json, render_markdown
from gatekeeper._report._collect import Collector
from gatekeeper.audit import StoredEvent, draft, encode_draft
from gatekeeper.cli import main
from gatekeeper.models import ApprovalRequest
from gatekeeper.store import MemoryStore, RedisStore, Store
from gatekeeper.testing import ManualClock
from gatekeeper.web import WebSettings, create_app
from gatekeeper.web._auth import new_session
from tests.conftest import RedisServer
from tests.storekit import MANUAL_LEASE
from tests.webkit import APPROVERS, SECRET_KEY, TOKENS, TestClient, bearer

POLICY = """\
version: 1
default: allow
agents:
  billing-bot: {scopes: [orders:read]}
rules:
  - {id: refunds, match: {tool: refund}, verdict: require_approval}
  - {id: no-drop, match: {tool: drop_table}, verdict: deny}
sequences:
  - id: tunnel
    steps: [{tool: dns_lookup}, {tool: open_tunnel}]
    within: 10m
    per: session
    verdict: halt
limits:
  - id: email-rate
    match: {tool: send_email}
    rate: 2/hour
    per: agent
    on_exceed: require_approval
"""
TIMEOUT = 3600.0
HOSTILE_AGENT = "<script>alert(1)</script>|*x*\u202e[a](https://evil.example)\nrow"
HOSTILE_TOOL = "<img src=x onerror=window.__pwned=1>|`"
HOSTILE_COMMENT = "<b>no</b> | **really** &#x202E; www.evil.example"
HOSTILE_SCOPE = "<i>s</i>|x"


class Script:
    """A channel that decides each held call in turn: after ``seconds`` of the clock, as ``who``.

    A step is ``(action, seconds, who, comment)``; action ``approve``, ``deny``,
    or ``wait`` (nobody decides: the clock passes the request's expiry).
    """

    def __init__(self, clock: ManualClock, steps: list[tuple[str, float, str, str | None]]):
        self.clock = clock
        self.steps = list(steps)
        self.gate: Gatekeeper | None = None

    def bind(self, gate: Gatekeeper) -> None:
        self.gate = gate

    def notify(self, request: ApprovalRequest) -> None:
        assert self.gate is not None, "bound by the gate"
        action, seconds, who, comment = self.steps.pop(0)
        self.clock.advance(seconds)
        if action == "approve":
            self.gate.approve(request.id, approver=who, comment=comment)
        elif action == "deny":
            self.gate.deny(request.id, approver=who, comment=comment)

    def update(self, request: ApprovalRequest) -> None:
        pass


#: The held calls' fates, in the order they are held: latencies 30 s, 90 s, 600 s, and 10 s.
STEPS = [
    ("approve", 30.0, "alice", None),
    ("approve", 90.0, "bob", "matches the ticket"),
    ("deny", 600.0, "alice", HOSTILE_COMMENT),
    ("wait", TIMEOUT + 400, "", None),
    ("approve", 10.0, "alice", None),
]


def make_gate(store: Store, clock: ManualClock) -> Gatekeeper:
    return Gatekeeper(
        policy=Policy.from_yaml(POLICY),
        store=store,
        clock=clock,
        approvers=APPROVERS,
        channels=[Script(clock, STEPS)],
        default_timeout=TIMEOUT,
    )


def run_mix(gate: Gatekeeper) -> None:
    """The scripted mix; every call's fate is asserted as it happens."""

    @gate.guard
    def search(q: str) -> str:
        return q

    @gate.guard
    def drop_table(table: str) -> str:
        return table

    @gate.guard
    def refund(order_id: str) -> str:
        return order_id

    @gate.guard
    def send_email(to: str) -> str:
        return to

    @gate.guard
    def dns_lookup(host: str) -> str:
        return host

    @gate.guard
    def open_tunnel(host: str) -> str:
        return host

    @gate.guard(name=HOSTILE_TOOL)
    def hostile(x: int) -> int:
        return x

    with gate.session(agent="billing-bot", scopes={"orders:read"}, session_id="s-billing"):
        for n in range(5):
            assert search(f"q{n}") == f"q{n}"
        with pytest.raises(Exception, match="denied by policy"):
            drop_table("users")
        assert refund("A-1") == "A-1"  # approved by alice after 30 s
        assert refund("A-2") == "A-2"  # approved by bob after 90 s
        with pytest.raises(ApprovalDenied):  # denied by alice after 600 s
            refund("A-3")
        with pytest.raises(ApprovalTimeout):  # nobody decided
            refund("A-4")
        assert send_email("a@example.com") == "a@example.com"
        assert send_email("b@example.com") == "b@example.com"
        assert send_email("c@example.com") == "c@example.com"  # over the rate: approved, 10 s
    with gate.session(agent=HOSTILE_AGENT, scopes={HOSTILE_SCOPE}, session_id="s-tunnel"):
        assert hostile(1) == 1
        assert dns_lookup("c2.example.net") == "c2.example.net"
        with pytest.raises(AgentHalted):  # the sequence completes: the session is halted
            open_tunnel("c2.example.net:443")
        with pytest.raises(AgentHalted):  # refused: the halt is in force
            search("after")


def verdicts(allowed: int = 0, held: int = 0, denied: int = 0, halted: int = 0, refused: int = 0):
    return {
        "allowed": allowed,
        "held": held,
        "denied": denied,
        "halted": halted,
        "refused": refused,
    }


def check_numbers(data: dict[str, Any], digest: str) -> None:
    """The JSON report of :func:`run_mix`, number by number."""
    assert data["format"] == "gatekeeper-report/1"
    assert data["calls"] == verdicts(allowed=9, held=5, denied=1, halted=1, refused=1)
    agents = {a["agent"]: a for a in data["agents"]}
    assert set(agents) == {"billing-bot", HOSTILE_AGENT}
    bot, evil = agents["billing-bot"], agents[HOSTILE_AGENT]
    assert bot["policy_scopes"] == ["orders:read"]
    assert bot["session_scopes"] == ["orders:read"]
    assert bot["calls"] == verdicts(allowed=7, held=5, denied=1)
    assert {t["tool"]: t["calls"] for t in bot["tools"]} == {
        "search": verdicts(allowed=5),
        "drop_table": verdicts(denied=1),
        "refund": verdicts(held=4),
        "send_email": verdicts(allowed=2, held=1),
    }
    assert evil["policy_scopes"] is None
    assert evil["session_scopes"] == [HOSTILE_SCOPE]
    assert {t["tool"]: t["calls"] for t in evil["tools"]} == {
        HOSTILE_TOOL: verdicts(allowed=1),
        "dns_lookup": verdicts(allowed=1),
        "open_tunnel": verdicts(halted=1),
        "search": verdicts(refused=1),
    }
    assert data["requests"] == {
        "held": 5,
        "approved": 3,
        "denied": 1,
        "answered": 0,
        "expired": 1,
        "cancelled": 0,
        "abandoned": 0,
        "outcome_unknown": 0,
        "executed": 3,
        "failed": 0,
    }
    latency = data["latency"]
    # 10, 30, 90, 600 s: nearest rank, p50 is the 2nd, p95 the 4th
    assert (latency["decisions"], latency["p50_s"], latency["p95_s"], latency["max_s"]) == (
        4,
        30.0,
        600.0,
        600.0,
    )
    assert {b["label"]: b["count"] for b in latency["buckets"] if b["count"]} == {
        "10–30s": 1,
        "30s–1m": 1,
        "1–2m": 1,
        "10–30m": 1,
    }
    people = {p["approver"]: p for p in data["approvers"]}
    assert {n: (p["approved"], p["denied"], p["answered"]) for n, p in people.items()} == {
        "alice": (2, 1, 0),
        "bob": (1, 0, 0),
    }
    assert {(w["tool"], w["approved"], w["denied"]) for w in people["alice"]["what"]} == {
        ("refund", 1, 1),
        ("send_email", 1, 0),
    }
    decided = [(d["approver"], d["decision"], d["tool"]) for d in data["decisions"]]
    assert decided == [  # newest first
        ("alice", "approved", "send_email"),
        ("alice", "denied", "refund"),
        ("bob", "approved", "refund"),
        ("alice", "approved", "refund"),
    ]
    assert data["decisions"][1]["comment"] == HOSTILE_COMMENT
    halts = data["halts"]
    assert (halts["set"], halts["cleared"], halts["halted_calls"]) == (1, 0, 1)
    (halt,) = halts["items"]
    assert (halt["scope"], halt["target"], halt["by"]) == ("session", "s-tunnel", "policy:tunnel")
    hits = {(b["kind"], b["id"]): b for b in data["behaviour"]}
    assert set(hits) == {("sequence", "tunnel"), ("limit", "email-rate")}
    assert hits["sequence", "tunnel"]["verdicts"] == {"halt": 1}
    assert hits["sequence", "tunnel"]["agents"] == {HOSTILE_AGENT: 1}
    assert hits["limit", "email-rate"]["verdicts"] == {"require_approval": 1}
    assert hits["limit", "email-rate"]["agents"] == {"billing-bot": 1}
    assert data["autonomy"] == {"promoted": 0, "demoted": 0, "items": []}
    assert data["grants"] == {"created": 0, "used": 0, "revoked": 0, "expired": 0}
    policies = data["policies"]
    assert policies["loaded"]["digest"] == digest
    assert [(v["digest"], v["calls"], v["loaded"]) for v in policies["versions"]] == [
        (digest, 17, True)
    ]
    assert policies["unrecorded"] == 0
    assert sum(sum(b["calls"].values()) for b in data["timeline"]["buckets"]) == 17


@pytest.fixture
def mixed() -> Iterator[tuple[Gatekeeper, ManualClock]]:
    clock = ManualClock()
    gate = make_gate(MemoryStore(clock=clock), clock)
    run_mix(gate)
    yield gate, clock
    gate.close()


def test_the_json_report_counts_the_scripted_mix_exactly(
    mixed: tuple[Gatekeeper, ManualClock],
) -> None:
    gate, _ = mixed
    data = json.loads(render_json(gate_report(gate, since=None)))
    check_numbers(data, gate.policy.digest)


def test_markdown_says_the_same_numbers(mixed: tuple[Gatekeeper, ManualClock]) -> None:
    gate, _ = mixed
    text = render_markdown(gate_report(gate, since=None))
    lines = text.splitlines()
    for row in (
        "| allowed | 9 | 53% |",
        "| held | 5 | 29% |",
        "| denied | 1 | 5.9% |",
        "| halted | 1 | 5.9% |",
        "| refused | 1 | 5.9% |",
        "| billing-bot | orders:read | orders:read | 13 | 7 | 5 | 1 | 0 | 0 |",
        "| billing-bot | refund | 0 | 4 | 0 | 0 | 0 | 4 |",
        "| billing-bot | send_email | 2 | 1 | 0 | 0 | 0 | 3 |",
        "| alice | 2 | 1 | 0 |",
        "| bob | 1 | 0 | 0 |",
        "| sequence | tunnel | 1 | halt 1 | " + _md_agent() + " 1 |",
        "| limit | email-rate | 1 | require_approval 1 | billing-bot 1 |",
    ):
        assert row in lines, row
    assert (
        "- Approval latency, from held to a person's decision (4 decisions): "
        "p50 **30s**, p95 **10m00s**, longest 10m00s."
    ) in lines
    assert "- Held: 5. Approved 3, denied 1, answered 0, expired 1, cancelled 0, abandoned 0." in (
        lines
    )
    assert "- Halts set: 1; lifted: 0; calls refused by a halt verdict: 1." in lines
    assert "- Promotions: 0; demotions: 0." in lines
    assert "- Standing approvals: created 0, used 0, revoked 0, expired 0." in lines
    assert f"| {gate.policy.digest[:12]} | 17 |" in text


def _md_agent() -> str:
    from gatekeeper._report._format import md

    return md(HOSTILE_AGENT)


def _unescaped(line: str, char: str) -> int:
    """How many ``char`` in ``line`` are not backslash-escaped (an even run of \\ before)."""
    count = 0
    for m in re.finditer(re.escape(char), line):
        run = len(line[: m.start()]) - len(line[: m.start()].rstrip("\\"))
        count += run % 2 == 0
    return count


def test_markdown_escapes_hostile_names(mixed: tuple[Gatekeeper, ManualClock]) -> None:
    """A name can't add a table cell, a line, HTML, a link, emphasis or an entity."""
    gate, _ = mixed
    text = render_markdown(gate_report(gate, since=None))
    for raw in ("\u202e", "https://", "www.evil"):  # no autolink reads https:\// or www\.
        assert raw not in text
    for char in "<>[]`&":  # no HTML, link, code span or entity of the log's making
        assert _unescaped(text, char) == 0, char
    assert _unescaped(text, "*") == text.count("**") * 2  # the report's own bold only
    table = None
    for line in text.splitlines():
        if line.startswith("| ---") or line.startswith("| :"):
            continue
        if line.startswith("| "):
            cells = _unescaped(line, "|") - 1
            if table is None:
                table = cells
            assert cells == table, f"a name split a cell: {line}"
        else:
            table = None
    assert "\\<script\\>alert(1)\\</script\\>\\|\\*x\\*\\<U+202E\\>\\[a\\]" in text


def test_html_has_svg_charts_fetches_nothing_and_escapes_names(
    mixed: tuple[Gatekeeper, ManualClock],
) -> None:
    gate, _ = mixed
    page = render_html(gate_report(gate, since=None))
    for chart in ("chart-calls", "chart-mix", "chart-latency"):
        assert re.search(rf'<svg id="{chart}"[^>]* role="img"', page)
    assert page.count("<svg") == 3
    assert '<dd id="latency-p50">30s</dd>' in page
    assert '<dd id="latency-p95">10m00s</dd>' in page
    assert '<dd id="requests-expired">1</dd>' in page
    assert "<title>refund" not in page  # charts draw numbers, never names from the log
    # Nothing is fetched: no URL in any src/href, no CSS url() or @import, no script at all.
    assert not re.search(r"<[a-z][^>]*\s(?:src|href|xlink:href)\s*=", page, re.I)
    assert "url(" not in page and "@import" not in page
    assert "<script" not in page and "<link" not in page
    assert "Content-Security-Policy\" content=\"default-src 'none';" in page
    # Hostile names are inert text.
    for raw in ("<script>alert", "<img src=x", "<b>no</b>", "<i>s</i>", "\u202e"):
        assert raw not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;|*x*&lt;U+202E&gt;" in page
    assert "&lt;img src=x onerror=window.__pwned=1&gt;" in page


def test_since_and_until_count_what_was_recorded_inside_the_window() -> None:
    """A call held before the window and decided inside it counts its full wait."""
    clock = ManualClock()
    steps = [("approve", 3 * 86400.0, "alice", "late")]
    gate = Gatekeeper(
        policy=Policy.from_yaml(POLICY),
        store=MemoryStore(clock=clock),
        clock=clock,
        approvers=APPROVERS,
        channels=[Script(clock, steps)],
        default_timeout=4 * 86400.0,
    )

    @gate.guard
    def search(q: str) -> str:
        return q

    @gate.guard
    def refund(order_id: str) -> str:
        return order_id

    start = clock.now()
    with gate.session(agent="billing-bot"):
        search("a")
        search("b")
        assert refund("A-1") == "A-1"  # held now, approved 3 days later
        search("c")

    def window(since: dt.datetime | None, until: dt.datetime | None = None) -> dict[str, Any]:
        return json.loads(render_json(gate_report(gate, since=since, until=until)))

    last_day = window(clock.now() - dt.timedelta(days=1))
    assert last_day["calls"] == verdicts(allowed=1)
    assert (last_day["requests"]["held"], last_day["requests"]["approved"]) == (0, 1)
    assert (last_day["latency"]["decisions"], last_day["latency"]["p50_s"]) == (1, 3 * 86400.0)
    assert window(None)["calls"] == verdicts(allowed=3, held=1)
    first_hour = window(start, start + dt.timedelta(hours=1))
    assert first_hour["calls"] == verdicts(allowed=2, held=1)
    assert first_hour["requests"]["approved"] == 0
    assert first_hour["latency"]["decisions"] == 0
    gate.close()


def test_an_event_counts_by_when_the_store_recorded_it_not_by_the_time_it_claims() -> None:
    """On Redis an entry's id is its seal time: an agent that backdates a call can't hide it."""
    now_ms = 1_800_000_000_000
    lying = draft(
        "call.allowed",
        at_ms=0,  # 1970, says the agent
        actor="agent:sneaky",
        agent="sneaky",
        tool="exfiltrate",
        data={"verdict": "allow"},
    )
    body = b'{"event":' + encode_draft(lying) + b',"prev_hash":"0","seq":1}'
    since = dt.datetime.fromtimestamp((now_ms - 60_000) / 1000, dt.timezone.utc)
    until = dt.datetime.fromtimestamp((now_ms + 60_000) / 1000, dt.timezone.utc)
    collector = Collector(since=since, until=until)
    collector.feed(StoredEvent(f"{now_ms}-0", body, "h"))
    report = collector.report(generated_at=until)
    assert report.calls.allowed == 1
    assert [a.agent for a in report.agents] == ["sneaky"]


def test_events_of_later_releases_count_and_their_absence_reads_zero() -> None:
    """Autonomy changes and standing approvals, written by a later release, are counted."""
    at = 1_800_000_000_000
    kinds = [
        ("autonomy.promoted", {"rule": "auto-refunds", "reason": "5 approvals, no denial"}),
        ("autonomy.demoted", {"rule": "auto-refunds", "reason": "denied by alice"}),
        ("grant.created", {"grant": "g1"}),
        ("grant.used", {"grant": "g1"}),
        ("grant.used", {"grant": "g1"}),
        ("grant.revoked", {"grant": "g1"}),
        ("some.future_kind", {}),
    ]
    collector = Collector(
        since=None, until=dt.datetime.fromtimestamp(at / 1000 + 60, dt.timezone.utc)
    )
    for n, (kind, data) in enumerate(kinds):
        event = draft(kind, at_ms=at + n, actor="system", agent="bot", tool="refund", data=data)
        body = b'{"event":' + encode_draft(event) + b',"prev_hash":"0","seq":' + b"%d}" % n
        collector.feed(StoredEvent(str(n + 1), body, "h"))
    collector.feed(StoredEvent("99", b"not json", "h"))
    report = collector.report(generated_at=dt.datetime.now(dt.timezone.utc))
    assert (report.autonomy.promoted, report.autonomy.demoted) == (1, 1)
    assert [(i.kind, i.rule) for i in report.autonomy.items] == [
        ("demoted", "auto-refunds"),
        ("promoted", "auto-refunds"),
    ]
    assert report.grants.model_dump() == {"created": 1, "used": 2, "revoked": 1, "expired": 0}
    assert report.unreadable == 1
    assert "- Promotions: 1; demotions: 1." in render_markdown(report)
    assert '<dd id="grants-used">2</dd>' in render_html(report)


# -- the CLI, on a real Redis -----------------------------------------------------------------
CONFIG = """\
version: 1
store: {{url: "{url}", prefix: {prefix}}}
approvers:
  - {{name: alice}}
  - {{name: bob}}
policy:
{policy}
"""


def cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


@pytest.mark.redis
def test_the_cli_reports_the_mix_on_redis(
    tmp_path: Path, redis_server: RedisServer, redis_prefix: str
) -> None:
    config = tmp_path / "gatekeeper.yaml"
    policy = "\n".join("  " + line for line in POLICY.splitlines())
    config.write_text(CONFIG.format(url=redis_server.url, prefix=redis_prefix, policy=policy))
    clock = ManualClock()
    store = RedisStore(redis_server.url, prefix=redis_prefix, clock=clock, lease=MANUAL_LEASE)
    gate = make_gate(store, clock)
    run_mix(gate)
    store.flush()
    digest = gate.policy.digest

    code, out, err = cli("report", "--config", str(config), "--since", "all", "--format", "json")
    assert (code, err) == (0, "")
    assert out.isascii()  # the bidi override in the agent's name is escaped
    check_numbers(json.loads(out), digest)

    # --since: a time after the mix was recorded leaves only what came later.
    last = max(int(e.entry_id.partition("-")[0]) for e in store.audit_entries())
    while time.time() * 1000 <= last + 1:  # the next millisecond of the stream's clock
        time.sleep(0.001)
    after = dt.datetime.now(dt.timezone.utc).isoformat()

    @gate.guard
    def lookup(q: str) -> str:
        return q

    with gate.session(agent="late-bot"):
        assert lookup("x") == "x"
    store.flush()
    code, out, _ = cli("report", "-c", str(config), "--since", after, "-f", "json")
    assert code == 0
    late = json.loads(out)
    assert late["calls"] == verdicts(allowed=1)
    assert [a["agent"] for a in late["agents"] if a["calls"]["allowed"]] == ["late-bot"]

    html_file = tmp_path / "report.html"
    code, out, _ = cli(
        "report", "-c", str(config), "--since", "30d", "-f", "html", "-o", str(html_file)
    )
    assert code == 0 and out.startswith("wrote the report of ")
    assert html_file.read_text(encoding="utf-8").count("<svg") == 3

    code, out, _ = cli("report", "-c", str(config), "--since", "30d")
    assert code == 0 and out.startswith("# Transparency report\n")
    assert "| allowed | 10 |" in out

    code, _, err = cli("report", "-c", str(config), "--since", "last tuesday")
    assert code == 1
    assert err.startswith("error: --since: 'last tuesday' is neither a duration like 30d")
    code, _, err = cli("report", "-c", str(config), "--since", "1d", "--until", "2000-01-01")
    assert (code, err.startswith("error: --until 2000-01-01 is before --since 1d")) == (1, True)
    gate.close()


# -- the console page ---------------------------------------------------------------------------
@pytest.fixture
def console(mixed: tuple[Gatekeeper, ManualClock]) -> Any:
    gate, _ = mixed
    settings = WebSettings(secret_key=SECRET_KEY, api_tokens=tuple(TOKENS.values()))
    return create_app(gate, settings), settings


def test_the_console_page_needs_a_sign_in(console: Any) -> None:
    app, _ = console
    with TestClient(app) as anon:
        page = anon.get("/report", follow_redirects=False)
        assert page.status_code == 303
        assert page.headers["location"].startswith("/login")
        assert anon.get("/report/download?format=json", follow_redirects=False).status_code == 303


def test_the_console_page_shows_the_report(console: Any) -> None:
    app, settings = console
    client = TestClient(app)
    cookie, _ = new_session(settings, "alice")
    client.cookies.set("gk_session", cookie)
    with client:
        page = client.get("/report?since=all")
        assert page.status_code == 200
        html = page.text
        assert 'aria-current="page">Report</a>' in html
        assert html.count("<svg") == 3
        assert '<dd id="latency-p50">30s</dd>' in html
        assert '<dd id="requests-held">5</dd>' in html
        for raw in ("<script>alert", "<img src=x", "<b>no</b>", "\u202e"):
            assert raw not in html
        # The console's CSP (no inline style or script) holds: no style attribute or element.
        assert " style=" not in html and "<style" not in html
        assert re.findall(r"<script[^>]*>", html) == ['<script src="/static/app.js" defer>']
        links = re.findall(r"(?:src|href)=\"([^\"]*)\"", html)
        assert all(url.startswith(("/", "#", "data:")) for url in links), links

        css = client.get("/report.css")
        assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
        assert ".report-charts" in css.text

        got = client.get("/report/download?since=all&format=json")
        assert got.headers["content-disposition"].startswith("attachment; filename=")
        check_numbers(got.json(), app.state.gate.policy.digest)
        md = client.get("/report/download?since=all&format=md")
        assert md.text.startswith("# Transparency report")

        bad = client.get("/report?since=yesterday-ish")
        assert bad.status_code == 422
        assert "is neither a duration like 30d" in bad.text
        assert client.get("/report/download?format=pdf").status_code == 422
        backwards = client.get("/report?since=2026-01-02&until=2026-01-01")
        assert backwards.status_code == 422
        assert "until 2026-01-01 00:00 UTC is before since 2026-01-02 00:00 UTC" in backwards.text

        # The default window is the last 30 days of the gate's clock: all of the mix.
        assert '<dd id="requests-held">5</dd>' in client.get("/report").text


def test_an_auditors_read_only_token_may_read_the_report(console: Any) -> None:
    app, _ = console
    with TestClient(app) as reader:
        page = reader.get("/report?since=all", headers=bearer("tok-reader"))
        assert page.status_code == 200
        assert '<dd id="requests-approved">3</dd>' in page.text
