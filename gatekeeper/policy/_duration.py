"""Durations ("15m", "1h30m") and rates ("20/hour") as they are written in a policy."""

from __future__ import annotations

import math
import re

__all__ = ["parse_duration", "parse_rate"]

_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)")
_NUMBER = re.compile(r"\s*\d+(?:\.\d+)?\s*")
_RATE = re.compile(r"\s*(\d+)\s*/\s*([a-z]+)\s*")
_RATE_UNITS = {
    "second": 1.0,
    "sec": 1.0,
    "s": 1.0,
    "minute": 60.0,
    "min": 60.0,
    "m": 60.0,
    "hour": 3600.0,
    "h": 3600.0,
    "day": 86400.0,
    "d": 86400.0,
}
_DURATION_HELP = (
    "use a number of seconds or a string like '30s', '15m', '1h', '2d', '1h30m' or '500ms'"
)


def parse_duration(value: str | int | float) -> float:
    """Seconds in ``value``: a number of seconds, or a string such as ``"1h30m"``.

    Units are ``ms``, ``s``, ``m``, ``h`` and ``d``; each may appear once. A bare
    number (or numeric string) is seconds. Negative, infinite and NaN values
    are refused with :class:`ValueError`.

    >>> parse_duration("1h30m")
    5400.0
    """
    if isinstance(value, bool):  # bool is an int; True seconds is a mistake, not a duration
        raise ValueError(f"invalid duration {value!r}: {_DURATION_HELP}")
    if isinstance(value, (int, float)):
        seconds = float(value)
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"invalid duration {value!r}: must be a finite number >= 0")
        return seconds
    if not isinstance(value, str):
        raise ValueError(f"invalid duration {value!r}: {_DURATION_HELP}")
    if _NUMBER.fullmatch(value):
        return float(value)
    total = 0.0
    seen: set[str] = set()
    pos = 0
    text = value.rstrip()
    while pos < len(text):
        part = _PART.match(text, pos)
        if part is None or part.group(2) in seen:
            raise ValueError(f"invalid duration {value!r}: {_DURATION_HELP}")
        seen.add(part.group(2))
        total += float(part.group(1)) * _UNIT_SECONDS[part.group(2)]
        pos = part.end()
    if not seen:
        raise ValueError(f"invalid duration {value!r}: {_DURATION_HELP}")
    return total


def parse_rate(value: str) -> tuple[int, float]:
    """``(count, period_seconds)`` of a rate such as ``"20/hour"`` or ``"5/min"``."""
    match = _RATE.fullmatch(value) if isinstance(value, str) else None
    if match is None or match.group(2) not in _RATE_UNITS or int(match.group(1)) < 1:
        units = "second|minute|hour|day (or s, sec, min, m, h, d)"
        raise ValueError(
            f"invalid rate {value!r}: write N/unit with N >= 1 and unit one of {units}"
        )
    return int(match.group(1)), _RATE_UNITS[match.group(2)]
