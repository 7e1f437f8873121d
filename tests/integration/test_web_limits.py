"""The console's Limits page: current usage of each limit of the policy, per agent.

The console app (its real routes and templates, through TestClient) on a real
gate, on MemoryStore, RedisStore and RedisStore split by role under the
shipped ACL users. Agents make guarded calls; the page must show what the
store counted (the same figures as ``gatekeeper limits --json``), per agent,
with agent names and argument-derived text escaped.
"""

from __future__ import annotations

import html
import io
import json
import re
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from gatekeeper import Gatekeeper, Policy
from gatekeeper.cli import _commands as cmd
from gatekeeper.store import Store
from gatekeeper.testing import RecordingChannel
from gatekeeper.web import WebSettings, create_app
from gatekeeper.web._auth import new_session
from tests.webkit import APPROVERS, SECRET_KEY, TOKENS, TestClient, bearer

HOSTILE = "<img src=x onerror=window.__pwned=1>"

POLICY = """
version: 1
default: allow
limits:
  - {id: notes-per-hour, match: {tool: note}, rate: 3/hour, on_exceed: deny,
     reason: "<b>too many</b> notes"}
  - {id: refunds-per-day, match: {tool: refund}, sum: amount, max: 100, window: 1d}
  - {id: one-export, match: {tool: export}, concurrent: 2}
  - {id: mails-per-recipient, match: {tool: email}, rate: 5/hour, per: args.to}
  - {id: never-used, match: {tool: never}, rate: 1/day, mode: shadow}
"""


class Site:
    def __init__(self, store: Store, policy: str = POLICY) -> None:
        self.gate = Gatekeeper(
            policy=Policy.from_yaml(policy),
            store=store,
            approvers=APPROVERS,
            channels=[RecordingChannel()],
            default_timeout=30,
        )
        self.settings = WebSettings(secret_key=SECRET_KEY, api_tokens=tuple(TOKENS.values()))
        self.app = create_app(self.gate, self.settings)
        self.release = threading.Event()
        self.running = threading.Semaphore(0)
        release, running = self.release, self.running

        def note(text: str) -> str:
            return "noted"

        def refund(order_id: str, amount: float) -> str:
            return "refunded"

        def export(table: str) -> str:
            running.release()
            release.wait(10)
            return "exported"

        def email(to: str, body: str) -> str:
            return "sent"

        self.tools = {f.__name__: self.gate.guard(f) for f in (note, refund, export, email)}

    def call(self, tool: str, agent: str, **kw: Any) -> Any:
        with self.gate.session(agent=agent, reason="test"):
            return self.tools[tool](**kw)


@pytest.fixture
def site(store: Store) -> Iterator[Site]:
    made = Site(store)
    yield made
    made.release.set()


def client_for(site: Site) -> TestClient:
    client = TestClient(site.app)
    value, _ = new_session(site.settings, "alice")
    client.cookies.set("gk_session", value)
    return client


def sections(page: str) -> dict[str, str]:
    """The page's limit sections by limit id."""
    found = re.findall(
        r'<section class="limit"[^>]*data-limit="([^"]+)">(.*?)</section>', page, re.S
    )
    return {html.unescape(lid): body for lid, body in found}


def rows(section: str) -> list[tuple[str, str, str]]:
    """(agent, counted per, used) of each row of a section, as a person reads them."""
    out = []
    for row in re.findall(r'<tr class="usage-row[^"]*">(.*?)</tr>', section, re.S):
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
        text = [html.unescape(re.sub(r"<[^>]+>", "", c)).split() for c in cells[:3]]
        out.append((" ".join(text[0]), text[1][0], text[2][0]))
    return out


