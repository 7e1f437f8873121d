"""Policy.classify: precedence, default, scopes, irreversibility, risk, approval, predicates."""

from __future__ import annotations

import datetime as dt
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gatekeeper.models import Classification, HaltScope, Risk, ToolCall, Verdict
from gatekeeper.policy import Policy

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def make_call(tool: str = "tool", args: dict[str, Any] | None = None, **fields: Any) -> ToolCall:
    fields.setdefault("agent", "bot")
    return ToolCall(
        id="call-1",
        tool=tool,
        args=args or {},
        args_digest="0" * 64,
        session_id="s-1",
        created_at=NOW,
        **fields,
    )


def make_policy(*rules: dict[str, Any], **top: Any) -> Policy:
    return Policy.from_mapping({"version": 1, "rules": list(rules), **top})


def rule(rule_id: str, verdict: str, tool: Any = "tool", **extra: Any) -> dict[str, Any]:
    match = extra.pop("match", {})
    return {"id": rule_id, "match": {"tool": tool, **match}, "verdict": verdict, **extra}


# -- precedence --------------------------------------------------------------------------

STRICTNESS = ["allow", "require_approval", "deny", "halt"]


@pytest.mark.parametrize("order", [STRICTNESS, STRICTNESS[::-1], ["deny", "allow", "halt"]])
def test_strictest_applying_verdict_wins_whatever_the_file_order(order: list[str]) -> None:
    """halt > deny > require_approval > allow, independent of where the rules are written."""
    policy = make_policy(*(rule(f"r-{v}", v) for v in order))
    result = policy.classify(make_call())
    assert result.verdict is Verdict.HALT
    assert result.rules == ("r-halt",)


def test_rules_lists_every_applying_rule_with_the_winning_verdict_in_file_order() -> None:
    """Classification.rules names the rules that decided, not the ones that lost."""
    policy = make_policy(
        rule("b-deny", "deny"), rule("a-hold", "require_approval"), rule("c-deny", "deny")
    )
    result = policy.classify(make_call())
    assert result.rules == ("b-deny", "c-deny")
    assert result.reasons == ("rule b-deny matched", "rule c-deny matched")


def test_no_matching_rule_gives_the_default_with_a_reason() -> None:
    """Unmatched calls get `default`, and the reason says so."""
    result = make_policy(rule("other", "allow", tool="other")).classify(make_call("foo"))
    assert result.verdict is Verdict.REQUIRE_APPROVAL
    assert result.rules == ()
    assert result.reasons == ("no rule matched tool 'foo'; the policy default is require_approval",)
    assert result.risk is Risk.MEDIUM


def test_default_policy_requires_approval_for_everything() -> None:
    """Policy.empty() is the fail-safe: no rules, require_approval."""
    policy = Policy.empty()
    assert policy.default is Verdict.REQUIRE_APPROVAL
    assert policy.rules == ()
    assert policy.classify(make_call("anything")).verdict is Verdict.REQUIRE_APPROVAL


def test_policy_default_verdict_is_configurable() -> None:
    """`default: deny` refuses unmatched calls, with risk derived from the verdict."""
    result = make_policy(default="deny").classify(make_call())
    assert (result.verdict, result.risk) == (Verdict.DENY, Risk.HIGH)


def test_rule_reason_is_used_when_given() -> None:
    """A rule's `reason` is the sentence shown to people."""
    policy = make_policy(rule("ro", "allow", reason="read-only tools are safe"))
    assert policy.classify(make_call()).reasons == ("read-only tools are safe",)


def test_agent_glob_limits_a_rule_to_matching_agents() -> None:
    """`agent:` globs (and lists) select agents; others fall to the default."""
    policy = make_policy(rule("billing", "allow", match={"agent": ["billing-*", "ops"]}))
    assert policy.classify(make_call(agent="billing-bot")).verdict is Verdict.ALLOW
    assert policy.classify(make_call(agent="ops")).verdict is Verdict.ALLOW
    assert policy.classify(make_call(agent="support")).verdict is Verdict.REQUIRE_APPROVAL


