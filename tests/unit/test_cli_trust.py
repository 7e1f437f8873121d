"""`gatekeeper keys generate` and `gatekeeper acl`: what they print, and from which config."""

from __future__ import annotations

import io
import shlex
from pathlib import Path

import pytest

from gatekeeper._config import parse_config
from gatekeeper.cli import main
from gatekeeper.store._acl import acl_user


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def setusers(text: str) -> list[list[str]]:
    return [shlex.split(line) for line in text.splitlines() if line.startswith("ACL SETUSER")]


@pytest.fixture(autouse=True)
def no_config_around(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts where no ./gatekeeper.yaml and no $GATEKEEPER_CONFIG are found."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GATEKEEPER_CONFIG", raising=False)


def test_keys_generate_prints_the_signing_key_for_deciders_and_the_trusted_keys(
    tmp_path: Path,
) -> None:
    code, out, _ = run("keys", "generate", "--dir", str(tmp_path / "k"), "--id", "k1")
    assert code == 0
    lines = out.splitlines()
    start = lines.index("decisions:")
    signing, trusted = lines[start + 1], lines[start + 2]
    pem = (tmp_path / "k" / "decider.pem").resolve()
    assert signing == f"  signing_key: {pem}  # deciding processes only"
    assert trusted.startswith("  trusted_keys: {k1: ") and trusted.endswith("  # every process")
    config = parse_config("version: 1\n" + "\n".join(lines[start : start + 3]) + "\n")
    keys = config.decision_keys()  # what was printed is a config that loads, and can decide
    assert keys.can_decide
    assert keys.signer().key_id == "k1"


def test_acl_takes_the_prefix_from_the_config(tmp_path: Path) -> None:
    config = tmp_path / "cfg.yaml"
    config.write_text("version: 1\nstore: {url: 'memory://', prefix: acme-billing}\n")
    code, out, _ = run("-c", str(config), "acl", "--agent", "bot")
    assert code == 0
    users = [argv[2] for argv in setusers(out)]
    assert users == ["acme-billing-agent-bot", "acme-billing-decider", "acme-billing-auditor"]
    assert f"store.prefix of {config}" in out
    code, out, _ = run("-c", str(config), "acl", "--agent", "bot", "--prefix", "other")
    assert setusers(out)[0][2] == "other-agent-bot"  # --prefix still wins


def test_acl_finds_the_config_in_the_working_directory_or_uses_the_default(
    tmp_path: Path,
) -> None:
    code, out, _ = run("acl", "--agent", "bot")
    assert code == 0 and setusers(out)[0][2] == "gatekeeper-agent-bot"
    (tmp_path / "gatekeeper.yaml").write_text("version: 1\nstore: {prefix: found}\n")
    code, out, _ = run("acl", "--agent", "bot")
    assert code == 0 and setusers(out)[0][2] == "found-agent-bot"


def test_acl_adds_one_agent_without_resetting_the_other_roles() -> None:
    """Pasting all of the output must not give running deciders new passwords."""
    code, out, _ = run("acl", "--role", "agents", "--agent", "new-bot")
    assert code == 0
    assert [argv[2] for argv in setusers(out)] == ["gatekeeper-agent-new-bot"]
    assert "decider" not in out.split("# store URLs")[1]
    code, out, _ = run("acl", "--role", "decider", "--role", "auditor")
    assert [argv[2] for argv in setusers(out)] == ["gatekeeper-decider", "gatekeeper-auditor"]
    code, out, _ = run("acl", "--agent", "a")  # by default: every role
    assert [argv[2] for argv in setusers(out)] == [
        "gatekeeper-agent-a",
        "gatekeeper-decider",
        "gatekeeper-auditor",
    ]


def test_acl_says_reset_sets_new_passwords_and_that_users_must_be_saved() -> None:
    _, out, _ = run("acl", "--agent", "a")
    comments = " ".join(line for line in out.splitlines() if line.startswith("#"))
    assert "`reset` gives a user a new password" in comments
    assert "ACL SAVE" in comments and "CONFIG REWRITE" in comments
    assert all("reset" in argv for argv in setusers(out))


def test_acl_names_whose_hashed_user_is_whose() -> None:
    code, out, _ = run("acl", "--role", "agents", "--agent", "billing bot", "--agent", "ok")
    assert code == 0
    hashed = acl_user("gatekeeper", "agent", "billing bot")
    assert hashed.startswith("gatekeeper-agent-h")
    assert f"#   agent 'billing bot': user {hashed} (a hash of the name" in out
    assert "#   agent 'ok': user gatekeeper-agent-ok\n" in out


@pytest.mark.parametrize(
    ("argv", "problem"),
    [
        (["acl"], "name at least one agent"),
        (["acl", "--role", "agents"], "name at least one agent"),
        (["acl", "--role", "decider", "--agent", "a"], "--agent needs --role agents"),
    ],
)
def test_acl_refuses_contradictory_options(argv: list[str], problem: str) -> None:
    code, out, err = run(*argv)
    assert code == 1
    assert problem in err
    assert not setusers(out)
