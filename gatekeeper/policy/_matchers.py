"""Argument matchers compiled to functions of three-valued logic.

Every operator answers ``True``, ``False`` or ``None`` (unknown: the value is
there but the operator can't judge it, e.g. ``gt`` on a string). A compiled
:class:`ArgCondition` folds its operators with Kleene AND and answers
``True``, ``False``, or a string that says what could not be evaluated
(unknown). Unknown is what keeps errors from making calls pass: an ``allow``
rule needs ``True``, a stricter rule applies on unknown too.
"""

from __future__ import annotations

import json
import math
import posixpath
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final
from urllib.parse import urlsplit

from .._text import inline
from ._schema import Matcher

__all__ = [
    "ArgCondition",
    "compile_args",
    "json_eq",
    "norm_abs_path",
    "path_under",
    "shown_value",
    "url_host",
]

Op = Callable[[Any], "bool | None"]


class _Absent:
    def __repr__(self) -> str:
        return "<absent>"


ABSENT: Final = _Absent()
_UNREADABLE: Final = object()

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
_SCHEME_WITHOUT_SLASHES = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:(?!\d+(?:[/?#]|$))")
_BAD_URL_CHARS = re.compile(r"[\x00-\x20\x7f\\]")
_HOST = re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)*")
_IPV6 = re.compile(r"[0-9a-f:.]*:[0-9a-f:.]*")


def json_eq(a: Any, b: Any) -> bool:
    """Equality as JSON sees it: ``true`` is not ``1``, ``1`` is ``1.0``."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(json_eq(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(json_eq(a[k], b[k]) for k in a)
    return type(a) is type(b) and bool(a == b)


def url_host(value: object) -> str | None:
    """The lower-cased host a URL points at, or None when it can't be told for sure.

    Userinfo is not the host (``https://api.example@evil.com/`` is ``evil.com``);
    a value without a scheme is read as ``//value``; one trailing dot is
    dropped. Backslashes, whitespace, control characters, percent-escapes and
    non-ASCII hosts give None: parsers disagree about them, and disagreement is
    how allowlists are bypassed.
    """
    if not isinstance(value, str) or not value or _BAD_URL_CHARS.search(value):
        return None
    if _SCHEME.match(value) or value.startswith("//"):
        text = value
    elif _SCHEME_WITHOUT_SLASHES.match(value):
        return None  # "http:/evil.com", "mailto:x@y": a scheme, but no authority we can trust
    else:
        text = "//" + value
    try:
        host = urlsplit(text).hostname
    except ValueError:
        return None
    if not host:
        return None
    host = host.removesuffix(".")
    if _HOST.fullmatch(host) or _IPV6.fullmatch(host):
        return host
    return None


def norm_abs_path(value: object) -> str | None:
    """``value`` normalised lexically, or None unless it is an absolute path string."""
    if not isinstance(value, str) or not value.startswith("/") or "\x00" in value:
        return None
    path = posixpath.normpath(value)
    if path.startswith("//"):  # POSIX keeps a leading "//"; for matching it is "/"
        path = "/" + path.lstrip("/")
    return path


def path_under(path: str, directory: str) -> bool:
    """Whether normalised ``path`` is ``directory`` or inside it (both absolute)."""
    return directory in ("/", path) or path.startswith(directory + "/")


def _host_matcher(entries: Sequence[str]) -> Callable[[str], bool]:
    exact: set[str] = set()
    suffixes: list[str] = []
    for entry in entries:
        host = entry.lower().removesuffix(".")
        if host.startswith("*."):
            suffixes.append(host[1:])
        elif host.startswith("."):
            suffixes.append(host)
        else:
            exact.add(host)
    ends = tuple(suffixes)
    return lambda host: host in exact or (bool(ends) and host.endswith(ends))


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _is_number(value: Any) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and not (isinstance(value, float) and math.isnan(value))
    )


def _compare(expected: int | float | str, test: Callable[[Any, Any], bool]) -> Op:
    if isinstance(expected, str):
        return lambda v: test(v, expected) if isinstance(v, str) else None
    return lambda v: test(v, expected) if _is_number(v) else None


def _contains(expected: Any) -> Op:
    def op(value: Any) -> bool | None:
        if isinstance(value, str):
            return expected in value if isinstance(expected, str) else None
        if isinstance(value, (list, tuple)):
            return any(json_eq(item, expected) for item in value)
        if isinstance(value, Mapping):
            return expected in value if isinstance(expected, str) else None
        return None

    return op


def _length(test: Callable[[int], bool]) -> Op:
    return lambda v: test(len(v)) if isinstance(v, (str, list, tuple, Mapping)) else None


def _hosts(entries: Sequence[str], *, inside: bool) -> Op:
    listed = _host_matcher(entries)

    def op(value: Any) -> bool | None:
        host = url_host(value)
        if host is None:
            return None
        return listed(host) is inside

    return op


def _paths(entries: Sequence[str], *, inside: bool) -> Op:
    directories = tuple(p for p in (norm_abs_path(e) for e in entries) if p is not None)

    def op(value: Any) -> bool | None:
        path = norm_abs_path(value)
        if path is None:
            return None
        return any(path_under(path, d) for d in directories) is inside

    return op


def _regex(pattern: str) -> Op:
    search = re.compile(pattern).search
    return lambda v: search(v) is not None if isinstance(v, str) else None


def _eq(expected: Any) -> Op:
    if isinstance(expected, str):
        return lambda v: isinstance(v, str) and v == expected
    return lambda v: json_eq(v, expected)


def compile_op(name: str, expected: Any) -> Op:
    """The three-valued function of one operator (``name`` as written in the policy)."""
    if name == "eq":
        return _eq(expected)
    if name == "ne":
        eq = _eq(expected)
        return lambda v: not eq(v)
    if name == "in":
        return lambda v: any(json_eq(v, e) for e in expected)
    if name == "not_in":
        return lambda v: not any(json_eq(v, e) for e in expected)
    if name == "gt":
        return _compare(expected, lambda v, e: v > e)
    if name == "ge":
        return _compare(expected, lambda v, e: v >= e)
    if name == "lt":
        return _compare(expected, lambda v, e: v < e)
    if name == "le":
        return _compare(expected, lambda v, e: v <= e)
    if name == "regex":
        return _regex(expected)
    if name == "contains":
        return _contains(expected)
    if name == "exists":
        return lambda v: bool(expected)
    if name == "min_len":
        return _length(lambda n: n >= expected)
    if name == "max_len":
        return _length(lambda n: n <= expected)
    if name in ("host_in", "host_not_in"):
        return _hosts(expected, inside=name == "host_in")
    if name in ("path_under", "path_not_under"):
        return _paths(expected, inside=name == "path_under")
    raise ValueError(f"unknown matcher operator {name!r}")  # the schema has refused it already


def lookup(args: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    """The value at a dotted path, ``ABSENT``, or ``_UNREADABLE`` (path runs through a scalar)."""
    value: Any = args
    for segment in path:
        if isinstance(value, Mapping):
            if segment not in value:
                return ABSENT
            value = value[segment]
        elif isinstance(value, (list, tuple)):
            if not segment.isdigit():
                return _UNREADABLE
            index = int(segment)
            if index >= len(value):
                return ABSENT
            value = value[index]
        elif value is None:
            return ABSENT
        else:
            return _UNREADABLE
    return value


class ArgCondition:
    """One ``args`` entry of a rule: a path and the operators on its value."""

    __slots__ = ("_absent", "_ops", "_path", "name")

    def __init__(self, name: str, matcher: Matcher) -> None:
        self.name = name
        self._path = tuple(name.split("."))
        dumped = matcher.model_dump(mode="python", by_alias=True)
        self._ops = tuple((op, dumped[op], compile_op(op, dumped[op])) for op in sorted(dumped))
        # Absent: every operator is false except `exists: false`.
        self._absent = all(op == "exists" and value is False for op, value, _ in self._ops)

    def evaluate(self, args: Mapping[str, Any]) -> bool | str:
        """True, False, or (unknown) a string saying what could not be evaluated."""
        value = lookup(args, self._path) if len(self._path) > 1 else args.get(self.name, ABSENT)
        if value is ABSENT:
            return self._absent
        if value is _UNREADABLE:
            return f"could not evaluate args.{self.name} (the path runs through a non-container)"
        unknown: str | None = None
        for op, expected, test in self._ops:
            result = test(value)
            if result is False:
                return False
            if result is None and unknown is None:
                shown = _shorten(repr(expected))
                unknown = (
                    f"could not evaluate args.{self.name} ({op} {shown} on a {_type_name(value)})"
                )
        return True if unknown is None else unknown

    def why_false(self, args: Mapping[str, Any]) -> str | None:
        """Why this condition is False for ``args``, in words; None when it is not False.

        For explaining only (``classify`` never calls it): the value shown is
        the agent's, so it is bounded and made visible.
        """
        value = lookup(args, self._path) if len(self._path) > 1 else args.get(self.name, ABSENT)
        if value is ABSENT:
            return None if self._absent else f"args.{self.name} is absent"
        if value is _UNREADABLE:
            return None
        for op, expected, test in self._ops:
            if test(value) is False:
                wanted = _FAILED[op].format(_shorten(_json(expected)))
                return f"args.{self.name} {shown_value(value)} {wanted}"
        return None


# How an operator that answered False reads: "args.amount 50 " + this.
_FAILED: Final = {
    "eq": "is not {}",
    "ne": "is {}, which the rule excludes (ne)",
    "in": "is not one of {}",
    "not_in": "is one of {}, which the rule excludes (not_in)",
    "gt": "is not > {}",
    "ge": "is not >= {}",
    "lt": "is not < {}",
    "le": "is not <= {}",
    "regex": "does not match regex {}",
    "contains": "does not contain {}",
    "exists": "is present, and the rule wants it absent (exists: {})",
    "min_len": "is shorter than {}",
    "max_len": "is longer than {}",
    "host_in": "has a host not in {}",
    "host_not_in": "has a host in {}, which the rule excludes (host_not_in)",
    "path_under": "is not under {}",
    "path_not_under": "is under {}, which the rule excludes (path_not_under)",
}


def _json(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    except (TypeError, ValueError):
        return repr(value)


def shown_value(value: Any, limit: int = 60) -> str:
    """An agent's value for one line of explanation: JSON, bounded, every hidden character shown.

    Newlines, tabs and invisible or reordering characters become ``<U+XXXX>``,
    so a value can't start a line of its own or rearrange the sentence.
    """
    return inline(_shorten(_json(value), limit), limit + 200)


def _shorten(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def compile_args(args: Mapping[str, Matcher]) -> tuple[ArgCondition, ...]:
    """The compiled conditions of a ``match.args`` mapping, in the order written."""
    return tuple(ArgCondition(name, matcher) for name, matcher in args.items())
