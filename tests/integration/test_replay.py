"""Policy replay: a candidate policy run over the recorded audit log.

A scripted agent (a real gate on MemoryStore and on RedisStore) makes calls
that rules allow, hold and deny, that a limit holds past its count, that a
sequence escalates and that a novelty rule holds; a person approves some and
denies others. Replaying the log under the policy that produced it must
report no change; under a stricter candidate, exactly the changes expected;
under a looser one, the reverse. The CLI reads the store or an
``audit export`` file and prints the same report.
"""

from __future__ import annotations

import contextlib
import contextvars
import io
import json
import threading
from pathlib import Path
from typing import Any

from gatekeeper import Gatekeeper, Policy
from gatekeeper._replay import events_from_store, replay
from gatekeeper.cli import _commands as cmd
from gatekeeper.store import Store
from gatekeeper.testing import RecordingChannel
from tests.webkit import APPROVERS

POLICY = """
version: 1
default: allow
rules:
  - {id: payments-need-a-person, match: {tool: pay}, verdict: require_approval}
  - {id: no-drop, match: {tool: sql, args: {query: {regex: '(?i)drop'}}}, verdict: deny}
sequences:
  - id: read-then-post
    steps: [{tool: read_secret}, {tool: post}]
    within: 10m
    verdict: require_approval
limits:
  - {id: mail-rate, match: {tool: send_email}, rate: 3/hour}
novelty:
  - {id: new-hosts, match: {tool: fetch}, new: host(args.url)}
"""

# Stricter: emails 2/hour, a post after a secret read halts, every sql waits.
STRICTER = (
    POLICY.replace("rate: 3/hour", "rate: 2/hour")
    .replace("    verdict: require_approval\nlimits", "    verdict: halt\nlimits")
    .replace(
        "  - {id: no-drop,",
        "  - {id: sql-waits, match: {tool: sql}, verdict: require_approval}\n  - {id: no-drop,",
    )
)
# Looser: payments run unattended.
LOOSER = POLICY.replace(
    "verdict: require_approval}\n  - {id: no-drop", "verdict: allow}\n  - {id: no-drop"
)


def record(store: Store) -> Gatekeeper:
    """The scripted day the tests replay (see the module docstring)."""
    channel = RecordingChannel()
    gate = Gatekeeper(
        policy=Policy.from_yaml(POLICY),
        store=store,
        approvers=APPROVERS,
        channels=[channel],
        default_timeout=30,
    )

    def pay(amount: str) -> str:
        return "paid"

    def sql(query: str) -> str:
        return "rows"

    def read_secret(name: str) -> str:
        return "s3cr3t"

    def post(url: str) -> str:
        return "posted"

    def send_email(to: str) -> str:
        return "sent"

    def fetch(url: str) -> str:
        return "page"

    tools = {f.__name__: gate.guard(f) for f in (pay, sql, read_secret, post, send_email, fetch)}

    def held(name: str, arg: str, approve: bool) -> None:
        seen = len(channel.notified)
        context = contextvars.copy_context()  # the thread calls in this session too
        thread = threading.Thread(target=lambda: context.run(_quiet, tools[name], arg), daemon=True)
        thread.start()
        req = channel.wait_for_request(seen + 1)
        if approve:
            gate.approve(req.id, approver="alice")
        else:
            gate.deny(req.id, approver="alice", comment="no")
        thread.join(10)

    with gate.session(agent="ops-bot", session_id="day-1"):
        held("pay", "100", approve=True)
        held("pay", "5000", approve=False)
        tools["sql"]("select 1")
        _quiet(tools["sql"], "DROP TABLE users")
        tools["read_secret"]("db")
        held("post", "https://paste.example", approve=False)  # the sequence holds it
        for _ in range(3):
            tools["send_email"]("a@x")
        held("send_email", "a@x", approve=True)  # the fourth passes the limit
        held("fetch", "https://api.example/1", approve=True)  # new host
        tools["fetch"]("https://api.example/2")  # known now
    gate.store.flush()
    return gate


def _quiet(fn: Any, arg: str) -> None:
    with contextlib.suppress(Exception):  # a denial: what the log records is what counts
        fn(arg)


def test_the_policy_that_made_the_log_reports_no_change(store: Store) -> None:
    gate = record(store)
    report = replay(Policy.from_yaml(POLICY), events_from_store(gate.store.audit_entries()))
    assert report.calls == 12
    assert report.changed == 0 and report.same == 12, report.as_json()


def test_a_stricter_candidate_reports_exactly_what_it_tightens(store: Store) -> None:
    gate = record(store)
    report = replay(Policy.from_yaml(STRICTER), events_from_store(gate.store.audit_entries()))
    got = dict(report.changes)
    assert got == {
        ("allow", "require_approval"): 2,  # the plain sql; the third email (2/hour now)
        ("require_approval", "halt"): 1,  # the post after the secret read
    }, report.as_json()
    (post,) = report.examples[("require_approval", "halt")]
    assert post.tool == "post" and "sequence read-then-post" in post.reasons[0]
    tools = sorted(c.tool for c in report.examples[("allow", "require_approval")])
    assert tools == ["send_email", "sql"]


def test_a_looser_candidate_reports_the_reverse(store: Store) -> None:
    gate = record(store)
    report = replay(Policy.from_yaml(LOOSER), events_from_store(gate.store.audit_entries()))
    assert dict(report.changes) == {("require_approval", "allow"): 2}
    assert {c.tool for c in report.examples[("require_approval", "allow")]} == {"pay"}


def test_the_cli_replays_the_store_or_an_export_file(store: Store, tmp_path: Path) -> None:
    gate = record(store)
    candidate = tmp_path / "candidate.yaml"
    candidate.write_text(STRICTER)
    export = tmp_path / "audit.jsonl"
    out = io.StringIO()
    quiet = cmd.IO(out=io.StringIO(), err=io.StringIO(), inp=io.StringIO())
    cmd.audit_export(gate, str(export), quiet)

    def run(**kw: Any) -> str:
        out = io.StringIO()
        streams = cmd.IO(out=out, err=io.StringIO(), inp=io.StringIO())
        code = cmd.policy_replay(None, str(candidate), since=None, io=streams, **kw)
        assert code == 0
        return out.getvalue()

    from_file = json.loads(run(source=str(export), as_json=True))
    assert from_file["calls"] == 12 and from_file["changed"] == 3
    text = run(source=str(export), as_json=False)
    assert text.splitlines()[0].endswith("9 the same, 3 changed")
    assert "  allow -> require_approval: 2" in text
    assert "  require_approval -> halt: 1" in text
    del out


def test_calls_a_grant_let_through_replay_as_the_holds_they_were(store: Store) -> None:
    channel = RecordingChannel()
    gate = Gatekeeper(
        policy=Policy.from_yaml(POLICY),
        store=store,
        approvers=APPROVERS,
        channels=[channel],
        default_timeout=30,
    )

    def pay(amount: str) -> str:
        return "paid"

    guarded = gate.guard(pay)
    thread = threading.Thread(target=_quiet, args=(guarded, "100"), daemon=True)
    thread.start()
    req = channel.wait_for_request(1)
    gate.approve(req.id, approver="alice", grant_for=3600)
    thread.join(10)
    assert guarded("100") == "paid"  # the standing approval lets it through
    assert guarded("100") == "paid"
    gate.store.flush()
    report = replay(Policy.from_yaml(POLICY), events_from_store(gate.store.audit_entries()))
    assert report.calls == 3 and report.changed == 0, report.as_json()
