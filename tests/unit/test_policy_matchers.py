"""Argument matchers: every operator's true / false / unknown cases, URL and path tricks."""

from __future__ import annotations

import posixpath
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gatekeeper.policy._matchers import ArgCondition, json_eq, norm_abs_path, url_host
from gatekeeper.policy._schema import Matcher

UNKNOWN = "unknown"

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=8,
)


def evaluate(matcher: dict[str, Any], args: dict[str, Any], name: str = "x") -> bool | str:
    """True / False, or UNKNOWN when the condition could not be evaluated."""
    result = ArgCondition(name, Matcher.model_validate(matcher)).evaluate(args)
    return result if isinstance(result, bool) else UNKNOWN


CASES: list[tuple[dict[str, Any], Any, bool | str]] = [
    # eq / ne: JSON equality (true is not 1; 1 is 1.0); never unknown on a present value
    ({"eq": "EUR"}, "EUR", True),
    ({"eq": "EUR"}, "eur", False),
    ({"eq": 1}, 1.0, True),
    ({"eq": 1}, True, False),
    ({"eq": None}, None, True),
    ({"eq": [1, 2]}, [1, 2], True),
    ({"eq": {"a": 1}}, {"a": 1}, True),
    ({"ne": "EUR"}, "USD", True),
    ({"ne": "EUR"}, "EUR", False),
    ({"ne": 0}, False, True),
    # in / not_in
    ({"in": ["a", "b"]}, "a", True),
    ({"in": ["a", "b"]}, "c", False),
    ({"in": [1]}, True, False),
    ({"not_in": ["a", "b"]}, "c", True),
    ({"not_in": ["a", "b"]}, "b", False),
    # ordering: numbers with numbers, strings with strings, else unknown
    ({"gt": 100}, 101, True),
    ({"gt": 100}, 100, False),
    ({"gt": 100}, "500", UNKNOWN),
    ({"gt": 100}, None, UNKNOWN),
    ({"gt": 100}, True, UNKNOWN),
    ({"ge": 100}, 100, True),
    ({"ge": 100}, 99.5, False),
    ({"lt": 10}, 9, True),
    ({"lt": 10}, 10, False),
    ({"lt": 10}, [1], UNKNOWN),
    ({"le": 10}, 10.0, True),
    ({"le": 10}, 11, False),
    ({"gt": "2024-01-01"}, "2024-06-01", True),
    ({"gt": "2024-01-01"}, "2023-06-01", False),
    ({"gt": "2024-01-01"}, 2025, UNKNOWN),
    ({"gt": 1.5}, float("nan"), UNKNOWN),
    # regex: re.search, strings only
    ({"regex": r"(?i)\bdrop\s+table"}, "please DROP  TABLE users", True),
    ({"regex": r"^drop"}, "select 1; drop table", False),
    ({"regex": "x"}, 5, UNKNOWN),
    # contains: substring / element / key
    ({"contains": "rm -rf"}, "sudo rm -rf /", True),
    ({"contains": "rm -rf"}, "ls", False),
    ({"contains": "b"}, ["a", "b"], True),
    ({"contains": 1}, [True], False),
    ({"contains": "k"}, {"k": 1}, True),
    ({"contains": "z"}, {"k": 1}, False),
    ({"contains": 5}, "a5", UNKNOWN),
    ({"contains": "a"}, 5, UNKNOWN),
    ({"contains": 1}, {"1": 1}, UNKNOWN),
    # exists on a present value (absent values are tested separately)
    ({"exists": True}, None, True),
    ({"exists": False}, "x", False),
    # min_len / max_len on str, list, dict
    ({"min_len": 2}, "ab", True),
    ({"min_len": 2}, ["a"], False),
    ({"max_len": 1}, {"a": 1}, True),
    ({"max_len": 1}, "ab", False),
    ({"max_len": 1}, 5, UNKNOWN),
    ({"min_len": 1}, None, UNKNOWN),
    # host_in / host_not_in
    ({"host_in": ["api.example.com"]}, "https://api.example.com/v1", True),
    ({"host_in": ["api.example.com"]}, "https://evil.com/api.example.com", False),
    ({"host_in": ["api.example.com"]}, 42, UNKNOWN),
    ({"host_in": ["api.example.com"]}, "http:/api.example.com", UNKNOWN),
    ({"host_not_in": ["api.example.com"]}, "https://evil.com/", True),
    ({"host_not_in": ["api.example.com"]}, "https://api.example.com/", False),
    ({"host_not_in": ["api.example.com"]}, ["https://evil.com"], UNKNOWN),
    # path_under / path_not_under
    ({"path_under": ["/srv/data"]}, "/srv/data/x.csv", True),
    ({"path_under": ["/srv/data"]}, "/etc/passwd", False),
    ({"path_under": ["/srv/data"]}, "data/x.csv", UNKNOWN),
    ({"path_under": ["/srv/data"]}, 7, UNKNOWN),
    ({"path_not_under": ["/srv/data"]}, "/etc/passwd", True),
    ({"path_not_under": ["/srv/data"]}, "/srv/data", False),
    ({"path_not_under": ["/srv/data"]}, "../etc", UNKNOWN),
]