def test_tool_globs_are_case_sensitive_fnmatch() -> None:
    """`search_*` matches search_web, not Search_web."""
    policy = make_policy(rule("ro", "allow", tool="search_*"))
    assert policy.classify(make_call("search_web")).verdict is Verdict.ALLOW
    assert policy.classify(make_call("Search_web")).verdict is Verdict.REQUIRE_APPROVAL


# -- three-valued logic at rule level ------------------------------------------------------


def test_unknown_makes_a_strict_rule_apply_and_says_so() -> None:
    """A require_approval/deny/halt rule applies on unknown, with a reason naming the gap."""
    policy = make_policy(
        rule(
            "big-refund", "require_approval", tool="refund", match={"args": {"amount": {"gt": 100}}}
        )
    )
    result = policy.classify(make_call("refund", {"amount": "100000"}))
    assert result.verdict is Verdict.REQUIRE_APPROVAL
    assert result.rules == ("big-refund",)
    assert result.reasons == (
        "rule big-refund: could not evaluate args.amount (gt 100 on a str); treated as matching",
    )


def test_unknown_never_lets_an_allow_rule_apply() -> None:
    """An allow rule needs a definite match; unknown falls through to the default."""
    policy = make_policy(rule("small", "allow", match={"args": {"amount": {"le": 100}}}))
    assert policy.classify(make_call(args={"amount": 5})).verdict is Verdict.ALLOW
    assert policy.classify(make_call(args={"amount": "5"})).verdict is Verdict.REQUIRE_APPROVAL


def test_absent_arg_does_not_trigger_a_broad_deny_rule() -> None:
    """A `tool: "*"` deny on `path` leaves tools without a `path` arg alone."""
    policy = make_policy(
        rule("no-etc", "deny", tool="*", match={"args": {"path": {"path_under": ["/etc"]}}}),
        rule("ok", "allow", tool="*"),
    )
    assert policy.classify(make_call("search", {"q": "x"})).verdict is Verdict.ALLOW
    assert policy.classify(make_call("read", {"path": "/etc/shadow"})).verdict is Verdict.DENY
    assert policy.classify(make_call("read", {"path": "etc/shadow"})).verdict is Verdict.DENY


@given(value=st.none() | st.booleans() | st.text() | st.lists(st.integers(), max_size=2))
def test_property_unknown_never_lets_an_allow_rule_apply(value: Any) -> None:
    """For any non-number, an allow rule conditioned on `gt` never allows."""
    policy = make_policy(rule("small", "allow", match={"args": {"n": {"gt": 0}}}))
    assert policy.classify(make_call(args={"n": value})).verdict is not Verdict.ALLOW


verdicts = st.sampled_from(STRICTNESS)
rule_specs = st.lists(
    st.tuples(
        verdicts,
        st.sampled_from(["tool", "other", "*", "to*"]),
        st.sampled_from([None, {"gt": 5}, {"eq": "a"}, {"exists": False}]),
    ),
    max_size=6,
)


def _rules_from(specs: list[tuple[str, str, dict[str, Any] | None]]) -> list[dict[str, Any]]:
    out = []
    for i, (verdict, tool, matcher) in enumerate(specs):
        match = {"args": {"n": matcher}} if matcher else {}
        out.append(rule(f"r{i}", verdict, tool=tool, match=match))
    return out


@given(specs=rule_specs, value=st.none() | st.integers(0, 10) | st.sampled_from(["a", "b"]))
def test_adding_a_matching_deny_rule_never_makes_the_verdict_less_strict(
    specs: list[tuple[str, str, dict[str, Any] | None]], value: Any
) -> None:
    """Monotonicity: more deny rules can only tighten a verdict, never loosen it."""
    call = make_call(args={"n": value})
    rules = _rules_from(specs)
    before = make_policy(*rules).classify(call).verdict
    after = make_policy(*rules, rule("extra-deny", "deny")).classify(call).verdict
    assert after.strictness >= max(before.strictness, Verdict.DENY.strictness)


