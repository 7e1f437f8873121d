"""The Slack channel from gatekeeper.yaml, and the app manifest in docs/slack.md."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from gatekeeper import ConfigError, Gatekeeper
from gatekeeper._config import parse_config
from gatekeeper.channels.slack import SlackChannel
from gatekeeper.store import MemoryStore

ROOT = Path(__file__).resolve().parents[2]

CONFIG = """
version: 1
approvers:
  - {name: alice, groups: [finance], slack_user_id: U0ALICE}
  - {name: oncall, groups: [finance], slack_usergroup: S0ONCALL}
channels:
  - type: slack
    {target}
    team_id: T0123
    base_url: http://127.0.0.1:9/api/
    usergroup_ttl: 10m
    max_wait: 1m
"""


@pytest.fixture(autouse=True)
def _no_slack_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "SLACK_SIGNING_SECRET"):
        monkeypatch.delenv(name, raising=False)


def test_a_slack_channel_is_built_from_the_file_with_tokens_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-from-env")
    config = parse_config(CONFIG.replace("{target}", "channel: C0APPROVE"), source="g.yaml")
    (channel,) = config.build_channels()
    assert isinstance(channel, SlackChannel)
    assert channel.channel == "C0APPROVE"
    assert channel.client.token == "xoxb-from-env"
    assert channel.client.base_url == "http://127.0.0.1:9/api/"
    assert channel.usergroup_ttl == 600.0
    assert channel.call.max_wait == 60.0
    assert channel.client.retry_handlers == []  # our retry policy only


def test_the_file_never_needs_the_tokens_until_a_channel_is_built() -> None:
    config = parse_config(CONFIG.replace("{target}", "dm: true"), source="g.yaml")  # no env: fine
    with pytest.raises(ConfigError, match="SLACK_BOT_TOKEN"):
        config.build_channels()


@pytest.mark.parametrize(
    ("target", "problem"),
    [
        ("channel: C0APPROVE\n    dm: true", "either channel"),
        ("dm: false", "either channel"),
        ("channel: '#approvals'", "channels[0].channel: must be a channel id"),
    ],
)
def test_a_slack_channel_needs_exactly_one_target(target: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(CONFIG.replace("{target}", target), source="g.yaml")
    assert problem in str(info.value)
    assert "g.yaml" in str(info.value)


def test_serve_gets_socket_mode_or_the_request_url_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = parse_config(CONFIG.replace("{target}", "channel: C0APPROVE"), source="g.yaml")
    gate = Gatekeeper(store=MemoryStore(), approvers=config.approvers)
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-from-env")
    with pytest.raises(ConfigError, match=r"SLACK_APP_TOKEN.*SLACK_SIGNING_SECRET"):
        config.slack_service(gate)

    monkeypatch.setenv("SLACK_SIGNING_SECRET", "shh")
    http = config.slack_service(gate)
    assert http is not None and http.verifier is not None and http.socket is None
    assert http.interactions.team_id == "T0123"

    monkeypatch.setenv("SLACK_APP_TOKEN", "xapp-from-env")
    both = config.slack_service(gate)
    assert both is not None and both.socket is not None and both.verifier is not None
    assert both.channel.approvers.slack_ids() == {"alice": "U0ALICE"}


def test_no_slack_channel_means_no_slack_service() -> None:
    config = parse_config("version: 1\n", source="g.yaml")
    assert config.slack_service(Gatekeeper(store=MemoryStore())) is None


def test_slack_ids_in_the_approver_list_are_checked() -> None:
    with pytest.raises(ConfigError, match="slack_usergroup"):
        parse_config(
            "version: 1\napprovers: [{name: a, slack_usergroup: oncall-team}]\n", source="g.yaml"
        )


def test_the_manifest_in_the_docs_asks_for_what_the_channel_uses() -> None:
    page = (ROOT / "docs" / "slack.md").read_text(encoding="utf-8")
    block = re.search(r"```yaml\n(\s*display_information:.*?)```", page, re.DOTALL)
    assert block is not None, "no app manifest in docs/slack.md"
    manifest = yaml.safe_load(_dedent(block.group(1)))
    scopes = set(manifest["oauth_config"]["scopes"]["bot"])
    # chat.postMessage / chat.update / chat.postEphemeral / views.open need chat:write
    # (views.open needs no scope of its own); usergroups.users.list needs usergroups:read.
    assert {"chat:write", "usergroups:read", "im:write"} <= scopes
    assert manifest["settings"]["interactivity"]["is_enabled"] is True
    assert manifest["settings"]["socket_mode_enabled"] is True


def _dedent(text: str) -> str:
    lines = text.splitlines()
    indent = min(len(line) - len(line.lstrip()) for line in lines if line.strip())
    return "\n".join(line[indent:] for line in lines)
