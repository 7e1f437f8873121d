"""Every example in docs/policy.md loads (and the ones the prose explains behave so)."""

from __future__ import annotations

import datetime as dt
import re
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from gatekeeper.models import ToolCall, Verdict
from gatekeeper.policy import Policy

DOC = Path(__file__).resolve().parents[2] / "docs" / "policy.md"
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def blocks(language: str) -> list[str]:
    return [body for lang, body in BLOCK.findall(DOC.read_text()) if lang == language]


def full_policies() -> list[str]:
    return [b for b in blocks("yaml") if b.startswith("version: 1")]


def rule_fragments() -> list[str]:
    return [b for b in blocks("yaml") if b.startswith("- id:")]


@pytest.fixture(autouse=True)
def doc_predicate_module(monkeypatch: pytest.MonkeyPatch) -> None:
    """The docs' `python:` example names `myagent_rules:touches_production`."""
    module = types.ModuleType("myagent_rules")
    namespace: dict[str, Any] = {}
    exec(blocks("python")[1], namespace)
    module.touches_production = namespace["touches_production"]  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "myagent_rules", module)


def test_the_doc_has_examples_to_check() -> None:
    """Guard against the extraction silently finding nothing."""
    assert len(full_policies()) >= 7
    assert len(rule_fragments()) >= 10


@pytest.mark.parametrize("text", full_policies(), ids=lambda t: t.splitlines()[1][:30])
def test_every_full_policy_in_the_doc_loads(text: str) -> None:
    """A ```yaml block starting with `version: 1` is a policy that loads."""
    Policy.from_yaml(text, source="docs/policy.md")


@pytest.mark.parametrize("text", rule_fragments(), ids=lambda t: t.splitlines()[0][6:30])
def test_every_rule_snippet_in_the_doc_loads(text: str) -> None:
    """A ```yaml block starting with `- id:` is a valid rule list."""
    indented = "".join(f"  {line}\n" for line in text.splitlines())
    Policy.from_yaml(f"version: 1\nrules:\n{indented}", source="docs/policy.md")


def test_the_toml_example_loads() -> None:
    """The TOML section's example is a policy."""
    (text,) = blocks("toml")
    assert Policy.from_toml(text).rules[0].id == "read-only"


def _call(tool: str, args: dict[str, Any], agent: str = "bot") -> ToolCall:
    return ToolCall(
        id="c",
        tool=tool,
        args=args,
        args_digest="0" * 64,
        agent=agent,
        session_id="s",
        created_at=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
    )


def _doc_policy(rule_id: str) -> Policy:
    for text in full_policies():
        if f"- id: {rule_id}\n" in text:
            return Policy.from_yaml(text)
    raise AssertionError(f"no doc policy with rule {rule_id}")


def test_precedence_example_behaves_as_the_doc_says() -> None:
    """search_web(index=internal) is denied although the allow rule comes first."""
    policy = _doc_policy("allow-search")
    assert policy.classify(_call("search_web", {"index": "internal"})).verdict is Verdict.DENY
    assert policy.classify(_call("search_web", {"index": "web"})).verdict is Verdict.ALLOW


def test_approval_example_behaves_as_the_doc_says() -> None:
    """500 -> finance/2/15m; 50 -> oncall/1/1h."""
    policy = _doc_policy("any-refund")
    big = policy.classify(_call("refund", {"amount": 500})).approval
    small = policy.classify(_call("refund", {"amount": 50})).approval
    assert (big.group, big.quorum, big.timeout) == ("finance", 2, 900.0)
    assert (small.group, small.quorum, small.timeout) == ("oncall", 1, 3600.0)


def test_scopes_example_behaves_as_the_doc_says() -> None:
    """cancel_order from support-bot needs approval; get_order is allowed by default."""
    text = next(t for t in full_policies() if "support-bot" in t)
    policy = Policy.from_yaml(text)
    assert policy.classify(_call("cancel_order", {}, "support-bot")).verdict is (
        Verdict.REQUIRE_APPROVAL
    )
    assert policy.classify(_call("get_order", {}, "support-bot")).verdict is Verdict.ALLOW


def test_python_predicate_example_behaves_as_the_doc_says() -> None:
    """The documented predicate holds deploys that target production."""
    policy = _doc_policy("prod-deploys")
    assert policy.classify(_call("deploy", {"target": "prod-eu"})).verdict is (
        Verdict.REQUIRE_APPROVAL
    )