@given(specs=rule_specs, value=st.none() | st.integers(0, 10) | st.sampled_from(["a", "b"]))
def test_file_order_of_rules_never_changes_the_verdict(
    specs: list[tuple[str, str, dict[str, Any] | None]], value: Any
) -> None:
    """Reversing the rules gives the same verdict and risk."""
    call = make_call(args={"n": value})
    rules = _rules_from(specs)
    forward = make_policy(*rules).classify(call)
    backward = make_policy(*rules[::-1]).classify(call)
    assert (forward.verdict, forward.risk) == (backward.verdict, backward.risk)


# -- scopes ---------------------------------------------------------------------------------

SCOPED = {
    "agents": {"billing-bot": {"scopes": ["orders:read"]}},
    "tools": {"refund": {"scopes": ["payments:write"]}},
}


def test_call_out_of_scope_is_raised_from_allow_to_require_approval() -> None:
    """Needs not granted (policy tools section vs agents section) => at least require_approval."""
    policy = make_policy(rule("ok", "allow", tool="refund"), **SCOPED)
    result = policy.classify(make_call("refund", agent="billing-bot"))
    assert result.verdict is Verdict.REQUIRE_APPROVAL
    assert result.risk is Risk.MEDIUM
    assert "needs scope payments:write, which agent billing-bot was not granted" in result.reasons
    assert result.rules == ("ok",)


def test_scopes_granted_by_the_call_or_the_policy_both_count() -> None:
    """granted = call.granted_scopes ∪ agents[agent].scopes."""
    policy = make_policy(rule("ok", "allow", tool="refund"), **SCOPED)
    call = make_call("refund", agent="billing-bot", granted_scopes=("payments:write",))
    assert policy.classify(call).verdict is Verdict.ALLOW
    policy2 = make_policy(
        rule("ok", "allow", tool="refund"),
        agents={"billing-bot": {"scopes": ["payments:write"]}},
        tools=SCOPED["tools"],
    )
    assert policy2.classify(make_call("refund", agent="billing-bot")).verdict is Verdict.ALLOW


def test_the_classification_records_the_scopes_the_policy_counted() -> None:
    """granted/required on the answer are the policy's union, not the call's declarations."""
    policy = make_policy(rule("ok", "allow", tool="refund"), **SCOPED)
    call = make_call("refund", agent="billing-bot", granted_scopes=("mail:send",))
    assert call.required_scopes == ()  # declared in the policy's tools: section only
    result = policy.classify(call)
    assert result.granted_scopes == ("mail:send", "orders:read")
    assert result.required_scopes == ("payments:write",)
    assert result.missing_scopes == ("payments:write",)
    unscoped = make_policy(rule("ok", "allow")).classify(make_call())
    assert (unscoped.granted_scopes, unscoped.required_scopes) == ((), ())


def test_a_classification_stored_before_scopes_were_recorded_still_loads() -> None:
    old = '{"verdict": "require_approval", "risk": "high", "rules": ["r"], "reasons": ["x"]}'
    loaded = Classification.model_validate_json(old)
    assert loaded.granted_scopes is None and loaded.required_scopes is None
    assert loaded.missing_scopes == ()


def test_scopes_required_by_the_call_itself_are_checked() -> None:
    """required = call.required_scopes ∪ tools[tool].scopes; several missing are listed."""
    policy = make_policy(rule("ok", "allow"))
    call = make_call(required_scopes=("b:write", "a:read"))
    result = policy.classify(call)
    assert result.verdict is Verdict.REQUIRE_APPROVAL
    assert "needs scopes a:read, b:write, which agent bot was not granted" in result.reasons