def test_the_page_shows_what_each_agent_used_of_each_limit(site: Site) -> None:
    for _ in range(3):
        site.call("note", "writer", text="hello")
    site.call("note", HOSTILE, text="hi")
    site.call("refund", "writer", order_id="A1", amount=30)
    site.call("refund", "writer", order_id="A2", amount=12.5)
    site.call("refund", HOSTILE, order_id="B1", amount=100)
    for to in ("a@example.com", "a@example.com", "b@example.com"):
        site.call("email", "writer", to=to, body="x")
    exporters = [
        threading.Thread(target=site.call, args=("export", "writer"), kwargs={"table": t})
        for t in ("users", "orders")
    ]
    for t in exporters:
        t.start()
    for _ in exporters:
        assert site.running.acquire(timeout=10)

    with client_for(site) as client:
        page = client.get("/limits").text
        got = sections(page)
        assert list(got) == [
            "notes-per-hour",
            "refunds-per-day",
            "one-export",
            "mails-per-recipient",
            "never-used",
        ]
        assert sorted(rows(got["notes-per-hour"])) == sorted(
            [("writer", "agent", "3/3"), (HOSTILE, "agent", "1/3")]
        )
        assert sorted(rows(got["refunds-per-day"])) == sorted(
            [("writer", "agent", "42.5/100"), (HOSTILE, "agent", "100/100")]
        )
        assert rows(got["one-export"]) == [("writer", "agent", "2/2")]
        assert sorted(r[2] for r in rows(got["mails-per-recipient"])) == ["1/5", "2/5"]
        assert {r[1] for r in rows(got["mails-per-recipient"])} == {"value"}
        # A full limit is marked; one still with room is not.
        assert got["notes-per-hour"].count("FULL") == 1
        assert "Nothing used in its window" in got["never-used"]
        assert "SHADOW" in got["never-used"]
        # The terms as the policy gives them, and what happens past the limit.
        assert "at most 3/hour calls, per agent" in got["notes-per-hour"]
        assert "amount adds up to at most 100 per 1d" in got["refunds-per-day"]
        assert "deny" in got["notes-per-hour"]
        # Agent names and the policy's reason are text, never markup.
        assert "<img" not in page and "<b>too many" not in page
        assert html.escape(HOSTILE, quote=False) in page or "&lt;img" in page

        # The same figures as the CLI's.
        out = io.StringIO()
        cmd.limits(
            site.gate, as_json=True, io=cmd.IO(out=out, err=io.StringIO(), inp=io.StringIO())
        )
        cli = [json.loads(line) for line in out.getvalue().splitlines()]
        shown = {
            (lid, agent, used) for lid, body in got.items() for agent, _per, used in rows(body)
        }

        def fmt(v: float) -> str:
            return str(int(v)) if v == int(v) else f"{v:g}"

        assert shown == {(c["limit"], c["agent"], f"{fmt(c['used'])}/{fmt(c['max'])}") for c in cli}

        # One agent's rows only.
        mine = sections(client.get("/limits", params={"agent": "writer"}).text)
        assert rows(mine["refunds-per-day"]) == [("writer", "agent", "42.5/100")]
        assert (
            "Nothing used in its window by this agent"
            in sections(client.get("/limits", params={"agent": "nobody"}).text)["notes-per-hour"]
        )

    # Over its limit, the note is refused, and a refused call does not count.
    with pytest.raises(Exception, match="too many"):
        site.call("note", "writer", text="one more")
    site.release.set()
    for t in exporters:
        t.join(10)
    with client_for(site) as client:
        got = sections(client.get("/limits").text)
    assert ("writer", "agent", "3/3") in rows(got["notes-per-hour"])
    # The exports ended: their slots are free, so nothing is running.
    assert "Nothing used in its window" in got["one-export"]


def test_who_may_see_it(site: Site) -> None:
    with TestClient(site.app) as anon:
        signed_out = anon.get("/limits", follow_redirects=False)
        assert signed_out.status_code in (303, 401)
        assert "notes-per-hour" not in signed_out.text
        reader = anon.get("/limits", headers=bearer("tok-reader"))
        assert reader.status_code == 200
        assert 'data-limit="notes-per-hour"' in reader.text


def test_a_policy_without_limits_says_so(store: Store) -> None:
    site = Site(store, policy="version: 1\ndefault: allow\n")
    with client_for(site) as client:
        page = client.get("/limits")
    assert page.status_code == 200
    assert 'id="limits-none"' in page.text
    assert 'aria-current="page">Limits' in page.text
