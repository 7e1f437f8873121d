"""Canonical JSON: what arguments become, what is refused, and a stable digest."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import uuid
from decimal import Decimal
from pathlib import PurePosixPath

import pytest
from pydantic import BaseModel

from gatekeeper import InvalidToolCall
from gatekeeper._canonical import canonical_json, digest, to_json_safe, truncate


class Color(enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


class Order(BaseModel):
    id: str
    when: dt.date


@dataclasses.dataclass
class Point:
    x: int
    y: float


def test_supported_types_become_plain_json() -> None:
    value = {
        "model": Order(id="A-1", when=dt.date(2026, 1, 2)),
        "dc": Point(1, 2.5),
        "enum": Color.RED,
        "int_enum": Level.HIGH,
        "when": dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc),
        "bytes": b"\x00\xff",
        "uuid": uuid.UUID(int=1),
        "path": PurePosixPath("/tmp/x"),
        "dec": Decimal("1.10"),
        "tuple": (1, "a"),
    }
    assert to_json_safe(value) == {
        "model": {"id": "A-1", "when": "2026-01-02"},
        "dc": {"x": 1, "y": 2.5},
        "enum": "red",
        "int_enum": 3,
        "when": "2026-01-02T03:04:05+00:00",
        "bytes": {"$bytes": "AP8="},
        "uuid": "00000000-0000-0000-0000-000000000001",
        "path": "/tmp/x",
        "dec": "1.10",
        "tuple": [1, "a"],
    }


def test_sets_are_sorted_deterministically() -> None:
    assert to_json_safe({3, 1, 2}) == [1, 2, 3]
    assert to_json_safe(frozenset({"b", "a", 1})) == to_json_safe(frozenset({1, "a", "b"}))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_numbers_are_refused(bad: float) -> None:
    with pytest.raises(InvalidToolCall, match="finite"):
        to_json_safe({"x": [bad]})


def test_non_string_keys_are_refused() -> None:
    with pytest.raises(InvalidToolCall, match="not a string"):
        to_json_safe({1: "a"})


def test_deep_nesting_is_refused() -> None:
    value: list[object] = []
    for _ in range(100):
        value = [value]
    with pytest.raises(InvalidToolCall, match="nested"):
        to_json_safe(value)


def test_unknown_objects_are_refused_naming_where() -> None:
    with pytest.raises(InvalidToolCall, match=r"args\.inner\[1\].*object"):
        to_json_safe({"inner": [1, object()]})


def test_digest_does_not_depend_on_dict_order() -> None:
    a = {"b": 1, "a": {"y": [1, 2], "x": "é"}}
    b = {"a": {"x": "é", "y": [1, 2]}, "b": 1}
    assert canonical_json(a) == canonical_json(b) == '{"a":{"x":"é","y":[1,2]},"b":1}'.encode()
    assert digest(a) == digest(b)
    assert digest(a) != digest({**a, "b": 2})


def test_truncate_says_how_much_was_cut() -> None:
    assert truncate("abc", 5) == "abc"
    assert truncate("abcdef", 2) == "ab… [4 more characters]"


def test_ids_are_unique_sortable_crockford() -> None:
    """Request and call ids: 26 lower-case Crockford characters, sorted by creation time."""
    import time as _time

    from gatekeeper._clock import new_id

    first = new_id()
    _time.sleep(0.002)
    later = [new_id() for _ in range(1000)]
    assert len(set(later)) == 1000
    assert all(len(i) == 26 and set(i) <= set("0123456789abcdefghjkmnpqrstvwxyz") for i in later)
    assert first < min(later)
