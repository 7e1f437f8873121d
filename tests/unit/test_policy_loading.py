"""Loading policies: error messages that name file, rule, field and line; TOML; API surface."""

from __future__ import annotations

import datetime as dt
import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import gatekeeper.policy
from gatekeeper._errors import PolicyError
from gatekeeper.models import ToolCall, Verdict
from gatekeeper.policy import Policy, PolicyDocument, parse_duration


def load_error(text: str) -> PolicyError:
    with pytest.raises(PolicyError) as info:
        Policy.from_yaml(textwrap.dedent(text), source="team.yaml")
    return info.value


# Each case: the YAML, then (rule, field, line, a phrase of the problem).
MALFORMED: dict[str, tuple[str, str | None, str | None, int, str]] = {
    "unknown key": (
        """\
        version: 1
        rules:
          - id: read-only
            verdict: allow
            match:
              tol: "search_*"
        """,
        "read-only",
        "match.tol",
        6,
        "unknown key 'tol'; valid keys are: agent, args, python, server, tool",
    ),
    "bad verdict": (
        """\
        version: 1
        rules:
          - id: r1
            verdict: maybe
        """,
        "r1",
        "verdict",
        4,
        "'allow', 'require_approval', 'deny' or 'halt'",
    ),
    "duplicate id": (
        """\
        version: 1
        rules:
          - {id: twin, verdict: allow}
        limits:
          - id: twin
            match: {tool: x}
            rate: 5/min
        """,
        "twin",
        "id",
        5,
        "duplicate id 'twin': rules[0] already uses it",
    ),
    "approval on allow": (
        """\
        version: 1
        rules:
          - id: ok
            verdict: allow
            approval: {group: finance}
        """,
        "ok",
        "approval",
        5,
        "only a require_approval rule may set approval",
    ),
    "allow_irreversible on deny": (
        """\
        version: 1
        rules:
          - id: never
            verdict: deny
            allow_irreversible: true
        """,
        "never",
        "allow_irreversible",
        5,
        "only an allow rule may set allow_irreversible",
    ),
    "halt_scope on allow": (
        """\
        version: 1
        rules:
          - id: ok
            verdict: allow
            halt_scope: all
        """,
        "ok",
        "halt_scope",
        5,
        "only a halt rule may set halt_scope",
    ),
    "bad regex": (
        """\
        version: 1
        rules:
          - id: no-drop
            verdict: deny
            match:
              tool: sql
              args:
                query: {regex: "(drop"}
        """,
        "no-drop",
        "match.args.query.regex",
        8,
        "invalid regular expression '(drop'",
    ),
    "bad duration": (
        """\
        version: 1
        rules:
          - id: hold
            verdict: require_approval
            approval:
              timeout: 15 minutes
        """,
        "hold",
        "approval.timeout",
        6,
        "invalid duration '15 minutes'",
    ),
    "bad rate": (
        """\
        version: 1
        limits:
          - id: email-rate
            match: {tool: send_email}
            rate: 20/fortnight
        """,
        "email-rate",
        "rate",
        5,
        "invalid rate '20/fortnight'",
    ),
    "unknown op": (
        """\
        version: 1
        rules:
          - id: big-refund
            verdict: require_approval
            match:
              args:
                amount: {gte: 100}
        """,
        "big-refund",
        "match.args.amount.gte",
        7,
        "unknown matcher operator 'gte'; valid operators are: contains, eq, exists, ge, gt",
    ),
    "bad python path": (
        """\
        version: 1
        rules:
          - id: custom
            verdict: deny
            match:
              python: gk_no_such_module:check
        """,
        "custom",
        "match.python",
        6,
        "can't import 'gk_no_such_module:check': ModuleNotFoundError",
    ),
    "python path without colon": (
        """\
        version: 1
        rules:
          - id: custom
            verdict: deny
            match: {python: os.path.exists}
        """,
        "custom",
        "match.python",
        5,
        "is not an import path",
    ),
    "python target not callable": (
        """\
        version: 1
        rules:
          - id: custom
            verdict: deny
            match: {python: "os:sep"}
        """,
        "custom",
        "match.python",
        5,
        "'os:sep' is a str, not a callable",
    ),
    "wrong version": ("version: 2\n", None, "version", 1, "unsupported policy version 2"),
    "missing version": ("rules: []\n", None, "version", 1, "required, but missing"),
    "rule without id": (
        """\
        version: 1
        rules:
          - {id: first, verdict: allow}
          - verdict: deny
        """,
        "rules[1]",
        "id",
        4,
        "required, but missing",
    ),
    "sequence too short": (
        """\
        version: 1
        sequences:
          - id: exfil
            steps: [{tool: dns_lookup}]
            within: 10m
            verdict: halt
        """,
        "exfil",
        "steps",
        4,
        "at least two calls",
    ),
    "sequence allow": (
        """\
        version: 1
        sequences:
          - id: exfil
            steps: [{tool: a}, {tool: b}]
            within: 10m
            verdict: allow
        """,
        "exfil",
        "verdict",
        6,
        "must be require_approval, deny or halt",
    ),
    "relative path_under": (
        """\
        version: 1
        rules:
          - id: data
            verdict: allow
            match: {args: {path: {path_under: [data]}}}
        """,
        "data",
        "match.args.path.path_under",
        5,
        "'data' is not an absolute directory path",
    ),
    "bad top-level default": (
        "version: 1\ndefault: yes-please\n",
        None,
        "default",
        2,
        "Input should be",
    ),
    "bad agent scopes": (
        """\
        version: 1
        agents:
          bot:
            scopes: 5
        """,
        None,
        "agents.bot.scopes",
        4,
        "valid",
    ),
}


