"""Policy.misses: the rules naming a call's tool that did not match it, and the condition why."""

from __future__ import annotations

from typing import Any
from unittest import mock

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gatekeeper.models import Verdict
from gatekeeper.policy import Policy

from .test_policy_classify import make_call, make_policy, rule


def refund_policy(*extra: dict[str, Any]) -> Policy:
    return make_policy(
        rule(
            "big-refund", "require_approval", "submit_job", match={"args": {"amount": {"gt": 100}}}
        ),
        rule("other-tool", "deny", "delete_everything"),
        *extra,
    )


def test_the_default_verdict_names_the_rule_and_the_comparison_that_failed() -> None:
    """The issue's case: the reason says no rule matched; misses says which condition did not."""
    policy = refund_policy()
    call = make_call("submit_job", {"amount": 50})
    cls = policy.classify(call)
    assert cls.rules == ()
    assert cls.reasons == (
        "no rule matched tool 'submit_job'; the policy default is require_approval",
    )
    assert policy.misses(call) == ("rule big-refund: args.amount 50 is not > 100",)


def test_rules_that_matched_or_name_other_tools_are_not_listed() -> None:
    policy = refund_policy()
    assert policy.misses(make_call("submit_job", {"amount": 500})) == ()
    assert policy.misses(make_call("unknown_tool", {"amount": 50})) == ()


@pytest.mark.parametrize(
    ("match", "args", "agent", "why"),
    [
        ({"agent": ["billing-*", "ops"]}, {}, "bot", 'agent "bot" is not billing-*, ops'),
        ({"args": {"order": {"exists": True}}}, {}, "bot", "args.order is absent"),
        ({"args": {"env": "prod"}}, {"env": "dev"}, "bot", 'args.env "dev" is not "prod"'),
        (
            {"args": {"env": {"ne": "prod"}}},
            {"env": "prod"},
            "bot",
            'args.env "prod" is "prod", which the rule excludes (ne)',
        ),
        (
            {"args": {"url": {"host_in": ["api.example.com"]}}},
            {"url": "https://evil.example/x"},
            "bot",
            'args.url "https://evil.example/x" has a host not in ["api.example.com"]',
        ),
        (
            {"args": {"a": {"gt": 1}, "b": {"lt": 0}}},
            {"a": 5, "b": 3},
            "bot",
            "args.b 3 is not < 0",
        ),
        ({"args": {"deep.n": {"ge": 10}}}, {"deep": {"n": 2}}, "bot", "args.deep.n 2 is not >= 10"),
    ],
)
def test_the_first_failing_condition_is_named_in_words(
    match: dict[str, Any], args: dict[str, Any], agent: str, why: str
) -> None:
    policy = make_policy(rule("r", "deny", match=match))
    call = make_call(args=args, agent=agent)
    assert policy.classify(call).rules == ()
    assert policy.misses(call) == (f"rule r: {why}",)


def test_an_allow_rule_that_could_not_judge_a_value_says_so() -> None:
    """allow needs a definite match: a string compared with gt is a miss, and says why."""
    policy = make_policy(rule("small", "allow", match={"args": {"amount": {"lt": 100}}}))
    call = make_call(args={"amount": "50"})
    assert policy.classify(call).verdict is Verdict.REQUIRE_APPROVAL
    assert policy.misses(call) == (
        "rule small: could not evaluate args.amount (lt 100 on a str), "
        "and an allow rule needs a definite match",
    )


def test_agent_values_are_bounded_and_cannot_break_the_line_or_hide_characters() -> None:
    policy = make_policy(rule("r", "deny", match={"args": {"note": "ok"}}))
    hostile = "x\u202e\n12:00 approved by alice" + "y" * 5000
    (line,) = policy.misses(make_call(args={"note": hostile}))
    assert "\n" not in line and "\u202e" not in line
    assert 'args.note "x<U+202E>\\n12:00 approved by alice' in line  # JSON: \n stays two characters
    assert len(line) < 300


def test_the_list_is_bounded() -> None:
    policy = make_policy(*(rule(f"r{i}", "deny", match={"args": {"n": i}}) for i in range(15)))
    lines = policy.misses(make_call(args={"n": 99}))
    assert len(lines) == 11
    assert lines[0] == "rule r0: args.n 99 is not 0"
    assert lines[-1] == "and 5 more rule(s) that did not match"


def test_classify_never_computes_the_explanation() -> None:
    """The hot path stays as it was: misses is only for explaining."""
    policy = refund_policy()
    with mock.patch("gatekeeper.policy._compiled.CompiledRule.why_not", side_effect=AssertionError):
        policy.classify(make_call("submit_job", {"amount": 50}))


@given(
    amount=st.one_of(st.integers(), st.floats(allow_nan=True), st.text(), st.none()),
    agent=st.sampled_from(["bot", "billing-bot"]),
)
def test_a_rule_is_listed_exactly_when_it_does_not_apply(amount: Any, agent: str) -> None:
    """misses agrees with classify: a listed rule never decided, an unlisted one did."""
    policy = make_policy(
        rule("big", "deny", match={"args": {"amount": {"gt": 100}}, "agent": "billing-*"}),
        rule("small", "allow", match={"args": {"amount": {"le": 100}}}),
    )
    call = make_call(args={"amount": amount}, agent=agent)
    applied = {r.id for r in policy._candidates("tool") if r.evaluate(call)}
    listed = {line.split(":")[0].removeprefix("rule ") for line in policy.misses(call)}
    assert listed == {"big", "small"} - applied
