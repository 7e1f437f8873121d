"""``approval.escalate_after``: a duration, merged like ``timeout``, in the JSON schema."""

from __future__ import annotations

import datetime as dt
import textwrap
from typing import Any

import pytest

from gatekeeper._errors import PolicyError
from gatekeeper.models import ApprovalRequirement, ToolCall, Verdict
from gatekeeper.policy import Policy

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def make_call(tool: str = "tool", **fields: Any) -> ToolCall:
    fields.setdefault("agent", "bot")
    return ToolCall(
        id="call-1",
        tool=tool,
        args={},
        args_digest="0" * 64,
        session_id="s-1",
        created_at=NOW,
        **fields,
    )


def make_policy(*rules: dict[str, Any], **top: Any) -> Policy:
    return Policy.from_mapping({"version": 1, "rules": list(rules), **top})


def rule(rule_id: str, verdict: str, tool: Any = "tool", **extra: Any) -> dict[str, Any]:
    return {"id": rule_id, "match": {"tool": tool}, "verdict": verdict, **extra}


def test_a_rules_escalate_after_is_in_seconds() -> None:
    policy = make_policy(rule("r", "require_approval", approval={"escalate_after": "10m"}))
    approval = policy.classify(make_call()).approval
    assert approval.escalate_after == 600.0


@pytest.mark.parametrize(("written", "seconds"), [(90, 90.0), ("1h30m", 5400.0), (0.5, 0.5)])
def test_escalate_after_takes_every_duration_form(written: Any, seconds: float) -> None:
    policy = make_policy(rule("r", "require_approval", approval={"escalate_after": written}))
    assert policy.classify(make_call()).approval.escalate_after == seconds


def test_the_shortest_escalate_after_of_the_applying_rules_wins() -> None:
    policy = make_policy(
        rule("a", "require_approval", approval={"escalate_after": "30m"}),
        rule("b", "require_approval", approval={"escalate_after": "10m", "group": "finance"}),
        rule("c", "require_approval", approval={"quorum": 2}),  # sets none: no say
    )
    approval = policy.classify(make_call()).approval
    assert (approval.group, approval.quorum, approval.escalate_after) == ("finance", 2, 600.0)


def test_losing_verdicts_dont_escalate() -> None:
    """Only the rules that require approval count, as for timeout."""
    policy = make_policy(
        rule("hold", "require_approval", approval={"escalate_after": "1h"}),
        rule("halt", "halt"),
    )
    result = policy.classify(make_call())
    assert result.verdict is Verdict.HALT
    assert result.approval == ApprovalRequirement()


def test_the_default_applies_when_no_rule_sets_one() -> None:
    policy = make_policy(
        rule("a", "require_approval", approval={"group": "finance", "timeout": "1h"}),
        rule("ok", "allow", tool="read_*"),
        defaults={"approval": {"group": "ops", "escalate_after": "5m"}},
    )
    assert policy.classify(make_call()).approval.escalate_after == 300.0
    assert policy.classify(make_call("unmatched")).approval.escalate_after == 300.0
    escalated = policy.classify(make_call("read_x", irreversible=True))
    assert escalated.verdict is Verdict.REQUIRE_APPROVAL
    assert escalated.approval.escalate_after == 300.0


def test_a_rule_overrides_the_default_even_when_longer() -> None:
    policy = make_policy(
        rule("a", "require_approval", approval={"escalate_after": "2h"}),
        defaults={"approval": {"escalate_after": "5m"}},
    )
    assert policy.classify(make_call()).approval.escalate_after == 7200.0


def test_no_escalate_after_anywhere_is_none() -> None:
    policy = make_policy(rule("a", "require_approval", approval={"timeout": "1h"}))
    assert policy.classify(make_call()).approval.escalate_after is None
    assert Policy.empty().classify(make_call()).approval.escalate_after is None


@pytest.mark.parametrize("value", ["soon", -1, 0, "15 minutes", True])
def test_an_invalid_escalate_after_is_a_policy_error_naming_the_field(value: Any) -> None:
    text = textwrap.dedent(
        f"""\
        version: 1
        rules:
          - id: hold
            verdict: require_approval
            approval:
              escalate_after: {value if not isinstance(value, bool) else "true"}
        """
    )
    with pytest.raises(PolicyError) as info:
        Policy.from_yaml(text, source="team.yaml")
    error = info.value
    assert (error.rule, error.field, error.line) == ("hold", "approval.escalate_after", 6)
    assert str(error).startswith("team.yaml:6: rule 'hold': approval.escalate_after: ")
    assert "invalid duration" in str(error)


def test_an_invalid_default_escalate_after_names_the_field() -> None:
    with pytest.raises(PolicyError) as info:
        make_policy(defaults={"approval": {"escalate_after": "soon"}})
    assert "defaults.approval.escalate_after" in str(info.value)
    assert "invalid duration 'soon'" in str(info.value)


def test_escalate_after_only_with_require_approval() -> None:
    with pytest.raises(PolicyError, match="only a require_approval rule may set approval"):
        make_policy(rule("a", "allow", approval={"escalate_after": "10m"}))


def test_the_json_schema_describes_escalate_after() -> None:
    spec = Policy.json_schema()["$defs"]["ApprovalSpec"]["properties"]["escalate_after"]
    assert spec["default"] is None
    assert "remind" in spec["description"]
    assert (
        spec["anyOf"][0]
        == (Policy.json_schema()["$defs"]["ApprovalSpec"]["properties"]["timeout"]["anyOf"][0])
    )


def test_approval_requirement_refuses_a_non_positive_escalate_after() -> None:
    with pytest.raises(ValueError, match="greater than 0"):
        ApprovalRequirement(escalate_after=0)
    assert ApprovalRequirement(escalate_after=1.5).escalate_after == 1.5