@pytest.mark.parametrize("case", MALFORMED, ids=list(MALFORMED))
def test_malformed_policy_error_names_file_rule_field_and_line(case: str) -> None:
    """Message reads '{source}:{line}: rule '{id}': {field}: {problem}' and attributes match."""
    text, rule, field, line, problem = MALFORMED[case]
    error = load_error(text)
    prefix = f"team.yaml:{line}: " + (f"rule '{rule}': " if rule else "") + f"{field}: "
    assert str(error).startswith(prefix), str(error)
    assert problem in str(error)
    assert (error.source, error.rule, error.field, error.line) == ("team.yaml", rule, field, line)


def test_yaml_boolean_where_a_string_belongs_gets_a_hint() -> None:
    """`id: no` is YAML for false; the error says to quote it."""
    error = load_error("version: 1\nrules:\n  - id: no\n    verdict: deny\n")
    assert str(error).startswith("team.yaml:3: rule 'rules[0]': id: Input should be a valid string")
    assert "quote it" in str(error)


def test_yaml_syntax_error_names_the_line() -> None:
    """A YAML parse error is a PolicyError with the line, not a yaml traceback."""
    error = load_error("version: 1\nrules:\n  - id: a\n    verdict: [deny\n")
    assert str(error).startswith("team.yaml:5: YAML syntax error:")
    assert error.line == 5


def test_duplicate_yaml_key_is_an_error_not_last_one_wins() -> None:
    """Two `verdict:` keys in one rule would silently drop one; refuse instead."""
    error = load_error("version: 1\nrules:\n  - id: a\n    verdict: deny\n    verdict: allow\n")
    assert str(error) == "team.yaml:5: YAML error: duplicate key 'verdict'"


@pytest.mark.parametrize(
    ("text", "problem"),
    [("- a\n", "must be a mapping of keys to values, not a list"), ("", "the policy is empty")],
)
def test_non_mapping_document_is_refused(text: str, problem: str) -> None:
    """A list, a scalar or an empty file is not a policy."""
    assert problem in str(load_error(text))


def test_several_problems_report_the_first_and_count_the_rest() -> None:
    """The first problem is in full; the rest are counted."""
    error = load_error("version: 1\ndefault: x\nrules:\n  - {id: a, verdict: y}\n")
    assert str(error).startswith("team.yaml:2: default: ")
    assert str(error).endswith("(and 1 more problem)")


def test_mapping_errors_have_no_line() -> None:
    """from_mapping names source, rule and field; there is no line to name."""
    with pytest.raises(PolicyError) as info:
        Policy.from_mapping({"version": 1, "rules": [{"id": "r", "verdict": "nope"}]}, source="api")
    assert str(info.value).startswith("api: rule 'r': verdict: ")
    assert info.value.line is None


