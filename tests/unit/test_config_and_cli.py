"""gatekeeper.yaml loading, and the CLI commands that need no shared store."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from gatekeeper import ConfigError, Gatekeeper, MemoryStore
from gatekeeper._config import load_config, parse_config
from gatekeeper.channels import ConsoleChannel
from gatekeeper.cli import main

POLICY = """\
version: 1
rules:
  - id: big-refund
    match: {tool: refund, args: {amount: {gt: 100}}}
    verdict: require_approval
    risk: high
    approval: {group: finance, quorum: 2, timeout: 15m}
  - id: read-only
    match: {tool: "search_*"}
    verdict: allow
sequences:
  - id: tunnel
    steps: [{tool: dns_lookup}, {tool: open_tunnel}]
    within: 10m
    verdict: halt
"""


def run(*argv: str, stdin: str = "") -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err, stdin=io.StringIO(stdin))
    return code, out.getvalue(), err.getvalue()


def test_env_interpolation_with_default_and_escape(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GK_PREFIX", "team-a")
    monkeypatch.delenv("GK_UNSET", raising=False)
    config = parse_config(
        "version: 1\n"
        "store: {url: '${GK_UNSET:-memory://}', prefix: '${GK_PREFIX}'}\n"
        "approvers: [{name: alice, email: 'cost-$${HOME}'}]\n"
    )
    assert config.store.url == "memory://"
    assert config.store.prefix == "team-a"
    assert config.approvers[0].email == "cost-${HOME}"


def test_missing_env_var_names_the_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GK_TOKEN", raising=False)
    with pytest.raises(ConfigError) as info:
        parse_config(
            "version: 1\napprovers: [{name: alice, slack_user_id: '${GK_TOKEN}'}]\n",
            source="g.yaml",
        )
    assert "approvers[0].slack_user_id" in str(info.value)
    assert "GK_TOKEN is not set" in str(info.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("version: 2\n", "g.yaml:1: version"),
        (
            "version: 1\nstore: {url: 'http://x'}\n",
            "g.yaml:2: store.url: must start with redis://, rediss://, unix://, redis+cluster://",
        ),
        ("version: 1\napprovers: [{name: alice, group: [x]}]\n", "approvers[0].group: unknown key"),
        ("version: 1\nchannels: [{type: carrier-pigeon}]\n", "channels[0]"),
        ("version: 1\ndefaults: {timeout: soon}\n", "defaults.timeout"),
        (
            "version: 1\nchannels: [{type: console, approver: zed}]\n",
            "'zed' is not one of the approvers",
        ),
        (
            "version: 1\napprovers: [{name: a}, {name: a}]\n",
            "approvers[1].name: 'a' is listed twice",
        ),
        ("version: 1\npolicy: {version: 1, default: maybe}\n", "policy: "),
        ("version: [1\n", "YAML syntax error"),
        ("- 1\n", "must be a mapping"),
    ],
)
def test_bad_configs_name_file_line_and_field(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text, source="g.yaml")
    assert expected in str(info.value)
    assert str(info.value).startswith("g.yaml")


def test_quorum_larger_than_its_group_is_refused() -> None:
    text = "version: 1\napprovers: [{name: alice, groups: [finance]}]\npolicy:\n" + "".join(
        "  " + line + "\n" for line in POLICY.splitlines()
    )
    with pytest.raises(ConfigError, match="rule 'big-refund' needs 2 approver"):
        parse_config(text, source="g.yaml")


def test_config_builds_a_working_gate(tmp_path: Path) -> None:
    (tmp_path / "policy.yaml").write_text(POLICY)
    (tmp_path / "gatekeeper.yaml").write_text(
        "version: 1\n"
        "approvers: [{name: alice, groups: [finance]}, {name: bob, groups: [finance]}]\n"
        "channels: [{type: console, approver: alice}]\n"
        "defaults: {timeout: 90s, agent: bot}\n"
        "policy: policy.yaml\n"
    )
    gate = Gatekeeper.from_config(tmp_path / "gatekeeper.yaml")
    assert isinstance(gate.store, MemoryStore)
    assert isinstance(gate.channels[0], ConsoleChannel)
    assert gate.default_timeout == 90
    assert set(gate.approvers or {}) == {"alice", "bob"}

    @gate.guard
    def search_docs(q: str) -> str:
        return q.upper()

    assert search_docs("x") == "X"  # allowed by the file's policy, default agent "bot"
    gate.close()


def test_init_writes_a_starter_that_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GATEKEEPER_REDIS_URL", raising=False)
    target = tmp_path / "gatekeeper.yaml"
    assert run("init", str(target))[0] == 0
    config = load_config(target)
    assert config.store.url == "memory://"
    assert {a.name for a in config.approvers} == {"alice", "bob"}
    code, _, err = run("init", str(target))
    assert code == 1 and "--force" in err
    assert run("init", str(target), "--force")[0] == 0


def test_missing_config_says_how_to_make_one(tmp_path: Path) -> None:
    code, _, err = run("--config", str(tmp_path / "nope.yaml"), "pending")
    assert code == 1 and "gatekeeper init" in err


def test_policy_check_counts_rules_sequences_and_limits(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    code, out, _ = run("policy", "check", str(path))
    assert code == 0
    assert "2 rule(s), 1 sequence(s), 0 limit(s), default" in out
    path.write_text(POLICY.replace("gt: 100", "gte: 100"))
    code, _, err = run("policy", "check", str(path))
    assert code == 1 and "rule 'big-refund'" in err and "match.args.amount" in err


def test_policy_check_takes_a_whole_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GATEKEEPER_REDIS_URL", raising=False)
    target = tmp_path / "gatekeeper.yaml"
    run("init", str(target))
    code, out, _ = run("policy", "check", str(target))
    assert code == 0
    assert "ok: config" in out and "2 approver(s)" in out and "3 rule(s)" in out
    target.write_text(target.read_text().replace("quorum: 2", "quorum: 3"))
    code, _, err = run("policy", "check", str(target))
    assert code == 1 and "needs 3 approver(s) from group 'finance'" in err


def test_policy_schema_is_json_schema() -> None:
    code, out, _ = run("policy", "schema")
    schema = json.loads(out)
    assert code == 0 and "rules" in schema["properties"]


def test_policy_explain_says_why(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    code, out, _ = run("policy", "explain", str(path), "refund", '{"amount": 500}')
    assert code == 0
    assert "verdict: require_approval" in out and "big-refund" in out
    assert "2 approver(s) from finance, waits 900s" in out
    code, out, _ = run("policy", "explain", str(path), "refund", '{"amount": 5}', "--irreversible")
    assert "refund is irreversible" in out and "risk:    high" in out
    code, _, err = run("policy", "explain", str(path), "refund", "[1]")
    assert code == 1 and "JSON object" in err


def test_policy_explain_names_the_condition_a_rule_naming_the_tool_failed(tmp_path: Path) -> None:
    """Not only "no rule matched tool 'refund'": which condition of which rule did not."""
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    code, out, _ = run("policy", "explain", str(path), "refund", '{"amount": 50}')
    assert code == 0
    assert out.endswith(
        "reasons:\n"
        "  - no rule matched tool 'refund'; the policy default is require_approval\n"
        "not matched:\n"
        "  - rule big-refund: args.amount 50 is not > 100\n"
        "approval: 1 approver(s) from any group, waits the config default\n"
    )
    code, out, _ = run("policy", "explain", str(path), "refund", '{"amount": 500}')
    assert "not matched" not in out


def test_demo_runs_the_scripted_agent_with_terminal_decisions() -> None:
    answers = "y\nfine\nn\nno renting\nn\nuse the internal bucket\n"
    code, out, _ = run("demo", "--terminal", stdin=answers)
    assert code == 0
    assert "ran: job 'train.py' queued on 64 GPU(s)" in out
    assert 'Tool call denied by you: "no renting"' in out
    assert "denied by policy: system and key files are off limits" in out
    assert "halted the agent trainer-bot" in out
    assert "agent trainer-bot is halted" in out
    assert "chain intact" in out


def test_the_console_secret_is_needed_only_to_serve(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unset ${GATEKEEPER_WEB_SECRET} doesn't stop the other commands; serving says why."""
    monkeypatch.delenv("GK_TEST_WEB_SECRET", raising=False)
    path = tmp_path / "gatekeeper.yaml"
    path.write_text(
        "version: 1\napprovers: [{name: alice}]\nweb: {secret_key: '${GK_TEST_WEB_SECRET}'}\n"
    )
    assert load_config(path).web is None
    assert run("policy", "check", str(path))[0] == 0
    code, _, err = run("--config", str(path), "web", "login-link", "--as", "alice")
    assert code == 1 and "GK_TEST_WEB_SECRET is not set" in err