def test_out_of_scope_never_lowers_a_deny() -> None:
    """Scope only raises: a deny stays deny."""
    policy = make_policy(rule("no", "deny", tool="refund"), **SCOPED)
    assert policy.classify(make_call("refund", agent="billing-bot")).verdict is Verdict.DENY


# -- irreversible ---------------------------------------------------------------------------


def test_irreversible_call_is_not_allowed_without_allow_irreversible() -> None:
    """An allow rule does not let an irreversible call pass unattended."""
    policy = make_policy(
        rule("ok", "allow", tool="refund"), tools={"refund": {"irreversible": True}}
    )
    result = policy.classify(make_call("refund"))
    assert result.verdict is Verdict.REQUIRE_APPROVAL
    assert result.risk is Risk.HIGH
    assert "refund is irreversible: a person must approve it" in result.reasons


def test_irreversible_declared_by_the_call_counts_too() -> None:
    """call.irreversible is as binding as the policy's tools section, also under default allow."""
    policy = make_policy(default="allow")
    assert policy.classify(make_call(irreversible=True)).verdict is Verdict.REQUIRE_APPROVAL
    assert policy.classify(make_call()).verdict is Verdict.ALLOW


def test_allow_irreversible_lets_an_irreversible_call_pass() -> None:
    """`allow_irreversible: true` on an applying allow rule is the explicit opt-in."""
    policy = make_policy(rule("ok", "allow", allow_irreversible=True))
    result = policy.classify(make_call(irreversible=True))
    # It passes, and its risk still says what is at stake.
    assert (result.verdict, result.risk) == (Verdict.ALLOW, Risk.HIGH)


def test_allow_irreversible_does_not_override_scopes() -> None:
    """Explicitly allowed irreversible calls must still be in scope."""
    policy = make_policy(
        rule("ok", "allow", tool="refund", allow_irreversible=True),
        tools={"refund": {"irreversible": True, "scopes": ["payments:write"]}},
    )
    assert policy.classify(make_call("refund")).verdict is Verdict.REQUIRE_APPROVAL


# -- risk -----------------------------------------------------------------------------------


def test_risk_defaults_by_verdict_of_the_rule() -> None:
    """allow->low, require_approval->medium, deny->high, halt->critical."""
    expected = dict(zip(STRICTNESS, [Risk.LOW, Risk.MEDIUM, Risk.HIGH, Risk.CRITICAL], strict=True))
    for verdict, risk in expected.items():
        assert make_policy(rule("r", verdict)).classify(make_call()).risk is risk


def test_risk_is_the_maximum_of_rules_call_and_tool_spec() -> None:
    """Risk takes the max of every applying rule, declared_risk and tools[tool].risk."""
    policy = make_policy(
        rule("a", "allow", risk="medium"),
        rule("b", "allow"),
        tools={"tool": {"risk": "low"}},
    )
    assert policy.classify(make_call()).risk is Risk.MEDIUM
    assert policy.classify(make_call(declared_risk=Risk.CRITICAL)).risk is Risk.CRITICAL
    high_tool = make_policy(rule("b", "allow"), tools={"tool": {"risk": "high"}})
    assert high_tool.classify(make_call()).risk is Risk.HIGH


def test_lower_verdict_rules_still_raise_the_risk() -> None:
    """A losing rule's risk counts: risk is about the call, not about who won."""
    policy = make_policy(rule("a", "allow", risk="critical"), rule("b", "require_approval"))
    result = policy.classify(make_call())
    assert (result.verdict, result.risk) == (Verdict.REQUIRE_APPROVAL, Risk.CRITICAL)


# -- approval -------------------------------------------------------------------------------