@pytest.mark.parametrize(("matcher", "value", "expected"), CASES)
def test_operator_on_present_value(
    matcher: dict[str, Any], value: Any, expected: bool | str
) -> None:
    """Each operator answers true, false or unknown for a value that is there."""
    assert evaluate(matcher, {"x": value}) == expected


OPERATORS: list[dict[str, Any]] = [
    {"eq": 1},
    {"ne": 1},
    {"in": [1]},
    {"not_in": [1]},
    {"gt": 1},
    {"ge": 1},
    {"lt": 1},
    {"le": 1},
    {"regex": "."},
    {"contains": "a"},
    {"exists": True},
    {"min_len": 0},
    {"max_len": 9},
    {"host_in": ["a.example"]},
    {"host_not_in": ["a.example"]},
    {"path_under": ["/"]},
    {"path_not_under": ["/srv"]},
]


@pytest.mark.parametrize("matcher", OPERATORS, ids=lambda m: next(iter(m)))
def test_every_operator_is_false_on_an_absent_arg(matcher: dict[str, Any]) -> None:
    """An absent arg never matches (so a broad rule on `path` skips tools without `path`)."""
    assert evaluate(matcher, {"other": 1}) is False


def test_exists_false_is_the_one_operator_true_on_an_absent_arg() -> None:
    """`exists: false` matches an absent arg, and only an absent one."""
    assert evaluate({"exists": False}, {}) is True
    assert evaluate({"exists": False, "eq": 1}, {}) is False
    assert evaluate({"exists": False}, {"x": None}) is False


def test_operators_in_one_matcher_are_anded_with_kleene_logic() -> None:
    """False beats unknown, unknown beats true."""
    assert evaluate({"gt": 1, "lt": 10}, {"x": 5}) is True
    assert evaluate({"gt": 1, "lt": 3}, {"x": 5}) is False
    assert evaluate({"gt": 1, "regex": "x"}, {"x": 5}) == UNKNOWN
    assert evaluate({"eq": "a", "gt": 1}, {"x": "b"}) is False


def test_unknown_result_says_which_arg_and_operator() -> None:
    """The unknown text names the arg, the operator, its operand and the value's type."""
    result = ArgCondition("amount", Matcher.model_validate({"gt": 100})).evaluate({"amount": "5"})
    assert result == "could not evaluate args.amount (gt 100 on a str)"