def test_from_file_reports_missing_file_and_unknown_suffix(tmp_path: Path) -> None:
    """Unreadable files and unknown suffixes are PolicyErrors naming the path."""
    with pytest.raises(PolicyError, match=r"can't read the policy file"):
        Policy.from_file(tmp_path / "missing.yaml")
    (tmp_path / "p.json").write_text("{}")
    with pytest.raises(PolicyError, match=r"unknown policy file type '.json'"):
        Policy.from_file(tmp_path / "p.json")
    (tmp_path / "bin.yaml").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(PolicyError, match=r"not UTF-8"):
        Policy.from_file(tmp_path / "bin.yaml")


def test_from_file_error_names_the_file_path(tmp_path: Path) -> None:
    """The source of a file policy is its path."""
    path = tmp_path / "policy.yml"
    path.write_text("version: 1\nrules:\n  - {id: a, verdict: allow, approval: {}}\n")
    with pytest.raises(PolicyError) as info:
        Policy.from_file(path)
    assert str(info.value).startswith(f"{path}:3: rule 'a': approval: ")


YAML_POLICY = """\
version: 1
default: deny
defaults:
  approval: {group: ops, timeout: 10m}
agents:
  billing-bot: {scopes: [orders:read]}
tools:
  refund: {scopes: [payments:write], irreversible: true, risk: high}
rules:
  - id: big-refund
    match: {tool: refund, args: {amount: {gt: 100}, currency: EUR}}
    verdict: require_approval
    approval: {group: finance, quorum: 2, timeout: 15m}
limits:
  - id: email-rate
    match: {tool: send_email}
    rate: 20/hour
"""

TOML_POLICY = """\
version = 1
default = "deny"

[defaults.approval]
group = "ops"
timeout = "10m"

[agents.billing-bot]
scopes = ["orders:read"]

[tools.refund]
scopes = ["payments:write"]
irreversible = true
risk = "high"

[[rules]]
id = "big-refund"
verdict = "require_approval"
approval = { group = "finance", quorum = 2, timeout = "15m" }
[rules.match]
tool = "refund"
args = { amount = { gt = 100 }, currency = "EUR" }

[[limits]]
id = "email-rate"
match = { tool = "send_email" }
rate = "20/hour"
"""


def test_toml_and_yaml_of_the_same_policy_are_equivalent(tmp_path: Path) -> None:
    """Same document, same digest, same classification, whichever format."""
    (tmp_path / "p.yaml").write_text(YAML_POLICY)
    (tmp_path / "p.toml").write_text(TOML_POLICY)
    from_yaml = Policy.from_file(tmp_path / "p.yaml")
    from_toml = Policy.from_file(tmp_path / "p.toml")
    assert from_yaml.document == from_toml.document
    assert from_yaml.digest == from_toml.digest
    call = ToolCall(
        id="c",
        tool="refund",
        args={"amount": 500, "currency": "EUR"},
        args_digest="0" * 64,
        agent="billing-bot",
        session_id="s",
        created_at=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
    )
    assert from_yaml.classify(call) == from_toml.classify(call)
    assert from_yaml.classify(call).approval.timeout == 900.0


def test_toml_syntax_error_names_the_line() -> None:
    """TOML parse errors are PolicyErrors with the line when tomllib gives one."""
    with pytest.raises(PolicyError) as info:
        Policy.from_toml('version = 1\nrules = [\n  { id = "a" \n', source="p.toml")
    assert str(info.value).startswith("p.toml:")
    assert "TOML syntax error" in str(info.value)


# -- the validated document ---------------------------------------------------------------


def test_digest_is_of_the_validated_document_not_the_text() -> None:
    """Formatting and comments don't change the digest; a different verdict does."""
    a = Policy.from_yaml("version: 1\nrules: [{id: a, verdict: allow}]\n")
    b = Policy.from_yaml("# comment\nversion: 1\nrules:\n  - id: a\n    verdict: allow\n")
    c = Policy.from_yaml("version: 1\nrules: [{id: a, verdict: deny}]\n")
    assert a.digest == b.digest != c.digest
    assert len(a.digest) == 64


def test_digest_tells_eq_null_from_ne_null() -> None:
    """Matchers dump only the operators written, so different matchers never collide."""
    eq = Policy.from_yaml("version: 1\nrules: [{id: a, verdict: deny, match: {args: {x: null}}}]")
    ne = Policy.from_yaml(
        "version: 1\nrules: [{id: a, verdict: deny, match: {args: {x: {ne: null}}}}]"
    )
    assert eq.digest != ne.digest


