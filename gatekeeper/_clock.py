"""Time and ids, injectable so expiry and timeouts are tested without waiting."""

from __future__ import annotations

import datetime as dt
import os
import time
from typing import Protocol

__all__ = ["Clock", "SystemClock", "new_id"]

_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"


class Clock(Protocol):
    """Wall-clock time as an aware UTC datetime."""

    def now(self) -> dt.datetime: ...


class SystemClock:
    """The real clock."""

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.timezone.utc)


def new_id() -> str:
    """A 26-character, time-sortable, random id (ULID layout, lower-case Crockford base32)."""
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        value, rem = divmod(value, 32)
        chars.append(_CROCKFORD[rem])
    return "".join(reversed(chars))