def test_dotted_paths_reach_into_mappings_and_lists() -> None:
    """`payload.user.id` walks mappings; numeric segments index lists."""
    args = {"payload": {"users": [{"id": 7}, {"id": 9}]}}
    assert evaluate({"eq": 9}, args, "payload.users.1.id") is True
    assert evaluate({"eq": 9}, args, "payload.users.5.id") is False  # index out of range: absent
    assert evaluate({"eq": 9}, args, "payload.missing.id") is False
    assert evaluate({"exists": False}, {"payload": None}, "payload.user") is True


def test_dotted_path_through_a_scalar_is_unknown() -> None:
    """A path that runs into a string or number can't be read: unknown, not absent."""
    assert evaluate({"eq": 1}, {"payload": "a string"}, "payload.user") == UNKNOWN
    assert evaluate({"eq": 1}, {"payload": [1]}, "payload.first") == UNKNOWN


def test_a_literal_dotted_key_is_not_read_as_the_path() -> None:
    """An agent can't shadow `payload.user` with a top-level key literally named so."""
    args = {"payload.user": "alice", "payload": {"user": "mallory"}}
    assert evaluate({"eq": "mallory"}, args, "payload.user") is True


# -- hosts ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("https://api.internal.example@evil.com/", "evil.com"),
        ("https://user:pw@evil.com:8443/x", "evil.com"),
        ("https://evil.com#@api.internal.example", "evil.com"),
        ("https://evil.com?@api.internal.example", "evil.com"),
        ("HTTPS://API.Example.COM/", "api.example.com"),
        ("https://api.example.com./x", "api.example.com"),
        ("example.com/x", "example.com"),
        ("example.com:8080/x", "example.com"),
        ("localhost:8080", "localhost"),
        ("//evil.com/x", "evil.com"),
        ("http://[::1]:80/", "::1"),
        ("https://api.example.com..", None),
        ("https://evil.com\\@api.internal.example", None),
        ("https://evil.com\t.api.internal.example", None),
        ("https://evil%2ecom/", None),
        ("http:/evil.com", None),
        ("mailto:a@example.com", None),
        ("file:///etc/passwd", None),
        ("https://bücher.de/", None),
        ("", None),
        ("http://[::1/", None),
    ],
)
def test_url_host_resolves_what_a_client_would_reach(url: str, host: str | None) -> None:
    """Userinfo is not the host; case and one trailing dot are normalised; doubt is None."""
    assert url_host(url) == host


@pytest.mark.parametrize(
    ("entries", "url", "expected"),
    [
        (["api.example.com"], "https://API.example.com./v1", True),
        (["api.example.com"], "https://api.example.com@evil.com/", False),
        (["api.example.com"], "https://api.example.com.evil.com/", False),
        (["api.example.com"], "https://sub.api.example.com/", False),
        (["*.example.com"], "https://a.b.example.com/", True),
        (["*.example.com"], "https://example.com/", False),
        (["*.example.com"], "https://badexample.com/", False),
        ([".example.com"], "https://x.example.com/", True),
        (["Example.COM."], "https://example.com/", True),
    ],
)
def test_host_in_matches_exact_hosts_and_subdomain_entries(
    entries: list[str], url: str, expected: bool
) -> None:
    """`*.x` and `.x` match subdomains of x (not x itself); plain entries match exactly."""
    assert evaluate({"host_in": entries}, {"x": url}) is expected


# -- paths ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/srv/data", True),
        ("/srv/data/", True),
        ("/srv/data/a/b.txt", True),
        ("/srv/data/./a", True),
        ("/srv/data/a/../b", True),
        ("/srv/data/../../etc/passwd", False),
        ("/srv/data/..", False),
        ("/srv/database", False),
        ("/srv/database/x", False),
        ("//srv/data/x", True),
        ("///etc/passwd", False),
        ("/srv//data//x", True),
        ("srv/data/x", UNKNOWN),
        ("./srv/data", UNKNOWN),
        ("/srv/data/\x00x", UNKNOWN),
    ],
)
def test_path_under_normalises_lexically_and_refuses_escapes(
    path: str, expected: bool | str
) -> None:
    """`..` can't escape, a sibling with a common prefix is not inside, relative is unknown."""
    assert evaluate({"path_under": ["/srv/data"]}, {"x": path}) == expected