def test_policy_is_immutable() -> None:
    """A loaded policy can't be changed behind the classifier's back."""
    policy = Policy.empty()
    with pytest.raises(AttributeError):
        policy.source = "x"
    with pytest.raises(ValueError, match="frozen"):
        policy.document.default = Verdict.ALLOW  # type: ignore[misc]


def test_policy_exposes_what_the_engine_uses() -> None:
    """Lookups and attributes of the compiled policy."""
    policy = Policy.from_yaml(YAML_POLICY, source="x.yaml")
    assert policy.source == "x.yaml"
    assert policy.default is Verdict.DENY
    assert policy.on_store_error == "fail_closed"
    assert policy.agent_scopes("billing-bot") == frozenset({"orders:read"})
    assert policy.agent_scopes("nobody") == frozenset()
    tool = policy.tool_spec("refund")
    assert tool is not None
    assert tool.irreversible
    assert policy.tool_spec("nope") is None
    assert [r.id for r in policy.rules] == ["big-refund"]
    assert policy.limits[0].parsed_rate == (20, 3600.0)
    assert policy.sequences == ()


def test_bare_value_in_args_means_eq() -> None:
    """`currency: EUR` is `currency: {eq: EUR}`."""
    policy = Policy.from_yaml(YAML_POLICY)
    matcher = policy.rules[0].match.args["currency"]
    assert matcher.model_dump(by_alias=True) == {"eq": "EUR"}


def test_json_schema_describes_the_file_and_forbids_unknown_keys() -> None:
    """The schema is JSON, names the sections, and rejects typos like the loader does."""
    schema = Policy.json_schema()
    json.dumps(schema)
    assert set(schema["properties"]) >= {"version", "default", "rules", "sequences", "limits"}
    assert schema["additionalProperties"] is False
    assert "in" in schema["$defs"]["Matcher"]["properties"]


def test_public_api_is_exactly_the_documented_names() -> None:
    """gatekeeper.policy.__all__ is sorted and is the public surface."""
    expected = [
        "AgentSpec",
        "ApprovalSpec",
        "LimitRule",
        "Match",
        "Policy",
        "PolicyDocument",
        "Rule",
        "SequenceRule",
        "ToolSpec",
        "parse_duration",
    ]
    assert gatekeeper.policy.__all__ == expected
    public = {n for n in vars(gatekeeper.policy) if not n.startswith("_") and n != "annotations"}
    assert public == set(expected)


def test_policy_document_requires_version_one() -> None:
    """The pydantic model itself refuses other versions (and booleans posing as 1)."""
    assert PolicyDocument.model_validate({"version": 1}).default is Verdict.REQUIRE_APPROVAL
    with pytest.raises(ValueError, match="unsupported policy version True"):
        PolicyDocument.model_validate({"version": True})


# -- durations ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        (30, 30.0),
        (1.5, 1.5),
        ("30", 30.0),
        ("30s", 30.0),
        ("15m", 900.0),
        ("1h", 3600.0),
        ("2d", 172800.0),
        ("1h30m", 5400.0),
        ("1h 30m", 5400.0),
        ("500ms", 0.5),
        ("1m30s", 90.0),
    ],
)
def test_parse_duration_accepts_numbers_and_unit_strings(text: Any, seconds: float) -> None:
    """Numbers are seconds; strings combine ms, s, m, h, d."""
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text", ["", "15", "15 minutes", "1x", "m", "1h1h", "-5s", -1, float("inf"), True, "1.s"]
)
def test_parse_duration_refuses_anything_else_with_a_clear_message(text: Any) -> None:
    """Bad durations raise ValueError naming the value."""
    if text == "15":
        assert parse_duration(text) == 15.0
        return
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


@given(h=st.integers(0, 100), m=st.integers(0, 59), s=st.integers(0, 59))
def test_parse_duration_composes_units(h: int, m: int, s: int) -> None:
    """'XhYmZs' is X hours plus Y minutes plus Z seconds."""
    assert parse_duration(f"{h}h{m}m{s}s") == h * 3600 + m * 60 + s