def test_approval_merges_applying_require_approval_rules() -> None:
    """group: first that sets one; quorum: max; timeout: min."""
    policy = make_policy(
        rule("a", "require_approval", approval={"quorum": 2, "timeout": "1h"}),
        rule("b", "require_approval", approval={"group": "finance", "timeout": "15m"}),
        rule("c", "require_approval", approval={"group": "ops", "quorum": 3}),
        rule("d", "require_approval", tool="other", approval={"quorum": 9}),
    )
    approval = policy.classify(make_call()).approval
    assert (approval.group, approval.quorum, approval.timeout) == ("finance", 3, 900.0)


def test_approval_falls_back_to_defaults_field_by_field() -> None:
    """Fields no rule sets come from `defaults.approval`."""
    policy = make_policy(
        rule("a", "require_approval", approval={"group": "finance"}),
        defaults={"approval": {"group": "ops", "quorum": 2, "timeout": 60}},
    )
    approval = policy.classify(make_call()).approval
    assert (approval.group, approval.quorum, approval.timeout) == ("finance", 2, 60.0)
    unmatched = policy.classify(make_call("other")).approval
    assert (unmatched.group, unmatched.quorum, unmatched.timeout) == ("ops", 2, 60.0)


def test_escalated_allow_gets_the_default_approval() -> None:
    """An allow raised by scope or irreversibility uses `defaults.approval`."""
    policy = make_policy(
        rule("ok", "allow"), defaults={"approval": {"group": "ops", "timeout": "10m"}}
    )
    approval = policy.classify(make_call(irreversible=True)).approval
    assert (approval.group, approval.timeout) == ("ops", 600.0)


def test_halt_scope_comes_from_the_first_winning_halt_rule() -> None:
    """halt_scope: first halt rule in file order; agent when unset."""
    policy = make_policy(
        rule("h1", "halt", halt_scope="session"), rule("h2", "halt", halt_scope="all")
    )
    assert policy.classify(make_call()).halt_scope is HaltScope.SESSION
    assert make_policy(rule("h", "halt")).classify(make_call()).halt_scope is HaltScope.AGENT


# -- python predicates ------------------------------------------------------------------------

PREDICATES = """
def is_dangerous(call):
    return call.args.get("danger") is True

def explodes(call):
    raise RuntimeError("boom")

def says_maybe(call):
    return None

NOT_CALLABLE = 5

async def is_async(call):
    return True
"""