def test_path_under_accepts_directories_written_with_a_trailing_slash() -> None:
    """`/srv/data/` in the policy is the same directory as `/srv/data`."""
    assert evaluate({"path_under": ["/srv/data/"]}, {"x": "/srv/data/x"}) is True
    assert evaluate({"path_under": ["/srv/data/"]}, {"x": "/srv/database"}) is False
    assert evaluate({"path_under": ["/"]}, {"x": "/anything"}) is True


# -- properties -------------------------------------------------------------------------


@given(value=json_values, options=st.lists(json_values, max_size=4))
def test_in_and_not_in_are_complements_on_present_values(value: Any, options: list[Any]) -> None:
    """For any present value, exactly one of `in` and `not_in` holds."""
    assert evaluate({"in": options}, {"x": value}) is not evaluate(
        {"not_in": options}, {"x": value}
    )


@given(value=json_values, expected=json_values)
def test_eq_and_ne_are_complements_on_present_values(value: Any, expected: Any) -> None:
    """`ne` is exactly not `eq` when the arg is there."""
    assert evaluate({"eq": expected}, {"x": value}) is not evaluate({"ne": expected}, {"x": value})


@given(
    value=st.integers() | st.floats(allow_nan=False, allow_infinity=False),
    bound=st.integers(-1000, 1000),
)
def test_gt_and_le_are_complements_on_numbers(value: float, bound: int) -> None:
    """On numbers, `gt: n` and `le: n` never agree (and neither is unknown)."""
    assert evaluate({"gt": bound}, {"x": value}) is not evaluate({"le": bound}, {"x": value})


@given(value=st.text() | st.booleans() | st.none() | st.lists(st.integers(), max_size=2))
def test_ordering_a_non_number_against_a_number_is_unknown(value: Any) -> None:
    """gt/ge/lt/le with a numeric operand are unknown for every non-number."""
    for op in ("gt", "ge", "lt", "le"):
        assert evaluate({op: 0}, {"x": value}) == UNKNOWN


segments = st.sampled_from(["srv", "data", "database", "..", ".", "", "etc", "x"])


@given(parts=st.lists(segments, max_size=8), absolute=st.booleans())
def test_path_under_of_normpath_equals_path_under(parts: list[str], absolute: bool) -> None:
    """Normalising a path first never changes whether it is under a directory."""
    path = ("/" if absolute else "") + "/".join(parts)
    for op in ("path_under", "path_not_under"):
        matcher = {op: ["/srv/data"]}
        assert evaluate(matcher, {"x": posixpath.normpath(path)}) == evaluate(matcher, {"x": path})


@given(parts=st.lists(segments, max_size=8))
def test_path_under_agrees_with_normpath_prefix(parts: list[str]) -> None:
    """An absolute path is under /srv/data exactly when its normal form is it or below it."""
    path = "/" + "/".join(parts)
    normal = norm_abs_path(path)
    assert normal is not None
    inside = normal == "/srv/data" or normal.startswith("/srv/data/")
    assert evaluate({"path_under": ["/srv/data"]}, {"x": path}) is inside


@given(user=st.from_regex(r"[a-z]{1,6}(\.[a-z]{1,6}){0,2}", fullmatch=True))
def test_userinfo_never_becomes_the_host(user: str) -> None:
    """Whatever a URL carries before '@', the host is what comes after it."""
    assert url_host(f"https://{user}@evil.com/") == "evil.com"
    assert evaluate({"host_in": [user]}, {"x": f"https://{user}@evil.com/"}) is False


@given(a=json_values, b=json_values)
def test_json_eq_is_symmetric(a: Any, b: Any) -> None:
    """eq does not depend on which side the policy wrote."""
    assert json_eq(a, b) is json_eq(b, a)
