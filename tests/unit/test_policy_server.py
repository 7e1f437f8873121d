"""The policy's ``server`` field (calls through ``gatekeeper mcp``) and ``Policy.insist``.

``server:`` in a rule, a sequence step, a limit or a novelty rule matches the
MCP upstream a call came through; a call made in the agent's own process has
none and never matches it. A policy that names no server serialises (and so
digests) as before the field existed. ``insist`` makes a person look at a
call the policy would allow, and never makes a call less strict.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from gatekeeper.models import ToolCall, Verdict
from gatekeeper.policy import Policy
from gatekeeper.policy._behaviour import CompiledSequence

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)

POLICY = {
    "version": 1,
    "default": "allow",
    "rules": [
        {"id": "git-writes", "match": {"tool": "git__*", "server": "git"}, "verdict": "deny"},
        {
            "id": "mail",
            "match": {"tool": "send", "server": ["mail-*"]},
            "verdict": "require_approval",
            "approval": {"group": "ops"},
        },
    ],
    "sequences": [
        {
            "id": "fetch-then-push",
            "within": "1h",
            "verdict": "deny",
            "steps": [{"tool": "fetch", "server": "web"}, {"tool": "push"}],
        }
    ],
}


def make_call(tool: str, server: str | None = None, **fields: Any) -> ToolCall:
    return ToolCall(
        id="call-1",
        tool=tool,
        args={},
        args_digest="0" * 64,
        agent="bot",
        session_id="s-1",
        created_at=NOW,
        server=server,
        **fields,
    )


@pytest.fixture(scope="module")
def policy() -> Policy:
    return Policy.from_mapping(POLICY)


@pytest.mark.parametrize(
    ("tool", "server", "verdict"),
    [
        ("git__git_commit", "git", Verdict.DENY),
        ("git__git_commit", "time", Verdict.ALLOW),  # another upstream's tool of that name
        ("git__git_commit", None, Verdict.ALLOW),  # an in-process tool never matches server:
        ("send", "mail-eu", Verdict.REQUIRE_APPROVAL),
        ("send", "mailer", Verdict.ALLOW),
    ],
)
def test_server_matches_the_upstream(
    policy: Policy, tool: str, server: str | None, verdict: Verdict
) -> None:
    assert policy.classify(make_call(tool, server)).verdict is verdict


def test_explain_names_the_server(policy: Policy) -> None:
    assert policy.misses(make_call("git__git_commit", "time")) == (
        'rule git-writes: server "time" is not git',
    )
    assert policy.misses(make_call("git__git_commit")) == (
        "rule git-writes: the call comes through no MCP server, not git",
    )


def test_a_sequence_step_matches_the_server(policy: Policy) -> None:
    seq = CompiledSequence(policy.document.sequences[0], 0)
    assert seq.positives[0].matches(make_call("fetch", "web"), definite=True)
    assert not seq.positives[0].matches(make_call("fetch", "other"), definite=True)
    assert not seq.positives[0].matches(make_call("fetch"), definite=True)


def test_a_policy_without_server_dumps_as_before() -> None:
    plain = Policy.from_mapping(
        {"version": 1, "rules": [{"id": "r", "match": {"tool": "x"}, "verdict": "deny"}]}
    )
    assert "server" not in plain.document.model_dump(mode="json")["rules"][0]["match"]
    assert "server" not in make_call("x").model_dump(mode="json")
    assert make_call("x", "git").model_dump(mode="json")["server"] == "git"


def test_insist_holds_an_allowed_call_and_never_lowers(policy: Policy) -> None:
    allowed = policy.classify(make_call("other", "git"))
    held = policy.insist(allowed, "mcp-tool-changed", "its description changed")
    assert held.verdict is Verdict.REQUIRE_APPROVAL
    assert held.rules[0] == "mcp-tool-changed"
    assert held.reasons == ("its description changed",)
    assert held.risk.level >= 2
    asked = policy.classify(make_call("send", "mail-eu"))
    both = policy.insist(asked, "mcp-tool-changed", "its description changed")
    assert both.verdict is Verdict.REQUIRE_APPROVAL
    assert both.approval.group == "ops"  # the rule's approval requirement stays
    assert both.reasons[0] == "its description changed" and len(both.reasons) == 2
    denied = policy.classify(make_call("git__x", "git"))
    assert policy.insist(denied, "mcp-tool-changed", "x") == denied