@pytest.fixture
def predicates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A module of predicates importable as `gk_policy_predicates`."""
    (tmp_path / "gk_policy_predicates.py").write_text(textwrap.dedent(PREDICATES))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "gk_policy_predicates", raising=False)
    yield "gk_policy_predicates"
    sys.modules.pop("gk_policy_predicates", None)


def test_python_predicate_decides_whether_the_rule_matches(predicates: str) -> None:
    """`python: module:function` is called with the ToolCall; True applies the rule."""
    policy = make_policy(rule("danger", "deny", match={"python": f"{predicates}:is_dangerous"}))
    assert policy.classify(make_call(args={"danger": True})).verdict is Verdict.DENY
    assert policy.classify(make_call(args={"danger": False})).verdict is Verdict.REQUIRE_APPROVAL


def test_a_predicate_that_answered_false_is_named_by_misses(predicates: str) -> None:
    """Policy.misses names the predicate that kept its rule from matching."""
    policy = make_policy(rule("danger", "deny", match={"python": f"{predicates}:is_dangerous"}))
    assert policy.misses(make_call(args={"danger": False})) == (
        f"rule danger: python predicate {predicates}:is_dangerous returned False",
    )
    assert policy.misses(make_call(args={"danger": True})) == ()


def test_raising_predicate_escalates_an_allow_rule(predicates: str) -> None:
    """A predicate error never lets a call pass unattended: allow becomes require_approval."""
    policy = make_policy(rule("ok", "allow", match={"python": f"{predicates}:explodes"}))
    result = policy.classify(make_call())
    assert result.verdict is Verdict.REQUIRE_APPROVAL
    assert result.rules == ("ok",)
    assert result.reasons == ("rule ok could not be evaluated: RuntimeError: boom",)


def test_raising_predicate_makes_a_strict_rule_apply(predicates: str) -> None:
    """Unknown from a predicate counts as matching for deny/halt rules."""
    policy = make_policy(rule("no", "deny", match={"python": f"{predicates}:explodes"}))
    assert policy.classify(make_call()).verdict is Verdict.DENY


def test_predicate_returning_a_non_bool_is_treated_as_an_error(predicates: str) -> None:
    """`return None` (a forgotten return) does not silently decide."""
    policy = make_policy(rule("ok", "allow", match={"python": f"{predicates}:says_maybe"}))
    result = policy.classify(make_call())
    assert result.verdict is Verdict.REQUIRE_APPROVAL
    assert "returned None, not a bool" in result.reasons[0]


def test_predicate_is_not_called_when_args_already_fail(predicates: str) -> None:
    """False on an arg short-circuits: the predicate is not consulted."""
    policy = make_policy(
        rule("ok", "allow", match={"args": {"n": 1}, "python": f"{predicates}:explodes"})
    )
    assert policy.classify(make_call(args={"n": 2})).verdict is Verdict.REQUIRE_APPROVAL
    assert policy.classify(make_call(args={"n": 2})).reasons[0].startswith("no rule matched")


# -- index ----------------------------------------------------------------------------------


def _big_policy(extra: int) -> Policy:
    rules = [
        rule("ro", "allow", tool="search_*"),
        rule("refund", "require_approval", tool="refund"),
    ]
    for i in range(extra):
        tool = f"other_{i}" if i % 2 else f"other_{i}_*"
        rules.append(rule(f"r{i}", "deny", tool=tool, match={"args": {"x": {"gt": 1}}}))
    rules.append(
        rule("all-deny-path", "deny", tool="*", match={"args": {"path": {"exists": True}}})
    )
    return make_policy(*rules)


def test_only_rules_that_can_concern_the_tool_are_candidates() -> None:
    """With 1,000 rules for other tools, a refund call considers exactly its own rules."""
    small, big = _big_policy(10), _big_policy(1000)
    for policy in (small, big):
        assert [r.id for r in policy.rules_for_tool("refund")] == ["refund", "all-deny-path"]
        assert [r.id for r in policy.rules_for_tool("search_web")] == ["ro", "all-deny-path"]
        assert [r.id for r in policy.rules_for_tool("other_3")] == ["r3", "all-deny-path"]
        assert [r.id for r in policy.rules_for_tool("other_4_x")] == ["r4", "all-deny-path"]
    call = make_call("refund", {"amount": 5})
    # The same answer, but from another policy, which the classification names.
    mine, theirs = small.classify(call), big.classify(call)
    assert (mine.policy_digest, theirs.policy_digest) == (small.digest, big.digest)
    assert mine.model_copy(update={"policy_digest": big.digest}) == theirs


def test_a_rule_listing_exact_names_and_globs_is_a_candidate_once() -> None:
    """A rule reachable by an exact name and a glob is evaluated once, in file order."""
    policy = make_policy(
        rule("a", "deny", tool=["refund", "ref*"]), rule("b", "allow", tool="refund")
    )
    assert [r.id for r in policy.rules_for_tool("refund")] == ["a", "b"]
    twice = make_policy(rule("a", "deny", tool=["refund", "refund"]))
    assert twice.classify(make_call("refund")).rules == ("a",)


def test_glob_candidate_cache_is_bounded() -> None:
    """Arbitrary tool names from agents can't grow the cache without bound."""
    policy = make_policy(rule("g", "deny", tool="x*"))
    for i in range(5000):
        policy.rules_for_tool(f"x{i}")
    assert len(policy._cache) <= 4096
    assert [r.id for r in policy.rules_for_tool("x1")] == ["g"]
