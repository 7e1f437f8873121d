"""Turning tool arguments into the one JSON form that is shown, hashed and stored.

An approval binds to ``sha256(canonical_json(args))``. Canonical JSON is
``json.dumps`` with sorted keys, no whitespace, UTF-8, and no NaN/Infinity, so
the same arguments always give the same bytes in every process.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import decimal
import enum
import hashlib
import json
import math
import pathlib
import re
import uuid
from collections.abc import Mapping
from typing import Any

from ._errors import InvalidToolCall

__all__ = [
    "canonical_json",
    "digest",
    "first_surrogate",
    "to_json_safe",
    "truncate",
    "without_surrogates",
]

_MAX_DEPTH = 64
_dumps = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
).encode


# A lone surrogate (U+D800-DFFF) fits in a Python str but not in UTF-8: text
# that holds one can't be stored, hashed or sent anywhere as it is.
_SURROGATE = re.compile("[\ud800-\udfff]")


def first_surrogate(text: str) -> str | None:
    """The first lone surrogate in ``text`` as ``U+D800``, or None when there is none."""
    if text.isascii():
        return None
    found = _SURROGATE.search(text)
    return f"U+{ord(found.group()):04X}" if found else None


def without_surrogates(text: str) -> str:
    """``text`` with every lone surrogate written as a visible code such as ``<U+D800>``."""
    if text.isascii():
        return text
    return _SURROGATE.sub(lambda m: f"<U+{ord(m.group()):04X}>", text)


def canonical_json(value: Any) -> bytes:
    """The canonical UTF-8 JSON bytes of an already JSON-safe value."""
    return _dumps(value).encode("utf-8")


def digest(value: Any) -> str:
    """Hex sha256 of the canonical JSON of ``value``."""
    return hashlib.sha256(canonical_json(value)).hexdigest()


def to_json_safe(value: Any, *, where: str = "args", _depth: int = 0) -> Any:
    """Convert ``value`` to plain JSON types, or raise :class:`InvalidToolCall`.

    Supported: None, bool, int, finite float, str, lists/tuples/sets, mappings
    with string keys, pydantic models, dataclasses, enums, datetimes, dates,
    times, UUIDs, paths, decimals and bytes (as ``{"$bytes": base64}``).
    Anything else is refused: an approver must see exactly what will run, and a
    ``repr`` is not that.
    """
    if isinstance(value, str):
        _refuse_surrogate(value, where)
        return value
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if not isinstance(value, enum.Enum) else _enum(value, where, _depth)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidToolCall(f"{where}: {value!r} is not a finite number")
        return value
    if _depth >= _MAX_DEPTH:
        raise InvalidToolCall(f"{where}: nested more than {_MAX_DEPTH} levels deep")
    depth = _depth + 1
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidToolCall(f"{where}: mapping key {key!r} is not a string")
            _refuse_surrogate(key, f"{where}: the key {key!r}")
            out[key] = to_json_safe(item, where=f"{where}.{key}", _depth=depth)
        return out
    if isinstance(value, (list, tuple)):
        return [to_json_safe(v, where=f"{where}[{i}]", _depth=depth) for i, v in enumerate(value)]
    if isinstance(value, (set, frozenset)):
        items = [to_json_safe(v, where=f"{where}[]", _depth=depth) for v in value]
        return sorted(items, key=_dumps)
    if isinstance(value, enum.Enum):
        return _enum(value, where, _depth)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, (uuid.UUID, pathlib.PurePath, decimal.Decimal)):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"$bytes": base64.b64encode(bytes(value)).decode("ascii")}
    model_dump = getattr(value, "model_dump", None)
    if callable(model_dump):  # pydantic v2 model
        return to_json_safe(model_dump(mode="json"), where=where, _depth=depth)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        return to_json_safe(fields, where=where, _depth=depth)
    raise InvalidToolCall(
        f"{where}: a {type(value).__name__} can't be shown to an approver as JSON; "
        "pass JSON-like values, or exclude the parameter with guard(exclude=...)"
    )


def _refuse_surrogate(text: str, where: str) -> None:
    code = first_surrogate(text)
    if code is not None:
        raise InvalidToolCall(
            f"{without_surrogates(where)}: contains a lone surrogate ({code}), which is not "
            "valid Unicode text and can't be shown to an approver or recorded"
        )


def _enum(value: enum.Enum, where: str, depth: int) -> Any:
    return to_json_safe(value.value, where=where, _depth=depth + 1)


def truncate(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, saying how much was cut."""
    if len(text) <= limit:
        return text
    cut = len(text) - limit
    return f"{text[:limit]}… [{cut} more characters]"
